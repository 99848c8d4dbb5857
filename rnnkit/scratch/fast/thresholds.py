"""Where the selector switches paths: the one place to set them, from the sweep benchmark's measurements
(benchmarks/engine_speed.py; benchmarks/README.md has the tables)."""
from pathlib import Path

# The numba path runs a layer's whole time loop in one compiled call, products included, up to SMALL_BATCH
# rows, and one BLAS product per step above (the RNN: the NumPy path above). Measured 2026-12-03 (2 cores,
# AVX2), GRU and RNN forward, hidden 64-512: the loop is 1.1-3x faster up to batch 6, slower from 8 on.
SMALL_BATCH = 6

# The LSTM takes the threaded path when a step has enough work to share: hidden >= LOOP_HIDDEN (its W_hh
# streams faster through two cores than one, even at batch 1) or batch·hidden > LOOP_WORK; below, the numba
# path's one-call loop. Measured 2026-12-03 after the threaded path's packing and input split (fwd+bwd and
# inference, in-process alternation of the two paths): the loop wins at hidden 64 to batch 6 (equal there),
# at 128 to batch 3; the threaded path wins from batch 1 at hidden 256 (fwd+bwd 5.5 against 9.4 ms,
# inference 2.2 against 3.2) and 512 (24 against 29 ms, 8.4 against 14.1).
# Re-measured 2026-12-03 after gemm_rows's balanced column blocks (alternating processes against torch,
# fwd+bwd and inference ms): the threaded path (one part) now wins at hidden 128 from batch 1 (batch 1 1.98
# against 2.49, inference 0.74 against 0.97; batch 2 2.61 against 3.27) and at hidden 64 from batch 4
# (batch 5 1.78 against 2.07); the two tie at hidden 64 batch 2-3, and the loop wins at batch 1 (0.82
# against 0.95). Hence LOOP_WORK 96: the loop at hidden 64 batch 1 only.
# Re-measured 2026-12-04 afternoon on the Xeon (AVX-512; in one process, 3 alternating rounds, ms, loop /
# threaded, fwd+bwd · inference): hidden 8 batch 1 0.21 / 0.28 · 0.07 / 0.10 (the loop wins); hidden 16 batch
# 2 0.34 / 0.32 · 0.11 / 0.12 (a tie); hidden 16 batch 4 0.50 / 0.36 · 0.15 / 0.14, hidden 32 batch 1 0.44 /
# 0.34 · 0.13 / 0.11, hidden 64 batch 1 0.78 / 0.56 · 0.22 / 0.18 (the one-part threaded path wins). Hence
# LOOP_WORK 16: the loop up to batch·hidden 16.
LOOP_HIDDEN = 256
LOOP_WORK = 16

# The threaded LSTM gives each thread at least this many hidden units: with fewer, the threads' meeting at
# every step costs more than the split gains.
MIN_UNITS_PER_PART = 32

# The threaded GRU and RNN give each thread at least this many gate rows (G·H / parts): measured 2026-12-03
# (inference, T 64, 1 against 2 threads) the RNN at hidden 64 and 128 and the GRU at 64 ran 1.3-2x faster
# on one thread (a step's product then takes less than the meeting and the other half of h_t crossing
# between the cores), the RNN at 256 the same on both, the RNN at 512 and the GRU at 128 (batch 64) faster
# on two. (The LSTM's 32 units per part are 128 gate rows too.)
MIN_ROWS_PER_PART = 128
# From WIDE_STEP_BATCH columns on, MIN_ROWS_PER_PART_WIDE gate rows a part are enough. Measured 2026-12-05
# (Zen 5, 2 threads, T 64, in one process, 5 alternating rounds, two parts / one, inference · fwd+bwd): RNN
# input 64, hidden 150 batch 16 0.89 · 1.06, 64 0.82 · 0.92; hidden 200 batch 8 0.93 · 1.09, 16 0.79 · 0.95,
# 64 0.71 · 0.89; 250 batch 16 0.72 · 0.96, 64 0.61 · 0.85; input 300, hidden 150 batch 16 0.88 · 0.92, 64
# 0.87 · 0.93; hidden 200 batch 64 0.73 · 0.89; hidden 100 (50 rows a part) 0.93-1.00 · 0.92-1.10. GRU input
# 64, hidden 52 batch 8 1.13 · 1.23, 64 0.86 · 0.91; hidden 64 batch 8 1.26 · 1.17, 16 0.90 · 1.02, 32 0.82 ·
# 0.93, 64 0.81 · 0.93; hidden 80 batch 16 0.91 · 0.98, 64 0.75 · 0.91.
MIN_ROWS_PER_PART_WIDE = 75
WIDE_STEP_BATCH = 16
# Where the RNN's step keeps one part (too few rows to split the units), its columns run in groups, one a
# thread, each group at least RNN_COLUMN_GROUPS_MIN_COLUMNS wide (from 32 columns on at two threads)
# (threaded_rnn.column_groups). Measured 2026-12-05 (Zen 5, 2 threads, T 64, in one process, 5 alternating
# rounds, groups / one part, inference · fwd+bwd): input 64, hidden 32 batch 16 1.25 · 1.51, 64 0.79 · 0.94;
# hidden 64 batch 16 0.95 · 1.29, 32 0.75 · 1.02, 64 0.67 · 0.86; hidden 100 batch 16 0.76 · 1.09, 32 0.71 ·
# 0.99, 64 0.58 · 0.86; hidden 140 batch 64 0.59 · 0.87; input 300, hidden 48 batch 24 0.76 · 0.88, 40 0.71 ·
# 0.90, 64 0.65 · 0.83; hidden 100 batch 32 0.74 · 0.90, 64 0.62 · 0.80.
RNN_COLUMN_GROUPS_MIN_COLUMNS = 16
# Narrower groups, down to RNN_COLUMN_GROUPS_NARROW_COLUMNS columns, where a group's step still has
# RNN_COLUMN_GROUPS_MIN_WORK entries (its columns × gate rows) and the call RNN_COLUMN_GROUPS_NARROW_CALL_WORK
# multiply-adds (T·B·H·(H+1+I)): a step of 16-31 columns at hidden 100-149 otherwise ran on one thread (the
# drawn RNN 131 × 29, input 359, T 28 at 1.09 of PyTorch's inference). Measured 2026-12-07 (Zen 4, 2 threads,
# in one process, 4 alternating rounds, minima, groups / one part, inference · fwd+bwd): T 32, hidden 112-149
# batch 16-31 input 16-359 0.58-0.81 · 0.81-0.93, hidden 64-80 batch 24-31 0.59-0.88 · 0.83-1.04; T 6-12,
# hidden 104-149 batch 16-29, input 16-100, calls of 8-13 M multiply-adds 0.71-0.82 · 0.87-0.92, of 4-8 M
# 0.75-1.14 · 0.91-1.06, below 4 M 0.89-1.46 · 0.98-1.20 (T 2-4 up to 1.68 · 1.22: a second thread's start);
# where a group's step has fewer entries, 1.13-1.54 · 1.04-1.19 (hidden 48 batch 24-31, hidden 64 batch 16,
# hidden 90-96 batch 16-18).
RNN_COLUMN_GROUPS_NARROW_COLUMNS = 8
RNN_COLUMN_GROUPS_MIN_WORK = 1024
RNN_COLUMN_GROUPS_NARROW_CALL_WORK = 2**23
# The GRU's step in one part (fewer than 50 units from 16 columns) takes the same groups: before, it ran on one
# thread at any batch (the drawn GRU 33 × 115, input 282, T 13 at 1.04 of PyTorch's inference). And groups
# in place of one part only from RNN_COLUMN_GROUPS_CALL_WORK multiply-adds a call, for both cells: the second
# thread's start and each group's operands cost more than half a shorter call. Measured 2026-12-07 (Zen 4, 2
# threads, in one process, 4 alternating rounds, minima, groups / one part, inference · fwd+bwd): GRU, T 13-64,
# hidden 16-49, batch 16-256, input 1-300, calls of 9-100 M multiply-adds 0.54-0.87 · 0.79-0.95, 5-8 M
# 0.77-1.02 · 0.92-1.0; T 4-8, calls of 1-4 M 1.0-1.37 · 1.0-1.38; RNN, calls of 1-4.3 M (hidden 32-140, batch
# 32-160, T 2-12) 1.04-1.59 · 0.97-1.15, of 4.2-8.5 M 0.79-0.99 · 0.94-1.04.
RNN_COLUMN_GROUPS_CALL_WORK = 2**22

# ... and it runs on one thread (one part: no meeting per step, the selector's numba loop's arithmetic on
# gemm.py's kernels) while hidden < LOOP_HIDDEN and a step's product is small, batch·hidden² <= ONE_PART_WORK
# (it was batch·hidden <= 1024 up to 2026-12-03). Measured 2026-12-03,
# fwd+bwd ms, one part against two: hidden 64 batch 8 2.5 / 3.6, batch 16 4.2 / 6.8, batch 24 6.6 / 5.9;
# hidden 128 batch 4 3.9 / 4.9, batch 8 7.3 / 9.0, batch 16 13.4 / 11.8; hidden 256 batch 1 9.3 / 5.5.
# Raised on 2026-12-04, once the one part got a helper thread (threaded_lstm.py: the
# input projection beside the steps, the weight gradients beside the backward's steps). Measured in one
# process, alternating, on the busy 2-core machine (load 10-16; medians of 60-80 calls, ms, fwd+bwd ·
# inference, one part with its helper against two parts): hidden 64 batch 24 7.8 / 9.9 · 3.2 / 3.4,
# batch 48 11.9 / 15.8 · 5.5 / 5.3, batch 64 17.4 / 24.4 · 7.7 / 7.4; hidden 128 batch 16 11.6 / 14.7 ·
# 5.3 / 4.8, batch 32 23.4 / 25.7 · 9.5 / 9.4, batch 48 36.2 / 39.5 · 11.4 / 12.6, batch 64 49.4 / 48.3 ·
# 17.0 / 15.5. But the sweep (benchmarks/README.md, 2026-12-04) with the limit at 4096 had hidden 128 at
# batch 10-24 slower than two parts (inference 0.76-1.14 → 1.02-1.51 against torch), and main against
# this in one process, alternating call by call, hidden 128 batch 12 on one part: fwd+bwd 1.09, inference
# 1.16 of two parts' time, where hidden 64 batch 24 (the same batch·hidden) ran in 0.50 and 0.93: the
# forward's products on one core cost more than the helper saves once a step's product is big, and that
# grows with hidden²: one part up to 131072 = 64²·32 = 128²·8 (hidden 64 to batch 32, 100 to 13, 128 to 8).
# Re-measured 2026-12-04 afternoon on a Xeon (AVX-512, 2 cores, quiet), after the fused gate pass and the
# spinning workers, fwd+bwd through the layer, one part / two parts: hidden 64 batch 32 0.88, 40 0.85, 48
# 0.85, 56 0.89, 64 0.97; hidden 80 batch 30 0.89; 96 batch 20 0.86; hidden 128 batch 10-12 0.94, 16 1.02,
# 32 1.12, 64 1.14; hidden 256 batch 8 and 24 0.98-1.00 (not small: W_hh too big). So in training one part
# up to 229376 = 64²·56 = 128²·14; inference keeps 131072 (ONE_PART_INFERENCE_WORK: a forward alone has no
# weight gradients for the helper to sum beside the steps).
ONE_PART_WORK = 229376
# ... and while its helper thread's share, batch·hidden·(2·inputs + hidden) (the input projection and the
# weight gradients beside the steps), stays up to ONE_PART_HELPER_WORK = 12·128·(2·64 + 128): with a wide
# input the helper outlasts the steps. Measured 2026-12-06 (Xeon, fwd+bwd T 64, in-process alternation,
# one part / two parts): hidden 128 batch 12 inputs 32-128 1.13-1.15, 256 1.21, 512 1.33 (1.30 of PyTorch's
# time); 128 × 4 inputs 32-64 0.92-0.94, 128 1.00, 256 1.07, 512 1.17; 64 × 8 inputs 32-128 0.77-0.82, 256
# 0.93, 512 1.03; 180 × 2 inputs 64 0.98, 256 1.17.
ONE_PART_HELPER_WORK = 393216
ONE_PART_INFERENCE_WORK = 131072
# Since 2026-12-04 night training runs one part only up to SPLIT_INPUT_BATCH columns as well (above, column
# groups: COLUMN_GROUPS_WORK, further down). In inference one part only below hidden
# ONE_PART_INFERENCE_HIDDEN (and below COLUMN_GROUPS_WORK). Measured 2026-12-04 evening (Xeon, 2 threads,
# inference, one process, 50 alternating rounds, ms, one part / two parts): hidden 128 batch 2 0.49 / 0.41,
# batch 3 0.59 / 0.48, batch 4 0.56 / 0.51, batch 6 0.73 / 0.64 (batch 1 and 5 even; from batch 8 column
# groups win over both). Since 2026-12-05 a small training step's forward splits its units as inference's
# does (threaded_lstm._forward_group), its backward still on one part and its helper: on the Zen 5, fwd+bwd
# at hidden 128-224 batch 1-6 took 0.82-0.95 of the one-part forward's time.
ONE_PART_INFERENCE_HIDDEN = 128

# The threaded LSTM's products run on the row-vector GEMM kernel up to this batch size (gemm.gemm_rows: no
# lane idles on a missing column), on the column kernel above it (gemm.gemm_panels).
# measured: 1.2-1.6x faster than the column kernel at batch 5-12, equal at 16 (Xeon); on the Zen 5 (AMD EPYC
# family 26, 2026-12-04 night; in one process, 12-20 pairs, rows / columns) faster at 13-16 columns: LSTM
# fwd+bwd hidden 64 batch 15 0.93, 256 batch 14 0.88, batch 16 0.95, 512 batch 16 0.92 (hidden 128 batch 14
# 1.03), inference hidden 256 batch 14 0.82, 512 batch 16 0.88, and column groups of 16 (hidden 64-160 batch
# 32) 0.93-1.00 · 0.93-0.96; GRU and RNN inference at batch 14-16 0.84-0.92, training 0.94-1.00.
ROW_KERNEL_BATCH = 16
# Above it, the column kernel runs whole vectors of columns (16 float32 with AVX-512), so batch 20 pays for
# 32. The row kernel also runs where that padding adds more than this share of the batch: measured
# 2026-12-04 (Xeon, AVX-512, one core, (4H, K) @ (K, N), GFLOP/s of the useful columns, rows / columns):
# hidden 64 N 20 139 / 110, N 24 153 / 134, N 28 152 / 156, N 32 155 / 178, N 40 156 / 148, N 48 154 / 173;
# hidden 128 N 20 164 / 125, N 24 169 / 148, N 28 165 / 169, N 40 162 / 160; hidden 256 the same pattern.
# On the Zen 5 the row kernel wins at 28 columns as well (LSTM hidden 256 batch 28, time rows / columns:
# fwd+bwd 0.92, inference 0.93; GRU and RNN inference 0.89-0.92), hence 1.1 (28 → 32 adds 14 %).
# Lowered to 1.05 on 2026-12-05 (Zen 5, 2 threads; threshold variants in alternating processes, 5-6 rounds,
# time at 1.05 / at 1.1), where 30, 44-45 and 59-60 columns now take the row kernel: LSTM inference hidden
# 64 batch 60 0.90, 96×60 0.92, 224×30-60 0.95-0.96, 288×60 0.98, 320×59 0.96, 480×45-60 0.94-0.97; LSTM
# fwd+bwd 0.94-0.99 (hidden 128 batch 44, in column groups of 22 either way, 1.03); GRU and RNN inference
# 0.88-0.98 (GRU 224×30 and 128×44 1.01), fwd+bwd 0.96-1.01. At whole vectors the column kernel stays a
# little ahead (rows / columns, inference: 64 columns 0.99-1.03, 48 1.00, 32 1.03, 62 1.02).
ROW_KERNEL_PADDING = 1.05
# (the threaded GRU and RNN take the same switch: measured for them on the Zen 5 only, above)


# The GRU's and the RNN's forward take the threaded path (threaded_gru.py, threaded_rnn.py) when
# batch·hidden > THREADED_WORK; below, the numba loop (one core, no meeting per step). Measured 2026-12-03
# (2 cores, AVX2, inference, T 64, input 64): the threaded forward wins from batch·hidden 512 on (hidden 64
# from batch 8, 128 from 4, 256 from 2, and 512 at batch 1: each core then streams half of W_hh), ties at
# 384 (hidden 64, batch 6), loses below. So the RNN at hidden 64 goes from its loop (to batch 6) straight to
# the threaded path (from 7), not through the NumPy path.
THREADED_WORK = 384


# The same threshold holds in training (a backward follows, the NumPy path's whichever forward ran).
# Measured 2026-12-03 (2 cores, T 64, input 64, fwd+bwd, each side in a fresh tuned process, 2 alternating
# rounds, the numba-or-NumPy time / the threaded time): hidden 64 0.90-0.93 (GRU and RNN, batch 16 and 64),
# hidden 128 0.88-1.17, hidden 256 1.01-1.27 (batch 16-64), hidden 512 0.99-1.25 (batch 4-64): within the
# noise below 256, a gain above; and the RNN's grid row at hidden 64 had no jump with the threaded forward
# (0.23 → 0.28 from batch 12 to 16) where the NumPy steps' had one (0.27 → 0.52).


# The GRU's and the RNN's backward make h's gradient d_t W_hh as one matrix-vector product per row on W_hh^T
# for up to GEMV_ROWS rows when W_hh has GEMV_BYTES or more (numba_path.h_gradient_product), else
# one matrix product. OpenBLAS's matrix product packs all of W_hh on every call, which costs most where W_hh
# outgrows a core's L2 cache (2 MB on the Xeon). Measured 2026-12-04 (Xeon, 2 threads, T 64, input 64, fwd+bwd
# ms, one product / per row): GRU hidden 512 (W_hh 3 MB) batch 1 10.7-11.1 / 7.6-8.2, batch 2 17.9-18.1 /
# 10.0-10.8, batch 4 21.0-21.5 / 15.4-16.4, batch 6 26.5-28.0 / 20.5-21.5, batch 8 25.3-25.9 / 25.9-26.6;
# hidden 448 (2.4 MB) batch 2 11.8-12.2 / 7.2-7.9, batch 6 19.8 / 14.8-15.4; RNN hidden 1024 (4 MB) batch 2
# 24.4 / 15.0; but slower with W_hh up to 1.8 MB: GRU hidden 384 batch 2 6.1-6.5 / 10.7, hidden 320 batch 2
# 4.5-4.7 / 6.1-6.6, RNN hidden 512 (1 MB) batch 2 3.3-3.4 / 3.8-4.2.
# A call takes the per-row products only with at least GEMV_PRODUCTS_PER_MB of them for each MB of W_hh:
# transposing W_hh once costs about as much as that many rows' products gain (Xeon, 2026-12-06, µs: W_hh^T
# copied / one row's product on W_hh^T / on W_hh: (1536, 512) 657 / 17 / 75, (1024, 1024) 989 / 35 / 89,
# (2304, 768) 1345 / 117 / 160: the two break even at 11, 18 and 31 rows, about 4 a MB). A short call's few
# rows (T 4, batch 1: 4 of them) run on W_hh itself.
GEMV_ROWS = 6
GEMV_BYTES = 2 * 2**20
GEMV_PRODUCTS_PER_MB = 4

# From SPLIT_BACKWARD_BATCH rows and SPLIT_BACKWARD_WORK of batch·hidden on, the GRU's backward splits the
# batch's rows over the threads, each running all the steps of its rows (numba_path.backward_steps).
# Measured 2026-12-05 on the 2-core Xeon (Sapphire Rapids family, 2 MB L2 a core), fwd+bwd T=64 input 64,
# in-process alternation, split / one part: batch 24-128 at hidden 128-768 0.84-0.97 (hidden 320 batch 96
# 0.85, 256 x 128 0.89); at hidden 64 batch 32-48 1.14-1.27 and 64 x 64 0.97-1.04 (each thread's step too
# small for its per-step call overhead); batch 8-16 0.80-1.33 (hidden 512 x 8 1.16: each core streams all
# of W_hh for 4 rows).
SPLIT_BACKWARD_BATCH = 24
SPLIT_BACKWARD_WORK = 4096


# Re-measured 2026-12-05 on the Xeon after rows_mat ran 2-5x faster (kernels.py: the numba loop's product),
# in-process alternation, numba loop / threaded: inference, threaded from batch·hidden 160 on (RNN hidden 160
# batch 1 0.99, 200 x 1 0.89, 352 x 1 0.53, 96 x 2 0.94, 64 x 3 0.92, 32 x 6 0.79; GRU 160 x 1 0.90, 200 x 1
# 0.87, 64 x 3 0.88, 128 x 3 0.65, 32 x 6 0.72), the loop at 128 (RNN 128 x 1 1.14, GRU 1.00); in training
# the loop up to THREADED_WORK still (RNN 256 x 1 1.14, 352 x 1 0.96, 64 x 6 0.98; GRU 128 x 1 1.30, 128 x 3
# 1.09, 64 x 6 1.05). Hence THREADED_INFERENCE_WORK.
THREADED_INFERENCE_WORK = 128


def threaded_forward(batch: int, hidden: int, training: bool = True) -> bool:
    """Whether the GRU's or the RNN's forward takes the threaded path: from a smaller step on in inference
    (no backward follows) than in training (measured, see above)."""
    return batch * hidden > (THREADED_WORK if training else THREADED_INFERENCE_WORK)


# A threaded path also needs enough work in the whole call: its threads' start and its arguments cost about
# 35 µs a call (Python), paid back only over enough steps. So it runs a call only from this many
# multiply-adds of the step products on, time·batch·G·H·(H+I+1) (G gates, I inputs); below, the path after
# it. Measured 2026-12-06 on the 2-core Xeon (Sapphire Rapids family), in-process alternation, threaded
# time / the next path's, T 1-64: RNN and GRU inference at hidden 256 batch 1 T 1-8 3.17-1.51, T 32 0.99;
# hidden 512 batch 1 T 2 1.08, T 4 0.82; 128 × 4 T 8 1.05, T 16 0.83; 64 × 8 T 4 1.14, T 8 0.96; 256 × 8 T 2
# 1.48, T 4 1.01; GRU 128 × 4 T 2 1.52, T 8 0.89; training closer (RNN 128 × 4 and 64 × 8 T 1-4 1.07-1.24).
# The LSTM's threaded path costs less a step: inference 64 × 8 and 128 × 4 T 2 1.14-1.16, T 4 0.94-0.96,
# 256 × 1 T 1 1.23, T 2 0.84; its training more (128 × 4 T 4 1.29, T 8 1.09, T 16 0.93; 256 × 1 T 1 0.93).
# One bound for both modes, so that a locked model's inference takes its training forward's path (the
# LSTM's paths round differently).
THREADED_CALL_WORK = {"rnn": 3 * 2**18, "lstm": 2**20}


def enough_steps(cell: str, time: int | None, batch: int, hidden: int, inputs: int, training: bool = False,
                 itemsize: int = 4) -> bool:
    """Whether a call of `time` steps has the work a threaded path needs (THREADED_CALL_WORK), or, in the RNN's
    or the LSTM's training, W_hh (G·H² entries of `itemsize` bytes) has THREADED_CALL_WEIGHT_BYTES; time None:
    a call of unknown length, taken as long enough."""
    if time is None:
        return True
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    if training and cell != "gru" and gates * hidden * hidden * itemsize >= THREADED_CALL_WEIGHT_BYTES:
        return True
    bound = THREADED_CALL_WORK["lstm" if cell == "lstm" else "rnn"]
    return time * batch * gates * hidden * (hidden + inputs + 1) >= bound


# threads.matmul splits a product over the threads from this many multiply-adds (M·K·N) on; below, it runs on
# the calling thread alone (on one OpenBLAS thread: OpenBLAS's own would wake from 262144 on, and spin after).
# Measured 2026-12-06 (Xeon, 2 threads, µs, one thread / split over two / OpenBLAS's two threads awake):
# (64, 32) @ (32, 64) 3.5 / 23.4 / 2.6, (64, 256) @ (256, 64) 20 / 31 / 32, (192, 256) @ (256, 64) 46 / 44 / 26,
# (256, 320) @ (320, 64) 72 / 60 / 44, (256, 1024) @ (1024, 256) 902 / 489 / 553: the split costs about 20 µs.
SPLIT_PRODUCT_WORK = 2**22
# threads.add_products (a weight gradient added where it accumulates: each entry of the gradient read and
# written again) splits from ADD_PRODUCTS_SPLIT_SIZE on, its size the gradient's entries plus its multiply-adds
# over ADD_PRODUCTS_MULTIPLY_ADDS_PER_ENTRY; below (and below SPLIT_PRODUCT_WORK multiply-adds), on the calling
# thread alone. With few steps and rows the gradient's passes outweigh the products: measured 2026-12-07 (Zen
# 4, 2 threads, one process, minima of 7 × 200 calls, split / one thread; (G·H, K) times (K, H) and (K, I)):
# G·H 880, K 10, I 462 (the LSTM 220 × 2, T 5: 6.0 M multiply-adds, 600 K entries, one thread before) 0.60-0.71,
# 768 × 4, I 16 (the RNN 768 × 2, T 2) 0.63, 880 × 10, I 64 0.67, 600 × 8, I 200 0.71, 800 × 1, I 200 0.70, 768
# × 1, I 784 0.77; between 2**17 and 2**18 0.87-1.13 (512 × 4, I 128 0.89, 300 × 2, I 300 1.12); below
# 1.00-1.90 (256 × 8, I 64 1.43, 192 × 16, I 100 1.58, 384 × 3, I 128 1.13).
ADD_PRODUCTS_SPLIT_SIZE = 2**18
ADD_PRODUCTS_MULTIPLY_ADDS_PER_ENTRY = 8

# The threaded RNN's and GRU's training forward copies W_hh and W_ih for the backward on its threads, in its
# packing's meeting (threaded_rnn.backward_copy), from this many entries of the two on; below, on the calling
# thread (a meeting the packing would not hold otherwise costs more than the copy). Measured 2026-12-07 (Zen 4,
# 2 threads, training calls, threads / one): RNN 768 × 2, T 2 0.82, GRU 512 × 12, T 2 0.81, GRU 256 × 16,
# T 2 (245 K entries) 0.95; RNN 128 × 16, T 4 (18 K) 1.02, RNN 100 × 22, input 64, T 8 (16 K) 1.07, GRU 64 × 32,
# T 3 (15 K) 1.06.
BACKWARD_COPY_SPLIT_SIZE = 2**17

# Up to this batch size the row-vector kernel runs on panels RW vectors tall (gemm.gemm_rows_wide): with one
# or two columns the shorter panels leave the FMA units waiting on their own latency. Measured 2026-12-03,
# (4H, H) @ (H, B) on one core, 64 steps: hidden 256 0.72 → 0.51 ms at batch 1 and 2, hidden 512 3.1 → 2.3-2.9 ms;
# slower from batch 3 (0.77 → 1.03 ms at hidden 256).
WIDE_ROWS_BATCH = 2

# Up to this batch size the threaded LSTM projects its inputs for all steps before its loop, so that each
# step's product streams only W_hh (threaded_lstm.split_input); above, the product takes [W_hh | W_ih | b].
SPLIT_INPUT_BATCH = 12

# The threaded GRU and RNN project their inputs for all steps before their loop, in one product with the steps'
# rows as its rows (threaded_rnn.split_input), at batch 1, and up to RNN_SPLIT_INPUT_BATCH where the inputs are at
# least RNN_SPLIT_INPUT_SHARE of the step's operand [h; 1; x]; elsewhere each step's products take its inputs too.
# Measured 2026-12-06 (Zen 4, 2 threads, T 64, in-process alternation, 7 rounds, time split / not, inference ·
# fwd+bwd): inputs 512 hidden 256-512 batch 1 0.60-0.78 · 0.93-0.98, batch 2 0.79-0.93 · 0.97-0.99, batch 3
# 0.91-1.00, batch 4-16 1.05-1.14 · 0.99-1.05 (hidden 128: 0.97-1.22); inputs 256 batch 2 hidden 128-384
# 0.83-0.91, 512 0.99; inputs 128 batch 2 hidden 128-384 0.90-0.97, 512 1.04; inputs 64 batch 1 hidden 64-512
# 0.93-1.02, batch 2 hidden 128 0.94, 256-512 1.03-1.06, batch 3 1.03-1.08; fwd+bwd within 0.93-1.06 at batch 1-3
# throughout. The RNN likewise: inputs 512 hidden 256-512 batch 1 0.65-0.70, batch 2 0.81-0.85 (hidden 128 batch 1
# 1.06: 0.15 ms); inputs 64 batch 1 0.95-1.01; fwd+bwd 0.93-1.03.
RNN_SPLIT_INPUT_BATCH = 2
RNN_SPLIT_INPUT_SHARE = 0.2

# The one-part LSTM's helper thread projects the inputs beside the steps from this batch size on (below,
# the steps' part projects them all before its loop; the helper still makes the weight gradients in
# training). Measured 2026-12-04, main against this in one process, alternating call by call (40 pairs,
# busy 2-core machine), inference time with the helper / without: batch 2-3 1.10-1.20 (hidden 64, 128),
# batch 4-16 0.79-0.93 at most points (1.09-1.14 at a few), batch 1 0.98-1.01. Also below that batch size
# from HELPER_PROJECTION_WORK = batch·inputs on: a wide input's projection pays the helper's wake. Measured
# 2026-12-06 (Xeon, T 64, in-process alternation, helper / none, training · inference): hidden 100 batch 2
# inputs 512 0.83 · 0.61; hidden 64 batch 1 inputs 512 1.04 · 1.03; hidden 128 batch 3 inputs 256 1.00 · 1.00.
HELPER_PROJECTION_BATCH = 4
HELPER_PROJECTION_WORK = 1024

# The threaded LSTM runs the batch as independent column groups, one a thread with all the hidden units
# (threaded_lstm.column_groups), instead of splitting the units, where W_hh fits a core's cache (hidden up to
# COLUMN_GROUPS_HIDDEN) and batch·hidden is at least COLUMN_GROUPS_WORK. A group's steps then wait for no
# other thread and read no h or gradient another core wrote: in the unit split each step's product reads
# the other part's half of h_t (forward) or d_t (backward) from the other core's cache, which cost 6-8 us a
# step at hidden 128 (backward, in a 30-55 us step). Measured 2026-12-04 (Xeon, 2 threads, T 64, input 64;
# in one process, 15 alternating pairs; ms, units → groups, fwd+bwd · inference): hidden 64 batch 24 2.68 →
# 2.78 · 0.94 → 0.92, batch 32 3.39 → 3.41 · 1.16 → 1.12, batch 48 4.80 → 4.65 · 1.63 → 1.41, batch 64
# 6.70 → 6.29 · 2.08 → 1.87; hidden 96 batch 24 4.41 → 4.30 · 1.33 → 1.28, batch 48 8.08 → 7.62 · 2.43 →
# 2.30; hidden 128 batch 12 3.54 → 3.62 · 1.18 → 1.14, batch 16 4.39 → 4.15 · 1.27 → 1.19, batch 20 5.26 →
# 5.08 · 1.65 → 1.47, batch 24 6.03 → 5.70 · 1.89 → 1.62, batch 40 9.72 → 9.04 · 2.98 → 2.73, batch 64
# 14.53 → 14.24 · 4.31 → 3.67; hidden 160 batch 24 8.41 → 7.88 · 2.47 → 2.12, batch 48 14.74 → 14.39 · 4.23
# → 4.19; but hidden 192 batch 32 12.91 → 13.39 · 3.67 → 3.70, and hidden 256 (W_hh and W_ih 1.3 MB) slower
# at most batches (batch 4 4.17 → 4.92 · 1.21 → 1.58, batch 32 19.5 → 20.7, batch 64 39.2 → 40.9).
# In inference column groups win from batch·hidden 1024, over the one part as well (its helper thread has no
# weight gradients to make there). Measured as above (50 rounds; ms, one part / units / groups): hidden 64
# batch 8 0.40 / 0.44 / 0.45, batch 12 0.51 / 0.57 / 0.55, batch 16 0.65 / 0.73 / 0.61, batch 24 0.90 / 0.99 /
# 0.83, batch 32 1.15 / 1.18 / 1.04; hidden 96 batch 8 0.55 / 0.59 / 0.58, batch 10 0.68 / 0.75 / 0.63, batch
# 16 0.96 / 0.89 / 0.86; hidden 128 batch 8 0.84 / 0.83 / 0.79, batch 10 0.94 / 0.98 / 0.97. In training from
# 1024 as well, over the one part above batch 12: the one part (and its helper) needs the inputs projected
# apart from the steps, which the inference forward must then do too for the same bits, and that cost
# inference 7-9 % at hidden 64 batch 24-48 (groups with the projection in the steps' products / apart, 20
# rounds: batch 24 0.82 / 0.89 ms, batch 48 1.50 / 1.64), where training on one part gained 1-5 % over groups
# (hidden 64 batch 16-56, hidden 32 batch 64-128) and lost at hidden 96 batch 24 (4.40 / 4.18 ms) and
# hidden 128 batch 14 (4.55 / 3.96).
COLUMN_GROUPS_HIDDEN = 160
COLUMN_GROUPS_WORK = 1024
# In inference from hidden ONE_PART_INFERENCE_HIDDEN on (where the alternative is a split of units, not one
# part) column groups run only from COLUMN_GROUPS_SPLIT_BATCH columns. Measured 2026-12-05 (Zen 5, 2
# threads, inference, fresh processes alternating with PyTorch, 5-6 rounds, ms, units / groups / PyTorch):
# hidden 160 batch 7 0.42 / 0.51 / 0.48, 9 0.50-0.52 / 0.56 / 0.55, 10 0.54 / 0.57 / 0.59, 11 0.59 / 0.63 /
# 0.63; hidden 144 batch 8 0.40 / 0.45 / 0.50; hidden 128 batch 8 0.35-0.37 / 0.39 / 0.40, 11 0.45 / 0.48 /
# 0.49; even at 12 columns (hidden 128-160), groups ahead from 14 (hidden 128: 0.53 / 0.51). The machine
# also has a slow state, lasting seconds to minutes, in which everything that passes h between the cores at
# each step slows by 1.3-1.8x: our split of units (hidden 160 batch 7: 0.63) and PyTorch (0.85-0.89), not
# the column groups (0.50); there both pass. Groups of fewer columns are thus faster only there.
COLUMN_GROUPS_SPLIT_BATCH = 12
# Where the batch is wider than SPLIT_INPUT_BATCH (the one part then has no helper thread: the second core
# idles), column groups run from batch·hidden COLUMN_GROUPS_NARROW_WORK on. Measured 2026-12-05 (Zen 5, 2
# threads, inference, one process a variant, 4 alternating rounds, time groups / one part): hidden 24 batch
# 16-24 0.80-0.85, hidden 32 batch 16-24 0.72-0.87, hidden 48 batch 16-20 0.72-0.77, hidden 16 batch 24 0.84
# (batch 16-20 0.97-1.03); at batch 4-12 groups lost up to 1.2x (the one part's helper projects the inputs
# there). Training kept COLUMN_GROUPS_WORK then (fwd+bwd 0.87-1.10, within the noise), until a sweep at input
# 300 found hidden 48 batch 13-20 at 1.13-1.23 of PyTorch's time. Since 2026-12-05 evening both modes (fwd+bwd,
# in one process, 5 alternating rounds, groups / one part, OpenBLAS's AVX-512 kernels): input 64, hidden 32
# batch 13 0.92, 20 0.82, 31 0.76; hidden 48 batch 13 0.86, 20 0.77; hidden 64 batch 13-15 0.78-0.79; input
# 300, hidden 32-48 batch 13-20 0.72-0.76, hidden 64 batch 13 0.88; with its AVX2 kernels (input 64):
# hidden 16 batch 24 0.99, 24 batch 20 1.00, 32 batch 13 1.03, 31 0.81, 48 batch 20 0.85, 64 batch 15 0.93.
COLUMN_GROUPS_NARROW_WORK = 384
# In inference column groups run above COLUMN_GROUPS_HIDDEN as well, where the forward's weights (4H·(H+I+1)
# entries) fit COLUMN_GROUPS_INFERENCE_BYTES and batch·hidden is at least COLUMN_GROUPS_INFERENCE_WORK.
# Measured 2026-12-04 (Xeon, 2 MB L2 a core, 2 threads, inference, T 64, one process, 12 alternating pairs,
# groups / units): input 64, hidden 256 (weights 1.25 MiB) batch 6 1.20, 8 1.11, 12 1.00, 16 0.99, 20 0.93,
# 24 0.94, 32 0.98, 40 0.97, 48 0.94, 64 0.95; hidden 192 batch 16 1.02, 32 1.01, 48 0.96; input 256, hidden
# 256 (2.0 MiB) batch 16 1.21, 24 1.06, 48 1.04, hidden 192 (1.32 MiB) batch 32 1.01, hidden 128 (0.75 MiB)
# batch 24 0.85; and hidden 384 (2.6 MiB) batch 16 1.36, 32 1.12, 512 (4.5 MiB) batch 16 1.28, 32 1.15.
# Training keeps the unit split there (groups lost 2-8 % at hidden 256: its backward panels are W_hh^T's).
# The limit is a share of a core's L2 cache: on an AMD EPYC of family 26 (Zen 5, 1 MB L2 a core; 2026-12-04
# night, 16 pairs, groups / units) hidden 256 batch 12 1.01, 16 1.03, 24 1.08, 32 1.19, 48 1.06, 64 1.03 and
# hidden 192 (0.77 MiB) batch 32 1.18, batch 64 1.02: groups pay only where the weights take at most about
# 0.65 of the L2.
COLUMN_GROUPS_INFERENCE_L2_SHARE = 0.65
DEFAULT_L2_BYTES = 2**20  # where the system does not say (the smaller of the two caches measured)


def core_l2_bytes(cache_folder: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The first core's level-2 cache in bytes, as Linux lists it (index*/level, index*/size such as
    "1024K"); DEFAULT_L2_BYTES where it is not listed or not readable."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        for index in sorted(Path(cache_folder).glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                value = int(size[:-1]) * units[size[-1]] if size[-1:] in units else int(size)
                return value if value > 0 else DEFAULT_L2_BYTES
    except (OSError, ValueError):
        pass
    return DEFAULT_L2_BYTES


COLUMN_GROUPS_INFERENCE_BYTES = int(COLUMN_GROUPS_INFERENCE_L2_SHARE * core_l2_bytes())
COLUMN_GROUPS_INFERENCE_WORK = 4096
# Beyond that share, inference runs column groups from COLUMN_GROUPS_STREAM_COLUMNS columns a group: each group
# then reads all the weights from the next cache level at every step, and does (its columns)/4 FLOP a byte
# read (float32), enough to keep the FMA units busy from about 32 columns; its steps meet no other thread.
# Measured 2026-12-06 (Sapphire Rapids Xeon, 2 MB L2 a core, 2 threads, inference, T 64, input 64, one
# process, 25 alternating rounds, groups / units, two runs): hidden 300 batch 64 0.92-0.94, 80 0.93, 100 0.92,
# 128 0.91; hidden 384 batch 64 0.93-0.97, 80 0.94-1.01, 100 0.96, 128 0.96-0.97; hidden 512 batch 64 0.91-0.95,
# 80 0.97-1.04, 100 0.99, 128 0.90-0.99; hidden 640 batch 64 0.97; 768 × 64 0.85-0.95, 768 × 128 0.98-1.01;
# 1024 × 64 0.82-0.94, 1024 × 128 0.96. Groups of 28 columns (batch 56) 0.97-1.04, of 16 (batch 32) 1.15-1.24.
COLUMN_GROUPS_STREAM_COLUMNS = 32


# The LSTM's weight and input gradients from the backward's per-step blocks as they are
# (threaded_lstm._step_gradients: no (4H, T, B) copy of d first), from this many columns of a split of units
# and of a column group. Measured on the Zen 5, fwd+bwd, new / before (5 alternating rounds): units split,
# hidden 256 batch 12 0.97, hidden 192 batch 14 0.96, hidden 512 batch 10 1.02; column groups of 8-14
# columns (hidden 64-160 batch 16-24) 0.95-0.98.
STEP_GRADIENTS_BATCH = 12
STEP_GRADIENTS_GROUP = 8


# The RNN's threaded backward (threaded_rnn.backward_split) splits the batch's rows over the threads, with no
# meeting per step, while W_hh (padded, all of it in each part's products) takes at most this share of a
# core's level-2 cache; above, the units, each part with its own columns of W_hh and a meeting per step.
RNN_BACKWARD_ROWS_L2_SHARE = 0.4
RNN_BACKWARD_ROWS_BYTES = int(RNN_BACKWARD_ROWS_L2_SHARE * core_l2_bytes())
# Where the RNN's step would split its units over the threads (`threaded_rnn.parts_for`), its columns run in
# groups instead from RNN_SPLIT_GROUPS_MIN_COLUMNS columns a group (16 columns on two threads), while a group's
# weights [W_hh | b | W_ih] (H·(H+1+I) entries, all of them in each group) fit a core's level-2 cache: no
# meeting per step, and no half of h_t crossing between the cores. Measured 2026-12-06 (Sapphire Rapids Xeon,
# 2 MB L2 a core, 2 threads, T 64, one process, 12 alternating rounds, groups / units, training forward ·
# inference): input 64, hidden 256 batch 12 0.93 · 0.93, 16 0.90 · 0.90, 24 0.91 · 0.86, 32 0.91 · 0.85, 48
# 0.95 · 0.92, 64 0.88 · 0.86, 128 0.87 · 0.84; hidden 384 batch 16 0.96 · 0.90, 64 0.91 · 0.88, 100 0.89 ·
# 0.86, 128 0.92 · 0.91; hidden 512 batch 16 1.00-1.01 · 0.95-0.97, 24 0.93 · 0.94, 32 0.96 · 0.92, 48 0.97 ·
# 0.94, 64 0.90 · 0.88, 96 0.91 · 0.88, 128 0.92 · 0.93; input 300, hidden 300 batch 40 0.99 · 0.94, hidden
# 512 batch 64 0.90 · 0.88; but hidden 256 batch 6 1.10 · 1.00, hidden 512 batch 8-12 1.13-1.15 · 1.02-1.13
# (groups of 4-6 columns). Above the cache groups still won here (hidden 768 and 1024, 2.5 and 4.3 MB, batch
# 64: 0.87-0.94), untried on a smaller cache, where the bound keeps the split (the Zen 5's 1 MB L2: hidden 512).
# The GRU likewise where its 3H gate rows would split (weights 3H·(H+1+I) entries; not where they stay in one
# part: untried), groups / units as above: hidden 128 batch 16 0.93 · 0.93, 32 1.02 · 0.87, 64 0.93 · 0.85;
# hidden 200 batch 16 0.96 · 0.85, 48 1.06 · 1.02; hidden 256 batch 16 1.00 · 0.93, 64 0.90 · 0.89; hidden 384
# batch 24 1.04 · 1.01, 100 0.93 · 0.93, 128 0.93 · 0.93 (hidden 512, 3.5 MB: the units split).
RNN_SPLIT_GROUPS_MIN_COLUMNS = 8
RNN_SPLIT_GROUPS_L2_SHARE = 1.0
RNN_SPLIT_GROUPS_BYTES = int(RNN_SPLIT_GROUPS_L2_SHARE * core_l2_bytes())
# Below these batch sizes the threaded RNN's and GRU's backward hand over to numba_path's (OpenBLAS's product
# per step): their row panels of gemm.MR rows would mostly compute padding. fwd+bwd, threaded / numba_path's
# backward, alternating processes (Xeon SPR, OpenBLAS on its SkylakeX-family kernels): RNN hidden 512 batch 1-2
# 1.11-1.32, 256-384 × 2 1.07-1.12, batch 3 0.88-0.89; GRU hidden 256-512 batch 4 1.06-1.18, batch 6 0.73-1.01,
# 8 0.90-0.91.
THREADED_BACKWARD_BATCH = {"rnn": 3, "gru": 6}
# ... but where OpenBLAS runs other kernels (Haswell's: a Zen 4 or 5 held to them, runtime.py) its product of a
# few rows costs far more: (2, 512) @ (512, 512) 71 us a step on the Zen 4 (it packs all of W_hh on every
# call), so there the threaded backward runs from THREADED_BACKWARD_BATCH_NARROW_BLAS rows
# (threaded_rnn.threaded_backward_batch). Measured 2026-12-07 (Zen 4, 2 threads, input 64, one process, 4
# alternating rounds, fwd+bwd, threaded from 2 rows / as above): RNN hidden 256 batch 2 T 64 0.42, 512 × 2 T 4
# 0.73, T 64 0.34, 1024 × 2 T 4-64 0.65-0.88; GRU hidden 256 batch 2-5 T 4 0.73-0.88, T 64 0.47-0.54, 512 ×
# 2-5 0.46-0.77, 1024 × 2-5 0.71-0.94; hidden 32-128 0.94-1.03 (mostly not on the threaded path); but batch 1
# RNN 512 T 4 1.47, GRU 1024 T 4-64 1.10-1.12: one row stays on numba_path's.
THREADED_BACKWARD_BATCH_NARROW_BLAS = {"rnn": 2, "gru": 2}
# The RNN's inference forward runs batch-major (threaded_rnn.rows_forward: each step the states' rows times the
# weights' packed column pairs, h_{t+1} written straight into the output's rows, no transposing copy) from
# RNN_ROWS_FORWARD_MIN_HIDDEN units while its weights [W_hh | b | W_ih] take at most RNN_ROWS_FORWARD_L2_SHARE
# of a core's level-2 cache, where it runs its columns in groups of at least RNN_ROWS_FORWARD_MIN_ROWS rows.
# Measured 2026-12-06 (Sapphire Rapids Xeon, 2 MB L2 a core, 2 threads, T 64, input 64, one process, 9
# alternating rounds, rows / columns, medians), groups of 64-128 rows (batch 128-256): hidden 256 0.88-0.96,
# 384 0.88-0.93, 448 0.92-1.00, 512 0.90-0.94, but 300 0.99-1.07; hidden 640 (1.8 MB) 0.97-1.09; groups of
# 56 rows (batch 112) 0.96-1.08; 50 (batch 100) 0.92-1.06 (the column path's row-vector kernel, gemm_rows, is
# at its best there), 32 rows 0.88-1.04, 16-24 rows 0.88-1.13; hidden 100-200 at 56-128 rows 0.91-1.10 (a
# short product: the step's other work weighs more).
RNN_ROWS_FORWARD_MIN_HIDDEN = 256
RNN_ROWS_FORWARD_MIN_ROWS = 64
RNN_ROWS_FORWARD_L2_SHARE = 0.6
RNN_ROWS_FORWARD_BYTES = int(RNN_ROWS_FORWARD_L2_SHARE * core_l2_bytes())

# An RNN's or an LSTM's training call whose W_hh has THREADED_CALL_L2_SHARE of a core's level-2 cache or more
# takes the threaded path however few its steps (`enough_steps`): the path after it (numba_path's) makes a
# transposed copy of W_hh and an OpenBLAS product a step that packs W_hh again, each from the next cache level.
# Measured 2026-12-07 (Zen 4, 1 MB L2, 2 threads, one process, 4 alternating rounds, fwd+bwd, threaded /
# numba_path's): W_hh 1-1.9 MB: RNN hidden 512 batch 1-2 T 1-2 0.42-0.58, 600 × 1 input 300 T 1 0.49, 700 × 1
# 0.46; LSTM hidden 256 batch 1-3 T 1-3 0.52-0.91, 270 × 1 T 3 0.67, 300 × 1 T 1 0.48; below: RNN 384 × 1 (0.56
# MB) 1.00, 256 × 2 (0.25 MB) 1.22, LSTM 200 × 1 1.02, 180 × 2 0.97. Not the GRU: hidden 300-330 batch 2 T 1
# 1.37-1.38 (its path after, numba_path's, runs those calls faster). Inference keeps the work bound (its weights
# packed once: threaded 1.1-1.4 of numba_path's at those shapes), so at such short calls a locked model's forward
# may round otherwise than its training forward.
THREADED_CALL_L2_SHARE = 1.0
THREADED_CALL_WEIGHT_BYTES = int(THREADED_CALL_L2_SHARE * core_l2_bytes())
