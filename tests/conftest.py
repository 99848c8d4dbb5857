"""Test-wide settings: one BLAS/OpenMP thread per process.

The suite's arrays are small, where extra BLAS threads only add synchronisation, and on a busy 2-core machine
(CI) idle OpenBLAS threads spin against the test's own work and against the servers and subprocesses some
tests start. The variables are set before NumPy or torch is imported, so they also reach every subprocess.
"""
import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
