"""The scratch attention step (rnnkit/scratch/attention.py): its backward by finite differences, the masking."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numeric_grad
from rnnkit.scratch.attention import Attention

KINDS = ("bahdanau", "luong-dot", "luong-general")


def setup(kind, batch=3, source=5, query=4, lengths=(5, 2, 4), seed=0):
    rng = np.random.default_rng(seed)
    memory_size = query if kind == "luong-dot" else 6
    attention = Attention(kind, query, memory_size, dtype=np.float64, rng=seed)
    mask = np.arange(source)[None, :] < np.array(lengths)[:, None]
    memory = rng.normal(size=(batch, source, memory_size)) * mask[..., None]
    return attention, rng.normal(size=(batch, query)), memory, mask, rng.normal(size=(batch, memory_size))


@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_finite_differences(kind):
    attention, query, memory, mask, probe = setup(kind)

    def loss():   # L = Σ probe ⊙ c, the context of one step from keys made afresh
        context, _, _ = attention.step(query, attention.keys(memory), memory, mask)
        return float((probe * context).sum())

    attention.zero_grad()
    keys = attention.keys(memory)
    _, _, cache = attention.step(query, keys, memory, mask)
    d_keys, d_memory = np.zeros_like(keys), np.zeros_like(memory)
    d_query = attention.step_backward(probe, cache, d_keys, d_memory)
    d_memory += attention.keys_backward(d_keys)
    np.testing.assert_allclose(d_query, numeric_grad(loss, query), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d_memory, numeric_grad(loss, memory), rtol=1e-6, atol=1e-9)
    params = list(attention.named_parameters())
    assert len(params) == {"bahdanau": 4, "luong-dot": 0, "luong-general": 1}[kind]
    for name, p in params:
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.data), rtol=1e-6, atol=1e-9, err_msg=name)


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(KINDS), lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       seed=st.integers(0, 99))
def test_padding_gets_exactly_zero_weight(kind, lengths, seed):
    attention, query, memory, mask, _ = setup(kind, batch=len(lengths), source=6, lengths=lengths, seed=seed)
    context, weights, _ = attention.step(query, attention.keys(memory), memory, mask)
    assert np.all(weights[~mask] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    garbage = memory + 100.0 * np.random.default_rng(seed).normal(size=memory.shape) * ~mask[..., None]
    again, weights_again, _ = attention.step(query, attention.keys(garbage), garbage, mask)
    np.testing.assert_array_equal(weights_again[~mask], 0.0)
    np.testing.assert_allclose(again, context, rtol=1e-12, atol=1e-12)     # padding never changes the context


def test_luong_dot_needs_matching_sizes_and_none_is_no_attention():
    with pytest.raises(ValueError, match="memory_size == query_size"):
        Attention("luong-dot", 4, 8)
    with pytest.raises(ValueError, match="other than 'none'"):
        Attention("none", 4, 4)
    with pytest.raises(ValueError, match="unknown attention"):
        Attention("luong", 4, 4)
