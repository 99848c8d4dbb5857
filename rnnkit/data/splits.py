"""A user's labelled file made into train/valid/test, with a record of what was done, and re-made for scoring.

    made = split_file("reviews.csv", "text", "label", {"pos": "positive"})
    made.splits["test"]       # [(text, label), ...]: the held-out rows
    made.rows["test"]         # their data row numbers in the file (1: the first row after the header)
    made.record               # {"sha256", "rows", "repeated", "tied", "method", "sizes"}: JSON-ready

What it does: the labels are renamed (`label_map`); each text is kept once, at its first row, with its most
frequent label, and a text whose labels tie is dropped (rnnkit.data.datasets.dedupe_labelled), so no text is in
two splits; then 80/10/10 per label by the SHA-256 of each text (datasets.stratified_split). All of it is a
function of the file's bytes, the columns and the label map, so `split_file` on the same file gives the same
rows again: `rnnkit evaluate CKPT --data FILE --split test` scores exactly the rows held out in training, after
checking the file's SHA-256 against the one the checkpoint records.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import datasets
from .tables import read_labelled

METHOD = ("each text kept once (its most frequent label; tied texts dropped), then 80/10/10 per label by the "
          "SHA-256 of the text")


def parse_label_map(text: str | None) -> dict[str, str]:
    """"pos=positive,neg=negative" → {"pos": "positive", "neg": "negative"} (None or "": no renaming)."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        old, sep, new = (part.strip() for part in item.partition("="))
        if not sep or not old or not new:
            raise ValueError(f"label map: {item.strip()!r} is not OLD=NEW (e.g. pos=positive,neg=negative)")
        if old in mapping:
            raise ValueError(f"label map: {old!r} is renamed twice")
        mapping[old] = new
    return mapping


def rename_labels(pairs, mapping: dict[str, str]) -> list[tuple[str, str]]:
    """The pairs with each label in `mapping` renamed (others as they are)."""
    return [(text, mapping.get(label, label)) for text, label in pairs] if mapping else list(pairs)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FileSplit:
    splits: dict[str, list[tuple[str, str]]]     # "train", "valid", "test" → (text, label) pairs
    rows: dict[str, list[int]]                   # the same, as data row numbers in the file (1-based)
    record: dict                                 # what was done: see the module docstring


def split_file(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
               label_map: dict[str, str] | None = None) -> FileSplit:
    """Read, rename, deduplicate and split a labelled file; see the module docstring."""
    pairs = rename_labels(read_labelled(path, text_column, label_column), label_map or {})
    first_row: dict[str, int] = {}
    for row, (text, _) in enumerate(pairs, 1):
        first_row.setdefault(text, row)
    kept = datasets.dedupe_labelled(pairs)
    splits = datasets.stratified_split(kept)
    record = {"sha256": file_sha256(path), "rows": len(pairs), "repeated": len(pairs) - len(first_row),
              "tied": len(first_row) - len(kept), "method": METHOD,
              "sizes": {name: len(part) for name, part in splits.items()}}
    rows = {name: [first_row[text] for text, _ in part] for name, part in splits.items()}
    return FileSplit(splits, rows, record)


def describe(record: dict, path) -> str:
    """One line for a training summary: rows read, dropped, and how the split was made."""
    dropped = record["repeated"] + record["tied"]
    sizes = record["sizes"]
    line = f"{Path(path).name}: {record['rows']:,} rows"
    if dropped:
        line += (f"; {dropped:,} dropped ({record['repeated']:,} repeating a text read before"
                 + (f", {record['tied']:,} whose text has tied labels" if record["tied"] else "") + ")")
    return (line + f"; split 80/10/10 per label by a hash of each text: {sizes['train']:,} train, "
            f"{sizes['valid']:,} validation, {sizes['test']:,} test (held out)")
