"""The threaded LSTM (fast/threaded_lstm.py), its GEMM kernel (fast/gemm.py) and its threads (fast/threads.py)."""
import contextlib
import os
import subprocess
import sys
import threading
import time
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rnnkit.scratch.fast import kernels, shared_steps, threaded_lstm, threads, thresholds
from rnnkit.scratch.recurrent import LSTM

needs_numba = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")
if kernels.AVAILABLE:
    from rnnkit.scratch.fast import gemm


@pytest.fixture
def thread_count(monkeypatch):
    """Set threads.count() for one test; the environment's choice comes back afterwards. The threaded LSTM
    then splits over them even where one part would be faster (thresholds.ONE_PART_WORK)."""
    monkeypatch.setattr(thresholds, "ONE_PART_WORK", 0)
    yield threads.set_count
    threads.set_count(None)


# ------------------------------------------------------------------------------------------------ gemm.py
@needs_numba
@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 40), depth=st.integers(1, 30), columns=st.integers(1, 70), z_pad=st.integers(0, 5),
       out_pad=st.integers(0, 5), offset=st.integers(0, 7), double=st.booleans(), seed=st.integers(0, 2**31))
def test_gemm_panels_is_the_matrix_product(rows, depth, columns, z_pad, out_pad, offset, double, seed):
    """Every register block (two vectors, one vector, the plain loop for the last columns), padded rows,
    leading dimensions and offsets: C = A @ Z on the columns asked for, nothing written past them."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    ldz, ldo = columns + z_pad, columns + out_pad
    z = rng.standard_normal(offset + depth * ldz + 1).astype(dtype)
    panels = gemm.pack_panels(a)
    assert panels.shape == (-(-rows // gemm.MR), depth, gemm.MR)
    out = np.full(panels.shape[0] * gemm.MR * ldo, np.nan, dtype=dtype)
    gemm.gemm_panels(panels, z, offset, ldz, columns, out, ldo)
    c = out.reshape(-1, ldo)
    expected = a.astype(np.float64) @ z[offset: offset + depth * ldz].reshape(depth, ldz)[:, :columns]
    tol = 1e-13 if double else 2e-5
    np.testing.assert_allclose(c[:rows, :columns], expected, rtol=tol, atol=tol * max(1, depth))
    np.testing.assert_array_equal(c[rows:, :columns], 0)  # the zero rows of the last panel
    assert np.isnan(c[:, columns:]).all()


@needs_numba
@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 50), cols=st.integers(1, 50), src_pad=st.integers(0, 9), dst_pad=st.integers(0, 9),
       src_off=st.integers(0, 7), dst_off=st.integers(0, 7), double=st.booleans(), seed=st.integers(0, 2**31))
def test_copy_transposed_is_the_transpose_and_writes_nothing_else(rows, cols, src_pad, dst_pad, src_off, dst_off,
                                                                   double, seed):
    """gemm.copy_transposed (VW × VW blocks transposed in registers, the last rows' block masked): dst's block
    at dst_off with leading dimension ld_dst is src's rows × whole blocks of columns transposed, to the bit;
    no other entry of dst changes (the last columns are the caller's)."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    ld_src, ld_dst = cols + src_pad, rows + dst_pad
    src = rng.standard_normal(src_off + rows * ld_src).astype(dtype)
    dst = np.full(dst_off + cols * ld_dst + 3, np.nan, dtype=dtype)
    gemm.copy_transposed(src, src_off, ld_src, dst, dst_off, ld_dst, rows, cols)
    whole_rows, whole_cols = rows, cols - cols % gemm.VW
    block = src[src_off:].reshape(rows, ld_src)[:whole_rows, :whole_cols]
    written = dst[dst_off: dst_off + cols * ld_dst].reshape(cols, ld_dst)
    np.testing.assert_array_equal(written[:whole_cols, :whole_rows], block.T)
    assert np.isnan(written[whole_cols:]).all() and np.isnan(written[:, whole_rows:]).all()
    assert np.isnan(dst[:dst_off]).all() and np.isnan(dst[-3:]).all()


@needs_numba
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 50), pad=st.integers(0, 9), lo=st.integers(0, 20), units=st.integers(1, 50),
       batch_first=st.booleans(), double=st.booleans(), seed=st.integers(0, 2**31))
def test_copy_states_is_the_entry_by_entry_copy_and_writes_nothing_else(n, pad, lo, units, batch_first, double,
                                                                         seed):
    """threaded_lstm.copy_states (a step's states, rows of L columns a unit, into the output's rows; whole
    blocks of columns transposed in registers, the last columns entry by entry): rows[b, lo + j] is
    h[(lo + j)·L + b] to the bit for b < n, j < units, into a batch-first output (rows T·H apart) or a
    time-major one; nothing else of the output changes."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    L, hidden, time, t = n + pad, lo + units + 3, 3, 1
    h = rng.standard_normal((lo + units) * L).astype(dtype)
    out = np.full((n + 2, time, hidden) if batch_first else (time, n + 2, hidden), np.nan, dtype=dtype)
    outs = out.transpose(1, 0, 2) if batch_first else out
    threaded_lstm.copy_states(h, L, outs[t], lo, units, n)
    expected = np.full_like(outs, np.nan)
    expected[t, :n, lo: lo + units] = h.reshape(lo + units, L)[lo:, :n].T
    np.testing.assert_array_equal(outs, expected)


@needs_numba
@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("vectors,depth", [(3, 37), (5, 37), (7, 37), (3, 2 * 128 + 45), (5, 128)])
def test_an_odd_count_of_column_vectors_gives_one_vector_at_a_times_bits(vectors, depth, double):
    """Three, five, seven vectors of columns (the last three in `_half_3`'s blocks, a half of the panel's rows
    each, where the CPU has 32 vector registers, over K in chunks of THREE_K_CHUNK: one, or two and a part):
    the bits of the columns taken one vector at a time (the one-vector block over all K), each element the
    same chain of fused multiply-adds; all rows of the panels written."""
    assert not hasattr(gemm, "THREE_K_CHUNK") or gemm.THREE_K_CHUNK == 128  # the depths' chunks as described
    dtype = np.float64 if double else np.float32
    lanes = gemm.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(vectors)
    rows, columns = 3 * gemm.MR - 5, vectors * lanes
    a = rng.standard_normal((rows, depth)).astype(dtype)
    z = rng.standard_normal(depth * columns).astype(dtype)
    panels = gemm.pack_panels(a)
    together = np.full(panels.shape[0] * gemm.MR * columns, np.nan, dtype=dtype)
    gemm.gemm_panels(panels, z, 0, columns, columns, together, columns)
    apart = np.full_like(together, np.nan)
    for j in range(0, columns, lanes):
        gemm.gemm_panels(panels, z, j, columns, lanes, apart[j:], columns)
    np.testing.assert_array_equal(together, apart)
    np.testing.assert_allclose(together.reshape(-1, columns)[:rows], a @ z.reshape(depth, columns),
                               rtol=1e-4 if not double else 1e-12, atol=1e-4 if not double else 1e-12)


@needs_numba
@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 70), depth=st.integers(1, 30), columns=st.integers(1, 20), z_pad=st.integers(0, 5),
       out_pad=st.integers(0, 5), offset=st.integers(0, 7), double=st.booleans(), seed=st.integers(0, 2**31))
def test_gemm_rows_is_the_matrix_product_with_the_column_kernels_bits(rows, depth, columns, z_pad, out_pad, offset,
                                                                      double, seed):
    """The row-vector kernel: one to four column blocks of near-equal width (1 to NB columns each), padded
    rows, leading dimensions and offsets; nothing written past the columns asked for; on whole vectors of columns, the column
    kernel's bits."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    ldz, ldo = columns + z_pad, columns + out_pad
    z = rng.standard_normal(offset + depth * ldz + 1).astype(dtype)
    panels = gemm.pack_row_panels(a)
    width = gemm.RV * gemm.VECTOR_BYTES // a.itemsize
    assert panels.shape == (-(-rows // width), depth, width)
    out = np.full(panels.shape[0] * width * ldo, np.nan, dtype=dtype)
    gemm.gemm_rows(panels, z, offset, ldz, columns, out, ldo)
    c = out.reshape(-1, ldo)
    expected = a.astype(np.float64) @ z[offset: offset + depth * ldz].reshape(depth, ldz)[:, :columns]
    tol = 1e-13 if double else 2e-5
    np.testing.assert_allclose(c[:rows, :columns], expected, rtol=tol, atol=tol * max(1, depth))
    np.testing.assert_array_equal(c[rows:, :columns], 0)
    assert np.isnan(c[:, columns:]).all()
    whole = columns - columns % (gemm.VECTOR_BYTES // a.itemsize)
    if whole:
        by_columns = np.full(-(-rows // gemm.MR) * gemm.MR * ldo, np.nan, dtype=dtype)
        gemm.gemm_panels(gemm.pack_panels(a), z, offset, ldz, whole, by_columns, ldo)
        np.testing.assert_array_equal(c[:rows, :whole], by_columns.reshape(-1, ldo)[:rows, :whole])


@needs_numba
@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 70), depth=st.integers(1, 40), columns=st.integers(1, 20), z_pad=st.integers(0, 5),
       out_pad=st.integers(0, 5), double=st.booleans(), cuts=st.lists(st.integers(1, 39), max_size=4),
       seed=st.integers(0, 2**31))
def test_gemm_rows_add_sums_in_parts_with_one_calls_bits(rows, depth, columns, z_pad, out_pad, double, cuts, seed):
    """The accumulating row kernel (threaded_lstm.weight_gradient_part's, all rows as one block in order):
    C += A @ Z; K cut into parts (A's columns packed part by part, Z's rows at an offset) gives the bits of one
    call over all K, and those are gemm_rows's; nothing written past the columns asked for."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    ldz, ldo = columns + z_pad, columns + out_pad
    z = rng.standard_normal(depth * ldz).astype(dtype)
    width = gemm.RV * gemm.VECTOR_BYTES // a.itemsize
    count = -(-rows // width)
    whole = np.zeros(count * width * ldo, dtype=dtype)
    whole.reshape(-1, ldo)[:, columns:] = np.nan
    parts = whole.copy()
    order, side = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=dtype)  # one block: every panel straight

    def add(panels, z_off, out):
        gemm.gemm_rows_add_blocks(panels, z, z_off, ldz, columns, out, ldo, count * width, order, side)

    add(gemm.pack_row_panels(a), 0, whole)
    bounds = [0] + sorted({c for c in cuts if c < depth}) + [depth]
    for k0, k1 in zip(bounds[:-1], bounds[1:]):
        add(gemm.pack_row_panels(np.ascontiguousarray(a[:, k0:k1])), k0 * ldz, parts)
    np.testing.assert_array_equal(parts, whole)
    fresh = np.full_like(whole, np.nan)
    gemm.gemm_rows(gemm.pack_row_panels(a), z, 0, ldz, columns, fresh, ldo)
    c = whole.reshape(-1, ldo)
    np.testing.assert_array_equal(c[:, :columns], fresh.reshape(-1, ldo)[:, :columns])
    assert np.isnan(c[:, columns:]).all()
    tol = 1e-13 if double else 2e-5
    expected = a.astype(np.float64) @ z.reshape(depth, ldz)[:, :columns]
    np.testing.assert_allclose(c[:rows, :columns], expected, rtol=tol, atol=tol * max(1, depth))


@needs_numba
@settings(max_examples=40, deadline=None)
@given(gates=st.sampled_from([1, 3, 4]), block=st.integers(1, 40), depth=st.integers(1, 12),
       columns=st.integers(1, 20), out_pad=st.integers(0, 3), double=st.booleans(), calls=st.integers(1, 3),
       data=st.data())
def test_gemm_rows_add_blocks_adds_each_gate_block_into_its_own_rows(gates, block, depth, columns, out_pad, double,
                                                                     calls, data):
    """The one-part LSTM's weight gradients added into the parameters' own (PyTorch's gate order): A's rows
    in packed gate blocks, out's in another order, panels that cross a block's end or hold padding rows
    through the side panels; over several calls (chunks of steps) and then `add_side_panels`, out holds
    its values plus every product, in the right rows, and nothing past its columns is written."""
    dtype = np.float64 if double else np.float32
    order = np.asarray(data.draw(st.permutations(range(gates))), dtype=np.int64)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    ldo = columns + out_pad
    out = rng.standard_normal((gates * block, ldo)).astype(dtype)
    out[:, columns:] = np.nan
    want = out[:, :columns].astype(np.float64)
    R = gemm.RV * gemm.VECTOR_BYTES // np.dtype(dtype).itemsize
    side = np.zeros(gemm.side_panels(gates, block, R, order) * R * columns, dtype=dtype)
    for _ in range(calls):
        a = rng.standard_normal((gates * block, depth)).astype(dtype)
        z = rng.standard_normal((depth, columns)).astype(dtype)
        gemm.gemm_rows_add_blocks(gemm.pack_row_panels(a), z.reshape(-1), 0, columns, columns, out.reshape(-1),
                                  ldo, block, order, side)
        product = a.astype(np.float64) @ z
        for q in range(gates):
            want[order[q] * block:(order[q] + 1) * block] += product[q * block:(q + 1) * block]
    gemm.add_side_panels(side, R, columns, out.reshape(-1), ldo, block, order)
    tol = 1e-12 if double else 1e-4
    np.testing.assert_allclose(out[:, :columns], want, rtol=tol, atol=tol * depth * calls)
    assert np.isnan(out[:, columns:]).all()


@needs_numba
@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 90), depth=st.integers(1, 30), columns=st.integers(1, 8), z_pad=st.integers(0, 5),
       out_pad=st.integers(0, 5), offset=st.integers(0, 7), double=st.booleans(), seed=st.integers(0, 2**31))
def test_gemm_rows_wide_gives_the_row_kernels_bits(rows, depth, columns, z_pad, out_pad, offset, double, seed):
    """The tall row-vector kernel (1, 2, 3 columns per block, padded rows, leading dimensions, offsets): the
    matrix product on the columns asked for, nothing written past them, and gemm_rows's bits."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    ldz, ldo = columns + z_pad, columns + out_pad
    z = rng.standard_normal(offset + depth * ldz + 1).astype(dtype)
    panels = gemm.pack_wide_row_panels(a)
    width = gemm.RW * gemm.VECTOR_BYTES // a.itemsize
    assert panels.shape == (-(-rows // width), depth, width)
    out = np.full(panels.shape[0] * width * ldo, np.nan, dtype=dtype)
    gemm.gemm_rows_wide(panels, z, offset, ldz, columns, out, ldo)
    c = out.reshape(-1, ldo)
    expected = a.astype(np.float64) @ z[offset: offset + depth * ldz].reshape(depth, ldz)[:, :columns]
    tol = 1e-13 if double else 2e-5
    np.testing.assert_allclose(c[:rows, :columns], expected, rtol=tol, atol=tol * max(1, depth))
    np.testing.assert_array_equal(c[rows:, :columns], 0)
    assert np.isnan(c[:, columns:]).all()
    by_rows = np.full(-(-rows // (gemm.RV * gemm.VECTOR_BYTES // a.itemsize)) * ldo * gemm.RV
                      * gemm.VECTOR_BYTES // a.itemsize, np.nan, dtype=dtype)
    gemm.gemm_rows(gemm.pack_row_panels(a), z, offset, ldz, columns, by_rows, ldo)
    np.testing.assert_array_equal(c[:rows, :columns], by_rows.reshape(-1, ldo)[:rows, :columns])


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_panels_are_numpys_packing_to_the_bit(dtype, bias):
    """lstm_panels' compiled packing against packing.py's arrays packed by gemm.pack_panels: every block
    ("all", "hh", "ih"), parts whose rows do not fill the last panel, and the backward's W_hh^T rows."""
    from rnnkit.scratch.fast import lstm_panels, packing

    rng = np.random.default_rng(4)
    hidden, features = 37, 21  # whole blocks of 16 values of k in W_hh and in W_ih, and a remainder
    weights = [rng.standard_normal(shape).astype(dtype) for shape in ((4 * hidden, features), (4 * hidden, hidden))]
    biases = [rng.standard_normal(4 * hidden).astype(dtype) for _ in range(2)] if bias else [None, None]
    p = packing.pack("lstm", *weights, *biases)
    bounds = [(0, 11), (11, 37)]
    for width in sorted({6, 16, *gemm.PANEL_WIDTHS}):  # gemm's in-register packing: its panel heights
        columns = {"all": p.w_steps, "hh": p.w_steps[:, :hidden], "ih": p.w_steps[:, hidden:]}
        for blocks, source in columns.items():
            got = lstm_panels.forward_panels(p, bounds, width, blocks)
            for (lo, hi), panels in zip(bounds, got):
                rows = source[lstm_panels.gate_rows(hidden, lo, hi)]
                np.testing.assert_array_equal(panels, gemm.pack_panels(np.ascontiguousarray(rows), width))
        got = lstm_panels.backward_panels(p, bounds, width)
        for (lo, hi), panels in zip(bounds, got):
            np.testing.assert_array_equal(panels, gemm.pack_panels(np.ascontiguousarray(p.w_hh[:, lo:hi].T), width))
        for backward_bounds in ([(0, hidden)], bounds):  # a training forward's, in one meeting or by sets
            forward, hh = lstm_panels.training_panels(p, bounds, backward_bounds, width, ("hh", "ih"))
            want_hh = lstm_panels.backward_panels(p, backward_bounds, width)
            for got_set, want_set in zip(forward + [hh], lstm_panels.forward_panel_sets(p, bounds, width, ("hh", "ih"))
                                         + [want_hh]):
                for got_part, want_part in zip(got_set, want_set, strict=True):
                    np.testing.assert_array_equal(got_part, want_part)
    # the last panel's padding stays zeros where the row it is read from (a part's first) is not finite
    weights[0][0] = np.inf
    p = packing.pack("lstm", *weights, *biases)
    for width in gemm.PANEL_WIDTHS:
        panels = lstm_panels.forward_panels(p, bounds, width, "ih")[0]
        rows = p.w_steps[:, hidden:][lstm_panels.gate_rows(hidden, 0, 11)]
        np.testing.assert_array_equal(panels, gemm.pack_panels(np.ascontiguousarray(rows), width))


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", ["gru", "rnn_tanh"])
def test_gru_and_rnn_panels_are_numpys_packing_to_the_bit(mode, dtype, bias):
    """The threaded GRU's and RNN's forward panels, packed in one compiled pass from the weights as they are,
    against packing.py's arrays packed by gemm.pack_panels / pack_row_panels: one and two parts, either
    kernel's panels, units that do not fill the last panel."""
    from rnnkit.scratch.fast import packing, threaded_gru, threaded_rnn

    rng = np.random.default_rng(5)
    gates, hidden, features = packing.GATES[mode], 37, 21
    weights = [rng.standard_normal((gates * hidden, k)).astype(dtype) for k in (features, hidden)]
    biases = [rng.standard_normal(gates * hidden).astype(dtype) for _ in range(2)] if bias else [None, None]
    p = packing.pack(mode, *weights, *biases)
    for parts in (1, 2):
        bounds = [(hidden * k // parts, hidden * (k + 1) // parts) for k in range(parts)]
        for rows in (True, False):
            pack = gemm.pack_row_panels if rows else gemm.pack_panels
            if mode == "gru":
                b_hn = p.b_hn if p.b_hn is not None else np.zeros(hidden, dtype=dtype)
                got = threaded_gru.forward_panels(p, parts, rows)
                for (lo, hi), panels in zip(bounds, got):
                    n = slice(2 * hidden + lo, 2 * hidden + hi)
                    want = (threaded_rnn.step_rows(p, np.r_[lo:hi, hidden + lo: hidden + hi]),
                            np.concatenate([p.w_hh_half[n], b_hn[lo:hi, None]], axis=1),
                            np.concatenate([p.bias[n, None], p.w_ih_half[n]], axis=1))
                    assert len(panels) == 3
                    for panel, rows_wanted in zip(panels, want):
                        np.testing.assert_array_equal(panel, pack(rows_wanted))
            else:
                got = threaded_rnn.forward_panels(p, parts, rows)
                for (lo, hi), panels in zip(bounds, got):
                    np.testing.assert_array_equal(panels, pack(threaded_rnn.step_rows(p, slice(lo, hi))))


@needs_numba
def test_pack_panels_orders_each_panel_by_depth():
    a = np.arange(2 * 5 * (gemm.MR + 1), dtype=np.float32).reshape(gemm.MR + 1, 10)
    panels = gemm.pack_panels(a)
    assert panels.shape == (2, 10, gemm.MR)
    np.testing.assert_array_equal(panels[0], a[: gemm.MR].T)
    np.testing.assert_array_equal(panels[1, :, 0], a[gemm.MR])
    np.testing.assert_array_equal(panels[1, :, 1:], 0)


# --------------------------------------------------------------------------------------------- threads.py
def test_thread_count_follows_openblas_unless_told(monkeypatch, thread_count):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.delenv("RNNKIT_NUM_THREADS", raising=False)
    for limit in (2, 1):  # what OpenBLAS uses now, as the products did before
        with threadpoolctl.threadpool_limits(limit, user_api="blas"):
            assert threads.count() == limit
    monkeypatch.setenv("RNNKIT_NUM_THREADS", "5")
    assert threads.count() == 5
    monkeypatch.setenv("RNNKIT_NUM_THREADS", "zero")  # not a count: OpenBLAS decides
    with threadpoolctl.threadpool_limits(1):
        assert threads.count() == 1
    thread_count(7)
    assert threads.count() == 7
    thread_count(None)
    monkeypatch.delenv("RNNKIT_NUM_THREADS")
    with threadpoolctl.threadpool_limits(1):
        assert threads.count() == 1


def test_a_layer_call_reads_the_thread_count_once(monkeypatch):
    """threads.one_count: inside a call the count stays what it was when the call began, on that thread alone
    (another thread reads the environment), nested calls keep the outer reading, and after the call count()
    follows the environment again; set_count still overrides."""
    import threading

    monkeypatch.setenv("RNNKIT_NUM_THREADS", "3")
    seen = []

    @threads.one_count
    def call(depth):
        seen.append(threads.count())
        monkeypatch.setenv("RNNKIT_NUM_THREADS", "5")
        seen.append(threads.count())
        other = []
        worker = threading.Thread(target=lambda: other.append(threads.count()))
        worker.start()
        worker.join()
        seen.append(other[0])
        if depth:
            call(depth - 1)

    call(1)
    assert seen == [3, 3, 5, 3, 3, 5]
    assert threads.count() == 5
    threads.set_count(2)
    try:
        seen.clear()
        call(0)
        assert seen == [2, 2, 2]  # (set_count holds on every thread)
    finally:
        threads.set_count(None)


@pytest.mark.parametrize("bad", [0, -1, 2.0, "2"])
def test_thread_count_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        threads.set_count(bad)


@needs_numba
def test_shared_steps_meet_at_every_step_and_run_each_unit_once():
    """shared_steps.run_steps: parts pass values for 300 steps (each unit reads every part's value of the
    step before), each unit computed once and its after-work run once, after it; with 3 parts on 2 threads
    the third part's units are all taken by the other threads; one part alone (`alone`: the same compiled
    function as two parts, its argument sets padded) runs them all in order. In a child process with a time
    limit."""
    code = """
import numpy as np
from rnnkit.scratch.fast import shared_steps, threads
from rnnkit.scratch.fast.kernels import jit

@jit
def compute(u, me, board, ran, copied):
    total = 0
    for other in range(board.shape[1]):
        total += board[u, other]
    board[u + 1, me] = (total + me + 1) % 1000003
    ran[me, u] += 1

@jit
def after(u, me, board, ran, copied):
    copied[me, u] = board[u + 1, me] + 1000003 * ran[me, u]

@jit
def part(me, argument_sets, parts, units, steps_board, patience, yield_address):
    k, u = -1, 0
    while True:
        k, u = shared_steps.next_unit(steps_board, me, parts, units, k, u, patience, yield_address)
        if k < 0:
            return
        compute(u, *argument_sets[k])
        shared_steps.computed(steps_board, k, u)
        after(u, *argument_sets[k])

threads.set_count(2)
for parts in (1, 2, 3):
    steps = 300
    board = np.zeros((steps + 1, parts), dtype=np.int64)
    ran, copied = np.zeros((parts, steps), dtype=np.int64), np.zeros((parts, steps), dtype=np.int64)
    if parts == 1:
        part(*shared_steps.alone((0, board, ran, copied), steps))
    else:
        shared_steps.run_steps(part, [(k, board, ran, copied) for k in range(parts)], steps)
    expected = np.zeros_like(board)
    for t in range(steps):
        expected[t + 1] = (expected[t].sum() + np.arange(parts) + 1) % 1000003
    print(bool((board == expected).all()), bool((ran == 1).all()), bool((copied == expected[1:].T + 1000003).all()))
print(len(part.signatures))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 9 + ["2"]  # compiled for 1 or 2 parts, and for 3


@needs_numba
def test_parts_meet_at_every_step():
    """Four parts pass flags for 500 steps: each step reads what the others wrote at the step before, which
    only works if they really run at the same time and each waits for the others. Runs in a child process
    with a time limit, so that a broken wait fails instead of hanging the suite."""
    code = """
import numpy as np
from rnnkit.scratch.fast import threads
from rnnkit.scratch.fast.kernels import jit

@jit
def part(me, parts, steps, board, flags, yield_address):
    for t in range(steps):
        if t > 0:
            threads.wait_all(flags, parts, me, t, yield_address)
        total = 0
        for other in range(parts):
            total += board[t, other]
        board[t + 1, me] = (total + 1) % 1000003
        threads.arrive(flags, me, t + 1)

parts, steps = 4, 500
board, flags = np.zeros((steps + 1, parts), dtype=np.int64), threads.new_flags(parts)
threads.run(part, [(k, parts, steps, board, flags, threads.YIELD) for k in range(parts)])
expected = np.zeros_like(board)
for t in range(steps):
    expected[t + 1] = (expected[t].sum() + 1) % 1000003
print(bool((board == expected).all()), int(board[1, 0]), int(board[2, 3]), int(board[3, 1]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1", "5", "21"]


def test_matmul_splits_rows_and_agrees(thread_count):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((37, 50)), rng.standard_normal((50, 9))
    for count in (1, 2, 3, 40):
        thread_count(count)
        np.testing.assert_allclose(threads.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(threads.matmul(a.T.copy().T, b[:, ::2]), a @ b[:, ::2], rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parts_take_their_own_products_and_row_sums(thread_count, dtype):
    """threads.run_products: each part's products_here and row_sums_here on the thread that runs it are the
    product and the row sums (matmul's and row_sums' bits where gemm.py's kernels run them), whatever count()
    is; a part is told it runs on a worker exactly where it does."""
    rng = np.random.default_rng(5)
    pairs = [(rng.standard_normal((rows, 300)).astype(dtype), rng.standard_normal((300, 9)).astype(dtype))
             for rows in (37, 250, 3)]
    for count in (1, 2, 3):
        thread_count(count)
        got = [None] * len(pairs)

        def part(a, b, k, worker):
            got[k] = (threads.products_here(a, (b,), worker)[0], threads.row_sums_here(a),
                      (worker, threading.get_ident() != threading.main_thread().ident))

        threads.run_products(part, [(a, b, k) for k, (a, b) in enumerate(pairs)])
        for (a, b), (product, sums, worker) in zip(pairs, got):
            tolerance = 1e-12 if dtype == np.float64 else 2e-5
            np.testing.assert_allclose(product, a @ b, rtol=tolerance, atol=tolerance * 20)
            np.testing.assert_array_equal(sums, threads.row_sums(a))
            if threads.own_products(a, b):
                np.testing.assert_array_equal(product, threads.matmul(a, b))
        told, elsewhere = zip(*(where for *_, where in got))
        assert told == elsewhere and not told[0]  # part 0 on the calling thread
        if threads._OPENBLAS.local_threads is None or count == 1:  # the parts one after the other on the caller
            assert told == (False,) * 3


@needs_numba
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 70), depth=st.integers(1, 90), columns=st.integers(1, 40), transposed=st.booleans(),
       seed=st.integers(0, 2**31))
def test_products_on_gemm_kernels_are_the_product_with_the_same_bits_on_any_thread_count(
        thread_count, rows, depth, columns, transposed, seed):
    """threads.matmuls's own path (gemm.py's kernels: a's rows packed in panels of MR, once for both
    products, b's columns padded to whole vectors): a @ b and a @ b2 for any shape, a C-contiguous or a
    transposed view, each entry's bits the same on 1, 2 and 3 threads (one chain over k per entry, whatever
    the rows' split) and as a product on its own."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((depth, rows) if transposed else (rows, depth)).astype(np.float32)
    a = a.T if transposed else a
    b = rng.standard_normal((depth, columns)).astype(np.float32)
    b2 = rng.standard_normal((depth, columns // 2 + 3)).astype(np.float32)
    products = []
    for count in (1, 2, 3):
        thread_count(count)
        products.append(threads._own_matmuls(a, (b, b2)))
    for product, operand in zip(products[0], (b, b2)):
        exact = a.astype(np.float64) @ operand
        np.testing.assert_allclose(product, exact, rtol=1e-4, atol=1e-4 * np.sqrt(depth))
        assert product.shape == (rows, operand.shape[1])
    for other in products[1:]:
        assert [p.tobytes() for p in other] == [p.tobytes() for p in products[0]]
    assert threads._own_matmuls(a, (b2,))[0].tobytes() == products[0][1].tobytes()


@needs_numba
@pytest.mark.parametrize("columns", [5, 16, 48, 64])
def test_the_panels_taken_backwards_give_the_same_bits(columns):
    """gemm_rows and gemm_panels with `backwards` (the LSTM's odd steps: the panels last to first, so the
    ones the step before read last are still in L2 where the weights overflow it): every entry's bits."""
    rng = np.random.default_rng(columns)
    a = rng.standard_normal((5 * gemm.MR + 7, 70)).astype(np.float32)
    z = rng.standard_normal(70 * columns).astype(np.float32)
    for pack, product in ((gemm.pack_row_panels, gemm.gemm_rows), (gemm.pack_panels, gemm.gemm_panels)):
        panels = pack(a)
        outs = [np.full(panels.shape[0] * panels.shape[2] * columns, np.nan, dtype=np.float32) for _ in range(2)]
        if product is gemm.gemm_panels and columns % 16:
            continue  # the column kernel runs whole vectors (the caller pads)
        product(panels, z, 0, columns, columns, outs[0], columns)
        product(panels, z, 0, columns, columns, outs[1], columns, True)
        np.testing.assert_array_equal(outs[1], outs[0])
        assert not np.isnan(outs[0].reshape(-1, columns)[:a.shape[0]]).any()


@needs_numba
@pytest.mark.parametrize("depth,columns", [(2 * 256 + 37, 512 + 48), (256, 512 + 16), (255, 3 * 16)])
def test_products_in_blocks_of_k_and_columns_give_one_pass_over_all_k_bits(thread_count, depth, columns):
    """The own products in blocks of B (gemm.MATMUL_K_BLOCK rows × MATMUL_N_BLOCK columns: here two blocks
    and a part of K, a block of columns and a remainder of one or three vectors), each block of A packed
    before its use: each entry the bits of gemm_panels' one pass over all K, on one and two threads; a
    block along K not added to C (a chain restarted) would differ."""
    assert (gemm.MATMUL_K_BLOCK, gemm.MATMUL_N_BLOCK) == (256, 512)  # the shapes' blocks as described
    rng = np.random.default_rng(depth)
    rows = 2 * gemm.MR + 5
    a = rng.standard_normal((rows, depth)).astype(np.float32)
    b = rng.standard_normal((depth, columns)).astype(np.float32)
    panels = gemm.pack_panels(a)
    one_pass = np.full(panels.shape[0] * gemm.MR * columns, np.nan, dtype=np.float32)
    gemm.gemm_panels(panels, b.reshape(-1), 0, columns, columns, one_pass, columns)
    expected = one_pass.reshape(-1, columns)[:rows]
    for count in (1, 2):
        thread_count(count)
        np.testing.assert_array_equal(threads._own_matmuls(a, (b,))[0], expected)
    np.testing.assert_allclose(expected, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(depth))


@needs_numba
@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 150), depth=st.integers(1, 70), layout=st.sampled_from(["rows", "columns", "strided"]),
       dtype=st.sampled_from([np.float32, np.float64]), lo_panels=st.integers(0, 2), cut=st.integers(0, 13),
       kind=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_pack_rows_lays_out_panels_of_rows_with_zeros_past_the_end(rows, depth, layout, dtype, lo_panels, cut, kind,
                                                                     seed):
    """gemm.pack_rows: out[p, k, r] = a[lo + p·MR + r, k] below hi, 0 past it, whether a runs along its rows
    (the float32 in-register transposition), along its columns (a transposed view: runs of MR lanes end to end)
    or neither (a strided view), and past the last whole block of VW values of k; panels MR, RV·VW and RW·VW
    rows tall (the compiled blocks' heights) and 5 (the plain loops only)."""
    from rnnkit.scratch.fast import gemm
    width = (*gemm.PANEL_WIDTHS, 5)[kind]
    rng = np.random.default_rng(seed)
    if layout == "rows":
        a = rng.standard_normal((rows, depth)).astype(dtype)
    elif layout == "columns":
        a = rng.standard_normal((depth, rows)).astype(dtype).T
    else:
        a = rng.standard_normal((rows, 2 * depth)).astype(dtype)[:, ::2]
    lo, hi = min(rows, lo_panels * width), max(0, rows - cut)
    assume(hi > lo)
    count = -(-(hi - lo) // width)
    out = np.full((count, depth, width), np.nan, dtype=dtype)
    gemm.pack_rows(a, lo, hi, out)
    expected = np.zeros((count * width, depth), dtype=dtype)
    expected[:hi - lo] = a[lo:hi]
    assert np.array_equal(out, expected.reshape(count, width, depth).transpose(0, 2, 1))


@needs_numba
@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 300), depth=st.integers(1, 40), columns=st.integers(1, 20), kind=st.integers(0, 2),
       dtype=st.sampled_from([np.float32, np.float64]), cut=st.integers(0, 9), layout=st.booleans(),
       seed=st.integers(0, 2**31))
def test_transposed_product_reads_row_panels_transposed(rows, depth, columns, kind, dtype, cut, layout, seed):
    """transposed_products.transposed_product: out[k, j] = Σ_m A[m, k] Z[j, m] for A packed in row panels
    (gemm.pack_panels, the panels' padding rows multiplied by zeros of Z), rows k_lo..k_hi-1 of A^T (ROWS at
    a time and fewer at the end), columns in blocks of COLUMNS and fewer, out in either layout (k or j along
    memory); panels of RV·VW and RW·VW rows (the kernels; float64 two and four vectors) and 16 (plain loops).
    Nothing outside the rows and columns asked for is written."""
    from rnnkit.scratch.fast import gemm, transposed_products
    rng = np.random.default_rng(seed)
    width = (16, *gemm.PANEL_WIDTHS[1:])[kind]
    a = rng.standard_normal((rows, depth)).astype(dtype)
    panels = gemm.pack_panels(a, width)
    z = np.zeros((columns, panels.shape[0] * width), dtype=dtype)
    z[:, :rows] = rng.standard_normal((columns, rows))
    z[:, rows:] = rng.standard_normal((columns, z.shape[1] - rows))  # (times the padding rows' zeros)
    k_lo, k_hi = min(cut, depth - 1), depth
    span = k_hi - k_lo
    ldk, ldc = (1, span) if layout else (columns, 1)
    out = np.full(span * columns + 7, np.nan, dtype=dtype)
    transposed_products.transposed_product(panels, k_lo, k_hi, z, columns, out, 3, ldk, ldc)
    got = out[3: 3 + span * columns].reshape((columns, span) if layout else (span, columns))
    want = z[:, :rows].astype(np.float64) @ a.astype(np.float64)[:, k_lo:k_hi]
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got if layout else got.T, want, rtol=tol, atol=tol * np.sqrt(rows))
    assert np.isnan(out[:3]).all() and np.isnan(out[3 + span * columns:]).all()


def test_own_products_only_where_openblas_runs_narrower_vectors_than_the_kernels(monkeypatch):
    a = b = np.ones((4, 4), dtype=np.float32)
    monkeypatch.setattr(threads, "AVAILABLE", True)
    monkeypatch.setattr(threads, "gemm", mock.Mock(VECTOR_BYTES=64))
    for core, own in (("haswell", True), ("zen", True), ("skylakex", False), ("cooperlake", False), ("", False)):
        monkeypatch.setattr(threads._OPENBLAS, "core", core)
        assert threads.own_products(a, b) == own, core
    monkeypatch.setattr(threads._OPENBLAS, "core", "haswell")
    assert not threads.own_products(a.astype(np.float64), b)  # float32 only
    monkeypatch.setattr(threads, "gemm", mock.Mock(VECTOR_BYTES=32))  # an AVX2 CPU: OpenBLAS's own kernels
    assert not threads.own_products(a, b)


@needs_numba
@pytest.mark.parametrize("shape", [(7, 20000), (300, 700), (33, 2061), (2, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sums_are_the_sums_and_the_same_bits_on_any_thread_count(thread_count, shape, dtype):
    """Rows over threads, 16 lanes and the remainder columns (2061 = 128·16 + 13), a strided input, and a
    small one that NumPy sums: each row's bits are the same whatever the thread count."""
    a = np.random.default_rng(5).standard_normal((shape[0], 2 * shape[1])).astype(dtype)[:, ::2]
    exact = a.astype(np.float64).sum(axis=1)
    sums = []
    for count in (1, 2, 3):
        thread_count(count)
        sums.append(threads.row_sums(a))
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(sums[0], exact, rtol=tolerance, atol=tolerance * np.sqrt(shape[1]))
    assert sums[0].dtype == dtype and sums[0].shape == (shape[0],)
    for other in sums[1:]:
        assert other.tobytes() == sums[0].tobytes()


@needs_numba
@pytest.mark.parametrize("shape", [(600, 4096), (17, 4099), (5, 70001)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_transposed_arrays_row_sums_are_summed_in_place_with_the_copys_bits(thread_count, shape, dtype,
                                                                             monkeypatch):
    """The GRU's and the RNN's gradients (G·H, T·B) are views of (T·B, G·H) arrays: row_sums and row_sums_here
    sum their columns where they lie (no transposing copy, which cost 2.3 ms a call), each sum in the order
    the copy's row would take (16 lanes, the remainder, pairwise): the same bits, on any thread count."""
    a = np.random.default_rng(6).standard_normal(shape[::-1]).astype(dtype).T
    copied = np.ascontiguousarray(a)
    thread_count(1)
    want = threads.row_sums(copied)
    original = np.ascontiguousarray

    def no_transposing_copy(x, *args, **kwargs):
        assert x.flags.c_contiguous, "row_sums copied a transposed array"
        return original(x, *args, **kwargs)

    monkeypatch.setattr(threads.np, "ascontiguousarray", no_transposing_copy)
    for count in (1, 2, 3):
        thread_count(count)
        assert threads.row_sums(a).tobytes() == want.tobytes()
    assert threads.row_sums_here(a).tobytes() == want.tobytes()
    np.testing.assert_allclose(want, a.astype(np.float64).sum(axis=1), rtol=1e-4, atol=1e-3)


def test_a_failing_part_raises_in_the_caller_and_the_pool_still_works():
    def part(k, seen):
        if k == 1:
            raise RuntimeError("part 1 failed")
        seen.append(k)
    seen = []
    with pytest.raises(RuntimeError, match="part 1 failed"):
        threads.run(part, [(0, seen), (1, seen), (2, seen)])
    assert sorted(seen) == [0, 2]  # the other parts ran to their end
    seen.clear()
    threads.run(part, [(0, seen), (2, seen), (3, seen)])
    assert sorted(seen) == [0, 2, 3]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_run_balanced_runs_each_job_once_in_shares_of_near_equal_size(thread_count, count, monkeypatch):
    """One meeting of count() threads (threads.run_shared), each a share of the jobs in turn: every job once,
    the largest first to the least loaded share (sizes 7, 5, 4, 3, 1 on two threads: 7 + 3 and 5 + 4 + 1)."""
    thread_count(count)
    ran, meetings, real = [], [], threads.run_shared
    monkeypatch.setattr(threads, "run_shared", lambda function, sets: meetings.append(sets) or real(function, sets))
    jobs = [(lambda size: ran.append(size), (size,), size) for size in (4, 7, 1, 5, 3)]
    threads.run_balanced(jobs)
    assert sorted(ran) == [1, 3, 4, 5, 7]
    assert len(meetings) == 1
    shares = sorted([arguments[0] for _, arguments in share] for (share,) in meetings[0])
    want = {1: [[7, 5, 4, 3, 1]], 2: [[5, 4, 1], [7, 3]], 3: [[4, 3], [5, 1], [7]]}[count]
    assert shares == want


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
def test_the_grus_and_rnns_weight_packings_run_in_one_meeting_a_part_a_thread(thread_count, monkeypatch):
    """The GRU's forward panels (three blocks a part) and the RNN's split panels (two) pack in one meeting
    of the threads (lstm_panels.gathered_panels), part k's blocks on thread k, not count() blocks at a time in
    turn (the GRU's blocks two at a time took 0.26 ms at hidden 608, one meeting 0.16); with one part, its
    blocks shared by size in one meeting; the same bits as on one thread."""
    from rnnkit.scratch.fast import packing, threaded_gru, threaded_rnn

    rng = np.random.default_rng(0)
    hidden, features = 70, 9

    def weights(gates):
        return (rng.standard_normal((gates * hidden, features)).astype(np.float32),
                rng.standard_normal((gates * hidden, hidden)).astype(np.float32),
                rng.standard_normal(gates * hidden).astype(np.float32),
                rng.standard_normal(gates * hidden).astype(np.float32))

    gru, rnn = weights(3), weights(1)
    packs = {
        ("gru", 2): lambda: threaded_gru.forward_panels(packing.pack("gru", *gru), 2, True),
        ("gru", 1): lambda: threaded_gru.forward_panels(packing.pack("gru", *gru), 1, True, True),
        ("rnn", 2): lambda: threaded_rnn.split_panels(packing.pack("rnn_tanh", *rnn), 2, True)}
    real = threads.run_shared
    for (name, parts), pack in packs.items():
        thread_count(1)
        alone = pack()
        thread_count(2)
        meetings = []
        monkeypatch.setattr(threads, "run_shared", lambda function, sets: meetings.append(sets) or real(function, sets))
        shared = pack()
        monkeypatch.setattr(threads, "run_shared", real)
        assert len(meetings) == 1 and len(meetings[0]) == 2, (name, parts)
        if parts == 2:  # thread k: part k's blocks, in order
            blocks = 3 if name == "gru" else 2
            assert [len(share[0]) for share in meetings[0]] == [blocks, blocks], name
        assert len(alone) == len(shared) == parts
        for a, b in zip(alone, shared):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("idle_spins", [0, threads.IDLE_SPINS])
def test_workers_take_every_job_whether_still_spinning_or_asleep(idle_spins, monkeypatch):
    """A worker spins for its next job for IDLE_SPINS turns, then sleeps until a post wakes it: jobs posted
    back to back (to a spinning worker) and after a pause (to a sleeping one, or with no spinning at all)
    each run exactly once, on their own arguments."""
    monkeypatch.setattr(threads, "IDLE_SPINS", idle_spins)
    monkeypatch.setattr(threads, "_pool", threads.Pool())  # fresh workers
    seen = []
    for round_ in range(40):
        threads.run(lambda k, r: seen.append((r, k)), [(0, round_), (1, round_), (2, round_)])
        if round_ % 10 == 9:
            time.sleep(0.02)  # longer than a worker spins (about 1 ms): it falls asleep
    assert sorted(seen) == [(r, k) for r in range(40) for k in range(3)]

@contextlib.contextmanager
def a_held_worker():
    """The pool's first worker held by a job of its own until the block ends (as a busy neighbour holding its
    core would hold it), on a fresh pool of 2 threads."""
    pool = threads._pool = threads.Pool()
    threads.run_shared(lambda k: None, [(0,), (1,)])  # starts the worker
    worker, started, release = pool._workers[0], threading.Event(), threading.Event()
    worker.post(lambda: started.set() or release.wait(120), ())
    worker.caller_enters()
    assert started.wait(30)
    try:
        yield worker
    finally:
        release.set()
        worker.wait()


@needs_numba
@pytest.mark.parametrize("parts", [2, 3, 5])
def test_shared_parts_each_run_once_and_the_caller_takes_a_held_workers_share(parts, thread_count, monkeypatch):
    """threads.run_shared: every part once, on its own arguments; with the worker held by another job, the
    calling thread runs every part itself and returns while the worker is still held (`run` waited for it);
    the worker, once free, skips that job and takes its share of the next."""
    monkeypatch.setattr(threads, "_pool", threads._pool)
    thread_count(2)
    ran, returned = [], threading.Event()

    def caller():
        threads.run_shared(lambda k: ran.append((k, threading.get_ident())), [(k,) for k in range(parts)])
        returned.set()

    with a_held_worker() as worker:
        calling = threading.Thread(target=caller, daemon=True)
        calling.start()
        assert returned.wait(20), "the caller waited for the held worker"
        assert sorted(ran) == [(k, calling.ident) for k in range(parts)]
        assert not worker.caught_up()  # still held
    assert worker.caught_up()
    barrier = threading.Barrier(2, timeout=30)  # two parts that can only end together, on two threads
    threads.run_shared(lambda k: barrier.wait(), [(0,), (1,)])


@needs_numba
def test_a_shared_parts_error_reaches_the_caller_once_every_part_has_run(thread_count):
    thread_count(2)
    ran = []

    def part(k):
        ran.append(k)
        if k == 1:
            raise ValueError("part 1 failed")

    with pytest.raises(ValueError, match="part 1 failed"):
        threads.run_shared(part, [(k,) for k in range(4)])
    assert sorted(ran) == [0, 1, 2, 3]


@needs_numba
@pytest.mark.parametrize("cell, hidden, batch, features, training", [
    ("gru", 40, 64, 64, True), ("gru", 40, 64, 64, False), ("rnn", 40, 64, 64, True), ("lstm", 40, 64, 64, True),
    ("lstm", 96, 4, 9, True),  # one part and its helper thread (`run_pipeline`), forward and backward
    ("lstm", 200, 12, 9, True), ("lstm", 200, 12, 9, False)])  # the units split: shared_steps.run_steps
def test_layers_give_the_same_bits_when_the_caller_runs_a_held_workers_parts(cell, hidden, batch, features,
                                                                             training, monkeypatch):
    """A layer's call on 2 threads whose worker is held (its column groups, packings, gradient products and
    helper's work all run by the calling thread: `run_shared`) gives the bits of the same call with both
    threads free: each part computes what it would on any thread."""
    from rnnkit.scratch.recurrent import GRU, RNN

    monkeypatch.setattr(threads, "_pool", threads._pool)
    monkeypatch.setattr(threads, "_count_override", 2)  # (the thresholds as they are: one part and its helper)
    layer = {"gru": GRU, "rnn": RNN, "lstm": LSTM}[cell](features, hidden, dtype=np.float32, rng=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 12, features)).astype(np.float32)
    d_out = rng.standard_normal((batch, 12, hidden)).astype(np.float32)
    shared, calls = [], []
    real = threads.run_shared
    monkeypatch.setattr(threads, "run_shared", lambda function, sets, **how: shared.append(
        (function, len(sets), how.get("settled", False))) or real(function, sets, **how))

    def call():
        layer.zero_grad()
        if not training:
            layer.eval()
            with layer.locked_weights():
                return [layer.forward(x)[0].copy()]
        layer.train()
        out = layer.forward(x)[0].copy()
        d_x = layer.backward(d_out)[0].copy()
        return [out, d_x] + [p.grad.copy() for p in layer.parameters()]

    free = call()
    with a_held_worker() as worker:
        shared.clear()
        held = call()
        assert not worker.caught_up()  # held throughout
        assert max(parts for _, parts, _ in shared) > 1  # parts the worker would have shared
        functions = [function for function, _, _ in shared]
        meeting = [function for function, _, settled in shared if settled]  # shared_steps.run_steps
        assert (threads._call in functions) == (batch == 4)  # the helper's jobs
        assert (threaded_lstm.forward_parts in meeting) == (hidden == 200)  # the parts' steps, meeting
        assert (threaded_lstm.backward_parts in meeting) == (hidden == 200 and training)
        assert (threaded_lstm.forward_parts in functions) == (cell == "lstm" and batch != 4)  # or column groups
    for a, b in zip(free, held):
        np.testing.assert_array_equal(a, b)


@needs_numba
def test_openblas_row_parts_are_shared_and_agree_with_a_held_worker(monkeypatch):
    """threads.matmul on OpenBLAS (float64: never gemm.py's kernels) splits a's rows over the threads through
    `run_products`: with the worker held, the calling thread runs both parts and returns the bits of the
    product the two threads made (`run` waited for the held worker)."""
    monkeypatch.setattr(threads, "_pool", threads._pool)
    monkeypatch.setattr(threads, "_count_override", 2)
    if threads._OPENBLAS.local_threads is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS with thread controls")
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((301, 200)), rng.standard_normal((200, 97))
    assert a.shape[0] * a.shape[1] * b.shape[1] > max(threads.OPENBLAS_ONE_THREAD_WORK,
                                                      thresholds.SPLIT_PRODUCT_WORK)  # split in two parts
    free = threads.matmul(a, b)
    np.testing.assert_allclose(free, a @ b, rtol=1e-12, atol=1e-12)
    with a_held_worker() as worker:
        held = threads.matmul(a, b)
        assert not worker.caught_up()
    np.testing.assert_array_equal(held, free)


def test_core_l2_bytes_reads_the_level_2_entry_and_falls_back_where_there_is_none(tmp_path):
    for index, (level, size) in enumerate([("1", "48K"), ("2", "2048K"), ("3", "32M")]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "level").write_text(level + "\n")
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert thresholds.core_l2_bytes(str(tmp_path)) == 2 * 2**20
    (tmp_path / "index1" / "size").write_text("1M\n")
    assert thresholds.core_l2_bytes(str(tmp_path)) == 2**20
    (tmp_path / "index1" / "size").write_text("large\n")
    assert thresholds.core_l2_bytes(str(tmp_path)) == thresholds.DEFAULT_L2_BYTES
    assert thresholds.core_l2_bytes(str(tmp_path / "absent")) == thresholds.DEFAULT_L2_BYTES
    assert thresholds.COLUMN_GROUPS_INFERENCE_BYTES == int(thresholds.COLUMN_GROUPS_INFERENCE_L2_SHARE
                                                           * thresholds.core_l2_bytes())


# --------------------------------------------------------------------------------------- threaded_lstm.py
def test_parts_for_keeps_at_least_32_units_per_thread(thread_count):
    thread_count(4)
    assert [threaded_lstm.parts_for(h) for h in (1, 31, 32, 64, 100, 128, 1024)] == [1, 1, 1, 2, 3, 4, 4]
    thread_count(1)
    assert threaded_lstm.parts_for(1024) == 1


def test_a_small_step_runs_on_one_part(thread_count, monkeypatch):
    monkeypatch.setattr(thresholds, "ONE_PART_WORK", 64 * 64 * 10)  # batch·hidden²
    thread_count(2)
    assert [threaded_lstm.parts_for(64, b) for b in (8, 10, 11)] == [1, 1, 2]
    assert [threaded_lstm.parts_for(128, b) for b in (2, 3)] == [1, 2]
    monkeypatch.setattr(thresholds, "ONE_PART_WORK", 64 * 64 * 64)
    batch = thresholds.SPLIT_INPUT_BATCH  # and only up to the batch whose input is projected apart
    assert [threaded_lstm.parts_for(64, b) for b in (batch, batch + 1)] == [1, 2]
    assert threaded_lstm.parts_for(thresholds.LOOP_HIDDEN, 1) == 2  # a W_hh too big for one core's cache


def _run_layer(layer, x, state, lengths, grads):
    out, (h_n, c_n) = layer.forward(x, state, lengths=lengths)
    d_x, (d_h0, d_c0) = layer.backward(*grads)
    return [out, h_n, c_n, d_x, d_h0, d_c0] + [p.grad.copy() for p in layer.parameters()]


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden, batch", [(128, 1), (160, 3)])
def test_a_forward_in_parts_feeds_the_one_part_backward(dtype, hidden, batch, monkeypatch):
    """Default thresholds, 2 threads: a small training step whose forward runs its units in two parts (the
    inference split, `_forward_group`) and whose backward runs on one part and its helper
    (threaded_lstm.gradients) gives the NumPy path's outputs and gradients to float rounding."""
    rng = np.random.default_rng(hidden + batch)
    time, features = 6, 9
    x = rng.standard_normal((batch, time, features)).astype(dtype)
    state = tuple(rng.standard_normal((1, batch, hidden)).astype(dtype) for _ in range(2))
    grads = [rng.standard_normal(shape).astype(dtype)
             for shape in ((batch, time, hidden), (1, batch, hidden), (1, batch, hidden))]
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    threads.set_count(2)
    try:
        assert threaded_lstm.small_step(hidden, batch) and threaded_lstm.parts_for(hidden, batch, False) == 2
        results = {}
        for path in ("numpy", "numba"):
            monkeypatch.setattr(kernels, "ENABLED", path == "numba")
            layer = LSTM(features, hidden, dtype=dtype, rng=2)
            results[path] = _run_layer(layer, x, state, None, grads)
            assert layer.last_paths == ("threaded" if path == "numba" else "numpy",)
    finally:
        threads.set_count(None)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for a, b in zip(results["numba"], results["numpy"]):
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1.0)


@needs_numba
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(features=st.sampled_from([16, 17, 35, 64]), batch=st.sampled_from([3, 13, 17, 40]),
       hidden=st.sampled_from([24, 96, 200]), batch_first=st.booleans(), ragged=st.booleans(),
       seed=st.integers(0, 2**16))
def test_inputs_of_whole_feature_blocks_give_the_numpy_paths_outputs_and_gradients(features, batch, hidden,
                                                                                    batch_first, ragged, seed,
                                                                                    monkeypatch):
    """Inputs of 16 features or more go into the steps' operand in register blocks (threaded_lstm.copy_inputs,
    gemm.copy_transposed: whole blocks of 16 features, the last rows' block masked, the last features one at
    a time): float32, batch-first (a strided time-major view) or time-major, full and ragged batches, on every
    route (one part and its helper, the unit split, column groups); the outputs, final states and every
    gradient are the NumPy path's to float rounding, in training and in inference."""
    rng = np.random.default_rng(seed)
    time = 5
    x = rng.standard_normal((batch, time, features) if batch_first else (time, batch, features)).astype(np.float32)
    lengths = rng.integers(1, time + 1, batch).tolist() if ragged else None
    grads = [rng.standard_normal(((batch, time) if batch_first else (time, batch)) + (hidden,)).astype(np.float32),
             *(rng.standard_normal((1, batch, hidden)).astype(np.float32) for _ in range(2))]
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    threads.set_count(2)
    try:
        results = {}
        for path in ("numpy", "numba"):
            monkeypatch.setattr(kernels, "ENABLED", path == "numba")
            layer = LSTM(features, hidden, dtype=np.float32, rng=seed, batch_first=batch_first)
            results[path] = _run_layer(layer, x, None, lengths, grads)
            layer.eval()
            with layer.locked_weights():
                results[path].append(layer.forward(x, lengths=lengths)[0])
            assert layer.last_paths == ("threaded" if path == "numba" else "numpy",)
    finally:
        threads.set_count(None)
    for a, b in zip(results["numba"], results["numpy"]):
        assert np.abs(a - b).max() <= 2e-5 * max(np.abs(b).max(), 1.0)


@needs_numba
@pytest.mark.parametrize("hidden, batch", [(64, 40), (192, 20)])  # column groups, the unit split
def test_a_read_only_input_trains_with_a_writeable_copys_bits(hidden, batch, thread_count):
    """A time-major float32 input the caller cannot write (np.load's memory maps, safetensors' buffers) is
    the forward's operand as it is; the weight gradients' products take it beside h (one call, two
    operands of one type): the same outputs and gradients, to the bit, as a writeable copy's."""
    thread_count(2)
    x = np.random.default_rng(5).standard_normal((9, batch, 16)).astype(np.float32)
    frozen = x.copy()
    frozen.setflags(write=False)
    results = []
    for given in (x, frozen):
        layer = LSTM(16, hidden, dtype=np.float32, rng=2, batch_first=False)
        out, _ = layer.forward(given)
        dx = layer.backward(np.ones_like(out))[0]
        results.append([out, dx] + [p.grad.copy() for _, p in layer.named_parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@needs_numba
@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 140), depth=st.integers(1, 70), time=st.integers(1, 40), double=st.booleans(),
       seed=st.integers(0, 2**31))
def test_steps_as_rows_gives_the_one_column_products_bits(rows, depth, time, double, seed):
    """threaded_lstm.steps_as_rows (a one-column forward's input projections for all steps at once, the steps
    as rows): xw[t] = A z_t with gemm_rows_wide's bits a step at a time, for any number of steps (whole
    panels of 12 and the rest) and of rows."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    panels = gemm.pack_wide_row_panels(a)
    operand = rng.standard_normal((time, depth)).astype(dtype)
    out = np.full((time, panels.shape[0] * panels.shape[2]), np.nan, dtype=dtype)
    threaded_lstm.steps_as_rows(panels, operand, out)
    step = np.empty(out.shape[1], dtype=dtype)
    for t in range(time):
        gemm.gemm_rows_wide(panels, operand[t].copy(), 0, 1, 1, step, 1)
        np.testing.assert_array_equal(out[t], step)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden, time", [(64, 30), (96, 12), (160, 5)])
def test_a_one_column_forward_projects_its_steps_as_rows_with_a_wider_batchs_bits(dtype, hidden, time, thread_count):
    """Batch 1 projects the inputs of all steps in one product, the steps its rows
    (threaded_lstm.steps_as_rows: whole panels of 12 steps and the last few apart); batch 2 a step at
    a time. The same chain per entry: the first sequence's outputs and states are the same bits either way,
    on 1 and 2 threads, in training and inference."""
    rng = np.random.default_rng(hidden)
    x = rng.standard_normal((2, time, 9)).astype(dtype)
    for count in (1, 2):
        thread_count(count)
        layer = LSTM(9, hidden, dtype=dtype, rng=3)
        with mock.patch.dict(os.environ, {"RNNKIT_PATH": "threaded"}):
            alone, pair = layer.forward(x[:1]), layer.forward(x)
            layer.eval()
            with layer.locked_weights():
                inferred = layer.forward(x[:1])
            assert layer.last_paths == ("threaded",)
        np.testing.assert_array_equal(alone[0], pair[0][:1])
        for a, b in zip(alone[1], pair[1]):
            np.testing.assert_array_equal(a, b[:, :1])
        np.testing.assert_array_equal(inferred[0], alone[0])


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("batch", [2, 9, 19])  # the tall row kernel, the row kernel, the column kernel
def test_threaded_lstm_matches_the_numpy_path_and_every_thread_count(dtype, ragged, batch, thread_count,
                                                                     monkeypatch):
    """A 2-layer bidirectional LSTM, hidden 96 (up to 3 parts): the NumPy path's results to float rounding,
    and the same forward bits for 1, 2 and 3 threads (a row's sum does not depend on the split)."""
    rng = np.random.default_rng(11)
    time, features, hidden = 7, 10, 96
    x = rng.standard_normal((batch, time, features)).astype(dtype)
    state = tuple(rng.standard_normal((4, batch, hidden)).astype(dtype) for _ in range(2))
    lengths = rng.integers(1, time + 1, batch).tolist() if ragged else None
    grads = [rng.standard_normal(shape).astype(dtype)
             for shape in ((batch, time, 2 * hidden), (4, batch, hidden), (4, batch, hidden))]
    results = {}
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    for path, count in (("numpy", 1), ("numba", 1), ("numba", 2), ("numba", 3)):
        monkeypatch.setattr(kernels, "ENABLED", path == "numba")
        thread_count(count)
        layer = LSTM(features, hidden, num_layers=2, bidirectional=True, dtype=dtype, rng=5)
        results[path, count] = _run_layer(layer, x, state, lengths, grads)
        assert layer.last_paths == ("threaded" if path == "numba" else "numpy",) * 2
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for a, b in zip(results["numba", 1], results["numpy", 1]):
        assert a.dtype == dtype
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1.0)
    for count in (2, 3):
        forward, backward = results["numba", count][:3], results["numba", count][3:]
        for a, b in zip(forward, results["numba", 1][:3]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(backward, results["numba", 1][3:]):  # (OpenBLAS sums a split product's rows its own way)
            assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1.0)


@needs_numba
def test_backward_leaves_the_forwards_arrays_and_the_callers_gradients_alone(thread_count):
    thread_count(2)
    rng = np.random.default_rng(2)
    layer = LSTM(6, 64, dtype=np.float64, rng=3)
    x = rng.standard_normal((8, 5, 6))
    grads = [rng.standard_normal((8, 5, 64)), rng.standard_normal((1, 8, 64)), rng.standard_normal((1, 8, 64))]
    kept = [g.copy() for g in grads]
    layer.forward(x)
    first = [a.copy() for a in _backward(layer, grads)]
    second = _backward(layer, grads)  # a second backward of the same forward gives the same
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    for before, after in zip(kept, grads):
        np.testing.assert_array_equal(before, after)


def _backward(layer, grads):
    for p in layer.parameters():
        p.grad[...] = 0
    d_x, (d_h0, d_c0) = layer.backward(*grads)
    return [d_x, d_h0, d_c0] + [p.grad.copy() for p in layer.parameters()]


@needs_numba
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_the_threaded_lstm():
    """Worker threads do not survive fork(): the child starts its own instead of waiting for the parent's."""
    code = """
import multiprocessing as mp
import numpy as np
from rnnkit.scratch.fast import threads
from rnnkit.scratch.recurrent import LSTM

def forward(queue):
    layer = LSTM(4, 64, rng=0)
    queue.put(float(layer.forward(np.ones((8, 3, 4), dtype=np.float32))[0].sum()))

threads.set_count(2)
parent = float(LSTM(4, 64, rng=0).forward(np.ones((8, 3, 4), dtype=np.float32))[0].sum())  # starts a worker
queue = mp.get_context("fork").Queue()
child = mp.get_context("fork").Process(target=forward, args=(queue,))
child.start()
print(parent == queue.get(timeout=60))
child.join(60)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_the_engine_imports_and_runs_without_numba():
    code = """
import sys
from unittest import mock
sys.modules["numba"] = None  # as if numba were not installed
import numpy as np
from rnnkit.scratch.fast import kernels
from rnnkit.scratch.recurrent import LSTM
layer = LSTM(3, 40, dtype=np.float64, rng=0)
out, _ = layer.forward(np.ones((8, 4, 3)))
layer.backward(np.ones_like(out))
print(kernels.AVAILABLE, out.shape)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False (8, 4, 40)"


@needs_numba
@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_threaded_lstm_matches_torch(count, use_lengths, thread_count, monkeypatch):
    """torch.nn.LSTM with copied weights, float64, 1e-9: outputs, states and every gradient, on 2 and 3
    threads (hidden 96: the parity suite's small layers run on one)."""
    pytest.importorskip("torch")
    from test_recurrent_parity import assert_parity, run_both

    monkeypatch.setattr(kernels, "ENABLED", True)
    thread_count(count)
    assert threaded_lstm.parts_for(96) == count
    lengths = [6, 2, 5, 6, 1, 3, 4] if use_lengths else None
    assert_parity(run_both("lstm", batch=7, time=6, inputs=5, hidden=96, layers=2, bidirectional=True,
                           lengths=lengths, with_state=True, seed=4))


@needs_numba
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(batch=st.integers(2, 40), hidden=st.sampled_from([64, 70, 96]), time=st.integers(1, 6),
       count=st.integers(2, 3), ragged=st.booleans(), double=st.booleans(), seed=st.integers(0, 2**16))
def test_column_groups_give_the_unit_splits_outputs_to_the_bit_and_its_gradients_to_rounding(
        batch, hidden, time, count, ragged, double, seed, thread_count, monkeypatch):
    """Where the batch runs in column groups (threaded_lstm.column_groups: each group of columns a layer of
    its own, all units, on its thread), the outputs and final states are those of the units split over the
    threads, to the bit, in training and in inference; the gradients agree to rounding: the weight gradients
    are summed over each group's columns and then over the groups, and each group's input gradient is a
    product of its own (threaded_lstm.split_gradients), whose bits OpenBLAS's kernels may choose by the
    product's shape: a 2-layer bidirectional LSTM, full and ragged batches, 2-3 groups, float32 and
    float64."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, 5)).astype(dtype)
    state = tuple(rng.standard_normal((4, batch, hidden)).astype(dtype) for _ in range(2))
    lengths = rng.integers(1, time + 1, batch).tolist() if ragged else None
    grads = [rng.standard_normal(shape).astype(dtype)
             for shape in ((batch, time, 2 * hidden), (4, batch, hidden), (4, batch, hidden))]
    thread_count(count)
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    results = {}
    for work in (None, 1):  # never in groups / in groups wherever the units would be split
        monkeypatch.setattr(thresholds, "COLUMN_GROUPS_WORK", work or 10**9)
        monkeypatch.setattr(thresholds, "COLUMN_GROUPS_NARROW_WORK", work or 10**9)
        assert len(threaded_lstm.column_groups(hidden, batch)) == (min(count, batch) if work else 1)
        layer = LSTM(5, hidden, num_layers=2, bidirectional=True, dtype=dtype, rng=seed)
        results[work] = _run_layer(layer, x, state, lengths, grads)
        layer.eval()
        with layer.locked_weights():
            out, (h_n, c_n) = layer.forward(x, state, lengths=lengths)
        results[work] += [out, h_n, c_n]
        assert layer.last_paths == ("threaded", "threaded")
    gradients = len(results[1]) - 6  # [out, h_n, c_n] + [d_x, d_h0, d_c0, weight gradients] + inference's 3
    for k, (a, b) in enumerate(zip(results[1], results[None])):
        if 3 <= k < 3 + gradients:
            np.testing.assert_allclose(a, b, rtol=1e-12 if double else 2e-5, atol=(1e-12 if double else 2e-5)
                                       * np.abs(b).max())
        else:
            np.testing.assert_array_equal(a, b)


def _both_modes(layer, x, lengths=None):
    """The layer's training forward and its inference forward (eval mode, weights locked), each as [out, h_n,
    c_n]."""
    trained = layer.forward(x, lengths=lengths)
    layer.eval()
    with layer.locked_weights():
        inferred = layer.forward(x, lengths=lengths)
    return [trained[0], *trained[1]], [inferred[0], *inferred[1]]


@needs_numba
@pytest.mark.parametrize("hidden, batch", [(128, 4), (128, 8), (128, 12), (96, 12)])
def test_inference_gives_the_training_forwards_bits_where_only_training_runs_one_part(hidden, batch,
                                                                                      monkeypatch):
    """With the default thresholds on 2 threads, shapes whose training forward runs on one part (and its
    helper) while the inference forward runs in two parts or in column groups: the same input split, the
    same bits."""
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    threads.set_count(2)
    try:
        assert threaded_lstm.small_step(hidden, batch) and not threaded_lstm.small_step(hidden, batch, False)
        x = np.random.default_rng(batch).standard_normal((batch, 9, 64)).astype(np.float32)
        trained, inferred = _both_modes(LSTM(64, hidden, dtype=np.float32, rng=0), x)
    finally:
        threads.set_count(None)
    for a, b in zip(trained, inferred):
        np.testing.assert_array_equal(a, b)


@needs_numba
@pytest.mark.parametrize("hidden, batch, ragged", [(32, 24, False), (24, 17, True), (64, 13, True), (8, 48, False)])
def test_narrow_steps_run_column_groups_in_both_modes_with_the_same_bits(hidden, batch, ragged, monkeypatch):
    """Small hidden sizes with more than SPLIT_INPUT_BATCH columns and batch·hidden from
    COLUMN_GROUPS_NARROW_WORK (below COLUMN_GROUPS_WORK): training and inference run in column groups on 2
    threads (one part left the second core idle: training at hidden 48 batch 13-20 took 1.3-1.4x the
    groups' time); the outputs and final states are the same bits in both modes."""
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    assert thresholds.COLUMN_GROUPS_NARROW_WORK <= batch * hidden < thresholds.COLUMN_GROUPS_WORK
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 9, 64)).astype(np.float32)
    lengths = rng.integers(1, 10, batch).tolist() if ragged else None
    threads.set_count(2)
    try:
        assert len(threaded_lstm.column_groups(hidden, batch, training=False)) == 2
        assert len(threaded_lstm.column_groups(hidden, batch, training=True)) == 2
        assert not threaded_lstm.small_step(hidden, batch, training=False)
        assert not threaded_lstm.small_step(hidden, batch, training=True)
        trained, inferred = _both_modes(LSTM(64, hidden, dtype=np.float32, rng=0), x, lengths)
    finally:
        threads.set_count(None)
    for a, b in zip(trained, inferred):
        np.testing.assert_array_equal(a, b)
    assert np.abs(inferred[0]).min() > 0 or ragged


@needs_numba
@pytest.mark.parametrize("hidden", [128, 160])
def test_narrow_inference_from_hidden_128_splits_the_units_below_the_split_batch(hidden):
    """In inference at hidden 128-160 (COLUMN_GROUPS_HIDDEN) fewer than COLUMN_GROUPS_SPLIT_BATCH columns split
    the units over the 2 threads (column groups of 6 columns or fewer were slower), from it column groups;
    below hidden 128 the alternative is one part, and column groups stay (their bits: the tests above)."""
    split = thresholds.COLUMN_GROUPS_SPLIT_BATCH
    threads.set_count(2)
    try:
        below = threaded_lstm.column_groups(hidden, split - 1, training=False)
        assert below == [(0, split - 1)] and threaded_lstm.parts_for(hidden, split - 1, training=False) == 2
        assert threaded_lstm.column_groups(hidden, split, training=False) == [(0, split // 2), (split // 2, split)]
        assert len(threaded_lstm.column_groups(96, split - 1, training=False)) == 2
    finally:
        threads.set_count(None)


@needs_numba
@pytest.mark.parametrize("ragged", [False, True])
def test_wide_inference_streams_weights_beyond_the_cache_in_column_groups_with_the_unit_splits_bits(ragged,
                                                                                                    monkeypatch):
    """In inference above COLUMN_GROUPS_HIDDEN with weights beyond COLUMN_GROUPS_INFERENCE_BYTES, column groups
    run from COLUMN_GROUPS_STREAM_COLUMNS columns a group (on 2 threads and on 3: the columns a group count,
    not the batch), below it the units split; training keeps the unit split. The groups' outputs and final
    states are the training forward's (units split) to the bit."""
    hidden, wide = 200, 2 * thresholds.COLUMN_GROUPS_STREAM_COLUMNS
    monkeypatch.setattr(thresholds, "COLUMN_GROUPS_INFERENCE_BYTES", 0)  # any weights are beyond it
    rng = np.random.default_rng(wide)
    x = rng.standard_normal((wide, 5, 64)).astype(np.float32)
    lengths = rng.integers(1, 6, wide).tolist() if ragged else None
    try:
        threads.set_count(3)
        assert threaded_lstm.column_groups(hidden, wide, training=False, weight_bytes=1) == [(0, wide)]
        threads.set_count(2)
        assert threaded_lstm.column_groups(hidden, wide, training=False, weight_bytes=1) == [
            (0, wide // 2), (wide // 2, wide)]
        assert threaded_lstm.column_groups(hidden, wide - 1, training=False, weight_bytes=1) == [(0, wide - 1)]
        assert threaded_lstm.column_groups(hidden, wide, training=True, weight_bytes=1) == [(0, wide)]
        layer = LSTM(64, hidden, dtype=np.float32, rng=0)
        trained, inferred = _both_modes(layer, x, lengths)
    finally:
        threads.set_count(None)
    assert layer.last_paths == ("threaded",)
    for a, b in zip(trained, inferred):
        np.testing.assert_array_equal(a, b)


@needs_numba
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 40), hidden=st.sampled_from([7, 64, 96, 129]), time=st.integers(1, 6),
       count=st.integers(1, 3), ragged=st.booleans(), seed=st.integers(0, 2**16))
def test_inference_forward_keeps_no_trace_and_gives_the_training_forwards_bits(batch, hidden, time, count, ragged,
                                                                               seed, thread_count):
    """Eval mode with locked weights runs threaded_lstm.inference_forward: the gates, c and tanh c of one
    step or two, reused step after step, instead of the whole trace. Its outputs and final states are the
    training forward's to the bit, on 1-3 threads (one part or several), full and ragged batches, odd and
    even lengths (the slots' turn); a backward after it is a clear error."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, 5))
    state = tuple(rng.standard_normal((2, batch, hidden)) for _ in range(2))
    lengths = rng.integers(1, time + 1, batch).tolist() if ragged else None
    thread_count(count)
    layer = LSTM(5, hidden, num_layers=2, dtype=np.float64, rng=seed)
    with mock.patch.dict(os.environ, {"RNNKIT_PATH": "threaded"}):
        trained = layer.forward(x, state, lengths=lengths)
        layer.eval()
        with layer.locked_weights():
            inferred = layer.forward(x, state, lengths=lengths)
            assert layer.last_paths == ("threaded", "threaded")
            with pytest.raises(ValueError, match="backward\\(\\) after an inference forward"):
                layer.backward(np.ones_like(inferred[0]))
    for a, b in zip([trained[0], *trained[1]], [inferred[0], *inferred[1]]):
        np.testing.assert_array_equal(a, b)


@needs_numba
@pytest.mark.parametrize("hidden, batch, ragged", [(200, 21, False), (256, 17, True)])
def test_inference_runs_column_groups_above_the_training_hidden_limit_with_the_unit_splits_bits(
        hidden, batch, ragged, monkeypatch):
    """Above thresholds.COLUMN_GROUPS_HIDDEN the inference forward runs in column groups where its weights
    fit COLUMN_GROUPS_INFERENCE_BYTES (training keeps the unit split, and so does inference with a wider
    input): its outputs and final states are the unit split's to the bit, on 2 threads."""
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    small = 4 * hidden * (hidden + 9) * 4  # the layer's weights in bytes
    monkeypatch.setattr(thresholds, "COLUMN_GROUPS_INFERENCE_BYTES", small)  # (the machine's L2 sets it)
    rng = np.random.default_rng(hidden)
    x = rng.standard_normal((batch, 7, 8)).astype(np.float32)
    lengths = rng.integers(1, 8, batch).tolist() if ragged else None
    threads.set_count(2)
    try:
        assert len(threaded_lstm.column_groups(hidden, batch, training=False, weight_bytes=small)) == 2
        assert len(threaded_lstm.column_groups(hidden, batch, training=True, weight_bytes=small)) == 1
        assert len(threaded_lstm.column_groups(hidden, batch, training=False, weight_bytes=10**7)) == 1
        layer = LSTM(8, hidden, dtype=np.float32, rng=1)
        layer.eval()
        results = []
        for limit in (small, 0):  # in groups, then units split
            monkeypatch.setattr(thresholds, "COLUMN_GROUPS_INFERENCE_BYTES", limit)
            with layer.locked_weights():
                out, (h_n, c_n) = layer.forward(x, lengths=lengths)
            results.append((out, h_n, c_n))
    finally:
        threads.set_count(None)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[0][0][:, :2], np.zeros_like(results[0][0][:, :2]))


@needs_numba
@pytest.mark.parametrize("ragged", [False, True])
def test_backward_of_column_groups_puts_their_d_pre_side_by_side(ragged, monkeypatch):
    """threaded_lstm.backward on a forward in column groups (the layer takes split_gradients instead): the
    groups' d_pre side by side, (4H, T·B), whose products and row sums are split_gradients' to rounding and
    whose dh_0, dc_0 are its own to the bit."""
    from rnnkit.scratch.fast import packing

    rng = np.random.default_rng(7)
    time, batch, features, hidden = 5, 40, 6, 64
    monkeypatch.setattr(thresholds, "COLUMN_GROUPS_WORK", 1)
    threads.set_count(2)
    try:
        assert len(threaded_lstm.column_groups(hidden, batch)) == 2
        weights = [rng.standard_normal(shape) * 0.3 for shape in
                   ((4 * hidden, features), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,))]
        p = packing.pack("lstm", *weights)
        x = rng.standard_normal((time, batch, features))
        h0, c0, dh_n, dc_n = (rng.standard_normal((batch, hidden)) for _ in range(4))
        d_out = rng.standard_normal((time, batch, hidden))
        lengths = np.sort(rng.integers(1, time + 1, batch))[::-1] if ragged else np.full(batch, time)
        active = [int((lengths > t).sum()) for t in range(time)]
        trace = threaded_lstm.forward(p, x, h0, c0, active)
        d_pre, _, dh_0, dc_0 = threaded_lstm.backward(p, trace, d_out, dh_n, dc_n, active)
        dw_ih, dw_hh, db, dx, dh_split, dc_split = threaded_lstm.split_gradients(p, trace, x, d_out, dh_n, dc_n,
                                                                                 active)
    finally:
        threads.set_count(None)
    assert d_pre.shape == (4 * hidden, time * batch)
    np.testing.assert_array_equal(dh_0, dh_split)
    np.testing.assert_array_equal(dc_0, dc_split)
    for got, want in ((d_pre @ x.reshape(time * batch, -1), dw_ih),
                      (d_pre @ trace.h[:-1].reshape(time * batch, -1), dw_hh), (d_pre.sum(axis=1), db),
                      ((d_pre.T @ p.w_ih).reshape(time, batch, -1), dx)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@needs_numba
@settings(max_examples=12, deadline=None)
@given(hidden=st.sampled_from([16, 35, 64]), batch=st.integers(8, 40), time=st.integers(1, 5),
       features=st.integers(1, 20), extra=st.sampled_from([0, 7]), seed=st.integers(0, 2**16))
def test_group_products_from_the_steps_give_the_d_pre_copys_bits(hidden, batch, time, features, extra, seed):
    """A column group's weight and input gradients from its d_steps as the steps wrote them (T, 4H, L), d packed
    straight from them (threaded_lstm._group_step_products), against the same products on d copied to
    (4H, T·B) first (_group_products, on gemm.py's kernels): dW_ih, dW_hh and dx to the bit, db to rounding;
    4H not a whole number of panels, batches not whole vectors, padding columns past the batch (L > B)."""
    from rnnkit.scratch.fast import packing

    rng = np.random.default_rng(seed)
    dtype = np.float32
    p = packing.pack("lstm", *(rng.standard_normal(shape).astype(dtype) for shape in
                               ((4 * hidden, features), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,))))
    columns = batch + extra
    d_steps = rng.standard_normal((time, 4 * hidden, columns)).astype(dtype)
    inputs = rng.standard_normal((time, batch, features)).astype(dtype)
    h_prev = rng.standard_normal((time, batch, hidden)).astype(dtype)
    d_pre = np.ascontiguousarray(d_steps[:, :, :batch].transpose(1, 0, 2))
    found, expected = [None], [None]
    dx_found = np.full((batch, time, features), np.nan, dtype=dtype).transpose(1, 0, 2)
    dx_expected = np.empty((time, batch, features), dtype=dtype)
    with mock.patch.object(threads, "own_products", lambda a, b: a.dtype == b.dtype == np.float32):
        threaded_lstm._group_products(p, d_pre, inputs, h_prev, dx_expected, expected, 0, False)
    threaded_lstm._group_step_products(p, d_steps, inputs, h_prev, dx_found, found, 0, False)
    dw_ih, dw_hh, db = found[0]
    np.testing.assert_array_equal(dw_ih, expected[0][0])
    np.testing.assert_array_equal(dw_hh, expected[0][1])
    np.testing.assert_array_equal(dx_found, dx_expected)
    np.testing.assert_allclose(db, d_pre.sum(axis=(1, 2), dtype=np.float64), rtol=1e-6, atol=1e-5)


@needs_numba
@pytest.mark.parametrize("hidden, batch, ragged", [(100, 16, False), (70, 21, True), (200, 35, False),
                                                   (64, 13, True)])
def test_a_unit_splits_gradients_from_the_steps_give_the_d_pre_copys_bits(hidden, batch, ragged, thread_count,
                                                                          monkeypatch):
    """A unit split's weight and input gradients taken from d_steps as the steps wrote them
    (threaded_lstm._step_gradients: d packed straight into panels, dx step by step) against the same
    products on d copied to (4H, T·B) first, both on gemm.py's kernels: d_x, dW_ih and dW_hh to the bit, the
    biases' gradients to rounding (summed in another order); and the same bits on 1, 2 and 3 threads. 4H
    not a whole number of panels, batches not whole vectors, ragged sequences."""
    rng = np.random.default_rng(hidden + batch)
    time, features = 4, 9
    dtype = np.float32
    x = rng.standard_normal((batch, time, features)).astype(dtype)
    state = tuple(rng.standard_normal((1, batch, hidden)).astype(dtype) for _ in range(2))
    lengths = rng.integers(1, time + 1, batch).tolist() if ragged else None
    grads = [rng.standard_normal(shape).astype(dtype)
             for shape in ((batch, time, hidden), (1, batch, hidden), (1, batch, hidden))]
    monkeypatch.setenv("RNNKIT_PATH", "threaded")
    monkeypatch.setattr(thresholds, "COLUMN_GROUPS_WORK", 10**9)  # the units split, never column groups
    monkeypatch.setattr(thresholds, "COLUMN_GROUPS_NARROW_WORK", 10**9)
    monkeypatch.setattr(threads, "own_products", lambda a, b: a.dtype == b.dtype == np.float32)
    monkeypatch.setattr(threads, "own_kernels", lambda dtype: np.dtype(dtype) == np.float32)
    calls = []
    original = threaded_lstm._step_gradients
    monkeypatch.setattr(threaded_lstm, "_step_gradients", lambda *a: calls.append(1) or original(*a))
    results = {}
    for count in (1, 2, 3):
        thread_count(count)
        results[count] = _run_layer(LSTM(features, hidden, dtype=dtype, rng=5), x, state, lengths, grads)
    assert len(calls) == 3
    monkeypatch.setattr(thresholds, "STEP_GRADIENTS_BATCH", 10**6)  # the products on d_pre
    thread_count(2)
    copied = _run_layer(LSTM(features, hidden, dtype=dtype, rng=5), x, state, lengths, grads)
    assert len(calls) == 3
    names = [name for name, _ in LSTM(features, hidden, dtype=dtype, rng=5).named_parameters()]
    for count in (2, 3):
        for a, b in zip(results[count], results[1]):
            np.testing.assert_array_equal(a, b)
    for k, (a, b) in enumerate(zip(results[2], copied)):
        if k >= 6 and names[k - 6].startswith("bias"):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
        else:
            np.testing.assert_array_equal(a, b)


@needs_numba
@pytest.mark.parametrize("hidden, batch, features, one_part", [(128, 12, 64, True), (128, 12, 512, False),
                                                               (100, 2, 512, True)])
def test_a_wide_input_trains_the_small_step_in_two_parts(hidden, batch, features, one_part, monkeypatch):
    """A small training step runs on one part while its helper thread's share (the input projection and the
    weight gradients, thresholds.ONE_PART_HELPER_WORK) keeps up with the steps: hidden 128, batch 12 with 64
    inputs; with 512 the helper outlasted the steps (1.33x two parts' time), so the units split. At batch 2
    with 512 inputs the helper projects the inputs too (HELPER_PROJECTION_WORK). Each way the NumPy path's
    outputs and gradients."""
    from rnnkit.scratch import fast

    assert threaded_lstm.small_step(hidden, batch, True, features) == one_part
    assert threaded_lstm.small_step(hidden, batch)  # (the input not bounded)
    assert (batch * features >= thresholds.HELPER_PROJECTION_WORK) or batch >= thresholds.HELPER_PROJECTION_BATCH
    chosen = fast.select("lstm", batch, hidden, np.float64, time=9, inputs=features)
    assert chosen.path == "threaded" and (chosen.gradients is threaded_lstm.gradients) == one_part
    rng = np.random.default_rng(features)
    x, d_out = rng.standard_normal((batch, 9, features)), rng.standard_normal((batch, 9, hidden))
    results = []
    threads.set_count(2)
    try:
        assert threaded_lstm.parts_for(hidden, batch, True, features) == (1 if one_part else 2)
        for path in ("numpy", ""):
            monkeypatch.setenv("RNNKIT_PATH", path)
            layer = LSTM(features, hidden, dtype=np.float64, rng=0)
            out, _ = layer.forward(x)
            d_x, _ = layer.backward(d_out)
            assert layer.last_paths == ("threaded" if not path else "numpy",)
            results.append([out, d_x, *(p.grad for _, p in layer.named_parameters())])
    finally:
        threads.set_count(None)
    for want, got in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@needs_numba
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hidden=st.integers(1, 140), depth=st.sampled_from([1, 3, 10, 257, 300]),
       features=st.sampled_from([1, 9, 16, 33]), seed=st.integers(0, 2**16))
def test_weight_products_add_into_the_gradients_in_pytorchs_gate_order(hidden, depth, features, seed, thread_count,
                                                                       monkeypatch):
    """threaded_lstm.add_weight_products: dW_ih = d x^T and dW_hh = d h^T, d's rows in packed gate order (i, f,
    o, g), added into gradients that hold values already, in PyTorch's order (i, f, g, o): to rounding the
    NumPy sums; rows and columns nowhere near whole panels or vectors, K past a block of 256, hidden past a
    column block of 512 (at 4H rows); only the gradients' own entries written; the same bits on 1, 2 and 3
    threads (each split's rows cut anywhere, also inside a gate block)."""
    from rnnkit.scratch.fast import packing

    monkeypatch.setattr(thresholds, "SPLIT_PRODUCT_WORK", 0)  # every product split over the threads
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((4 * hidden, depth)).astype(np.float32)
    x = rng.standard_normal((depth, 1, features)).astype(np.float32)
    h = rng.standard_normal((depth, 1, hidden)).astype(np.float32)
    start = [rng.standard_normal((4 * hidden, k)).astype(np.float32) for k in (features, hidden)]
    rows = packing.row_index("lstm", hidden)  # packed row k is PyTorch's row rows[k]
    expected = [g.copy() for g in start]
    for g, b in zip(expected, (x, h)):
        g[rows] += (d.astype(np.float64) @ b[:, 0].astype(np.float64)).astype(np.float32)
    results = []
    for count in (1, 2, 3):
        thread_count(count)
        into = [np.pad(g, ((1, 1), (0, 0)), constant_values=np.nan) for g in start]  # NaN rows: nothing after
        threaded_lstm.add_weight_products(d, x, h, tuple(g[1:-1] for g in into))      # the last row written
        for g in into:
            assert np.isnan(g[[0, -1]]).all()
        results.append([g[1:-1] for g in into])
    for got, want in zip(results[0], expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * depth)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_array_equal(a, b)
