"""The forecasting losses of the scratch engine (losses.mae, pinball, gaussian_nll, softplus): their values
against closed forms and torch, their gradients by finite differences, the pinball loss's minimiser."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.scratch import losses
from gradcheck import numeric_grad

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from rnnkit.torch.forecaster import gaussian_nll as torch_gaussian_nll  # noqa: E402
from rnnkit.torch.forecaster import pinball as torch_pinball  # noqa: E402

shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**16)


def t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=seeds, q=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4, unique=True))
def test_pinball_closed_form_torch_and_gradient(shape, seed, q):
    q = sorted(q)
    rng = np.random.default_rng(seed)
    target, pred = rng.normal(size=shape), rng.normal(size=(*shape, len(q)))
    loss, grad = losses.pinball(pred, target, q)
    closed = np.mean([max(qk * (y - p), (qk - 1) * (y - p))            # one term at a time
                      for y, row in zip(target.ravel(), pred.reshape(-1, len(q))) for qk, p in zip(q, row)])
    assert loss == pytest.approx(closed, rel=1e-12)
    assert loss == pytest.approx(torch_pinball(t(pred), t(target), t(q)).item(), rel=1e-12)
    assert losses.pinball(pred, target, q, "sum")[0] == pytest.approx(loss * pred.size, rel=1e-12)
    numeric = numeric_grad(lambda: losses.pinball(pred, target, q)[0], pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("q", [0.05, 0.25, 0.5, 0.8, 0.975])
def test_pinball_minimiser_is_the_empirical_quantile(q):
    """mean_i pinball(c; y_i) is convex and piecewise linear in c with kinks at the y_i: its minimum over all c is
    at the sample's inverted-CDF q-quantile (n q not an integer: a unique minimiser)."""
    y = np.random.default_rng(0).standard_exponential(101)    # skewed, so quantiles differ from mean ± k sd
    loss_at = [losses.pinball(np.full((101, 1), c), y, [q])[0] for c in y]
    best = y[int(np.argmin(loss_at))]
    assert best == np.quantile(y, q, method="inverted_cdf")
    grid = np.linspace(y.min() - 1, y.max() + 1, 2001)      # and no point between the samples does better
    assert min(losses.pinball(np.full((101, 1), c), y, [q])[0] for c in grid) >= min(loss_at) - 1e-15
    # the subgradient changes sign there: the fraction of samples below the minimiser crosses q
    assert np.mean(y < best) < q < np.mean(y <= best)


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=seeds)
def test_gaussian_nll_against_torch_and_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    mean, target = rng.normal(size=shape), rng.normal(size=shape)
    scale = rng.uniform(0.2, 2.0, size=shape)
    loss, (d_mean, d_scale) = losses.gaussian_nll(mean, scale, target)
    reference = torch.nn.GaussianNLLLoss(full=True)(t(mean), t(target), t(scale) ** 2).item()
    assert loss == pytest.approx(reference, rel=1e-12)
    formula = np.mean(0.5 * np.log(2 * np.pi * scale**2) + (target - mean) ** 2 / (2 * scale**2))
    assert loss == pytest.approx(formula, rel=1e-12)
    assert loss == pytest.approx(torch_gaussian_nll(t(mean), t(scale), t(target)).item(), rel=1e-12)
    np.testing.assert_allclose(d_mean, numeric_grad(lambda: losses.gaussian_nll(mean, scale, target)[0], mean),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d_scale, numeric_grad(lambda: losses.gaussian_nll(mean, scale, target)[0], scale),
                               rtol=1e-6, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=seeds)
def test_mae_against_torch_and_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=shape), rng.normal(size=shape)
    loss, grad = losses.mae(pred, target)
    tp = t(pred).requires_grad_()
    reference = F.l1_loss(tp, t(target))
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(lambda: losses.mae(pred, target)[0], pred), rtol=1e-6)
    assert losses.mae(pred, target, "sum")[0] == pytest.approx(np.abs(pred - target).sum(), rel=1e-12)
    assert losses.mae(pred, pred)[1].sum() == 0                   # sign(0) = 0, as torch


def test_softplus_and_its_gradient_match_torch():
    x = np.concatenate([np.linspace(-40, 40, 161), [19.999, 20.0, 20.001, 700.0, -800.0]])
    tx = t(x).requires_grad_()
    y = F.softplus(tx)
    y.sum().backward()
    np.testing.assert_allclose(losses.softplus(x), y.detach().numpy(), rtol=1e-14, atol=0)
    np.testing.assert_allclose(losses.softplus_grad(x), tx.grad.numpy(), rtol=1e-14, atol=0)
    inner, eps = np.linspace(-12, 12, 49), 1e-6                      # elementwise central differences
    numeric = (losses.softplus(inner + eps) - losses.softplus(inner - eps)) / (2 * eps)
    np.testing.assert_allclose(losses.softplus_grad(inner), numeric, rtol=1e-6)
    assert np.all(losses.softplus(x) >= 0) and np.isfinite(losses.softplus(x)).all()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="pinball: pred shape"):
        losses.pinball(np.zeros((2, 3)), np.zeros(2), [0.1, 0.5])
    with pytest.raises(ValueError, match="gaussian_nll: scale shape"):
        losses.gaussian_nll(np.zeros(2), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match="mae: pred shape"):
        losses.mae(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        losses.mae(np.zeros(2), np.zeros(2), "none")
