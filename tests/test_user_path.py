"""The user's path through the CLI (issue 21 items 5-7, 9-13; issue 20 item 9): argument errors, held-out
test rows scored, labels renamed, checkpoints as folders, scripting switches. Tiny data, few steps."""
import contextlib
import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.checkpoint import load_checkpoint
from rnnkit.tasks import classify, lm

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    (tmp / "verse.txt").write_text(VERSE * 10)
    result = lm.train_lm(data=str(tmp / "verse.txt"), hidden=8, layers=1, batch_size=2, bptt=8, max_steps=3,
                         out=str(tmp / "run"), progress=False)
    return result


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "nan"], "argument --temperature: must be a finite number >= 0, got 'nan'"),
    (["--temperature", "-1"], "argument --temperature: must be a finite number >= 0, got '-1'"),
    (["--top-k", "0"], "argument --top-k: must be an integer >= 1, got '0'"),
    (["--top-k", "-3"], "argument --top-k: must be an integer >= 1, got '-3'"),
    (["--top-p", "nan"], "argument --top-p: must be a number in (0, 1], got 'nan'"),
    (["--length", "-2"], "argument --length: must be an integer >= 0, got '-2'"),
])
def test_generate_refuses_bad_sampling_arguments(lm_run, flags, message, capsys):
    assert main(["generate", str(lm_run.best), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_checks_its_arguments_in_the_python_api(lm_run):
    model = lm.load_lm(lm_run.best)
    for kwargs, message in [({"temperature": float("nan")}, "temperature must be a finite number"),
                            ({"temperature": float("inf")}, "temperature must be a finite number"),
                            ({"top_k": 0}, "top_k must be >= 1"), ({"top_k": -3}, "top_k must be >= 1")]:
        with pytest.raises(ValueError, match=message):
            lm.generate(model, "the", 5, **kwargs)
    assert len(lm.generate(model, "", 5, top_k=1, seed=0)) > 0


def test_predict_names_an_undecodable_file(tmp_path, lm_run, capsys):
    binary = tmp_path / "binary.dat"
    binary.write_bytes(b"good\n\xff\xfe\x00bad\n")
    assert main(["predict", str(lm_run.best), "--file", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {binary}: not valid UTF-8 at byte offset 5 (line 2")


def test_the_scratch_engine_refuses_a_gpu(lm_run, tmp_path, capsys):
    (tmp_path / "verse.txt").write_text(VERSE * 10)
    out = tmp_path / "run"
    assert main(["train", "lm", "--data", str(tmp_path / "verse.txt"), "--engine", "scratch", "--device", "cuda",
                 "--max-steps", "1", "--out", str(out), "--no-progress"]) == 2
    assert "the scratch engine runs on the CPU only" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was trained or written
    assert main(["generate", str(lm_run.best), "--device", "cuda", "--length", "3"]) == 2
    assert "--engine torch --device cuda" in capsys.readouterr().err


def test_loaded_models_are_in_eval_mode_and_round_trip_as_folders(lm_run, tmp_path):
    pytest.importorskip("torch")
    from rnnkit.tasks.lm import LoadedLM

    for engine in ("scratch", "torch"):
        model = LoadedLM.from_pretrained(lm_run.best, engine=engine, device="cpu")
        assert model.engine.model.training is False  # dropout off, as torch users expect of a loaded model
    model = lm.load_lm(lm_run.best)
    assert model.engine.model.training is False
    saved = model.save_pretrained(tmp_path / "exported")
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    again = LoadedLM.from_pretrained(saved, engine="torch", device="cpu")
    assert lm.generate(again, "the", 20, seed=3) == lm.generate(model, "the", 20, seed=3)
    weights, loaded = model.engine.weights(), again.engine.weights()
    assert all((weights[k] == loaded[k]).all() for k in weights)


def test_a_run_folder_given_for_a_checkpoint_points_to_best(lm_run, capsys):
    run = lm_run.run_dir
    assert main(["generate", str(run), "--length", "3"]) == 2
    assert f"error: {run} is a run folder, not a checkpoint: give {run / 'best'}" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--data", str(run / "metrics.jsonl")]) == 2
    assert f"give {run / 'best'}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ classifiers

WORDS = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "poor"], "neu": ["okay", "meh", "average"]}


def reviews(n=300, seed=0, labels=("pos", "neg", "neu")):
    """Texts of three kinds, each row's label its kind; every text is unique (a number in it)."""
    rng = np.random.default_rng(seed)
    return [(f"{rng.choice(WORDS[labels[i % len(labels)]])} flight {rng.integers(10**6)}", labels[i % len(labels)])
            for i in range(n)]


def write_csv(path, rows, header=("review", "stars")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """`rnnkit train classify` on a CSV with repeated texts, a tie and its own column and label names."""
    tmp = tmp_path_factory.mktemp("classify")
    rows = reviews() + reviews(60, seed=9, labels=("neg",))   # negative: 160 of 360
    rows += rows[:20] + [(rows[0][0], "neg"), (rows[0][0], "neg")]  # 22 repeats; rows[0]: pos twice, neg twice
    data = write_csv(tmp / "reviews.csv", rows)
    out = tmp / "run"
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        assert main(["train", "classify", "--data", str(data), "--text-column", "review", "--label-column", "stars",
                     "--label-map", "pos=positive,neg=negative,neu=neutral", "--hidden", "8", "--embedding", "8",
                     "--epochs", "3", "--lr", "0.02", "--min-freq", "1", "--class-weights", "balanced",
                     "--out", str(out), "--no-progress"]) == 0
    return data, rows, out, shown.getvalue()


def test_training_summary_says_what_was_dropped_and_how_it_was_split(classifier_run):
    _, _, out, shown = classifier_run
    assert ("reviews.csv: 382 rows; 23 dropped (22 repeating a text read before, 1 whose text has tied labels); "
            "split 80/10/10 per label by a hash of each text: 289 train, 35 validation, 35 test (held out)") in shown
    # balanced: n / (classes * count), the rarer labels weigh more (289 training texts: 128, 80, 81)
    assert "class weights: balanced, negative 0.753, neutral 1.2, positive 1.19" in shown
    held = re.search(r"test \(held out, (\d+) texts\), best checkpoint: accuracy ([\d.]+)", shown)
    assert held and held.group(1) == "35"
    report = json.loads((out / "test_report.json").read_text())
    assert report["support"] == 35 and report["accuracy"] == pytest.approx(float(held.group(2)), abs=1e-4)


def test_evaluate_split_test_scores_exactly_the_held_out_rows(classifier_run, capsys):
    data, rows, out, _ = classifier_run
    with open(out / "test.csv", newline="", encoding="utf-8") as f:
        held = list(csv.DictReader(f))
    assert len(held) == 35 and list(held[0]) == ["row", "review", "stars"]
    for r in held:  # the row numbers point into the file; the labels are renamed
        text, label = rows[int(r["row"]) - 1]
        assert r["review"] == text and r["stars"] == {"pos": "positive", "neg": "negative", "neu": "neutral"}[label]
    examples = classify.load_examples(data=str(data), text_column="review", label_column="stars",
                                      label_map="pos=positive,neg=negative,neu=neutral")  # what training read
    assert [r["review"] for r in held] == [t for t, _ in examples.test]
    train, valid, test = ({t for t, _ in part} for part in (examples.train, examples.valid, examples.test))
    assert not test & (train | valid) and not train & valid   # no text in two splits (repeats were dropped)
    config = load_checkpoint(out / "best").config

    report_path = out.parent / "eval.json"
    # the recorded columns and label map are the defaults (no --text-column, --label-column, --label-map)
    assert main(["evaluate", str(out / "best"), "--data", str(data), "--split", "test", "--quiet",
                 "--report", str(report_path)]) == 0
    assert "macro avg" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["support"] == 35 and report["split"] == "test"
    assert report == {**json.loads((out / "test_report.json").read_text()), "split": "test"}
    assert config["data"]["source"]["split"]["sizes"] == {"train": 289, "valid": 35, "test": 35}

    assert main(["evaluate", str(out / "best"), "--data", str(data), "--json"]) == 0  # the same file: test
    captured = capsys.readouterr()
    assert json.loads(captured.out)["support"] == 35
    assert "is the file this model was trained on: scoring the 35 rows held out" in captured.err
    assert main(["evaluate", str(out / "best"), "--data", str(data), "--split", "all", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["support"] == 382   # every row, repeats and all
    assert "holds the rows the model was trained on" in captured.err  # every row, repeats and all
    assert main(["evaluate", str(out / "best"), "--data", str(out / "test.csv"), "--json"]) == 0  # another file
    assert json.loads(capsys.readouterr().out)["support"] == 35
    assert main(["evaluate", str(out / "best"), "--data", str(out / "test.csv"), "--split", "test"]) == 2
    assert "is not the file this model was trained on" in capsys.readouterr().err


def test_a_two_label_file_against_a_three_label_model(classifier_run, tmp_path, capsys):
    _, _, out, _ = classifier_run
    two = write_csv(tmp_path / "two.csv", [(t, {"pos": "good", "neg": "bad"}[y]) for t, y in
                                           reviews(40, seed=5, labels=("pos", "neg"))], header=("review", "y"))
    assert main(["evaluate", str(out / "best"), "--data", str(two), "--label-column", "y", "--json"]) == 2
    assert "labels the model does not know: ['bad', 'good']" in capsys.readouterr().err
    assert main(["evaluate", str(out / "best"), "--data", str(two), "--label-column", "y", "--json",
                 "--label-map", "good=positive,bad=negative"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["labels"] == ["negative", "positive"] and report["model_labels"] == ["negative", "neutral",
                                                                                      "positive"]
    assert "scored over negative, positive, the model's probabilities renormalised" in captured.err

    model = classify.load_classifier(out / "best")
    pairs = [(t, {"pos": "positive", "neg": "negative"}[y]) for t, y in reviews(40, seed=5, labels=("pos", "neg"))]
    p = np.array([[r["probabilities"][k] for k in ("negative", "positive")] for r in model.predict([t for t, _ in
                                                                                                    pairs])])
    y = np.array([("negative", "positive").index(label) for _, label in pairs])
    pred = p.argmax(axis=1)   # renormalising does not move the argmax among the present labels
    f1 = [2 * ((pred == c) & (y == c)).sum() / ((pred == c).sum() + (y == c).sum()) for c in (0, 1)]
    assert report["macro"]["f1"] == pytest.approx(np.mean(f1))
    assert report["loss"] == pytest.approx(-np.mean(np.log(p[np.arange(40), y] / p.sum(axis=1))), rel=1e-5)
    assert main(["evaluate", str(out / "best"), "--data", str(two), "--label-column", "y", "--json", "--all-labels",
                 "--label-map", "good=positive,bad=negative"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == ["negative", "neutral", "positive"]


def test_the_confusion_figure_names_model_data_split_and_scores(classifier_run, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from rnnkit import plots

    data, _, out, _ = classifier_run
    drawn = []
    draw = plots.plot_confusion
    monkeypatch.setattr(plots, "plot_confusion", lambda *args: drawn.append(args) or draw(*args))
    report = classify.evaluate_classifier(out / "best", data=str(data), confusion_png=str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 5_000 and report["confusion_png"] == str(tmp_path / "c.png")
    matrix, labels, _, title = drawn[0]
    title = plots.confusion_figure(matrix, labels, title).axes[0].get_title()
    assert title == (f"BiLSTM classifier run/best\nreviews.csv (test): accuracy {report['accuracy']:.3f}, "
                     f"macro-F1 {report['macro']['f1']:.3f} (n = 35)")
    empty = plots.confusion_figure([[3, 1], [0, 0]], ["a", "b"], "tiny")
    assert [t.get_text() for t in empty.axes[0].texts] == ["3\n75%", "1\n25%", "0\nn/a", "0\nn/a"]


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, 120 columns wide."""

    def isatty(self):
        return True

    def fileno(self):
        raise io.UnsupportedOperation("no file descriptor")


def test_evaluate_shows_a_progress_bar_on_a_terminal_only(classifier_run, monkeypatch, capsys):
    data, _, out, _ = classifier_run
    argv = ["evaluate", str(out / "best"), "--data", str(data), "--split", "all"]
    for extra, shown in (([], True), (["--quiet"], False)):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert main([*argv, *extra]) == 0
        assert bool(re.search(r"scoring: +\d+%\|.*batch", terminal.getvalue())) is shown
    monkeypatch.undo()
    assert main(argv) == 0   # stderr is not a terminal: no bar, the notes only
    err = capsys.readouterr().err
    assert "scoring" not in err and err.startswith("note: ")


# ------------------------------------------------------------------------------------------------ scripting

def rnnkit(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout)


def test_python_m_rnnkit_and_its_version(capsys):
    from rnnkit import __version__

    done = rnnkit("-V")
    assert done.returncode == 0 and done.stdout == f"rnnkit {__version__}\n"
    assert main(["--version"]) == 0 and capsys.readouterr().out == f"rnnkit {__version__}\n"


def test_json_output_for_scripts(lm_run, tmp_path, capsys):
    (tmp_path / "verse.txt").write_text(VERSE * 10)
    assert main(["train", "lm", "--data", str(tmp_path / "verse.txt"), "--hidden", "8", "--layers", "1", "--bptt",
                 "8", "--batch-size", "2", "--max-steps", "4", "--eval-every", "2", "--out", str(tmp_path / "run"),
                 "--json"]) == 0
    done = capsys.readouterr()
    summary = json.loads(done.out)   # stdout holds the summary alone; the rest went to stderr
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [h for h in history if "val_loss" in h]
    assert summary["steps"] == 4 and summary["best"] == str(tmp_path / "run" / "best")
    assert summary["best_loss"] == min(h["val_loss"] for h in evaluations)
    assert summary["validation"]["loss"] == evaluations[-1]["val_loss"]
    assert "validation loss" in done.err

    assert main(["generate", str(lm_run.best), "--prompt", "the", "--length", "12", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["text"].startswith("the") and first["length"] == 12 and isinstance(first["seed"], int)
    assert main(["generate", str(lm_run.best), "--prompt", "the", "--length", "12", "--seed", str(first["seed"])]) == 0
    assert capsys.readouterr().out == first["text"] + "\n"   # the seed it reported gives the same text

    assert main(["data", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"shakespeare", "wikitext-2", "airline-tweets"} <= {d["name"] for d in listed}
    assert all(set(d) == {"name", "size", "license", "description"} for d in listed)


def test_quiet_silences_the_validation_lines(tmp_path, capsys):
    (tmp_path / "verse.txt").write_text(VERSE * 10)
    argv = ["train", "lm", "--data", str(tmp_path / "verse.txt"), "--hidden", "8", "--layers", "1", "--bptt", "8",
            "--batch-size", "2", "--max-steps", "4", "--eval-every", "2"]
    assert main([*argv, "--out", str(tmp_path / "loud"), "--no-progress"]) == 0
    assert capsys.readouterr().err.count("validation loss") == 2
    assert main([*argv, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "best checkpoint" in captured.out
    messages = []
    classify_data = write_csv(tmp_path / "r.csv", reviews(60), header=("text", "label"))
    classify.train_classifier(data=str(classify_data), hidden=4, embedding=4, max_steps=2, min_freq=1,
                              out=str(tmp_path / "c"), verbose=False, log=messages.append)
    assert messages == [] and capsys.readouterr().err == ""   # the Python API's switch


def test_max_steps_0_claims_no_checkpoint(tmp_path, capsys):
    (tmp_path / "verse.txt").write_text(VERSE * 10)
    assert main(["train", "lm", "--data", str(tmp_path / "verse.txt"), "--max-steps", "0", "--out",
                 str(tmp_path / "run"), "--no-progress"]) == 0
    shown = capsys.readouterr().out
    assert "no checkpoint was saved" in shown and "best checkpoint" not in shown
    assert not (tmp_path / "run" / "best").exists()
