"""Where the selector switches paths: the one place to set them, from the sweep benchmark's measurements
(benchmarks/engine_speed.py; benchmarks/README.md has the tables)."""

# The LSTM takes the threaded path when a step has enough work to share, batch > 1 and batch·hidden >
# LOOP_WORK; below, the numba path, which runs the time loop in one compiled call up to SMALL_BATCH rows and
# one BLAS product per step above. Measured 2026-12-03 (2 cores, AVX2): at hidden 64 the loop wins to
# batch 5, at 128 to batch 2, at 256 and 512 only at batch 1 (benchmarks/README.md, engine sweep).
LOOP_WORK = 320
SMALL_BATCH = 4

# The threaded LSTM gives each thread at least this many hidden units: with fewer, the threads' meeting at
# every step costs more than the split gains.
MIN_UNITS_PER_PART = 32

# The threaded LSTM's products run on the row-vector GEMM kernel up to this batch size (gemm.gemm_rows: no
# lane idles on a missing column), on the column kernel above it (gemm.gemm_panels).
ROW_KERNEL_BATCH = 8  # measured: 1.3-1.6x faster than the column kernel at batch 5-8, hidden 128-512
