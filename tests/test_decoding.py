"""Greedy and beam search (rnnkit/decoding.py): beam 1 is greedy, a wide beam finds the exhaustive search's
n-best, both engines translate alike, and a small model learns to reverse sequences."""
import itertools

import numpy as np
import pytest

from rnnkit.decoding import beam_search, greedy, length_penalty, max_lengths, translate
from rnnkit.engines import build_engine

PAD, BOS, EOS = 0, 2, 3
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)


def engine_of(kind="scratch", target_vocab=9, attention="bahdanau", cell="gru", seed=0, eos_bias=1.0, **kwargs):
    """A random float64 model whose <eos> is a little more likely (so hypotheses end at various lengths)."""
    options = dict(source_vocab=10, target_vocab=target_vocab, embedding_dim=6, hidden_size=5, cell=cell,
                   attention=attention, **kwargs)
    engine = build_engine(kind, "Seq2Seq", options, dtype="float64", seed=seed, device="cpu")
    weights = engine.weights()
    weights["decoder.output.bias"][EOS] += eos_bias
    weights["decoder.output.weight"] *= 3.0                 # sharper distributions
    engine.load_weights(weights)
    return engine


SOURCE = np.array([[4, 5, 6, 7, 8], [9, 4, 0, 0, 0], [5, 5, 7, 0, 0], [6, 0, 0, 0, 0]])
LENGTHS = np.array([5, 2, 3, 1])


def same(a, b, rtol=1e-9):
    assert a.tokens == b.tokens and a.finished == b.finished
    assert abs(a.score - b.score) <= rtol * abs(b.score) and abs(a.log_prob - b.log_prob) <= rtol * abs(b.log_prob)
    assert a.attention.shape == b.attention.shape
    np.testing.assert_allclose(a.attention, b.attention, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_is_greedy(seed, alpha):
    engine = engine_of(seed=seed, attention=("bahdanau", "luong-general", "none")[seed], eos_bias=0.5)
    found = greedy(engine, SOURCE, LENGTHS, alpha=alpha, max_ratio=1.0, max_offset=2, **IDS)
    beamed = beam_search(engine, SOURCE, LENGTHS, beam=1, alpha=alpha, max_ratio=1.0, max_offset=2, **IDS)
    assert [len(h) for h in found] == [1] * 4 == [len(h) for h in beamed]
    for (g,), (b,) in zip(found, beamed):
        same(g, b, rtol=1e-12)
    limits = max_lengths(LENGTHS, 1.0, 2)
    for (hyp,), limit, length in zip(found, limits, LENGTHS):
        assert len(hyp.tokens) + hyp.finished <= limit
        assert hyp.attention.shape == (len(hyp.tokens) + hyp.finished, length)
        assert not set(hyp.tokens) & {PAD, BOS, EOS}
        assert hyp.finished or len(hyp.tokens) == limit
    if seed == 0:                                   # outputs ended by <eos> and cut at the limit
        assert {h[0].finished for h in found} == {True, False}


def brute_force(engine, source, length, limit, alpha):
    """Every output of at most `limit` tokens (ending in <eos>, or cut at the limit) with its score."""
    state0, memory = engine.call("encode", source[None, :length], np.array([length]))
    vocab = engine.weights()["decoder.output.bias"].shape[0]
    words = [t for t in range(vocab) if t not in (PAD, BOS, EOS)]
    scored = []
    for n in range(limit + 1):
        for tokens in itertools.product(words, repeat=n):
            ended = n < limit
            emitted = list(tokens) + ([EOS] if ended else [])
            state, prev, log_prob = state0, BOS, 0.0
            for token in emitted:
                log_probs, state, _ = engine.call("decode_step", np.array([prev]), state, memory)
                log_prob += log_probs[0, token]
                prev = token
            scored.append((log_prob / length_penalty(len(emitted), alpha), list(tokens), ended))
    return sorted(scored, key=lambda s: -s[0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_beam_finds_the_exhaustive_n_best(alpha):
    engine = engine_of(target_vocab=7, attention="luong-general", cell="lstm", seed=3, eos_bias=0.5)
    limit, n_best = 3, 5                      # words 1, 4, 5, 6: 4^3 + 4^2 + 4 + 1 = 85 outputs
    hyps = beam_search(engine, SOURCE[:2], LENGTHS[:2], beam=80, n_best=n_best, alpha=alpha, max_ratio=0.0,
                       max_offset=limit, **IDS)
    for b in range(2):
        expected = brute_force(engine, SOURCE[b], LENGTHS[b], limit, alpha)[:n_best]
        assert [(h.tokens, h.finished) for h in hyps[b]] == [(t, e) for _, t, e in expected]
        np.testing.assert_allclose([h.score for h in hyps[b]], [s for s, _, _ in expected], rtol=1e-12)
    narrow = beam_search(engine, SOURCE[:2], LENGTHS[:2], beam=2, n_best=2, alpha=alpha, max_ratio=0.0,
                         max_offset=limit, **IDS)
    for b in range(2):                        # a narrow beam returns real outputs, never better than the best
        assert narrow[b][0].score <= hyps[b][0].score + 1e-12
        assert narrow[b][0].score >= narrow[b][1].score


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong-dot", "luong-general"])
def test_both_engines_translate_alike(attention):
    scratch = engine_of("scratch", attention=attention, cell="lstm", num_layers=2,
                        bidirectional=attention != "luong-dot")
    other = engine_of("torch", attention=attention, cell="lstm", num_layers=2, bidirectional=attention != "luong-dot")
    other.load_weights(scratch.weights())
    for options in (dict(beam=1), dict(beam=4, n_best=3, alpha=0.6)):
        a = translate(scratch, SOURCE, LENGTHS, **options, **IDS)
        b = translate(other, SOURCE, LENGTHS, **options, **IDS)
        assert [len(h) for h in a] == [options.get("n_best", 1)] * 4
        for hyps_a, hyps_b in zip(a, b):
            for x, y in zip(hyps_a, hyps_b):
                same(x, y)


def test_search_settings_are_checked():
    engine = engine_of()
    with pytest.raises(ValueError, match="n_best must be in"):
        beam_search(engine, SOURCE, LENGTHS, beam=2, n_best=3, **IDS)
    with pytest.raises(ValueError, match="beam must be a positive integer"):
        beam_search(engine, SOURCE, LENGTHS, beam=0, **IDS)
    with pytest.raises(ValueError, match="non-negative"):
        max_lengths(LENGTHS, -1.0, 0)
    np.testing.assert_array_equal(max_lengths([1, 4, 10], 1.5, 0.0), [1, 6, 15])
    assert length_penalty(1, 0.6) == 1.0 and length_penalty(7, 1.0) == 2.0


# ---------------------------------------------------------------------------------------------- it learns

SYMBOLS = 8
VOCAB = 4 + SYMBOLS                            # <pad> <unk> <bos> <eos>, then the symbols


def reversal_batch(rng, size):
    """Random sequences of 3-6 symbols and their reversals, padded (the seq2seq_spec.py batch format)."""
    lengths = rng.integers(3, 7, size)
    time = lengths.max()
    source = np.zeros((size, time), np.int64)
    target_in, target_out = np.zeros((size, time + 1), np.int64), np.zeros((size, time + 1), np.int64)
    for i, n in enumerate(lengths):
        x = rng.integers(4, VOCAB, n)
        source[i, :n], target_in[i, 0], target_in[i, 1:n + 1] = x, BOS, x[::-1]
        target_out[i, :n], target_out[i, n] = x[::-1], EOS
    return dict(source=source, source_lengths=lengths, target_in=target_in, target_out=target_out,
                target_lengths=lengths + 1)


def test_a_small_model_learns_to_reverse_sequences():
    engine = build_engine("scratch", "Seq2Seq", dict(source_vocab=VOCAB, target_vocab=VOCAB, embedding_dim=16,
                                                     hidden_size=32, cell="gru", attention="bahdanau"),
                          lr=0.02, clip=1.0, seed=0)
    rng = np.random.default_rng(0)
    # 150 updates: in float32 the path of the run depends on each product's rounding (the encoder's GRU path, its
    # thread count); over four seeds and both paths 100 updates ended at losses 0.16-0.36 (from 2.3), 150 at 0.05-0.15
    losses = [engine.train_step(reversal_batch(rng, 32))[0] for _ in range(150)]
    assert np.mean(losses[:5]) > 2.0                 # about log(12) at the start
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])
    test = reversal_batch(np.random.default_rng(1), 100)
    hyps = greedy(engine, test["source"], test["source_lengths"], **IDS)
    right = [h[0].tokens == list(test["target_out"][i, :n - 1]) for i, (h, n) in
             enumerate(zip(hyps, test["target_lengths"]))]
    assert np.mean(right) >= 0.75                     # untrained: 1 / 8^4 on average


# ------------------------------------------------------------------------------------------------ top_k

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 8), st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_top_k_is_a_stable_argsorts_first_k(rows, columns, k, seed):
    """Beam search's candidate choice: the same as sorting everything, ties (many, and -inf) included."""
    from rnnkit.decoding import top_k

    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 3, (rows, columns)).astype(np.float64)    # few values: many ties
    scores[rng.random((rows, columns)) < 0.3] = -np.inf
    assert np.array_equal(top_k(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])
