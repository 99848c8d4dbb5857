"""Test-wide settings: one BLAS/OpenMP thread per process.

The suite's arrays are small, where extra BLAS threads only add synchronisation, and on a busy 2-core machine
(CI) idle OpenBLAS threads spin against the test's own work and against the servers and subprocesses some
tests start. The variables are set before NumPy or torch is imported, so they also reach every subprocess.

Then, before anything loads NumPy, the process is tuned as the `rnnkit` command tunes its own
(rnnkit.runtime.tune_process(); `import rnnkit` alone changes nothing): it may choose OpenBLAS's kernels,
and the variables it sets reach the servers and CLIs the tests start, so that they compute with the same
kernels as the test process, to the bit.
"""
import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import rnnkit.runtime  # noqa: E402  (after the thread variables, before NumPy)

rnnkit.runtime.tune_process()

# In CI (CI set, as .ci/run's callers set it) hypothesis draws the same examples on every run: a stop's
# verdict does not depend on the draw, and a failure there reproduces anywhere with CI=true. Elsewhere it
# explores anew each run (and replays what failed before, from .hypothesis).
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")
