"""Where the selector switches paths: the one place to set them, from the sweep benchmark's measurements
(benchmarks/engine_speed.py; benchmarks/README.md has the tables)."""

# The numba path runs a layer's whole time loop in one compiled call, products included, up to SMALL_BATCH
# rows, and one BLAS product per step above (the RNN: the NumPy path above). Measured 2026-12-03 (2 cores,
# AVX2), GRU and RNN forward, hidden 64-512: the loop is 1.1-3x faster up to batch 6, slower from 8 on.
SMALL_BATCH = 6

# The LSTM takes the threaded path when a step has enough work to share, batch > 1 and batch·hidden >
# LOOP_WORK; below, the numba path. Measured the same day: at hidden 64 the loop wins to batch 5, at 128 to
# batch 2, at 256 and 512 only at batch 1 (benchmarks/README.md, engine sweep).
LOOP_WORK = 320

# The threaded LSTM gives each thread at least this many hidden units: with fewer, the threads' meeting at
# every step costs more than the split gains.
MIN_UNITS_PER_PART = 32

# The threaded LSTM's products run on the row-vector GEMM kernel up to this batch size (gemm.gemm_rows: no
# lane idles on a missing column), on the column kernel above it (gemm.gemm_panels).
ROW_KERNEL_BATCH = 12  # measured: 1.2-1.6x faster than the column kernel at batch 5-12, equal at 16

# Up to this batch size the threaded LSTM projects its inputs for all steps before its loop, so that each
# step's product streams only W_hh (threaded_lstm.split_input); above, the product takes [W_hh | W_ih | b].
SPLIT_INPUT_BATCH = 12
