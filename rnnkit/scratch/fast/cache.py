"""Numba's on-disk cache of this package's kernels, kept in step with their sources.

Why. Numba checks a cached function against its own source file only. A function whose callee lives in
another module (threaded_gru's backward calls threaded_rnn's product, which calls gemm.py's kernels) loads
its old machine code after that callee changed, the old callee compiled into it. Seen in development: the
rows of the RNN's and the GRU's backward were split in a new way and gemm.py's product changed with it; the
GRU's backward, its own file untouched, ran the old product with the new split and wrote past its array.
A user who edits a kernel (a learner reading them, say) would meet the same. So the cached functions of
this package are dropped, all together, whenever the digest of its sources differs from the one stamped
beside them. An installed package's files do not change; there the check costs one read of ~0.3 MB.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

SOURCES = Path(__file__).resolve().parent
STAMP = "rnnkit-sources.sha256"


def sources_digest(folder: Path = SOURCES) -> str:
    """SHA-256 over the names and contents of the folder's Python files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def refresh(cache_folder: Path, digest: str, modules: set[str]) -> bool:
    """Drop the cached functions of `modules` (numba's index and data files, named MODULE.function-...) from
    cache_folder unless its stamp is `digest`, then stamp it (written atomically). Returns whether it
    dropped them. A folder that cannot be read or written is left as it is (numba then compiles in memory,
    or reads what it can)."""
    stamp = cache_folder / STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    try:
        for path in cache_folder.glob("*.nb[ic]"):
            if path.name.split(".", 1)[0] in modules:
                path.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache_folder, prefix=STAMP, delete=False) as handle:
            handle.write(digest)
        os.replace(handle.name, stamp)
    except OSError:
        return False
    return True


def package_modules(folder: Path = SOURCES) -> set[str]:
    """The names of the folder's modules (the first part of their cache files' names)."""
    return {path.stem for path in folder.glob("*.py")}
