"""One step of the Elman RNN (torch.nn.RNNCell), forward and backward.

Forward, with act = tanh or relu:

    a   = W_ih x + b_ih + W_hh h_prev + b_hh          (batch, hidden)
    h   = act(a)                                      (batch, hidden)

Backward, given dh = dL/dh (batch, hidden):

    da       = dh ⊙ (1 - h²)          tanh
             = dh ⊙ [a > 0]           relu  (h > 0 exactly where a > 0)
    dx       = da W_ih                (batch, input)
    dh_prev  = da W_hh                (batch, hidden)
    dW_ih    = daᵀ x,   dW_hh = daᵀ h_prev,   db_ih = db_hh = Σ_batch da
"""
from __future__ import annotations

import numpy as np

from . import StepGrads


def forward(x, h_prev, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """h = act(W_ih x + b_ih + W_hh h_prev + b_hh). Returns (h, cache)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
    a = x @ w_ih.T + h_prev @ w_hh.T
    if b_ih is not None:
        a = a + b_ih
    if b_hh is not None:
        a = a + b_hh
    h = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h, (x, h_prev, w_ih, w_hh, b_ih is not None, b_hh is not None, nonlinearity, h)


def backward(dh, cache) -> StepGrads:
    """dh: the total gradient reaching h (batch, hidden). Returns this step's StepGrads."""
    x, h_prev, w_ih, w_hh, has_b_ih, has_b_hh, nonlinearity, h = cache
    da = dh * (1 - h * h) if nonlinearity == "tanh" else dh * (h > 0)
    db = da.sum(axis=0)
    return StepGrads(
        x=da @ w_ih, h_prev=da @ w_hh, c_prev=None,
        w_ih=da.T @ x, w_hh=da.T @ h_prev,
        b_ih=db if has_b_ih else None, b_hh=db.copy() if has_b_hh else None,
        gates_x=da, gates_h=da,
    )
