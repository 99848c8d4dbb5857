"""Keep glibc's malloc from handing every large array back to the kernel and faulting it in again.

A layer's forward allocates arrays of a few hundred kB to a few MB (the input projection, the gates, the
states, the packed weights) and frees them at the end. glibc serves blocks from 128 kB up with mmap, and
although it raises that threshold as such blocks are freed, it also trims the heap's top whenever more than
twice the threshold is free there. So a loop of forwards keeps returning its memory to the kernel and
faulting it back in, page by page: a batch-1 LSTM forward at (time 100, input 64, hidden 128) spends about
40% of its time in page faults (0.85 → 0.51 ms once they are gone).

`tune()` (called when rnnkit is imported) sets the two thresholds where glibc's own adjustment ends up in a
long run that frees large arrays: mmap only from 32 MiB (glibc's maximum for the dynamic threshold on 64-bit)
and trim only when 64 MiB are free at the top. The cost: a process keeps up to 64 MiB of freed memory for
reuse instead of returning it.

It acts only when all of these hold:
  * the C library is glibc (found through ctypes);
  * RNNKIT_MALLOC_TUNING is not 0/false/no/off;
  * the user has not tuned malloc already (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_,
    MALLOC_MMAP_MAX_, or glibc.malloc in GLIBC_TUNABLES).
"""
from __future__ import annotations

import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _glibc_mallopt():
    """glibc's mallopt, or None where the C library is another (musl, macOS, Windows)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def tune(environ=os.environ, mallopt=None) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); returns whether they were set."""
    if environ.get("RNNKIT_MALLOC_TUNING", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(name in environ for name in _USER_SETTINGS) or "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = mallopt or _glibc_mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; the mmap threshold first, since setting either fixes both
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
