"""Tests written to fail on bugs that once survived the suite (issue 20, item 10): each checks a value at an
edge that a planted bug changes (a resumed log cut at < instead of <=, a text in two splits, inverted class
weights, bits computed with x ln 2, un-sorting by the sort permutation itself)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rnnkit.checkpoint import save_checkpoint
from rnnkit.data.vocab import UNK, Vocabulary
from rnnkit.engines import build_engine
from rnnkit.tasks import classify, lm


# ------------------------------------------------------------------------------------------ resume

def test_a_resumed_run_logs_the_same_steps_and_evaluations_as_a_straight_run(tmp_path):
    """metrics.jsonl is cut back to the checkpoint's step on resume, keeping that step's own lines (<=)."""
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 20)
    common = dict(data=str(text), hidden=8, embedding=8, layers=1, batch_size=2, bptt=8, epochs=1, eval_every=2,
                  log_every=2, seed=0, progress=False)
    lm.train_lm(**common, max_steps=8, out=str(tmp_path / "straight"))
    lm.train_lm(**common, max_steps=4, out=str(tmp_path / "resumed"))
    lm.train_lm(**common, max_steps=8, out=str(tmp_path / "resumed"), resume=True)

    def sequence(run):
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], "val_loss" in r) for r in records]

    straight = sequence("straight")
    assert (4, False) in straight and (4, True) in straight and straight[-1] == (8, True)
    assert sequence("resumed") == straight


# ------------------------------------------------------------------------------------------ splits

def test_a_users_csv_never_puts_one_text_in_two_splits(tmp_path):
    """Each text appears 1-4 times (some with a second, conflicting label): after the split every text is
    in exactly one split, once; a text whose labels tie is dropped."""
    rng = np.random.default_rng(0)
    rows, texts = [], [f"text number {i}" for i in range(120)]
    for i, t in enumerate(texts):
        label = "pos" if i % 3 else "neg"
        rows += [(t, label)] * int(rng.integers(1, 5))
        if i % 10 == 0:
            rows.append((t, "neg" if label == "pos" else "pos"))
    rng.shuffle(rows)
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    ex = classify.load_examples(data=str(path))
    seen = [t for split in (ex.train, ex.valid, ex.test) for t, _ in split]
    assert len(seen) == len(set(seen))
    counts = {t: [r[1] for r in rows if r[0] == t] for t in texts}
    ties = {t for t, labels in counts.items() if labels.count("pos") == labels.count("neg")}
    assert set(seen) == set(texts) - ties and ex.valid and ex.test


# ------------------------------------------------------------------------------------------ class weights

def test_balanced_class_weights_by_value():
    y = np.array([0, 0, 0, 0, 1, 2, 2, 0])      # counts 5, 1, 2; n = 8, 3 classes: n / (3 count)
    np.testing.assert_allclose(classify.balanced_weights(y, 3), [8 / 15, 8 / 3, 8 / 6], rtol=1e-15)
    np.testing.assert_allclose(classify.balanced_weights(np.array([1, 1]), 3), [2 / 3, 1 / 3, 2 / 3], rtol=1e-15)


# ------------------------------------------------------------------------------------------ bits per character

def test_bits_per_character_of_a_uniform_model_is_log2_of_the_vocabulary(tmp_path):
    """A decoder of zeros predicts every one of V characters with 1/V: loss ln V nats, log2 V bits, perplexity V."""
    vocab = Vocabulary([UNK, *"abcdefg "], specials=(UNK,))
    model = dict(vocab_size=len(vocab), embedding_dim=4, hidden_size=4, num_layers=1, cell="lstm", dropout=0.0,
                 tie_weights=False)
    weights = build_engine("scratch", "LanguageModel", model).weights()
    weights["decoder.weight"][:] = 0
    weights["decoder.bias"][:] = 0
    config = {"task": "lm", "model": model, "vocab": vocab.to_dict(), "dtype": "float32",
              "data": {"tokenizer": {"level": "char"}, "batch_size": 2, "bptt": 8}}
    save_checkpoint(tmp_path / "uniform", weights, config)
    (tmp_path / "t.txt").write_text("a bad cafe faced a gaffe\n" * 4)
    got = lm.evaluate_lm(tmp_path / "uniform", data=str(tmp_path / "t.txt"))
    V = len(vocab)
    assert got["loss"] == pytest.approx(math.log(V), rel=1e-6)
    assert got["bits_per_char"] == pytest.approx(math.log2(V), rel=1e-6)
    assert got["perplexity"] == pytest.approx(V, rel=1e-5)


# ------------------------------------------------------------------------------------------ ragged batches

@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("locked", [False, True])
def test_a_ragged_batch_is_unsorted_back_to_its_own_rows(pooling, locked):
    """Lengths [2, 5, 3, 4]: the sort permutation [1, 3, 2, 0] is not its own inverse ([3, 0, 2, 1]), so
    un-sorting by it would swap rows. Each row of the batch must equal that text predicted alone."""
    lengths = np.array([2, 5, 3, 4])
    order = np.argsort(-lengths, kind="stable")
    assert not np.array_equal(order[order], np.arange(4))
    kwargs = dict(vocab_size=12, num_classes=3, embedding_dim=4, hidden_size=5, num_layers=2, cell="gru",
                  bidirectional=True, pooling=pooling, padding_idx=0)
    engine = build_engine("scratch", "TextClassifier", kwargs, dtype="float64", seed=3)
    tokens = np.random.default_rng(1).integers(2, 12, size=(4, 5))
    tokens[np.arange(5)[None, :] >= lengths[:, None]] = 0
    if locked:
        engine.lock_weights()
    batched = engine.predict(tokens, lengths)
    for b in range(4):
        alone = engine.predict(tokens[b:b + 1, :lengths[b]], lengths[b:b + 1])
        np.testing.assert_allclose(batched[b], alone[0], rtol=1e-12, err_msg=f"row {b}")
