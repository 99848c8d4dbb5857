"""Word vectors learned from unlabelled text by counting: positive PMI of co-occurrences, reduced by SVD.

    words, vectors = count_vectors(token_lists, dim=50)      # (words,), (words, dim) float32
    write_vectors("vectors.txt", words, vectors)             # GloVe's text format: "word v1 ... vd" per line

Levy & Goldberg (2014) showed word2vec's skip-gram with negative sampling factorises a shifted PMI matrix;
this computes such vectors directly, with NumPy only, for corpora of up to a few thousand word types:
    C[w, c]   = how often c occurs within `window` tokens of w (both sides), over the texts
    PPMI[w, c] = max(0, log( C[w, c] · N / (C[w, ·] · C[·, c]^0.75 / Σ C[·, ·]^0.75 ) ))   (context smoothing 0.75)
    vectors   = U_d · √S_d of PPMI's truncated SVD (the `dim` largest singular values), rows scaled to unit norm
The result is a file that `--embeddings FILE` (rnnkit/data/embeddings.py) reads like GloVe's.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

MAX_WORDS = 8_000   # the dense (words × words) co-occurrence matrix: 256 MB in float32


def count_vectors(token_lists, dim: int = 50, window: int = 2, min_count: int = 2, max_words: int = 5_000,
                  seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(words, (words, dim) float32 unit vectors) of the `max_words` most frequent tokens seen `min_count` times
    or more in `token_lists` (lists of tokens, one per text; windows do not cross texts)."""
    if not 1 <= max_words <= MAX_WORDS:
        raise ValueError(f"max_words must be in 1..{MAX_WORDS}, got {max_words}")
    if dim < 1 or window < 1:
        raise ValueError(f"dim and window must be >= 1, got {dim}, {window}")
    token_lists = [list(tokens) for tokens in token_lists]
    counts = Counter(t for tokens in token_lists for t in tokens)
    words = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count][:max_words]
    if len(words) <= dim:
        raise ValueError(f"the texts have {len(words)} words seen {min_count}+ times, too few for {dim} dimensions")
    index = {w: i for i, w in enumerate(words)}
    co = np.zeros((len(words), len(words)), np.float64)
    for tokens in token_lists:
        ids = np.array([index.get(t, -1) for t in tokens])
        for shift in range(1, window + 1):                 # pairs (ids[k], ids[k + shift]) and back
            a, b = ids[:-shift], ids[shift:]
            keep = (a >= 0) & (b >= 0)
            np.add.at(co, (a[keep], b[keep]), 1.0)
            np.add.at(co, (b[keep], a[keep]), 1.0)
    total = co.sum()
    if total == 0:
        raise ValueError("no two counted words occur within the window of each other")
    context = co.sum(axis=0) ** 0.75
    with np.errstate(divide="ignore"):
        pmi = np.log(co * context.sum() / (co.sum(axis=1, keepdims=True) * context[None, :] + 1e-300))
    ppmi = np.where(co > 0, np.maximum(pmi, 0.0), 0.0)
    u, s = _truncated_svd(ppmi, dim, seed)
    vectors = u * np.sqrt(s)[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return words, (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _truncated_svd(matrix: np.ndarray, dim: int, seed: int, oversample: int = 10, power: int = 4):
    """The `dim` largest singular values and left vectors of `matrix` (Halko et al. 2011's randomised SVD,
    with power iterations); seeded, so the same text gives the same vectors. Signs fixed: each vector's
    largest entry is positive."""
    rng = np.random.default_rng(seed)
    k = min(dim + oversample, matrix.shape[1])
    q, _ = np.linalg.qr(matrix @ rng.standard_normal((matrix.shape[1], k)))
    for _ in range(power):
        q, _ = np.linalg.qr(matrix @ (matrix.T @ q))
    u_small, s, _ = np.linalg.svd(q.T @ matrix, full_matrices=False)
    u = (q @ u_small)[:, :dim]
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(dim)])
    return u * np.where(signs == 0, 1.0, signs), s[:dim]


def write_vectors(path, words: list[str], vectors: np.ndarray) -> None:
    """GloVe's text format, atomically: one line "word v1 ... vd" per word, values to 6 significant digits."""
    from ..checkpoint.atomic import write_text_atomic

    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise ValueError(f"words in GloVe's format cannot be empty or hold white space: {bad[:3]}")
    write_text_atomic(path, "".join(w + " " + " ".join(f"{v:.6g}" for v in row) + "\n"
                                    for w, row in zip(words, np.asarray(vectors, np.float64))))


def nearest(words: list[str], vectors: np.ndarray, word: str, k: int = 5) -> list[tuple[str, float]]:
    """The k words whose vectors have the largest cosine with `word`'s (itself left out)."""
    if word not in words:
        raise ValueError(f"{word!r} has no vector")
    v = np.asarray(vectors, np.float64)
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit[words.index(word)]
    order = [i for i in np.argsort(-cos) if words[i] != word][:k]
    return [(words[i], float(cos[i])) for i in order]
