"""Losses of the scratch engine. Each returns `(loss, grad)`: the loss as a Python float and its gradient
with respect to the prediction (same shape and dtype as the prediction), ready to feed to `backward`.
"""
from __future__ import annotations

import numpy as np

from .module import FLOAT_DTYPES


def _as_float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in FLOAT_DTYPES else x.astype(np.float64)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax(x) = x - max - log(sum(exp(x - max))), stable for large |x|."""
    x = _as_float(x)
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """softmax(x) = exp(x - max) / sum(exp(x - max))."""
    x = _as_float(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def cross_entropy(logits, targets, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, weight=None, check_finite: bool = False):
    """Cross entropy of class-index targets, with the semantics of torch.nn.functional.cross_entropy.

    logits: `(N, C)` or `(..., C)`, e.g. `(batch, time, C)`. Unlike torch, the class axis is always the
        LAST one (torch wants `(N, C, d1, ...)`); for 2-D input the two agree.
    targets: integers of shape `logits.shape[:-1]`, each in [0, C) or equal to `ignore_index`.
    weight: optional `(C,)` class weights.
    label_smoothing: eps in [0, 1]; the target distribution is (1 - eps) one-hot + eps / C uniform.

    With w = weight (ones if None), p = softmax, logp = log p and per position i (not ignored):
        l_i = (1 - eps) * w[y_i] * (-logp[i, y_i]) + eps / C * sum_c w[c] * (-logp[i, c])
    "sum" returns sum_i l_i; "mean" returns sum_i l_i / sum_i w[y_i] (as torch: the sum of the weights
    of the non-ignored targets, also for the smoothing term). Ignored positions add nothing and get a
    zero gradient. If that normaliser is 0 (every target ignored, or zero weights) "mean" returns nan
    as torch does, with nan gradients in the non-ignored rows and zeros elsewhere.

    Returns (loss: float, dlogits: same shape and dtype as logits).
    """
    x = _as_float(logits)
    t = np.asarray(targets)
    _check_reduction(reduction)
    if x.ndim < 1:
        raise ValueError(f"cross_entropy: logits must be (..., C), got shape {x.shape}")
    C = x.shape[-1]
    if t.size == 0 and t.dtype.kind == "f":
        t = t.astype(np.int64)
    if t.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: targets must be integers, got dtype {t.dtype}")
    if t.shape != x.shape[:-1]:
        raise ValueError(f"cross_entropy: targets shape {t.shape} does not match logits shape {x.shape} "
                         f"(expected {x.shape[:-1]})")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if weight is not None:
        weight = np.asarray(weight, dtype=x.dtype)
        if weight.shape != (C,):
            raise ValueError(f"cross_entropy: weight must have shape ({C},), got {weight.shape}")
    if check_finite and not np.isfinite(x).all():
        raise ValueError("cross_entropy: logits contain nan or inf")

    x2, t1 = x.reshape(-1, C), t.reshape(-1)
    valid = t1 != ignore_index
    bad = valid & ((t1 < 0) | (t1 >= C))
    if bad.any():
        raise ValueError(f"cross_entropy: target {t1[bad][0]} out of range [0, {C}) (ignore_index={ignore_index})")
    tv = np.where(valid, t1, 0)
    rows = np.arange(t1.size)
    eps = float(label_smoothing)

    logp = log_softmax(x2)
    p = np.exp(logp)
    wy = (weight[tv] if weight is not None else np.ones(t1.size, x.dtype)) * valid  # w[y_i], 0 if ignored
    loss = -(1.0 - eps) * np.sum(wy * logp[rows, tv])
    # dl_i/dz_j = (1 - eps) w[y] (p_j - [j = y]) + eps / C (W p_j - w_j),  W = sum_c w_c
    grad = p * wy[:, None]
    grad[rows, tv] -= wy
    grad *= 1.0 - eps
    if eps > 0.0:
        w = weight if weight is not None else np.ones(C, x.dtype)
        v = valid[:, None]
        loss -= eps / C * np.sum(np.where(v, logp * w, 0.0))
        grad += eps / C * np.where(v, w.sum() * p - w, 0.0)

    if reduction == "mean":
        denom = wy.sum()
        if denom == 0:  # torch's 0/0
            return float("nan"), np.where(valid[:, None], np.nan, np.zeros_like(x2)).reshape(x.shape)
        loss, grad = loss / denom, grad / denom
    return float(loss), grad.astype(x.dtype, copy=False).reshape(x.shape)


def mse(pred, target, reduction: str = "mean"):
    """Mean (or summed) squared error, as torch.nn.functional.mse_loss; pred and target of the same shape.

    loss = mean((pred - target)^2), dpred = 2 (pred - target) / n  (no division for "sum").
    Returns (loss: float, dpred: same shape and dtype as pred).
    """
    _check_reduction(reduction)
    pred = _as_float(pred)
    target = np.asarray(target, dtype=pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"mse: pred shape {pred.shape} does not match target shape {target.shape}")
    diff = pred - target
    if reduction == "mean":
        n = diff.size
        if n == 0:
            return float("nan"), diff
        return float(np.sum(diff * diff) / n), diff * (2.0 / n)
    return float(np.sum(diff * diff)), 2.0 * diff


# ------------------------------------------------------------------------------------------- forecasting

def _pair(pred, target, name: str):
    pred = _as_float(pred)
    target = np.asarray(target, dtype=pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred shape {pred.shape} does not match target shape {target.shape}")
    return pred, target


def _reduce(terms: np.ndarray, grads, reduction: str):
    """(sum or mean of the loss terms, the gradients divided by their number for "mean")."""
    _check_reduction(reduction)
    if reduction == "sum":
        return float(terms.sum()), grads
    n = terms.size
    if n == 0:
        return float("nan"), grads
    return float(terms.sum() / n), tuple(g / n for g in grads) if isinstance(grads, tuple) else grads / n


def mae(pred, target, reduction: str = "mean"):
    """Mean (or summed) absolute error, as torch.nn.functional.l1_loss.

    loss = mean |pred - target|, dpred = sign(pred - target) / n (0 where they are equal, as torch).
    Returns (loss: float, dpred: same shape and dtype as pred).
    """
    pred, target = _pair(pred, target, "mae")
    diff = pred - target
    return _reduce(np.abs(diff), np.sign(diff), reduction)


def pinball(pred, target, quantiles, reduction: str = "mean"):
    """Quantile (pinball) loss of predicted quantiles, averaged over every element and every quantile.

    pred (..., Q): the predicted q_k-quantile of each target in its last axis; target (...); quantiles (Q,).
    With e = target - pred_k:  l_k = q_k e if e >= 0 else (q_k - 1) e  (= max(q_k e, (q_k - 1) e)),
    so dl_k/dpred_k = -q_k if e >= 0 else 1 - q_k. Minimising the mean of l_k over a sample gives its
    empirical q_k-quantile. Nothing makes the Q predictions monotone in q: a model may cross them.
    Returns (loss: float, dpred: same shape and dtype as pred).
    """
    pred = _as_float(pred)
    q = np.asarray(quantiles, dtype=pred.dtype)
    target = np.asarray(target, dtype=pred.dtype)
    if pred.shape != (*target.shape, q.size):
        raise ValueError(f"pinball: pred shape {pred.shape} does not match target shape {target.shape} "
                         f"+ ({q.size} quantiles)")
    e = target[..., None] - pred
    above = e >= 0
    return _reduce(np.where(above, q * e, (q - 1) * e), np.where(above, -q, 1 - q), reduction)


def softplus(x: np.ndarray) -> np.ndarray:
    """softplus(x) = log(1 + e^x), and x itself above 20 (torch.nn.functional.softplus's threshold)."""
    x = _as_float(x)
    with np.errstate(over="ignore"):
        return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def softplus_grad(x: np.ndarray) -> np.ndarray:
    """d softplus / dx = e^x / (1 + e^x) = sigmoid(x), and 1 above the threshold 20 (as torch's backward)."""
    x = _as_float(x)
    z = np.exp(np.minimum(x, 20))
    return np.where(x > 20, 1.0, z / (z + 1))


def gaussian_nll(mean, scale, target, reduction: str = "mean"):
    """Negative log-likelihood of the targets under N(mean, scale²), as torch.nn.GaussianNLLLoss(full=True)
    with var = scale² (but no clamping: the scale must be positive).

    l = ½ log 2π + log σ + (y - μ)² / (2σ²);  dl/dμ = (μ - y) / σ²;  dl/dσ = 1/σ - (y - μ)² / σ³.
    mean, scale, target of one shape. Returns (loss: float, (dmean, dscale)), each of the mean's shape.
    """
    mean, target = _pair(mean, target, "gaussian_nll")
    scale = np.asarray(scale, dtype=mean.dtype)
    if scale.shape != mean.shape:
        raise ValueError(f"gaussian_nll: scale shape {scale.shape} does not match mean shape {mean.shape}")
    z = (target - mean) / scale
    terms = 0.5 * np.log(2 * np.pi) + np.log(scale) + 0.5 * z * z
    return _reduce(terms, (-z / scale, (1 - z * z) / scale), reduction)
