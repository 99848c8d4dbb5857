"""benchmarks/seq2seq.py on a tiny shape: a quality row (a few steps of a tiny model) and the speed row."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "seq2seq.py"
spec = importlib.util.spec_from_file_location("bench_seq2seq", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_rows_are_the_issues():
    assert bench.DEFAULT_ROWS == ("addition-3", "dates", "tatoeba")
    settings, attentions, target = bench.ROWS["tatoeba"]
    assert attentions == ("none", "bahdanau", "luong-general") and target == ("bleu", 0.30)
    assert settings["dataset"] == "tatoeba-en-es" and settings["max_length"] == 10 and settings["lower"]
    assert bench.ROWS["addition-3"][0]["examples"] == 50_000 and bench.ROWS["addition-5"][0]["digits"] == 5
    assert all(bench.ROWS[r][2] == ("exact_match", 0.99) for r in ("addition-3", "addition-4", "dates"))
    add4 = bench.ROWS["addition-4"][0]   # the recipe measured to reach 0.99 (dropout, cosine decay, no patience)
    assert (add4["dropout"], add4["schedule"], add4["patience"], add4["epochs"]) == (0.2, "cosine", None, 30)
    assert bench.BEAMS == (1, 5)


def test_the_cpu_tatoeba_row_is_the_tatoeba_rows_task_on_a_fixed_budget():
    full, attentions, target = bench.ROWS["tatoeba"]
    small, small_attentions, small_target = bench.ROWS["tatoeba-cpu"]
    assert (small_attentions, small_target) == (attentions, target) and "tatoeba-cpu" not in bench.DEFAULT_ROWS
    assert all(small[k] == full[k] for k in ("dataset", "level", "lower", "max_length", "min_freq", "split_seed")
               if k in full) and small["max_steps"] == 1500 and small["eval_every"] == 250
    assert bench.parse_overrides([f"{k}={json.dumps(v)}" for k, v in small.items() if k not in bench.FIXED])


def test_curve_and_the_table_show_the_validation_scores_of_a_row_short_of_its_target():
    row = {"train_seconds": 60.0, "steps": 200, "epochs_run": 0.5, "reached": None, "history": [
        {"step": 100, "epoch": 0, "val_bleu": 0.051}, {"step": 150, "epoch": 0, "loss": 3.0},
        {"step": 200, "epoch": 0, "val_bleu": 0.083}],
        "searches": {"beam1": {"exact_match": 0.0, "bleu": 0.08, "chrf": 0.2},
                     "beam5": {"exact_match": 0.0, "bleu": 0.09, "chrf": 0.21}}}
    assert bench.curve(row, "bleu") == [(100, 0.051), (200, 0.083)]
    table = bench.format_tables({"rows": {"tatoeba-cpu": {"none": row}}, "targets": {"tatoeba-cpu": ("bleu", 0.3)}})
    assert "| tatoeba-cpu | none | beam5 | 0.0000 | 9.00 | 21.00 | 0.5 | 1.0 | no (bleu >= 30) |" in table
    assert "tatoeba-cpu none, validation bleu (greedy) by step: 100: 5.1, 200: 8.3" in table


def test_dates_are_scored_per_format_and_the_table_states_the_split_of_formats():
    translations = [  # 1998-03-03 in two held-out formats, 2001-05-05 in one; one wrong answer
        {"source": "3-Mar-1998", "translation": "1998-03-03", "references": ["1998-03-03"]},
        {"source": "Mar 3, 1998", "translation": "1998-05-03", "references": ["1998-03-03"]},
        {"source": "5-May-2001", "translation": "2001-05-05", "references": ["2001-05-05"]},
        {"source": "May 5, 2001", "translation": "2001-05-05", "references": ["2001-05-05"]}]
    got = bench.by_format(translations)
    assert got["d-MMM-yyyy"] == {"sources": 2, "exact_match": 1.0, "errors": []}
    assert got["MMM d, yyyy"] == {"sources": 2, "exact_match": 0.5, "errors": [["Mar 3, 1998", "1998-05-03"]]}
    assert got["MMMM d, yyyy"] == {"sources": 1, "exact_match": 1.0, "errors": []}   # "May 5, 2001": both
    assert set(got) == {"d-MMM-yyyy", "MMM d, yyyy", "MMMM d, yyyy"}
    row = {"train_seconds": 60.0, "steps": 10, "epochs_run": 1, "reached": None, "history": [],
           "searches": {"beam1": {"exact_match": 0.75, "bleu": 0.9, "chrf": 0.9, "by_format": got}}}
    table = bench.format_tables({"rows": {"dates": {"bahdanau": row}}, "targets": {"dates": ("exact_match", 0.99)},
                                 "date_formats": {"train": ["a", "b"], "held_out": ["c"]}})
    assert "dates bahdanau greedy, format 'MMM d, yyyy': exact match 0.5000 of 2 (e.g. Mar 3, 1998 -> 1998-05-03)" \
        in table
    assert "dates: trained on 2 formats ('a', 'b'); tested on 1 held-out formats ('c')" in table
    assert "dates bahdanau greedy, format 'd-MMM-yyyy': exact match 1.0000 of 2\n" in table


def test_overrides_are_checked_settings():
    assert bench.parse_overrides(["epochs=3", "schedule=cosine", "patience=null"]) == \
        {"epochs": 3, "schedule": "cosine", "patience": None}
    with pytest.raises(ValueError, match="unknown setting 'attention'"):
        bench.parse_overrides(["attention=none"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_overrides(["epochs"])


def test_reached_is_the_first_pass_at_the_target():
    row = {"train_seconds": 600.0, "steps": 100, "history": [
        {"step": 25, "epoch": 1, "val_exact_match": 0.5}, {"step": 50, "epoch": 2, "val_exact_match": 0.991},
        {"step": 75, "epoch": 3, "val_exact_match": 0.999}]}
    assert bench.reached(row, "exact_match", 0.99) == {"step": 50, "epoch": 2, "minutes": 5.0}
    assert bench.reached(row, "exact_match", 0.9999) is None and bench.reached(row, "bleu", 0.3) is None


def test_quick_row_writes_what_its_checkpoint_scores(tmp_path):
    """A tiny addition row in its own process: the JSON's test scores are those of the checkpoint it names,
    evaluated here again."""
    from rnnkit.tasks import seq2seq
    from rnnkit.tasks.settings import Decoding

    out = tmp_path / "seq2seq.json"
    done = subprocess.run([sys.executable, str(PATH), "--quick", "--rows", "addition-3", "--no-speed", "--out",
                           str(out), "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    row = results["rows"]["addition-3"]["bahdanau"]
    assert results["quick"] and results["settings"]["addition-3"]["max_steps"] == 5
    assert row["steps"] == 4 and row["epochs_run"] == 1.0 and results["speed"] is None   # 240 pairs, 64 a batch
    for beam in (1, 5):
        again = seq2seq.evaluate_seq2seq(row["checkpoint"], decoding=Decoding(beam=beam))
        got = row["searches"][f"beam{beam}"]
        assert (got["exact_match"], got["bleu"], got["chrf"], got["sources"]) == \
            (again["exact_match"], again["bleu"], again["chrf"], again["sources"]) and got["sources"] == 30
    assert "| addition-3 | bahdanau | greedy |" in done.stdout and "| addition-3 | bahdanau | beam5 |" in done.stdout
    assert "| no (exact_match >= 0.99) |" in done.stdout
    # --score-only scores the run left in --work again, as the training run did, and says it was finished
    again_out = tmp_path / "again.json"
    done = subprocess.run([sys.executable, str(PATH), "--quick", "--rows", "addition-3", "--no-speed", "--out",
                           str(again_out), "--work", str(tmp_path / "work"), "--score-only"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rescored = json.loads(again_out.read_text())["rows"]["addition-3"]["bahdanau"]
    assert rescored["searches"] == row["searches"] and rescored["history"] == row["history"]
    assert (rescored["steps"], rescored["epochs_run"], rescored["best_step"]) == (4, 1.0, row["best_step"])
    assert 0 < rescored["train_seconds"] <= row["train_seconds"] and "stopped_by_hand" not in rescored
    assert rescored["run_settings"]["settings"]["data"]["examples"] == 300
    done = subprocess.run([sys.executable, str(PATH), "--quick", "--rows", "addition-3", "--score-only"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--score-only scores the runs in --work: give --work" in done.stderr


def test_speed_alternates_the_engines_and_takes_medians(monkeypatch):
    calls = []
    times = iter([30.0, 10.0, 50.0, 20.0, 40.0, 60.0])       # scratch, torch, scratch, torch, ...

    def fake_worker(args, threads, script):
        calls.append(args[0])
        assert json.loads(args[1]) == bench.QUICK_SHAPE and threads == 2 and script == bench.__file__
        return {"step_ms": next(times), "ran_on": f"{args[0]} engine"}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    got = bench.speed(bench.QUICK_SHAPE, rounds=3, threads=2, min_time=0.1)
    assert calls == ["scratch", "torch"] * 3
    assert (got["scratch_ms"], got["torch_ms"], got["ratio"]) == (40.0, 20.0, 2.0)
    assert got["scratch_path"] == "scratch engine" and got["scratch_all"] == [30.0, 50.0, 40.0]


def test_speed_worker_times_a_training_step():
    """(The torch side is the same code on the other engine; left out here, as importing torch costs seconds.)"""
    got = bench.speed_worker("scratch", bench.QUICK_SHAPE, threads=1, min_time=0.02)
    assert 0 < got["step_ms"] < 10_000 and got["ran_on"]


def test_the_12_epoch_tatoeba_row_is_the_cpu_row_trained_longer():
    small, attentions, target = bench.ROWS["tatoeba-cpu"]
    long, long_attentions, long_target = bench.ROWS["tatoeba-cpu-12ep"]
    changed = {k for k in {*small, *long} if small.get(k) != long.get(k)}
    assert changed == {"max_steps", "epochs", "schedule", "eval_every", "eval_translations"}
    assert (long["max_steps"], long["epochs"], long["schedule"], long["eval_every"]) == (None, 12, "cosine", 896)
    assert (long_attentions, long_target) == (attentions, target)


def test_epoch_snapshots_keep_each_epochs_end_and_the_curve_scores_them(tmp_path):
    """EpochSnapshots saves last/ as epoch-N/ only at the end of epoch N; score_curve scores each as best/ is."""
    from rnnkit.checkpoint import load_checkpoint
    from rnnkit.tasks import seq2seq
    from rnnkit.tasks.settings import Decoding

    settings = {**bench.ROWS["addition-3"][0], **bench.QUICK, "max_steps": None, "eval_every": 0}  # 4 steps an epoch
    run = tmp_path / "run"

    def train(epochs, max_steps=None, resume=True):
        return seq2seq.train_seq2seq(**{**settings, "epochs": epochs, "max_steps": max_steps}, attention="bahdanau",
                                     out=str(run), resume=resume, progress=False, verbose=False, plot=False,
                                     log=lambda *a: None)

    snaps = bench.EpochSnapshots(run)
    assert snaps.poll() is None                      # no run yet
    train(1, resume=False)
    assert snaps.poll() == 1 and snaps.poll() is None and (run / "epoch-1").is_dir()
    train(2, max_steps=6)                            # mid-epoch: last/ at step 6, batch 2
    assert snaps.poll() is None and not (run / "epoch-2").exists()
    state = train(2).state
    assert snaps.poll() == 2 and state.step == 8
    last, first = load_checkpoint(run / "last").weights, load_checkpoint(run / "epoch-1").weights
    kept = load_checkpoint(run / "epoch-2").weights
    assert all((kept[k] == last[k]).all() for k in last) and any((first[k] != last[k]).any() for k in last)

    points = bench.score_curve(run, settings, 4, state.history, "scratch", "cpu")
    assert [(p["epoch"], p["step"]) for p in points] == [(1, 4), (2, 8)]
    for p in points:
        assert p["val_loss"] == next(h["val_loss"] for h in state.history if h["step"] == p["step"])
        assert 0 < p["minutes"] <= bench.wall_seconds(run) / 60
        again = seq2seq.evaluate_seq2seq(run / f"epoch-{p['epoch']}", decoding=Decoding(beam=5))
        assert (p["searches"]["beam5"]["bleu"], p["searches"]["beam5"]["chrf"]) == (again["bleu"], again["chrf"])
    table = bench.format_curve("addition-3 bahdanau", points)
    assert table[0].startswith("| addition-3 bahdanau: epoch | step | train min | val loss |")
    assert table[2].startswith(f"| 1 | 4 | {points[0]['minutes']:.1f} | {points[0]['val_loss']:.3f} |")

    with bench.EpochSnapshots(tmp_path / "other", every=0.01):   # the thread; the last epoch saved on exit
        seq2seq.train_seq2seq(**{**settings, "epochs": 2}, attention="bahdanau", out=str(tmp_path / "other"),
                              progress=False, verbose=False, plot=False, log=lambda *a: None)
    assert (tmp_path / "other" / "epoch-2").is_dir()


def test_curve_option_scores_the_epochs_and_draws_them(tmp_path):
    """--curve end to end on a tiny addition row of 2 epochs: the JSON's curve ends with epoch 2 (the end of
    training; epoch 1 is kept if the thread looked in time), printed as a table and drawn as a PNG."""
    out = tmp_path / "seq2seq.json"
    done = subprocess.run([sys.executable, str(PATH), "--quick", "--rows", "addition-3", "--no-speed", "--curve",
                           "--set", "max_steps=null", "--set", "epochs=2", "--set", "eval_every=0", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(out.read_text())["rows"]["addition-3"]["bahdanau"]
    last = row["curve"][-1]
    assert (last["epoch"], last["step"]) == (2, 8) and row["steps"] == 8
    assert last["searches"] == row["searches"]   # best/ is the last epoch here (its validation loss the lowest)
    assert "| addition-3 bahdanau: epoch | step |" in done.stdout and "\n| 2 | 8 |" in done.stdout
    png = tmp_path / "seq2seq-addition-3-bahdanau-curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"learning curve drawn in {png}" in done.stdout
