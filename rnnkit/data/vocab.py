"""Vocabulary: a fixed map between tokens and integer ids, saved as JSON."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..checkpoint.atomic import write_text_atomic

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
_FORMAT = "rnnkit.vocabulary"


class Vocabulary:
    """Tokens and their ids: `itos[id] -> token`, `stoi[token] -> id`.

    Special tokens come first, in the order given (so with the default specials `<pad>` is 0 and `<unk>` is 1).
    `encode` maps a token missing from the vocabulary to `<unk>`; without `<unk>` it raises ValueError.
    """

    def __init__(self, tokens, specials=()):
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [t for t, n in Counter(self.itos).items() if n > 1]
            raise ValueError(f"duplicate tokens in vocabulary: {dup[:10]}")
        self.specials: list[str] = list(specials)
        missing = [s for s in self.specials if s not in self.stoi]
        if missing:
            raise ValueError(f"special tokens {missing} are not in the vocabulary")

    @classmethod
    def build(cls, tokens_or_texts, min_freq: int = 1, max_size: int | None = None,
              specials=(PAD, UNK)) -> "Vocabulary":
        """Count tokens and keep those seen at least `min_freq` times.

        `tokens_or_texts` is an iterable of tokens (str) or of token sequences (one list per text), or a mix.
        Order: the specials first as given, then by frequency (most frequent first), ties in lexical order
        (by code point), so the result does not depend on the order of the corpus.
        `max_size` caps the total size, specials included. A special that occurs in the corpus is not
        counted as an ordinary token.
        """
        items = list(tokens_or_texts)
        if all(isinstance(item, str) for item in items):
            counts = Counter(items)
        else:
            counts = Counter()
            for item in items:
                if isinstance(item, str):
                    counts[item] += 1
                else:
                    counts.update(item)
        return cls.from_counts(counts, min_freq, max_size, specials)

    @classmethod
    def from_counts(cls, counts: Counter, min_freq: int = 1, max_size: int | None = None,
                    specials=(PAD, UNK)) -> "Vocabulary":
        """`build` from token counts already made (e.g. while streaming a large file); the same order."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        specials = list(dict.fromkeys(specials))
        if max_size is not None and max_size < len(specials):
            raise ValueError(f"max_size={max_size} is smaller than the {len(specials)} special tokens")
        counts = Counter(counts)
        for s in specials:
            counts.pop(s, None)
        words = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            words = words[: max_size - len(specials)]
        return cls(specials + words, specials)

    # ids of the standard special tokens, None where the vocabulary lacks them
    @property
    def pad_id(self) -> int | None:
        return self.stoi.get(PAD)

    @property
    def unk_id(self) -> int | None:
        return self.stoi.get(UNK)

    @property
    def bos_id(self) -> int | None:
        return self.stoi.get(BOS)

    @property
    def eos_id(self) -> int | None:
        return self.stoi.get(EOS)

    def encode(self, tokens) -> np.ndarray:
        """Token ids as an int64 array of shape (len(tokens),)."""
        stoi, unk = self.stoi, self.unk_id
        if unk is None:
            tokens = tokens if isinstance(tokens, (list, tuple)) else list(tokens)
            try:
                ids = [stoi[t] for t in tokens]
            except KeyError:
                unknown = list(dict.fromkeys(t for t in tokens if t not in stoi))
                raise ValueError(
                    f"{len(unknown)} token(s) not in the vocabulary and it has no {UNK} token: "
                    f"{unknown[:10]}; build the vocabulary with {UNK!r} among the specials"
                ) from None
        else:
            ids = [stoi.get(t, unk) for t in tokens]
        return np.array(ids, dtype=np.int64)

    def decode(self, ids) -> list[str]:
        """Tokens for the given ids (any integer sequence or array)."""
        ids = np.asarray(ids)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        ids = ids.reshape(-1)
        bad = ids[(ids < 0) | (ids >= len(self.itos))]
        if bad.size:
            raise ValueError(f"ids out of range for a vocabulary of {len(self.itos)}: {bad[:10].tolist()}")
        itos = self.itos
        return [itos[i] for i in ids.tolist()]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def __iter__(self):
        return iter(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos and self.specials == other.specials

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, specials={self.specials})"

    # serialisation: a JSON object {"format", "version", "specials", "tokens"}
    def to_dict(self) -> dict:
        """A JSON-ready dict (for embedding in a checkpoint's config.json)."""
        return {"format": _FORMAT, "version": 1, "specials": self.specials, "tokens": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"not a vocabulary: expected a JSON object with format={_FORMAT!r}")
        if d.get("version") != 1:
            raise ValueError(f"unsupported vocabulary version {d.get('version')!r} (this rnnkit reads 1)")
        tokens, specials = d.get("tokens"), d.get("specials", [])
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens + list(specials)):
            raise ValueError("vocabulary 'tokens' and 'specials' must be lists of strings")
        return cls(tokens, specials)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "Vocabulary":
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"vocabulary is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as UTF-8 JSON, atomically (temp file in the same folder, then os.replace)."""
        write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        path = Path(path)
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except ValueError as e:  # UnicodeDecodeError is a ValueError too
            raise ValueError(f"{path}: {e}") from None
