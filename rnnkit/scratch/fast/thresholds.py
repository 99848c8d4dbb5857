"""Where the selector switches paths: the one place to set them, from the sweep benchmark's measurements
(benchmarks/engine_speed.py; benchmarks/README.md has the tables)."""

# The LSTM runs its whole time loop in one compiled call (numba path) up to this batch size, and on the
# threaded path above it.
SMALL_BATCH = 4

# The threaded LSTM gives each thread at least this many hidden units: with fewer, the threads' meeting at
# every step costs more than the split gains.
MIN_UNITS_PER_PART = 32
