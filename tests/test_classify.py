"""Text classification end to end: learning word order, CLI, both engines, errors, the main job."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main
from rnnkit.tasks import classify

ROOT = Path(__file__).resolve().parents[1]
FILLERS = ["", "honestly", "the flight was", "to be fair", "today", "the crew was", "again"]


def order_dataset(n=400, seed=0):
    """Positive and negative texts with the SAME bag of words: only the order tells them apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(["good", "great"]), rng.choice(["bad", "awful"])
        positive = rng.random() < 0.5
        core = f"{a} not {b}" if positive else f"{b} not {a}"  # "good, not bad" vs "bad, not good"
        text = " ".join(w for w in (rng.choice(FILLERS), core, rng.choice(FILLERS)) if w)
        rows.append((f"{text} #{rng.integers(1000)}", "positive" if positive else "negative"))
    return rows


def write_csv(path, rows, header=("text", "label"), delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def order_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("order")
    data = write_csv(tmp / "order.csv", order_dataset())
    result = classify.train_classifier(data=str(data), hidden=16, embedding=16, epochs=12, lr=1e-2,
                                       min_freq=1, dropout=0.0, out=str(tmp / "run"), progress=False, log=lambda s: None)
    return data, result


def test_word_order_is_learned_where_a_bag_of_words_fails(order_model):
    data, result = order_model
    report = classify.evaluate_classifier(result.best, data=str(data))
    assert report["accuracy"] > 0.97
    # a bag of words (unigram counts + logistic regression) sees the same words in both classes
    sklearn = pytest.importorskip("sklearn.linear_model")
    from sklearn.feature_extraction.text import CountVectorizer

    rows = order_dataset()
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    bag = CountVectorizer().fit_transform(texts)
    bow = sklearn.LogisticRegression(max_iter=1000).fit(bag[:300], labels[:300])
    assert bow.score(bag[300:], labels[300:]) < 0.7


def test_predictions_and_errors(order_model):
    _, result = order_model
    model = classify.load_classifier(result.best)
    out = model.predict(["the crew was good not bad", "bad not great today"])
    assert [o["label"] for o in out] == ["positive", "negative"]
    for o in out:
        assert set(o["probabilities"]) == {"negative", "positive"}
        assert sum(o["probabilities"].values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no tokens"):
        model.predict([""])
    with pytest.raises(ValueError, match="no tokens"):
        model.predict(["   "])
    with pytest.raises(ValueError, match="must be a string"):
        model.predict([42])
    with pytest.raises(ValueError, match="list of texts"):
        model.predict("good not bad")
    with pytest.raises(ValueError, match="empty list"):
        model.predict([])
    unknown = model.predict(["zzzz unknown words only", "qqqq wwww eeee rrrr"])   # both: 4 x <unk>
    assert unknown[0] == unknown[1]
    assert unknown[0]["label"] == max(unknown[0]["probabilities"], key=unknown[0]["probabilities"].get)
    long = model.predict(["good not bad " * 5000])  # cut at max_length tokens
    assert long[0]["label"] == "positive"


def test_padding_does_not_change_a_prediction(order_model):
    _, result = order_model
    model = classify.load_classifier(result.best)
    alone = model.predict(["good not bad"])[0]["probabilities"]["positive"]
    batched = model.predict(["good not bad", "honestly the flight was awful not great again today"])
    assert batched[0]["probabilities"]["positive"] == pytest.approx(alone, rel=1e-5)


def test_cli_train_predict_evaluate(tmp_path, capsys):
    rows = order_dataset(200, seed=1)
    data = write_csv(tmp_path / "posts.tsv", [(t, y) for t, y in rows], header=("post", "sentiment"),
                     delimiter="\t")
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(data), "--text-column", "post", "--label-column",
                 "sentiment", "--hidden", "8", "--embedding", "8", "--epochs", "2", "--min-freq", "1",
                 "--pooling", "attention", "--class-weights", "balanced", "--out", str(out), "--no-progress"]) == 0
    assert "best checkpoint" in capsys.readouterr().out
    config = load_checkpoint(out / "best").config
    assert config["task"] == "classify" and config["labels"] == ["negative", "positive"]
    train_labels = [label for _, label in classify.load_examples(
        data=str(data), text_column="post", label_column="sentiment").train]
    n, counts = len(train_labels), [train_labels.count(label) for label in config["labels"]]
    assert counts[0] != counts[1]     # unequal classes: "balanced" gives n / (classes x count), rarer weighs more
    assert config["class_weights"] == pytest.approx([n / (2 * c) for c in counts], rel=1e-12)

    assert main(["predict", str(out / "best"), "good not bad", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line == {"text": "good not bad", **classify.load_classifier(out / "best").predict(["good not bad"])[0]}
    texts = tmp_path / "texts.txt"
    texts.write_text("good not bad\n\nbad not good\n")
    assert main(["predict", str(out / "best"), "--file", str(texts)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    # texts after an option, and on both sides of one, in their order (argparse alone refused the first form)
    assert main(["predict", str(out / "best"), "--json", "good not bad"]) == 0
    assert json.loads(capsys.readouterr().out) == line
    assert main(["predict", str(out / "best"), "bad not good", "--json", "good not bad"]) == 0
    assert [json.loads(r)["text"] for r in capsys.readouterr().out.splitlines()] == ["bad not good", "good not bad"]
    assert main(["predict", str(out / "best"), "--json", "good", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err

    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(out / "best"), "--data", str(data), "--text-column", "post", "--label-column",
                 "sentiment", "--split", "all", "--report", str(report_path)]) == 0
    shown = capsys.readouterr().out
    assert "macro avg" in shown and "confusion matrix" in shown
    report = json.loads(report_path.read_text())
    assert report["support"] == len(rows) and np.array(report["confusion"]).sum() == len(rows)

    assert main(["predict", str(out / "best"), ""]) == 2
    assert "no tokens" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nowhere"), "x"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = write_csv(tmp_path / "bad.csv", [("good", "meh")])
    assert main(["evaluate", str(out / "best"), "--data", str(bad)]) == 2  # the columns default to the run's
    assert "no column 'post' or 'sentiment'" in capsys.readouterr().err
    assert main(["evaluate", str(out / "best"), "--data", str(bad), "--text-column", "text", "--label-column",
                 "label"]) == 2
    assert "labels the model does not know" in capsys.readouterr().err


def test_classifier_moves_between_engines(tmp_path):
    pytest.importorskip("torch")
    data = write_csv(tmp_path / "d.csv", order_dataset(120, seed=2))
    result = classify.train_classifier(data=str(data), hidden=6, embedding=6, epochs=1, min_freq=1,
                                       engine="torch", device="cpu", dtype="float64", pooling="mean",
                                       out=str(tmp_path / "run"), progress=False, log=lambda s: None)
    texts = ["good not bad", "honestly awful not great", "the crew was great not awful again"]
    on_torch = classify.load_classifier(result.best, engine="torch", device="cpu").predict(texts)
    on_scratch = classify.load_classifier(result.best, engine="scratch").predict(texts)
    for a, b in zip(on_torch, on_scratch):
        assert a["label"] == b["label"]
        for label in a["probabilities"]:
            assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], rel=1e-9)


def test_pretrained_embeddings_frozen(tmp_path):
    data = write_csv(tmp_path / "d.csv", order_dataset(120, seed=3))
    vectors = tmp_path / "vectors.txt"
    words = ["good", "great", "bad", "awful", "not", "the"]
    rng = np.random.default_rng(0)
    vectors.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in rng.standard_normal(5)) + "\n"
                               for w in words))
    messages = []
    result = classify.train_classifier(data=str(data), hidden=6, epochs=2, min_freq=1, embeddings=str(vectors),
                                       freeze_embeddings=True, out=str(tmp_path / "run"), progress=False,
                                       log=messages.append)
    assert any("pretrained embeddings: 6 of" in m for m in messages)
    model = classify.load_classifier(result.best)
    table = load_checkpoint(result.best).weights["embedding.weight"]
    assert table.shape[1] == 5
    good = model.encoder.vocab.encode(["good"])[0]
    np.testing.assert_allclose(table[good], np.array(vectors.read_text().split("\n")[0].split()[1:], float),
                               atol=1e-4)  # frozen: still the file's vector after training


def test_one_hot_inputs_on_both_engines(tmp_path):
    """--one-hot: the embedding is the identity, fixed through training; the checkpoint reads the same on torch."""
    data = write_csv(tmp_path / "d.csv", order_dataset(120, seed=4))
    messages = []
    result = classify.train_classifier(data=str(data), cell="gru", hidden=6, epochs=2, min_freq=1, one_hot=True,
                                       out=str(tmp_path / "run"), progress=False, plot=False, log=messages.append)
    model = classify.load_classifier(result.best)
    size = len(model.encoder.vocab)
    assert any(f"one-hot inputs: {size} dimensions" in m for m in messages)
    table = load_checkpoint(result.best).weights["embedding.weight"]
    expected = np.eye(size)
    expected[0, 0] = 0.0                                       # <pad>
    np.testing.assert_array_equal(table, expected)
    texts = ["good not bad today", "awful not great"]
    on_torch = classify.load_classifier(result.best, engine="torch").predict(texts)
    for a, b in zip(model.predict(texts), on_torch):
        assert a["probabilities"] == pytest.approx(b["probabilities"], rel=1e-5)


def test_one_hot_errors(tmp_path):
    with pytest.raises(ValueError, match="exclude each other"):
        classify.train_classifier(data="x.csv", one_hot=True, embeddings="v.txt", progress=False)
    with pytest.raises(ValueError, match="--max-vocab"):
        classify.one_hot_matrix(classify.MAX_ONE_HOT + 1)


def test_bad_classifier_data(tmp_path):
    one_label = write_csv(tmp_path / "one.csv", [("a b", "x"), ("c d", "x")])
    with pytest.raises(ValueError, match="at least 2"):
        classify.train_classifier(data=str(one_label), out=str(tmp_path / "r"), progress=False)
    with pytest.raises(ValueError, match="class_weights"):
        classify.train_classifier(data=str(one_label), class_weights="heavy", progress=False)


@pytest.mark.network
def test_the_main_job_runs_in_a_reduced_form(tmp_path):
    """`make run` in a reduced form: fetch airline-tweets, train briefly, evaluate beside the baselines."""
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "airline_sentiment.py"), "--quick",
                           "--no-progress", "--out", str(tmp_path / "sentiment")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TF-IDF + logistic regression" in done.stdout and "macro avg" in done.stdout
    report = json.loads((tmp_path / "sentiment" / "report.json").read_text())
    assert report["test"]["support"] == 1439
    assert report["test"]["accuracy"] > report["compared"]["majority class"]["accuracy"]
    assert (tmp_path / "sentiment" / "best" / "model.safetensors").exists()
