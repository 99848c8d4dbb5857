"""The LSTM step's gate and state pass (threaded_lstm.py's steps) on whole vectors of the CPU's width.

Per entry j of a part's rows (the four gates' pre-activations of one unit and column side by side):
    a = pre + x  (x: the input's part, where it was split off; else a = pre)
    i, f, o = fma(tanh(a), ½, ½)  (the sigmoid rows halved: σ(2a) = (1 + tanh a)/2),  g = tanh(a)
    c_{t+1} = fma(i, g, f·c_t),  h_{t+1} = o·tanh c_{t+1}
`lstm_cell_pass` also stores the gates and tanh c_{t+1} (what a backward reads); `lstm_state_pass`, for a
forward no backward follows, only c_{t+1} and h_{t+1}.

Why vectors by hand. LLVM vectorises the plain loop (`_cell_entry`, below) at 256 bits on the AVX-512
Xeons (their `prefer-256-bit` tuning) and the pass is arithmetic-bound (five rational tanh an entry). Here
float32 runs in blocks of LANES lanes (16 with AVX-512) written in LLVM IR, `_block`: the same operations in
the same order as the scalar loop (the clamp's compares, the polynomials' fused multiply-adds, the one
division), so every lane gets the scalar loop's bits; the last entries (fewer than LANES) and float64 (libm's
tanh) run the scalar loop. Every operand is its own contiguous slice (a block loads and stores whole vectors
from j on). Measured on the Sapphire Rapids Xeon: the pass alone (9216 entries) 1.94-2.00 → 1.50-1.56 ns an
entry; the LSTM's inference forward, new / before in one process (25 alternating rounds): hidden 384 batch
13 0.95, 32 0.98, 64 0.96; hidden 512 batch 24 0.97; hidden 256 batch 32 0.97; hidden 128 batch 64 0.93.
"""
from __future__ import annotations

from .kernels import AVAILABLE

if AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from .gemm import VECTOR_BYTES
    from .kernels import (TANH32_CLAMP, TANH32_DENOMINATOR as _Q, TANH32_NUMERATOR as _P, TANH32_TINY, fma,
                          fused_tanh, jit)

    LANES = VECTOR_BYTES // 4  # float32 lanes of a vector

    class _Vectors:
        """The IR a block builds on: float32 vectors of LANES lanes, their constants, fma and fabs."""

        def __init__(self, builder):
            self.builder = builder
            self.vector = ir.VectorType(ir.FloatType(), LANES)
            module = builder.module
            self._fma = cgutils.get_or_insert_function(module, ir.FunctionType(self.vector, [self.vector] * 3),
                                                       f"llvm.fma.v{LANES}f32")
            self._fabs = cgutils.get_or_insert_function(module, ir.FunctionType(self.vector, [self.vector]),
                                                        f"llvm.fabs.v{LANES}f32")

        def constant(self, value):
            return ir.Constant(self.vector, [ir.Constant(ir.FloatType(), float(value))] * LANES)

        def fma(self, a, b, c):
            return self.builder.call(self._fma, [a, b, c])

        def tanh(self, x):
            """kernels.py's float32 tanh (`_rational_tanh` with `fma`), lane by lane the same operations."""
            b, clamp = self.builder, TANH32_CLAMP
            y = b.select(b.fcmp_ordered(">", x, self.constant(clamp)), self.constant(clamp), x)
            y = b.select(b.fcmp_ordered("<", y, self.constant(-clamp)), self.constant(-clamp), y)
            y2 = b.fmul(y, y)
            p = self.fma(y2, self.constant(_P[0]), self.constant(_P[1]))
            for coefficient in _P[2:]:
                p = self.fma(y2, p, self.constant(coefficient))
            p = b.fmul(y, p)
            q = self.fma(y2, self.constant(_Q[0]), self.constant(_Q[1]))
            for coefficient in _Q[2:]:
                q = self.fma(y2, q, self.constant(coefficient))
            tiny = b.fcmp_ordered("<", b.call(self._fabs, [x]), self.constant(TANH32_TINY))
            return b.select(tiny, x, b.fdiv(p, q))

    _STATE = ("pre_i", "pre_f", "pre_o", "pre_g", "x_i", "x_f", "x_o", "x_g", "c_prev", "cell", "h")
    _TRACE = ("i_out", "f_out", "o_out", "g_out", "squashed")

    def _typed(args):
        """The block's signature, or None (not typed) unless every array is a contiguous 1-D slice."""
        if any(isinstance(a, types.Array) and a.layout != "C" for a in args):
            return None
        return types.void(*args)

    def _block(split: bool, traced: bool):
        """An intrinsic for entries j .. j+LANES-1 of the pass, arguments _STATE (+ _TRACE where `traced`)
        then j (float32, contiguous 1-D slices). Arguments that are not float32 compile to nothing (the
        passes never call it then)."""
        names = _STATE + _TRACE if traced else _STATE

        def codegen(context, builder, sig, values):
            if sig.args[0].dtype != types.float32:
                return context.get_dummy_value()
            v = _Vectors(builder)
            j = context.cast(builder, values[-1], sig.args[-1], types.int64)

            def at(name):
                k = names.index(name)
                data = context.make_array(sig.args[k])(context, builder, values[k]).data
                return builder.bitcast(builder.gep(data, [j]), v.vector.as_pointer())

            half = v.constant(0.5)
            a = [builder.load(at(f"pre_{gate}"), align=4) for gate in "ifog"]
            if split:
                a = [builder.fadd(pre, builder.load(at(f"x_{gate}"), align=4)) for pre, gate in zip(a, "ifog")]
            i, f, o = (v.fma(v.tanh(value), half, half) for value in a[:3])
            g = v.tanh(a[3])
            cell = v.fma(i, g, builder.fmul(f, builder.load(at("c_prev"), align=4)))
            squashed = v.tanh(cell)
            results = {"cell": cell, "h": builder.fmul(o, squashed)}
            if traced:
                results.update(zip(_TRACE, (i, f, o, g, squashed)))
            for name, value in results.items():
                builder.store(value, at(name), align=4)
            return context.get_dummy_value()

        if traced:
            @intrinsic
            def block(typingctx, pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, i_out, f_out,
                      o_out, g_out, squashed, j):
                return _typed((pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, i_out, f_out, o_out,
                               g_out, squashed, j)), codegen
        else:
            @intrinsic
            def block(typingctx, pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, j):
                return _typed((pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, j)), codegen
        return block

    _state_block, _state_block_split = _block(False, False), _block(True, False)
    _cell_block, _cell_block_split = _block(False, True), _block(True, True)

    @jit
    def _cell_entry(a_i, a_f, a_o, a_g, j, i_out, f_out, o_out, g_out, c_prev, cell, squashed, h, half):
        """`lstm_cell_pass` for entry j, from its four pre-activations a_* (the entries past the whole vectors,
        and float64's)."""
        i = fma(fused_tanh(a_i), half, half)
        f = fma(fused_tanh(a_f), half, half)
        o = fma(fused_tanh(a_o), half, half)
        g = fused_tanh(a_g)
        i_out[j], f_out[j], o_out[j], g_out[j] = i, f, o, g
        value = fma(i, g, f * c_prev[j])
        cell[j] = value
        s = fused_tanh(value)
        squashed[j] = s
        h[j] = o * s

    @jit
    def _vector_entries(n, cell):
        """How many of n entries run in whole vectors: float32's, not float64's."""
        return n - n % LANES if cell.itemsize == 4 else 0

    @jit
    def lstm_cell_pass(pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, split, i_out, f_out, o_out, g_out, c_prev,
                       cell, squashed, h, half):
        """One LSTM step's gates and states over equal-length contiguous 1-D slices, in one pass (see the
        module's text): pre_*: the step's product per gate (sigmoid rows halved); x_*: the input's part,
        added where `split`; *_out: the activated gates; c_prev, cell, squashed, h: c_t, c_{t+1}, tanh c_{t+1},
        h_{t+1}. One pass reads each value once: seven passes (one per gate, product and tanh) took 2.2x the
        time at hidden 128, batch 8 (6.3 against 2.9 us a step on one core)."""
        n = cell.shape[0]
        body = _vector_entries(n, cell)
        if split:
            for j in range(0, body, LANES):
                _cell_block_split(pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, i_out, f_out,
                                  o_out, g_out, squashed, j)
            for j in range(body, n):
                _cell_entry(pre_i[j] + x_i[j], pre_f[j] + x_f[j], pre_o[j] + x_o[j], pre_g[j] + x_g[j], j, i_out,
                            f_out, o_out, g_out, c_prev, cell, squashed, h, half)
        else:
            for j in range(0, body, LANES):
                _cell_block(pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, i_out, f_out, o_out,
                            g_out, squashed, j)
            for j in range(body, n):
                _cell_entry(pre_i[j], pre_f[j], pre_o[j], pre_g[j], j, i_out, f_out, o_out, g_out, c_prev, cell,
                            squashed, h, half)

    @jit
    def lstm_state_pass(pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, split, c_prev, cell, h, half):
        """`lstm_cell_pass` for a forward no backward follows: the same c_{t+1} and h_{t+1}, bit for bit, and no
        gates or tanh c_{t+1} stored (a backward's operands: in inference they only took the cache's room)."""
        n = cell.shape[0]
        body = _vector_entries(n, cell)
        if split:
            for j in range(0, body, LANES):
                _state_block_split(pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, j)
        else:
            for j in range(0, body, LANES):
                _state_block(pre_i, pre_f, pre_o, pre_g, x_i, x_f, x_o, x_g, c_prev, cell, h, j)
        zero = -(half - half)  # -0: x + -0 is x for every x, -0 included
        for j in range(body, n):
            i = fma(fused_tanh(pre_i[j] + (x_i[j] if split else zero)), half, half)
            f = fma(fused_tanh(pre_f[j] + (x_f[j] if split else zero)), half, half)
            o = fma(fused_tanh(pre_o[j] + (x_o[j] if split else zero)), half, half)
            g = fused_tanh(pre_g[j] + (x_g[j] if split else zero))
            value = fma(i, g, f * c_prev[j])
            cell[j] = value
            h[j] = o * fused_tanh(value)
