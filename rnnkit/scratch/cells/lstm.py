"""One step of the LSTM (torch.nn.LSTMCell), forward and backward. Gate blocks in PyTorch's order (i, f, g, o).

Forward:

    a            = W_ih x + b_ih + W_hh h_prev + b_hh     (batch, 4*hidden)
    a_i, a_f, a_g, a_o = the four (batch, hidden) blocks of a
    i = σ(a_i)    input gate
    f = σ(a_f)    forget gate
    g = tanh(a_g) cell candidate
    o = σ(a_o)    output gate
    c = f ⊙ c_prev + i ⊙ g                                (batch, hidden)
    h = o ⊙ tanh(c)                                       (batch, hidden)

Backward, given dh = dL/dh and dc = dL/dc reaching this step from outside (the loss and the next step):

    do      = dh ⊙ tanh(c)
    dc_tot  = dc + dh ⊙ o ⊙ (1 - tanh²(c))
    di      = dc_tot ⊙ g,     df = dc_tot ⊙ c_prev,     dg = dc_tot ⊙ i
    dc_prev = dc_tot ⊙ f
    da      = [di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)]      (batch, 4*hidden)
    dx      = da W_ih,   dh_prev = da W_hh
    dW_ih   = daᵀ x,     dW_hh = daᵀ h_prev,     db_ih = db_hh = Σ_batch da
"""
from __future__ import annotations

import numpy as np

from . import StepGrads, sigmoid


def forward(x, h_prev, c_prev, w_ih, w_hh, b_ih=None, b_hh=None):
    """Returns (h, c, cache); see the module docstring."""
    a = x @ w_ih.T + h_prev @ w_hh.T
    if b_ih is not None:
        a = a + b_ih
    if b_hh is not None:
        a = a + b_hh
    a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c
    return h, c, (x, h_prev, c_prev, w_ih, w_hh, b_ih is not None, b_hh is not None, i, f, g, o, tanh_c)


def backward(dh, dc, cache) -> StepGrads:
    """dh, dc: the total gradients reaching h and c (batch, hidden). Returns this step's StepGrads."""
    x, h_prev, c_prev, w_ih, w_hh, has_b_ih, has_b_hh, i, f, g, o, tanh_c = cache
    do = dh * tanh_c
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    di, df, dg = dc * g, dc * c_prev, dc * i
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
    db = da.sum(axis=0)
    return StepGrads(
        x=da @ w_ih, h_prev=da @ w_hh, c_prev=dc * f,
        w_ih=da.T @ x, w_hh=da.T @ h_prev,
        b_ih=db if has_b_ih else None, b_hh=db.copy() if has_b_hh else None,
        gates_x=da, gates_h=da,
    )
