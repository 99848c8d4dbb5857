"""Initial weights of the recurrent layers, written once in NumPy and loaded into either engine.

    initialize(weights, cell, scheme, forget_bias=None, rng=0)   → a new state dict
    initialize_engine(engine, cell, scheme, forget_bias, seed)   the same, read from and loaded into an Engine

Schemes (spec.INITS), applied to every `*weight_ih_l*`, `*weight_hh_l*`, `*bias_ih_l*`, `*bias_hh_l*` of a
state dict (PyTorch's names and layouts: the gate blocks of G·H rows, LSTM i f g o, GRU r z n), each gate
block on its own:
    pytorch     as built: U(-1/√H, 1/√H) for every recurrent parameter (torch's default); nothing changes
    xavier      W_ih and W_hh blocks U(-a, a), a = √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010); biases 0
    orthogonal  W_hh blocks orthogonal (QR of a Gaussian matrix, signs fixed: Saxe et al. 2014), W_ih xavier;
                biases 0
    identity    W_hh blocks the identity, biases 0, W_ih as built: the IRNN of Le et al. 2015 (a ReLU RNN)
forget_bias (the LSTM only): the forget gate's bias b_if = forget_bias, b_hf = 0, so the gate starts at
σ(forget_bias) (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1).
Other parameters (embeddings, output layers) are left as built. The same rng seed gives the same bits, so
both engines start from identical weights.
"""
from __future__ import annotations

import re

import numpy as np

from .spec import INITS, check_choice

_RECURRENT = re.compile(r"(^|\.)(weight_ih|weight_hh|bias_ih|bias_hh)_l\d+(_reverse)?$")
GATE_COUNT = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random (n, n) orthogonal matrix: Q of a Gaussian matrix's QR, columns' signs from R's diagonal."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))[None, :]


def xavier(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """U(-a, a), a = √(6 / (rows + cols)): the variance 2 / (fan_in + fan_out) of Glorot & Bengio."""
    bound = np.sqrt(6.0 / (rows + cols))
    return rng.uniform(-bound, bound, size=(rows, cols))


def initialize(weights: dict, cell: str, scheme: str = "pytorch", forget_bias: float | None = None,
               rng=0) -> dict:
    """A copy of the state dict `weights` with its recurrent parameters set by `scheme` (see the module's
    docstring); names in sorted order draw from `rng` (a seed or a Generator), so the result is reproducible."""
    check_choice("init", scheme, INITS)
    if forget_bias is not None and cell != "lstm":
        raise ValueError(f"--forget-bias is the LSTM's forget gate bias; a {cell} has no forget gate")
    rng = np.random.default_rng(rng)
    gates = GATE_COUNT[cell]
    out = dict(weights)
    for name in sorted(n for n in weights if _RECURRENT.search(n)):
        w = np.asarray(weights[name])
        kind = _RECURRENT.search(name).group(2)
        new = w.astype(np.float64)
        if scheme != "pytorch":
            if kind.startswith("bias"):
                new = np.zeros_like(new)
            elif kind == "weight_hh" and scheme == "orthogonal":
                new = np.vstack([orthogonal(w.shape[1], rng) for _ in range(gates)])
            elif kind == "weight_hh" and scheme == "identity":
                new = np.vstack([np.eye(w.shape[1])] * gates)
            elif scheme in ("xavier", "orthogonal"):     # W_ih of both; W_hh of xavier
                rows = w.shape[0] // gates
                new = np.vstack([xavier(rows, w.shape[1], rng) for _ in range(gates)])
        if forget_bias is not None and kind.startswith("bias"):
            hidden = w.shape[0] // 4
            new = new.copy()
            new[hidden:2 * hidden] = forget_bias if kind == "bias_ih" else 0.0   # PyTorch's i, f, g, o rows
        out[name] = new.astype(w.dtype)
    return out


def initialize_engine(engine, cell: str, scheme: str = "pytorch", forget_bias: float | None = None,
                      seed: int = 0) -> None:
    """Set an Engine's recurrent weights by `scheme` (a no-op for "pytorch" without forget_bias)."""
    if scheme == "pytorch" and forget_bias is None:
        check_choice("init", scheme, INITS)
        return
    engine.load_weights(initialize(engine.weights(), cell, scheme, forget_bias, rng=seed))
