"""One time step of the vanilla RNN, the LSTM and the GRU: forward and backward.

The equations are PyTorch's (torch.nn.RNN / LSTM / GRU). With x_t the input, h_{t-1} the previous state:

    RNN   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)            act = tanh or relu

    LSTM  i = σ(W_ii x + b_ii + W_hi h + b_hi)       input gate
          f = σ(W_if x + b_if + W_hf h + b_hf)       forget gate
          g = tanh(W_ig x + b_ig + W_hg h + b_hg)    cell candidate
          o = σ(W_io x + b_io + W_ho h + b_ho)       output gate
          c_t = f ⊙ c_{t-1} + i ⊙ g
          h_t = o ⊙ tanh(c_t)

    GRU   r = σ(W_ir x + b_ir + W_hr h + b_hr)       reset gate
          z = σ(W_iz x + b_iz + W_hz h + b_hz)       update gate
          n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
          h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

PyTorch stacks the gates' rows in W_ih (G*H, I) and W_hh (G*H, H): LSTM (i, f, g, o), GRU (r, z, n).

Speed. A recurrent layer spends its time in two places: the matrix product h_{t-1} W_hh^T of each step, and
NumPy's per-call overhead (about 0.5 µs a call) for the gate arithmetic. So the steps here work on a *packed*
copy of the weights (see `pack`):
  * the input half W_ih x_t + b for all time steps is one GEMM before the loop (`xw` below);
  * the gates' rows are reordered so that the sigmoid gates are contiguous (LSTM: i, f, o, g; GRU: z, r, n);
  * the sigmoid gates' rows are halved, because σ(a) = (1 + tanh(a/2)) / 2: one tanh call over all gates,
    then one multiply-add on the sigmoid block. Halving is exact in floating point;
  * every step writes into preallocated buffers (`out=`), nothing is allocated inside the loop;
  * packing copies whole gate blocks. w_ih_t is a transposed view (BLAS reads it as it is, at the same speed
    for the one big input GEMM); w_hh_t is a C-contiguous copy, since the many small per-step GEMMs run
    ~30% faster on it, made tile by tile (see `_transpose`). Each packed array is made on first use, so a
    forward builds only what its path reads, and inference never builds the backward's unhalved copies.
Backward works with the true (unhalved) weights in packed row order; `add_unpacked` adds gradients back
into PyTorch's order. The derivative factors that do not depend on the incoming gradient are computed for
all time steps at once (`*_factors`), so the backward step is a few multiplies and one GEMM.

Shapes: B batch, H hidden, I input, G gates (RNN 1, LSTM 4, GRU 3). Arrays of one step are (B, ·).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# Packed block k holds PyTorch's gate block ORDER[k].
_ORDER = {"rnn_tanh": (0,), "rnn_relu": (0,), "lstm": (0, 1, 3, 2), "gru": (1, 0, 2)}
# How many leading packed blocks are sigmoid gates (their rows are halved).
_SIGMOID_BLOCKS = {"rnn_tanh": 0, "rnn_relu": 0, "lstm": 3, "gru": 2}


class Packed:
    """A layer direction's weights laid out for the step functions, each array made on first use (inference
    never builds the backward's, and each path builds only what it reads).

    w_ih_half (G*H, I), w_hh_half (G*H, H): rows reordered, sigmoid rows halved, C-contiguous.
    w_ih_t (I, G*H), w_hh_t (H, G*H): the same transposed for `x @ w` (w_ih_t an F-contiguous view, w_hh_t a
        C-contiguous copy).
    bias (G*H,): b_ih + b_hh, reordered and halved (GRU: the n block holds b_in only); zeros without biases.
    w_ih (G*H, I), w_hh (G*H, H): reordered, *not* halved — for the backward products.
    b_hn (H,): GRU only, the hidden bias of the n gate (it sits inside r ⊙ (·)); None otherwise.
    w_steps (G*H, H+I+1): [w_hh_half | w_ih_half | bias], the gate-major LSTM's per-step operand.
    It keeps the weights it is given, unchanged, and reads them when an array is first used; a training
    forward calls `copy_for_backward()`, so that backward works with the forward's weights even if they are
    changed in place in between.
    """

    def __init__(self, mode: str, w_ih, w_hh, b_ih=None, b_hh=None):
        self.mode, self.hidden = mode, w_hh.shape[1]
        self._w_ih, self._w_hh, self._b_ih, self._b_hh = w_ih, w_hh, b_ih, b_hh
        self._sigmoid_rows = _SIGMOID_BLOCKS[mode] * self.hidden
        self._table = None  # (embedding, its token_table)
        self._derived: dict = {}

    def _halved(self, w: np.ndarray) -> np.ndarray:
        out = _reorder(self.mode, w, self.hidden)
        out[: self._sigmoid_rows] *= 0.5  # exact: a power of two
        return out

    @cached_property
    def w_ih_half(self) -> np.ndarray:
        return self._halved(self._w_ih)

    @cached_property
    def w_hh_half(self) -> np.ndarray:
        return self._halved(self._w_hh)

    @property
    def w_ih_t(self) -> np.ndarray:
        return self.w_ih_half.T

    @cached_property
    def w_hh_t(self) -> np.ndarray:
        return _transpose(self.w_hh_half)

    @cached_property
    def w_ih(self) -> np.ndarray:
        return _reorder(self.mode, self._w_ih, self.hidden)

    @cached_property
    def w_hh(self) -> np.ndarray:
        return _reorder(self.mode, self._w_hh, self.hidden)

    @cached_property
    def bias(self) -> np.ndarray:
        rows, hidden = _row_index(self.mode, self.hidden), self.hidden
        bias = np.zeros(len(rows), dtype=self._w_hh.dtype)
        if self._b_ih is not None:
            bias += self._b_ih[rows]
        if self._b_hh is not None:
            b_hh = self._b_hh[rows]
            if self.mode == "gru":  # b_hn stays inside r ⊙ (W_hn h + b_hn)
                bias[: 2 * hidden] += b_hh[: 2 * hidden]
            else:
                bias += b_hh
        bias[: self._sigmoid_rows] *= 0.5
        return bias

    @cached_property
    def w_steps(self) -> np.ndarray:
        """[W_hh | W_ih | b] (G*H, H+I+1), halved rows: the gate-major LSTM's per-step operand."""
        return np.concatenate([self.w_hh_half, self.w_ih_half, self.bias[:, None]], axis=1)

    def token_table(self, embedding: np.ndarray) -> np.ndarray:
        """Every token's input projection, embedding W_ih^T + b: (V, I) → (V, G*H), halved rows.

        Row v is what `x @ w_ih_t + bias` gives for x = embedding[v], so a layer fed by an embedding can
        look its input projection up instead of computing it (recurrent.py's folded first layer). Made on the
        first call and kept for that same `embedding` array.
        """
        cached = self._table
        if cached is None or cached[0] is not embedding:
            table = embedding @ self.w_ih_t
            table += self.bias
            self._table = cached = (embedding, table)
        return cached[1]

    def derived(self, key, make):
        """make(), computed once per key and kept with these weights (e.g. lstm_parts.py's packed panels)."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def copy_for_backward(self) -> None:
        """Make the backward's arrays (w_ih, w_hh) now, from the weights as they are."""
        self.w_ih, self.w_hh  # noqa: B018 - cached on first access

    @cached_property
    def b_hn(self) -> np.ndarray | None:
        if self.mode != "gru" or self._b_hh is None:
            return None
        return np.ascontiguousarray(self._b_hh[2 * self.hidden:])  # the n block is last in both orders


def _row_index(mode: str, hidden: int) -> np.ndarray:
    return np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in _ORDER[mode]])


def _reorder(mode: str, w: np.ndarray, hidden: int) -> np.ndarray:
    """Rows (G*H, ...) in PyTorch's gate order → a new C-contiguous array in packed order, block by block."""
    out = np.empty(w.shape, dtype=w.dtype)
    for k, src in enumerate(_ORDER[mode]):
        out[k * hidden: (k + 1) * hidden] = w[src * hidden: (src + 1) * hidden]
    return out


def _transpose(w: np.ndarray, tile: int = 32) -> np.ndarray:
    """A C-contiguous copy of w.T, `tile` rows at a time. NumPy's one-call transposing copy walks the source
    by columns and, at power-of-two sizes, thrashes the cache: ~5 ms for a (2048, 512) float32 matrix, ~1 ms
    in tiles."""
    out = np.empty(w.shape[::-1], dtype=w.dtype)
    for r in range(0, w.shape[0], tile):
        out[:, r: r + tile] = w[r: r + tile].T
    return out


def pack(mode: str, w_ih, w_hh, b_ih=None, b_hh=None) -> Packed:
    """PyTorch-layout weights of one layer direction → `Packed` (see the module docstring)."""
    return Packed(mode, w_ih, w_hh, b_ih, b_hh)


def add_unpacked(mode: str, into: np.ndarray, packed_rows: np.ndarray) -> None:
    """into += packed_rows put back in PyTorch's gate order; both (G*H, ...). One slice per gate block, no
    fancy-index copy (backward's weight gradients go through here)."""
    hidden = packed_rows.shape[0] // GATES[mode]
    for k, dst in enumerate(_ORDER[mode]):
        into[dst * hidden: (dst + 1) * hidden] += packed_rows[k * hidden: (k + 1) * hidden]


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
