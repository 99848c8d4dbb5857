"""A register-blocked GEMM for the LSTM's per-step products, compiled by Numba from LLVM IR.

Why. A step's product, e.g. (512, 385) @ (385, 32) on one core, is small for OpenBLAS: it packs both
operands again on every call and its AVX2 kernels leave Zen 4's 512-bit units half used. Measured on this
2-core Zen 4 (float32, one thread): OpenBLAS 184 us (68 GFLOP/s), this kernel 117 us (106 GFLOP/s). The
weights are packed once per forward (`pack_panels`) and each step only runs the micro-kernel over them.

The micro-kernel computes an (MR, NV·VW) block of C = A @ Z, keeping all MR·NV accumulators in vector
registers while it walks the K dimension once:
    for k in 0..K-1:  z_v = Z[k, v·VW : (v+1)·VW]           (NV vector loads)
                      acc[r][v] += broadcast(A[r, k]) · z_v   (MR·NV fused multiply-adds)
A is packed into panels (M/MR, K, MR): panel p holds rows p·MR .. p·MR+MR-1, each k's MR values together,
so the kernel reads A strictly forwards. VW is the widest vector of this CPU (16 floats with AVX-512, 8 with
AVX2) and MR fills the register file (12 rows with 32 vector registers, 6 with 16). Columns beyond the last
whole vector run in a plain loop.

Rounding. Each C element is Σ_k A[r, k] Z[k, c] summed in order of k with a fused multiply-add per term:
a different rounding from OpenBLAS's (it splits K), within the float32 and float64 parity tolerances.
"""
from __future__ import annotations

import numpy as np

from .kernels import AVAILABLE

if AVAILABLE:
    from .kernels import jit
    import llvmlite.binding as llvm_binding
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic


def _vector_bytes_and_registers() -> tuple[int, int]:
    """The widest SIMD vector in bytes and how many such registers the host CPU has."""
    try:
        features = llvm_binding.get_host_cpu_features()
    except RuntimeError:  # llvmlite cannot read the CPU's features
        return 16, 16
    if features.get("avx512f"):
        return 64, 32
    if features.get("avx2") or features.get("avx"):
        return 32, 16
    return 16, 16  # SSE, NEON and the like: LLVM splits wider vectors itself


class _Frame:
    """The LLVM values a kernel builds on: its operands' pointers and strides, the vector type of this dtype,
    the fused multiply-add, and loads of whole vectors and of broadcast scalars."""

    def __init__(self, context, builder, sig, args, VW: int):
        self.builder = builder
        dtype = sig.args[1].dtype
        self.lanes = VW if dtype == types.float32 else VW // 2
        self.bits = 32 if dtype == types.float32 else 64
        scalar = context.get_value_type(dtype)
        self.vector = ir.VectorType(scalar, self.lanes)
        self.i32, self.i64 = ir.IntType(32), ir.IntType(64)

        def as_i64(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        def pointer(i, offset_arg):
            data = context.make_array(sig.args[i])(context, builder, args[i]).data
            return builder.gep(data, [as_i64(offset_arg)])

        self.k_total, self.ldz, self.ldc = as_i64(0), as_i64(5), as_i64(8)
        self.a, self.z, self.c = pointer(1, 2), pointer(3, 4), pointer(6, 7)
        self.fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(self.vector, [self.vector] * 3),
                                                  f"llvm.fma.v{self.lanes}f{self.bits}")
        self.zero = ir.Constant(self.vector, [ir.Constant(scalar, 0.0)] * self.lanes)
        self.splat = ir.Constant(ir.VectorType(self.i32, self.lanes), [0] * self.lanes)

    def at(self, pointer, index):
        """pointer + index (elements); index an int or an i64 value."""
        return self.builder.gep(pointer, [index if isinstance(index, ir.Value) else ir.Constant(self.i64, index)])

    def load_vector(self, pointer, offset: int):
        address = self.builder.bitcast(self.at(pointer, offset), self.vector.as_pointer())
        return self.builder.load(address, align=self.bits // 8)

    def store_first(self, vector, pointer, count: int):
        """The first `count` lanes of vector at pointer (a masked store where count < lanes)."""
        target = self.builder.bitcast(pointer, self.vector.as_pointer())
        if count == self.lanes:
            self.builder.store(vector, target, align=1)
            return
        mask_type = ir.VectorType(ir.IntType(1), self.lanes)
        masked_store = cgutils.get_or_insert_function(
            self.builder.module, ir.FunctionType(ir.VoidType(), [self.vector, self.vector.as_pointer(), self.i32,
                                                                  mask_type]),
            f"llvm.masked.store.v{self.lanes}f{self.bits}.p0v{self.lanes}f{self.bits}")
        mask = ir.Constant(mask_type, [ir.Constant(ir.IntType(1), lane < count) for lane in range(self.lanes)])
        self.builder.call(masked_store, [vector, target, ir.Constant(self.i32, self.bits // 8), mask])

    def broadcast(self, pointer, offset: int):
        """The scalar at pointer + offset in every lane."""
        undefined = ir.Constant(self.vector, ir.Undefined)
        one = self.builder.insert_element(undefined, self.builder.load(self.at(pointer, offset)),
                                          ir.Constant(self.i32, 0))
        return self.builder.shuffle_vector(one, undefined, self.splat)


def _kernel(accumulators: int, VW: int, step, store, load=None):
    """An intrinsic (K, a, a_off, z, z_off, ldz, c, c_off, ldc): `accumulators` vector registers start at
    zero (or at load(frame), C's values), step(frame, k, acc) -> acc' runs for k = 0..K-1 (K >= 1), then
    store(frame, acc) writes them."""
    @intrinsic
    def kernel(typingctx, K, a, a_off, z, z_off, ldz, c, c_off, ldc):
        signature = types.void(K, a, a_off, z, z_off, ldz, c, c_off, ldc)

        def codegen(context, builder, sig, args):
            f = _Frame(context, builder, sig, args, VW)
            store(f, _k_loop(f, load(f) if load is not None else [f.zero] * accumulators, step))
            return context.get_dummy_value()

        return signature, codegen

    return kernel


def _k_loop(f: _Frame, start: list, step) -> list:
    """The loop over k = 0..K-1 (K >= 1) of a kernel: accumulators from `start`, acc ← step(f, k, acc);
    returns the accumulators after it."""
    builder = f.builder
    entry = builder.basic_block
    loop = builder.append_basic_block("kernel.loop")
    done = builder.append_basic_block("kernel.done")
    builder.branch(loop)
    builder.position_at_end(loop)
    k = builder.phi(f.i64)
    k.add_incoming(ir.Constant(f.i64, 0), entry)
    acc = [builder.phi(f.vector) for _ in start]
    for value, first in zip(acc, start):
        value.add_incoming(first, entry)
    new = step(f, k, acc)
    k_next = builder.add(k, ir.Constant(f.i64, 1))
    k.add_incoming(k_next, loop)
    for value, updated in zip(acc, new):
        value.add_incoming(updated, loop)
    builder.cbranch(builder.icmp_signed("<", k_next, f.k_total), loop, done)
    builder.position_at_end(done)
    return new


def _row_major_kernel(MR: int, VW: int):
    """An intrinsic (K, a, a_off, z, z_off, ldz, c, c_off, ldc, lda, add, vectors) computing C[r, j] = Σ_k
    A[r, k] Z[k, j] for r < MR, j < vectors·VW (vectors 1 or 2, at run time: both register blocks are
    compiled in, one branch taken), as `_micro_kernel` but with A row-major and not packed: A[r, k] =
    a[a_off + r·lda + k] (each k broadcasts one element of each of MR rows; the rows stay in L1 across the
    column blocks), for a product whose A changes on every call (the RNN's backward: a step's gradients times
    W_hh). add (a run-time flag): C[r, j] += ..., the chain of fused multiply-adds continuing from C's value
    (K in blocks gives the bits of one call over all K); else the chain starts at zero (C is read either
    way, its values then unused: C must be readable)."""
    @intrinsic
    def kernel(typingctx, K, a, a_off, z, z_off, ldz, c, c_off, ldc, lda, add, vectors):
        signature = types.void(K, a, a_off, z, z_off, ldz, c, c_off, ldc, lda, add, vectors)

        def codegen(context, builder, sig, args):
            f = _Frame(context, builder, sig, args, VW)
            lda_value = context.cast(builder, args[9], sig.args[9], types.int64)
            # Each row's pointer hidden from LLVM's loop rewriting (an empty inline asm): else it strength-
            # reduced the MR addresses to one pointer and a chain of MR-1 adds a k, scalar work beside the 2·MR
            # multiply-adds (53 instructions a k, now 42: MR pointers in registers, one index). Measured on the
            # Sapphire Rapids Xeon, one core, GFLOP/s, before / now: (64, 449) @ (449, 384) 166-179 → 187-188,
            # (80, 513) @ (513, 448) 157-181 → 184-206; the GRU's fwd+bwd (its backward's products are these),
            # hidden 384 batch 128, 256 × 64, 448 × 90, new / before in worker processes: 0.89, 0.93, 0.91.
            hidden = ir.InlineAsm(ir.FunctionType(f.i64, [f.i64]), "", "=r,0")

            def opaque(pointer):
                value = builder.call(hidden, [builder.ptrtoint(pointer, f.i64)])
                return builder.inttoptr(value, pointer.type)
            rows = [opaque(f.at(f.a, builder.mul(ir.Constant(f.i64, r), lda_value))) for r in range(MR)]
            added = context.cast(builder, args[10], sig.args[10], types.boolean)

            def block(NV: int):
                def step(f, k, acc):
                    z_row = f.at(f.z, f.builder.mul(k, f.ldz))
                    zs = [f.load_vector(z_row, v * f.lanes) for v in range(NV)]
                    new = []
                    for r in range(MR):
                        b = f.broadcast(f.at(rows[r], k), 0)
                        new += [f.builder.call(f.fma, [b, zs[v], acc[r * NV + v]]) for v in range(NV)]
                    return new

                start = [builder.select(added, f.load_vector(f.at(f.c, builder.mul(ir.Constant(f.i64, r), f.ldc)),
                                                             v * f.lanes), f.zero)
                         for r in range(MR) for v in range(NV)]
                acc = _k_loop(f, start, step)
                for r in range(MR):
                    c_row = f.at(f.c, builder.mul(ir.Constant(f.i64, r), f.ldc))
                    for v in range(NV):
                        f.store_first(acc[r * NV + v], f.at(c_row, v * f.lanes), f.lanes)

            count = context.cast(builder, args[11], sig.args[11], types.int64)
            with builder.if_else(builder.icmp_signed("==", count, ir.Constant(f.i64, 2))) as (two, one):
                with two:
                    block(2)
                with one:
                    block(1)
            return context.get_dummy_value()

        return signature, codegen

    return kernel


def _micro_kernel(MR: int, NV: int, VW: int, stride: int | None = None, accumulate: bool = False):
    """An intrinsic computing C[r, j] = Σ_k A[r, k] Z[k, j] for r < MR, j < NV·VW (one register block);
    stride: the panel's height where the block takes only MR of its rows (A[r, k] = a[a_off + k·stride + r]);
    accumulate: C[r, j] += Σ_k ..., the chain of fused multiply-adds continuing from C's value (K split into
    parts gives the bits of one call over all K).

    Arguments (K, a, a_off, z, z_off, ldz, c, c_off, ldc): 1-D arrays of one float dtype with element
    offsets; A[r, k] = a[a_off + k·MR + r] (a packed panel), Z[k, j] = z[z_off + k·ldz + j],
    C[r, j] = c[c_off + r·ldc + j]. K >= 1. VW is counted in float32 lanes and halved for float64.
    Accumulator r·NV + v holds C[r, v·VW : (v+1)·VW].
    """
    def step(f, k, acc):
        z_row = f.at(f.z, f.builder.mul(k, f.ldz))
        zs = [f.load_vector(z_row, v * f.lanes) for v in range(NV)]
        a_row = f.at(f.a, f.builder.mul(k, ir.Constant(f.i64, stride or MR)))
        new = []
        for r in range(MR):
            b = f.broadcast(a_row, r)
            new += [f.builder.call(f.fma, [b, zs[v], acc[r * NV + v]]) for v in range(NV)]
        return new

    def store(f, acc):
        for r in range(MR):
            c_row = f.at(f.c, f.builder.mul(ir.Constant(f.i64, r), f.ldc))
            for v in range(NV):
                target = f.builder.bitcast(f.at(c_row, v * f.lanes), f.vector.as_pointer())
                f.builder.store(acc[r * NV + v], target, align=1)

    def load(f):
        return [f.load_vector(f.at(f.c, f.builder.mul(ir.Constant(f.i64, r), f.ldc)), v * f.lanes)
                for r in range(MR) for v in range(NV)]

    return _kernel(MR * NV, VW, step, store, load if accumulate else None)


def _rows_kernel(RV: int, NB: int, VW: int, accumulate: bool = False):
    """An intrinsic computing C[r, j] = Σ_k A[r, k] Z[k, j] for r < RV·VW, j < NB: vectors along A's rows
    (accumulate: C[r, j] += Σ_k ..., the chain of fused multiply-adds continuing from C's value, so that
    K split into parts gives the bits of one call over all K).

    For few columns: each k loads RV vectors of A's column k (a panel packed RV·VW rows wide) and broadcasts
    NB values of Z's row k, so no lane is wasted when Z has fewer columns than a vector. Each C element is
    the same fused multiply-add chain over k, in order, as `_micro_kernel`'s, so the two agree to the bit.
    Arguments as `_micro_kernel`'s: A[r, k] = a[a_off + k·RV·VW + r], Z[k, j] = z[z_off + k·ldz + j],
    C[r, j] = c[c_off + r·ldc + j] (from TRANSPOSED_STORE_COLUMNS columns on, each vector's columns transposed in
    registers and stored a row at a time; below, lane by lane). K >= 1.
    """
    def step(f, k, acc):
        a_row = f.at(f.a, f.builder.mul(k, ir.Constant(f.i64, RV * f.lanes)))
        avs = [f.load_vector(a_row, v * f.lanes) for v in range(RV)]
        z_row = f.at(f.z, f.builder.mul(k, f.ldz))
        new = [None] * (RV * NB)
        for j in range(NB):
            b = f.broadcast(z_row, j)
            for v in range(RV):
                new[v * NB + j] = f.builder.call(f.fma, [avs[v], b, acc[v * NB + j]])
        return new

    def store(f, acc):
        if NB < TRANSPOSED_STORE_COLUMNS:  # lane by lane
            for v in range(RV):
                for lane in range(f.lanes):
                    c_row = f.at(f.c, f.builder.mul(ir.Constant(f.i64, v * f.lanes + lane), f.ldc))
                    for j in range(NB):
                        value = f.builder.extract_element(acc[v * NB + j], ir.Constant(f.i32, lane))
                        f.builder.store(value, f.at(c_row, j))
            return
        # a vector's columns transposed in registers (up to a vector's lanes of columns at a time, the rest of
        # the lanes undefined), then each row's run of columns stored at once, its unused lanes masked off
        undefined = ir.Constant(f.vector, ir.Undefined)
        for v in range(RV):
            for first in range(0, NB, f.lanes):
                count = min(f.lanes, NB - first)
                columns = [acc[v * NB + j] for j in range(first, first + count)]
                rows = _transpose(f.builder, columns + [undefined] * (f.lanes - count))
                for lane, row in enumerate(rows):
                    c_row = f.at(f.c, f.builder.mul(ir.Constant(f.i64, v * f.lanes + lane), f.ldc))
                    f.store_first(row, f.at(c_row, first), count)

    def load(f):
        acc = [ir.Constant(f.vector, ir.Undefined)] * (RV * NB)
        for v in range(RV):
            for lane in range(f.lanes):
                c_row = f.at(f.c, f.builder.mul(ir.Constant(f.i64, v * f.lanes + lane), f.ldc))
                for j in range(NB):
                    acc[v * NB + j] = f.builder.insert_element(acc[v * NB + j], f.builder.load(f.at(c_row, j)),
                                                               ir.Constant(f.i32, lane))
        return acc

    return _kernel(RV * NB, VW, step, store, load if accumulate else None)


if AVAILABLE:
    VECTOR_BYTES, _REGISTERS = _vector_bytes_and_registers()
    VW = VECTOR_BYTES // 4  # float32 lanes
    MR = 12 if _REGISTERS >= 32 else 6  # MR·2 accumulators + 2 loads + 1 broadcast fit the registers
    _micro_2, _micro_2_add = _micro_kernel(MR, 2, VW), _micro_kernel(MR, 2, VW, accumulate=True)
    _micro_1, _micro_1_add = _micro_kernel(MR, 1, VW), _micro_kernel(MR, 1, VW, accumulate=True)
    # An odd count of column vectors ends in three, each half of the panel's rows taking them in one block
    # (MR/2 · 3 accumulators), not a pair then one: the one-vector block loads a vector and MR broadcasts for
    # MR fused multiply-adds, and the FMA units wait on the loads. Measured on the Zen 5 (one core, 64 steps,
    # GFLOP/s, pair + one → two halves of three): (512, 321) @ (321, 48) 251 → 275, (1024, 577) @ (577, 48)
    # 266 → 279, (384, 257) @ (257, 48) 254 → 278. The same fused multiply-add chain per element: the same bits.
    _half_3 = _micro_kernel(MR // 2, 3, VW, stride=MR)
    _half_3_add = _micro_kernel(MR // 2, 3, VW, stride=MR, accumulate=True)
    # The two halves take K in chunks of THREE_K_CHUNK, one after the other on each chunk, so the second half
    # reads the chunk's rows of Z (THREE_K_CHUNK · 3 vectors, 24 KB) from L1: over all K at once, each half
    # streamed all of Z (110 KB at K 577) from L2, twice the bytes a multiply-add of the pairs' blocks.
    # Measured on the Sapphire Rapids Xeon (one core, 32 products, 15 alternating rounds in one process, new /
    # before): (1024, 577) @ (577, 48) 0.93-0.94, (512, 321) @ (321, 48) 0.93, (577, 80) 0.95-1.00; 1.00-1.02
    # in the runs where the products before already ran at MKL's rate (then Z's second read hit L2 anyway).
    # Chunks of 32 were slower (0.96-1.09), of 256 (48 KB of Z) no faster (0.99-1.02).
    THREE_K_CHUNK = 128
    ODD_VECTORS_IN_HALVES = MR == 12  # measured with 32 vector registers only
    # The row-vector kernel: RV vectors of rows × up to NB columns of accumulators in registers: 2·NB
    # accumulators, RV loads of A and a broadcast fit the register file (NB 6 with 16 vector registers).
    # A step of k issues RV·n fused multiply-adds on n columns, each waiting on its own previous one (4 cycles
    # on Zen): with two FMA units, a block keeps them busy from 2·4 / RV = 4 columns on. So the columns run
    # in as few blocks as hold them, of near-equal width (`_blocks`): 5 columns in one block, not 4 + 1 (the
    # 1-column block idles 3/4 of the FMA units: measured (512, 256) @ (256, 5), 64 steps on one core,
    # 49 → 87 GFLOP/s; 6 columns 64 → 90; 9-11 53-82 → 68-89).
    # A block of 4 or more columns stores its accumulators transposed in registers, a row's run of columns a
    # (masked) vector store, not lane by lane (an extract and a scalar store an element). Measured on the Zen 5,
    # one core, 64 steps, new / before GFLOP/s ratio: (768, 449) @ (449, 9-56) 1.01-1.04, (256, 193) @
    # (193, 9-28) 1.03-1.06, 3-6 columns 0.98-1.01; LSTM inference hidden 128-512 batch 14-56 0.975-1.0.
    TRANSPOSED_STORE_COLUMNS = 4
    # Up to 14 columns a block with 32 vector registers (2·14 accumulators, RV loads, a broadcast): at 12 a
    # block, 13 and 14 columns ran in two, each streaming the panels. Measured on the Zen 5, one core, 64 steps,
    # GFLOP/s, 12 / 14 a block: (1024, 577) @ (577, 13) 130 → 168, (256, 577) @ (577, 13) 164 → 211; 15-16
    # columns in one block no faster (2·16 accumulators leave no register for the loads).
    RV = 2
    NB = 14 if _REGISTERS >= 32 else 6
    (_rows_1, _rows_2, _rows_3, _rows_4, _rows_5, _rows_6, _rows_7, _rows_8, _rows_9, _rows_10, _rows_11,
     _rows_12, _rows_13, _rows_14) = (_rows_kernel(RV, nb, VW) for nb in range(1, 15))  # those past NB never run

    @jit
    def _rows_block(n, K, a, a_off, z, z_off, ldz, out, c_off, ldo):
        """The row-vector kernel for n (1 to NB) columns."""
        if n == 1:
            _rows_1(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 2:
            _rows_2(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 3:
            _rows_3(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 4:
            _rows_4(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 5:
            _rows_5(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 6:
            _rows_6(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 7:
            _rows_7(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 8:
            _rows_8(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 9:
            _rows_9(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 10:
            _rows_10(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 11:
            _rows_11(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 12:
            _rows_12(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        elif n == 13:
            _rows_13(K, a, a_off, z, z_off, ldz, out, c_off, ldo)
        else:
            _rows_14(K, a, a_off, z, z_off, ldz, out, c_off, ldo)

    @jit
    def _blocks(columns):
        """How many column blocks `gemm_rows` runs: as few as hold `columns` at NB each."""
        return -(-columns // NB)

    @jit
    def gemm_rows(panels, z, z_off, ldz, columns, out, ldo, backwards=False, k0=0):
        """out[:P·R, :columns] = A @ Z[:, :columns] for A packed in panels (P, K, R) (`pack_row_panels`), by
        `_rows_kernel`: for few columns (no lane idles on a column that is not there). The same arguments
        and the same bits as `gemm_panels`. The columns run in `_blocks(columns)` blocks of near-equal
        width (the first ones one wider where they do not divide evenly), each over the whole panel. With
        `backwards`, the panels last to first (the same bits). From k0 (< K): Z's rows k0.. only, those
        before known zeros (the same bits for finite A: each chain of multiply-adds starts where it stays 0)."""
        n_panels, K, rows = panels.shape
        a = panels.reshape(-1)
        count = _blocks(columns)
        for i in range(n_panels):
            p = n_panels - 1 - i if backwards else i
            a_off, c_row = (p * K + k0) * rows, p * rows * ldo
            j = 0
            for q in range(count):
                n = -(-(columns - j) // (count - q))
                _rows_block(n, K - k0, a, a_off, z, z_off + k0 * ldz + j, ldz, out, c_row + j, ldo)
                j += n

    @jit
    def gemm_panels(panels, z, z_off, ldz, columns, out, ldo, backwards=False, k0=0):
        """out[:P·MR, :columns] = A @ Z[:, :columns] for A packed in panels (P, K, MR) (`pack_panels`).

        z: 1-D, Z[k, j] = z[z_off + k·ldz + j] (K rows); out: 1-D, C[r, j] = out[r·ldo + j], P·MR rows
        (rows past A's own are zero rows of the padding). Each panel's columns as `panel_columns` runs them;
        with `backwards`, the panels last to first (the same bits); from k0, as `gemm_rows`.
        """
        n_panels, K, rows = panels.shape
        a = panels.reshape(-1)
        for i in range(n_panels):
            p = n_panels - 1 - i if backwards else i
            panel_columns(K - k0, a, (p * K + k0) * rows, rows, z, z_off + k0 * ldz, ldz, columns, out,
                          p * rows * ldo, ldo, False)

    @jit
    def panel_columns(K, a, a_off, rows, z, z_off, ldz, columns, out, c_row, ldo, add):
        """One panel's C[:, :columns] = A_p @ Z[:K, :columns] (add: C += ..., each entry's chain of fused
        multiply-adds continued from C's value, so K cut into blocks gives the bits of one call over all K):
        A_p[r, k] = a[a_off + k·rows + r], a panel of `rows` (MR) rows, Z and C as in `gemm_panels`. Columns
        run in blocks of 2·VW, then VW (an odd count of vectors from three on: the last three in one block
        per half of the panel's rows, `_half_3`), and any last few in a plain loop."""
        lanes = VECTOR_BYTES // z.itemsize
        vectors = columns // lanes
        three = ODD_VECTORS_IN_HALVES and vectors % 2 == 1 and vectors >= 3
        pairs = (vectors - 3 if three else vectors) // 2 * 2 * lanes  # columns run in pairs of vectors
        half = rows // 2
        j = 0
        while j < pairs:
            if add:
                _micro_2_add(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            else:
                _micro_2(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            j += 2 * lanes
        if three:
            for k in range(0, K, THREE_K_CHUNK):
                n, a_k, z_k = min(THREE_K_CHUNK, K - k), a_off + k * rows, z_off + k * ldz + j
                if k == 0 and not add:
                    _half_3(n, a, a_k, z, z_k, ldz, out, c_row + j, ldo)
                    _half_3(n, a, a_k + half, z, z_k, ldz, out, c_row + half * ldo + j, ldo)
                else:
                    _half_3_add(n, a, a_k, z, z_k, ldz, out, c_row + j, ldo)
                    _half_3_add(n, a, a_k + half, z, z_k, ldz, out, c_row + half * ldo + j, ldo)
            j += 3 * lanes
        elif j + lanes <= columns:
            if add:
                _micro_1_add(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            else:
                _micro_1(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            j += lanes
        for col in range(j, columns):
            for r in range(rows):
                total = out[c_row + r * ldo + col] if add else out.dtype.type(0)
                for k in range(K):
                    total += a[a_off + k * rows + r] * z[z_off + k * ldz + col]
                out[c_row + r * ldo + col] = total


if AVAILABLE:
    _row_major = _row_major_kernel(MR, VW)
    # The rows past the last whole panel in blocks of ROW_MAJOR_TAIL (not one more panel of MR): a part of
    # the RNN's or the GRU's backward may then hold any multiple of ROW_MAJOR_TAIL rows, so two parts share a
    # batch evenly (`threaded_rnn.backward_split`; 128 rows were 5 and 6 panels, 60 and 72 rows computed).
    # (a block of 8 rows where 5 to 8 are left: a 4-row block loads 6 values for 8 fused multiply-adds)
    ROW_MAJOR_TAIL = 4
    _tail4, _tail8 = _row_major_kernel(ROW_MAJOR_TAIL, VW), _row_major_kernel(2 * ROW_MAJOR_TAIL, VW)
    # gemm_row_major runs K in blocks of this many: a row panel's block of A stays in L1 (MR·256 floats), and
    # Z's block in L2 across the row panels. Without: the GRU's backward (K = 3H = 1536, Z 1.5 MB a part)
    # streamed Z from beyond L2 once per row panel, 1.22-1.38x slower than OpenBLAS at hidden 512, batch 64-128.
    ROW_MAJOR_K_BLOCK = 256
    # ... and in blocks of this many where Z comes packed in pairs of vectors (`pack_column_pairs`): each pair's
    # block is one forward stream from L2 however long. Measured on the Sapphire Rapids Xeon (one core,
    # GFLOP/s, K-blocks of 128 / 256 / 512): (80, 513) @ (513, 448) 200 / 204 / 210, (64, 321) @ (321, 256)
    # 200 / 204 / 209, (40, 321) @ (321, 256) 201 / 203 / 206.
    ROW_MAJOR_PACKED_K_BLOCK = 512

    @jit
    def gemm_row_major(a, a_off, lda, rows, z, z_off, ldz, columns, K, out, c_off, ldo):
        """out[c_off + r·ldo + j] = Σ_k a[a_off + r·lda + k] z[z_off + k·ldz + j] (1-D arrays; A row-major, not
        packed: `_row_major_kernel`) for r < `rows` rounded up to ROW_MAJOR_TAIL (whole panels of MR, then
        blocks of 8 or 4 rows, `_row_major_height`) and j < `columns`, a multiple of the vector's lanes. The
        rows past `rows` read whatever a holds there and write out's rows there: both arrays must reach that
        far, and those rows are the caller's to ignore. Each element is one fused multiply-add chain over k in
        order (K in blocks of ROW_MAJOR_K_BLOCK, each continuing the chain), whatever the height of its row's
        block."""
        for k in range(0, K, ROW_MAJOR_K_BLOCK):  # (a constant: as an argument the products ran 1.5x slower)
            _row_major_rows(k, min(ROW_MAJOR_K_BLOCK, K - k), a, a_off + k, lda, rows, z, z_off + k * ldz, ldz,
                            columns, out, c_off, ldo, 2 * VECTOR_BYTES // z.itemsize)

    @jit
    def gemm_row_major_pairs(a, a_off, lda, rows, z, K, columns, out, c_off, ldo):
        """`gemm_row_major` with Z packed in pairs of vectors of columns (`pack_column_pairs`: (pairs, K,
        2·lanes)), K in blocks of ROW_MAJOR_PACKED_K_BLOCK: the same bits."""
        width = 2 * VECTOR_BYTES // z.itemsize
        for k in range(0, K, ROW_MAJOR_PACKED_K_BLOCK):
            _row_major_rows(k, min(ROW_MAJOR_PACKED_K_BLOCK, K - k), a, a_off + k, lda, rows, z, k * width, width,
                            columns, out, c_off, ldo, K * width)

    @jit
    def _row_major_rows(k, depth, a, a_at, lda, rows, z, z_at, ldz, columns, out, c_off, ldo, pairs):
        """All the row blocks of a row-major product over one block of K (`depth` from k; a_at and z_at at its
        start), each over all the columns (`_row_major_block`); Z's pairs of columns `pairs` apart."""
        r = 0
        while r < rows:
            height = _row_major_height(rows - r)
            _row_major_block(height, k, depth, a, a_at + r * lda, lda, z, z_at, ldz, columns, out, c_off + r * ldo,
                             ldo, pairs)
            r += height

    @jit
    def _row_major_height(left):
        """The height of `gemm_row_major`'s next block with `left` rows to go (a multiple of ROW_MAJOR_TAIL):
        MR, then 8 or 4; but 16 rows with MR 12 as 8 + 8, not 12 + 4: a 4-row block loads 6 values for 8
        fused multiply-adds, and its 8 chains of 4-cycle multiply-adds barely keep two FMA units busy."""
        if left >= MR and not (MR == 3 * ROW_MAJOR_TAIL and left == MR + ROW_MAJOR_TAIL):
            return MR
        return 2 * ROW_MAJOR_TAIL if left > ROW_MAJOR_TAIL else ROW_MAJOR_TAIL

    @jit
    def _row_major_block(height, k, depth, a, a_at, lda, z, z_at, ldz, columns, out, c_at, ldo, pairs):
        """One block of `height` rows (MR, 8 or 4) of `gemm_row_major` over one block of K starting at k (the
        chain started where k is 0, else continued), all its columns: pairs of vectors (each pair's Z `pairs`
        after the last's), then one (a multiple of the vector's lanes: the last block one vector where one
        is left)."""
        lanes, add = VECTOR_BYTES // z.itemsize, k > 0
        for q in range(-(-columns // (2 * lanes))):
            j = 2 * lanes * q
            vectors = 1 if j + 2 * lanes > columns else 2
            z_pair = z_at + q * pairs
            if height == MR:
                _row_major(depth, a, a_at, z, z_pair, ldz, out, c_at + j, ldo, lda, add, vectors)
            elif height == ROW_MAJOR_TAIL:
                _tail4(depth, a, a_at, z, z_pair, ldz, out, c_at + j, ldo, lda, add, vectors)
            else:
                _tail8(depth, a, a_at, z, z_pair, ldz, out, c_at + j, ldo, lda, add, vectors)


def pack_column_pairs(z: np.ndarray) -> np.ndarray:
    """Z (K, N), N a multiple of the vector's lanes → (ceil(N / 2·lanes), K, 2·lanes): each pair of vectors
    of columns contiguous over k, zeros past N, for `gemm_row_major_pairs`, whose blocks then read Z in one
    forward stream each (row-major, a wide Z's rows sit N floats apart: a new 4 KB page every few k). Zᵀ's
    rows in `pack_panels`' panels of 2·lanes."""
    return pack_panels(z.T, 2 * VECTOR_BYTES // z.itemsize)


def pack_panels(rows: np.ndarray, width: int | None = None) -> np.ndarray:
    """A (M, K) → panels (ceil(M/width), K, width), width MR for `gemm_panels`; the last panel's missing rows
    are zeros."""
    width = width or MR
    M, K = rows.shape
    count = -(-M // width)
    padded = np.zeros((count * width, K), dtype=rows.dtype)
    padded[:M] = rows
    return np.ascontiguousarray(padded.reshape(count, width, K).transpose(0, 2, 1))


def pack_row_panels(rows: np.ndarray) -> np.ndarray:
    """A (M, K) → panels RV vectors wide for `gemm_rows`."""
    return pack_panels(rows, RV * VECTOR_BYTES // rows.dtype.itemsize)


if AVAILABLE:
    # Taller row panels for one to three columns: `_rows_kernel` with RW vectors of rows. With RV = 2 vectors
    # and one column, a k step has 2 independent fused multiply-adds, and each waits on its own previous one
    # (4 cycles on Zen): the FMA units idle 3/4 of the time. RW vectors keep RW·columns chains in flight.
    RW = 4
    _wide_1, _wide_2, _wide_3 = (_rows_kernel(RW, nb, VW) for nb in range(1, 4))

    @jit
    def gemm_rows_wide(panels, z, z_off, ldz, columns, out, ldo, k0=0):
        """`gemm_rows` for panels RW vectors tall (`pack_wide_row_panels`): the same arguments (k0 too), the
        same fused multiply-add chain per element (the same bits), columns in blocks of three."""
        n_panels, K, rows = panels.shape
        a = panels.reshape(-1)
        depth, z_at = K - k0, z_off + k0 * ldz
        for p in range(n_panels):
            a_off, c_row = (p * K + k0) * rows, p * rows * ldo
            for j in range(0, columns, 3):
                n = min(3, columns - j)
                if n == 1:
                    _wide_1(depth, a, a_off, z, z_at + j, ldz, out, c_row + j, ldo)
                elif n == 2:
                    _wide_2(depth, a, a_off, z, z_at + j, ldz, out, c_row + j, ldo)
                else:
                    _wide_3(depth, a, a_off, z, z_at + j, ldz, out, c_row + j, ldo)


def pack_wide_row_panels(rows: np.ndarray) -> np.ndarray:
    """A (M, K) → panels RW vectors wide for `gemm_rows_wide`."""
    return pack_panels(rows, RW * VECTOR_BYTES // rows.dtype.itemsize)


if AVAILABLE:
    # The accumulating row-vector kernel, for sums over many steps taken a few steps at a time (the LSTM's
    # weight gradients, threaded_lstm.weight_gradients): blocks of up to ADD_COLUMNS columns.
    ADD_COLUMNS = 6
    _add_1, _add_2, _add_3, _add_4, _add_5, _add_6 = (_rows_kernel(RV, nb, VW, accumulate=True)
                                                      for nb in range(1, ADD_COLUMNS + 1))

    @jit
    def gemm_rows_add_blocks(panels, z, z_off, ldz, columns, out, ldo, block, order, side):
        """out[:, :columns] += A @ Z[:, :columns], A packed in panels (P, K, R) as for `gemm_rows` (the same
        arguments), each element's fused multiply-adds continuing its chain (summing K in parts, in order,
        gives the bits of one call over all K); A's rows in blocks of `block` (a cell's gates in packed order)
        and out's in another order: A's row q·block + u into out's row order[q]·block + u. A panel whose rows
        lie in a row in out goes straight into out (each entry's chain continued from its value); the others
        (across two blocks that out puts apart, or into the last panel's padding) into `side` (S·R·columns, zeros at
        first; the s-th such panel's at s·R·columns), which `add_side_panels` adds into out once all are
        summed (copying those rows into a scratch and back for each call cost more than the add it saved)."""
        n_panels, K, rows = panels.shape
        a = panels.reshape(-1)
        s = 0
        for p in range(n_panels):
            at = _straight_row(p * rows, rows, block, order)
            if at >= 0:
                _rows_add_panel(K, a, p * K * rows, z, z_off, ldz, columns, out, at * ldo, ldo)
            else:
                _rows_add_panel(K, a, p * K * rows, z, z_off, ldz, columns, side, s * rows * columns, columns)
                s += 1

    @jit
    def add_side_panels(side, rows, columns, out, ldo, block, order):
        """out's rows += `gemm_rows_add_blocks`' side panels (R = rows each), each row where that function's
        panels map it, rows past len(order)·block (padding) dropped."""
        end = len(order) * block
        s = 0
        for p in range(-(-end // rows)):
            first = p * rows
            if _straight_row(first, rows, block, order) >= 0:
                continue
            for r in range(min(rows, end - first)):
                row = first + r
                at = (order[row // block] * block + row % block) * ldo
                base = (s * rows + r) * columns
                for c in range(columns):
                    out[at + c] += side[base + c]
            s += 1

    def side_panels(gates: int, block: int, rows: int, order) -> int:
        """How many of `gemm_rows_add_blocks`' panels (R = rows) of gates·block rows go to its side."""
        order = np.asarray(order)
        return sum(_straight_row(first, rows, block, order) < 0 for first in range(0, gates * block, rows))

    @jit
    def _straight_row(first, rows, block, order):
        """out's row for A's rows first..first+rows-1 where they lie in a row in out (`gemm_rows_add_blocks`),
        else -1."""
        q = first // block
        last = first + rows - 1
        if last >= len(order) * block:
            return -1
        for q_next in range(q + 1, last // block + 1):
            if order[q_next] != order[q] + q_next - q:
                return -1
        return order[q] * block + first - q * block

    @jit
    def _rows_add_panel(K, a, a_off, z, z_off, ldz, columns, out, c_row, ldo):
        """out[c_row + r·ldo + j] += Σ_k a[a_off + k·R + r] z[z_off + k·ldz + j] for one panel (K, R) of A
        and j < columns, its columns in blocks of near-equal width, at most ADD_COLUMNS each."""
        count = -(-columns // ADD_COLUMNS)
        j = 0
        for q in range(count):
            n = -(-(columns - j) // (count - q))
            if n == 1:
                _add_1(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            elif n == 2:
                _add_2(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            elif n == 3:
                _add_3(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            elif n == 4:
                _add_4(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            elif n == 5:
                _add_5(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            else:
                _add_6(K, a, a_off, z, z_off + j, ldz, out, c_row + j, ldo)
            j += n


# The matrix product on these kernels (threads.matmul's, where OpenBLAS runs narrower vectors than the CPU's:
# see threads.own_products). A part packs its rows of A into panels and multiplies them by B, whose columns
# come padded to whole vectors (`matmul_operand`): every entry one chain of fused multiply-adds over k in
# order, so the bits do not depend on how the rows are split.
def matmul_operand(b: np.ndarray) -> np.ndarray:
    """B (K, N) as a C-contiguous (K, N'), N' = N rounded up to whole vectors of the kernels, the added
    columns zero: b itself where it is that already, else a copy."""
    lanes = VECTOR_BYTES // b.itemsize
    if b.flags.c_contiguous and b.shape[1] % lanes == 0:
        return b
    padded = np.zeros((b.shape[0], -(-b.shape[1] // lanes) * lanes), dtype=b.dtype)
    padded[:, :b.shape[1]] = b
    return padded


def _splat(builder, value, lanes: int):
    """A vector of `lanes` copies of the scalar `value`."""
    undefined = ir.Constant(ir.VectorType(value.type, lanes), ir.Undefined)
    one = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undefined, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _shuffle(builder, x, y, mask: list[int]):
    """Lanes of x and y (y's numbered after x's) in the order of `mask`."""
    return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))


def _transpose(builder, vectors: list) -> list:
    """n vectors of n lanes (n a power of 2) transposed: vector j's lane i is vectors[i]'s lane j. Stage b
    swaps bit b of the vector's and the lane's index, in shuffles of pairs (log2 n stages of n shuffles)."""
    v, n, bit = list(vectors), len(vectors), 1
    while bit < n:
        for i in (i for i in range(n) if not i & bit):
            j = i | bit
            low = [lane if not lane & bit else n + (lane ^ bit) for lane in range(n)]
            high = [lane | bit if not lane & bit else n + lane for lane in range(n)]
            v[i], v[j] = _shuffle(builder, v[i], v[j], low), _shuffle(builder, v[i], v[j], high)
        bit <<= 1
    return v


def _compact(builder, vectors: list, used: int, lanes: int) -> list:
    """The first `used` lanes of each vector, end to end, as whole vectors of `lanes` lanes (each drawn from
    two neighbours: used >= lanes / 2)."""
    width, out = vectors[0].type.count, []
    for m in range(len(vectors) * used // lanes):
        first, offset = divmod(m * lanes, used)
        take = used - offset
        mask = [offset + lane if lane < take else width + lane - take for lane in range(lanes)]
        out.append(_shuffle(builder, vectors[first], vectors[min(first + 1, len(vectors) - 1)], mask))
    return out


def _panel_block(builder, scalar, rows: list, width: int, target, count=None) -> None:
    """Store VW values of k of `width` rows (a list of VW-lane vectors, one a row, `width` of them) at target
    as a panel's k-major block: target[k·width + r] = rows[r][k], k < VW (k < `count`, an i64 value, where
    given: width a multiple of VW). Rows in blocks of VW, each block transposed in registers; a block of
    fewer rows (width = MR < VW) zero-padded, then its k's runs put end to end (`_compact`)."""
    i64 = ir.IntType(64)
    whole = ir.VectorType(scalar, VW).as_pointer()

    def store(vector, offset):
        if count is None:
            builder.store(vector, builder.bitcast(builder.gep(target, [ir.Constant(i64, offset)]), whole), align=4)
            return
        with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, offset // width), count)):
            builder.store(vector, builder.bitcast(builder.gep(target, [ir.Constant(i64, offset)]), whole), align=4)

    if width < VW:
        zero = ir.Constant(ir.VectorType(scalar, VW), [ir.Constant(scalar, 0.0)] * VW)
        for m, vector in enumerate(_compact(builder, _transpose(builder, rows + [zero] * (VW - width)), width, VW)):
            store(vector, m * VW)
        return
    for block in range(width // VW):
        for k, vector in enumerate(_transpose(builder, rows[block * VW: (block + 1) * VW])):
            store(vector, k * width + block * VW)


def _panel_block_kernel(layout: str, width: int):
    """An intrinsic packing VW values of k of one whole panel `width` rows tall (MR, or a multiple of VW):
    dst[dst_off + k·width + r] = A[r, k] for k < VW, r < width. layout:
      "strided"  arguments (src, src_off, stride, dst, dst_off, rows_run); with rows_run (not 0)
                 A[r, k] = src[src_off + r·stride + k]: A's rows run along memory (one vector load a row,
                 transposed in registers); else A[r, k] = src[src_off + k·stride + r]: its columns do (a
                 transposed view; runs of `width` values copied, end to end);
      "gather"   A[r, k] = scales[first + r] · src[offsets[first + r] + k] for r < rows, zero for r >= rows:
                 rows picked and scaled (the LSTM's gate rows, halved); arguments (src, offsets, scales,
                 first, k0, dst, dst_off, rows, count), k from k0, only the first `count` (1 to VW) values
                 of k read and written (width a multiple of VW where count < VW); offsets[first + r] must
                 be a row inside src for every r < width (a padding row's is read, its values not used);
      "summed"   "strided" with A's rows along memory, only the first `count` (1 to VW) values of k read
                 (the rest zeros: written, and to be written over), each row's VW values also added lane by
                 lane to its VW partial sums: sums[sums_off + r·VW + k] += A[r, k]; arguments (src,
                 src_off, stride, dst, dst_off, sums, sums_off, count)."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        scalar = context.get_value_type(sig.args[0].dtype)

        def data(i):
            return context.make_array(sig.args[i])(context, builder, args[i]).data

        def integer(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        def at(pointer, index):
            return builder.gep(pointer, [index if isinstance(index, ir.Value) else ir.Constant(i64, index)])

        def load(pointer, lanes):
            vector = ir.VectorType(scalar, lanes)
            return builder.load(builder.bitcast(pointer, vector.as_pointer()), align=4)

        if layout == "gather":
            source, offsets, scales = data(0), data(1), data(2)
            first, k0 = integer(3), integer(4)
            target, valid, count = at(data(5), integer(6)), integer(7), integer(8)
            vector, bits = ir.VectorType(scalar, VW), 32 if isinstance(scalar, ir.FloatType) else 64
            mask_type = ir.VectorType(ir.IntType(1), VW)
            masked_load = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector.as_pointer(), ir.IntType(32), mask_type, vector]),
                f"llvm.masked.load.v{VW}f{bits}.p0v{VW}f{bits}")
            zeros = ir.Constant(vector, [ir.Constant(scalar, 0.0)] * VW)
            lanes = builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, VW), list(range(VW))),
                                        _splat(builder, count, VW))
            rows = []
            for r in range(width):
                index = builder.add(first, ir.Constant(i64, r))
                row = at(source, builder.add(builder.load(at(offsets, index)), k0))
                splat = _splat(builder, builder.load(at(scales, index)), VW)
                loaded = builder.call(masked_load, [builder.bitcast(row, vector.as_pointer()),
                                                    ir.IntType(32)(4), lanes, zeros])
                inside = builder.icmp_signed("<", ir.Constant(i64, r), valid)
                rows.append(builder.select(inside, builder.fmul(loaded, splat), zeros))
            _panel_block(builder, scalar, rows, width, target, None if width < VW else count)
            return context.get_dummy_value()
        source, stride, target = at(data(0), integer(1)), integer(2), at(data(3), integer(4))
        if layout == "summed":
            vector, bits = ir.VectorType(scalar, VW), 32 if isinstance(scalar, ir.FloatType) else 64
            mask_type = ir.VectorType(ir.IntType(1), VW)
            masked_load = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector.as_pointer(), ir.IntType(32), mask_type, vector]),
                f"llvm.masked.load.v{VW}f{bits}.p0v{VW}f{bits}")
            sums = at(data(5), integer(6))

            def pack_and_sum(row_load):
                rows = [row_load(at(source, builder.mul(ir.Constant(i64, r), stride))) for r in range(width)]
                _panel_block(builder, scalar, rows, width, target)
                for r, row in enumerate(rows):
                    pointer = builder.bitcast(at(sums, r * VW), vector.as_pointer())
                    builder.store(builder.fadd(builder.load(pointer, align=4), row), pointer, align=4)

            count = integer(7)
            with builder.if_else(builder.icmp_signed("==", count, ir.Constant(i64, VW))) as (whole, part):
                with whole:
                    pack_and_sum(lambda pointer: load(pointer, VW))
                with part:
                    mask = builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, VW), list(range(VW))),
                                               _splat(builder, count, VW))
                    zeros = ir.Constant(vector, [ir.Constant(scalar, 0.0)] * VW)
                    pack_and_sum(lambda pointer: builder.call(masked_load, [
                        builder.bitcast(pointer, vector.as_pointer()), ir.Constant(ir.IntType(32), 4), mask, zeros]))
            return context.get_dummy_value()
        rows_run = builder.icmp_signed("!=", integer(5), ir.Constant(i64, 0))
        with builder.if_else(rows_run) as (along_rows, along_columns):
            with along_rows:
                rows = [load(at(source, builder.mul(ir.Constant(i64, r), stride)), VW) for r in range(width)]
                _panel_block(builder, scalar, rows, width, target)
            with along_columns:
                runs = [at(source, builder.mul(ir.Constant(i64, k), stride)) for k in range(VW)]
                if width < VW:
                    vectors = _compact(builder, [load(run, width) for run in runs], width, VW)
                    offsets = [m * VW for m in range(len(vectors))]
                else:
                    vectors = [load(at(run, v * VW), VW) for run in runs for v in range(width // VW)]
                    offsets = [k * width + v * VW for k in range(VW) for v in range(width // VW)]
                whole = ir.VectorType(scalar, VW).as_pointer()
                for vector, offset in zip(vectors, offsets):
                    builder.store(vector, builder.bitcast(at(target, offset), whole), align=4)
        return context.get_dummy_value()

    if layout == "gather":
        @intrinsic
        def kernel(typingctx, src, offsets, scales, first, k0, dst, dst_off, rows, count):
            return types.void(src, offsets, scales, first, k0, dst, dst_off, rows, count), codegen
    elif layout == "summed":
        @intrinsic
        def kernel(typingctx, src, src_off, stride, dst, dst_off, sums, sums_off, count):
            return types.void(src, src_off, stride, dst, dst_off, sums, sums_off, count), codegen
    else:
        @intrinsic
        def kernel(typingctx, src, src_off, stride, dst, dst_off, rows_run):
            return types.void(src, src_off, stride, dst, dst_off, rows_run), codegen
    return kernel


def _column_runs_kernel(width: int):
    """An intrinsic (src, src_off, stride, dst, dst_off, rows, count) packing `count` (1 to VW) values of k
    of a panel `width` rows tall (a multiple of VW) from A[r, k] = src[src_off + k·stride + r] (a transposed
    view: W^T's rows are W's columns, each k a run of rows along memory): dst[dst_off + k·width + r] =
    A[r, k] for r < rows and 0 for rows <= r < width, k < count; nothing of src past a run's `rows` values
    read (masked loads), nothing of dst past the `count` values of k written. The last panel's rows and the
    last values of k in vector registers: a loop of scalars there took 49 of 93 us packing W_ih^T (hidden
    192, input 462, panels of 64 rows, one core)."""
    def codegen(context, builder, sig, args):
        i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
        scalar = context.get_value_type(sig.args[0].dtype)
        vector, mask_type = ir.VectorType(scalar, VW), ir.VectorType(i1, VW)
        pointer_type, name = vector.as_pointer(), f"v{VW}f{sig.args[0].dtype.bitwidth}"
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [pointer_type, i32, mask_type, vector]),
            f"llvm.masked.load.{name}.p0{name}")

        def integer(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        def at(i, offset):
            return builder.gep(context.make_array(sig.args[i])(context, builder, args[i]).data, [offset])

        source, stride, target = at(0, integer(1)), integer(2), at(3, integer(4))
        rows, count = integer(5), integer(6)
        lanes = ir.Constant(ir.VectorType(i64, VW), list(range(VW)))
        masks = [builder.icmp_signed("<", lanes, _splat(builder, builder.sub(rows, ir.Constant(i64, v * VW)), VW))
                 for v in range(width // VW)]
        zeros = ir.Constant(vector, [ir.Constant(scalar, 0.0)] * VW)
        for k in range(VW):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, k), count)):
                run = builder.gep(source, [builder.mul(ir.Constant(i64, k), stride)])
                for v in range(width // VW):
                    pointer = builder.bitcast(builder.gep(run, [ir.Constant(i64, v * VW)]), pointer_type)
                    value = builder.call(masked_load, [pointer, ir.Constant(i32, 4), masks[v], zeros])
                    out = builder.gep(target, [ir.Constant(i64, k * width + v * VW)])
                    builder.store(value, builder.bitcast(out, pointer_type), align=4)
        return context.get_dummy_value()

    @intrinsic
    def kernel(typingctx, src, src_off, stride, dst, dst_off, rows, count):
        return types.void(src, src_off, stride, dst, dst_off, rows, count), codegen
    return kernel


def _transposed_block_kernel(partial: bool):
    """An intrinsic (src, src_off, ld_src, dst, dst_off, ld_dst, rows): dst[dst_off + c·ld_dst + r] =
    src[src_off + r·ld_src + c] for c < VW and r < VW (`partial`: r < rows, 1 to VW): the rows' runs of src
    loaded as vectors, transposed in registers (`_transpose`), stored as VW runs of dst; with `partial`, each
    store masked to its first `rows` lanes and a row past them not read (its load masked off, at the last
    row's address, inside the array)."""
    def codegen(context, builder, sig, args):
        i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
        scalar = context.get_value_type(sig.args[0].dtype)
        vector, mask_type = ir.VectorType(scalar, VW), ir.VectorType(i1, VW)
        pointer_type, name = vector.as_pointer(), f"v{VW}f{sig.args[0].dtype.bitwidth}"

        def integer(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        def run(i, offset, ld, k):
            base = builder.gep(context.make_array(sig.args[i])(context, builder, args[i]).data, [integer(offset)])
            return builder.bitcast(builder.gep(base, [builder.mul(k, integer(ld))]), pointer_type)

        def index(k):
            return ir.Constant(i64, k)

        if not partial:
            loaded = [builder.load(run(0, 1, 2, index(r)), align=4) for r in range(VW)]
            for c, column in enumerate(_transpose(builder, loaded)):
                builder.store(column, run(3, 4, 5, index(c)), align=4)
            return context.get_dummy_value()
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [pointer_type, i32, mask_type, vector]),
            f"llvm.masked.load.{name}.p0{name}")
        masked_store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vector, pointer_type, i32, mask_type]),
            f"llvm.masked.store.{name}.p0{name}")
        rows, align = integer(6), ir.Constant(i32, 4)
        zeros = ir.Constant(vector, [ir.Constant(scalar, 0.0)] * VW)
        loaded = []
        for r in range(VW):
            inside = builder.icmp_signed("<", index(r), rows)
            at = builder.select(inside, index(r), builder.sub(rows, index(1)))
            loaded.append(builder.call(masked_load, [run(0, 1, 2, at), align, _splat(builder, inside, VW), zeros]))
        written = builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, VW), list(range(VW))),
                                      _splat(builder, rows, VW))
        for c, column in enumerate(_transpose(builder, loaded)):
            builder.call(masked_store, [column, run(3, 4, 5, index(c)), align, written])
        return context.get_dummy_value()

    @intrinsic
    def kernel(typingctx, src, src_off, ld_src, dst, dst_off, ld_dst, rows):
        return types.void(src, src_off, ld_src, dst, dst_off, ld_dst, rows), codegen
    return kernel


if AVAILABLE:
    # The panel heights the threaded paths pack: MR (gemm_panels), RV·VW (gemm_rows), RW·VW (gemm_rows_wide).
    PANEL_WIDTHS = (MR, RV * VW, RW * VW)
    _pack_0, _pack_1, _pack_2 = (_panel_block_kernel("strided", w) for w in PANEL_WIDTHS)
    _pack_summed_0, _pack_summed_1, _pack_summed_2 = (_panel_block_kernel("summed", w) for w in PANEL_WIDTHS)
    _pack_gather_0, _pack_gather_1, _pack_gather_2 = (_panel_block_kernel("gather", w) for w in PANEL_WIDTHS)
    _pack_runs_1, _pack_runs_2 = (_column_runs_kernel(w) for w in PANEL_WIDTHS[1:])

    @jit
    def pack_runs(kind, a, offset, stride, flat, target, rows, count):
        """`_column_runs_kernel` of a panel of height PANEL_WIDTHS[kind], kind 1 or 2 (whole vectors tall)."""
        if kind == 1:
            _pack_runs_1(a, offset, stride, flat, target, rows, count)
        else:
            _pack_runs_2(a, offset, stride, flat, target, rows, count)

    @jit
    def _pack_block(kind, rows_run, a, offset, stride, flat, target):
        """One "strided" block (`_panel_block_kernel`) of a panel of height PANEL_WIDTHS[kind]."""
        if kind == 0:
            _pack_0(a, offset, stride, flat, target, rows_run)
        elif kind == 1:
            _pack_1(a, offset, stride, flat, target, rows_run)
        else:
            _pack_2(a, offset, stride, flat, target, rows_run)

    @jit
    def pack_block_summed(kind, a, offset, stride, flat, target, sums, sums_off, count):
        """One "summed" block (`_panel_block_kernel`) of a panel of height PANEL_WIDTHS[kind]."""
        if kind == 0:
            _pack_summed_0(a, offset, stride, flat, target, sums, sums_off, count)
        elif kind == 1:
            _pack_summed_1(a, offset, stride, flat, target, sums, sums_off, count)
        else:
            _pack_summed_2(a, offset, stride, flat, target, sums, sums_off, count)

    @jit
    def pack_block_gathered(kind, source, offsets, scales, first, k0, flat, target, rows, count):
        """One "gather" block of a panel of height PANEL_WIDTHS[kind]."""
        if kind == 0:
            _pack_gather_0(source, offsets, scales, first, k0, flat, target, rows, count)
        elif kind == 1:
            _pack_gather_1(source, offsets, scales, first, k0, flat, target, rows, count)
        else:
            _pack_gather_2(source, offsets, scales, first, k0, flat, target, rows, count)

    _transposed_block, _transposed_rows = _transposed_block_kernel(False), _transposed_block_kernel(True)

    @jit
    def copy_transposed(src, src_off, ld_src, dst, dst_off, ld_dst, rows, cols):
        """dst[dst_off + c·ld_dst + r] = src[src_off + r·ld_src + c] for r < rows and c < cols - cols % VW
        (whole blocks of VW columns; the caller copies the rest): arrays of any shape, offsets and leading
        dimensions in elements from their first (a run of src and of dst contiguous), in blocks of VW × VW
        transposed in registers (`_transposed_block_kernel`), the last rows' block masked."""
        for r0 in range(0, rows, VW):
            for c0 in range(0, cols - cols % VW, VW):
                if rows - r0 >= VW:
                    _transposed_block(src, src_off + r0 * ld_src + c0, ld_src, dst, dst_off + c0 * ld_dst + r0,
                                      ld_dst, VW)
                else:
                    _transposed_rows(src, src_off + r0 * ld_src + c0, ld_src, dst, dst_off + c0 * ld_dst + r0,
                                     ld_dst, rows - r0)

    @jit
    def panel_kind(width):
        """The index of `width` in PANEL_WIDTHS, or -1."""
        for kind in range(len(PANEL_WIDTHS)):
            if width == PANEL_WIDTHS[kind]:
                return kind
        return -1

    @jit
    def pack_rows(a, lo, hi, out):
        """out[p, k, r] = a[lo + p·w + r, k] for rows below hi, zero past them: panels (P, K, w) of A's rows
        lo..hi-1 (`pack_rows_at` from k 0)."""
        pack_rows_at(a, lo, hi, out, 0)

    @jit
    def pack_rows_at(a, lo, hi, out, k_first):
        """out[p, k_first + k, r] = a[lo + p·w + r, k] for k < a's columns and rows below hi, zero past them:
        A's rows lo..hi-1 into panels (P, depth, w) from their k_first (e.g. one gate block of a part's
        panels at a time), any strides. float32 panels of MR, RV·VW or RW·VW rows (`PANEL_WIDTHS`) where a
        runs along its rows or its columns: VW values of k at a time in vector registers
        (`_panel_block_kernel`; measured on a Zen 5 core, 2 MB of A: 0.32 → 0.05 ms along rows, 0.26 → 0.10
        ms along columns). Else where a's rows run down its memory (a transposed view: W^T's rows are W's
        columns), in blocks of 64 k, each read once from memory (a panel at a time over all k instead reads
        64 bytes of every k per panel: 4x slower at hidden 512); else 16 k of a row at a time, each row's
        cache line read once."""
        count, depth, width = out.shape
        K = a.shape[1]
        zero = out.dtype.type(0)
        kind = panel_kind(width)
        if out.itemsize == 4 and a.itemsize == 4 and kind >= 0 and (a.strides[1] == 4 or a.strides[0] == 4):
            rows_run = a.strides[1] == 4
            stride = a.strides[0] // 4 if rows_run else a.strides[1] // 4
            whole = K - K % VW
            flat = out.reshape(-1)
            full = min(count, (hi - lo) // width)  # panels with all their rows
            if rows_run:
                for p in range(full):
                    first = lo + p * width
                    for k0 in range(0, whole, VW):
                        _pack_block(kind, True, a, first * stride + k0, stride, flat,
                                    (p * depth + k_first + k0) * width)
            else:  # 64 values of k over all panels at a time: each cache line of a read once
                for k_lo in range(0, whole, 64):
                    for p in range(full):
                        first = lo + p * width
                        for k0 in range(k_lo, min(whole, k_lo + 64), VW):
                            _pack_block(kind, False, a, first + k0 * stride, stride, flat,
                                        (p * depth + k_first + k0) * width)
            if not rows_run and kind > 0:  # the k past whole vectors, and the last panel: runs masked
                for p in range(count):
                    first = lo + p * width
                    take = max(0, min(width, hi - first))
                    for k0 in range(whole if p < full else 0, K, VW):
                        pack_runs(kind, a, first + k0 * stride, stride, flat, (p * depth + k_first + k0) * width,
                                  take, min(VW, K - k0))
                return
            for p in range(full):  # the k past whole vectors: no test per row (a panel's w values of k in a row)
                first = lo + p * width
                for k in range(whole, K):
                    for r in range(width):
                        out[p, k_first + k, r] = a[first + r, k]
            for p in range(full, count):  # the last panel, its rows past hi zeros
                first = lo + p * width
                take = max(0, min(width, hi - first))
                for k in range(K):
                    for r in range(take):
                        out[p, k_first + k, r] = a[first + r, k]
                    for r in range(take, width):
                        out[p, k_first + k, r] = zero
            return
        if a.strides[0] < a.strides[1]:
            for k0 in range(0, K, 64):
                k1 = min(K, k0 + 64)
                for p in range(count):
                    first = lo + p * width
                    take = max(0, min(width, hi - first))
                    for k in range(k0, k1):
                        for r in range(take):
                            out[p, k_first + k, r] = a[first + r, k]
                        for r in range(take, width):
                            out[p, k_first + k, r] = zero
            return
        for p in range(count):
            first = lo + p * width
            take = max(0, min(width, hi - first))
            for k_lo in range(0, K, 16):
                k_hi = min(K, k_lo + 16)
                for r in range(width):
                    if r < take:
                        for k in range(k_lo, k_hi):
                            out[p, k_first + k, r] = a[first + r, k]
                    else:
                        for k in range(k_lo, k_hi):
                            out[p, k_first + k, r] = zero

    # A long K (the weight gradients': time · batch) ran each panel over all of B, which then came from memory
    # for every panel: (512, 8192) @ (8192, 576) on two threads 106 GFLOP/s against OpenBLAS's 257. In blocks
    # of B that stay in a core's L2 (256 × 512 floats, 512 KB) every panel of A reads it from there.
    MATMUL_K_BLOCK, MATMUL_N_BLOCK = 256, 512

    @jit
    def matmul_rows(a, lo, hi, operands, outs):
        """outs[i][lo:hi] = (A @ B_i)[lo:hi] for each B_i of the tuple `operands` from `matmul_operand` (K,
        N_i') and outs[i] (rows, N_i'), with lo a multiple of MR and room for whole panels of MR rows from lo
        (rows past hi are written, as zeros times B_i). A's rows are packed a block of MATMUL_K_BLOCK of K at
        a time, each block once for all the products (the LSTM's dW_ih and dW_hh share d: packing it took 0.2
        of 0.63 ms a product at hidden 192 batch 40), and used while it is in the cache."""
        K = operands[0].shape[0]
        count = -(-(hi - lo) // MR)
        room = np.empty(count * min(K, MATMUL_K_BLOCK) * MR, dtype=operands[0].dtype)
        for k in range(0, K, MATMUL_K_BLOCK):
            depth = min(MATMUL_K_BLOCK, K - k)
            pack_rows(a[:, k:k + depth], lo, hi, room[:count * depth * MR].reshape((count, depth, MR)))
            _block_products(room, 0, depth * MR, count, MR, depth, k, operands, outs, lo)

    @jit
    def panel_products(panels, operands, outs, lo):
        """outs[i][lo:lo + P·MR] = A @ B_i for A packed in panels (P, K, MR), each B_i of the tuple `operands`
        (K, N_i') from `matmul_operand`, a block of MATMUL_K_BLOCK of K at a time (`_block_products`)."""
        count, K, rows = panels.shape
        a = panels.reshape(-1)
        for k in range(0, K, MATMUL_K_BLOCK):
            _block_products(a, k * rows, K * rows, count, rows, min(MATMUL_K_BLOCK, K - k), k, operands, outs, lo)

    @jit
    def add_products_rows(a, lo, hi, operands, outs, out_lo, scratch):
        """outs[i][out_lo + r] += (A @ B_i)[lo + r] for r < hi - lo, each B_i of the tuple `operands` from
        `matmul_operand` (K, N_i', columns padded to whole vectors) and outs[i] (·, N_i) C-contiguous, A (M, K)
        any strides: each entry's chain of fused multiply-adds continues from its value (a weight gradient
        added where it accumulates, with no product array between: at hidden 420, K 10 that array was 2.8 MB
        written and read again), the chain of `matmul_rows`'s entry. A's rows packed a block of
        MATMUL_K_BLOCK of K at a time, as there; whole panels of MR rows over whole vectors of columns straight
        into outs, the rest (the columns past the last whole vector, the rows past the last whole panel)
        through `scratch` (MR·MATMUL_N_BLOCK,): nothing outside the rows and columns is written. The bits do
        not depend on how the rows are cut."""
        K = operands[0].shape[0]
        n = hi - lo
        count, full = -(-n // MR), n // MR
        lanes = VECTOR_BYTES // a.itemsize
        room = np.empty(count * min(K, MATMUL_K_BLOCK) * MR, dtype=operands[0].dtype)
        for k in range(0, K, MATMUL_K_BLOCK):
            depth = min(MATMUL_K_BLOCK, K - k)
            pack_rows(a[:, k:k + depth], lo, hi, room[:count * depth * MR].reshape((count, depth, MR)))
            for i in range(len(operands)):
                padded, columns = operands[i].shape[1], outs[i].shape[1]
                z, out = operands[i].reshape(-1), outs[i].reshape(-1)
                for j in range(0, columns, MATMUL_N_BLOCK):
                    width = min(MATMUL_N_BLOCK, padded - j)       # whole vectors
                    valid = min(MATMUL_N_BLOCK, columns - j)      # the columns out has
                    whole = valid - valid % lanes
                    for q in range(count):
                        rows = min(MR, n - q * MR)
                        first = (out_lo + q * MR) * columns + j
                        start = whole if rows == MR else 0        # (a whole panel's vectors went straight)
                        if rows == MR and whole > 0:
                            panel_columns(depth, room, q * depth * MR, MR, z, k * padded + j, padded, whole, out,
                                          first, columns, True)
                        if start < valid:
                            span = width - start
                            for r in range(rows):
                                for c in range(start, valid):
                                    scratch[r * span + c - start] = out[first + r * columns + c]
                            panel_columns(depth, room, q * depth * MR, MR, z, k * padded + j + start, padded, span,
                                          scratch, 0, span, True)
                            for r in range(rows):
                                for c in range(start, valid):
                                    out[first + r * columns + c] = scratch[r * span + c - start]

    @jit
    def add_products_blocks(a, lo, hi, block, order, operands, outs, scratch):
        """`add_products_rows` for rows lo..hi-1 of A whose rows come in blocks of `block` (a cell's gates in
        packed order) and outs' in another order: block q's share of the rows into outs' block order[q]."""
        for q in range(len(order)):
            first, last = max(lo, q * block), min(hi, (q + 1) * block)
            if first < last:
                add_products_rows(a, first, last, operands, outs, order[q] * block + first - q * block, scratch)

    @jit
    def _block_products(a, a_off, panel_stride, count, rows, depth, k, operands, outs, lo):
        """outs[i][lo:lo + P·rows] (+)= A[:, k:k + depth] @ B_i[k:k + depth] for each B_i of `operands`: A's
        block in `count` panels, A[p·rows + r, k + κ] = a[a_off + p·panel_stride + κ·rows + r]; added to C
        where k > 0 (each entry's chain of fused multiply-adds continued: the bits of one pass over all K).
        B_i's columns in blocks of MATMUL_N_BLOCK, every panel over a block before the next (`panel_columns`):
        the block (depth × MATMUL_N_BLOCK) is read from memory once and then from L2."""
        for i in range(len(operands)):
            columns = operands[i].shape[1]
            z, out = operands[i].reshape(-1), outs[i][lo:].reshape(-1)
            for j in range(0, columns, MATMUL_N_BLOCK):
                for p in range(count):
                    panel_columns(depth, a, a_off + p * panel_stride, rows, z, k * columns + j, columns,
                                  min(MATMUL_N_BLOCK, columns - j), out, p * rows * columns + j, columns, k > 0)
