"""Optional fused LSTM and GRU step kernels, compiled with Numba: the numba path (numba_path.py) and the
building blocks of the threaded LSTM (threaded_lstm.py). Without numba the NumPy path runs.

Why. The NumPy LSTM step makes about a dozen ufunc calls over (B, 4H) and (B, H) arrays per time step, and
backward as many again: each call costs ~0.5 µs of overhead and one trip through memory. These kernels do a
step's whole gate arithmetic in one compiled call, so a step is one BLAS GEMM plus one kernel call.

Row-major, like steps.py's arrays: lstm_forward_step / lstm_backward_step do one step after the caller's
product; lstm_forward_loop / lstm_backward_loop run the whole time loop in one call, products included
(`rows_mat`), for small batches, where a (B, H) @ (H, 4H) product through BLAS is mostly call overhead.
The GRU has a forward step kernel only (`gru_forward_step`, like steps.py's `gru_step`, whose NumPy
backward it keeps): one GEMM and one call per step instead of eleven NumPy calls. All use the packed gate
order of packing.py (LSTM i, f, o, g; sigmoid rows halved, σ(a) = (1 + tanh(a/2)) / 2). The row loops
below (mul, add_mul, tanh_into, ...) are public: threaded_lstm.py builds its steps from them.

tanh. Numba calls libm's scalar tanh, ~30x slower than NumPy's SIMD tanh. float32 uses instead a
branch-free rational approximation (Eigen's, clamped to ±7.905; ≤ 6 ulp from the true tanh, against NumPy's
~1.4), which LLVM vectorises. float64 keeps libm's tanh, so the float64 parity with
PyTorch (relative error < 1e-9) does not move.

Exactness. fastmath stays off (no reassociation, no fused multiply-add contraction); the threaded LSTM's
step (lstm_cell.py) fuses its multiply-adds by name (`fma`), the same in every lane and remainder.
error_model="numpy" only drops the zero-division check of `/` (the denominator of the rational tanh is
≥ 4.9e-3), which is what lets the loops vectorise.

Switches. `ENABLED` is False when numba is not importable or the environment sets RNNKIT_NO_NUMBA=1; tests
and benchmarks may set `kernels.ENABLED` themselves (RNNKIT_PATH, read by selector.py, chooses among the
paths). Compiled code is cached on disk (`cache=True`) where a writable cache directory exists (numba's
own choice, or NUMBA_CACHE_DIR), and dropped whenever this package's sources change (cache.py); otherwise
it compiles in memory.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from . import cache

try:
    import numba
    from llvmlite import ir as llvmlite_ir
    from numba.core import cgutils
    from numba.extending import intrinsic, overload, register_jitable
except ImportError:  # the NumPy path
    numba = None

AVAILABLE = numba is not None
ENABLED = AVAILABLE and os.environ.get("RNNKIT_NO_NUMBA", "").strip().lower() not in ("1", "true", "yes", "on")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def active(dtype) -> bool:
    """Whether these kernels may run on arrays of `dtype` (numba importable, enabled, a float dtype)."""
    return ENABLED and np.dtype(dtype) in DTYPES


if AVAILABLE:
    _OPTIONS = dict(nogil=True, fastmath=False, error_model="numpy")

    def jit(fn=None, nogil: bool = True, inline: str = "never"):
        """njit with the on-disk cache where it can be written, in-memory compilation otherwise; the GIL let
        go while it runs, unless `nogil` is False; inline="always": compiled into each caller (numba's IR)."""
        if fn is None:
            return functools.partial(jit, nogil=nogil, inline=inline)
        options = dict(_OPTIONS, nogil=nogil, inline=inline)
        try:
            dispatcher = numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available" (no writable directory)
            return numba.njit(cache=False, **options)(fn)
        _refresh_cache(dispatcher)
        return dispatcher

    _REFRESHED: set = set()

    def _refresh_cache(dispatcher) -> None:
        """Once a process, before anything is loaded from it: drop the cache folder's functions of this
        package if its sources changed since they were cached (`cache.refresh`: numba itself checks a
        function's own file only, not its callees')."""
        folder = getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
        if folder is None or folder in _REFRESHED:
            return
        _REFRESHED.add(folder)
        cache.refresh(Path(folder), cache.sources_digest(), cache.package_modules())

    @intrinsic
    def fma(typingctx, a, b, c):
        """a·b + c rounded once (LLVM's fma intrinsic, vectorised like any arithmetic). Written out, not left
        to fastmath's "contract": which product LLVM fuses may differ between a loop's vector body and its
        scalar remainder, and then a value's bits would depend on where a slice starts (the thread count)."""
        def codegen(context, builder, sig, args):
            llvm_type = context.get_value_type(sig.return_type)
            name = "llvm.fma.f32" if sig.return_type.bitwidth == 32 else "llvm.fma.f64"
            function = cgutils.get_or_insert_function(
                builder.module, llvmlite_ir.FunctionType(llvm_type, [llvm_type] * 3), name)
            return builder.call(function, args)
        return a(a, a, a), codegen

    # Eigen's float32 tanh: x·P(x²)/Q(x²) on [-7.905, 7.905] (tanh is ±1 in float32 beyond), x itself below 4e-4.
    _f32 = np.float32
    _CLAMP, _TINY = _f32(7.90531110763549805), _f32(0.0004)
    _A1, _A3, _A5, _A7, _A9, _A11, _A13 = map(_f32, (
        4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
        -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
    _B0, _B2, _B4, _B6 = map(_f32, (
        4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))
    # the same constants for lstm_cell.py's vector blocks, in the order the polynomials' steps use them
    TANH32_CLAMP, TANH32_TINY = _CLAMP, _TINY
    TANH32_NUMERATOR = (_A13, _A11, _A9, _A7, _A5, _A3, _A1)
    TANH32_DENOMINATOR = (_B6, _B4, _B2, _B0)

    def _rational_tanh(mul_add):
        """Eigen's float32 tanh (see the module's text), its polynomials' steps as mul_add(a, b, c) = a·b + c:
        `_mul_add` (two roundings) for scalar_tanh, `fma` (one) for fused_tanh."""
        def tanh32(x):
            y = _CLAMP if x > _CLAMP else x  # written so that NaN passes through
            y = -_CLAMP if y < -_CLAMP else y
            y2 = y * y
            p = mul_add(y2, _A13, _A11)
            p = mul_add(y2, p, _A9)
            p = mul_add(y2, p, _A7)
            p = mul_add(y2, p, _A5)
            p = mul_add(y2, p, _A3)
            p = mul_add(y2, p, _A1)
            p = y * p
            q = mul_add(y2, _B6, _B4)
            q = mul_add(y2, q, _B2)
            q = mul_add(y2, q, _B0)
            return x if abs(x) < _TINY else p / q
        return tanh32

    @register_jitable
    def _mul_add(a, b, c):
        return a * b + c

    _tanh32 = _rational_tanh(_mul_add)

    def scalar_tanh(x):  # typed below: rational for float32, libm for float64
        return math.tanh(x)

    def fused_tanh(x):  # scalar_tanh with its multiply-adds fused (`fma`): lstm_cell.py's
        return math.tanh(x)

    _tanh32_fma = _rational_tanh(fma)

    @overload(scalar_tanh)
    def _tanh_typed(x):
        return _tanh32 if x == numba.types.float32 else (lambda x: math.tanh(x))

    @overload(fused_tanh)
    def _fused_tanh_typed(x):
        return _tanh32_fma if x == numba.types.float32 else (lambda x: math.tanh(x))

    @jit
    def tanh(x, out):
        """out = tanh(x) elementwise for 1-D arrays, with the kernels' tanh (exposed for tests)."""
        for j in range(x.shape[0]):
            out[j] = scalar_tanh(x[j])

    # Row loops. Each touches at most three arrays: LLVM vectorises a loop only when a few run-time overlap
    # checks between its arrays suffice, and a whole step in one loop has too many (it then runs ~2.5x slower).
    @jit
    def gates_sigmoid(a, x, half):
        """a ← (1 + tanh(a + x)) / 2, the halved sigmoid rows."""
        for j in range(a.shape[0]):
            a[j] = scalar_tanh(a[j] + x[j]) * half + half

    @jit
    def gates_tanh(a, x):
        """a ← tanh(a + x)."""
        for j in range(a.shape[0]):
            a[j] = scalar_tanh(a[j] + x[j])

    @jit
    def mul(a, b, out):
        """out ← a ⊙ b."""
        for j in range(out.shape[0]):
            out[j] = a[j] * b[j]

    @jit
    def mul_in_place(a, b):
        """a ← a ⊙ b (its own loop: an output that is also an input fails LLVM's overlap check, and the
        loop then runs scalar)."""
        for j in range(a.shape[0]):
            a[j] *= b[j]

    @jit
    def add_mul(a, b, out):
        """out ← out + a ⊙ b."""
        for j in range(out.shape[0]):
            out[j] += a[j] * b[j]

    @jit
    def tanh_into(a, out):
        """out ← tanh(a)."""
        for j in range(out.shape[0]):
            out[j] = scalar_tanh(a[j])

    @jit
    def add(a, out):
        """out ← out + a."""
        for j in range(out.shape[0]):
            out[j] += a[j]

    @jit
    def cell_grad(dh, o, tc, dc):
        """dc ← dc + dh ⊙ o ⊙ (1 - tc²)."""
        one = dc.dtype.type(1)
        for j in range(dc.shape[0]):
            dc[j] += dh[j] * (o[j] * (one - tc[j] * tc[j]))

    @jit
    def sigmoid_grad(d, gate, other, out):
        """out ← d ⊙ other ⊙ gate(1 - gate)."""
        one = out.dtype.type(1)
        for j in range(out.shape[0]):
            out[j] = d[j] * (other[j] * (gate[j] * (one - gate[j])))

    @jit
    def tanh_grad(d, i, g, out):
        """out ← d ⊙ i ⊙ (1 - g²)."""
        one = out.dtype.type(1)
        for j in range(out.shape[0]):
            out[j] = d[j] * (i[j] * (one - g[j] * g[j]))

    @jit
    def lstm_forward_step(t, n, xw, gates, c, tanh_c, h):
        """Step t of the LSTM for the first n rows, after the caller wrote h_t W_hh^T into gates[t, :n].

        xw (T, B, 4H) halved input pre-activations; gates (T, B, 4H): in a_t, out activated (i, f, o, g);
        c, h (T+1, B, H): reads c[t], writes c[t+1], h[t+1]; tanh_c (T, B, H): writes tanh c_{t+1}.
            i, f, o = (1 + tanh(a + xw)) / 2 (halved rows), g = tanh(a + xw)
            c_{t+1} = f ⊙ c_t + i ⊙ g,  h_{t+1} = o ⊙ tanh(c_{t+1})
        """
        H = c.shape[2]
        half = xw.dtype.type(0.5)
        for b in range(n):
            x_row, a = xw[t, b], gates[t, b]
            gates_sigmoid(a[: 3 * H], x_row[: 3 * H], half)
            gates_tanh(a[3 * H:], x_row[3 * H:])
            i, f, o, g = a[:H], a[H: 2 * H], a[2 * H: 3 * H], a[3 * H:]
            cell, squashed = c[t + 1, b], tanh_c[t, b]
            mul(f, c[t, b], cell)
            add_mul(i, g, cell)
            tanh_into(cell, squashed)
            mul(o, squashed, h[t + 1, b])

    @jit
    def lstm_backward_step(t, n, d_out, dh_rec, dc, gates, c, tanh_c, d_pre):
        """Step t of LSTM backward for the first n rows; the caller then sets dh_rec[:n] = d_pre[t, :n] W_hh.

        d_out (T, B, H) the output gradient; dh_rec, dc (B, H) the gradients reaching h_{t+1}, c_{t+1} from
        step t+1 (both are overwritten: dh_rec with dh, dc with dc_t ⊙ f); gates, c, tanh_c: forward's arrays.
        Writes d_pre[t], the gradient of the (unhalved) pre-activations:
            dh = d_out_t + dh_rec,   dc_t = dc + dh ⊙ o ⊙ (1 - tanh²c_{t+1})
            d_i = dc_t ⊙ g ⊙ i(1-i),  d_f = dc_t ⊙ c_t ⊙ f(1-f),  d_o = dh ⊙ tanh c_{t+1} ⊙ o(1-o)
            d_g = dc_t ⊙ i ⊙ (1-g²),  dc ← dc_t ⊙ f
        """
        H = c.shape[2]
        for b in range(n):
            a, d = gates[t, b], d_pre[t, b]
            i, f, o, g = a[:H], a[H: 2 * H], a[2 * H: 3 * H], a[3 * H:]
            dh, dct, squashed = dh_rec[b], dc[b], tanh_c[t, b]
            add(d_out[t, b], dh)
            cell_grad(dh, o, squashed, dct)
            sigmoid_grad(dct, i, g, d[:H])
            sigmoid_grad(dct, f, c[t, b], d[H: 2 * H])
            sigmoid_grad(dh, o, squashed, d[2 * H: 3 * H])
            tanh_grad(dct, i, g, d[3 * H:])
            mul_in_place(dct, f)

    @jit
    def add_into(a, b, out):
        """out ← a + b."""
        for j in range(out.shape[0]):
            out[j] = a[j] + b[j]

    @jit
    def sigmoid_into(a, x, out, half):
        """out ← (1 + tanh(a + x)) / 2 (halved rows)."""
        for j in range(out.shape[0]):
            out[j] = scalar_tanh(a[j] + x[j]) * half + half

    @jit
    def gru_state(h_prev, n, z, out):
        """out ← (h_prev - n) ⊙ z + n, i.e. (1 - z) ⊙ n + z ⊙ h_prev."""
        for j in range(out.shape[0]):
            out[j] = (h_prev[j] - n[j]) * z[j] + n[j]

    @jit
    def gru_forward_step(t, n, xw, scratch, b_hn, hn, gates, h):
        """Step t of the GRU for the first n rows, after the caller wrote h_t W_hh^T into scratch[:n].

        xw (T, B, 3H) input pre-activations (z, r halved; n = W_in x + b_in); scratch (B, 3H); b_hn (H,)
        (zeros without bias); writes hn[t] (T, B, H) = W_hn h + b_hn, gates[t] (T, B, 3H) activated
        (z, r, n) and h[t+1] of h (T+1, B, H). The equations and the order of operations are `gru_step`'s:
            z, r = (1 + tanh(s + xw)) / 2,  n = tanh(r ⊙ hn + xw_n),  h_{t+1} = (h_t - n) ⊙ z + n
        """
        H = hn.shape[2]
        half = xw.dtype.type(0.5)
        for b in range(n):
            s, x, a, hn_row = scratch[b], xw[t, b], gates[t, b], hn[t, b]
            add_into(s[2 * H:], b_hn, hn_row)
            sigmoid_into(s[: 2 * H], x[: 2 * H], a[: 2 * H], half)
            new = a[2 * H:]
            mul(a[H: 2 * H], hn_row, new)
            gates_tanh(new, x[2 * H:])
            gru_state(h[t, b], new, a[:H], h[t + 1, b])

    @jit
    def rnn_backward_step(t, first, n, d_out, batch_major, dh_rec, h, relu, d_pre):
        """Step t of the RNN's backward for rows first..n-1; the caller then sets dh_rec[first:n] =
        d_pre[t, first:n] W_hh.

        d_out (T, B, H), or (B, T, H) where batch_major (the layer's own layout: no transposing copy); dh_rec
        (B, H) the gradient reaching h_{t+1} through step t+1's product; h (T+1, B, H) the forward's states.
        Writes d_pre[t] = (d_out_t + dh_rec) ⊙ act'(pre), act' = 1 - h_{t+1}² (tanh) or [h_{t+1} > 0] (relu):
        numpy_path.rnn_backward's operations in its order (its bits)."""
        H = h.shape[2]
        one, zero = h.dtype.type(1), h.dtype.type(0)
        for b in range(first, n):
            d = d_out[b, t] if batch_major else d_out[t, b]
            rec, out, row = dh_rec[b], d_pre[t, b], h[t + 1, b]
            if relu:
                for j in range(H):
                    out[j] = (d[j] + rec[j]) * (one if row[j] > zero else zero)
            else:
                for j in range(H):
                    out[j] = (d[j] + rec[j]) * (one - row[j] * row[j])

    @jit
    def gru_backward_step(t, first, n, d_out, dh_rec, carry, gates, h, hn, d_gx, d_gh):
        """Step t of the GRU's backward for rows first..n-1 (`gru_backward_row` on each, all units); the caller
        then sets dh_rec[first:n] = d_gh[t, first:n] W_hh.

        d_out (T, B, H) the output gradient; dh_rec (B, H) the gradient reaching h_{t+1} through step t+1's
        products, carry (B, H) the one through its update gate, dh_{t+1} ⊙ z_{t+1} (zero for rows that step did
        not run; overwritten with this step's); gates (T, B, 3H) activated (z, r, n), h (T+1, B, H), hn (T, B, H):
        the forward's. Writes the pre-activation gradients of the input side, d_gx[t] = (dz, dr, dn), and of the
        hidden side, d_gh[t] = (dz, dr, dhn)."""
        H = hn.shape[2]
        for b in range(first, n):
            gru_backward_row(0, H, gates[t, b], d_out[t, b], dh_rec[b], carry[b], h[t, b], hn[t, b], d_gx[t, b],
                             d_gh[t, b])

    @jit
    def gru_backward_row(lo, top, a, d, rec, kept, h_prev, hn_row, gx, gh):
        """One row of a step of the GRU's backward, units lo..top-1: a (3H,) the activated gates (z, r, n), d
        (H,) the output gradient, rec (H,) the gradient through the next step's products, kept (H,) the carry
        through its update gate (overwritten with this step's), h_prev (H,) h_t, hn_row (H,) W_hn h_t + b_hn;
        writes gx = (dz, dr, dn) and gh = (dz, dr, dhn) (3H,) (`gru_gate_gradients`, then dz and dr copied
        into gh)."""
        H = hn_row.shape[0]
        gru_gate_gradients(lo, top, a, d, rec, kept, h_prev, hn_row, gx, 2 * H, 0, H, gh, 2 * H)
        for j in range(lo, top):
            gh[j] = gx[j]
            gh[H + j] = gx[H + j]

    @jit
    def gru_gate_gradients(lo, top, a, d, rec, kept, h_prev, hn_row, gx, n_at, z_at, r_at, gh, hn_at):
        """The pre-activation gradients of one row of a step of the GRU's backward, units lo..top-1 (arguments
        as `gru_backward_row`'s): dn, dz, dr into gx from n_at, z_at, r_at, dhn into gh from hn_at (gh may be
        gx), in numpy_path.gru_backward's order of operations (its bits):
            dh = d_out_t + (dh_rec + carry)
            dn = dh ((1 - z)(1 - n²)),  dz = dh (((h_t - n) z)(1 - z)),  dr = ((hn r)(1 - r)) dn,  dhn = r dn
            carry ← dh z
        Two loops of few arrays each, so that each is vectorised: one loop writing all five outputs reads and
        writes ten arrays, more than the compiler's checks for overlapping arrays allow, and ran scalar (1.6-1.8x
        slower at batch 64, hidden 256)."""
        H = hn_row.shape[0]
        one = a.dtype.type(1)
        z, r, new = a[:H], a[H: 2 * H], a[2 * H:]
        dn, dz, dr, dhn = gx[n_at: n_at + H], gx[z_at: z_at + H], gx[r_at: r_at + H], gh[hn_at: hn_at + H]
        for j in range(lo, top):
            dh = d[j] + (rec[j] + kept[j])
            dn[j] = dh * ((one - z[j]) * (one - new[j] * new[j]))
            dz[j] = dh * (((h_prev[j] - new[j]) * z[j]) * (one - z[j]))
            kept[j] = dh * z[j]
        for j in range(lo, top):
            dr[j] = ((hn_row[j] * r[j]) * (one - r[j])) * dn[j]
            dhn[j] = r[j] * dn[j]

    @jit
    def gru_gradient_step(t, first, n, d_out, dh_rec, carry, gates, h, hn, d, bounds, sums):
        """`gru_backward_step` writing each pre-activation gradient once: d[t] (T, B, 4H) = (dn, dz, dr, dhn)
        per row, so that d[t, :, :3H] is the input side's (n, z, r) and d[t, :, H:] the hidden side's (z, r,
        hn), both views; and adding the step's rows to the bias gradients: sums (parts, 2, 4H), for the part
        of `bounds` (the parts' first rows and the batch, ascending) that holds `first`, sums[part, 0] gets
        this step's sum over rows first..n-1, made in sums[part, 1] (summed row by row in order, then added:
        the sums' order is fixed by the split)."""
        H = hn.shape[2]
        part = 0
        while bounds[part + 1] <= first:
            part += 1
        step = sums[part, 1]
        step[:] = 0
        for b in range(first, n):
            out = d[t, b]
            gru_gate_gradients(0, H, gates[t, b], d_out[t, b], dh_rec[b], carry[b], h[t, b], hn[t, b], out, 0, H,
                               2 * H, out, 3 * H)
            for j in range(4 * H):
                step[j] += out[j]
        total = sums[part, 0]
        for j in range(4 * H):
            total[j] += step[j]

    # Small batches: the whole time loop in one call. A (B, H) @ (H, 4H) product through BLAS costs more in
    # call overhead than in arithmetic at small B (selector.py's SMALL_BATCH), so the products run here as well.
    @jit
    def rows_mat(v, w, out):
        """out ← v w for v (n, K), w (K, N) row-major, out (n, N); summed over k in order, vectorised over N.

        Four rows of w per pass over out: a pass is then four loads of w per load and store of out, which
        bounds the single-row loop (1.7-1.9x faster at (128, 512) and (512, 128)). Up to four rows of v share
        each pass (`_rows_pass`), so w is read once per call and not n times (an LSTM's W_hh at hidden 256 is
        1 MB). Each sum keeps its order, ((out + v_k w_k) + v_{k+1} w_{k+1}) + ..., so every row is the
        single-row loop's to the bit.
        """
        out[:] = 0
        for b in range(0, v.shape[0], 4):
            _rows_pass(v[b: b + 4], w, out[b: b + 4])

    @jit
    def _rows_pass(v, w, out):
        """rows_mat for n <= 4 rows: each row's four products per pass over N, in the same order. One small
        function per row count: with all four loops in one function, the one-row loop ran 3-6x slower (hidden
        64-128), not vectorised. The factors are read into locals before each loop over N: read from v
        inside it, they would be read again on every j (v might overlap out, as far as the compiler knows)."""
        K, N = w.shape
        n = v.shape[0]
        k = 0
        while k + 4 <= K:
            if n == 1:
                _pass_1(v, w, out, k)
            elif n == 2:
                _pass_2(v, w, out, k)
            elif n == 3:
                _pass_3(v, w, out, k)
            else:
                _pass_4(v, w, out, k)
            k += 4
        while k < K:
            wk = w[k]
            for r in range(n):
                vk, row = v[r, k], out[r]
                for j in range(N):
                    row[j] += vk * wk[j]
            k += 1

    @jit
    def _pass_1(v, w, out, k):
        """out[0] += v[0, k:k+4] w[k:k+4], the four products in order."""
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        a0, a1, a2, a3 = v[0, k], v[0, k + 1], v[0, k + 2], v[0, k + 3]
        o0 = out[0]
        for j in range(w.shape[1]):
            o0[j] = (((o0[j] + a0 * w0[j]) + a1 * w1[j]) + a2 * w2[j]) + a3 * w3[j]

    @jit
    def _pass_2(v, w, out, k):
        """`_pass_1` for two rows."""
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        a0, a1, a2, a3 = v[0, k], v[0, k + 1], v[0, k + 2], v[0, k + 3]
        b0, b1, b2, b3 = v[1, k], v[1, k + 1], v[1, k + 2], v[1, k + 3]
        o0, o1 = out[0], out[1]
        for j in range(w.shape[1]):
            x0, x1, x2, x3 = w0[j], w1[j], w2[j], w3[j]
            o0[j] = (((o0[j] + a0 * x0) + a1 * x1) + a2 * x2) + a3 * x3
            o1[j] = (((o1[j] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3

    @jit
    def _pass_3(v, w, out, k):
        """`_pass_1` for three rows."""
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        a0, a1, a2, a3 = v[0, k], v[0, k + 1], v[0, k + 2], v[0, k + 3]
        b0, b1, b2, b3 = v[1, k], v[1, k + 1], v[1, k + 2], v[1, k + 3]
        c0, c1, c2, c3 = v[2, k], v[2, k + 1], v[2, k + 2], v[2, k + 3]
        o0, o1, o2 = out[0], out[1], out[2]
        for j in range(w.shape[1]):
            x0, x1, x2, x3 = w0[j], w1[j], w2[j], w3[j]
            o0[j] = (((o0[j] + a0 * x0) + a1 * x1) + a2 * x2) + a3 * x3
            o1[j] = (((o1[j] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3
            o2[j] = (((o2[j] + c0 * x0) + c1 * x1) + c2 * x2) + c3 * x3

    @jit
    def _pass_4(v, w, out, k):
        """`_pass_1` for four rows."""
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        a0, a1, a2, a3 = v[0, k], v[0, k + 1], v[0, k + 2], v[0, k + 3]
        b0, b1, b2, b3 = v[1, k], v[1, k + 1], v[1, k + 2], v[1, k + 3]
        c0, c1, c2, c3 = v[2, k], v[2, k + 1], v[2, k + 2], v[2, k + 3]
        d0, d1, d2, d3 = v[3, k], v[3, k + 1], v[3, k + 2], v[3, k + 3]
        o0, o1, o2, o3 = out[0], out[1], out[2], out[3]
        for j in range(w.shape[1]):
            x0, x1, x2, x3 = w0[j], w1[j], w2[j], w3[j]
            o0[j] = (((o0[j] + a0 * x0) + a1 * x1) + a2 * x2) + a3 * x3
            o1[j] = (((o1[j] + b0 * x0) + b1 * x1) + b2 * x2) + b3 * x3
            o2[j] = (((o2[j] + c0 * x0) + c1 * x1) + c2 * x2) + c3 * x3
            o3[j] = (((o3[j] + d0 * x0) + d1 * x1) + d2 * x2) + d3 * x3

    @jit
    def lstm_forward_loop(xw, w_hh_t, gates, c, tanh_c, h, active):
        """All steps of `lstm_forward_step`, h_t W_hh^T included; active (T,) int64 rows running at step t.

        w_hh_t (H, 4H): `Packed.w_hh_t`, C-contiguous.
        """
        for t in range(xw.shape[0]):
            n = active[t]
            rows_mat(h[t, :n], w_hh_t, gates[t, :n])
            lstm_forward_step(t, n, xw, gates, c, tanh_c, h)

    @jit
    def lstm_backward_loop(d_out, w_hh, dh_rec, dc, gates, c, tanh_c, d_pre, active):
        """All steps of `lstm_backward_step`, last first, dh_rec ← d_pre[t] W_hh included."""
        for t in range(d_out.shape[0] - 1, -1, -1):
            n = active[t]
            lstm_backward_step(t, n, d_out, dh_rec, dc, gates, c, tanh_c, d_pre)
            rows_mat(d_pre[t, :n], w_hh, dh_rec[:n])

    @jit
    def gru_forward_loop(xw, w_hh_t, scratch, b_hn, hn, gates, h, active):
        """All steps of `gru_forward_step`, h_t W_hh^T included (`rows_mat`): small batches."""
        for t in range(xw.shape[0]):
            n = active[t]
            rows_mat(h[t, :n], w_hh_t, scratch[:n])
            gru_forward_step(t, n, xw, scratch, b_hn, hn, gates, h)

    @jit
    def rnn_forward_loop(xw, w_hh_t, h, active, relu):
        """All steps of the RNN, h_{t+1} = act(xw_t + h_t W_hh^T), the product by `rows_mat`: small batches.
        xw (T, B, H); h (T+1, B, H) with h[0] = h0; relu: act = max(·, 0), else tanh."""
        zero = xw.dtype.type(0)
        for t in range(xw.shape[0]):
            n = active[t]
            rows_mat(h[t, :n], w_hh_t, h[t + 1, :n])
            for b in range(n):
                row, x = h[t + 1, b], xw[t, b]
                if relu:
                    for j in range(row.shape[0]):
                        row[j] = max(row[j] + x[j], zero)
                else:
                    gates_tanh(row, x)
