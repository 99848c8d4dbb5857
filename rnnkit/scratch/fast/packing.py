"""A layer direction's weights packed for the fast steps, and gradients put back in PyTorch's order.

The fast paths (steps.py, kernels.py, threaded_lstm.py) work on a *packed* copy of PyTorch's weights:
  * the gates' rows are reordered so that the sigmoid gates are contiguous (LSTM: i, f, o, g; GRU: z, r, n);
  * the sigmoid gates' rows are halved, because σ(a) = (1 + tanh(a/2)) / 2: one tanh call over all gates,
    then one multiply-add on the sigmoid block. Halving is exact in floating point;
  * the input half W_ih x_t + b for all time steps is one GEMM before the loop, so the bias is folded:
    b_ih + b_hh (GRU: b_hn stays apart, it sits inside r ⊙ (·));
  * packing copies whole gate blocks. w_ih_t is a transposed view (BLAS reads it as it is, at the same speed
    for the one big input GEMM); w_hh_t is a C-contiguous copy, since the many small per-step GEMMs run
    ~30% faster on it, made tile by tile (see `_transpose`). Each packed array is made on first use, so a
    forward builds only what its path reads, and inference never builds the backward's unhalved copies.
Backward works with the true (unhalved) weights in packed row order; `add_unpacked` adds gradients back
into PyTorch's order.

Shapes: H hidden, I input, G gates (RNN 1, LSTM 4, GRU 3).
"""
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
    w_ih (G*H, I), w_hh (G*H, H): reordered, *not* halved — for the backward products (w_hh with ROW_SLACK
        values allocated past its end).
    b_hn (H,): GRU only, the hidden bias of the n gate (it sits inside r ⊙ (·)); None otherwise.
    w_steps (G*H, H+I+1): [w_hh_half | w_ih_half | bias], the gate-major LSTM's per-step operand.
    It keeps the weights it is given, unchanged, and reads them when an array is first used; a training
    forward calls `copy_for_backward()` (or runs `backward_jobs`' copies on its threads), so that backward works
    with the forward's weights even if they are changed in place in between.
    """

    def __init__(self, mode: str, w_ih, w_hh, b_ih=None, b_hh=None):
        self.mode, self.hidden = mode, w_hh.shape[1]
        self._w_ih, self._w_hh, self._b_ih, self._b_hh = w_ih, w_hh, b_ih, b_hh
        self._sigmoid_rows = sigmoid_rows(mode, self.hidden)
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
        return _reorder(self.mode, self._w_hh, self.hidden, ROW_SLACK)

    @cached_property
    def w_hh_unhalved_t(self) -> np.ndarray:
        """w_hh^T, C-contiguous (H, G*H): the backward's matrix-vector products (numba_path.h_gradient_product)."""
        return _transpose(self.w_hh)

    @cached_property
    def bias(self) -> np.ndarray:
        rows, hidden = row_index(self.mode, self.hidden), self.hidden
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

    @property
    def originals(self) -> tuple:
        """The weights as given, in PyTorch's layout: (w_ih, w_hh, b_ih, b_hh), biases None without bias."""
        return self._w_ih, self._w_hh, self._b_ih, self._b_hh

    def derived(self, key, make):
        """make(), computed once per key and kept with these weights (e.g. lstm_parts.py's packed panels)."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def copy_for_backward(self, hidden: bool = True, inputs: bool = True) -> None:
        """Make the backward's arrays (w_hh unless `hidden` is False, w_ih unless `inputs` is: a path whose
        forward makes what its backward reads of that weight itself) now, from the weights as they are."""
        if inputs:
            self.w_ih  # noqa: B018 - cached on first access
        if hidden:
            self.w_hh  # noqa: B018

    def backward_jobs(self, count: int) -> list:
        """`w_hh` and `w_ih` (those not made yet) allocated now, and kept as them, and `count` (function,
        arguments, size) jobs, job k copying share k of each one's rows from the weights as they are: a
        training forward runs them beside its own packing, on its threads (threads.run_balanced's jobs), in
        place of `copy_for_backward`'s copies on one. They must be done before the weights may change (before
        the forward returns)."""
        copies = []
        for name, w, slack in (("w_hh", self._w_hh, ROW_SLACK), ("w_ih", self._w_ih, 0)):
            if not self.has(name):
                out = np.empty(w.size + slack, dtype=w.dtype)[:w.size].reshape(w.shape)
                self.__dict__[name] = out  # (cached_property's own slot)
                copies.append((w, out))
        jobs = []
        for k in range(count if copies else 0):
            shares = [(w, out, len(w) * k // count, len(w) * (k + 1) // count) for w, out in copies]
            jobs.append((_copy_shares, (self.mode, self.hidden, shares), sum((hi - lo) * w.shape[1]
                                                                             for w, _, lo, hi in shares)))
        return jobs

    def has(self, name: str) -> bool:
        """Whether the array `name` (e.g. "w_hh") is made already."""
        return name in self.__dict__

    @cached_property
    def b_hn(self) -> np.ndarray | None:
        if self.mode != "gru" or self._b_hh is None:
            return None
        return np.ascontiguousarray(self._b_hh[2 * self.hidden:])  # the n block is last in both orders


def sigmoid_rows(mode: str, hidden: int) -> int:
    """How many leading packed rows belong to sigmoid gates (halved in the packed weights)."""
    return _SIGMOID_BLOCKS[mode] * hidden


def gate_order(mode: str) -> tuple[int, ...]:
    """Packed gate block k holds PyTorch's gate block gate_order(mode)[k]."""
    return _ORDER[mode]


def row_index(mode: str, hidden: int) -> np.ndarray:
    """Packed row k holds PyTorch's row row_index(mode, hidden)[k]."""
    return np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in _ORDER[mode]])


# Values allocated past the end of w_hh (the threaded RNN's and GRU's backward read whole vectors of its last
# row, past H: threaded_rnn.recurrent_weights)
ROW_SLACK = 16


def _reorder(mode: str, w: np.ndarray, hidden: int, slack: int = 0) -> np.ndarray:
    """Rows (G*H, ...) in PyTorch's gate order → a new C-contiguous array in packed order, block by block
    (with `slack` values allocated past its end)."""
    out = np.empty(w.size + slack, dtype=w.dtype)[:w.size].reshape(w.shape)
    copy_packed_rows(mode, w, hidden, out, 0, len(out))
    return out


def _copy_shares(mode: str, hidden: int, shares) -> None:
    """`copy_packed_rows` for each (w, out, lo, hi) of shares: one thread's share of Packed.backward_jobs."""
    for w, out, lo, hi in shares:
        copy_packed_rows(mode, w, hidden, out, lo, hi)


def copy_packed_rows(mode: str, w: np.ndarray, hidden: int, out: np.ndarray, lo: int, hi: int) -> None:
    """out[lo:hi] = the packed rows lo..hi-1 of w (G*H, ...), PyTorch's gate order: one copy per gate block."""
    for k, src in enumerate(_ORDER[mode]):
        a, b = max(lo, k * hidden), min(hi, (k + 1) * hidden)
        if a < b:
            out[a:b] = w[src * hidden + a - k * hidden: src * hidden + b - k * hidden]


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
