"""One step of the GRU (torch.nn.GRUCell), forward and backward. Gate blocks in PyTorch's order (r, z, n).

Forward:

    ax = W_ih x + b_ih,   ah = W_hh h_prev + b_hh          (batch, 3*hidden) each
    ax_r, ax_z, ax_n = the blocks of ax;  ah_r, ah_z, ah_n = those of ah
    r  = σ(ax_r + ah_r)              reset gate
    z  = σ(ax_z + ah_z)              update gate
    n  = tanh(ax_n + r ⊙ ah_n)       candidate: r scales the hidden side only, bias b_hn included
    h  = (1 - z) ⊙ n + z ⊙ h_prev    (batch, hidden)

Backward, given dh = dL/dh (batch, hidden):

    dn     = dh ⊙ (1 - z),    dz = dh ⊙ (h_prev - n)
    dn_pre = dn ⊙ (1 - n²)                        = dL/d(ax_n)
    dr     = dn_pre ⊙ ah_n,   dah_n = dn_pre ⊙ r  = dL/d(ah_n)
    dr_pre = dr ⊙ r(1-r),     dz_pre = dz ⊙ z(1-z)
    dax    = [dr_pre, dz_pre, dn_pre],   dah = [dr_pre, dz_pre, dah_n]          (batch, 3*hidden)
    dx     = dax W_ih,   dh_prev = dh ⊙ z + dah W_hh
    dW_ih  = daxᵀ x,     dW_hh = dahᵀ h_prev,   db_ih = Σ_batch dax,   db_hh = Σ_batch dah
"""
from __future__ import annotations

import numpy as np

from . import StepGrads, sigmoid


def forward(x, h_prev, w_ih, w_hh, b_ih=None, b_hh=None):
    """Returns (h, cache); see the module docstring."""
    ax = x @ w_ih.T
    ah = h_prev @ w_hh.T
    if b_ih is not None:
        ax = ax + b_ih
    if b_hh is not None:
        ah = ah + b_hh
    ax_r, ax_z, ax_n = np.split(ax, 3, axis=1)
    ah_r, ah_z, ah_n = np.split(ah, 3, axis=1)
    r = sigmoid(ax_r + ah_r)
    z = sigmoid(ax_z + ah_z)
    n = np.tanh(ax_n + r * ah_n)
    h = (1 - z) * n + z * h_prev
    return h, (x, h_prev, w_ih, w_hh, b_ih is not None, b_hh is not None, r, z, n, ah_n)


def backward(dh, cache) -> StepGrads:
    """dh: the total gradient reaching h (batch, hidden). Returns this step's StepGrads."""
    x, h_prev, w_ih, w_hh, has_b_ih, has_b_hh, r, z, n, ah_n = cache
    dn = dh * (1 - z)
    dz = dh * (h_prev - n)
    dn_pre = dn * (1 - n * n)
    dr = dn_pre * ah_n
    dah_n = dn_pre * r
    dr_pre = dr * r * (1 - r)
    dz_pre = dz * z * (1 - z)
    dax = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
    dah = np.concatenate([dr_pre, dz_pre, dah_n], axis=1)
    return StepGrads(
        x=dax @ w_ih, h_prev=dh * z + dah @ w_hh, c_prev=None,
        w_ih=dax.T @ x, w_hh=dah.T @ h_prev,
        b_ih=dax.sum(axis=0) if has_b_ih else None, b_hh=dah.sum(axis=0) if has_b_hh else None,
        gates_x=dax, gates_h=dah,
    )
