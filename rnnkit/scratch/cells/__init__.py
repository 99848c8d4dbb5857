"""One time step of each recurrent cell, forward and backward, written as the textbook equations.

These are the reference: plain NumPy, no packing, no halved sigmoids, no preallocated buffers, the weights in
PyTorch's layout and gate order. Every fast path of the engine (rnnkit.scratch.functional, the compiled
kernels) is tested against them, and they are tested against torch.nn.RNNCell / LSTMCell / GRUCell.

    rnn.forward(x, h_prev, w_ih, w_hh, b_ih, b_hh, nonlinearity)  -> (h, cache);    rnn.backward(dh, cache)
    lstm.forward(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh)       -> (h, c, cache); lstm.backward(dh, dc, cache)
    gru.forward(x, h_prev, w_ih, w_hh, b_ih, b_hh)                -> (h, cache);    gru.backward(dh, cache)

Shapes: x (batch, input), h and c (batch, hidden); w_ih (G*hidden, input), w_hh (G*hidden, hidden),
b_ih and b_hh (G*hidden,) or None (a layer without biases). G = GATES[mode]. Each backward takes the total
gradient reaching this step's outputs and returns a `StepGrads`. The arithmetic stays in the inputs' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepGrads:
    """The gradients of one time step.

    x (batch, input), h_prev (batch, hidden), c_prev (batch, hidden) for the LSTM, None otherwise;
    w_ih, w_hh, b_ih, b_hh: this step's parameter gradients (bias ones None when the biases are None);
    gates_x (batch, G*hidden) = dL/d(W_ih x + b_ih), gates_h (batch, G*hidden) = dL/d(W_hh h_prev + b_hh),
    PyTorch's gate order. For the RNN and the LSTM they are the same array; for the GRU they differ in the
    n block, where W_hn h + b_hn is multiplied by r.
    """

    x: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray | None
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    gates_x: np.ndarray
    gates_h: np.ndarray


def sigmoid(a: np.ndarray) -> np.ndarray:
    """σ(a) = 1 / (1 + e^-a); e^-a overflows to inf for very negative a, and 1 / inf = 0 is right."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-a))


from . import gru, lstm, rnn  # noqa: E402  (after StepGrads, which they import)

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
CELLS = {"rnn_tanh": rnn, "rnn_relu": rnn, "lstm": lstm, "gru": gru}  # rnn: pass nonlinearity="relu" too

__all__ = ["CELLS", "GATES", "StepGrads", "gru", "lstm", "rnn", "sigmoid"]
