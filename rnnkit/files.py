"""Atomic file writes: a crash or a full disk never leaves a half-written file behind.

    write_text_atomic(path, text)    # the text lands whole, or the old file (if any) stays as it was
    write_json(path, obj)            # the same for a JSON document (indented, one trailing newline)

The text goes to a temporary file in the same folder, is flushed to disk, and then replaces `path` in one
rename (os.replace, atomic on POSIX and Windows). Missing parent folders are created. Checkpoints, which
are folders of several files, have their own scheme (checkpoint.py).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """`obj` as indented JSON, written atomically (a value JSON cannot hold raises before anything is written)."""
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
