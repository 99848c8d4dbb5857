"""Evaluation metrics: classification, language modelling, translation (BLEU, chrF), regression and
forecasting.

Classification follows scikit-learn: per-class precision, recall and F1 with zero_division=0 (a ratio whose
denominator is 0 counts as 0), macro averages over the classes, weighted averages by support. Every function
raises ValueError for empty inputs or inputs of different lengths.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"expected 1-D label sequences, got shapes {t.shape} and {p.shape}")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} items but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("empty input: no labels to score")
    return t, p


def _div(num, den) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


# ------------------------------------------------------------------------------------- classification


def accuracy(y_true, y_pred) -> float:
    """The fraction of predictions equal to the truth."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def precision_recall_f1(y_true, y_pred, labels=None):
    """Per-class (precision, recall, f1, support) arrays, in the order of `labels`.

    labels: the classes to score (any values comparable with ==); default: the sorted union of the labels in
    y_true and y_pred. support[i] is how often labels[i] occurs in y_true.
    """
    t, p = _pair(y_true, y_pred)
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    tp = np.array([np.sum((t == c) & (p == c)) for c in labels], dtype=np.int64)
    predicted = np.array([np.sum(p == c) for c in labels], dtype=np.int64)
    support = np.array([np.sum(t == c) for c in labels], dtype=np.int64)
    precision, recall = _div(tp, predicted), _div(tp, support)
    f1 = _div(2 * tp, predicted + support)  # = 2PR / (P + R), and 0 where both are 0
    return precision, recall, f1, support


def classification_report(y_true, y_pred, label_names=None) -> dict:
    """Per-class precision/recall/F1/support, accuracy, macro and weighted averages, as a JSON-ready dict.

    With `label_names`, y_true and y_pred hold class ids 0 .. len(label_names) - 1 and every class is
    reported, also those that never occur; without, the classes are the labels that occur, named str(label).
        {"classes": {name: {"precision", "recall", "f1", "support"}}, "accuracy": a, "support": n,
         "macro": {"precision", "recall", "f1"}, "weighted": {"precision", "recall", "f1"}}
    """
    t, p = _pair(y_true, y_pred)
    if label_names is None:
        labels = np.unique(np.concatenate([t, p]))
        names = [str(c) for c in labels.tolist()]
    else:
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate label names: {names}")
        labels = np.arange(len(names))
        for what, y in (("y_true", t), ("y_pred", p)):
            bad = sorted(set(y.tolist()) - set(range(len(names))))
            if bad:
                raise ValueError(f"{what} holds {bad[:10]}, not class ids 0..{len(names) - 1} of {names}")
    precision, recall, f1, support = precision_recall_f1(t, p, labels)
    total = int(support.sum())
    weights = support / total
    classes = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                      "support": int(support[i])} for i, name in enumerate(names)}
    return {
        "classes": classes,
        "accuracy": accuracy(t, p),
        "support": total,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted": {"precision": float(weights @ precision), "recall": float(weights @ recall),
                     "f1": float(weights @ f1)},
    }


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Counts (n_classes, n_classes) int64: row = true class id, column = predicted class id.

    n_classes defaults to the largest id seen + 1.
    """
    t, p = _pair(y_true, y_pred)
    for what, y in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{what} must hold integer class ids, got dtype {y.dtype}")
    n = int(max(t.max(), p.max())) + 1 if n_classes is None else n_classes
    if min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n:
        raise ValueError(f"class ids must lie in 0..{n - 1}; got {min(t.min(), p.min())}..{max(t.max(), p.max())}")
    return np.bincount(t.astype(np.int64) * n + p, minlength=n * n).reshape(n, n)


def format_report(report: dict, digits: int = 3) -> str:
    """A classification_report dict as a table, like scikit-learn's text report."""
    names = list(report["classes"])
    width = max([len(n) for n in names] + [len("weighted avg")])
    col = max(digits + 3, 9)
    head = f"{'':<{width}}" + "".join(f"{h:>{col}}" for h in ("precision", "recall", "f1", "support"))
    lines = [head, ""]

    def row(name, m, support):
        values = "".join(f"{m[k]:>{col}.{digits}f}" for k in ("precision", "recall", "f1"))
        return f"{name:<{width}}{values}{support:>{col}}"

    for name, m in report["classes"].items():
        lines.append(row(name, m, m["support"]))
    lines.append("")
    lines.append(f"{'accuracy':<{width}}{'':>{2 * col}}{report['accuracy']:>{col}.{digits}f}{report['support']:>{col}}")
    lines.append(row("macro avg", report["macro"], report["support"]))
    lines.append(row("weighted avg", report["weighted"], report["support"]))
    return "\n".join(lines)


def format_confusion(matrix, label_names=None) -> str:
    """A confusion matrix as a table: rows are the true classes, columns the predicted ones."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {m.shape}")
    names = [str(n) for n in (label_names if label_names is not None else range(len(m)))]
    if len(names) != len(m):
        raise ValueError(f"{len(names)} label names for a {len(m)}x{len(m)} matrix")
    corner = "true \\ pred"
    first = max([len(n) for n in names] + [len(corner)])
    col = max([len(n) for n in names] + [len(str(int(m.max()))) if m.size else 1]) + 2
    lines = [f"{corner:<{first}}" + "".join(f"{n:>{col}}" for n in names)]
    for name, counts in zip(names, m.tolist()):
        lines.append(f"{name:<{first}}" + "".join(f"{c:>{col}}" for c in counts))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- language modelling


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token, in nats); inf when that overflows."""
    if not mean_nll >= 0:  # also catches NaN
        raise ValueError(f"mean negative log-likelihood must be >= 0, got {mean_nll}")
    return math.exp(mean_nll) if mean_nll < 709.0 else math.inf


# ------------------------------------------------------------------------------------------------ BLEU


def _tokens(x) -> list:
    return x.split() if isinstance(x, str) else list(x)


def _references(refs) -> list[list]:
    """One hypothesis's references: a string, or a list of tokens, is one reference; a list of token lists,
    or a list of strings of which one holds whitespace, is several."""
    if isinstance(refs, str):
        return [refs.split()]
    refs = list(refs)
    if all(isinstance(r, str) for r in refs) and not any(len(r.split()) > 1 for r in refs):
        return [refs]  # one tokenised reference
    return [_tokens(r) for r in refs]


def _ngrams(tokens: list, n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(references, hypotheses, max_n: int = 4) -> float:
    """Corpus BLEU in [0, 1] (Papineni et al. 2002), without smoothing.

    hypotheses: token lists (a string is split on whitespace). references: for each hypothesis, one
    reference (a string or a token list) or several (a list of token lists, or of strings with spaces).
    The n-gram precisions p_1..p_max_n pool the clipped counts over the whole corpus; the brevity penalty
    uses the corpus hypothesis length c and, for r, the sum over sentences of the reference length closest
    to the hypothesis length (the shorter one on a tie): BP = 1 if c > r else exp(1 - r / c).
    BLEU = BP * exp(mean(log p_n)), and 0 when any p_n is 0. This is sacreBLEU's corpus_bleu / 100 with
    smooth_method="none" and tokenize="none" (on the tokens joined by spaces), i.e. multi-bleu.perl's
    definition. NLTK's corpus_bleu (uniform weights, no smoothing) agrees while every hypothesis has at
    least max_n tokens; for a shorter one NLTK adds 1 to the denominator of the orders it lacks.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    if not hypotheses:
        raise ValueError("empty input: no hypotheses to score")
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for refs, hyp in zip(references, hypotheses):
        hyp, refs = _tokens(hyp), _references(refs)
        if not refs:
            raise ValueError("a hypothesis without any reference")
        c += len(hyp)
        r += min((abs(len(ref) - len(hyp)), len(ref)) for ref in refs)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            best = Counter()
            for ref in refs:
                best |= _ngrams(ref, n)  # the most times each n-gram occurs in any one reference
            matches[n - 1] += sum(min(k, best[g]) for g, k in counts.items())
            totals[n - 1] += sum(counts.values())
    if c == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_p)


# ------------------------------------------------------------------------------------------------ chrF


def _char_ngrams(text: str, max_n: int) -> list[Counter]:
    text = "".join(text.split())  # white space is not part of any character n-gram
    return [Counter(text[i:i + n] for i in range(len(text) - n + 1)) for n in range(1, max_n + 1)]


def _chrf_stats(hyp: list[Counter], ref: list[Counter]) -> list[int]:
    """[hypothesis n-grams, reference n-grams, matches] for each order, concatenated."""
    stats = []
    for h, r in zip(hyp, ref):
        stats += [sum(h.values()) if r else 0, sum(r.values()), sum(min(k, r[g]) for g, k in h.items() if g in r)]
    return stats


def _chrf_score(stats: list[int], beta: float) -> float:
    """F_beta of the precision and recall averaged over the orders that occur in both hypothesis and reference."""
    precisions, recalls = [], []
    for i in range(0, len(stats), 3):
        n_hyp, n_ref, n_match = stats[i:i + 3]
        if n_hyp > 0 and n_ref > 0:
            precisions.append(n_match / n_hyp)
            recalls.append(n_match / n_ref)
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return (1 + beta ** 2) * p * r / (beta ** 2 * p + r) if p + r else 0.0


def chrf(references, hypotheses, max_n: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF in [0, 1] (Popović 2015): the character n-gram F-score, chrF2 by default.

    hypotheses: strings (a token list is joined with spaces). references: for each hypothesis a string, or a
    list of strings (several references; the one giving the best sentence F-score counts). White space is
    removed before counting character n-grams of orders 1..max_n. Per order, the counts of hypothesis
    n-grams, reference n-grams and clipped matches are summed over the corpus; precision P and recall R are
    averaged over the orders present in both, and chrF = (1 + β²) P R / (β² P + R).
    This is sacreBLEU's CHRF() (char_order=6, word_order=0, beta=2, eps_smoothing=False) divided by 100.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    if not hypotheses:
        raise ValueError("empty input: no hypotheses to score")
    if max_n < 1 or beta <= 0:
        raise ValueError(f"max_n must be >= 1 and beta > 0, got {max_n} and {beta}")
    total = [0] * (3 * max_n)
    for refs, hyp in zip(references, hypotheses):
        hyp = hyp if isinstance(hyp, str) else " ".join(hyp)
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError("each hypothesis needs a reference string, or a list of reference strings")
        h = _char_ngrams(hyp, max_n)
        candidates = [_chrf_stats(h, _char_ngrams(ref, max_n)) for ref in refs]
        # the first of equal scores, compared in percent as sacreBLEU does: two references whose scores differ
        # in the last bit (0.052083333333333336 and ...34) tie there, and the first counts
        best = max(candidates, key=lambda stats: 100 * _chrf_score(stats, beta))
        total = [a + b for a, b in zip(total, best)]
    return _chrf_score(total, beta)


# ------------------------------------------------------------------------------- exact match, regression


def exact_match(references, predictions) -> float:
    """The fraction of predictions exactly equal (==) to their reference."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references for {len(predictions)} predictions")
    if not predictions:
        raise ValueError("empty input: no predictions to score")
    return sum(a == b for a, b in zip(references, predictions)) / len(predictions)


def _values(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has {p.shape}")
    if t.size == 0:
        raise ValueError("empty input: no values to score")
    return t, p


def mae(y_true, y_pred) -> float:
    """Mean absolute error over all elements."""
    t, p = _values(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error over all elements."""
    t, p = _values(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


# ------------------------------------------------------------------------------------------ forecasting
# y_true and y_pred of the same shape, e.g. (horizon,) or (horizon, outputs); means are over all elements.


def mape(y_true, y_pred) -> float:
    """Mean absolute percentage error, in percent: 100 / n * sum |y - yhat| / |y| (darts' `mape`; sktime's
    MeanAbsolutePercentageError times 100). ValueError if a true value is 0."""
    t, p = _values(y_true, y_pred)
    if np.any(t == 0):
        raise ValueError("MAPE is undefined: y_true holds zeros; use sMAPE, MASE or MAE")
    return float(100.0 * np.mean(np.abs(t - p) / np.abs(t)))


def smape(y_true, y_pred) -> float:
    """Symmetric MAPE in percent, in [0, 200]: 200 / n * sum |y - yhat| / (|y| + |yhat|) (darts' `smape`;
    sktime's symmetric MAPE times 100). ValueError where a true value and its prediction are both 0."""
    t, p = _values(y_true, y_pred)
    den = np.abs(t) + np.abs(p)
    if np.any(den == 0):
        raise ValueError("sMAPE is undefined where y_true and y_pred are both 0")
    return float(200.0 * np.mean(np.abs(t - p) / den))


def mase(y_true, y_pred, insample, m: int = 1) -> float:
    """Mean absolute scaled error: MAE(y, yhat) / mean_{t > m} |insample_t - insample_{t-m}|, the MAE of the
    seasonal naive forecast with period m inside the training series `insample` (time,) or (time, outputs)
    (Hyndman & Koehler 2006; darts' and sktime's `mase`). Below 1: better than the in-sample seasonal naive.
    ValueError if insample has m or fewer steps or is m-periodic (a zero scale)."""
    t, p = _values(y_true, y_pred)
    x = np.asarray(insample, dtype=np.float64)
    if m < 1:
        raise ValueError(f"the seasonal period m must be >= 1, got {m}")
    if len(x) <= m:
        raise ValueError(f"MASE needs more than m = {m} in-sample steps, got {len(x)}")
    scale = float(np.mean(np.abs(x[m:] - x[:-m])))
    if scale == 0:
        raise ValueError(f"MASE is undefined: the in-sample series repeats with period {m} (zero naive error)")
    return float(np.mean(np.abs(t - p))) / scale


def coverage(y_true, lower, upper) -> float:
    """Interval coverage: the fraction of true values with lower <= y <= upper (a nominal 80 % interval
    should cover about 0.8)."""
    t, lo = _values(y_true, lower)
    _, hi = _values(y_true, upper)
    if np.any(lo > hi):
        raise ValueError("an interval has lower > upper")
    return float(np.mean((lo <= t) & (t <= hi)))


def pinball(y_true, y_quantiles, quantiles) -> float:
    """Mean pinball (quantile) loss over all elements and quantiles.

    y_quantiles (..., K) holds the predicted quantile q_k in its last axis, y_true (...). For each q:
    L_q(y, yhat) = max(q (y - yhat), (q - 1) (y - yhat)); the mean over elements of L_q is scikit-learn's
    mean_pinball_loss(alpha=q), and this returns its mean over the K quantiles. The 0.5 quantile's loss is
    half the MAE."""
    q = np.asarray(quantiles, dtype=np.float64)
    pred = np.asarray(y_quantiles, dtype=np.float64)
    if q.ndim != 1 or pred.shape[-1:] != q.shape:
        raise ValueError(f"y_quantiles has shape {pred.shape}; its last axis must hold the {q.size} quantiles")
    if np.any((q <= 0) | (q >= 1)):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {q.tolist()}")
    t = np.asarray(y_true, dtype=np.float64)
    if t.shape != pred.shape[:-1]:
        raise ValueError(f"y_true has shape {t.shape} but y_quantiles has {pred.shape}; expected {pred.shape[:-1]}")
    if t.size == 0:
        raise ValueError("empty input: no values to score")
    diff = t[..., None] - pred
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))
