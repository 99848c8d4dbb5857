"""Pooling a sequence of RNN outputs into one vector per sequence, with hand-written backward.

Input: outputs h (batch, time, F) of a recurrent layer, zero past each sequence's length, and the lengths
(batch,). Only the steps t < L_b of sequence b count, so padding never changes the result.

    mean       p_b = (1 / L_b) Σ_{t<L_b} h_bt
    max        p_b = max_{t<L_b} h_bt               (elementwise; the gradient goes to the argmax step)
    attention  s_bt = v · tanh(W h_bt + c)           additive (Bahdanau-style) scores
               α_b = softmax_{t<L_b}(s_b)            masked softmax over the real steps
               p_b = Σ_t α_bt h_bt

"last" pooling is not here: it is the recurrent layer's final state h_n, which already stops at each
sequence's last real step (and, bidirectionally, holds the backward direction's state at t = 0).
The names a user may choose are rnnkit.spec.POOLING.
"""
from __future__ import annotations

import numpy as np

from .layers import Linear
from .module import Module


def length_mask(lengths: np.ndarray, time: int) -> np.ndarray:
    """(batch, time) bool: True at the real steps t < L_b."""
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


class MeanPool(Module):
    def forward(self, h, lengths):
        self._shape, self._lengths = h.shape, np.asarray(lengths)
        h = h * length_mask(self._lengths, h.shape[1])[..., None]
        return h.sum(axis=1) / self._lengths[:, None].astype(h.dtype)

    def backward(self, dp):
        batch, time, _ = self._shape
        dh = np.broadcast_to((dp / self._lengths[:, None].astype(dp.dtype))[:, None, :], self._shape)
        return dh * length_mask(self._lengths, time)[..., None]


class MaxPool(Module):
    def forward(self, h, lengths):
        mask = length_mask(lengths, h.shape[1])[..., None]
        self._shape = h.shape
        if not self.training:                 # no backward to come: the maximum alone, in one pass
            self._argmax = None
            return np.max(h, axis=1, where=mask, initial=-np.inf)
        masked = np.where(mask, h, -np.inf)
        self._argmax = masked.argmax(axis=1)  # (batch, F): the step each feature came from
        return np.take_along_axis(h, self._argmax[:, None, :], axis=1)[:, 0]

    def backward(self, dp):
        if self._argmax is None:
            raise RuntimeError("MaxPool.backward needs a forward pass in training mode")
        dh = np.zeros(self._shape, dtype=dp.dtype)
        np.put_along_axis(dh, self._argmax[:, None, :], dp[:, None, :], axis=1)
        return dh


class AttentionPool(Module):
    """Parameters: `proj` (F → A, with bias) and `score` (A → 1, no bias), named as in torch.nn.Linear."""

    def __init__(self, features: int, attention_size: int, dtype=np.float32, rng=None):
        self.proj = Linear(features, attention_size, dtype=dtype, rng=rng)
        self.score = Linear(attention_size, 1, bias=False, dtype=dtype, rng=rng)

    def forward(self, h, lengths):
        u = np.tanh(self.proj(h))                                   # (B, T, A)
        s = self.score(u)[..., 0]                                   # (B, T)
        mask = length_mask(lengths, h.shape[1])
        s = np.where(mask, s, -np.inf)
        a = np.exp(s - s.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)                           # α: zero at the padding
        self._h, self._u, self._a = h, u, a
        return np.einsum("bt,btf->bf", a, h)

    def backward(self, dp):
        h, u, a = self._h, self._u, self._a
        dh = a[..., None] * dp[:, None, :]                          # through p = Σ α h
        da = np.einsum("btf,bf->bt", h, dp)
        ds = a * (da - (a * da).sum(axis=1, keepdims=True))         # softmax backward; zero at the padding
        du = self.score.backward(ds[..., None].astype(h.dtype))
        dh += self.proj.backward(du * (1 - u * u))
        return dh

    @property
    def attention(self) -> np.ndarray:
        """α (batch, time) of the last forward: how much each step contributed."""
        return self._a
