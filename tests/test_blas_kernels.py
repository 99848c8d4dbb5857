"""rnnkit.runtime picks OpenBLAS's AVX2 kernels on AMD Zen 4, its AVX-512 ones on Zen 5, and a short thread
timeout, and only when nothing else has decided."""
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
    assert not runtime.is_zen4(ZEN5)
    assert not runtime.is_zen4("")


def test_the_kernels_asked_for_each_cpu():
    assert runtime.coretype_for(ZEN4) == "Haswell"
    assert runtime.coretype_for(ZEN5) == "SkylakeX"  # full-width AVX-512; OpenBLAS 0.3.31 takes Haswell there
    assert runtime.coretype_for(ZEN5.replace("cpu family\t: 26", "cpu family\t: 27")) == "SkylakeX"
    assert runtime.coretype_for(ZEN5.replace(" avx512f avx512dq avx512bw avx512vl", "")) is None
    assert runtime.coretype_for(ZEN3) is None and runtime.coretype_for(INTEL) is None
    assert runtime.coretype_for(ZEN4.replace("cpu family\t: 25", "cpu family\t: x")) is None
    assert runtime.coretype_for("") is None


def _choose(tmp_path: Path, cpuinfo: str, environ=None, modules=None):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    environ = {} if environ is None else environ
    return runtime.choose_coretype(environ, {} if modules is None else modules, str(path)), environ


def test_sets_haswell_on_zen4(tmp_path):
    chosen, environ = _choose(tmp_path, ZEN4)
    assert chosen == "Haswell" and environ == {"OPENBLAS_CORETYPE": "Haswell"}


def test_sets_skylakex_on_zen5(tmp_path):
    chosen, environ = _choose(tmp_path, ZEN5)
    assert chosen == "SkylakeX" and environ == {"OPENBLAS_CORETYPE": "SkylakeX"}


def test_leaves_everything_alone_otherwise(tmp_path):
    assert _choose(tmp_path, INTEL) == (None, {})
    assert _choose(tmp_path, ZEN4, environ={"OPENBLAS_CORETYPE": "SkylakeX"}) == (
        None, {"OPENBLAS_CORETYPE": "SkylakeX"})
    assert _choose(tmp_path, ZEN4, modules={"numpy": object()}) == (None, {})  # too late to matter
    assert runtime.choose_coretype({}, {}, str(tmp_path / "missing")) is None


def coretype_here() -> str:
    """What tune_process should set on this machine, read without runtime (the code under test): the first
    processor's vendor, family and AVX-512 flag, by regular expressions."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return "unset"
    family = re.search(r"^cpu family\s*:\s*(\d+)\s*$", first, re.M)
    if not (re.search(r"^vendor_id\s*:\s*AuthenticAMD\s*$", first, re.M) and family
            and re.search(r"^flags\s*:.*\bavx512f\b", first, re.M)):
        return "unset"
    return {25: "Haswell"}.get(int(family.group(1)), "SkylakeX" if int(family.group(1)) >= 26 else "unset")


def test_tune_process_sets_it_in_a_fresh_process_unless_the_user_did():
    code = TUNE + "print(os.environ.get('OPENBLAS_CORETYPE', 'unset'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == coretype_here()
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
