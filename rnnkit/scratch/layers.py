"""Feed-forward layers of the scratch engine: Linear, Embedding, Dropout.

Each layer caches in `forward` what its `backward` needs. `backward(dy)` returns the gradient with
respect to the input and ADDS the parameter gradients into `p.grad` (call `zero_grad()` between steps),
so a layer applied at several time steps accumulates as PyTorch's autograd does.
"""
from __future__ import annotations

import math

import numpy as np

from .fast.threads import matmul  # the engine's own threads: OpenBLAS's stay asleep (see threads.py)
from .module import FLOAT_DTYPES, Module, Parameter, as_float_dtype, claim, dtype_note, make_rng


class Linear(Module):
    """y = x @ W.T + b, as torch.nn.Linear.

    Parameters: `weight (out_features, in_features)`, `bias (out_features,)`, both U(-k, k) with
    k = 1/sqrt(in_features) (PyTorch's default init).

    forward: x `(..., in_features)`, e.g. `(batch, time, in_features)` -> `(..., out_features)`.
    backward: dy `(..., out_features)` -> dx `(..., in_features)`.
    The input is cached by reference: do not modify it in place between forward and backward.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, rng=None):
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = as_float_dtype(dtype)
        rng = make_rng(rng)
        k = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(rng.uniform(-k, k, claim((out_features, in_features))).astype(self.dtype))
        self.bias = Parameter(rng.uniform(-k, k, claim((out_features,))).astype(self.dtype)) if bias else None
        self._x = None  # input as (rows, in_features)
        self._lead = None  # the leading dims of the input

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input (..., {self.in_features}), got shape {x.shape}")
        lead = x.shape[:-1]
        x2 = x.reshape(math.prod(lead), self.in_features)  # one GEMM over all leading dims
        y = matmul(x2, self.weight.data.T)
        if self.bias is not None:
            y += self.bias.data
        self._x, self._lead = x2, lead
        return y.reshape(*lead, self.out_features)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != (*self._lead, self.out_features):
            raise ValueError(f"Linear.backward: expected dy of shape {(*self._lead, self.out_features)}, got {dy.shape}")
        dy2 = dy.reshape(self._x.shape[0], self.out_features)
        self.weight.grad += matmul(dy2.T, self._x)  # dW = dy^T x   (out, in)
        if self.bias is not None:
            self.bias.grad += dy2.sum(axis=0)  # db = sum over rows
        return matmul(dy2, self.weight.data).reshape(*self._lead, self.in_features)  # dx = dy W

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
                + dtype_note(self.dtype))


class Embedding(Module):
    """A lookup table, as torch.nn.Embedding: `weight (num_embeddings, embedding_dim)`, init N(0, 1).

    The row `padding_idx` (negative counts from the end, as in torch) starts at zero and never gets a
    gradient.

    forward: integer indices of any shape, e.g. `(batch, time)` -> `(batch, time, embedding_dim)`.
    backward: dy `(..., embedding_dim)`; scatters into `weight.grad`, returns None (indices have no
    gradient).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype=np.float32, rng=None):
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.dtype = as_float_dtype(dtype)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} out of range [{-num_embeddings}, {num_embeddings})")
            padding_idx = int(padding_idx) % num_embeddings
        self.padding_idx = padding_idx
        w = make_rng(rng).standard_normal(claim((num_embeddings, embedding_dim))).astype(self.dtype)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = Parameter(w)
        self._idx = None

    def forward(self, indices) -> np.ndarray:
        idx = self.check_indices(indices)
        self._idx = idx
        return self.weight.data[idx]

    def check_indices(self, indices) -> np.ndarray:
        """`indices` as an integer array, or a ValueError if they are not integers in [0, num_embeddings)."""
        idx = np.asarray(indices)
        if idx.size == 0 and idx.dtype.kind == "f":  # np.asarray([]) is float64
            idx = idx.astype(np.int64)
        if idx.dtype.kind not in "iu":
            raise ValueError(f"Embedding: indices must be integers, got dtype {idx.dtype}")
        if idx.size:
            lo, hi = idx.min(), idx.max()
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise ValueError(f"Embedding: index {bad} out of range [0, {self.num_embeddings})")
        return idx

    def backward(self, dy: np.ndarray) -> None:
        if self._idx is None:
            raise RuntimeError("Embedding.backward called before forward")
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != (*self._idx.shape, self.embedding_dim):
            raise ValueError(f"Embedding.backward: expected dy of shape {(*self._idx.shape, self.embedding_dim)}, "
                             f"got {dy.shape}")
        idx, dy2 = self._idx.reshape(-1), dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = idx != self.padding_idx
            idx, dy2 = idx[keep], dy2[keep]
        np.add.at(self.weight.grad, idx, dy2)  # dW[i] += sum of dy over positions holding index i
        return None

    def extra_repr(self) -> str:
        padding = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}{dtype_note(self.dtype)}"


class Dropout(Module):
    """Inverted dropout, as torch.nn.Dropout.

    Training: each element is zeroed with probability p and the survivors are scaled by 1/(1-p), so the
    expectation is unchanged. Eval mode or p == 0: identity. p == 1 follows torch: all zeros.
    Any shape in, same shape out; float32/float64 inputs keep their dtype, others become float64.
    backward(dy) applies the mask of the last forward.
    """

    def __init__(self, p: float = 0.5, rng=None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = make_rng(rng)
        self._mask = None  # None: the last forward was the identity

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype not in FLOAT_DTYPES:
            x = x.astype(np.float64)
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        if self.p == 1.0:
            self._mask = np.zeros_like(x)
        else:
            keep = self.rng.random(x.shape) >= self.p  # P(keep) = 1 - p
            self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dy = np.asarray(dy)
        if self._mask is None:
            return dy
        if dy.shape != self._mask.shape:
            raise ValueError(f"Dropout.backward: expected dy of shape {self._mask.shape}, got {dy.shape}")
        return dy * self._mask

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"
