"""cross_entropy, mse, softmax helpers of the scratch engine against PyTorch and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.scratch.losses import cross_entropy, log_softmax, mse, softmax


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def torch_ce(logits, targets, **kw):
    """torch's loss and gradient for class-last logits (..., C) (torch wants the classes on dim 1)."""
    x = torch.tensor(logits, requires_grad=True)
    w = kw.pop("weight", None)
    xin = x if x.dim() <= 2 else x.movedim(-1, 1)
    loss = F.cross_entropy(xin, torch.as_tensor(targets), weight=None if w is None else torch.tensor(w), **kw)
    loss.backward()
    return loss.item(), x.grad.numpy()


def check_ce(logits, targets, **kw):
    loss, grad = cross_entropy(logits, targets, **kw)
    tloss, tgrad = torch_ce(logits, targets, **kw)
    assert isinstance(loss, float) and grad.shape == logits.shape and grad.dtype == logits.dtype
    assert abs(loss - tloss) <= 1e-10 * abs(tloss), (loss, tloss)
    # each entry is (softmax - target)·(its row's share of the loss): in a saturated row the two cancel, and
    # what is left (1e-7, say) carries the roundings of numbers near 1, about 1e-16 (1e-9 of itself); so the
    # bound is relative to the largest entry plus 64 roundings of the largest row share
    err = np.abs(grad - tgrad).max()
    assert err <= 1e-10 * np.abs(tgrad).max() + 64 * np.finfo(np.float64).eps * row_share(targets, **kw), err
    return loss, grad


def row_share(targets, weight=None, reduction="mean", ignore_index=-100, **_) -> float:
    """The largest factor a row's (softmax - target) takes in the gradient: its class weight, over the
    counted targets' total weight for the mean."""
    targets = np.asarray(targets)
    counted = targets[targets != ignore_index]
    w = np.ones(int(max(targets.max(), 0)) + 1) if weight is None else np.asarray(weight)
    total = w[counted].sum() if reduction == "mean" else 1.0
    return float(w.max() / total) if total > 0 else 0.0


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_2d_matches_torch(reduction, label_smoothing, weighted, ignore):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((12, 6)) * 3
    targets = rng.integers(0, 6, 12)
    if ignore:
        targets[[1, 4, 5]] = -100
    weight = rng.uniform(0.2, 2.0, 6) if weighted else None
    check_ce(logits, targets, reduction=reduction, label_smoothing=label_smoothing, weight=weight)


def test_cross_entropy_3d_and_custom_ignore_index():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 5, 4))  # (batch, time, C)
    targets = rng.integers(0, 4, (3, 5))
    targets[0, 3:] = 7  # padded steps
    targets[2, 4] = 7
    loss, grad = check_ce(logits, targets, ignore_index=7, label_smoothing=0.2, weight=np.array([1.0, 2, 3, 0.5]))
    assert not grad[0, 3:].any() and not grad[2, 4].any()
    # same as flattening to (N, C)
    loss2, grad2 = cross_entropy(logits.reshape(-1, 4), targets.reshape(-1), ignore_index=7, label_smoothing=0.2,
                                 weight=np.array([1.0, 2, 3, 0.5]))
    assert abs(loss - loss2) < 1e-14
    np.testing.assert_allclose(grad2.reshape(grad.shape), grad, rtol=0, atol=1e-16)


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    C=st.integers(1, 7),
    reduction=st.sampled_from(["mean", "sum"]),
    label_smoothing=st.sampled_from([0.0, 0.05, 0.3]),
    weighted=st.booleans(),
    ignore_frac=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_cross_entropy_hypothesis_matches_torch(lead, C, reduction, label_smoothing, weighted, ignore_frac, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((*lead, C)) * rng.uniform(0.1, 10)
    targets = rng.integers(0, C, lead)
    targets[rng.random(lead) < ignore_frac] = -100
    targets.reshape(-1)[0] = rng.integers(0, C)  # at least one counted target
    weight = rng.uniform(0.1, 3.0, C) if weighted else None
    check_ce(logits, targets, reduction=reduction, label_smoothing=label_smoothing, weight=weight)


def test_cross_entropy_finite_differences():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 5))
    targets = np.array([[0, 4, -100], [2, 2, 1]])
    kw = dict(label_smoothing=0.15, weight=rng.uniform(0.5, 2.0, 5))
    _, grad = cross_entropy(logits, targets, **kw)
    num = np.zeros_like(logits)
    h = 1e-6
    for i in np.ndindex(logits.shape):
        old = logits[i]
        logits[i] = old + h
        fp = cross_entropy(logits, targets, **kw)[0]
        logits[i] = old - h
        fm = cross_entropy(logits, targets, **kw)[0]
        logits[i] = old
        num[i] = (fp - fm) / (2 * h)
    assert rel_err(grad, num) < 1e-7
    assert not grad[0, 2].any()


def test_cross_entropy_all_ignored_and_zero_weight_match_torch():
    logits = np.random.default_rng(3).standard_normal((4, 3))
    targets = np.full(4, -100)
    for kw in (dict(), dict(label_smoothing=0.1), dict(weight=np.ones(3))):
        loss, grad = cross_entropy(logits, targets, **kw)
        tloss, tgrad = torch_ce(logits, targets, **kw)
        assert np.isnan(loss) and np.isnan(tloss)
        np.testing.assert_array_equal(grad, tgrad)
        assert not grad.any()
        assert cross_entropy(logits, targets, reduction="sum", **kw) == (0.0, pytest.approx(np.zeros((4, 3))))
    # weights of zero on every counted target: torch gives nan in the counted rows, zeros in the ignored
    targets = np.array([0, 0, -100, 0])
    loss, grad = cross_entropy(logits, targets, weight=np.array([0.0, 1, 1]))
    tloss, tgrad = torch_ce(logits, targets, weight=np.array([0.0, 1, 1]))
    assert np.isnan(loss) and np.isnan(tloss)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(tgrad))
    assert not grad[2].any()


def test_cross_entropy_stable_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [800.0, 799.0, -1e5]])
    targets = np.array([1, 0])
    loss, grad = check_ce(logits, targets)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss > 1e3  # -log p of a class 2e4 below the best


def test_cross_entropy_float32():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((8, 10)).astype(np.float32)
    targets = rng.integers(0, 10, 8)
    loss, grad = cross_entropy(logits, targets, label_smoothing=0.1)
    assert grad.dtype == np.float32
    tloss, tgrad = torch_ce(logits, targets, label_smoothing=0.1)
    assert abs(loss - tloss) < 1e-5 * abs(tloss)
    assert rel_err(grad, tgrad) < 1e-5


def test_cross_entropy_errors():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"target 3 out of range \[0, 3\)"):
        cross_entropy(logits, np.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"target -2 out of range \[0, 3\)"):
        cross_entropy(logits, np.array([0, -2, -100, 2]))
    with pytest.raises(ValueError, match=r"targets shape \(5,\) does not match logits shape \(4, 3\)"):
        cross_entropy(logits, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="targets must be integers"):
        cross_entropy(logits, np.zeros(4))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        cross_entropy(logits, np.zeros(4, dtype=int), weight=np.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(logits, np.zeros(4, dtype=int), reduction="none")
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, np.zeros(4, dtype=int), label_smoothing=1.5)
    bad = logits.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="nan or inf"):
        cross_entropy(bad, np.zeros(4, dtype=int), check_finite=True)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="nan or inf"):
        cross_entropy(bad, np.zeros(4, dtype=int), check_finite=True)


# ---------------------------------------------------------------------------------------------- helpers, mse

@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_helpers_match_torch(axis):
    x = np.random.default_rng(5).standard_normal((3, 4, 5)) * 50
    x[0, 0, 0] = 1e5
    xt = torch.from_numpy(x)
    assert rel_err(log_softmax(x, axis=axis), torch.log_softmax(xt, dim=axis).numpy()) < 1e-12
    s = softmax(x, axis=axis)
    assert rel_err(s, torch.softmax(xt, dim=axis).numpy()) < 1e-12
    np.testing.assert_allclose(s.sum(axis=axis), 1.0, rtol=1e-14)
    assert softmax(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(6)
    pred, target = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    loss, grad = mse(pred, target, reduction=reduction)
    p = torch.tensor(pred, requires_grad=True)
    tl = F.mse_loss(p, torch.from_numpy(target), reduction=reduction)
    tl.backward()
    assert abs(loss - tl.item()) <= 1e-12 * tl.item()
    assert rel_err(grad, p.grad.numpy()) < 1e-12


def test_mse_errors_and_dtype():
    with pytest.raises(ValueError, match=r"pred shape \(3,\) does not match target shape \(3, 1\)"):
        mse(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="reduction"):
        mse(np.zeros(3), np.zeros(3), reduction="max")
    loss, grad = mse(np.ones(4, np.float32), np.zeros(4))
    assert loss == 1.0 and grad.dtype == np.float32
    np.testing.assert_array_equal(grad, np.full(4, 0.5))
