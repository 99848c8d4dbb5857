"""Reading UTF-8 text files, with errors that say what is wrong and where."""

from __future__ import annotations

import os
from pathlib import Path


def decode_utf8(data: bytes, name: str = "<bytes>") -> str:
    """Decode `data` as UTF-8 (a leading byte-order mark is dropped).

    Raises ValueError naming `name`, the byte offset and the line of the first undecodable byte.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"{name}: not valid UTF-8 at byte offset {e.start} (line {line}, byte 0x{data[e.start]:02x}: "
            f"{e.reason}); convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """Return the text of a UTF-8 file.

    Raises FileNotFoundError for a missing file and ValueError for an empty (or whitespace-only) file
    or for bytes that are not UTF-8 (the message gives the byte offset).
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    text = decode_utf8(data, str(path))
    if not text.strip():
        raise ValueError(f"{path}: the file holds only whitespace ({len(data)} bytes)")
    return text
