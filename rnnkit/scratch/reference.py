"""The reference path: the textbook cells (cells/) stepped over a sequence, one Python call per step.

Slow and plain on purpose: what every fast path (fast/) is tested against, and what RNNKIT_PATH=reference
runs. The same contract as the fast paths (fast/numpy_path.py): forward(p, inputs, h0, c0, active) -> Trace
with h (T+1, B, H); backward returns the pre-activation gradients as (G*H, T*B) in packed row order, so
recurrent.py makes the weight and input gradients from them as for every path. At step t only the first
active[t] rows run (the sequences sorted longest first).
"""
from __future__ import annotations

import numpy as np

from .cells import CELLS, GATES
from .fast.packing import row_index
from .fast.trace import Trace, final_rows


def forward(p, inputs, h0, c0, active, xw=None):
    """p: packing.Packed (its weights as given, p.originals); inputs (T, B, I); h0, c0 (B, H)."""
    if xw is not None:
        raise ValueError("the reference path projects its own inputs; it takes no looked-up projection")
    cell, lstm = CELLS[p.mode], p.mode == "lstm"
    weights = [None if w is None else w.copy() for w in p.originals]  # as they are now, for the backward
    options = {"nonlinearity": "relu"} if p.mode == "rnn_relu" else {}
    time, batch, _ = inputs.shape
    hs = np.zeros((time + 1, batch, h0.shape[-1]), dtype=inputs.dtype)
    cs = np.zeros_like(hs) if lstm else None
    hs[0] = h0
    if lstm:
        cs[0] = c0
    caches = []
    for t, n in enumerate(active):
        if lstm:
            hs[t + 1, :n], cs[t + 1, :n], cache = cell.forward(inputs[t, :n], hs[t, :n], cs[t, :n], *weights)
        else:
            hs[t + 1, :n], cache = cell.forward(inputs[t, :n], hs[t, :n], *weights, **options)
        caches.append(cache)
    return Trace(hs, final_rows(cs, active) if lstm else None, caches)


def backward(p, trace, d_out, dh_n, dc_n, active, reaching=None):
    """d_out (T, B, H), dh_n, dc_n (B, H) → (gates_x, gates_h (G*H, T*B) packed order, dh0, dc0).

    reaching: None, or a (T, B, H) array that receives ∂L/∂h_t, the whole gradient reaching each state
    (from the output above and from step t+1): the gradients through time (rnnkit.diagnostics)."""
    cell, lstm = CELLS[p.mode], p.mode == "lstm"
    time, batch, hidden = d_out.shape
    gates = GATES[p.mode] * hidden
    d_x, d_h = np.zeros((time, batch, gates), d_out.dtype), np.zeros((time, batch, gates), d_out.dtype)
    dh, dc = dh_n.copy(), (dc_n.copy() if lstm else None)
    for t in reversed(range(time)):
        n, cache = active[t], trace.saved[t]
        d_h_t = d_out[t, :n] + dh[:n]  # all that reaches h_t: ∂L/∂h_t = ∂ℓ_t/∂h_t + ∂L/∂h_{t+1}·∂h_{t+1}/∂h_t
        if reaching is not None:
            reaching[t, :n] = d_h_t
        step = cell.backward(d_h_t, dc[:n], cache) if lstm else cell.backward(d_h_t, cache)
        d_x[t, :n], d_h[t, :n], dh[:n] = step.gates_x, step.gates_h, step.h_prev
        if lstm:
            dc[:n] = step.c_prev
    packed = row_index(p.mode, hidden)  # PyTorch's gate order → packed order
    to_rows = lambda d: d.reshape(time * batch, gates)[:, packed].T  # noqa: E731
    gates_x = to_rows(d_x)
    return gates_x, gates_x if p.mode != "gru" else to_rows(d_h), dh, dc
