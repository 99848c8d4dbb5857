"""One time step of the vanilla RNN, the LSTM and the GRU on packed weights, in place: the NumPy path.

The equations are PyTorch's, as in the reference cells (rnnkit/scratch/cells/), which are the ground truth
these steps are tested against. What differs is only how they are computed (see packing.py): the gates in
packed order (LSTM i, f, o, g; GRU z, r, n), the sigmoid rows' pre-activations halved so that one tanh call
serves every gate (σ(a) = (1 + tanh(a/2)) / 2), and every result written into preallocated buffers (`out=`),
nothing allocated inside the time loop: NumPy's per-call overhead (about 0.5 µs a call) is what a step costs
besides its product h_{t-1} W_hh^T. The derivative factors that do not depend on the incoming gradient are
computed for many time steps at once (`*_factors`), so the backward step is a few multiplies and one GEMM.

Shapes: B batch, H hidden. Arrays of one step are (B, ·).
"""
from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# Vanilla RNN
# ----------------------------------------------------------------------------------------------------------

def rnn_step(xw, h_prev, w_hh_t, h_out, relu=False):
    """h_t = act(xw_t + h_{t-1} W_hh^T), with xw_t = x_t W_ih^T + b_ih + b_hh.

    xw (B, H), h_prev (B, H), w_hh_t (H, H) → writes h_out (B, H).
    """
    np.matmul(h_prev, w_hh_t, out=h_out)
    h_out += xw
    if relu:
        np.maximum(h_out, 0, out=h_out)
    else:
        np.tanh(h_out, out=h_out)


def rnn_factors(h, relu=False):
    """act'(pre) from the outputs h (any shape): tanh' = 1 - h², relu' = [h > 0]."""
    if relu:
        return (h > 0).astype(h.dtype)
    return 1 - h * h


def rnn_step_backward(dh, factor, w_hh, dpre_out, dh_prev_out):
    """dpre = dh ⊙ act'(pre);  dh_{t-1} = dpre W_hh.

    dh (B, H) is the whole gradient reaching h_t. Writes dpre_out (B, H), dh_prev_out (B, H).
    """
    np.multiply(dh, factor, out=dpre_out)
    np.matmul(dpre_out, w_hh, out=dh_prev_out)


# ----------------------------------------------------------------------------------------------------------
# LSTM (packed gate order i, f, o, g)
# ----------------------------------------------------------------------------------------------------------

def lstm_step(xw, h_prev, c_prev, w_hh_t, gates_out, c_out, tanh_c_out, h_out):
    """One LSTM step.

    xw (B, 4H) halved input pre-activations; h_prev, c_prev (B, H); w_hh_t (H, 4H) packed.
    Writes gates_out (B, 4H) = activated (i, f, o, g), c_out = c_t, tanh_c_out = tanh(c_t), h_out = h_t.
    """
    hidden = c_prev.shape[-1]
    np.matmul(h_prev, w_hh_t, out=gates_out)
    gates_out += xw
    np.tanh(gates_out, out=gates_out)          # tanh(a/2) on i, f, o; tanh(a) on g
    sig = gates_out[:, : 3 * hidden]
    sig *= 0.5
    sig += 0.5                                 # σ(a) = (1 + tanh(a/2)) / 2
    i = gates_out[:, :hidden]
    f = gates_out[:, hidden: 2 * hidden]
    o = gates_out[:, 2 * hidden: 3 * hidden]
    g = gates_out[:, 3 * hidden:]
    np.multiply(f, c_prev, out=c_out)          # c_t = f ⊙ c_{t-1} + i ⊙ g
    np.multiply(i, g, out=tanh_c_out)          # (tanh_c_out as scratch)
    c_out += tanh_c_out
    np.tanh(c_out, out=tanh_c_out)
    np.multiply(o, tanh_c_out, out=h_out)      # h_t = o ⊙ tanh(c_t)


def lstm_factors(gates, c_prev, tanh_c):
    """The parts of the LSTM derivative that do not depend on the incoming gradient, for any leading shape.

    gates (..., 4H) activated (i, f, o, g); c_prev, tanh_c (..., H). Returns
      k (..., H)  = o ⊙ (1 - tanh²c)           so that dc_t = dc_{t+1 → t} + dh_t ⊙ k
      p (..., 4H) = [g·i(1-i), c_prev·f(1-f), tanh c·o(1-o), i·(1-g²)]
                   so that dpre_(i,f,g) = dc_t ⊙ p_(i,f,g) and dpre_o = dh_t ⊙ p_o.
    """
    hidden = c_prev.shape[-1]
    i = gates[..., :hidden]
    o = gates[..., 2 * hidden: 3 * hidden]
    g = gates[..., 3 * hidden:]
    k = o * (1 - tanh_c * tanh_c)
    p = np.empty_like(gates)
    sig = gates[..., : 3 * hidden]
    p[..., : 3 * hidden] = sig * (1 - sig)
    p[..., :hidden] *= g
    p[..., hidden: 2 * hidden] *= c_prev
    p[..., 2 * hidden: 3 * hidden] *= tanh_c
    p[..., 3 * hidden:] = i * (1 - g * g)
    return k, p


def lstm_step_backward(dh, dc, k, p, f, w_hh, dpre_out, dh_prev_out, dc_prev_out):
    """One LSTM step backward.

    dh (B, H): whole gradient reaching h_t; dc (B, H): gradient reaching c_t from step t+1.
    k, p: this step's `lstm_factors`; f (B, H) its forget gate; w_hh (4H, H) packed, not halved.
    Writes dpre_out (B, 4H), the gradient of the gates' pre-activations (packed order),
    dh_prev_out = dpre W_hh and dc_prev_out = dc_t ⊙ f. dc_prev_out may be the same array as dc.
    """
    hidden = dh.shape[-1]
    batch = dh.shape[0]
    d4 = dpre_out.reshape(batch, 4, hidden)
    p4 = p.reshape(batch, 4, hidden)
    # dc_t = dc + dh ⊙ o ⊙ (1 - tanh²c_t); computed into the o block of dpre as scratch
    dct = d4[:, 2]
    np.multiply(dh, k, out=dct)
    dct += dc
    np.multiply(p4[:, :2], dct[:, None, :], out=d4[:, :2])   # di, df
    np.multiply(p4[:, 3], dct, out=d4[:, 3])                 # dg
    np.multiply(f, dct, out=dc_prev_out)                     # dc_{t-1} = dc_t ⊙ f
    np.multiply(p4[:, 2], dh, out=dct)                       # do (overwrites the scratch)
    np.matmul(dpre_out, w_hh, out=dh_prev_out)


# ----------------------------------------------------------------------------------------------------------
# GRU (packed gate order z, r, n)
# ----------------------------------------------------------------------------------------------------------

def gru_step(xw, h_prev, w_hh_t, b_hn, hn_out, gates_out, h_out, scratch):
    """One GRU step.

    xw (B, 3H) input pre-activations (z, r halved; n = W_in x + b_in); h_prev (B, H); w_hh_t (H, 3H);
    b_hn (H,) or None. scratch (B, 3H) receives h W_hh^T. Writes hn_out (B, H) = W_hn h + b_hn,
    gates_out (B, 3H) = activated (z, r, n), h_out (B, H) = h_t.
    """
    hidden = h_prev.shape[-1]
    np.matmul(h_prev, w_hh_t, out=scratch)
    if b_hn is None:
        np.copyto(hn_out, scratch[:, 2 * hidden:])
    else:
        np.add(scratch[:, 2 * hidden:], b_hn, out=hn_out)
    zr = gates_out[:, : 2 * hidden]
    np.add(scratch[:, : 2 * hidden], xw[:, : 2 * hidden], out=zr)
    np.tanh(zr, out=zr)
    zr *= 0.5
    zr += 0.5                                                # z, r = σ(·)
    z = gates_out[:, :hidden]
    r = gates_out[:, hidden: 2 * hidden]
    n = gates_out[:, 2 * hidden:]
    np.multiply(r, hn_out, out=n)
    n += xw[:, 2 * hidden:]
    np.tanh(n, out=n)                                        # n = tanh(W_in x + b_in + r ⊙ hn)
    np.subtract(h_prev, n, out=h_out)
    h_out *= z
    h_out += n                                               # h_t = n + z ⊙ (h_{t-1} - n)


def gru_factors(gates, h_prev, hn):
    """The GRU derivative's parts that do not depend on the incoming gradient, for any leading shape.

    gates (..., 3H) activated (z, r, n); h_prev, hn (..., H). Returns
      a (..., 2H) = [(1-z)(1-n²), (h_prev - n)·z(1-z)]  so dn_pre = dh ⊙ a_n, dz_pre = dh ⊙ a_z
      b (..., 2H) = [hn·r(1-r), r]                     so [dr_pre, dhn] = dn_pre ⊙ b
    """
    hidden = h_prev.shape[-1]
    z = gates[..., :hidden]
    r = gates[..., hidden: 2 * hidden]
    n = gates[..., 2 * hidden:]
    a = np.concatenate([(1 - z) * (1 - n * n), (h_prev - n) * z * (1 - z)], axis=-1)
    b = np.concatenate([hn * r * (1 - r), r], axis=-1)
    return a, b


def gru_step_backward(dh, a, b, z, w_hh, dgh_out, dn_out, dh_prev_out, scratch):
    """One GRU step backward.

    dh (B, H) whole gradient reaching h_t; a, b this step's `gru_factors`; z (B, H) its update gate;
    w_hh (3H, H) packed, not halved. Writes
      dn_out (B, H)   the gradient of n's pre-activation (the input side's n block),
      dgh_out (B, 3H) the gradient of h W_hh^T + b_hh: (dz_pre, dr_pre, dhn),
      dh_prev_out     = dgh W_hh + dh ⊙ z.
    """
    hidden = dh.shape[-1]
    batch = dh.shape[0]
    np.multiply(dh, a[:, :hidden], out=dn_out)                    # dn_pre = dh (1-z)(1-n²)
    np.multiply(dh, a[:, hidden:], out=dgh_out[:, :hidden])       # dz_pre = dh (h_prev-n) z(1-z)
    np.multiply(b.reshape(batch, 2, hidden), dn_out[:, None, :],
                out=dgh_out[:, hidden:].reshape(batch, 2, hidden))  # dr_pre, dhn
    np.matmul(dgh_out, w_hh, out=dh_prev_out)
    np.multiply(dh, z, out=scratch)
    dh_prev_out += scratch
