"""Pretrained word vectors (GloVe, word2vec or fastText text format) as an embedding matrix for a vocabulary.

`load_embeddings(path, vocab) -> (matrix, coverage)`: row i of the float32 matrix is the vector of
`vocab.itos[i]`.

The file holds one vector per line, "word v1 v2 ... vd", separated by spaces (or other ASCII whitespace;
trailing spaces are ignored); it may be gzip-compressed (detected from its first bytes, not its name).
A first line of exactly two integers "count dim" is word2vec's header: the dimension must then match it
and the file must hold `count` vectors. Words are compared byte for byte with the vocabulary's tokens in
UTF-8 (no case folding: lower-case the tokens if the vectors are lower-case, as GloVe's are); the first
vector of a word repeated in the file wins. A line with more fields than dim + 1 whose extra leading
fields are not numbers is a word that contains spaces (GloVe 840B has a few). Every line's field count is
checked; the values are parsed, and must be finite numbers, only on the lines whose word is in the
vocabulary, so a large file loads fast.

Tokens not found get random vectors from a seeded normal distribution with the standard deviation of the
found vectors (0.1 if none was found), so they start at the same scale; the `<pad>` row, if the vocabulary
has one, is all zeros and does not count in the coverage. GloVe's Twitter vectors use `<user>`, `<url>`,
`<number>` for the placeholders that `rnnkit.data.posts.PostTokenizer` writes.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .vocab import Vocabulary


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _is_number(field: bytes) -> bool:
    try:
        float(field)
        return True
    except ValueError:
        return False


def load_embeddings(path: str | os.PathLike, vocab: Vocabulary, dim: int | None = None,
                    seed: int = 0) -> tuple[np.ndarray, dict]:
    """The embedding matrix (len(vocab), dim) float32 for `vocab`, and the coverage.

    dim: the expected dimension (default: the file's). coverage: {"found": n, "total": n, "fraction": f,
    "missing": [tokens]} over the vocabulary's tokens other than `<pad>`.
    Raises ValueError for an empty file, a dimension that differs from `dim`, the header or the first
    vector (with the line number), a value that is not a finite number (line number), or a word2vec
    header whose count does not match the file.
    """
    path = Path(path)
    wanted = {t.encode("utf-8"): i for i, t in enumerate(vocab.itos)}
    vectors: dict[int, np.ndarray] = {}
    header_count, n_vectors = None, 0
    with _open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip()
            if not line:
                continue
            word, _, rest = line.partition(b" ")
            if n_vectors == 0 and header_count is None:
                fields = line.split()
                if len(fields) == 2 and all(x.isdigit() for x in fields):  # word2vec's "count dim"
                    header_count, file_dim = int(fields[0]), int(fields[1])
                    dim = _check_dim(dim, file_dim, path, lineno, "the header says")
                    continue
                if dim is None:
                    dim = len(fields) - 1
                if dim < 1:
                    raise ValueError(f"{path}, line {lineno}: a word without a vector")
            if rest.count(b" ") + 1 != dim or b"\t" in line or b"  " in line:  # not plain "word v1 .. vd"
                fields = line.split()  # any ASCII whitespace
                if len(fields) > dim + 1 and not _is_number(fields[-dim - 1]):
                    word, rest = b" ".join(fields[:-dim]), b" ".join(fields[-dim:])
                elif len(fields) != dim + 1:
                    _check_dim(dim, len(fields) - 1, path, lineno, "this line has")
                else:
                    word, rest = fields[0], b" ".join(fields[1:])
            n_vectors += 1
            i = wanted.get(word)
            if i is not None and i not in vectors:
                vectors[i] = _parse(rest, path, lineno)
    if n_vectors == 0:
        raise ValueError(f"{path}: no word vectors in the file" + (" (only a header)" if header_count else ""))
    if header_count is not None and header_count != n_vectors:
        raise ValueError(f"{path}: the header announces {header_count} vectors but the file holds {n_vectors}; "
                         f"is it truncated?")
    return _matrix(vocab, vectors, dim, seed)


def _check_dim(want: int | None, got: int, path: Path, lineno: int, what: str) -> int:
    if want is not None and got != want:
        raise ValueError(f"{path}, line {lineno}: {what} {got} dimensions, expected {want}")
    return got


def _parse(rest: bytes, path: Path, lineno: int) -> np.ndarray:
    try:
        v = np.array(rest.split(b" "), dtype=np.float32)
    except ValueError as e:
        raise ValueError(f"{path}, line {lineno}: {e}") from None
    if not np.isfinite(v).all():
        raise ValueError(f"{path}, line {lineno}: a value is not finite: {rest[:80].decode(errors='replace')}")
    return v


def _matrix(vocab: Vocabulary, vectors: dict, dim: int, seed: int) -> tuple[np.ndarray, dict]:
    pad = vocab.pad_id
    vectors.pop(pad, None)
    rows = [i for i in range(len(vocab)) if i != pad]
    missing = [i for i in rows if i not in vectors]
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    if vectors:
        found = np.stack(list(vectors.values()))
        matrix[list(vectors)] = found
        scale = float(found.std()) or 0.1
    else:
        scale = 0.1
    rng = np.random.default_rng(seed)
    matrix[missing] = rng.normal(0.0, scale, size=(len(missing), dim))
    total = len(rows)
    coverage = {"found": len(vectors), "total": total, "fraction": len(vectors) / total if total else 0.0,
                "missing": [vocab.itos[i] for i in missing]}
    return matrix, coverage
