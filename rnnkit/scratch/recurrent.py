"""RNN, LSTM and GRU layers over whole sequences, with backpropagation through time.

Arguments, parameter names, shapes, initialisation and results are PyTorch's (`torch.nn.RNN/LSTM/GRU`
with `batch_first=True`), so a `state_dict()` loads into PyTorch and back unchanged.

How a layer runs (see functional.py for one step):
  * the batch is sorted by length, longest first, so at step t the sequences still running are the first
    `active[t]` rows — exactly PyTorch's packed sequences. Finished rows are never touched again: their
    state stays their final state and their outputs stay zero;
  * the backward direction of a bidirectional layer is the forward algorithm run on each sequence reversed
    within its own length, and its outputs are put back in time order;
  * arrays are time-major inside, `(time, batch, ·)`, so a step's rows are one contiguous block;
  * the input half of every gate for all steps is one GEMM before the loop, and in backward the weight
    gradients are one GEMM each over all steps;
  * a first layer fed by an embedding (`Embedded`) looks that GEMM up instead while the weights are locked
    in eval mode: each token's projection, embedding W_ih^T + b, is computed once for the whole vocabulary.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from . import kernels, lstm_parts, threads
from .module import Module, Parameter, as_float_dtype, make_rng


# The folded first layer's table, vocabulary × gates × hidden, is made only up to this size per direction.
FOLD_MAX_BYTES = 64 << 20


class Embedded:
    """The input weight[tokens], (batch, time, features), given as its two parts and not yet looked up.

    tokens (batch, time) integers in [0, len(weight)), already checked (Embedding.check_indices);
    weight (vocab, features). A layer with locked weights in eval mode then takes each token's input
    projection from a table (Packed.token_table) instead of projecting the looked-up vectors; otherwise,
    or when the table would pass FOLD_MAX_BYTES, it looks them up and runs as usual. The results agree to
    float rounding. A forward that used the table has no backward.
    """

    __slots__ = ("tokens", "weight")

    def __init__(self, tokens: np.ndarray, weight: np.ndarray):
        self.tokens, self.weight = tokens, weight

    def vectors(self) -> np.ndarray:
        return self.weight[self.tokens]


class _Direction:
    """What forward keeps of one layer direction for backward."""

    __slots__ = ("packed", "inputs", "arrays")

    def __init__(self, packed, inputs, arrays):
        self.packed, self.inputs, self.arrays = packed, inputs, arrays


class _Recurrent(Module):
    mode: str = "rnn_tanh"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, dtype=np.float32, rng=None,
                 check_finite: bool = False):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.dropout, self.bidirectional = bool(bias), float(dropout), bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = as_float_dtype(dtype)
        self.check_finite = check_finite
        self.rng = make_rng(rng)
        gate_rows = F.GATES[self.mode] * hidden_size
        bound = 1.0 / np.sqrt(hidden_size)  # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = self._suffix(layer, direction)
                shapes = {"weight_ih": (gate_rows, layer_input), "weight_hh": (gate_rows, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gate_rows,), bias_hh=(gate_rows,))
                for name, shape in shapes.items():
                    data = self.rng.uniform(-bound, bound, size=shape).astype(self.dtype)
                    setattr(self, name + suffix, Parameter(data))
        self._cache = None
        self._locked_packs: dict = {}

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _params(self, layer: int, direction: int) -> list[Parameter | None]:
        s = self._suffix(layer, direction)
        return [getattr(self, n + s, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, dtype={self.dtype})")

    # ------------------------------------------------------------------------------------------ checks
    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"input must be (batch, time, features), got an array of rank {x.ndim} {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input has an empty batch or time axis: shape {x.shape}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"input has {x.shape[2]} features, the layer expects input_size={self.input_size}")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise ValueError(f"input must be real numbers, got dtype {x.dtype}")
        x = x.astype(self.dtype, copy=False)
        if self.check_finite and not np.isfinite(x).all():
            raise ValueError("input contains NaN or infinite values")
        return x

    @staticmethod
    def _check_lengths(lengths, batch: int, time: int) -> np.ndarray | None:
        if lengths is None:
            return None
        lengths = np.asarray(lengths)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape (batch,) = ({batch},), got {lengths.shape}")
        if not np.issubdtype(lengths.dtype, np.integer):
            if not np.issubdtype(lengths.dtype, np.floating) or not np.all(lengths == np.round(lengths)):
                raise ValueError(f"lengths must be integers, got {lengths.dtype}")
        lengths = lengths.astype(np.int64)
        if lengths.min() < 1 or lengths.max() > time:
            raise ValueError(f"lengths must be in [1, {time}] (the time axis), got min {lengths.min()}, "
                             f"max {lengths.max()}")
        return lengths

    def _check_state(self, name: str, state, batch: int) -> np.ndarray:
        expected = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if state is None:
            return np.zeros(expected, dtype=self.dtype)
        state = np.asarray(state)
        if state.shape != expected:
            raise ValueError(f"{name} must have shape (num_layers*num_directions, batch, hidden) = {expected}, "
                             f"got {state.shape}")
        state = state.astype(self.dtype, copy=False)
        if self.check_finite and not np.isfinite(state).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return state

    # ------------------------------------------------------------------------------------------ forward
    def _forward(self, x, h0, c0, lengths):
        folded = None  # an Embedded input whose first-layer projection is looked up
        if isinstance(x, Embedded):
            if self._folds(x):
                folded = self._check_tokens(x)
            else:
                x = x.vectors()
        if folded is None:
            x = self._check_input(x)
        batch, time = folded.tokens.shape if folded is not None else x.shape[:2]
        lengths = self._check_lengths(lengths, batch, time)
        h0 = self._check_state("h0", h0, batch)
        if self.mode == "lstm":
            c0 = self._check_state("c0", c0, batch)

        source = x if folded is None else folded.tokens[..., None]  # (batch, time, features or 1)
        if lengths is None:
            order, sorted_lengths = None, np.full(batch, time)
            active = [batch] * time
            seq = np.ascontiguousarray(source.transpose(1, 0, 2))
        else:
            order = np.argsort(-lengths, kind="stable")
            sorted_lengths = lengths[order]
            active = (sorted_lengths[None, :] > np.arange(time)[:, None]).sum(axis=1).tolist()
            seq = np.ascontiguousarray(source[order].transpose(1, 0, 2))
            h0 = h0[:, order]
            c0 = c0[:, order] if c0 is not None else None
        # reverse[t, b]: the time index that step t of sequence b reads when run backwards
        reverse = None if lengths is None else _reversal_index(sorted_lengths, time)

        D, H = self.num_directions, self.hidden_size
        h_n = np.empty((self.num_layers * D, batch, H), dtype=self.dtype)
        c_n = np.empty_like(h_n) if self.mode == "lstm" else None
        layers, masks = [], []
        last = (sorted_lengths, np.arange(batch))
        for layer in range(self.num_layers):
            mask = None
            if layer > 0 and self.training and self.dropout > 0:
                keep = self.rng.random(seq.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
                seq = seq * mask
            masks.append(mask)
            outputs, directions = [], []
            for d in range(D):
                k = layer * D + d
                inputs = seq if d == 0 else _reverse(seq, reverse)
                packed = self._packed(layer, d)
                xw = None
                if layer == 0 and folded is not None:  # time-major token ids (T, B, 1) → their projections
                    xw, inputs = packed.token_table(folded.weight)[inputs[..., 0]], None
                arrays = _FORWARD[self.mode](self, packed, inputs, h0[k], None if c0 is None else c0[k], active,
                                             xw)
                hs = arrays["h"]
                h_n[k] = hs[last]
                if c_n is not None:  # c is (T+1, B, H), or (T+1, H, B) in the gate-major layout
                    c_n[k] = arrays["c"][last[0], :, last[1]] if arrays["gate_major"] else arrays["c"][last]
                out = hs[1:]
                outputs.append(out if d == 0 else _reverse(out, reverse))
                directions.append(_Direction(packed, inputs, arrays))
            seq = outputs[0] if D == 1 else np.concatenate(outputs, axis=-1)
            layers.append(directions)
        self._cache = dict(layers=layers, masks=masks, order=order, active=active, reverse=reverse,
                           shape=(batch, time), folded=folded is not None)

        output = seq.transpose(1, 0, 2)
        if order is not None:
            inverse = np.argsort(order)
            output, h_n = output[inverse], h_n[:, inverse]
            c_n = c_n[:, inverse] if c_n is not None else None
        return np.ascontiguousarray(output), h_n, c_n

    def _folds(self, x: Embedded) -> bool:
        """Whether this forward looks the first layer's input projection up (see `Embedded`)."""
        if self.training or not self.weights_locked or np.ndim(x.tokens) != 2:
            return False
        rows = F.GATES[self.mode] * self.hidden_size
        return len(x.weight) * rows * self.dtype.itemsize <= FOLD_MAX_BYTES

    def _check_tokens(self, x: Embedded) -> Embedded:
        tokens, weight = np.asarray(x.tokens), np.asarray(x.weight)
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ValueError(f"input has an empty batch or time axis: shape {tokens.shape}")
        if weight.ndim != 2 or weight.shape[1] != self.input_size:
            raise ValueError(f"the embedding has shape {weight.shape}, the layer expects (vocab, "
                             f"input_size={self.input_size})")
        if weight.dtype != self.dtype:
            raise ValueError(f"the embedding is {weight.dtype}, the layer {self.dtype}")
        return Embedded(tokens, weight)

    def _packed(self, layer: int, direction: int) -> F.Packed:
        """The weights of one layer direction, packed for the steps: anew on every call, or, in eval mode with
        the weights locked (Module.lock_weights), once and then reused."""
        key = (layer, direction)
        if self.weights_locked and not self.training and key in self._locked_packs:
            return self._locked_packs[key]
        packed = F.pack(self.mode, *(p.data if p is not None else None for p in self._params(layer, direction)))
        if self.training:
            packed.copy_for_backward()
        elif self.weights_locked:
            self._locked_packs[key] = packed
        return packed

    def _forget_weights(self) -> None:
        self._locked_packs = {}

    # ------------------------------------------------------------------------------------------ backward
    def _backward(self, d_output, d_h_n, d_c_n):
        if self._cache is None:
            raise ValueError("backward() needs a forward() first")
        cache = self._cache
        if cache["folded"]:
            raise ValueError("backward() after a forward that looked its input projection up (locked weights, "
                             "eval mode): unlock the weights or call train() for a forward with a backward")
        batch, time = cache["shape"]
        order, active, reverse = cache["order"], cache["active"], cache["reverse"]
        D, H = self.num_directions, self.hidden_size
        state_shape = (self.num_layers * D, batch, H)

        def grad(name, value, shape):
            if value is None:
                return np.zeros(shape, dtype=self.dtype)
            value = np.asarray(value, dtype=self.dtype)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            return value

        d_output = grad("d_output", d_output, (batch, time, D * H))
        d_h_n = grad("d_h_n", d_h_n, state_shape)
        d_c_n = grad("d_c_n", d_c_n, state_shape) if self.mode == "lstm" else None
        if order is not None:
            d_output, d_h_n = d_output[order], d_h_n[:, order]
            d_c_n = d_c_n[:, order] if d_c_n is not None else None
        d_seq = np.ascontiguousarray(d_output.transpose(1, 0, 2))

        dh0 = np.empty(state_shape, dtype=self.dtype)
        dc0 = np.empty(state_shape, dtype=self.dtype) if self.mode == "lstm" else None
        for layer in reversed(range(self.num_layers)):
            d_in = None
            for d, direction in enumerate(cache["layers"][layer]):
                k = layer * D + d
                d_out = d_seq[..., d * H:(d + 1) * H]
                d_out = np.ascontiguousarray(d_out) if d == 0 else _reverse(d_out, reverse)
                dc_k = None if d_c_n is None else d_c_n[k]
                d_gates_x, d_gates_h, dh0[k], dc_last = _BACKWARD[self.mode](
                    direction, d_out, d_h_n[k], dc_k, active)
                if dc0 is not None:
                    dc0[k] = dc_last
                gate_major = direction.arrays["gate_major"]
                shared = d_gates_h is d_gates_x  # RNN, LSTM: one pre-activation gradient for both sides
                d_gates_x = _gates_by_rows(d_gates_x, gate_major)
                d_gates_h = d_gates_x if shared else _gates_by_rows(d_gates_h, gate_major)
                # the gate-major LSTM's products stay off OpenBLAS's own threads (see threads.matmul)
                product = threads.matmul if gate_major else np.matmul
                self._accumulate(layer, d, direction, d_gates_x, d_gates_h, product)
                d_x = product(d_gates_x.T, direction.packed.w_ih).reshape(time, batch, -1)
                if d == 1:
                    d_x = _reverse(d_x, reverse)
                d_in = d_x if d_in is None else d_in + d_x
            mask = cache["masks"][layer]
            d_seq = d_in * mask if mask is not None else d_in

        dx = d_seq.transpose(1, 0, 2)
        if order is not None:
            inverse = np.argsort(order)
            dx, dh0 = dx[inverse], dh0[:, inverse]
            dc0 = dc0[:, inverse] if dc0 is not None else None
        return np.ascontiguousarray(dx), dh0, dc0

    def _accumulate(self, layer, d, direction, gx, gh, product=np.matmul):
        """Weight gradients as one GEMM each over all steps: dW_ih = Σ_t dpre_tᵀ x_t, dW_hh = Σ_t dghᵀ h_{t-1}.

        gx, gh (G*H, time*batch): the pre-activation gradients of the input and the hidden side;
        product(a, b): the matrix product to use.
        """
        w_ih, w_hh, b_ih, b_hh = self._params(layer, d)
        inputs = direction.inputs.reshape(gx.shape[1], -1)
        h_prev = direction.arrays["h"][:-1].reshape(gx.shape[1], -1)
        F.add_unpacked(self.mode, w_ih.grad, product(gx, inputs))
        F.add_unpacked(self.mode, w_hh.grad, product(gh, h_prev))
        if b_ih is not None:
            d_bias = gx.sum(axis=1)
            F.add_unpacked(self.mode, b_ih.grad, d_bias)
            # The RNN and the LSTM share one pre-activation gradient, so one sum serves both biases.
            F.add_unpacked(self.mode, b_hh.grad, d_bias if gh is gx else gh.sum(axis=1))


def _gates_by_rows(d_gates: np.ndarray, gate_major: bool) -> np.ndarray:
    """Pre-activation gradients as a (G*H, time*batch) matrix (a view): from (time, batch, G*H), or from the
    gate-major (G*H, time, batch)."""
    if gate_major:
        return d_gates.reshape(d_gates.shape[0], -1)
    return d_gates.reshape(-1, d_gates.shape[-1]).T


# Below this share of real (not padding) steps, the input projection gathers the real rows first.
_DENSE_ENOUGH = 0.8


def _input_projection(inputs: np.ndarray, p: F.Packed, active: list[int]) -> np.ndarray:
    """xw = x W_ih^T + b for all steps at once, one GEMM: inputs (T, B, I) → (T, B, G*H), halved rows.

    Only the running rows xw[t, :active[t]] are computed when padding is a large share of the batch (the
    steps never read the rest, which is left uninitialised).
    """
    time, batch, _ = inputs.shape
    if sum(active) >= _DENSE_ENOUGH * time * batch:
        xw = (inputs.reshape(time * batch, -1) @ p.w_ih_t).reshape(time, batch, -1)
        xw += p.bias
        return xw
    running = np.arange(batch)[None, :] < np.asarray(active)[:, None]  # (T, B)
    xw = np.empty((time, batch, p.w_ih_half.shape[0]), dtype=inputs.dtype)
    projected = inputs[running] @ p.w_ih_t
    projected += p.bias
    xw[running] = projected
    return xw


def _reversal_index(lengths: np.ndarray, time: int) -> np.ndarray:
    """(time, batch) index: t → L_b - 1 - t within each sequence, t past its end stays t (an involution)."""
    t = np.arange(time)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _reverse(seq: np.ndarray, reverse: np.ndarray | None) -> np.ndarray:
    """Reverse each sequence of a time-major (time, batch, ·) array within its own length."""
    if reverse is None:
        return np.ascontiguousarray(seq[::-1])
    return seq[reverse, np.arange(seq.shape[1])[None, :]]


# ---------------------------------------------------------------------------------------------- time loops
# Backward computes the derivative factors for a block of steps at a time: one NumPy call per block instead
# of one per step, while the block stays small enough to live in the CPU cache.
_BLOCK_ELEMENTS = 1 << 16


def _blocks_backwards(time: int, row_elements: int):
    """(start, stop) blocks covering range(time), last block first."""
    size = max(1, _BLOCK_ELEMENTS // max(1, row_elements))
    for start in reversed(range(0, time, size)):
        yield start, min(start + size, time)


# Each forward returns the arrays backward needs; "h" is (time + 1, batch, H) with h[0] = h0, and
# "gate_major" says how the rest is laid out. Given xw, the input projection (T, B, G*H) of a folded first
# layer, a forward takes it instead of projecting `inputs` (None then). Each backward returns (d
# pre-activations of the input side, of the hidden side, dh0, dc0); the pre-activation gradients are
# (T, B, G*H), or (G*H, T, B) gate-major.

def _rnn_forward(layer, p, inputs, h0, c0, active, xw=None):
    xw = _input_projection(inputs, p, active) if xw is None else xw
    time, batch, hidden = xw.shape
    relu = layer.mode == "rnn_relu"
    hs = np.zeros((time + 1, batch, hidden), dtype=xw.dtype)
    hs[0] = h0
    for t, n in enumerate(active):
        F.rnn_step(xw[t, :n], hs[t, :n], p.w_hh_t, hs[t + 1, :n], relu)
    return {"h": hs, "relu": relu, "gate_major": False}


def _rnn_backward(direction, d_out, dh_n, dc_n, active):
    p, hs = direction.packed, direction.arrays["h"]
    d_pre = np.zeros_like(d_out)
    dh_rec, dh = dh_n.copy(), np.empty_like(dh_n)
    for start, stop in _blocks_backwards(len(active), d_out[0].size):
        factor = F.rnn_factors(hs[start + 1: stop + 1], direction.arrays["relu"])
        for t in reversed(range(start, stop)):
            n = active[t]
            np.add(d_out[t, :n], dh_rec[:n], out=dh[:n])
            F.rnn_step_backward(dh[:n], factor[t - start, :n], p.w_hh, d_pre[t, :n], dh_rec[:n])
    return d_pre, d_pre, dh_rec, None


def _lstm_forward(layer, p, inputs, h0, c0, active, xw=None):
    time, batch, _ = (inputs if xw is None else xw).shape
    fused = kernels.active(h0.dtype)
    if fused and batch > kernels.SMALL_BATCH and xw is None:  # (a folded layer has no inputs to fuse)
        return lstm_parts.forward(p, inputs, h0, c0, active)
    xw = _input_projection(inputs, p, active) if xw is None else xw
    gates = xw.shape[-1]
    hidden = gates // 4
    hs = np.zeros((time + 1, batch, hidden), dtype=xw.dtype)
    cs = np.zeros_like(hs)
    hs[0], cs[0] = h0, c0
    # The kernels read and write only the running rows; the NumPy backward computes factors on all rows.
    alloc = np.empty if fused else np.zeros
    acts = alloc(xw.shape, dtype=xw.dtype)
    tanh_c = alloc((time, batch, hidden), dtype=xw.dtype)
    arrays = {"h": hs, "c": cs, "gates": acts, "tanh_c": tanh_c, "gate_major": False}
    if fused and batch > kernels.SMALL_BATCH:  # a folded first layer: one GEMM and one compiled call per step
        for t, n in enumerate(active):
            np.matmul(hs[t, :n], p.w_hh_t, out=acts[t, :n])
            kernels.lstm_forward_step(t, n, xw, acts, cs, tanh_c, hs)
        return arrays
    if fused:  # batch <= SMALL_BATCH: one compiled call for all steps
        kernels.lstm_forward_loop(xw, p.w_hh_t, acts, cs, tanh_c, hs, np.asarray(active, dtype=np.int64))
        return arrays
    for t, n in enumerate(active):
        F.lstm_step(xw[t, :n], hs[t, :n], cs[t, :n], p.w_hh_t, acts[t, :n], cs[t + 1, :n], tanh_c[t, :n],
                    hs[t + 1, :n])
    return arrays


def _lstm_backward(direction, d_out, dh_n, dc_n, active):
    p, a = direction.packed, direction.arrays
    if a["gate_major"]:
        return lstm_parts.backward(p, a, d_out, dh_n, dc_n, active)
    hidden = dh_n.shape[-1]
    gates, forget = a["gates"], a["gates"][..., hidden: 2 * hidden]
    d_pre = np.zeros_like(gates)
    dh_rec, dc, dh = dh_n.copy(), dc_n.copy(), np.empty_like(dh_n)
    if kernels.active(gates.dtype):  # batch <= SMALL_BATCH: one compiled call for all steps
        kernels.lstm_backward_loop(d_out, p.w_hh, dh_rec, dc, gates, a["c"], a["tanh_c"], d_pre,
                                   np.asarray(active, dtype=np.int64))
        return d_pre, d_pre, dh_rec, dc
    for start, stop in _blocks_backwards(len(active), gates[0].size):
        k, factors = F.lstm_factors(gates[start:stop], a["c"][start:stop], a["tanh_c"][start:stop])
        for t in reversed(range(start, stop)):
            n, j = active[t], t - start
            np.add(d_out[t, :n], dh_rec[:n], out=dh[:n])
            F.lstm_step_backward(dh[:n], dc[:n], k[j, :n], factors[j, :n], forget[t, :n], p.w_hh, d_pre[t, :n],
                                 dh_rec[:n], dc[:n])
    return d_pre, d_pre, dh_rec, dc


def _gru_forward(layer, p, inputs, h0, c0, active, xw=None):
    xw = _input_projection(inputs, p, active) if xw is None else xw
    time, batch, gates = xw.shape
    hidden = gates // 3
    hs = np.zeros((time + 1, batch, hidden), dtype=xw.dtype)
    hs[0] = h0
    # Steps write only the running rows; the NumPy backward reads all, so they start at zero, except in a
    # folded layer's forward (inputs None), which has no backward.
    alloc = np.empty if inputs is None else np.zeros
    acts = alloc(xw.shape, dtype=xw.dtype)
    hn = alloc((time, batch, hidden), dtype=xw.dtype)
    scratch = np.empty((batch, gates), dtype=xw.dtype)
    if kernels.active(xw.dtype):  # one GEMM and one compiled call per step
        b_hn = p.b_hn if p.b_hn is not None else np.zeros(hidden, dtype=xw.dtype)
        for t, n in enumerate(active):
            np.matmul(hs[t, :n], p.w_hh_t, out=scratch[:n])
            kernels.gru_forward_step(t, n, xw, scratch, b_hn, hn, acts, hs)
        return {"h": hs, "gates": acts, "hn": hn, "gate_major": False}
    for t, n in enumerate(active):
        F.gru_step(xw[t, :n], hs[t, :n], p.w_hh_t, p.b_hn, hn[t, :n], acts[t, :n], hs[t + 1, :n], scratch[:n])
    return {"h": hs, "gates": acts, "hn": hn, "gate_major": False}


def _gru_backward(direction, d_out, dh_n, dc_n, active):
    p, arr = direction.packed, direction.arrays
    hidden = dh_n.shape[-1]
    gates, z = arr["gates"], arr["gates"][..., :hidden]
    d_gh = np.zeros_like(gates)
    d_n = np.zeros_like(arr["hn"])
    dh_rec, dh, scratch = dh_n.copy(), np.empty_like(dh_n), np.empty_like(dh_n)
    for start, stop in _blocks_backwards(len(active), gates[0].size):
        a, b = F.gru_factors(gates[start:stop], arr["h"][start:stop], arr["hn"][start:stop])
        for t in reversed(range(start, stop)):
            n, j = active[t], t - start
            np.add(d_out[t, :n], dh_rec[:n], out=dh[:n])
            F.gru_step_backward(dh[:n], a[j, :n], b[j, :n], z[t, :n], p.w_hh, d_gh[t, :n], d_n[t, :n],
                                dh_rec[:n], scratch[:n])
    d_gx = np.concatenate([d_gh[..., : 2 * hidden], d_n], axis=-1)  # the n gate's input side: dn_pre
    return d_gx, d_gh, dh_rec, None


_FORWARD = {"rnn_tanh": _rnn_forward, "rnn_relu": _rnn_forward, "lstm": _lstm_forward, "gru": _gru_forward}
_BACKWARD = {"rnn_tanh": _rnn_backward, "rnn_relu": _rnn_backward, "lstm": _lstm_backward, "gru": _gru_backward}


# ---------------------------------------------------------------------------------------------- public layers

class _HiddenStateOnly(_Recurrent):
    """RNN and GRU: the state is h alone."""

    def forward(self, x, h0=None, lengths=None):
        output, h_n, _ = self._forward(x, h0, None, lengths)
        return output, h_n

    def backward(self, d_output=None, d_h_n=None):
        d_x, d_h0, _ = self._backward(d_output, d_h_n, None)
        return d_x, d_h0



class RNN(_HiddenStateOnly):
    """Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu.

    forward(x (batch, time, input_size), h0 (layers*dirs, batch, hidden) = zeros, lengths (batch,) = None)
      → output (batch, time, dirs*hidden), h_n (layers*dirs, batch, hidden)
    backward(d_output, d_h_n=None) → (d_x, d_h0); parameter gradients accumulate in `.grad`.
    Outputs past a sequence's length are zero and h_n holds the state at its last real step.
    Truncated BPTT: pass h_n of one window as h0 of the next; backward stops at h0 (the carried state is
    a constant, as `h.detach()` makes it in PyTorch).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, dropout=0.0,
                 bidirectional=False, dtype=np.float32, rng=None, check_finite=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.mode = "rnn_" + nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, dropout, bidirectional, dtype, rng,
                         check_finite)


class GRU(_HiddenStateOnly):
    """Gated recurrent unit (PyTorch's equations; see functional.py). Same interface as `RNN`."""

    mode = "gru"


class LSTM(_Recurrent):
    """Long short-term memory (PyTorch's equations; see functional.py).

    forward(x (batch, time, input_size), state=(h0, c0) or None, lengths=None)
      → output (batch, time, dirs*hidden), (h_n, c_n) each (layers*dirs, batch, hidden)
    backward(d_output, d_h_n=None, d_c_n=None) → (d_x, (d_h0, d_c0)).
    """

    mode = "lstm"

    def forward(self, x, state=None, lengths=None):
        if state is None:
            h0 = c0 = None
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError("LSTM state must be a pair (h0, c0)")
            h0, c0 = state
        output, h_n, c_n = self._forward(x, h0, c0, lengths)
        return output, (h_n, c_n)

    def backward(self, d_output=None, d_h_n=None, d_c_n=None):
        d_x, d_h0, d_c0 = self._backward(d_output, d_h_n, d_c_n)
        return d_x, (d_h0, d_c0)

