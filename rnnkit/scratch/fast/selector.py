"""One function chooses how a recurrent layer runs: `select(cell, batch, hidden, dtype, folded)`.

Paths, slowest first:
    reference  the textbook cells (rnnkit/scratch/cells/) one step at a time: the ground truth, slow
    numpy      steps.py's in-place NumPy steps on packed weights (numpy_path.py): every cell, every dtype
    numba      kernels.py's compiled steps (numba_path.py): the LSTM, the GRU's forward, the RNN's forward at
               small batches, the GRU's and the RNN's backward (a compiled step and a BLAS product per step);
               float32/float64
    threaded   threads that each own a slice of the hidden units: the gate-major LSTM (threaded_lstm.py; a
               small step on one part, a helper thread beside it making the weight gradients), the
               GRU's and the RNN's forward and backward (threaded_gru.py, threaded_rnn.py)
By default a layer takes the fastest path its cell has, with the thresholds of thresholds.py: the LSTM on
numba while a step's work is small (and when its first layer is folded, see recurrent.Embedded), threaded
above; the GRU and the RNN likewise (thresholds.threaded_forward), a folded GRU on numba and a folded RNN on
numba up to SMALL_BATCH rows, on NumPy above. The GRU's and the RNN's choice depends on whether a backward
follows (`training`; the layer passes False in eval mode with locked weights): in inference the threaded
LSTM and GRU keep no trace for a backward (the thresholds were measured in both modes and are the same now).
RNNKIT_PATH=reference|numpy|numba|threaded caps the choice: each layer then takes that path where its cell has
it (at any batch size), else the fastest one below it — so RNNKIT_PATH=numba leaves the RNN above SMALL_BATCH
rows on NumPy, and RNNKIT_PATH=reference also turns the folded layer off.
Every implementation returns a row-major `Trace` (trace.py); layouts stay inside the paths.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import reference
from . import kernels, numba_path, numpy_path, threaded_gru, threaded_lstm, threaded_rnn, threads, thresholds

PATHS = ("reference", "numpy", "numba", "threaded")
ENVIRONMENT = "RNNKIT_PATH"


@dataclass(frozen=True)
class Implementation:
    """How one layer direction runs: forward(p, inputs, h0, c0, active, xw=None) -> Trace and
    backward(p, trace, d_out, dh_n, dc_n, active) -> (gates_x, gates_h, dh0, dc0) (see numpy_path.py);
    matmul: the product for the weight and input gradients; folds: takes a looked-up input projection;
    gradients: where the path makes the weight and input gradients itself (the threaded LSTM, the GRU whose
    backward splits its rows), gradients(p, trace, inputs, d_out, dh_n, dc_n, active) -> (dW_ih, dW_hh, db,
    dx (T, B, I), dh0, dc0), packed row order, db the two biases' shared gradient or a pair (b_ih's, b_hh's)
    (threaded_lstm.gradients, numba_path.gru_gradients); the layer then calls it instead of backward; strided_inputs:
    forward reads inputs (T, B, I) through any strides (its first read copies them into its own operand), so
    the layer passes a batch-major input's time-major view without a copy; direct_outputs: forward takes
    outputs=ARRAY, (T, B, H) with any strides, and writes the states after each step there (a view of the
    layer's batch-major output: each direction's H columns, the reverse one's in reversed time), instead of
    into its own h (inference paths only: a backward reads h time-major); strided_d_out: backward
    and gradients read d_out (T, B, H) through any strides (the layer's batch-major gradient's view);
    keeps_w_hh: the training forward makes what its backward reads of W_hh itself (the threaded LSTM's
    W_hh^T panels, in its trace; the threaded RNN's and GRU's Packed.w_hh, copied beside their own packing:
    threaded_rnn.backward_copy), so the layer makes no copy of W_hh for the backward (Packed.copy_for_backward);
    keeps_w_ih: the same for W_ih (the threaded LSTM's forward panels of W_ih, which its one-part backward reads
    transposed, or its padded copy, threaded_lstm.input_operand; the threaded RNN's and GRU's Packed.w_ih);
    gradients_into: gradients takes into=(W_ih's gradient, W_hh's) and may add the weight gradients into them
    itself, returning None in their place (threaded_lstm.split_gradients, threaded_lstm.gradients)."""

    path: str
    forward: Callable
    backward: Callable
    matmul: Callable = np.matmul
    folds: bool = True
    gradients: Callable | None = None  # (p, trace, inputs, d_out, dh_n, dc_n, active) -> every gradient at once
    strided_inputs: bool = False
    direct_outputs: bool = False
    strided_d_out: bool = False
    keeps_w_hh: bool = False
    keeps_w_ih: bool = False
    gradients_into: bool = False


def _reference(cell):
    return Implementation("reference", reference.forward, reference.backward, folds=False)


def _numpy(cell):
    return Implementation("numpy", numpy_path.FORWARD[cell], numpy_path.BACKWARD[cell])


def _numba_lstm_loop(cell):
    return Implementation("numba", numba_path.lstm_forward_loop, numba_path.lstm_backward)


def _numba_lstm_steps(cell):
    return Implementation("numba", numba_path.lstm_forward_steps, numba_path.lstm_backward)


def _numba_gru(cell):
    return Implementation("numba", numba_path.gru_forward, numba_path.gru_backward)


def _numba_gru_loop(cell):
    return Implementation("numba", numba_path.gru_forward_loop, numba_path.gru_backward)


def _numba_rnn_loop(cell):
    return Implementation("numba", numba_path.rnn_forward_loop, numba_path.rnn_backward, strided_d_out=True)


def _threaded(cell):
    # the backward's big products stay off OpenBLAS's own threads (see threads.matmul)
    return Implementation("threaded", threaded_lstm.forward, threaded_lstm.backward, matmul=threads.matmul,
                          folds=False, gradients=threaded_lstm.split_gradients, strided_inputs=True,
                          strided_d_out=True, keeps_w_hh=True, keeps_w_ih=True, gradients_into=True)


def _threaded_one_part(cell):
    # one part runs the steps, a helper thread the input projection and the weight gradients
    return Implementation("threaded", threaded_lstm.forward, threaded_lstm.backward,
                          matmul=threads.matmul, folds=False, gradients=threaded_lstm.gradients, strided_inputs=True,
                          strided_d_out=True, keeps_w_hh=True, keeps_w_ih=True, gradients_into=True)


def _threaded_inference(cell):  # keeps no trace: no backward follows
    return Implementation("threaded", threaded_lstm.inference_forward, threaded_lstm.backward, folds=False,
                          strided_inputs=True, direct_outputs=True)


def _threaded_gru(cell):  # its products on the threads' split too: OpenBLAS's spinning threads stay asleep
    return Implementation("threaded", threaded_gru.forward, threaded_gru.backward, matmul=threads.matmul,
                          folds=False, strided_inputs=True, strided_d_out=True, keeps_w_hh=True, keeps_w_ih=True)


def _threaded_gru_rows(cell):  # the backward's rows split over the threads: every gradient at once
    # (numba_path.gru_gradients: each pre-activation gradient written once, the bias gradients summed by the steps)
    return Implementation("threaded", threaded_gru.forward, threaded_gru.backward, folds=False, strided_inputs=True,
                          strided_d_out=True, gradients=numba_path.gru_gradients, gradients_into=True,
                          keeps_w_hh=True, keeps_w_ih=True)


def _threaded_gru_inference(cell):  # keeps no trace: no backward follows
    return Implementation("threaded", threaded_gru.inference_forward, threaded_gru.backward, folds=False,
                          strided_inputs=True, direct_outputs=True)


def _threaded_rnn(cell):
    return Implementation("threaded", threaded_rnn.forward, threaded_rnn.backward, matmul=threads.matmul,
                          folds=False, strided_inputs=True, strided_d_out=True, keeps_w_hh=True, keeps_w_ih=True)


def _threaded_rnn_inference(cell):  # writes into the layer's output: no backward follows
    return Implementation("threaded", threaded_rnn.inference_forward, threaded_rnn.backward, folds=False,
                          strided_inputs=True, direct_outputs=True)


def forced() -> str | None:
    """The path RNNKIT_PATH caps the choice at, or None (the default choice)."""
    value = os.environ.get(ENVIRONMENT, "").strip().lower()
    if not value:
        return None
    if value not in PATHS:
        raise ValueError(f"{ENVIRONMENT}={value!r} is not a path; choose one of {', '.join(PATHS)}")
    return value


def _candidates(cell: str, batch: int, hidden: int, dtype, folded: bool, cap: str | None, training: bool,
                time: int | None, inputs: int) -> list:
    """(path, make) pairs this layer may run on, fastest first."""
    numba = kernels.active(dtype)
    fastest = []
    long_enough = thresholds.enough_steps(cell, time, batch, hidden, inputs, training, np.dtype(dtype).itemsize)
    if cell == "lstm" and numba:
        # enough work per step for the threads: a big W_hh, or many columns
        shared = hidden >= thresholds.LOOP_HIDDEN or batch * hidden > thresholds.LOOP_WORK
        if not folded and (cap is not None or shared and long_enough):
            # a small step (on one part at any thread count): its helper thread makes the weight gradients;
            # else (one thread, or a big step) OpenBLAS's products after the steps, as measured before
            small = threaded_lstm.small_step(hidden, batch, training, inputs)
            fastest.append(("threaded", _threaded_inference if not training else
                            _threaded_one_part if small else _threaded))
        fastest.append(("numba", _numba_lstm_loop if batch <= thresholds.SMALL_BATCH else _numba_lstm_steps))
    small = batch <= thresholds.SMALL_BATCH
    if cell in ("gru", "rnn_tanh", "rnn_relu") and numba and not folded:
        if cap is not None or thresholds.threaded_forward(batch, hidden, training) and long_enough:
            if cell == "gru":
                rows = numba_path.gru_backward_parts(batch, hidden) > 1  # (its rows split: numba_path's backward)
                fastest.append(("threaded", _threaded_gru_inference if not training else
                                _threaded_gru_rows if rows else _threaded_gru))
            else:
                fastest.append(("threaded", _threaded_rnn if training else _threaded_rnn_inference))
    if cell == "gru" and numba:
        fastest.append(("numba", _numba_gru_loop if small else _numba_gru))
    if cell in ("rnn_tanh", "rnn_relu") and numba and small:
        fastest.append(("numba", _numba_rnn_loop))
    return fastest + [("numpy", _numpy), ("reference", _reference)]


def select(cell: str, batch: int, hidden: int, dtype, folded: bool = False, training: bool = True,
           time: int | None = None, inputs: int | None = None) -> Implementation:
    """The implementation for a layer of `cell` ("lstm", "gru", "rnn_tanh", "rnn_relu") running `batch`
    rows of `hidden` units in `dtype`; folded: its input projection is looked up (recurrent.Embedded);
    training: a backward may follow the forward (else the forward may keep nothing for one); time: the call's
    steps, with `inputs` features (default hidden) a step (None: a long call; see thresholds.enough_steps)."""
    cap = forced()
    allowed = PATHS[: PATHS.index(cap) + 1] if cap else PATHS
    for path, make in _candidates(cell, batch, hidden, dtype, folded, cap, training, time,
                                  hidden if inputs is None else inputs):
        if path in allowed:
            return make(cell)
    raise AssertionError("the reference path is always a candidate")  # pragma: no cover


def describe(dtype=np.float32, hidden: int = 256, training: bool = True) -> dict[str, str]:
    """Which path each cell takes now at `hidden` units, by batch size, in training (else inference):
    {"lstm": "numba at batch 1, threaded from batch 2", "gru": "numba", ...}."""
    report = {}
    for cell in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        paths = [select(cell, batch, hidden, dtype, training=training).path for batch in range(1, 65)]
        changes = [batch for batch in range(2, 65) if paths[batch - 1] != paths[batch - 2]]
        report[cell] = paths[0] + "".join(f", {paths[b - 1]} from batch {b}" for b in changes)
    return report
