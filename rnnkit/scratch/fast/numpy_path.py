"""The NumPy path: RNN, LSTM and GRU over a sequence on steps.py's in-place steps, for any batch and dtype.

For every cell: the input half of every gate for all steps is one GEMM before the loop
(`input_projection`); inside the loop only the step (its product h_{t-1} W_hh^T and the gate arithmetic,
on preallocated arrays); at step t only the first active[t] rows, the sequences still running.
Backward computes the derivative factors for a block of steps at a time (`blocks_backwards`): one NumPy
call per block instead of one per step, while the block stays small enough to live in the CPU cache.

forward(p, inputs, h0, c0, active, xw=None) -> Trace
    p: packing.Packed; inputs (T, B, I) time-major; h0, c0 (B, H) (c0 None but for the LSTM);
    active: rows running at each step; xw (T, B, G*H): a folded layer's input projection, looked up
    already (inputs is None then, and there is no backward).
backward(p, trace, d_out (T, B, H), dh_n (B, H), dc_n, active) -> (gates_x, gates_h, dh0, dc0)
    gates_x, gates_h (G*H, T*B): the pre-activation gradients of the input and the hidden side (one array
    for the RNN and the LSTM), packed row order.
"""
from __future__ import annotations

import numpy as np

from . import steps
from .trace import Trace, by_rows, final_rows

# Below this share of real (not padding) steps, the input projection gathers the real rows first.
DENSE_ENOUGH = 0.8
# Backward's blocks of steps hold about this many elements of the factors.
BLOCK_ELEMENTS = 1 << 16


def input_projection(inputs: np.ndarray, p, active) -> np.ndarray:
    """xw = x W_ih^T + b for all steps at once, one GEMM: inputs (T, B, I) → (T, B, G*H), halved rows.

    Only the running rows xw[t, :active[t]] are computed when padding is a large share of the batch (the
    steps never read the rest, which is left uninitialised).
    """
    time, batch, _ = inputs.shape
    if sum(active) >= DENSE_ENOUGH * time * batch:
        xw = (inputs.reshape(time * batch, -1) @ p.w_ih_t).reshape(time, batch, -1)
        xw += p.bias
        return xw
    running = np.arange(batch)[None, :] < np.asarray(active)[:, None]  # (T, B)
    xw = np.empty((time, batch, p.w_ih_half.shape[0]), dtype=inputs.dtype)
    projected = inputs[running] @ p.w_ih_t
    projected += p.bias
    xw[running] = projected
    return xw


def blocks_backwards(time: int, row_elements: int):
    """(start, stop) blocks covering range(time), last block first."""
    size = max(1, BLOCK_ELEMENTS // max(1, row_elements))
    for start in reversed(range(0, time, size)):
        yield start, min(start + size, time)


# ------------------------------------------------------------------------------------------------ RNN

def rnn_forward(p, inputs, h0, c0, active, xw=None):
    xw = input_projection(inputs, p, active) if xw is None else xw
    time, batch, hidden = xw.shape
    relu = p.mode == "rnn_relu"
    hs = np.zeros((time + 1, batch, hidden), dtype=xw.dtype)
    hs[0] = h0
    for t, n in enumerate(active):
        steps.rnn_step(xw[t, :n], hs[t, :n], p.w_hh_t, hs[t + 1, :n], relu)
    return Trace(hs, None, relu)


def rnn_backward(p, trace, d_out, dh_n, dc_n, active):
    hs, relu = trace.h, trace.saved
    d_pre = np.zeros_like(d_out)
    dh_rec, dh = dh_n.copy(), np.empty_like(dh_n)
    for start, stop in blocks_backwards(len(active), d_out[0].size):
        factor = steps.rnn_factors(hs[start + 1: stop + 1], relu)
        for t in reversed(range(start, stop)):
            n = active[t]
            np.add(d_out[t, :n], dh_rec[:n], out=dh[:n])
            steps.rnn_step_backward(dh[:n], factor[t - start, :n], p.w_hh, d_pre[t, :n], dh_rec[:n])
    d_pre = by_rows(d_pre)
    return d_pre, d_pre, dh_rec, None


# ------------------------------------------------------------------------------------------------ LSTM

def lstm_arrays(xw, h0, c0, alloc=np.zeros):
    """The LSTM's time-major arrays: h, c (T+1, B, H) from h0, c0; gates (T, B, 4H); tanh_c (T, B, H).
    `alloc` makes gates and tanh_c: zeros where a backward reads rows the steps never write."""
    time, batch, gates = xw.shape
    hs = np.zeros((time + 1, batch, gates // 4), dtype=xw.dtype)
    cs = np.zeros_like(hs)
    hs[0], cs[0] = h0, c0
    return {"h": hs, "c": cs, "gates": alloc(xw.shape, dtype=xw.dtype),
            "tanh_c": alloc((time, batch, gates // 4), dtype=xw.dtype)}


def lstm_forward(p, inputs, h0, c0, active, xw=None):
    xw = input_projection(inputs, p, active) if xw is None else xw
    a = lstm_arrays(xw, h0, c0)
    hs, cs, acts, tanh_c = a["h"], a["c"], a["gates"], a["tanh_c"]
    for t, n in enumerate(active):
        steps.lstm_step(xw[t, :n], hs[t, :n], cs[t, :n], p.w_hh_t, acts[t, :n], cs[t + 1, :n], tanh_c[t, :n],
                        hs[t + 1, :n])
    return Trace(hs, final_rows(cs, active), a)


def lstm_backward(p, trace, d_out, dh_n, dc_n, active):
    a = trace.saved
    hidden = dh_n.shape[-1]
    gates, forget = a["gates"], a["gates"][..., hidden: 2 * hidden]
    d_pre = np.zeros_like(gates)
    dh_rec, dc, dh = dh_n.copy(), dc_n.copy(), np.empty_like(dh_n)
    for start, stop in blocks_backwards(len(active), gates[0].size):
        k, factors = steps.lstm_factors(gates[start:stop], a["c"][start:stop], a["tanh_c"][start:stop])
        for t in reversed(range(start, stop)):
            n, j = active[t], t - start
            np.add(d_out[t, :n], dh_rec[:n], out=dh[:n])
            steps.lstm_step_backward(dh[:n], dc[:n], k[j, :n], factors[j, :n], forget[t, :n], p.w_hh, d_pre[t, :n],
                                     dh_rec[:n], dc[:n])
    d_pre = by_rows(d_pre)
    return d_pre, d_pre, dh_rec, dc


# ------------------------------------------------------------------------------------------------ GRU

def gru_arrays(xw, h0, inputs):
    """The GRU's time-major arrays: h (T+1, B, H) from h0; gates (T, B, 3H); hn (T, B, H). Steps write only
    the running rows and the backward reads all, so they start at zero, except in a folded layer's forward
    (inputs None), which has no backward."""
    time, batch, gates = xw.shape
    hs = np.zeros((time + 1, batch, gates // 3), dtype=xw.dtype)
    hs[0] = h0
    alloc = np.empty if inputs is None else np.zeros
    return hs, alloc(xw.shape, dtype=xw.dtype), alloc((time, batch, gates // 3), dtype=xw.dtype)


def gru_forward(p, inputs, h0, c0, active, xw=None):
    xw = input_projection(inputs, p, active) if xw is None else xw
    hs, acts, hn = gru_arrays(xw, h0, inputs)
    scratch = np.empty(xw.shape[1:], dtype=xw.dtype)
    for t, n in enumerate(active):
        steps.gru_step(xw[t, :n], hs[t, :n], p.w_hh_t, p.b_hn, hn[t, :n], acts[t, :n], hs[t + 1, :n], scratch[:n])
    return Trace(hs, None, {"gates": acts, "hn": hn})


def gru_backward(p, trace, d_out, dh_n, dc_n, active):
    arr = trace.saved
    hidden = dh_n.shape[-1]
    gates, z = arr["gates"], arr["gates"][..., :hidden]
    # zeros only where a sequence ends early (its rows past the end are never written); 0.7 of 19 ms at
    # hidden 128, batch 64 (Xeon)
    alloc = np.empty_like if active[-1] == gates.shape[1] else np.zeros_like
    d_gh, d_n = alloc(gates), alloc(arr["hn"])
    dh_rec, dh, scratch = dh_n.copy(), np.empty_like(dh_n), np.empty_like(dh_n)
    for start, stop in blocks_backwards(len(active), gates[0].size):
        a, b = steps.gru_factors(gates[start:stop], trace.h[start:stop], arr["hn"][start:stop])
        for t in reversed(range(start, stop)):
            n, j = active[t], t - start
            np.add(d_out[t, :n], dh_rec[:n], out=dh[:n])
            steps.gru_step_backward(dh[:n], a[j, :n], b[j, :n], z[t, :n], p.w_hh, d_gh[t, :n], d_n[t, :n],
                                    dh_rec[:n], scratch[:n])
    d_gx = np.concatenate([d_gh[..., : 2 * hidden], d_n], axis=-1)  # the n gate's input side: dn_pre
    return by_rows(d_gx), by_rows(d_gh), dh_rec, None


FORWARD = {"rnn_tanh": rnn_forward, "rnn_relu": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
BACKWARD = {"rnn_tanh": rnn_backward, "rnn_relu": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}
