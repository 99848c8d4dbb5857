"""BLEU and chrF, cross-checked against sacreBLEU (and NLTK's BLEU where it agrees by definition)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.metrics import bleu, chrf

sacrebleu = pytest.importorskip("sacrebleu")

WORDS = "the cat dog sat on a mat big red . , el gato perro ¿ está ? niño".split()


def sentence(rng, low=1, high=12) -> str:
    return " ".join(rng.choice(WORDS, size=rng.integers(low, high)).tolist())


def corpus(seed: int, n: int, refs: int):
    """n hypotheses, each with `refs` references that share some words with it."""
    rng = np.random.default_rng(seed)
    hyps, references = [], []
    for _ in range(n):
        ref = [sentence(rng) for _ in range(refs)]
        words = ref[0].split()
        keep = [w for w in words if rng.random() < 0.7] + sentence(rng, 0, 3).split()
        hyps.append(" ".join(keep) if keep else sentence(rng))
        references.append(ref)
    return hyps, references


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), refs=st.integers(1, 3))
def test_bleu_and_chrf_equal_sacrebleu(seed, n, refs):
    hyps, references = corpus(seed, n, refs)
    streams = [[r[k] for r in references] for k in range(refs)]  # sacreBLEU: one list per reference "stream"
    want_bleu = sacrebleu.corpus_bleu(hyps, streams, smooth_method="none", tokenize="none").score / 100
    want_chrf = sacrebleu.corpus_chrf(hyps, streams).score / 100
    # token lists: bleu() reads a list of one-word strings as ONE tokenised reference (its documented rule)
    tokenised = [[r.split() for r in refs] for refs in references]
    assert bleu(tokenised, hyps) == pytest.approx(want_bleu, rel=1e-12, abs=1e-12)
    assert chrf(references, hyps) == pytest.approx(want_chrf, rel=1e-12, abs=1e-12)


def test_chrf_values():
    assert chrf(["the cat"], ["the cat"]) == 1.0
    assert chrf(["abc"], ["xyz"]) == 0.0
    # hypothesis "ab", reference "abc": orders 1 and 2 present in both (order 3: the hypothesis has none)
    # P = (2/2 + 1/1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12, chrF2 = 5 P R / (4 P + R)
    r = 7 / 12
    assert chrf(["abc"], ["ab"]) == pytest.approx(5 * r / (4 + r), rel=1e-15)
    assert chrf(["a b c"], ["abc"]) == 1.0  # white space does not count
    assert chrf([["xyz", "the cat"]], ["the cat"]) == 1.0  # the best of several references
    assert chrf(["the cat"], [["the", "cat"]]) == 1.0  # a token list is joined with spaces
    assert chrf(["abcdefgh"], ["abcdefgh"], beta=1.0, max_n=3) == 1.0


def test_chrf_bad_input():
    with pytest.raises(ValueError, match="2 references for 1 hypotheses"):
        chrf(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty input"):
        chrf([], [])
    with pytest.raises(ValueError, match="reference string"):
        chrf([[]], ["a"])
    with pytest.raises(ValueError, match="max_n"):
        chrf(["a"], ["a"], max_n=0)


def test_bleu_equals_nltk_when_long_enough():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    hyps, references = corpus(7, 40, 2)
    keep = [i for i, h in enumerate(hyps) if len(h.split()) >= 4]
    hyps = [hyps[i].split() for i in keep]
    refs = [[r.split() for r in references[i]] for i in keep]
    assert bleu(refs, hyps) == pytest.approx(nltk_bleu.corpus_bleu(refs, hyps), rel=1e-12)


def test_chrf_breaks_near_ties_between_references_as_sacrebleu_does():
    """Two references whose sentence scores are equal but for the last bit in our arithmetic (0.052083333333333336
    against 0.05208333333333334 for '¿ red'): sacreBLEU compares them in percent, where they tie, and keeps the
    first; so must chrF, or the corpus statistics differ (0.4243 against 0.4519 on the corpus hypothesis found)."""
    references = [["the . perro el ? cat ¿ ¿", "perro mat the red cat"], ["¿ sat ,", "¿ a está on el perro . ,"]]
    hyps = ["the . el ? ¿ ¿", "¿ red"]
    streams = [[r[k] for r in references] for k in range(2)]
    assert chrf(references, hyps) == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score / 100, rel=1e-12)
    assert chrf([["¿ sat ,", "¿ a está on el perro . ,"]], ["¿ red"]) == pytest.approx(
        sacrebleu.corpus_chrf(["¿ red"], [["¿ sat ,"], ["¿ a está on el perro . ,"]]).score / 100, rel=1e-12)
