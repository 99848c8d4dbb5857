"""RNN, LSTM and GRU layers over whole sequences, with backpropagation through time.

Arguments, parameter names, shapes, initialisation and results are PyTorch's (`torch.nn.RNN/LSTM/GRU`),
so a `state_dict()` loads into PyTorch and back unchanged. One default differs: `batch_first=True`, the
engine's layout, (batch, time, features); `batch_first=False` takes and gives (time, batch, features) as
torch's default does. States are (layers*dirs, batch, hidden) either way.

How a layer runs (cells/ has one step of each cell as the textbook equations; fast/ the fast paths):
  * the batch is sorted by length, longest first, so at step t the sequences still running are the first
    `active[t]` rows — exactly PyTorch's packed sequences. Finished rows are never touched again: their
    state stays their final state and their outputs stay zero;
  * the backward direction of a bidirectional layer is the forward algorithm run on each sequence reversed
    within its own length, and its outputs are put back in time order;
  * arrays are time-major inside, `(time, batch, ·)`, so a step's rows are one contiguous block;
  * each layer direction runs on the implementation `fast.select` gives for its cell, batch, hidden size
    and dtype (RNNKIT_PATH forces a path; `last_paths` says which ran). Every path projects the input half
    of every gate for all steps before its loop and returns the pre-activation gradients, from which the
    weight gradients here are one GEMM each over all steps;
  * a first layer fed by an embedding (`Embedded`) looks that GEMM up instead while the weights are locked
    in eval mode: each token's projection, embedding W_ih^T + b, is computed once for the whole vocabulary;
  * with `record_through_time` set, a layer runs on the reference path and keeps, per layer direction, its
    inputs, its states and ∂L/∂h_t for every step in `recorded` (rnnkit.diagnostics); the fast paths are
    untouched when it is off (the default).
"""
from __future__ import annotations

import numpy as np

from . import fast, reference
from .fast import packing, threads
from .module import Module, Parameter, as_float_dtype, claim, dtype_note, make_rng


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

    __slots__ = ("packed", "inputs", "trace", "run")

    def __init__(self, packed, inputs, trace, run):
        self.packed, self.inputs, self.trace, self.run = packed, inputs, trace, run


class _Recurrent(Module):
    mode: str = "rnn_tanh"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, dtype=np.float32,
                 rng=None, check_finite: bool = False):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.dropout, self.bidirectional = bool(bias), float(dropout), bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.num_directions = 2 if bidirectional else 1
        self.dtype = as_float_dtype(dtype)
        self.check_finite = check_finite
        self.rng = make_rng(rng)
        gate_rows = packing.GATES[self.mode] * hidden_size
        bound = 1.0 / np.sqrt(hidden_size)  # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        shapes = {}  # every parameter claimed against the budget before any is drawn: a refused layer allocates nothing
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = self._suffix(layer, direction)
                shapes["weight_ih" + suffix] = claim((gate_rows, layer_input))
                shapes["weight_hh" + suffix] = claim((gate_rows, hidden_size))
                if bias:
                    shapes["bias_ih" + suffix] = claim((gate_rows,))
                    shapes["bias_hh" + suffix] = claim((gate_rows,))
        for name, shape in shapes.items():
            setattr(self, name, Parameter(self.rng.uniform(-bound, bound, size=shape).astype(self.dtype)))
        self._cache = None
        self._locked_packs: dict = {}
        self.last_paths: tuple[str, ...] = ()  # the path each layer ran on in the last forward
        self.record_through_time = False  # True: run on the reference path and fill `recorded` (see below)
        self.recorded: list[dict] | None = None

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _params(self, layer: int, direction: int) -> list[Parameter | None]:
        s = self._suffix(layer, direction)
        return [getattr(self, n + s, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def extra_repr(self) -> str:
        """torch's: the settings that differ from torch's defaults (so batch_first=True shows)."""
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + dtype_note(self.dtype)

    @property
    def _layout(self) -> str:
        return "(batch, time, features)" if self.batch_first else "(time, batch, features)"

    def _user_shape(self, shape) -> tuple:
        """A batch-major shape as the caller gave it (time first when batch_first=False)."""
        return tuple(shape) if self.batch_first else (shape[1], shape[0], *shape[2:])

    # ------------------------------------------------------------------------------------------ checks
    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)       # (batch, time, features): _forward has swapped a time-major input's axes
        if x.ndim != 3:
            raise ValueError(f"input must be {self._layout}, got an array of rank {x.ndim} {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input has an empty batch or time axis: shape {self._user_shape(x.shape)}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"input has {x.shape[2]} features, the layer expects input_size={self.input_size}")
        if x.dtype.kind not in "fiu":  # real numbers: floats, integers
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
    @threads.one_count
    def _forward(self, x, h0, c0, lengths):
        if not self.batch_first:
            x = self._batch_major(x)
        folded = None  # an Embedded input whose first-layer projection is looked up
        if isinstance(x, Embedded):
            if self._folds(x):
                folded = self._check_tokens(x)
            else:
                x = x.vectors()
        if folded is None:
            x = self._check_input(x)
        batch, time = folded.tokens.shape if folded is not None else x.shape[:2]
        runs = [self._select(batch, time, layer, folded is not None and layer == 0)
                for layer in range(self.num_layers)]
        if folded is not None and not runs[0].folds:  # a path that projects its own inputs
            x, folded = self._check_input(folded.vectors()), None
            runs[0] = self._select(batch, time, 0, False)
        lengths = self._check_lengths(lengths, batch, time)
        h0 = self._check_state("h0", h0, batch)
        if self.mode == "lstm":
            c0 = self._check_state("c0", c0, batch)

        source = x if folded is None else folded.tokens[..., None]  # (batch, time, features or 1)
        if lengths is None:
            order, sorted_lengths = None, np.full(batch, time)
            active = [batch] * time
            seq = source.transpose(1, 0, 2)
        else:
            order = np.argsort(-lengths, kind="stable")
            sorted_lengths = lengths[order]
            active = (sorted_lengths[None, :] > np.arange(time)[:, None]).sum(axis=1).tolist()
            seq = source[order].transpose(1, 0, 2)
            h0 = h0[:, order]
            c0 = c0[:, order] if c0 is not None else None
        # no copy where the path copies the time-major view into its operand itself and no backward follows
        # (a backward reads the inputs again: a copy, so that changing the caller's array does not change it)
        if self._backward_may_follow or not runs[0].strided_inputs:
            seq = np.ascontiguousarray(seq)
        # reverse[t, b]: the time index that step t of sequence b reads when run backwards
        reverse = None if lengths is None else _reversal_index(sorted_lengths, time)

        D, H = self.num_directions, self.hidden_size
        h_n = np.empty((self.num_layers * D, batch, H), dtype=self.dtype)
        c_n = np.empty_like(h_n) if self.mode == "lstm" else None
        layers, masks = [], []
        last = time - 1 if lengths is None else (sorted_lengths - 1, np.arange(batch))  # each row's final state
        # the last layer's states straight into the array the caller gets, where the path writes them so:
        # each direction's into its H columns, the reverse one's in reversed time (no concatenating or
        # transposing copy; bidirectional, hidden 256 batch 64: 1.12 of PyTorch's time with both copies).
        # Without lengths only (order None): every sequence runs every step, so every entry is written.
        final = None
        if order is None and runs[-1].direct_outputs:
            final = np.empty((batch, time, D * H) if self.batch_first else (time, batch, D * H), dtype=self.dtype)
        for layer, run in enumerate(runs):
            mask = None
            if layer > 0 and self.training and self.dropout > 0:
                keep = self.rng.random(seq.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
                seq = seq * mask
            masks.append(mask)
            outputs, directions = [], []
            into = final is not None and layer == self.num_layers - 1
            for d in range(D):
                k = layer * D + d
                inputs = seq if d == 0 else _reverse(seq, reverse, copy=self._backward_may_follow
                                                     or not run.strided_inputs)
                packed = self._packed(layer, d, run)
                xw = None
                if layer == 0 and folded is not None:  # time-major token ids (T, B, 1) → their projections
                    xw, inputs = packed.token_table(folded.weight)[inputs[..., 0]], None
                state = h0[k], None if c0 is None else c0[k]
                if into:  # the direction's columns, time-major
                    columns = _time_major(final[:, :, d * H:(d + 1) * H], self.batch_first)
                    trace = run.forward(packed, inputs, *state, active, xw,
                                        outputs=columns if d == 0 else columns[::-1])
                else:
                    trace = run.forward(packed, inputs, *state, active, xw)
                h_n[k] = trace.outputs[last]
                if c_n is not None:
                    c_n[k] = trace.c_n
                if not into:  # (else the states are in `final` already)
                    outputs.append(trace.outputs if d == 0 else _reverse(trace.outputs, reverse))
                directions.append(_Direction(packed, inputs, trace, run))
            if into:
                seq = _time_major(final, self.batch_first)
            else:
                seq = outputs[0] if D == 1 else np.concatenate(outputs, axis=-1)
            layers.append(directions)
        self.last_paths = tuple(run.path for run in runs)
        if self.record_through_time:
            self.recorded = self._record_forward(layers, order, reverse)
        self._cache = dict(layers=layers, masks=masks, order=order, active=active, reverse=reverse,
                           shape=(batch, time), folded=folded is not None)

        output = seq.transpose(1, 0, 2) if self.batch_first else seq     # seq is (time, batch, ·)
        if order is not None:
            inverse = np.argsort(order)
            output = output[inverse] if self.batch_first else output[:, inverse]
            h_n = h_n[:, inverse]
            c_n = c_n[:, inverse] if c_n is not None else None
        return _handed_out(output, self._backward_may_follow), h_n, c_n

    def _batch_major(self, x):
        """A time-major input (batch_first=False) as the (batch, time, ·) view that _forward reads."""
        if isinstance(x, Embedded):
            tokens = np.asarray(x.tokens)
            if tokens.ndim != 2:
                raise ValueError(f"tokens must be (time, batch), got shape {tokens.shape}")
            return Embedded(tokens.T, x.weight)
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"input must be {self._layout}, got an array of rank {x.ndim} {x.shape}")
        return x.swapaxes(0, 1)

    def _select(self, batch: int, time: int, layer: int, folded: bool) -> fast.Implementation:
        if self.record_through_time:
            return fast.Implementation("reference", reference.forward, reference.backward, folds=False)
        inputs = self.input_size if layer == 0 else self.num_directions * self.hidden_size
        return fast.select(self.mode, batch, self.hidden_size, self.dtype, folded=folded,
                           training=self._backward_may_follow, time=time, inputs=inputs)

    @property
    def _backward_may_follow(self) -> bool:
        """False with locked weights in eval mode (as for the folded layer): the forward may keep nothing for
        a backward."""
        return self.training or not self.weights_locked

    def _record_forward(self, layers, order, reverse) -> list[dict]:
        """Per layer direction (k = layer*dirs + direction), batch-major in the caller's row order:
        inputs (batch, time, features), h0 (batch, hidden), h (batch, time, hidden) in time order."""
        inverse = None if order is None else np.argsort(order)
        records = []
        for directions in layers:
            for d, direction in enumerate(directions):
                inputs = directions[0].inputs                       # the layer's input, time order
                states = direction.trace.h[1:] if d == 0 else _reverse(direction.trace.h[1:], reverse)
                records.append(dict(inputs=_caller_rows(inputs, inverse), h=_caller_rows(states, inverse),
                                    h0=direction.trace.h[0] if inverse is None else direction.trace.h[0][inverse]))
        return records

    def _folds(self, x: Embedded) -> bool:
        """Whether this forward looks the first layer's input projection up (see `Embedded`)."""
        if self.training or not self.weights_locked or np.ndim(x.tokens) != 2:
            return False
        rows = packing.GATES[self.mode] * self.hidden_size
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

    def _packed(self, layer: int, direction: int, run: fast.Implementation | None = None) -> packing.Packed:
        """The weights of one layer direction, packed for the steps: anew on every call, or, in eval mode with
        the weights locked (Module.lock_weights), once and then reused; in training with the copies `run`'s
        backward reads (the forward's weights, whatever happens to them before the backward)."""
        key = (layer, direction)
        if self.weights_locked and not self.training and key in self._locked_packs:
            return self._locked_packs[key]
        packed = packing.pack(self.mode, *(p.data if p is not None else None for p in self._params(layer, direction)))
        if self.training:
            keeps = (run.keeps_w_hh, run.keeps_w_ih) if run is not None else (False, False)
            packed.copy_for_backward(hidden=not keeps[0], inputs=not keeps[1])
        elif self.weights_locked:
            self._locked_packs[key] = packed
        return packed

    def _forget_weights(self) -> None:
        self._locked_packs = {}

    # ------------------------------------------------------------------------------------------ backward
    @threads.one_count
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

        d_output = grad("d_output", d_output, (batch, time, D * H) if self.batch_first else (time, batch, D * H))
        if not self.batch_first:
            d_output = d_output.swapaxes(0, 1)
        d_h_n = grad("d_h_n", d_h_n, state_shape)
        d_c_n = grad("d_c_n", d_c_n, state_shape) if self.mode == "lstm" else None
        if order is not None:
            d_output, d_h_n = d_output[order], d_h_n[:, order]
            d_c_n = d_c_n[:, order] if d_c_n is not None else None
        d_seq = d_output.transpose(1, 0, 2)  # a view: copied below where the path needs it contiguous

        dh0 = np.empty(state_shape, dtype=self.dtype)
        dc0 = np.empty(state_shape, dtype=self.dtype) if self.mode == "lstm" else None
        for layer in reversed(range(self.num_layers)):
            d_in = None
            for d, direction in enumerate(cache["layers"][layer]):
                k = layer * D + d
                run = direction.run
                d_out = d_seq[..., d * H:(d + 1) * H]
                if d == 1:
                    d_out = _reverse(d_out, reverse)
                elif not run.strided_d_out:
                    d_out = np.ascontiguousarray(d_out)
                dc_k = None if d_c_n is None else d_c_n[k]
                extra = {}
                if self.record_through_time:                    # the reference path: ∂L/∂h_t of every step
                    extra["reaching"] = np.zeros_like(d_out)
                if run.gradients is not None and not extra:  # the path makes every gradient itself
                    grads = self._weight_grads(layer, d)
                    into = {"into": grads} if run.gradients_into and grads is not None else {}
                    w_ih_grad, w_hh_grad, bias_grad, d_x, dh0[k], dc_last = run.gradients(
                        direction.packed, direction.trace, direction.inputs, d_out, d_h_n[k], dc_k, active, **into)
                    if dc0 is not None:
                        dc0[k] = dc_last
                    self._add_gradients(layer, d, w_ih_grad, w_hh_grad, bias_grad)
                    if d == 1:
                        d_x = _reverse(d_x, reverse)
                    d_in = d_x if d_in is None else d_in + d_x
                    continue
                d_gates_x, d_gates_h, dh0[k], dc_last = run.backward(
                    direction.packed, direction.trace, d_out, d_h_n[k], dc_k, active, **extra)
                if extra and self.recorded is not None:
                    reaching = extra["reaching"] if d == 0 else _reverse(extra["reaching"], reverse)
                    self.recorded[k]["grad_h"] = _caller_rows(reaching, None if order is None else np.argsort(order))
                if dc0 is not None:
                    dc0[k] = dc_last
                product = run.matmul
                self._accumulate(layer, d, direction, d_gates_x, d_gates_h, product)
                d_x = product(d_gates_x.T, direction.packed.w_ih).reshape(time, batch, -1)
                if d == 1:
                    d_x = _reverse(d_x, reverse)
                d_in = d_x if d_in is None else d_in + d_x
            mask = cache["masks"][layer]
            d_seq = d_in * mask if mask is not None else d_in

        dx = d_seq.transpose(1, 0, 2) if self.batch_first else d_seq        # d_seq is (time, batch, ·)
        if order is not None:
            inverse = np.argsort(order)
            dx = dx[inverse] if self.batch_first else dx[:, inverse]
            dh0 = dh0[:, inverse]
            dc0 = dc0[:, inverse] if dc0 is not None else None
        return dx, dh0, dc0

    def _add_gradients(self, layer, d, w_ih_grad, w_hh_grad, bias_grad):
        """Add a path's own weight gradients (packed row order: fast.Implementation.gradients; None where the
        path added it itself) to the parameters'; bias_grad: the two biases' shared gradient (the LSTM's), or a
        pair (b_ih's, b_hh's)."""
        w_ih, w_hh, b_ih, b_hh = self._params(layer, d)
        for param, grad in ((w_ih, w_ih_grad), (w_hh, w_hh_grad)):
            if grad is not None:  # (None: the path added it itself)
                packing.add_unpacked(self.mode, param.grad, grad)
        pair = bias_grad if isinstance(bias_grad, tuple) else (bias_grad, bias_grad)
        for bias, grad in zip((b_ih, b_hh), pair):
            if bias is not None:
                packing.add_unpacked(self.mode, bias.grad, grad)

    def _weight_grads(self, layer, d) -> tuple | None:
        """(W_ih's gradient, W_hh's) where a path may add its products straight into them (C-contiguous, the
        layer's dtype, as Parameter makes them), else None (a gradient a caller replaced: added as before)."""
        grads = tuple(w.grad for w in self._params(layer, d)[:2])
        if all(g.flags.c_contiguous and g.dtype == self.dtype for g in grads):
            return grads
        return None

    def _accumulate(self, layer, d, direction, gx, gh, product=np.matmul):
        """Weight gradients as one GEMM each over all steps: dW_ih = Σ_t dpre_tᵀ x_t, dW_hh = Σ_t dghᵀ h_{t-1}.

        gx, gh (G*H, time*batch): the pre-activation gradients of the input and the hidden side;
        product(a, b): the matrix product to use (threads.matmul on gemm.py's kernels: the products added into
        the gradients with no product array between, threads.add_products).
        """
        w_ih, w_hh, b_ih, b_hh = self._params(layer, d)
        inputs = direction.inputs.reshape(gx.shape[1], -1)
        h_prev = direction.trace.h[:-1].reshape(gx.shape[1], -1)
        if product is threads.matmul and threads.own_kernels(gx.dtype) and self._weight_grads(layer, d):
            order = packing.gate_order(self.mode)
            if gh is gx:
                threads.add_products(gx, (inputs, h_prev), (w_ih.grad, w_hh.grad), order)
            else:
                threads.add_products(gx, (inputs,), (w_ih.grad,), order)
                threads.add_products(gh, (h_prev,), (w_hh.grad,), order)
        else:
            packing.add_unpacked(self.mode, w_ih.grad, product(gx, inputs))
            packing.add_unpacked(self.mode, w_hh.grad, product(gh, h_prev))
        if b_ih is not None:
            d_bias = threads.row_sums(gx)
            packing.add_unpacked(self.mode, b_ih.grad, d_bias)
            # The RNN and the LSTM share one pre-activation gradient, so one sum serves both biases.
            packing.add_unpacked(self.mode, b_hh.grad, d_bias if gh is gx else threads.row_sums(gh))


def _handed_out(output: np.ndarray, kept: bool) -> np.ndarray:
    """The layer's output as its caller gets it. Where a backward may follow (`kept`), as PyTorch hands it
    out: no copy, a view of the time-major states when batch_first (strides (H, B·H, 1)), and read-only, since
    the backward reads those states again (an in-place change would silently change the gradients). Else a
    C-contiguous array of its own."""
    if not kept:
        return np.ascontiguousarray(output)
    output = output.view()
    output.setflags(write=False)
    return output


def _reversal_index(lengths: np.ndarray, time: int) -> np.ndarray:
    """(time, batch) index: t → L_b - 1 - t within each sequence, t past its end stays t (an involution)."""
    t = np.arange(time)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _caller_rows(seq: np.ndarray, inverse: np.ndarray | None) -> np.ndarray:
    """A time-major (time, batch, ·) array of sorted rows as a batch-major copy in the caller's row order."""
    out = seq.transpose(1, 0, 2)
    return np.ascontiguousarray(out if inverse is None else out[inverse])


def _time_major(array: np.ndarray, batch_first: bool) -> np.ndarray:
    """The (time, batch, ·) view of an array in the layer's layout."""
    return array.transpose(1, 0, 2) if batch_first else array


def _reverse(seq: np.ndarray, reverse: np.ndarray | None, copy: bool = True) -> np.ndarray:
    """Reverse each sequence of a time-major (time, batch, ·) array within its own length (every sequence
    full length, reverse None: a copy, or without `copy` the reversed view)."""
    if reverse is None:
        return np.ascontiguousarray(seq[::-1]) if copy else seq[::-1]
    return seq[reverse, np.arange(seq.shape[1])[None, :]]


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
    With batch_first=False, x, output and d_output are time-major: (time, batch, ·), as in torch.
    backward(d_output, d_h_n=None) → (d_x, d_h0); parameter gradients accumulate in `.grad`.
    Outputs past a sequence's length are zero and h_n holds the state at its last real step. Where a backward
    may follow (training, or weights not locked), output is read-only and, batch-first, a view of the layer's
    time-major states, as PyTorch hands it out (copy it to change it: the backward reads those states).
    Truncated BPTT: pass h_n of one window as h0 of the next; backward stops at h0 (the carried state is
    a constant, as `h.detach()` makes it in PyTorch).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=True,
                 dropout=0.0, bidirectional=False, dtype=np.float32, rng=None, check_finite=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.mode = "rnn_" + nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype,
                         rng, check_finite)


class GRU(_HiddenStateOnly):
    """Gated recurrent unit (PyTorch's equations; see cells/gru.py). Same interface as `RNN`."""

    mode = "gru"


class LSTM(_Recurrent):
    """Long short-term memory (PyTorch's equations; see cells/lstm.py).

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

