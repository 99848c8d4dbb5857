"""Attention of a decoder over an encoder's outputs, one decoder step at a time, forward and backward.

A query s (B, Q) (the decoder's state) scores each source position j of the memory m (B, S, M) (the
encoder's outputs) through its key K_j; padding positions (mask False) get exactly zero weight:

    bahdanau (additive)       K_j = W_k m_j + b_k          (B, S, A), A = Q
                              u_j = tanh(W_q s + K_j)        e_j = v · u_j
    luong-dot                 K_j = m_j   (M = Q)            e_j = s · K_j
    luong-general             K_j = W m_j                    e_j = s · K_j
    all                       α = softmax_j(e_j over the real positions),   c = Σ_j α_j m_j   (B, M)

Backward of one step, given dc = dL/dc (B, M):

    dα_j = dc · m_j,     dm_j += α_j dc
    de_j = α_j (dα_j - Σ_i α_i dα_i)                    (zero at the padding, where α = 0)
    bahdanau   da_j = de_j v ⊙ (1 - u_j²),   dK_j += da_j,   dv += Σ_j de_j u_j
               dq = Σ_j da_j,   dW_q += dqᵀ s,   ds = dq W_q
    luong      dK_j += de_j s,   ds = Σ_j de_j K_j

The keys are computed once for all steps (`keys`), their gradients summed over the steps and sent back
once (`keys_backward`); per step `step` gives (context, weights, cache) and `step_backward` the query's
gradient, accumulating the keys' and the memory's in the caller's arrays and the parameters' in `.grad`.
Parameter names as rnnkit/torch/seq2seq.Attention: query.weight, key.weight, key.bias, score.weight.
"""
from __future__ import annotations

import numpy as np

from ..spec import check_attention
from .layers import Linear
from .module import Module


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """softmax over axis 1 of scores (B, S) among the positions where mask (B, S) is True; zero elsewhere.
    Every row needs a True position."""
    scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


class Attention(Module):
    """Attention of kind "bahdanau", "luong-dot" or "luong-general" (see the module docstring)."""

    def __init__(self, kind: str, query_size: int, memory_size: int, dtype=np.float32, rng=None):
        check_attention(kind)
        if kind == "none":
            raise ValueError("Attention needs a kind other than 'none'")
        if kind == "luong-dot" and memory_size != query_size:
            raise ValueError(f"luong-dot needs memory_size == query_size, got {memory_size} and {query_size}")
        self.kind = kind
        if kind == "bahdanau":
            self.query = Linear(query_size, query_size, bias=False, dtype=dtype, rng=rng)
            self.key = Linear(memory_size, query_size, dtype=dtype, rng=rng)
            self.score = Linear(query_size, 1, bias=False, dtype=dtype, rng=rng)
        elif kind == "luong-general":
            self.key = Linear(memory_size, query_size, bias=False, dtype=dtype, rng=rng)

    def keys(self, memory: np.ndarray) -> np.ndarray:
        """K (B, S, K) for the memory (B, S, M); the key layer keeps its input for `keys_backward`."""
        return memory if self.kind == "luong-dot" else self.key(memory)

    def keys_backward(self, d_keys: np.ndarray) -> np.ndarray:
        """dL/dm (B, S, M) through the keys, given dL/dK summed over the steps."""
        return d_keys if self.kind == "luong-dot" else self.key.backward(d_keys)

    def step(self, query, keys, memory, mask):
        """(context (B, M), weights α (B, S), cache) for one query (B, Q)."""
        if self.kind == "bahdanau":
            u = np.tanh((query @ self.query.weight.data.T)[:, None, :] + keys)        # (B, S, A)
            scores = u @ self.score.weight.data[0]                                     # (B, S)
        else:
            u = None
            scores = np.einsum("bk,bsk->bs", query, keys)
        weights = masked_softmax(scores, mask)
        context = np.einsum("bs,bsm->bm", weights, memory)
        return context, weights, (query, keys, memory, weights, u)

    def step_backward(self, d_context, cache, d_keys, d_memory) -> np.ndarray:
        """dL/dquery (B, Q); adds this step's dL/dK into d_keys and dL/dm into d_memory (both (B, S, ·))."""
        query, keys, memory, weights, u = cache
        d_memory += weights[..., None] * d_context[:, None, :]
        d_weights = np.einsum("bm,bsm->bs", d_context, memory)
        d_scores = weights * (d_weights - (weights * d_weights).sum(axis=1, keepdims=True))
        if self.kind == "bahdanau":
            v = self.score.weight.data[0]
            self.score.weight.grad[0] += np.einsum("bs,bsa->a", d_scores, u)
            d_pre = d_scores[..., None] * v * (1 - u * u)                             # (B, S, A)
            d_keys += d_pre
            d_q = d_pre.sum(axis=1)                                                    # (B, A)
            self.query.weight.grad += d_q.T @ query
            return d_q @ self.query.weight.data
        d_keys += d_scores[..., None] * query[:, None, :]
        return np.einsum("bs,bsk->bk", d_scores, keys)
