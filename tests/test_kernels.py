"""The optional numba kernels: their float32 tanh, their agreement with the NumPy path, and the switches."""
import os
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.scratch import fast
from rnnkit.scratch.fast import kernels, lstm_cell
from rnnkit.scratch.recurrent import LSTM

needs_numba = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")


@needs_numba
def test_float32_tanh_is_within_a_few_ulp_and_odd():
    x = np.concatenate([np.linspace(0, 12, 400_001), np.geomspace(1e-30, 12, 20_000)]).astype(np.float32)
    x = np.concatenate([x, -x])
    out = np.empty_like(x)
    kernels.tanh(x, out)
    exact = np.tanh(x.astype(np.float64))
    ulps = np.abs(out - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() <= 8
    np.testing.assert_array_equal(out[: len(x) // 2], -out[len(x) // 2:])
    assert np.all(np.abs(out) <= 1)


@needs_numba
def test_float32_tanh_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-30, 9.0, -50.0], dtype=np.float32)
    out = np.empty_like(x)
    kernels.tanh(x, out)
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], np.array([1, -1, 0, 1e-30, 1, -1], dtype=np.float32))


def _cell_operands(dtype, length):
    """Nine operands of a cell pass (pre ×4, x ×4, c_prev) with edge values (signed zeros, saturating and
    tiny arguments, the tanh's clamp and its small-argument branch, NaN) at positions that differ by operand."""
    rng = np.random.default_rng(length)
    edges = np.array([0.0, -0.0, 30.0, -30.0, 1e-5, -1e-5, np.nan, 7.9, -7.91, 4e-4, -3.99e-4], dtype=dtype)
    operands = [rng.standard_normal(length).astype(dtype) * 3 for _ in range(9)]
    for k, a in enumerate(operands):
        run = a[(3 * k) % length:][:len(edges)]
        run[:] = edges[:len(run)]
    return operands[:4], operands[4:8], operands[8]


def _passes(pre, x, c_prev, split, whole=True):
    """Both passes' outputs as bytes: over the whole arrays at once, or (whole False) one entry a call."""
    dtype, length = c_prev.dtype, len(c_prev)
    gates = [np.empty(length, dtype) for _ in range(4)]
    cell, squashed, h, state_cell, state_h = (np.empty(length, dtype) for _ in range(5))
    half = dtype.type(0.5)
    for j in ([slice(None)] if whole else [slice(j, j + 1) for j in range(length)]):
        lstm_cell.lstm_cell_pass(*(a[j] for a in pre), *(a[j] for a in x), split, *(a[j] for a in gates), c_prev[j],
                                 cell[j], squashed[j], h[j], half)
        lstm_cell.lstm_state_pass(*(a[j] for a in pre), *(a[j] for a in x), split, c_prev[j], state_cell[j],
                                  state_h[j], half)
    return [a.tobytes() for a in (*gates, cell, squashed, h)], [state_cell.tobytes(), state_h.tobytes()], h


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("length", [1, 15, 16, 37])
def test_inference_state_pass_gives_the_cell_passs_c_and_h_bits(dtype, split, length):
    """lstm_state_pass (an inference step: no gates or tanh c stored) writes the c_{t+1} and h_{t+1} of
    lstm_cell_pass to the bit, with and without the input's part added, through signed zeros, saturated
    gates and NaN, in the vector body and the remainder."""
    pre, x, c_prev = _cell_operands(dtype, length)
    traced, state, h = _passes(pre, x, c_prev, split)
    assert traced[4:5] + traced[6:7] == state
    if length >= 15:  # the edges were reached: NaN passed through, and real values beside it
        assert np.isnan(h).any() and np.isfinite(h).any()


@needs_numba
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("length", [lstm_cell.LANES if kernels.AVAILABLE else 16, 3 * 16 + 5, 100])
def test_the_passes_whole_vectors_give_the_scalar_loops_bits(split, length):
    """float32's whole vectors (lstm_cell.py's IR blocks, 16 lanes with AVX-512) compute every lane as the
    scalar loop computes one entry (a call of one entry runs only that loop): gates, c, tanh c and h to the
    bit, the edge values included."""
    pre, x, c_prev = _cell_operands(np.float32, length)
    whole, one_by_one = _passes(pre, x, c_prev, split), _passes(pre, x, c_prev, split, whole=False)
    assert whole[0] == one_by_one[0] and whole[1] == one_by_one[1]


@needs_numba
def test_float64_tanh_is_libms():
    x = np.linspace(-20, 20, 10_001)
    out = np.empty_like(x)
    kernels.tanh(x, out)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-15, atol=0)


@needs_numba
@pytest.mark.parametrize("rows", [1, 7, 128])  # below, off and on the four-row unrolling
def test_rows_mat_sums_over_rows_in_order(rows):
    rng = np.random.default_rng(rows)
    v = rng.standard_normal(rows).astype(np.float32)
    w = rng.standard_normal((rows, 37)).astype(np.float32)
    expected = np.zeros(37, dtype=np.float32)
    for k in range(rows):  # float32 throughout, k = 0, 1, 2, ... one at a time
        expected = expected + v[k] * w[k]
    out = np.full((1, 37), np.nan, dtype=np.float32)
    kernels.rows_mat(v[None], w, out)
    np.testing.assert_array_equal(out[0], expected)


@needs_numba
@pytest.mark.parametrize("rows", [3, 130])
def test_rows_mat_gives_each_row_what_one_row_alone_gives(rows):
    rng = np.random.default_rng(rows)
    v = rng.standard_normal((4, rows)).astype(np.float32)
    w = rng.standard_normal((rows, 37)).astype(np.float32)
    together = np.full((4, 37), np.nan, dtype=np.float32)
    kernels.rows_mat(v, w, together)
    for b in range(4):
        alone = np.full((1, 37), np.nan, dtype=np.float32)
        kernels.rows_mat(v[b: b + 1], w, alone)
        np.testing.assert_array_equal(together[b], alone[0])
    np.testing.assert_allclose(together, v @ w, rtol=1e-4, atol=1e-4)


@needs_numba
@pytest.mark.parametrize("batch", [2, 7])  # the whole-loop kernels (batch <= SMALL_BATCH), then the per-step ones
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_kernels_agree_with_the_numpy_steps(dtype, tol, batch, monkeypatch):
    assert (batch <= fast.SMALL_BATCH) == (batch == 2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 9, 4)).astype(dtype)
    d_out = rng.standard_normal((batch, 9, 2 * 6)).astype(dtype)
    lengths = [9, 4, 9, 1, 6, 3, 8][:batch]
    results = {}
    for path in ("numpy", "numba"):
        monkeypatch.setattr(kernels, "ENABLED", path == "numba")
        layer = LSTM(4, 6, num_layers=2, bidirectional=True, dtype=dtype, rng=7)
        out, (h_n, c_n) = layer.forward(x, lengths=lengths)
        d_x, (d_h0, d_c0) = layer.backward(d_out, np.ones_like(h_n), np.ones_like(c_n))
        results[path] = [out, h_n, c_n, d_x, d_h0, d_c0] + [p.grad for p in layer.parameters()]
    for a, b in zip(results["numba"], results["numpy"]):
        assert a.dtype == dtype
        scale = max(np.abs(b).max(), 1e-3)
        assert np.abs(a - b).max() <= tol * scale
        assert np.abs(b).max() > 0


@needs_numba
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_gru_kernel_agrees_with_the_numpy_step(dtype, tol, monkeypatch):
    from rnnkit.scratch.recurrent import GRU

    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 9, 4)).astype(dtype)
    d_out = rng.standard_normal((6, 9, 2 * 5)).astype(dtype)
    results = {}
    for path in ("numpy", "numba"):
        monkeypatch.setattr(kernels, "ENABLED", path == "numba")
        layer = GRU(4, 5, num_layers=2, bidirectional=True, dtype=dtype, rng=7)
        out, h_n = layer.forward(x, lengths=[9, 4, 9, 1, 6, 2])
        d_x, d_h0 = layer.backward(d_out, np.ones_like(h_n))
        results[path] = [out, h_n, d_x, d_h0] + [p.grad for p in layer.parameters()]
    for a, b in zip(results["numba"], results["numpy"]):
        assert a.dtype == dtype
        assert np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-3)
        assert np.abs(b).max() > 0


@needs_numba
@pytest.mark.parametrize("batch", [2, 6])
@pytest.mark.parametrize("ragged", [False, True])
def test_kernels_leave_the_callers_arrays_alone(batch, ragged, monkeypatch):
    """The gate-major path updates transposed copies of d_h_n / d_c_n in place; with hidden=1 a transpose
    is already contiguous, so a careless copy would be a view and write into the caller's gradient."""
    monkeypatch.setattr(kernels, "ENABLED", True)
    rng = np.random.default_rng(0)
    layer = LSTM(3, 1, dtype=np.float64, rng=1)
    x = rng.standard_normal((batch, 5, 3))
    state = (rng.standard_normal((1, batch, 1)), rng.standard_normal((1, batch, 1)))
    grads = [rng.standard_normal((batch, 5, 1)), rng.standard_normal((1, batch, 1)), rng.standard_normal((1, batch, 1))]
    kept = [a.copy() for a in (x, *state, *grads)]
    layer.forward(x, state, lengths=[5, 2, 4, 1, 5, 3][:batch] if ragged else None)
    layer.backward(*grads)
    for before, after in zip(kept, (x, *state, *grads)):
        np.testing.assert_array_equal(before, after)


def test_environment_switch_forces_the_numpy_path():
    code = ("import numpy as np; from rnnkit.scratch import fast; from rnnkit.scratch.fast import kernels; "
            "print(kernels.ENABLED, fast.select('lstm', 2, 8, np.float32).path)")
    env = dict(os.environ, RNNKIT_NO_NUMBA="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "numpy"]
    env.pop("RNNKIT_NO_NUMBA")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    expected = ["True", "numba"] if kernels.AVAILABLE else ["False", "numpy"]
    assert done.stdout.split() == expected


def test_active_only_for_float_dtypes_and_when_enabled(monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", True)
    assert kernels.active(np.float32) and kernels.active(np.float64)
    assert not kernels.active(np.float16) and not kernels.active(np.int64)
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert not kernels.active(np.float32)
    assert fast.select("lstm", 2, 8, np.float32).path == "numpy"


@needs_numba
def test_jit_compiles_in_memory_when_no_cache_directory_can_be_written(monkeypatch):
    real_njit = kernels.numba.njit
    calls = []

    def njit(**options):
        calls.append(options["cache"])
        if options["cache"]:
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return real_njit(**options)

    monkeypatch.setattr(kernels.numba, "njit", njit)

    def double(a):
        return 2 * a

    compiled = kernels.jit(double)
    assert calls == [True, False]
    assert compiled(21) == 42
