"""Products with row panels read transposed: out = A^T Z for A packed for gemm.py's row kernels (numba
installed), so that a backward multiplies by W^T with the panels its forward packed for W, none packed for W^T.

A (M, K) packed in panels (P, K, w) (`gemm.pack_panels`: panel p holds rows p·w .. p·w+w-1, each k's w values
together; w a whole number of vectors), Z (N, P·w) with Z[j, m] the value of A's row m in column j:

    out[k, j] = Σ_p Σ_r A_p[k, r] Z[j, p·w + r]        (A_p[k, r] = panels[p, k, r] = A[p·w + r, k])

Each out[k, j] is a dot product along the panels' rows of k, w values at a time in vector registers: one
vector a lane (r mod lanes), its fused multiply-adds panel after panel, a panel row's vectors in order,
then the lanes summed in halves: one fixed order, whatever the thread count. The LSTM's input gradient
dx_t = W_ih^T d_t from the forward's W_ih panels (halved sigmoid rows: their d doubled, exactly) replaces a
second, transposing pass over W_ih at every training step (hidden 200, input 462: 66 us of one core warm,
140-190 us in a training call).
"""
from __future__ import annotations

from .kernels import AVAILABLE

if AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    from .gemm import _Frame, _k_loop
    from .kernels import jit


def _lane_sum(builder, vector, lanes: int):
    """The sum of a vector's lanes in halves: (lanes 0..n/2-1) + (n/2..n-1), again, down to one: a fixed
    order."""
    while lanes > 1:
        lanes //= 2
        undefined = ir.Constant(vector.type, ir.Undefined)
        low = builder.shuffle_vector(vector, undefined, ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                                    list(range(lanes))))
        high = builder.shuffle_vector(vector, undefined, ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                                     list(range(lanes, 2 * lanes))))
        vector = builder.fadd(low, high)
    return builder.extract_element(vector, ir.Constant(ir.IntType(32), 0))


def _transposed_kernel(rows: int, columns: int, width: int, VW: int):
    """An intrinsic (P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk) computing out[k, j]
    (module text) for `count` (1 to `rows`) rows of k and `columns` values of j: A_p[k + i, r] = a[a_off +
    p·panel_stride + i·width + r] (a row past count reads row count-1 again, not stored), Z[j, p·w + r] =
    z[z_off + j·ldz + p·width + r]; out[k + i, j] stored at c[c_off + i·ldk + j·ldc]. P >= 1."""
    @intrinsic
    def kernel(typingctx, P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk):
        signature = types.void(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)

        def codegen(context, builder, sig, args):
            f = _Frame(context, builder, sig, args, VW)
            stride, count_value, ldk_value = (context.cast(builder, args[i], sig.args[i], types.int64)
                                              for i in (9, 10, 11))
            vectors = width // f.lanes
            last = builder.sub(count_value, ir.Constant(f.i64, 1))
            starts = [f.at(f.a, builder.mul(builder.select(builder.icmp_signed("<", ir.Constant(f.i64, i), count_value),
                                                           ir.Constant(f.i64, i), last), ir.Constant(f.i64, width)))
                      for i in range(rows)]

            def step(f, p, acc):
                builder = f.builder
                a_rows = [f.at(row, builder.mul(p, stride)) for row in starts]
                z_panel = f.at(f.z, builder.mul(p, ir.Constant(f.i64, width)))
                new = list(acc)
                for v in range(vectors):
                    loaded = [f.load_vector(row, v * f.lanes) for row in a_rows]
                    for j in range(columns):
                        zv = f.load_vector(f.at(z_panel, builder.mul(ir.Constant(f.i64, j), f.ldz)), v * f.lanes)
                        for i in range(rows):
                            new[i * columns + j] = builder.call(f.fma, [loaded[i], zv, new[i * columns + j]])
                return new

            acc = _k_loop(f, [f.zero] * (rows * columns), step)
            for i in range(rows):
                with builder.if_then(builder.icmp_signed("<", ir.Constant(f.i64, i), count_value)):
                    row = f.at(f.c, builder.mul(ir.Constant(f.i64, i), ldk_value))
                    for j in range(columns):
                        total = _lane_sum(builder, acc[i * columns + j], f.lanes)
                        builder.store(total, f.at(row, builder.mul(ir.Constant(f.i64, j), f.ldc)))
            return context.get_dummy_value()

        return signature, codegen

    return kernel


if AVAILABLE:
    from .gemm import PANEL_WIDTHS, VW, panel_kind

    # ROWS rows of k and up to COLUMNS columns a call: ROWS·COLUMNS accumulators, the rows' vectors and one of
    # Z in the registers; each Z vector loaded serves ROWS multiply-adds (2 rows: at 128 columns 1.2x slower than
    # the product on W^T's panels)
    ROWS, COLUMNS = 4, 6
    # Rows of k a block: their panel rows (K_BLOCK · P · w values, 256 KB at hidden 200 and w 64) stay in L2
    # while each block of columns reads them again.
    K_BLOCK = 64
    _kernels = tuple(tuple(_transposed_kernel(ROWS, n, w, VW) for n in range(1, COLUMNS + 1)) for w in PANEL_WIDTHS[1:])
    (_a1, _a2, _a3, _a4, _a5, _a6), (_b1, _b2, _b3, _b4, _b5, _b6) = _kernels

    @jit
    def _call(kind, n, P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk):
        """The kernel of panels PANEL_WIDTHS[kind] tall (kind 1 or 2) for n columns (1 to COLUMNS)."""
        if kind == 1:
            if n == 1:
                _a1(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
            elif n == 2:
                _a2(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
            elif n == 3:
                _a3(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
            elif n == 4:
                _a4(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
            elif n == 5:
                _a5(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
            else:
                _a6(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
        elif n == 1:
            _b1(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
        elif n == 2:
            _b2(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
        elif n == 3:
            _b3(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
        elif n == 4:
            _b4(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
        elif n == 5:
            _b5(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)
        else:
            _b6(P, a, a_off, z, z_off, ldz, c, c_off, ldc, panel_stride, count, ldk)

    @jit
    def transposed_product(panels, k_lo, k_hi, z, columns, out, out_off, ldk, ldc):
        """out[out_off + (k - k_lo)·ldk + j·ldc] = Σ_p Σ_r panels[p, k, r] z[j, p·w + r] for k_lo <= k < k_hi
        and j < columns (module text): panels (P, K, w) C-contiguous, w a whole number of vectors (one of
        gemm.PANEL_WIDTHS; else plain loops); z (N, P·w) C-contiguous; out flat. Columns in blocks of
        near-equal width, at most COLUMNS; rows of k in blocks of K_BLOCK, each block's panel rows read from
        memory once for all column blocks."""
        P, K, w = panels.shape
        kind = panel_kind(w)
        a, zf = panels.reshape(-1), z.reshape(-1)
        ldz = z.shape[1]
        if kind < 1 or w % (VW * 4 // panels.itemsize) != 0:  # (no kernel: float64 panels 16 rows tall)
            for k in range(k_lo, k_hi):
                for j in range(columns):
                    total = panels.dtype.type(0)
                    for p in range(P):
                        for r in range(w):
                            total += panels[p, k, r] * z[j, p * w + r]
                    out[out_off + (k - k_lo) * ldk + j * ldc] = total
            return
        blocks = -(-columns // COLUMNS)
        for k0 in range(k_lo, k_hi, K_BLOCK):
            k1 = min(k_hi, k0 + K_BLOCK)
            for b in range(blocks):
                j0, j1 = columns * b // blocks, columns * (b + 1) // blocks
                for k in range(k0, k1, ROWS):
                    _call(kind, j1 - j0, P, a, k * w, zf, j0 * ldz, ldz, out,
                          out_off + (k - k_lo) * ldk + j0 * ldc, ldc, K * w, min(ROWS, k1 - k), ldk)
