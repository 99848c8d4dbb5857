"""Test-wide settings: one BLAS/OpenMP thread per process.

The suite's arrays are small, where extra BLAS threads only add synchronisation, and on a busy 2-core machine
(CI) idle OpenBLAS threads spin against the test's own work and against the servers and subprocesses some
tests start. The variables are set before NumPy or torch is imported, so they also reach every subprocess.

Then rnnkit is imported before anything loads NumPy, as in any rnnkit program: it may choose OpenBLAS's
kernels (rnnkit/blas_kernels.py), and the variable it sets reaches the servers and CLIs the tests start, so
that they compute with the same kernels as the test process, to the bit.
"""
import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import rnnkit  # noqa: E402,F401  (after the thread variables, before NumPy)
