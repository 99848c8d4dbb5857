"""The memory tasks' generators (rnnkit.data.memory_tasks): layouts, seeds, and memoryless baselines that
match their closed forms."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnnkit.data import memory_tasks as mt


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), length=st.integers(2, 60), seed=st.integers(0, 2**31))
def test_adding_layout(n, length, seed):
    batch = mt.adding(n, length, seed)
    x, y = batch["x"], batch["y"]
    assert x.shape == (n, length, 2) and y.shape == (n, 1, 1)
    markers = x[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :length // 2].sum(axis=1) == 1)            # one in each half
    np.testing.assert_allclose(y[:, 0, 0], (x[..., 0] * markers).sum(axis=1))
    assert np.all((x[..., 0] >= 0) & (x[..., 0] < 1))
    np.testing.assert_array_equal(mt.adding(n, length, seed)["x"], x)  # same seed, same bits


def test_adding_baseline_is_one_sixth():
    """Predicting the mean 1 scores E[(u + v - 1)²] = Var(u + v) = 1/6 (u, v ~ U(0, 1))."""
    y = mt.adding(200_000, 20, 0)["y"]
    assert mt.baseline("adding", 20) == pytest.approx(1 / 6)
    assert float(np.mean((y - 1.0) ** 2)) == pytest.approx(1 / 6, abs=2e-3)   # SE ≈ 2.7e-4
    assert float(np.mean(y)) == pytest.approx(1.0, abs=5e-3)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), length=st.integers(1, 60), seed=st.integers(0, 2**31))
def test_copy_layout(n, length, seed):
    batch = mt.copy(n, length, seed)
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.shape == targets.shape == (n, length + 20)
    symbols = inputs[:, :10]
    assert np.all((symbols >= 1) & (symbols <= 8))
    assert np.all(inputs[:, 10 + length - 1] == mt.COPY_DELIMITER)
    assert np.all(np.delete(inputs[:, 10:], length - 1, axis=1) == 0)    # blanks elsewhere
    np.testing.assert_array_equal(targets[:, -10:], symbols)
    assert np.all(targets[:, :-10] == 0)


@pytest.mark.parametrize("length", [1, 30, 100])
def test_copy_memoryless_baseline(length):
    """The best memoryless predictor outputs each position's target distribution; estimated from one batch
    and scored on another it gives 10 log 8 / (T + 20)."""
    train, test = mt.copy(20_000, length, 1)["targets"], mt.copy(20_000, length, 2)["targets"]
    marginal = np.stack([np.bincount(train[:, t], minlength=mt.COPY_VOCAB) for t in range(train.shape[1])]) / len(train)
    nll = -np.log(np.maximum(marginal[np.arange(train.shape[1])[None, :], test], 1e-300)).mean()
    assert nll == pytest.approx(10 * math.log(8) / (length + 20), rel=5e-3)
    assert mt.baseline("copy", length) == pytest.approx(10 * math.log(8) / (length + 20))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), length=st.integers(10, 200), seed=st.integers(0, 2**31))
def test_temporal_order_layout(n, length, seed):
    batch = mt.temporal_order(n, length, seed)
    inputs, labels = batch["inputs"], batch["labels"]
    assert inputs.shape == (n, length) and np.all(batch["lengths"] == length)
    assert np.all(inputs[:, 0] == mt.ORDER_BEGIN) and np.all(inputs[:, -1] == mt.ORDER_END)
    for row, label in zip(inputs, labels):
        where = np.nonzero(row >= mt.ORDER_X)[0]
        where = where[(row[where] == mt.ORDER_X) | (row[where] == mt.ORDER_Y)]
        assert len(where) == 2
        assert length // 10 <= where[0] <= max(2, 2 * length // 10) and 5 * length // 10 <= where[1] <= 6 * length // 10
        assert mt.ORDER_LABELS[label] == "".join("XY"[row[w] - mt.ORDER_X] for w in where)


def test_temporal_order_classes_are_balanced():
    labels = mt.temporal_order(40_000, 50, 3)["labels"]
    frequencies = np.bincount(labels, minlength=4) / len(labels)
    chance = -(frequencies * np.log(frequencies)).sum()
    assert chance == pytest.approx(mt.baseline("order", 50), rel=1e-3)       # the entropy of the labels: log 4


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="needs length >= 10"):
        mt.temporal_order(3, 9)
    with pytest.raises(ValueError, match="unknown memory task"):
        mt.generate("recall", 3, 9)
    with pytest.raises(ValueError, match="too many"):
        mt.copy(10**6, 10**3)


# ------------------------------------------------------------------------------------------------ training

def test_order_and_adding_are_learned_beyond_the_baseline(tmp_path):
    """A small LSTM on the scratch engine solves temporal order at T = 10 and halves the adding problem's
    memoryless MSE: the tasks are trainable and their baselines the reference."""
    from rnnkit.tasks import memory

    common = dict(length=10, hidden=16, train_size=2048, batch_size=32, lr=1e-2, progress=False, verbose=False)
    order = memory.train_memory(problem="order", epochs=3, out=str(tmp_path / "order"), **common).last_metrics
    assert order["accuracy"] > 0.95 and order["loss_vs_baseline"] < 0.1
    assert order["baseline"] == pytest.approx(math.log(4))
    added = memory.train_memory(problem="adding", epochs=3, out=str(tmp_path / "adding"), **common).last_metrics
    assert added["loss_vs_baseline"] < 0.6 and added["baseline"] == pytest.approx(1 / 6)


def test_train_memory_through_the_cli(tmp_path, capsys):
    import json

    from rnnkit.cli import main

    out = tmp_path / "copy"
    args = ["train", "memory", "--problem", "copy", "--length", "5", "--hidden", "8", "--epochs", "1",
            "--train-size", "64", "--valid-size", "16", "--batch-size", "16", "--out", str(out), "--no-progress"]
    assert main([*args, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == {"problem": "copy", "length": 5, "train_size": 64,
                                                          "valid_size": 16}
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluation = [r for r in records if "val_loss" in r][-1]
    assert evaluation["val_baseline"] == pytest.approx(10 * math.log(8) / 25)
    assert 0 <= evaluation["val_accuracy"] <= 1 and evaluation["val_loss"] > 0
    assert main(["train", "memory", "--problem", "order", "--length", "5", "--out", str(out)]) == 2
    assert "needs length >= 10" in capsys.readouterr().err


def test_echo_text_repeats_each_word_and_its_losses():
    from rnnkit.data.memory_tasks import echo_losses, echo_text

    text = echo_text(50, 6, 0)
    lines = text.split("\n")[:-1]
    assert len(lines) == 50 and text == echo_text(50, 6, 0) != echo_text(50, 6, 1)
    for line in lines:
        first, second = line.split("|")
        assert first == second and len(first) == 6 and set(first) <= set("abcdefgh")
    losses = echo_losses(6)
    assert losses["remembers"] == pytest.approx(6 * math.log(8) / 14)
    assert losses["memoryless"] == pytest.approx(2 * losses["remembers"])
    with pytest.raises(ValueError, match="width >= 1"):
        echo_text(3, 0)
