"""Sentence pairs for translation: reading, tokenising, length filtering, splitting by source, vocabularies.

A pair is a tuple whose first two items are the source and the target text; further items (Tatoeba's
attribution) ride along untouched through filtering and splitting.

    pairs = read_pairs("en-es.tsv", source_column="en", target_column="es")
    splits, report = split_by_source(pairs, valid=0.1, test=0.1, seed=0)    # report.moved: pairs moved
    data = prepare_pairs(splits, SentenceTokenizer("word", lower=True), SentenceTokenizer("word", lower=True),
                         min_freq=2, max_length=10)
    data.ids["train"]      # [(source ids (S,), target ids (T,)), ...] without <bos>/<eos>
    data.report            # pairs kept and dropped per split

Splitting by source: a sentence with several translations (Tatoeba has 119,342 distinct English sentences in
140,868 pairs) must not be in train and test at once, or the test measures recall of the training set. The
pairs are shuffled (seeded) and cut into train/valid/test; each source then goes, with all its pairs, to the
split the cut gave its first pair in the INPUT order. That pair sits at a uniformly random place of the
shuffle, so a source lands in train with the train fraction whatever its number of translations (taking the
first pair of the shuffled order instead would send sources with many translations to train). `moved`
counts the pairs this put in another split than the plain cut did. group="both" keeps pairs connected by a
shared source OR a shared target together (the connected components), so one split serves both translation
directions.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field

import numpy as np

from .tables import read_columns
from .tokenizers import WordTokenizer
from .vocab import BOS, EOS, PAD, UNK, Vocabulary

LEVELS = ("word", "char")
NORMALIZATIONS = ("NFKC", "NFC", "none")
GROUPS = ("source", "both")
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 on both sides
_SPACES = re.compile(r"\s+")


def read_pairs(path: str | os.PathLike, source_column: str = "source", target_column: str = "target",
               delimiter: str | None = None) -> list[tuple[str, str]]:
    """(source, target) pairs from a CSV/TSV file with a header, or JSONL (rnnkit/data/tables.py: every
    problem, including bytes that are not UTF-8 and a missing column, is a ValueError naming the file)."""
    if source_column == target_column:
        raise ValueError(f"the source and target columns are both {source_column!r}; give two different columns")
    return read_columns(path, {"source": source_column, "target": target_column}, delimiter)


# ------------------------------------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class SentenceTokenizer:
    """One side of a pair → tokens.

    normalization: Unicode form applied first ("NFKC" folds compatibility characters: "ﬁ" → "fi", full-width
        digits → ASCII; "NFC" only composes accents; "none"); then runs of white space become one space and
        the ends are stripped, and with `lower` the text is lower-cased.
    level "word": words and single punctuation marks ("¿Qué?" → ¿ Qué ?; rnnkit/data/tokenizers.py);
    level "char": one token per character, spaces included.
    """

    level: str = "word"
    lower: bool = False
    normalization: str = "NFKC"

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {self.level!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {self.normalization!r}")

    def normalize(self, text: str) -> str:
        if not isinstance(text, str):
            raise ValueError(f"a sentence must be a string, got {type(text).__name__}")
        if self.normalization != "none":
            text = unicodedata.normalize(self.normalization, text)
        text = _SPACES.sub(" ", text).strip()
        return text.lower() if self.lower else text

    def tokenize(self, text: str) -> list[str]:
        text = self.normalize(text)
        return list(text) if self.level == "char" else _WORDS.tokenize(text)

    def detokenize(self, tokens) -> str:
        return "".join(tokens) if self.level == "char" else _WORDS.detokenize(list(tokens))

    def config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "SentenceTokenizer":
        return cls(**config)


_WORDS = WordTokenizer(split="punct")


def tokenize_pairs(pairs, source: SentenceTokenizer, target: SentenceTokenizer) -> list[tuple[list, list]]:
    """(source tokens, target tokens) for each pair."""
    return [(source.tokenize(p[0]), target.tokenize(p[1])) for p in pairs]


@dataclass
class LengthReport:
    """What filter_by_length kept and dropped (a pair with an empty side is dropped whatever the limit)."""

    kept: int = 0
    too_long: int = 0
    empty: int = 0
    max_length: int | None = None

    @property
    def dropped(self) -> int:
        return self.too_long + self.empty

    def __str__(self):
        why = [f"{self.too_long:,} with more than {self.max_length} tokens on a side"] if self.max_length else []
        why.append(f"{self.empty:,} with an empty side")
        return f"kept {self.kept:,} pairs, dropped {self.dropped:,} ({', '.join(why)})"


def filter_by_length(token_pairs, max_length: int | None) -> tuple[list[int], LengthReport]:
    """Indices of the pairs whose sides both have 1..max_length tokens (None: no limit), and the report."""
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
    keep, report = [], LengthReport(max_length=max_length)
    for i, (src, tgt) in enumerate(token_pairs):
        if not src or not tgt:
            report.empty += 1
        elif max_length is not None and max(len(src), len(tgt)) > max_length:
            report.too_long += 1
        else:
            keep.append(i)
    report.kept = len(keep)
    return keep, report


def build_vocabularies(token_pairs, min_freq: int = 1, max_vocab: int | None = None) -> tuple[Vocabulary, Vocabulary]:
    """The source and the target vocabulary of `token_pairs`, each with <pad>=0 <unk>=1 <bos>=2 <eos>=3 first;
    tokens seen fewer than `min_freq` times are left out; `max_vocab` caps each size (specials included)."""
    src = Vocabulary.build((s for s, _ in token_pairs), min_freq=min_freq, max_size=max_vocab, specials=SPECIALS)
    tgt = Vocabulary.build((t for _, t in token_pairs), min_freq=min_freq, max_size=max_vocab, specials=SPECIALS)
    return src, tgt


# ------------------------------------------------------------------------------------------------ split


@dataclass
class SplitReport:
    """Sizes of the splits, and how many pairs keeping each source (group) in one split moved."""

    sizes: dict = field(default_factory=dict)
    moved: int = 0
    groups: int = 0
    group: str = "source"

    def __str__(self):
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.sizes.items())
        what = "source" if self.group == "source" else "group of pairs sharing a source or a target"
        groups = "distinct sources" if self.group == "source" else "groups"
        return f"{sizes} pairs; {self.moved:,} pairs moved to keep each {what} in one split ({self.groups:,} {groups})"


def _group_keys(pairs, group: str) -> list:
    """A key per pair, equal for pairs that must share a split."""
    if group == "source":
        return [p[0] for p in pairs]
    parent: dict = {}

    def find(x):
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for p in pairs:
        a, b = find(("s", p[0])), find(("t", p[1]))
        if a != b:
            parent[a] = b
    return [find(("s", p[0])) for p in pairs]


def split_by_source(pairs, valid: float = 0.1, test: float = 0.1, seed: int = 0,
                    group: str = "source") -> tuple[dict, SplitReport]:
    """{"train", "valid", "test"}: lists of the pairs, each in the input order, no source in two splits.

    The seeded shuffle is cut into round(n*valid) valid and round(n*test) test pairs and the rest train; each
    source (group="both": each connected group) then follows its first pair (see the module docstring), so
    the sizes are those fractions in expectation. The same pairs and seed give the same split.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, not {group!r}")
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"valid ({valid}) and test ({test}) must be fractions in [0, 1) with a sum below 1")
    pairs = list(pairs)
    n = len(pairs)
    n_valid, n_test = round(n * valid), round(n * test)
    if n - n_valid - n_test < 1 or (valid > 0 and n_valid == 0) or (test > 0 and n_test == 0):
        raise ValueError(f"{n} pairs are too few for a split of {1 - valid - test:.0%}/{valid:.0%}/{test:.0%}")
    order = np.random.default_rng(seed).permutation(n)
    plain = np.empty(n, dtype=np.int64)  # 0 train, 1 valid, 2 test, by position in the shuffled order
    plain[order] = np.repeat([0, 1, 2], [n - n_valid - n_test, n_valid, n_test])
    keys = _group_keys(pairs, group)
    first: dict = {}  # a group's split: the cut's split of its first pair in the input order
    for key, split in zip(keys, plain.tolist()):
        first.setdefault(key, split)
    final = np.array([first[k] for k in keys], dtype=np.int64)
    names = ("train", "valid", "test")
    splits = {name: [pairs[i] for i in np.flatnonzero(final == s).tolist()] for s, name in enumerate(names)}
    for name, fraction in (("train", 1.0), ("valid", valid), ("test", test)):
        if fraction > 0 and not splits[name]:
            raise ValueError(f"the {name} split is empty: {n} pairs in {len(first)} groups are too few")
    report = SplitReport({k: len(v) for k, v in splits.items()}, int(np.sum(final != plain)), len(first), group)
    return splits, report


# ------------------------------------------------------------------------------------------------ all of it


@dataclass
class PreparedPairs:
    """Token ids of every split, the vocabularies (built on train) and what was dropped.

    ids[split]: [(source ids (S,) int64, target ids (T,) int64), ...] without <bos>/<eos>;
    pairs[split]: the original pairs kept, parallel to ids[split] (for references and attribution);
    report[split]: its LengthReport.
    """

    ids: dict
    pairs: dict
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    source_tokenizer: SentenceTokenizer
    target_tokenizer: SentenceTokenizer
    report: dict

    def unknown_rate(self, split: str) -> tuple[float, float]:
        """The fraction of <unk> among the source and among the target tokens of `split`."""
        rates = []
        for side, vocab in ((0, self.source_vocab), (1, self.target_vocab)):
            ids = [p[side] for p in self.ids[split]]
            total = sum(len(x) for x in ids)
            rates.append(sum(int(np.sum(x == vocab.unk_id)) for x in ids) / total if total else 0.0)
        return rates[0], rates[1]


def prepare_pairs(splits: dict, source: SentenceTokenizer, target: SentenceTokenizer, min_freq: int = 1,
                  max_vocab: int | None = None, max_length: int | None = None) -> PreparedPairs:
    """Tokenise every split, drop pairs longer than `max_length` tokens on either side (and those with an
    empty side), build the vocabularies on what train kept, and encode."""
    ids, kept_pairs, reports, tokens = {}, {}, {}, {}
    for name, pairs in splits.items():
        toks = tokenize_pairs(pairs, source, target)
        keep, reports[name] = filter_by_length(toks, max_length)
        tokens[name] = [toks[i] for i in keep]
        kept_pairs[name] = [pairs[i] for i in keep]
    if not tokens.get("train"):
        raise ValueError(f"no training pairs left: {reports.get('train', 'no train split')}")
    src_vocab, tgt_vocab = build_vocabularies(tokens["train"], min_freq, max_vocab)
    for name, toks in tokens.items():
        ids[name] = [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in toks]
    return PreparedPairs(ids, kept_pairs, src_vocab, tgt_vocab, source, target, reports)

