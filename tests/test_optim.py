"""Optimisers and clipping of the scratch engine against torch.optim, step for step."""
import math

import numpy as np
import pytest
import torch

from rnnkit.scratch import optim
from rnnkit.scratch.module import Parameter

SHAPES = [(3, 4), (5,), (1,)]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def make_values(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def quad_grads(values):
    """Gradient of f(p) = sum_k 0.5 p^T A_k p + b_k . p + 0.3 sum sin(3 p): changes with p every step."""
    grads = []
    for k, v in enumerate(values):
        rng = np.random.default_rng(100 + k)
        n = v.size
        m = rng.standard_normal((n, n))
        a = m @ m.T / n + np.eye(n)
        b = rng.standard_normal(n)
        x = v.reshape(-1)
        grads.append((a @ x + b + 0.9 * np.cos(3 * x)).reshape(v.shape))
    return grads


def run_ours(make_opt, values, steps, lr_at=None):
    params = [Parameter(v.copy()) for v in values]
    opt = make_opt(params)
    for t in range(steps):
        if lr_at is not None:
            opt.lr = lr_at(t)
        opt.zero_grad()
        for p, g in zip(params, quad_grads([p.data for p in params])):
            p.grad += g
        opt.step()
    return params, opt


def run_torch(make_opt, values, steps, lr_at=None):
    params = [torch.tensor(v, requires_grad=True) for v in values]
    opt = make_opt(params)
    for t in range(steps):
        if lr_at is not None:
            opt.param_groups[0]["lr"] = lr_at(t)
        opt.zero_grad()
        for p, g in zip(params, quad_grads([p.detach().numpy() for p in params])):
            p.grad = torch.from_numpy(g)
        opt.step()
    return [p.detach().numpy() for p in params]


CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.05)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.2, amsgrad=True)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in CASES])
def test_optimizer_matches_torch(name, kw):
    values = make_values()
    ours, _ = run_ours(lambda ps: getattr(optim, name)(ps, **kw), values, 10)
    theirs = run_torch(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw), values, 10)
    for p, t, v in zip(ours, theirs, values):
        assert np.abs(t - v).max() > 1e-3  # the parameters really moved
        assert rel_err(p.data, t) < 1e-10


def test_mutable_lr_matches_torch():
    values = make_values(1)
    lr_at = lambda t: 0.1 / (1 + t)  # noqa: E731
    ours, _ = run_ours(lambda ps: optim.Adam(ps, lr=1.0), values, 10, lr_at)
    theirs = run_torch(lambda ps: torch.optim.Adam(ps, lr=1.0, foreach=False), values, 10, lr_at)
    for p, t in zip(ours, theirs):
        assert rel_err(p.data, t) < 1e-10


def test_adamw_defaults_like_torch():
    p = [Parameter(np.zeros(2))]
    a, t = optim.AdamW(p), torch.optim.AdamW([torch.zeros(2)])
    g = t.param_groups[0]
    assert (a.lr, a.betas, a.eps, a.weight_decay, a.amsgrad) == (g["lr"], g["betas"], g["eps"], g["weight_decay"], False)


def test_float32_parameters_stay_float32():
    params = [Parameter(np.ones((2, 3), np.float32))]
    for opt in (optim.SGD(params, lr=0.1, momentum=0.9), optim.Adam(params, weight_decay=0.1),
                optim.AdamW(params, amsgrad=True)):
        params[0].grad[...] = 0.5
        opt.step()
        assert params[0].data.dtype == np.float32 and params[0].data.shape == (2, 3)
        assert all(v.dtype == np.float32 for k, v in opt.state_dict().items() if k.startswith("state."))


@pytest.mark.parametrize("name,kw", [CASES[2], CASES[4], CASES[8], CASES[10]])
def test_state_dict_round_trip_continues_identically(name, kw):
    values = make_values(2)
    params, opt = run_ours(lambda ps: getattr(optim, name)(ps, **kw), values, 5)
    sd = opt.state_dict()
    for k, v in sd.items():  # plain numbers and arrays only
        assert isinstance(v, (int, float, bool, np.ndarray)), (k, type(v))
    assert sd["step"] == 5 and sd["lr"] == kw["lr"]

    # a fresh optimizer with other hyperparameters takes everything from the state dict
    params2 = [Parameter(p.data.copy()) for p in params]
    opt2 = getattr(optim, name)(params2, lr=123.0)
    opt2.load_state_dict(sd)
    assert opt2.lr == kw["lr"] and opt2.step_count == 5
    for _ in range(5):
        for ps, o in ((params, opt), (params2, opt2)):
            o.zero_grad()
            for p, g in zip(ps, quad_grads([p.data for p in ps])):
                p.grad += g
            o.step()
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data)
    # and the continued run equals 10 uninterrupted torch steps
    theirs = run_torch(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw), values, 10)
    for p, t in zip(params, theirs):
        assert rel_err(p.data, t) < 1e-10
    # the state dict was a copy, not a view of the live state
    key = next(k for k in sd if k.startswith("state."))
    assert not np.array_equal(sd[key], opt.state_dict()[key])


def test_load_state_dict_errors():
    opt = optim.Adam([Parameter(np.zeros(3))])
    opt.step()
    sd = opt.state_dict()
    other = optim.Adam([Parameter(np.zeros(4))])
    with pytest.raises(ValueError, match=r"state.0.exp_avg: shape \(3,\) does not match"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError, match="missing"):
        opt.load_state_dict({k: v for k, v in sd.items() if k != "step"})
    with pytest.raises(ValueError, match="only 1 parameters"):
        opt.load_state_dict({**sd, "state.3.exp_avg": np.zeros(3)})


def test_optimizer_argument_errors():
    p = [Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=">= 0"):
        optim.AdamW(p, lr=-1.0)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="expected Parameters"):
        optim.SGD([np.zeros(2)], lr=0.1)


def test_zero_grad_and_iterables():
    params = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    opt = optim.SGD(iter(params), lr=0.5)  # any iterable, e.g. model.parameters()
    for p in params:
        p.grad += 2.0
    opt.step()
    np.testing.assert_array_equal(params[0].data, np.zeros(3))
    opt.zero_grad()
    assert not any(p.grad.any() for p in params)


# ---------------------------------------------------------------------------------------------- clipping

def grads_pair(scale, seed=3):
    rng = np.random.default_rng(seed)
    gs = [rng.standard_normal(s) * scale for s in SHAPES]
    ours = [Parameter(np.zeros(s)) for s in SHAPES]
    theirs = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, t, g in zip(ours, theirs, gs):
        p.grad[...] = g
        t.grad = torch.tensor(g)
    return ours, theirs, gs


@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ours, theirs, gs = grads_pair(2.0)
    total = optim.clip_grad_norm(ours, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=False).item()
    assert isinstance(total, float)
    assert abs(total - ttotal) <= 1e-12 * ttotal
    clipped = total > max_norm
    assert clipped == (max_norm == 0.5)
    for p, t, g in zip(ours, theirs, gs):
        assert rel_err(p.grad, t.grad.numpy()) < 1e-12
        if not clipped:
            np.testing.assert_array_equal(p.grad, g)
    if clipped:  # the new norm is max_norm (up to the 1e-6)
        new = optim.clip_grad_norm(ours, 1e9, norm_type)
        assert abs(new - max_norm) < 1e-5


def test_clip_grad_norm_nonfinite():
    ours, theirs, _ = grads_pair(1.0)
    ours[1].grad[2] = np.nan
    theirs[1].grad[2] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm(ours, 1.0, error_if_nonfinite=True)
    total = optim.clip_grad_norm(ours, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, 1.0, foreach=False).item()
    assert math.isnan(total) and math.isnan(ttotal)
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(np.isnan(p.grad), torch.isnan(t.grad).numpy())
    single = Parameter(np.zeros(3))  # a single Parameter works too
    single.grad[...] = 4.0
    assert optim.clip_grad_norm(single, 1.0) == pytest.approx(math.sqrt(48), rel=1e-14)
    np.testing.assert_allclose(np.linalg.norm(single.grad), 1.0, rtol=1e-5)


def test_clip_grad_value_matches_torch():
    ours, theirs, _ = grads_pair(3.0)
    optim.clip_grad_value(ours, 1.5)
    torch.nn.utils.clip_grad_value_(theirs, 1.5, foreach=False)
    for p, t in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert max(np.abs(p.grad).max() for p in ours) == 1.5


# ---------------------------------------------------------------------------------------------- lr changes

def test_scheduled_adam_matches_torch():
    """Adam's lr changed between steps on both sides (as train.py's schedule does) gives the same parameters."""
    values = make_values(4)
    params = [Parameter(v.copy()) for v in values]
    opt = optim.Adam(params, lr=0.1)
    tparams = [torch.tensor(v, requires_grad=True) for v in values]
    topt = torch.optim.Adam(tparams, lr=0.1, foreach=False)
    for step in range(8):
        opt.lr = topt.param_groups[0]["lr"] = 0.1 * 0.7 ** (step // 2)  # a step decay
        opt.zero_grad()
        for p, g in zip(params, quad_grads([p.data for p in params])):
            p.grad += g
        opt.step()
        for p, g in zip(tparams, quad_grads([p.detach().numpy() for p in tparams])):
            p.grad = torch.from_numpy(g)
        topt.step()
    for p, t in zip(params, tparams):
        assert rel_err(p.data, t.detach().numpy()) < 1e-10
