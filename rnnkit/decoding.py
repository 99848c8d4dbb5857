"""Decoding a translation model, on either engine: batched greedy search and batched beam search.

Engine-neutral: the model is reached through `engine.call("encode", ...)` and `engine.call("decode_step", ...)`
(rnnkit/seq2seq_spec.py has the contract), so the same weights give the same translations on both engines.

    hyps = translate(engine, source (B, S), source_lengths (B,), beam=5, n_best=3, bos_id=2, eos_id=3, pad_id=0)
    hyps[b][0].tokens      the best output for source b: target ids, without <bos> and <eos>
    hyps[b][0].score       its log-probability divided by the length penalty
    hyps[b][0].attention   (steps, source_lengths[b]): the weights over the source at each emitted step

Scores (GNMT, Wu et al. 2016): score(Y) = log P(Y | X) / lp(Y), lp(Y) = ((5 + |Y|) / 6)^alpha, where |Y|
counts the emitted tokens, <eos> included; alpha = 0 ranks by log-probability alone. <pad> and <bos> are
never emitted. A hypothesis may emit at most max_length(L) = floor(max_ratio * L + max_offset) tokens
(at least 1), L its source length; one that reaches it without <eos> ends there (`finished` False).

Beam search keeps the `beam` best live hypotheses per source (the top `beam` of all their one-token
extensions); an extension ending in <eos> leaves the beam as a finished hypothesis, so the beam may shrink.
A source's search stops when none is live, or when it has `n_best` finished hypotheses and none of the live
ones can still beat the n-th (log-probabilities only fall, so a live one scores at most
its log-probability / lp(max_length)), or at max_length. Beam width 1 is greedy search, tie for tie: both
take the first of equal candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The defaults of the search; the translation task's settings pass its own.
MAX_RATIO, MAX_OFFSET = 1.5, 5.0


@dataclass
class Hypothesis:
    """One output: `tokens` (target ids, no <bos>/<eos>), `score` (log_prob / lp), `log_prob`,
    `attention` (steps, source length) with one row per emitted token (<eos> included when `finished`)."""

    tokens: list[int]
    score: float
    log_prob: float
    attention: np.ndarray
    finished: bool


def length_penalty(length, alpha: float):
    """GNMT's lp = ((5 + length) / 6)^alpha (1 for alpha = 0)."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def max_lengths(source_lengths, max_ratio: float = MAX_RATIO, max_offset: float = MAX_OFFSET) -> np.ndarray:
    """floor(max_ratio * L + max_offset), at least 1, per source (B,)."""
    if not max_ratio >= 0 or not max_offset >= 0:
        raise ValueError(f"max_ratio and max_offset must be non-negative, got {max_ratio} and {max_offset}")
    lengths = np.asarray(source_lengths, dtype=np.float64)
    return np.maximum(np.floor(max_ratio * lengths + max_offset), 1).astype(np.int64)


def _take(arrays: dict, index: np.ndarray) -> dict:
    return {k: v[index] for k, v in arrays.items()}


def _forbid(log_probs: np.ndarray, *ids) -> np.ndarray:
    log_probs = np.array(log_probs, dtype=np.float64)
    log_probs[:, list(ids)] = -np.inf
    return log_probs


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The columns of the k highest scores of each row (n, m), best first, ties in column order: the first k
    of a stable argsort of -scores, without sorting all m (a beam's width x vocabulary candidates) per step."""
    n, m = scores.shape
    if k >= m:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)     # the k-th highest score of each row
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        columns = np.flatnonzero(scores[i] >= kth[i])             # the k best, and every tie of the k-th
        out[i] = columns[np.argsort(-scores[i, columns], kind="stable")[:k]]
    return out


def translate(engine, source, source_lengths, *, beam: int = 1, n_best: int = 1, alpha: float = 0.0,
              max_ratio: float = MAX_RATIO, max_offset: float = MAX_OFFSET, bos_id: int, eos_id: int,
              pad_id: int) -> list[list[Hypothesis]]:
    """Greedy search for beam == 1 (n_best must be 1 then), beam search otherwise: per source its n-best list."""
    if beam == 1 and n_best == 1:
        return greedy(engine, source, source_lengths, alpha=alpha, max_ratio=max_ratio, max_offset=max_offset,
                      bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    return beam_search(engine, source, source_lengths, beam=beam, n_best=n_best, alpha=alpha, max_ratio=max_ratio,
                       max_offset=max_offset, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)


def greedy(engine, source, source_lengths, *, alpha: float = 0.0, max_ratio: float = MAX_RATIO,
           max_offset: float = MAX_OFFSET, bos_id: int, eos_id: int, pad_id: int) -> list[list[Hypothesis]]:
    """The most probable next token at each step, for the whole batch at once; finished rows leave the batch.
    Returns per source a one-element list (as beam_search's n-best lists)."""
    lengths = np.asarray(source_lengths)
    state, memory = engine.call("encode", source, lengths)
    limits = max_lengths(lengths, max_ratio, max_offset)
    batch = len(lengths)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    rows: list[list[np.ndarray]] = [[] for _ in range(batch)]
    log_prob = np.zeros(batch)
    out: list = [None] * batch
    active = np.arange(batch)
    prev = np.full(batch, bos_id, dtype=np.int64)
    step = 0
    while len(active):
        log_probs, state, weights = engine.call("decode_step", prev, state, memory)
        candidates = log_prob[active][:, None] + _forbid(log_probs, pad_id, bos_id)
        choice = candidates.argmax(axis=1)
        step += 1
        keep = np.ones(len(active), dtype=bool)
        for i, b in enumerate(active):
            log_prob[b] = candidates[i, choice[i]]
            rows[b].append(weights[i, :lengths[b]])
            ended = choice[i] == eos_id
            if not ended:
                tokens[b].append(int(choice[i]))
            if ended or step >= limits[b]:
                score = log_prob[b] / length_penalty(step, alpha)
                out[b] = [Hypothesis(tokens[b], float(score), float(log_prob[b]), np.array(rows[b]), bool(ended))]
                keep[i] = False
        if not keep.all():
            active, choice = active[keep], choice[keep]
            state, memory = _take(state, keep), _take(memory, keep)
        prev = choice.astype(np.int64)
    return out


def beam_search(engine, source, source_lengths, *, beam: int = 5, n_best: int = 1, alpha: float = 0.0,
                max_ratio: float = MAX_RATIO, max_offset: float = MAX_OFFSET, bos_id: int, eos_id: int,
                pad_id: int) -> list[list[Hypothesis]]:
    """Batched beam search (see the module docstring): per source its `n_best` hypotheses, best first."""
    if not isinstance(beam, (int, np.integer)) or beam < 1:
        raise ValueError(f"beam must be a positive integer, got {beam!r}")
    if not isinstance(n_best, (int, np.integer)) or not 1 <= n_best <= beam:
        raise ValueError(f"n_best must be in [1, beam={beam}], got {n_best!r}")
    lengths = np.asarray(source_lengths)
    state, memory = engine.call("encode", source, lengths)
    limits = max_lengths(lengths, max_ratio, max_offset)
    batch, width = len(lengths), int(beam)
    rows = np.repeat(np.arange(batch), width)                 # every source's beam, row-major
    state, memory = _take(state, rows), _take(memory, rows)
    sources = np.arange(batch)                                # the sources still searching
    scores = np.full((batch, width), -np.inf)                 # log-probabilities of the live hypotheses
    scores[:, 0] = 0.0                                        # one start per source: <bos>
    seqs = np.zeros((batch, width, 0), dtype=np.int64)
    atts = np.zeros((batch, width, 0, memory["mask"].shape[1]))
    prev = np.full(batch * width, bos_id, dtype=np.int64)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    step = 0
    while len(sources):
        log_probs, state, weights = engine.call("decode_step", prev, state, memory)
        n = len(sources)
        vocab = log_probs.shape[1]
        candidates = (scores.reshape(-1, 1) + _forbid(log_probs, pad_id, bos_id)).reshape(n, width * vocab)
        order = top_k(candidates, width)                                     # ties: the first candidate
        scores = np.take_along_axis(candidates, order, axis=1)
        parent, token = order // vocab, order % vocab
        flat_parent = (np.arange(n)[:, None] * width + parent).reshape(-1)
        seqs = np.concatenate([np.take_along_axis(seqs, parent[..., None], axis=1), token[..., None]], axis=2)
        weights = np.asarray(weights, dtype=np.float64)[flat_parent].reshape(n, width, 1, -1)
        atts = np.concatenate([np.take_along_axis(atts, parent[..., None, None], axis=1), weights], axis=2)
        state = _take(state, flat_parent)
        step += 1
        done = np.zeros(n, dtype=bool)
        for i, b in enumerate(sources):
            ended = np.isfinite(scores[i]) & (token[i] == eos_id)
            cut = np.isfinite(scores[i]) & ~ended if step >= limits[b] else np.zeros(width, dtype=bool)
            for k in np.flatnonzero(ended | cut):
                finished[b].append(Hypothesis(
                    [int(x) for x in seqs[i, k, :step - 1 if ended[k] else step]],
                    float(scores[i, k] / length_penalty(step, alpha)), float(scores[i, k]),
                    atts[i, k, :, :lengths[b]].copy(), bool(ended[k])))
            scores[i, ended | cut] = -np.inf
            best_live = scores[i].max()
            if len(finished[b]) >= n_best and np.isfinite(best_live):
                nth = sorted((h.score for h in finished[b]), reverse=True)[n_best - 1]
                if nth >= best_live / length_penalty(limits[b], alpha):
                    best_live = -np.inf               # no live hypothesis can still enter the n-best
            done[i] = not np.isfinite(best_live)
        if done.any():
            keep = ~done
            sources, scores, seqs, atts, token = sources[keep], scores[keep], seqs[keep], atts[keep], token[keep]
            rows = np.repeat(keep, width)
            state, memory = _take(state, rows), _take(memory, rows)
        prev = token.reshape(-1).astype(np.int64)
    return [sorted(hyps, key=lambda h: -h.score)[:n_best] for hyps in finished]
