"""Process tuning for rnnkit programs: `tune_process()`, called first thing, before NumPy is imported.

`import rnnkit` changes nothing in its host process. The `rnnkit` command, the server's worker processes, the
benchmarks and examples/airline_sentiment.py call `tune_process()`; a program of your own opts in with

    import rnnkit.runtime
    rnnkit.runtime.tune_process()   # before anything imports NumPy
    import numpy as np

It applies three settings, each only under the conditions given, and never over one of the user's own:

OpenBLAS kernels on AMD Zen 4 (`choose_coretype`). OpenBLAS picks its kernels once, when it loads, from the
CPU it sees; on Zen 4 (family 25 with AVX-512) it takes its 512-bit SkylakeX kernels, which Zen 4 runs as
two 256-bit halves, and its AVX2 ("Haswell") kernels are faster there. Measured on a 2-core EPYC (Zen 4),
float32, 2 threads: (64, 512) @ (512, 2048) 0.85 → 0.70 ms, (32, 256) @ (256, 1024) 0.144 → 0.115 ms,
(6400, 256) @ (256, 2048) 34.8 → 32.1 ms. Sets OPENBLAS_CORETYPE=Haswell only if NumPy is not imported yet
(afterwards the choice is made), OPENBLAS_CORETYPE is unset (set it, e.g. to SkylakeX, to keep OpenBLAS's
default) and /proc/cpuinfo names a Zen 4. Results differ from the default kernels only in float rounding.

OpenBLAS's idle threads (`choose_thread_timeout`). After each multi-threaded call OpenBLAS's threads spin
for 2^28 cycles (about 80 ms) before they sleep; one spinning on the core of a scratch-LSTM thread
(scratch/threads.py) halves that thread's speed: a training step of a 2×256 LSTM language model took
145-157 ms instead of 88-92 ms. Sets OPENBLAS_THREAD_TIMEOUT=20, 2^20 cycles (about 0.3-0.4 ms), only if
NumPy is not imported yet and neither OPENBLAS_THREAD_TIMEOUT nor GOTO_THREAD_TIMEOUT is set: long enough
that the GRU's and the RNN's per-step products in their backward, well under 0.3 ms apart, still find the
threads awake, short enough that they sleep soon after a layer's weight-gradient products, before its next
forward's threads start. At 22 (about 1.6 ms, the setting before) a small GRU or RNN trained at 0.6-0.7 of
its speed on the Xeon machine (fwd+bwd, T 64, input 64: GRU hidden 128 batch 8 3.85 → 2.70 ms, hidden 256
batch 2 4.0 → 2.9; RNN hidden 256 batch 4 2.65 → 1.55, batch 16 5.4 → 4.3), the larger ones within noise.

glibc's malloc (`tune_malloc`). glibc serves blocks from 128 kB up with mmap and trims the heap's top when
more than twice its threshold is free there, so a loop of forwards, each allocating and freeing arrays of a
few hundred kB to a few MB, keeps returning memory to the kernel and faulting it back in page by page: a
batch-1 LSTM forward at (time 100, input 64, hidden 128) spent about 40% of its time in page faults
(0.85 → 0.51 ms once they were gone). Sets mmap only from 32 MiB (glibc's maximum for its dynamic
threshold on 64-bit) and trim only when 64 MiB are free at the top; a process then keeps up to 64 MiB of
freed memory for reuse. Only on glibc, unless RNNKIT_MALLOC_TUNING is 0/false/no/off, and unless the user
tuned malloc already (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_, or
glibc.malloc in GLIBC_TUNABLES). Unlike the two variables, this works at any time, NumPy loaded or not.

The two variables are set in os.environ, so child processes inherit them (and compute with the same
kernels, to the bit); the malloc thresholds belong to this process only.
"""
from __future__ import annotations

import os
import sys

CORETYPE = "Haswell"
ZEN4_FAMILY = 25
THREAD_TIMEOUT = "20"  # OpenBLAS's idle threads spin 2^20 cycles, then sleep

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                         "MALLOC_MMAP_MAX_")

_tuned: dict | None = None  # what the first tune_process() did


def tune_process() -> dict:
    """Apply rnnkit's process tuning (see the module docstring) and return what was applied.

    The result maps each setting applied to its value: OPENBLAS_CORETYPE, OPENBLAS_THREAD_TIMEOUT (set in
    os.environ), M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (bytes, through mallopt); {} when nothing was.
    Idempotent: later calls change nothing and return the first call's record.
    """
    global _tuned
    if _tuned is None:
        applied: dict = {}
        coretype = choose_coretype()
        if coretype is not None:
            applied["OPENBLAS_CORETYPE"] = coretype
        timeout = choose_thread_timeout()
        if timeout is not None:
            applied["OPENBLAS_THREAD_TIMEOUT"] = timeout
        if tune_malloc():
            applied.update(M_MMAP_THRESHOLD=MMAP_THRESHOLD, M_TRIM_THRESHOLD=TRIM_THRESHOLD)
        _tuned = applied
    return dict(_tuned)


# ------------------------------------------------------------------------------------------- OpenBLAS


def is_zen4(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo text describes an AMD Zen 4 CPU (family 25 with avx512f)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == str(ZEN4_FAMILY)
            and "avx512f" in fields.get("flags", "").split())


def choose_coretype(environ=os.environ, modules=sys.modules, cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """Set OPENBLAS_CORETYPE=Haswell on Zen 4 if nothing has decided yet; returns the value set, else None."""
    if "numpy" in modules or environ.get("OPENBLAS_CORETYPE"):
        return None
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            cpuinfo = f.read(1 << 16)
    except OSError:  # not Linux, or no /proc
        return None
    if not is_zen4(cpuinfo):
        return None
    environ["OPENBLAS_CORETYPE"] = CORETYPE
    return CORETYPE


def choose_thread_timeout(environ=os.environ, modules=sys.modules) -> str | None:
    """Set OPENBLAS_THREAD_TIMEOUT (THREAD_TIMEOUT) if NumPy is not loaded yet and no timeout is set; the value
    set, else None."""
    if "numpy" in modules or environ.get("OPENBLAS_THREAD_TIMEOUT") or environ.get("GOTO_THREAD_TIMEOUT"):
        return None
    environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    return THREAD_TIMEOUT


# ---------------------------------------------------------------------------------------- glibc malloc


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


def tune_malloc(environ=os.environ, mallopt=None) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); returns whether they were set."""
    if environ.get("RNNKIT_MALLOC_TUNING", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    if (any(name in environ for name in _USER_MALLOC_SETTINGS)
            or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")):
        return False
    mallopt = mallopt or _glibc_mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; the mmap threshold first, since setting either fixes both
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
