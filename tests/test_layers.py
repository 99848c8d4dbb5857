"""Linear, Embedding and Dropout of the scratch engine against PyTorch and finite differences."""
import numpy as np
from gradcheck import numeric_grad
import pytest
import torch

from rnnkit.scratch.layers import Dropout, Embedding, Linear


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def torch_linear(layer: Linear) -> torch.nn.Linear:
    dtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    t = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=dtype)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    return t


# ---------------------------------------------------------------------------------------------- Linear

@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5), (2, 3, 2, 5), (5,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_float64(shape, bias):
    rng = np.random.default_rng(0)
    layer = Linear(5, 7, bias=bias, dtype=np.float64, rng=1)
    tl = torch_linear(layer)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal((*shape[:-1], 7))

    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    yt.backward(torch.tensor(dy))

    assert y.shape == (*shape[:-1], 7) and y.dtype == np.float64
    assert rel_err(y, yt.detach().numpy()) < 1e-10
    assert rel_err(dx, xt.grad.numpy()) < 1e-10
    assert rel_err(layer.weight.grad, tl.weight.grad.numpy()) < 1e-10
    if bias:
        assert rel_err(layer.bias.grad, tl.bias.grad.numpy()) < 1e-10
    assert [n for n, _ in layer.named_parameters()] == [n for n, _ in tl.named_parameters()]


def test_linear_float32_close_to_torch_and_keeps_dtype():
    rng = np.random.default_rng(1)
    layer = Linear(16, 8, rng=2)
    tl = torch_linear(layer)
    x = rng.standard_normal((4, 3, 16))  # float64 in, cast to the layer's float32
    dy = rng.standard_normal((4, 3, 8)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == np.float32
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    yt = tl(xt)
    yt.backward(torch.from_numpy(dy))
    assert rel_err(y, yt.detach().numpy()) < 1e-5
    assert rel_err(dx, xt.grad.numpy()) < 1e-5
    assert rel_err(layer.weight.grad, tl.weight.grad.numpy()) < 1e-5
    assert rel_err(layer.bias.grad, tl.bias.grad.numpy()) < 1e-5


def test_linear_backward_accumulates():
    rng = np.random.default_rng(2)
    layer = Linear(3, 2, dtype=np.float64, rng=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(dy)
    g1, b1 = layer.weight.grad.copy(), layer.bias.grad.copy()
    assert np.abs(g1).sum() > 0
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * g1, rtol=1e-14)
    np.testing.assert_allclose(layer.bias.grad, 2 * b1, rtol=1e-14)
    layer.zero_grad()
    assert not layer.weight.grad.any() and not layer.bias.grad.any()


def test_linear_finite_differences():
    rng = np.random.default_rng(3)
    layer = Linear(4, 3, dtype=np.float64, rng=5)
    x = rng.standard_normal((2, 3, 4))
    r = rng.standard_normal((2, 3, 3))

    def loss():  # L = sum(tanh(y) * r): a non-linear function of every input
        return float(np.sum(np.tanh(layer.forward(x)) * r))

    y = layer.forward(x)
    dx = layer.backward((1 - np.tanh(y) ** 2) * r)
    assert rel_err(dx, numeric_grad(loss, x)) < 1e-7
    assert rel_err(layer.weight.grad, numeric_grad(loss, layer.weight.data)) < 1e-7
    assert rel_err(layer.bias.grad, numeric_grad(loss, layer.bias.data)) < 1e-7


def test_linear_init_like_torch():
    layer = Linear(400, 300, rng=0)
    k = 1 / np.sqrt(400)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= k
        assert np.abs(p).max() > 0.95 * k  # fills the range, not a narrower one
    assert abs(layer.weight.data.std() - k / np.sqrt(3)) < 0.01 * k  # std of U(-k, k)
    # same seed, same weights; different seed, different weights
    np.testing.assert_array_equal(Linear(3, 2, rng=7).weight.data, Linear(3, 2, rng=7).weight.data)
    assert not np.array_equal(Linear(3, 2, rng=7).weight.data, Linear(3, 2, rng=8).weight.data)


def test_linear_bad_inputs():
    layer = Linear(5, 2)
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 5\), got shape \(3, 4\)"):
        layer.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="expected input"):
        layer.forward(np.float32(1.0))
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(2, 2).backward(np.zeros((1, 2)))
    layer.forward(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"expected dy of shape \(3, 2\)"):
        layer.backward(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="float32 or float64"):
        Linear(2, 2, dtype=np.float16)


# ---------------------------------------------------------------------------------------------- Embedding

@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
def test_embedding_matches_torch_float64(padding_idx):
    rng = np.random.default_rng(4)
    emb = Embedding(7, 5, padding_idx=padding_idx, dtype=np.float64, rng=3)
    temb = torch.nn.Embedding(7, 5, padding_idx=padding_idx, dtype=torch.float64)
    temb.load_state_dict({"weight": torch.from_numpy(emb.weight.data.copy())})
    idx = rng.integers(0, 7, size=(4, 6))
    idx[0, :3] = 2  # repeated indices must sum
    idx[1, :] = 6
    dy = rng.standard_normal((4, 6, 5))

    y = emb.forward(idx)
    assert emb.backward(dy) is None
    yt = temb(torch.from_numpy(idx))
    yt.backward(torch.from_numpy(dy))

    assert y.shape == (4, 6, 5)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    assert rel_err(emb.weight.grad, temb.weight.grad.numpy()) < 1e-10
    if padding_idx is not None:
        row = padding_idx % 7
        assert emb.padding_idx == temb.padding_idx == row
        assert not emb.weight.grad[row].any()  # indices hit it, yet no gradient
        assert (idx == row).any()


def test_embedding_init_and_padding_row():
    emb = Embedding(1000, 64, padding_idx=5, rng=0)
    w = emb.weight.data
    assert w.dtype == np.float32 and w.shape == (1000, 64)
    assert not w[5].any()
    others = np.delete(w, 5, axis=0)
    assert abs(others.mean()) < 0.02 and abs(others.std() - 1) < 0.02  # N(0, 1)


def test_embedding_finite_differences():
    rng = np.random.default_rng(5)
    emb = Embedding(5, 3, dtype=np.float64, rng=1)
    idx = np.array([[0, 2, 2], [4, 0, 1]])
    r = rng.standard_normal((2, 3, 3))

    def loss():
        return float(np.sum(np.sin(emb.forward(idx)) * r))

    emb.backward(np.cos(emb.forward(idx)) * r)
    num = numeric_grad(loss, emb.weight.data)
    assert rel_err(emb.weight.grad, num) < 1e-7
    assert not num[3].any() and not emb.weight.grad[3].any()  # row 3 unused


def test_embedding_accumulates_and_float32():
    emb = Embedding(4, 2, rng=0)
    idx = np.array([1, 1, 3])
    emb.forward(idx)
    emb.backward(np.ones((3, 2)))
    emb.backward(np.ones((3, 2)))
    np.testing.assert_array_equal(emb.weight.grad, [[0, 0], [4, 4], [0, 0], [2, 2]])
    assert emb.weight.grad.dtype == np.float32 and emb.forward(idx).dtype == np.float32


def test_embedding_bad_inputs():
    emb = Embedding(10, 4)
    with pytest.raises(ValueError, match=r"index 10 out of range \[0, 10\)"):
        emb.forward(np.array([1, 10, 3]))
    with pytest.raises(ValueError, match=r"index -1 out of range \[0, 10\)"):
        emb.forward(np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="indices must be integers, got dtype float64"):
        emb.forward(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="must be integers"):
        emb.forward(np.array([True, False]))
    with pytest.raises(ValueError, match="padding_idx 10 out of range"):
        Embedding(10, 4, padding_idx=10)
    emb.forward([[1, 2]])  # lists of ints are fine
    with pytest.raises(ValueError, match=r"expected dy of shape \(1, 2, 4\)"):
        emb.backward(np.zeros((1, 2, 3)))
    assert emb.forward(np.zeros((2, 0), dtype=np.int64)).shape == (2, 0, 4)


# ---------------------------------------------------------------------------------------------- Dropout

def test_dropout_eval_and_p0_are_identity():
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    d = Dropout(0.5, rng=0).eval()
    np.testing.assert_array_equal(d.forward(x), x)
    np.testing.assert_array_equal(d.backward(x * 2), x * 2)
    d0 = Dropout(0.0, rng=0)
    assert d0.training
    np.testing.assert_array_equal(d0.forward(x), x)


def test_dropout_training_mask_scaling_and_backward():
    p = 0.3
    x = np.random.default_rng(1).standard_normal((40, 50)).astype(np.float32)
    d = Dropout(p, rng=123)
    y = d.forward(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    dx = d.backward(dy)
    assert not dx[~kept].any()
    np.testing.assert_allclose(dx[kept], dy[kept] / (1 - p), rtol=1e-6)
    # a new forward draws a new mask
    assert not np.array_equal(d.forward(x) != 0, kept)


def test_dropout_statistics_and_seed():
    p = 0.25
    x = np.ones(200_000)
    y = Dropout(p, rng=0).forward(x)
    assert abs(y.mean() - 1.0) < 0.01  # expectation preserved (std of the mean ~ 0.0013)
    assert abs((y == 0).mean() - p) < 0.01
    np.testing.assert_array_equal(Dropout(p, rng=7).forward(x[:100]), Dropout(p, rng=7).forward(x[:100]))


def test_dropout_p_bounds():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            Dropout(bad)
    d = Dropout(1.0, rng=0)  # torch's choice: everything dropped, no nan
    y = d.forward(np.ones((2, 3)))
    assert not y.any() and np.isfinite(y).all()
    assert not d.backward(np.ones((2, 3))).any()
