"""The textbook cells (rnnkit.scratch.cells) against torch.nn's cells and layers, and finite differences.

One step: outputs and every gradient (dx, dh_prev, dc_prev, dW_ih, dW_hh, db_ih, db_hh) must match
torch.nn.RNNCell / LSTMCell / GRUCell with copied weights in float64 to rtol 1e-9, on shapes drawn by
hypothesis, with and without biases. gates_x and gates_h are checked per sample: for sample b alone they are
torch's gradients of b_ih and b_hh. A few steps chained by hand (BPTT) must match torch.nn.RNN / LSTM / GRU.
"""
import numpy as np
import pytest
from gradcheck import numeric_grad
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from rnnkit.scratch.cells import CELLS, GATES, StepGrads, lstm  # noqa: E402

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
PARAMS = ["w_ih", "w_hh", "b_ih", "b_hh"]
TORCH_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
SHAPES = dict(batch=st.integers(1, 8), inputs=st.integers(1, 10), hidden=st.integers(1, 12),
              seed=st.integers(0, 2**32 - 1))


def close(actual, desired):
    assert actual.shape == desired.shape and actual.dtype == desired.dtype
    np.testing.assert_allclose(actual, desired, rtol=1e-9, atol=1e-12)


def make_params(kind, inputs, hidden, bias, rng, dtype=np.float64):
    g = GATES[kind]
    p = {"w_ih": rng.standard_normal((g * hidden, inputs)), "w_hh": rng.standard_normal((g * hidden, hidden)),
         "b_ih": rng.standard_normal(g * hidden) if bias else None,
         "b_hh": rng.standard_normal(g * hidden) if bias else None}
    return {k: None if v is None else (0.5 * v).astype(dtype) for k, v in p.items()}


def step(kind, x, h, c, p):
    """One forward step → (outputs, cache); outputs (h,) or, for the LSTM, (h, c)."""
    if kind == "lstm":
        h, c, cache = lstm.forward(x, h, c, **p)
        return (h, c), cache
    extra = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    h, cache = CELLS[kind].forward(x, h, **p, **extra)
    return (h,), cache


def step_back(kind, d_outs, cache) -> StepGrads:
    return lstm.backward(*d_outs, cache) if kind == "lstm" else CELLS[kind].backward(d_outs[0], cache)


def torch_module(kind, inputs, hidden, p, layer=False):
    """torch.nn.{RNN,LSTM,GRU}Cell (or the one-layer, batch_first module) holding a copy of p, float64."""
    bias = p["b_ih"] is not None
    base = {"lstm": "LSTM", "gru": "GRU"}.get(kind, "RNN")
    kw = {"nonlinearity": kind[4:]} if base == "RNN" else {}
    if layer:
        module, suffix = getattr(torch.nn, base)(inputs, hidden, bias=bias, batch_first=True, **kw), "_l0"
    else:
        module, suffix = getattr(torch.nn, base + "Cell")(inputs, hidden, bias=bias, **kw), ""
    module = module.double()
    with torch.no_grad():
        for name in PARAMS:
            if p[name] is not None:
                getattr(module, TORCH_NAMES[name] + suffix).copy_(torch.from_numpy(p[name]))
    return module, suffix


def draw(kind, batch, inputs, hidden, rng):
    x, h, c = (rng.standard_normal(s) for s in [(batch, inputs), (batch, hidden), (batch, hidden)])
    d_outs = [rng.standard_normal((batch, hidden)) for _ in range(2 if kind == "lstm" else 1)]
    return x, h, (c if kind == "lstm" else None), d_outs


# --------------------------------------------------------------------------------------------------------
# One step vs torch.nn.*Cell
# --------------------------------------------------------------------------------------------------------

def torch_cell_run(cell, kind, x, h, c, d_outs):
    """Outputs and the gradients of sum(d_outs ⊙ outputs) w.r.t. x, h, c and the cell's parameters."""
    xt, ht, ct = (None if a is None else torch.tensor(a, requires_grad=True) for a in (x, h, c))
    cell.zero_grad()
    outs = cell(xt, (ht, ct)) if kind == "lstm" else (cell(xt, ht),)
    sum((o * torch.from_numpy(d)).sum() for o, d in zip(outs, d_outs)).backward()
    grads = {"x": xt.grad, "h_prev": ht.grad, "c_prev": None if ct is None else ct.grad}
    grads.update({n: None if getattr(cell, TORCH_NAMES[n]) is None else getattr(cell, TORCH_NAMES[n]).grad
                  for n in PARAMS})
    return [o.detach().numpy() for o in outs], {k: None if v is None else v.numpy() for k, v in grads.items()}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(**SHAPES)
def test_step_matches_torch_cell(kind, bias, batch, inputs, hidden, seed):
    rng = np.random.default_rng(seed)
    p = make_params(kind, inputs, hidden, bias, rng)
    x, h, c, d_outs = draw(kind, batch, inputs, hidden, rng)
    cell, _ = torch_module(kind, inputs, hidden, p)

    outs, cache = step(kind, x, h, c, p)
    grads = step_back(kind, d_outs, cache)
    outs_t, grads_t = torch_cell_run(cell, kind, x, h, c, d_outs)

    for o, o_t in zip(outs, outs_t, strict=True):
        close(o, o_t)
    for name, g_t in grads_t.items():
        g = getattr(grads, name)
        assert (g is None) == (g_t is None), name
        if g is not None:
            close(g, g_t)
    g_rows = GATES[kind] * hidden
    assert grads.gates_x.shape == grads.gates_h.shape == (batch, g_rows)
    if bias:  # for sample b alone, dL/db_ih = gates_x[b] and dL/db_hh = gates_h[b]
        for b in range(batch):
            c_b = None if c is None else c[b:b + 1]
            _, g_b = torch_cell_run(cell, kind, x[b:b + 1], h[b:b + 1], c_b, [d[b:b + 1] for d in d_outs])
            close(grads.gates_x[b], g_b["b_ih"])
            close(grads.gates_h[b], g_b["b_hh"])


# --------------------------------------------------------------------------------------------------------
# A short sequence, BPTT by hand, vs torch.nn.RNN / LSTM / GRU
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=10, deadline=None)
@given(time=st.integers(3, 5), **SHAPES)
def test_chained_steps_match_torch_layer(kind, bias, time, batch, inputs, hidden, seed):
    rng = np.random.default_rng(seed)
    p = make_params(kind, inputs, hidden, bias, rng)
    xs = rng.standard_normal((batch, time, inputs))
    _, h0, c0, (d_hn, *d_cn) = draw(kind, batch, inputs, hidden, rng)
    d_out = rng.standard_normal((batch, time, hidden))

    h, c, caches, out = h0, c0, [], np.empty((batch, time, hidden))
    for t in range(time):
        outs, cache = step(kind, xs[:, t], h, c, p)
        h, c = outs[0], outs[-1] if kind == "lstm" else None
        out[:, t] = h
        caches.append(cache)
    dh, dc = d_hn, (d_cn[0] if kind == "lstm" else None)
    dx, dp = np.empty_like(xs), {n: None if p[n] is None else np.zeros_like(p[n]) for n in PARAMS}
    for t in reversed(range(time)):
        g = step_back(kind, (d_out[:, t] + dh, dc), caches[t])
        dx[:, t], dh, dc = g.x, g.h_prev, g.c_prev
        for n in PARAMS:
            if dp[n] is not None:
                dp[n] += getattr(g, n)

    layer, suffix = torch_module(kind, inputs, hidden, p, layer=True)
    xt = torch.tensor(xs, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    c0t = torch.tensor(c0[None], requires_grad=True) if kind == "lstm" else None
    out_t, state_t = layer(xt, (h0t, c0t) if kind == "lstm" else h0t)
    states_t = state_t if kind == "lstm" else (state_t,)
    d_states = [d_hn] + (d_cn if kind == "lstm" else [])
    loss = (out_t * torch.from_numpy(d_out)).sum()
    loss = loss + sum((s[0] * torch.from_numpy(d)).sum() for s, d in zip(states_t, d_states))
    loss.backward()

    close(out, out_t.detach().numpy())
    close(h, states_t[0][0].detach().numpy())
    close(dx, xt.grad.numpy())
    close(dh, h0t.grad[0].numpy())
    if kind == "lstm":
        close(c, states_t[1][0].detach().numpy())
        close(dc, c0t.grad[0].numpy())
    for n in PARAMS:
        param = getattr(layer, TORCH_NAMES[n] + suffix, None)
        if dp[n] is None:
            assert param is None
        else:
            close(dp[n], param.grad.numpy())


# --------------------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------------------

def assert_fd_close(analytic, numeric, tol=1e-6):
    assert np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-3) < tol


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_step_finite_differences(kind, bias):
    rng = np.random.default_rng(KINDS.index(kind) + 10 * bias)
    batch, inputs, hidden = 3, 4, 5
    p = make_params(kind, inputs, hidden, bias, rng)
    x, h, c, d_outs = draw(kind, batch, inputs, hidden, rng)

    def loss(rows=slice(None)):  # sum(d_outs ⊙ outputs) over the samples `rows`
        outs, _ = step(kind, x, h, c, p)
        return float(sum((o[rows] * d[rows]).sum() for o, d in zip(outs, d_outs)))

    grads = step_back(kind, d_outs, step(kind, x, h, c, p)[1])
    for name, a in [("x", x), ("h_prev", h), ("c_prev", c)] + [(n, p[n]) for n in PARAMS]:
        if a is None:
            assert getattr(grads, name) is None, name
        else:
            assert_fd_close(getattr(grads, name), numeric_grad(loss, a))
    if bias:  # gates_x[b], gates_h[b]: the bias gradients of sample b's loss alone
        for b in range(batch):
            loss_b = lambda b=b: loss(slice(b, b + 1))  # noqa: E731
            assert_fd_close(grads.gates_x[b], numeric_grad(loss_b, p["b_ih"]))
            assert_fd_close(grads.gates_h[b], numeric_grad(loss_b, p["b_hh"]))


# --------------------------------------------------------------------------------------------------------
# dtype, and the tests' power to fail
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_stays_float32(kind, bias):
    rng = np.random.default_rng(3)
    p = make_params(kind, 4, 5, bias, rng, dtype=np.float32)
    x, h, c, d_outs = draw(kind, 2, 4, 5, rng)
    x, h, c = (None if a is None else a.astype(np.float32) for a in (x, h, c))
    d_outs = [d.astype(np.float32) for d in d_outs]
    outs, cache = step(kind, x, h, c, p)
    grads = step_back(kind, d_outs, cache)
    assert all(o.dtype == np.float32 for o in outs)
    for name in ["x", "h_prev", "c_prev", "gates_x", "gates_h"] + PARAMS:
        g = getattr(grads, name)
        assert g is None or g.dtype == np.float32, name
    # and the same numbers as float64, to float32 precision
    outs64, _ = step(kind, x.astype(np.float64), h.astype(np.float64), None if c is None else c.astype(np.float64),
                     {n: None if v is None else v.astype(np.float64) for n, v in p.items()})
    for o, o64 in zip(outs, outs64):
        np.testing.assert_allclose(o, o64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind, a, b", [("lstm", 0, 1), ("lstm", 2, 3), ("gru", 0, 1)])
def test_swapped_gate_blocks_are_caught(kind, a, b):
    """The torch comparison is sharp enough to see two gate blocks swapped in the weights."""
    rng = np.random.default_rng(4)
    inputs, hidden = 3, 4
    p = make_params(kind, inputs, hidden, True, rng)
    x, h, c, d_outs = draw(kind, 2, inputs, hidden, rng)
    order = list(range(GATES[kind]))
    order[a], order[b] = b, a
    swapped = {n: np.concatenate([np.split(w, GATES[kind])[k] for k in order]) for n, w in p.items()}
    cell, _ = torch_module(kind, inputs, hidden, swapped)
    outs, _ = step(kind, x, h, c, p)
    outs_t, _ = torch_cell_run(cell, kind, x, h, c, d_outs)
    assert not np.allclose(outs[0], outs_t[0], rtol=1e-9, atol=1e-12)
