"""`import rnnkit` changes nothing in its host process; rnnkit.runtime.tune_process() tunes it when asked,
and the `rnnkit` command (all its entry points) and the server's workers ask, before NumPy loads."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rnnkit import runtime
from test_allocator import FAULTS as TUNED_FAULTS

ROOT = Path(__file__).resolve().parents[1]
# What tune_process() may set; a child started without them shows whether anything sets them.
TUNED_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")


def _untuned_env(**extra) -> dict:
    """This process's environment less the variables the tuning sets (conftest set them in this process)."""
    return {**{k: v for k, v in os.environ.items() if k not in TUNED_VARIABLES}, **extra}


def _run(code: str, env=None) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=_untuned_env() if env is None else env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


IMPORTS = """
import json, os, sys
before = dict(os.environ)
assert "OPENBLAS_THREAD_TIMEOUT" not in before  # else a tuning import would go unnoticed
import rnnkit, rnnkit.engines, rnnkit.scratch.models, rnnkit.tasks.classify
assert "numpy" in sys.modules  # the imports went as far as NumPy, where the tuning used to act
after = dict(os.environ)
print(json.dumps({"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
                  "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k])}))
"""


def test_importing_rnnkit_leaves_the_environment_alone():
    assert json.loads(_run(IMPORTS)) == {"added": [], "removed": [], "changed": []}


# Eight 256 kB arrays made and freed per call: with glibc's default thresholds every call faults pages in
# again (tests/test_allocator.py: 160-512 a call, measured, as glibc's adaptive thresholds and the imports'
# own allocations left the heap); had an import tuned malloc, it would fault in almost none (0 measured).
FAULTS = TUNED_FAULTS.replace("import resource, numpy as np, rnnkit.runtime\nrnnkit.runtime.tune_process()\n",
                              "import resource, numpy as np, rnnkit, rnnkit.engines, rnnkit.scratch.models, "
                              "rnnkit.tasks.classify\n")
assert FAULTS != TUNED_FAULTS


@pytest.mark.skipif(runtime._glibc_mallopt() is None, reason="the C library is not glibc")
def test_importing_rnnkit_leaves_malloc_alone():
    environ = {k: v for k, v in _untuned_env().items() if not k.startswith(("MALLOC_", "RNNKIT_MALLOC"))}
    assert float(_run(FAULTS, environ)) > 32


TUNE_TWICE = """
import json, os, rnnkit.runtime
first = rnnkit.runtime.tune_process()
environ = dict(os.environ)
second = rnnkit.runtime.tune_process()
print(json.dumps({"first": first, "second": second, "timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
                  "unchanged": environ == dict(os.environ)}))
"""


def test_tune_process_sets_the_thread_timeout_and_reports_what_it_did_once():
    result = json.loads(_run(TUNE_TWICE))
    assert result["timeout"] == "20"
    assert result["first"]["OPENBLAS_THREAD_TIMEOUT"] == "20"
    assert result["second"] == result["first"] and result["unchanged"]  # idempotent
    if runtime._glibc_mallopt() is not None:
        assert result["first"]["M_MMAP_THRESHOLD"] == 32 << 20 and result["first"]["M_TRIM_THRESHOLD"] == 64 << 20
    off = json.loads(_run(TUNE_TWICE, _untuned_env(RNNKIT_MALLOC_TUNING="0", OPENBLAS_THREAD_TIMEOUT="28")))
    assert off["timeout"] == "28" and "OPENBLAS_THREAD_TIMEOUT" not in off["first"]
    assert "M_MMAP_THRESHOLD" not in off["first"]


# The command's entry points, run as Python runs them; OPENBLAS_THREAD_TIMEOUT=20 afterwards shows that the
# tuning ran, and ran before NumPy was loaded (after it, the variable is left unset).
ENTRY = """
import os, runpy, sys
sys.argv = ["rnnkit", "--version"]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset"))
"""


@pytest.mark.parametrize("module", ["rnnkit", "rnnkit.cli"])
def test_python_dash_m_tunes_before_numpy(module):
    assert _run(ENTRY.format(module=module)) == "20"


def test_the_rnnkit_script_tunes_before_numpy():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rnnkit"] == "rnnkit.__main__:main"
    code = ("import os\nfrom rnnkit.__main__ import main\nassert main(['--version']) == 0\n"
            "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset'))")
    assert _run(code) == "20"


def test_a_server_worker_tunes_its_process_first(monkeypatch):
    pytest.importorskip("fastapi")
    from rnnkit.serve import runner

    class Tuned(Exception):
        pass

    def tune_process():
        raise Tuned  # before the app (and its model) is built

    monkeypatch.setattr(runtime, "tune_process", tune_process)
    with pytest.raises(Tuned):
        runner.app_from_env()
