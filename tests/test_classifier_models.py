"""The text classifier on both engines: gradients, pooling, padding, cross-engine parity."""
import numpy as np
import pytest

from rnnkit.scratch.models import TextClassifier
from rnnkit.scratch.pooling import AttentionPool, MaxPool, MeanPool

POOLINGS = ("last", "mean", "max", "attention")


def batch_of(rng, vocab=12, batch=3, time=5, lengths=(5, 2, 4), classes=3):
    lengths = np.array(lengths)
    tokens = rng.integers(1, vocab, (batch, time))
    tokens[np.arange(time)[None, :] >= lengths[:, None]] = 0  # padding index 0
    return {"inputs": tokens, "lengths": lengths, "labels": rng.integers(0, classes, batch)}


def numeric_grads(model, batch, eps=1e-6):
    out = {}
    for name, p in model.named_parameters():
        g = np.zeros_like(p.data)
        for idx in np.ndindex(p.data.shape):
            old = p.data[idx]
            p.data[idx] = old + eps
            plus = model.eval_loss(batch)[0]
            p.data[idx] = old - eps
            minus = model.eval_loss(batch)[0]
            p.data[idx] = old
            g[idx] = (plus - minus) / (2 * eps) / len(batch["labels"])
        out[name] = g
    return out


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_gradients_by_finite_differences(pooling, bidirectional):
    rng = np.random.default_rng(0)
    model = TextClassifier(12, 3, embedding_dim=4, hidden_size=3, num_layers=2, cell="gru",
                           bidirectional=bidirectional, pooling=pooling, attention_size=3, dtype=np.float64, rng=1)
    model.class_weights = np.array([1.0, 2.0, 0.5])
    batch = batch_of(rng)
    model.zero_grad()
    model.loss(batch)
    numeric = numeric_grads(model, batch)
    # the weighted mean divides by the summed weights, the numeric check by the batch size: rescale
    scale = len(batch["labels"]) / model.class_weights[batch["labels"]].sum()
    worst = max(np.abs(p.grad - numeric[n] * scale).max() for n, p in model.named_parameters())
    biggest = max(np.abs(g).max() for g in numeric.values())
    assert worst < 1e-7 * biggest
    assert np.all(model.embedding.weight.grad[0] == 0)  # the padding row learns nothing


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_never_changes_a_prediction(pooling):
    rng = np.random.default_rng(2)
    model = TextClassifier(20, 4, embedding_dim=6, hidden_size=5, bidirectional=True, pooling=pooling,
                           dtype=np.float64, rng=3).eval()
    tokens = rng.integers(1, 20, (1, 6))
    alone = model.predict(tokens, [6])
    padded = np.concatenate([tokens, rng.integers(1, 20, (1, 9))], axis=1)  # garbage past the length
    np.testing.assert_allclose(model.predict(padded, [6]), alone, rtol=1e-12)
    together = model.predict(np.concatenate([padded, rng.integers(1, 20, (1, 15))]), [6, 15])
    np.testing.assert_allclose(together[:1], alone, rtol=1e-12)
    assert np.allclose(alone.sum(), 1.0)


def test_pooling_values():
    h = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    lengths = np.array([3, 1])
    np.testing.assert_array_equal(MeanPool()(h, lengths), [[2.0, 3.0], [6.0, 7.0]])
    np.testing.assert_array_equal(MaxPool()(h, lengths), [[4.0, 5.0], [6.0, 7.0]])
    eval_pool = MaxPool().eval()                        # eval mode takes the maximum without its argmax
    np.testing.assert_array_equal(eval_pool(-h, lengths), [[0.0, -1.0], [-6.0, -7.0]])
    np.testing.assert_array_equal(eval_pool(h, lengths), [[4.0, 5.0], [6.0, 7.0]])   # padding is larger here
    with pytest.raises(RuntimeError, match="training mode"):
        eval_pool.backward(np.ones((2, 2)))
    attention = AttentionPool(2, 3, dtype=np.float64, rng=0)
    pooled = attention(h, lengths)
    np.testing.assert_allclose(attention.attention.sum(axis=1), 1.0)
    assert np.all(attention.attention[1, 1:] == 0)
    np.testing.assert_allclose(pooled[1], h[1, 0])


def test_bad_classifier_settings():
    with pytest.raises(ValueError, match="pooling"):
        TextClassifier(10, 2, pooling="median")
    with pytest.raises(ValueError, match="at least 2 classes"):
        TextClassifier(10, 1)


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_cross_engine_parity(pooling, cell):
    torch = pytest.importorskip("torch")
    from rnnkit.torch.models import TextClassifier as TorchClassifier

    kwargs = dict(embedding_dim=5, hidden_size=4, num_layers=2, cell=cell, bidirectional=True, pooling=pooling,
                  attention_size=3)
    scratch = TextClassifier(15, 3, dtype=np.float64, rng=4, **kwargs)
    ref = TorchClassifier(15, 3, **kwargs).double()
    assert list(ref.state_dict()) == list(scratch.state_dict())
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in scratch.state_dict().items()})
    weights = np.array([0.5, 1.0, 3.0])
    scratch.class_weights = ref.class_weights = weights
    batch = batch_of(np.random.default_rng(5), vocab=15, batch=4, time=6, lengths=(6, 1, 3, 5))

    scratch.zero_grad()
    loss, _ = scratch.loss(batch)
    ref_loss, _ = ref.loss(batch)
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-12)
    grads = dict(ref.named_parameters())
    for name, p in scratch.named_parameters():
        g = grads[name].grad.numpy()
        assert np.abs(p.grad - g).max() <= 1e-9 * max(np.abs(g).max(), 1e-12), name
    with torch.no_grad():
        np.testing.assert_allclose(scratch.predict(batch["inputs"], batch["lengths"]),
                                   ref.eval().predict(batch["inputs"], batch["lengths"]), rtol=1e-10)


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_embedding_init_std_scales_only_the_embedding(engine):
    """N(0, std²) rows, a zero padding row, and every other parameter as with the default init."""
    if engine == "torch":
        torch = pytest.importorskip("torch")
        from rnnkit.torch.models import TextClassifier as TorchClassifier

        def build(**kw):
            model = TorchClassifier(2000, 3, embedding_dim=50, hidden_size=4, seed=7, **kw)
            return {k: v.detach().numpy() for k, v in model.state_dict().items()}
    else:
        def build(**kw):
            return TextClassifier(2000, 3, embedding_dim=50, hidden_size=4, rng=7, **kw).state_dict()
    default, small = build(), build(embedding_init_std=0.1)
    table = small["embedding.weight"]
    assert np.all(table[0] == 0)                                     # padding_idx 0
    assert table[1:].std() == pytest.approx(0.1, rel=0.01)           # 99,950 draws: the std to ~0.3%
    assert abs(table[1:].mean()) < 0.002
    np.testing.assert_allclose(table, default["embedding.weight"] * 0.1, rtol=1e-6)  # the same draw, scaled
    for name in default:
        if name != "embedding.weight":
            np.testing.assert_array_equal(small[name], default[name], err_msg=name)
    with pytest.raises(ValueError, match="embedding_init_std"):
        build(embedding_init_std=0.0)
