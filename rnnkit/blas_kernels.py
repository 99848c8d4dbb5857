"""Pick OpenBLAS's faster GEMM kernels on AMD Zen 4, and a short spin for its idle threads, before NumPy
loads OpenBLAS.

OpenBLAS chooses its kernels once, when the library loads, from the CPU it sees. On AMD Zen 4 (family 25
with AVX-512) it takes its SkylakeX kernels, which use 512-bit vectors; Zen 4 runs those as two 256-bit
halves, and OpenBLAS's AVX2 ("Haswell") kernels are faster there. Measured on a 2-core EPYC (Zen 4),
float32, 2 threads: the LSTM's per-step product (64, 512) @ (512, 2048) 0.85 → 0.70 ms, (32, 256) @
(256, 1024) 0.144 → 0.115 ms, and a (6400, 256) @ (256, 2048) input projection 34.8 → 32.1 ms.

`rnnkit` calls `choose()` on import, and it acts only when all of these hold:
  * NumPy is not imported yet (afterwards the choice is made and cannot change);
  * OPENBLAS_CORETYPE is not set (a value of the user's own always wins; set it to keep OpenBLAS's
    default, e.g. OPENBLAS_CORETYPE=SkylakeX);
  * /proc/cpuinfo names an AMD CPU of family 25 with AVX-512, i.e. Zen 4.
It then sets OPENBLAS_CORETYPE=Haswell in os.environ, which child processes inherit. Results differ from
the default kernels only in float rounding (another summation order).

Thread timeout. After each multi-threaded call, OpenBLAS's worker threads spin for 2^28 cycles (about
80 ms) before they sleep. The scratch LSTM runs its own threads (scratch/threads.py), and a spinning
OpenBLAS thread on the same core halves the speed of the part running there: a training step of a 2×256
LSTM language model took 145-157 ms instead of 88-92 ms, the decoder's products keeping OpenBLAS's thread
awake throughout. `choose_thread_timeout()` (also on import, under the same two conditions: NumPy not
imported yet, and neither OPENBLAS_THREAD_TIMEOUT nor GOTO_THREAD_TIMEOUT set) sets
OPENBLAS_THREAD_TIMEOUT=22, 2^22 cycles (about 1.3 ms): long enough that the GRU's and the RNN's per-step
products, 0.1-0.3 ms apart, still find OpenBLAS's threads awake (their speed did not move), short enough
that they are asleep soon after a model's other products.
"""
from __future__ import annotations

import os
import sys

CORETYPE = "Haswell"
ZEN4_FAMILY = 25
THREAD_TIMEOUT = "22"  # OpenBLAS's idle threads spin 2^22 cycles, then sleep


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


def choose(environ=os.environ, modules=sys.modules, cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
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
    """Set OPENBLAS_THREAD_TIMEOUT=22 if NumPy is not loaded yet and no timeout is set; the value set, else None."""
    if "numpy" in modules or environ.get("OPENBLAS_THREAD_TIMEOUT") or environ.get("GOTO_THREAD_TIMEOUT"):
        return None
    environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    return THREAD_TIMEOUT
