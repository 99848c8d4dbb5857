"""rnnkit.runtime tunes glibc's malloc so that large arrays are reused, not faulted in anew on every call."""
import os
import subprocess
import sys

import pytest

from rnnkit import runtime


def _recorder(result=1):
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return result
    return mallopt, calls


def test_sets_both_thresholds():
    mallopt, calls = _recorder()
    assert runtime.tune_malloc({}, mallopt)
    assert calls == [(runtime.M_MMAP_THRESHOLD, 32 << 20), (runtime.M_TRIM_THRESHOLD, 64 << 20)]


@pytest.mark.parametrize("environ", [
    {"RNNKIT_MALLOC_TUNING": "0"}, {"RNNKIT_MALLOC_TUNING": "off"}, {"MALLOC_TRIM_THRESHOLD_": "1000"},
    {"MALLOC_MMAP_THRESHOLD_": "1"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}])
def test_leaves_malloc_alone_when_switched_off_or_tuned_by_the_user(environ):
    mallopt, calls = _recorder()
    assert not runtime.tune_malloc(environ, mallopt)
    assert calls == []


def test_reports_a_refused_setting():
    mallopt, _ = _recorder(result=0)
    assert not runtime.tune_malloc({}, mallopt)


# Eight 256 kB arrays made and freed per call: glibc's default trims the freed 2 MB each time (above twice
# its raised threshold), so every call faults ~512 pages in again; tuned, the heap keeps them.
FAULTS = """
import resource, numpy as np, rnnkit.runtime
rnnkit.runtime.tune_process()
def call():
    arrays = [np.ones(65536, dtype=np.float32) for _ in range(8)]
    del arrays
for _ in range(5):
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    call()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_call(**env) -> float:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "RNNKIT_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", FAULTS], env={**environ, **env}, capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


@pytest.mark.skipif(runtime._glibc_mallopt() is None, reason="the C library is not glibc")
def test_repeated_large_arrays_stop_faulting_in_once_tuned():
    assert _faults_per_call(RNNKIT_MALLOC_TUNING="0") > 256
    assert _faults_per_call() < 16
