"""Examples from user files: CSV/TSV with a header row, or JSONL (one JSON object per line).

`read_labelled(path, text_column="text", label_column="label") -> [(text, label), ...]` in file order;
`read_columns(path, {"source": "en", "target": "es"}) -> [(source, target), ...]` reads any columns, each
named in errors by its role (a "label" is stripped and may be a JSON integer; any other role is a text).

Format: by extension (.csv comma, .tsv/.tab tab, .jsonl/.ndjson JSON lines); otherwise a first non-blank
character "{" means JSONL, else the delimiter is sniffed from the header line among , tab ; |.
Files are UTF-8 (a byte-order mark is dropped). Labels may be any strings (JSON integers are turned into
strings); they are stripped of surrounding whitespace, texts are kept as written. Blank lines are skipped.
Every problem raises ValueError naming the file and, where there is one, the line: undecodable bytes, an
empty file, a missing column (the message lists the columns that exist), a row with the wrong number of
fields, an empty or missing text or label, a JSONL line that is not a JSON object.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .text import decode_utf8

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL = (".jsonl", ".ndjson")


def read_labelled(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
                  delimiter: str | None = None) -> list[tuple[str, str]]:
    """(text, label) pairs from a CSV/TSV or JSONL file; `delimiter` overrides the CSV delimiter."""
    return read_columns(path, {"text": text_column, "label": label_column}, delimiter)


def read_columns(path: str | os.PathLike, columns: dict, delimiter: str | None = None) -> list[tuple]:
    """One tuple per row of a CSV/TSV or JSONL file: the values of `columns` (role -> column name), in order."""
    path = Path(path)
    data = path.read_bytes()
    text = decode_utf8(data, str(path))
    if not text.strip():
        raise ValueError(f"{path}: the file is empty" + (f" ({len(data)} bytes of whitespace)" if data else ""))
    suffix = path.suffix.lower()
    if delimiter is None and (suffix in JSONL or (suffix not in DELIMITERS and text.lstrip().startswith("{"))):
        pairs = _read_jsonl(text, columns, path)
    else:
        delimiter = delimiter or DELIMITERS.get(suffix) or sniff_delimiter(text)
        pairs = _read_csv(text, delimiter, columns, path)
    if not pairs:
        raise ValueError(f"{path}: no examples after the header")
    return pairs


def sniff_delimiter(text: str) -> str:
    """The delimiter of a delimited text, guessed from its first non-blank line (comma if in doubt)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return csv.Sniffer().sniff(header, delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if "\t" in header else ","


def _value(value, column: str, line: int, path: Path, kind: str) -> str:
    if kind == "label" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{path}, line {line}: the {kind} column {column!r} holds {json.dumps(value)}; "
                         f"expected a string")
    if not value.strip():
        raise ValueError(f"{path}, line {line}: the {kind} column {column!r} is empty")
    return value.strip() if kind == "label" else value


def _read_csv(text: str, delimiter: str, columns: dict, path: Path):
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, start = None, 1
    pairs = []
    try:
        for row in reader:
            line, start = start, reader.line_num + 1  # a quoted field may span lines: report where the row starts
            if not row or (len(row) == 1 and not row[0].strip()):  # a blank line
                continue
            if header is None:
                header = [h.strip() for h in row]
                missing = [c for c in columns.values() if c not in header]
                if missing:
                    raise ValueError(f"{path}: no column {' or '.join(map(repr, missing))}; the header "
                                     f"(delimiter {delimiter!r}) has the columns {header}")
                index = {role: header.index(column) for role, column in columns.items()}
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields, but the header has {len(header)}")
            pairs.append(tuple(_value(row[index[role]], column, line, path, role) for role, column in columns.items()))
    except csv.Error as e:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from None
    return pairs


def jsonl_objects(text: str, path):
    """(line number, object) for each non-blank line of a JSON-lines text; a line that is not a JSON object is
    a ValueError naming `path` and the line."""
    for line, row in enumerate(text.split("\n"), 1):  # not splitlines: JSON strings may hold U+2028
        if not row.strip():
            continue
        try:
            obj = json.loads(row)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {line}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}, line {line}: expected a JSON object, got {type(obj).__name__}")
        yield line, obj


def _read_jsonl(text: str, columns: dict, path: Path):
    pairs = []
    for line, obj in jsonl_objects(text, path):
        missing = [c for c in columns.values() if c not in obj]
        if missing:
            raise ValueError(f"{path}, line {line}: no field {' or '.join(map(repr, missing))}; "
                             f"this line has the fields {list(obj)}")
        pairs.append(tuple(_value(obj[column], column, line, path, role) for role, column in columns.items()))
    return pairs
