"""rnnkit.runtime picks OpenBLAS's AVX2 kernels on AMD Zen 4 and a short thread timeout, and only when
nothing else has decided."""
import os
import re
import subprocess
import sys
from pathlib import Path

from rnnkit import runtime

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl

processor\t: 1
vendor_id\t: AuthenticAMD
"""
ZEN3 = ZEN4.replace(" avx512f avx512dq avx512bw avx512vl", "")
INTEL = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("cpu family\t: 25", "cpu family\t: 6")
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26")
TUNE = "import os, rnnkit.runtime; rnnkit.runtime.tune_process(); "  # what an rnnkit program runs first


def test_only_zen4_is_recognised():
    assert runtime.is_zen4(ZEN4)
    assert not runtime.is_zen4(ZEN3)  # no AVX-512: OpenBLAS already takes its AVX2 kernels
    assert not runtime.is_zen4(INTEL)
    assert not runtime.is_zen4(ZEN5)  # full-width AVX-512: not measured, left alone
    assert not runtime.is_zen4("")


def _choose(tmp_path: Path, cpuinfo: str, environ=None, modules=None):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    environ = {} if environ is None else environ
    return runtime.choose_coretype(environ, {} if modules is None else modules, str(path)), environ


def test_sets_haswell_on_zen4(tmp_path):
    chosen, environ = _choose(tmp_path, ZEN4)
    assert chosen == "Haswell" and environ == {"OPENBLAS_CORETYPE": "Haswell"}


def test_leaves_everything_alone_otherwise(tmp_path):
    assert _choose(tmp_path, INTEL) == (None, {})
    assert _choose(tmp_path, ZEN4, environ={"OPENBLAS_CORETYPE": "SkylakeX"}) == (
        None, {"OPENBLAS_CORETYPE": "SkylakeX"})
    assert _choose(tmp_path, ZEN4, modules={"numpy": object()}) == (None, {})  # too late to matter
    assert runtime.choose_coretype({}, {}, str(tmp_path / "missing")) is None


def zen4_here() -> bool:
    """Whether this machine is a Zen 4, read without runtime.is_zen4 (the function under test): the first
    processor's vendor, family and AVX-512 flag, by regular expressions."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return False
    return bool(re.search(r"^vendor_id\s*:\s*AuthenticAMD\s*$", first, re.M)
                and re.search(r"^cpu family\s*:\s*25\s*$", first, re.M)
                and re.search(r"^flags\s*:.*\bavx512f\b", first, re.M))


def test_tune_process_sets_it_in_a_fresh_process_unless_the_user_did():
    code = TUNE + "print(os.environ.get('OPENBLAS_CORETYPE', 'unset'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("Haswell" if zen4_here() else "unset")
    env["OPENBLAS_CORETYPE"] = "Prescott"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Prescott"


def test_thread_timeout_is_set_only_before_numpy_and_only_if_unset():
    environ = {}
    assert runtime.choose_thread_timeout(environ, {}) == "20" and environ == {"OPENBLAS_THREAD_TIMEOUT": "20"}
    for own in ({"OPENBLAS_THREAD_TIMEOUT": "28"}, {"GOTO_THREAD_TIMEOUT": "10"}):
        environ = dict(own)
        assert runtime.choose_thread_timeout(environ, {}) is None and environ == own
    environ = {}
    assert runtime.choose_thread_timeout(environ, {"numpy": object()}) is None and environ == {}


def test_tune_process_sets_the_thread_timeout_in_a_fresh_process_unless_the_user_did():
    code = TUNE + "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "20"
    env["OPENBLAS_THREAD_TIMEOUT"] = "28"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "28"
    code = "import numpy; " + TUNE + "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset'))"
    del env["OPENBLAS_THREAD_TIMEOUT"]
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "unset"  # NumPy first: OpenBLAS has read its settings already
