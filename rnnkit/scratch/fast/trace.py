"""What every path's forward hands back to recurrent.py: row-major states, whatever the path's own layout.

A path's forward returns a `Trace`; its backward takes the trace back and returns the pre-activation
gradients as (G*H, T*B) matrices in packed row order (`by_rows`), from which recurrent.py makes the weight
gradients (one GEMM each over all steps) and the input gradient. How a path lays its arrays out (time-major
rows, gate-major blocks, per-step caches) stays inside the path, in `saved`.
"""
from __future__ import annotations

import numpy as np


class Trace:
    """h (T+1, B, H): the states, h[0] = h0, rows past a sequence's end keep its last state or zero;
    c_n (B, H): each row's final cell state (the LSTM), else None; saved: the path's own arrays for backward;
    outputs (T, B, H): the states after each step, h[1:], or, from an inference forward given the array to
    write them into, that array (a view of the layer's own (B, T, D·H) output), with no h (None): the layer
    then hands its output to its caller without a transposing copy."""

    __slots__ = ("h", "c_n", "saved", "outputs")

    def __init__(self, h: np.ndarray | None, c_n: np.ndarray | None, saved, outputs: np.ndarray | None = None):
        self.h, self.c_n, self.saved = h, c_n, saved
        self.outputs = h[1:] if outputs is None else outputs


def kept(trace: Trace):
    """The forward's arrays for a backward, or a clear error after an inference forward (it keeps none)."""
    if trace.saved is None:
        raise ValueError("backward() after an inference forward (eval mode, locked weights): call train() or "
                         "unlock the weights for a forward with a backward")
    return trace.saved


def allocator(active, batch: int, columns: int):
    """np.empty where a forward writes every entry of its operands and states before reading it (no
    sequence ends early, no padding columns), else np.zeros (those columns stay finite)."""
    return np.empty if active[-1] == batch == columns else np.zeros


def lengths_of(active) -> np.ndarray:
    """Each row's length from the rows running at each step: active[t] rows at step t, longest first."""
    active = np.asarray(active)
    return (active[:, None] > np.arange(active[0])[None, :]).sum(axis=0)


def final_rows(states: np.ndarray, active) -> np.ndarray:
    """states[length_b, b] for every row b of time-major states (T+1, B, ·): each sequence's last state."""
    return states[lengths_of(active), np.arange(states.shape[1])]


def by_rows(d_pre: np.ndarray) -> np.ndarray:
    """Time-major pre-activation gradients (T, B, G*H) as the (G*H, T*B) matrix the weight GEMMs take (a view)."""
    return d_pre.reshape(-1, d_pre.shape[-1]).T
