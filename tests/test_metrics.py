"""Metrics: agreement with scikit-learn, BLEU by hand (and NLTK / sacreBLEU when installed), error cases."""

import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import metrics

try:
    import sklearn.metrics as sk
except ImportError:  # scikit-learn is in the dev extra
    sk = None
needs_sklearn = pytest.mark.skipif(sk is None, reason="needs scikit-learn (pip install 'rnnkit[dev]')")


@st.composite
def labelled(draw):
    k = draw(st.integers(1, 5))
    n = draw(st.integers(1, 40))
    y_true = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))  # classes may be missing
    return k, np.array(y_true), np.array(y_pred)


@needs_sklearn
@settings(max_examples=60, deadline=None)
@given(labelled())
def test_agrees_with_sklearn(case):
    k, t, p = case
    labels = list(range(k))
    assert metrics.accuracy(t, p) == pytest.approx(sk.accuracy_score(t, p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about single labels and missing classes
        np.testing.assert_array_equal(metrics.confusion_matrix(t, p, k), sk.confusion_matrix(t, p, labels=labels))
        want = sk.precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
        ref = sk.classification_report(t, p, labels=labels, output_dict=True, zero_division=0)
    for got, exp in zip(metrics.precision_recall_f1(t, p, labels), want):
        np.testing.assert_allclose(got, exp, atol=1e-12)
    # default labels: the sorted union of what occurs, as scikit-learn's
    for got, exp in zip(metrics.precision_recall_f1(t, p), sk.precision_recall_fscore_support(t, p, zero_division=0)):
        np.testing.assert_allclose(got, exp, atol=1e-12)
    names = [f"c{i}" for i in labels]
    rep = metrics.classification_report(t, p, names)
    for i, name in enumerate(names):
        assert rep["classes"][name]["precision"] == pytest.approx(ref[str(i)]["precision"])
        assert rep["classes"][name]["recall"] == pytest.approx(ref[str(i)]["recall"])
        assert rep["classes"][name]["f1"] == pytest.approx(ref[str(i)]["f1-score"])
        assert rep["classes"][name]["support"] == ref[str(i)]["support"]
    for ours, theirs in (("macro", "macro avg"), ("weighted", "weighted avg")):
        for key, skey in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert rep[ours][key] == pytest.approx(ref[theirs][skey], abs=1e-12)
    assert rep["accuracy"] == pytest.approx(sk.accuracy_score(t, p)) and rep["support"] == len(t)


def test_report_by_hand_and_formatting():
    names = ["negative", "neutral", "positive"]
    t = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 0, 0]  # "positive" never predicted: precision 0 by zero_division=0
    rep = metrics.classification_report(t, p, names)
    assert rep["classes"]["negative"] == {"precision": 0.5, "recall": 2 / 3, "f1": pytest.approx(4 / 7), "support": 3}
    assert rep["classes"]["positive"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert rep["accuracy"] == 0.5 and rep["support"] == 6
    text = metrics.format_report(rep)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1", "support"]
    assert lines[2].split() == ["negative", "0.500", "0.667", "0.571", "3"]
    assert any(line.split()[:2] == ["accuracy", "0.500"] for line in lines)
    assert "macro avg" in text and "weighted avg" in text
    m = metrics.confusion_matrix(t, p, 3)
    np.testing.assert_array_equal(m, [[2, 1, 0], [1, 1, 0], [1, 0, 0]])
    table = metrics.format_confusion(m, names).splitlines()
    assert table[0].split() == ["true", "\\", "pred", "negative", "neutral", "positive"]
    assert table[1].split() == ["negative", "2", "1", "0"]
    assert metrics.format_confusion(m).splitlines()[3].split() == ["2", "1", "0", "0"]


def test_report_with_string_labels():
    rep = metrics.classification_report(["b", "a", "a"], ["a", "a", "c"])
    assert list(rep["classes"]) == ["a", "b", "c"] and rep["classes"]["a"]["recall"] == 0.5


def test_classification_errors():
    with pytest.raises(ValueError, match="y_true has 2 items but y_pred has 3"):
        metrics.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match="empty"):
        metrics.precision_recall_f1([], [])
    with pytest.raises(ValueError, match="empty"):
        metrics.classification_report([], [], ["a"])
    with pytest.raises(ValueError, match=r"y_pred holds \[3\], not class ids 0..2"):
        metrics.classification_report([0, 1], [0, 3], ["a", "b", "c"])
    with pytest.raises(ValueError, match="class ids must lie in 0..1"):
        metrics.confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="class ids must lie"):
        metrics.confusion_matrix([0, -1], [0, 1], 2)
    with pytest.raises(ValueError, match="integer class ids"):
        metrics.confusion_matrix([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        metrics.accuracy([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="2 label names for a 3x3 matrix"):
        metrics.format_confusion(np.eye(3, dtype=int), ["a", "b"])
    np.testing.assert_array_equal(metrics.confusion_matrix([1, 1], [1, 0]), [[0, 0], [1, 1]])


# ------------------------------------------------------------------------------------------------ BLEU


def test_bleu_by_hand():
    hyp, ref = "the cat sat on the mat", "the cat is on the mat"
    # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3; c = r = 6
    assert metrics.bleu([ref], [hyp], max_n=3) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))  # = 0.5
    assert metrics.bleu([ref], [hyp]) == 0.0  # no 4-gram matches and no smoothing
    assert metrics.bleu([ref.split()], [hyp.split()], max_n=3) == pytest.approx(0.5)
    # brevity penalty: c = 2, r = 6
    assert metrics.bleu(["the cat sat on the mat"], ["the cat"], max_n=2) == pytest.approx(math.exp(1 - 6 / 2))
    assert metrics.bleu([ref], [ref]) == 1.0


def test_bleu_is_pooled_over_the_corpus():
    # p1 = (4 + 0) / (4 + 2), not the mean of the sentence scores (1 and 0)
    assert metrics.bleu(["a b c d", "a b"], ["a b c d", "x y"], max_n=1) == pytest.approx(4 / 6)


def test_bleu_several_references():
    # clipping: "a" counts at most twice (its most in one reference); r = the closest length, 3
    assert metrics.bleu([[["a", "b"], ["a", "a", "c"]]], [["a", "a", "a"]], max_n=1) == pytest.approx(2 / 3)
    assert metrics.bleu([["a b", "a a c"]], ["a a a"], max_n=1) == pytest.approx(2 / 3)  # strings with spaces
    # a tie in distance picks the shorter reference: r = 2, no brevity penalty (with 6 it would be < 1)
    assert metrics.bleu([["a b", "a b c d e f"]], ["a b c d"], max_n=1) == 1.0
    # r is the closest length (5), not the shortest (1): p1 = 1, BP = exp(1 - 5/4)
    assert metrics.bleu([["a", "a b c d e"]], ["a b c d"], max_n=1) == pytest.approx(math.exp(1 - 5 / 4))


def test_bleu_errors():
    with pytest.raises(ValueError, match="2 references for 1 hypotheses"):
        metrics.bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        metrics.bleu([], [])
    with pytest.raises(ValueError, match="max_n"):
        metrics.bleu(["a"], ["a"], max_n=0)
    assert metrics.bleu(["a b"], [""]) == 0.0


def random_corpus(rng, n, min_hyp):
    words = "a b c d e f".split()
    k = rng.randint(1, 3)
    refs = [[[rng.choice(words) for _ in range(rng.randint(1, 12))] for _ in range(k)] for _ in range(n)]
    hyps = [[rng.choice(words) for _ in range(rng.randint(min_hyp, 12))] for _ in range(n)]
    return refs, hyps


def test_bleu_agrees_with_nltk():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = random.Random(0)
    for _ in range(300):
        refs, hyps = random_corpus(rng, rng.randint(1, 6), min_hyp=4)  # NLTK differs on hypotheses < 4 tokens
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = nltk_bleu.corpus_bleu(refs, hyps)
        assert metrics.bleu(refs, hyps) == pytest.approx(want, abs=1e-12)


def test_bleu_agrees_with_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = random.Random(1)
    for _ in range(300):
        refs, hyps = random_corpus(rng, rng.randint(1, 6), min_hyp=0)
        streams = [[" ".join(r[j]) for r in refs] for j in range(len(refs[0]))]
        want = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], streams, smooth_method="none",
                                     tokenize="none", force=True).score / 100
        assert metrics.bleu(refs, hyps) == pytest.approx(want, abs=1e-12)


# ------------------------------------------------------------------------------ LM, exact match, regression


def test_perplexity():
    assert metrics.perplexity(0.0) == 1.0
    assert metrics.perplexity(math.log(50)) == pytest.approx(50)
    assert metrics.perplexity(1e4) == math.inf
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match=">= 0"):
            metrics.perplexity(bad)


def test_exact_match():
    assert metrics.exact_match(["a", "b c", "d"], ["a", "b  c", "d"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 references for 1 predictions"):
        metrics.exact_match(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        metrics.exact_match([], [])


@needs_sklearn
@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=30))
def test_regression_agrees_with_sklearn(pairs):
    t, p = np.array(pairs).T
    assert metrics.mae(t, p) == pytest.approx(sk.mean_absolute_error(t, p), rel=1e-9, abs=1e-9)
    assert metrics.rmse(t, p) == pytest.approx(math.sqrt(sk.mean_squared_error(t, p)), rel=1e-9, abs=1e-9)


def test_regression_by_hand_and_errors():
    assert metrics.mae([[1, 2], [3, 4]], [[2, 2], [3, 0]]) == pytest.approx(5 / 4)
    assert metrics.rmse([0, 0], [3, 4]) == pytest.approx(math.sqrt(12.5))
    with pytest.raises(ValueError, match="shape"):
        metrics.mae([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        metrics.rmse([], [])
