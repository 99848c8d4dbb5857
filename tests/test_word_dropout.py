"""Word dropout (rnnkit/tasks/classify.py: drop_words, ClassifyTask): which tokens, how often, determinism,
and that both engines train on exactly the same dropped batches."""
import numpy as np
import pytest

from rnnkit.tasks import classify
from rnnkit.tasks.classify import ClassifyTask, drop_words, pad


def test_drop_words_replaces_only_real_tokens_at_the_rate():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(2, 50, size=n) for n in rng.integers(1, 40, size=400)]
    ids, lengths = pad(seqs)
    out = drop_words(ids, lengths, 0.25, unk_id=1, rng=np.random.default_rng(7))
    real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    assert out.shape == ids.shape and out.dtype == ids.dtype
    np.testing.assert_array_equal(out[~real], 0)                     # padding stays <pad>
    changed = out != ids
    assert np.all(out[changed] == 1)                                 # a dropped token becomes <unk>
    assert not np.any(changed & ~real)
    rate = changed.sum() / real.sum()
    assert rate == pytest.approx(0.25, abs=0.02)                     # ~7,900 tokens: 3 sigma is ~0.015
    np.testing.assert_array_equal(ids, pad(seqs)[0])                 # the input is not modified
    again = drop_words(ids, lengths, 0.25, unk_id=1, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(out, again)                        # same generator, same draw


def test_drop_words_zero_and_bad_rates():
    ids, lengths = pad([np.array([5, 6, 7]), np.array([8])])
    np.testing.assert_array_equal(drop_words(ids, lengths, 0.0, 1, np.random.default_rng(0)), ids)
    with pytest.raises(ValueError, match="word_dropout"):
        ClassifyTask([], np.array([]), [], np.array([]), 4, 0, {}, word_dropout=1.0)


def test_task_batches_are_reproducible_per_epoch_and_resume():
    seqs = [np.arange(2, 2 + n) for n in range(1, 21)]
    y = np.zeros(20, dtype=np.int64)
    task = ClassifyTask(seqs, y, seqs, y, batch_size=6, seed=3, config={}, word_dropout=0.5)
    first = list(task.batches(epoch=0, start=0))
    assert [b["inputs"].tolist() for b in first] == [b["inputs"].tolist() for b in task.batches(0, 0)]
    resumed = list(task.batches(epoch=0, start=2))                   # a resumed run sees the same batches
    assert [b["inputs"].tolist() for b in resumed] == [b["inputs"].tolist() for b in first[2:]]
    other = list(task.batches(epoch=1, start=0))
    assert any(a["inputs"].shape != b["inputs"].shape or np.any(a["inputs"] != b["inputs"])
               for a, b in zip(first, other))
    assert sum(int((b["inputs"] == 1).sum()) for b in first) > 0    # something was dropped
    plain = ClassifyTask(seqs, y, seqs, y, batch_size=6, seed=3, config={})
    assert all(int((b["inputs"] == 1).sum()) == 0 for b in plain.batches(0, 0))


def test_word_dropout_trains_the_same_on_both_engines(tmp_path):
    """float64, the same starting weights: the dropped batches are the only randomness (model dropout 0), so
    after a few Adam steps on the same word-dropped batches the two engines' weights agree to rounding."""
    pytest.importorskip("torch")
    from rnnkit.engines import build_engine
    from rnnkit.train import TrainConfig, train

    rng = np.random.default_rng(4)
    seqs = [rng.integers(2, 30, size=n) for n in rng.integers(1, 12, size=40)]
    y = rng.integers(0, 3, size=40)
    kwargs = dict(vocab_size=30, num_classes=3, embedding_dim=4, hidden_size=5, cell="gru", bidirectional=True,
                  pooling="max", padding_idx=0)
    engines = {name: build_engine(name, "TextClassifier", kwargs, lr=1e-2, clip=1.0, dtype="float64",
                                  device="cpu", seed=0) for name in ("scratch", "torch")}
    engines["torch"].load_weights(engines["scratch"].weights())
    config = TrainConfig(epochs=2, lr=1e-2, progress=False)
    for name, engine in engines.items():
        task = ClassifyTask(seqs, y, seqs[:8], y[:8], batch_size=8, seed=5, config={"task": "classify"},
                            word_dropout=0.3)
        train(task, engine, config, tmp_path / name)
    scratch, torch_ = engines["scratch"].weights(), engines["torch"].weights()
    assert scratch.keys() == torch_.keys()
    moved = np.abs(scratch["embedding.weight"] - build_engine(
        "scratch", "TextClassifier", kwargs, dtype="float64", seed=0).weights()["embedding.weight"]).max()
    assert moved > 1e-3                                              # it trained (10 steps)
    for name in scratch:
        np.testing.assert_allclose(scratch[name], torch_[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_train_classifier_records_word_dropout_and_the_embedding_init(tmp_path):
    from rnnkit.checkpoint import load_checkpoint
    from test_classify import order_dataset, write_csv

    data = write_csv(tmp_path / "d.csv", order_dataset(60, seed=4))
    result = classify.train_classifier(data=str(data), hidden=4, embedding=4, epochs=1, min_freq=1,
                                       word_dropout=0.2, embedding_init_std=0.1, out=str(tmp_path / "run"),
                                       progress=False, log=lambda s: None)
    config = load_checkpoint(result.best).config
    assert config["word_dropout"] == 0.2 and config["model"]["embedding_init_std"] == 0.1
    scratch = classify.load_classifier(result.best).predict(["good not bad"])[0]
    torch_ = classify.load_classifier(result.best, engine="torch").predict(["good not bad"])[0]
    assert scratch["label"] == torch_["label"] == max(scratch["probabilities"], key=scratch["probabilities"].get)
    assert scratch["probabilities"] == pytest.approx(torch_["probabilities"], rel=1e-5)
