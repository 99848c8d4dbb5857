"""Run one compiled function on several threads at once, each on its own part, meeting at every time step.

Why. A recurrent step is a dependency chain: step t+1 needs all of h_{t+1}. Splitting each step's product
over two BLAS threads makes them meet twice per step inside OpenBLAS and leaves the gate arithmetic on one
core. Here each thread instead owns a slice of the hidden units for the whole sequence: its rows of the
weights (packed once, so they stay in its core's cache), its product, its gate arithmetic. Threads meet
once per step, through a flag per thread that says how many steps it has finished (`arrive` / `wait_all`,
atomic release stores and acquire loads; a waiting thread spins, and yields the CPU after a while).

`run(function, argument_sets)` calls function(*argument_sets[k]) for every k at the same time: k = 0 on the
calling thread, the others on persistent worker threads (`Pool`), which spin for a while for their next job
before they sleep (`_Worker`: a run cost 88 us more than its work when each woke a sleeping thread). The
function must be compiled with nogil=True. Every part must run to its end, since the others wait for it: the
kernels here cannot fail part-way (no allocation, no exceptions).

`run_shared(function, argument_sets)` is for parts that never wait for one another (column groups, row
blocks of a product, packings): each runs on whichever thread claims it first, and the calling thread runs
every part no worker has come for, so that a worker the scheduler has put behind a busy neighbour costs a
call at most the calling thread doing its share, not the neighbour's time slice. The parts' split is the
same either way, and so are the bits. shared_steps.py runs parts that meet at every step (the LSTM's split
of units) on it: any thread takes a part's step where that part's thread is behind.

`matmul(a, b)` is a @ b with a's rows split over the same threads, each calling BLAS single-threaded.
Why: OpenBLAS's own worker threads spin for a while (about 2^28 cycles) after each multi-threaded call,
and a spinning OpenBLAS thread halves the speed of the part that shares its core. The gate-major LSTM
therefore keeps its backward's big products off OpenBLAS's threads as well (measured at
(32, 64, 128, 256): forward+backward 54 → 31 ms).
Its result is the same bits on every call for a given count(): the split is fixed (count() parts of
a's rows, in order) and every part runs on one BLAS thread. OpenBLAS's float32 GEMM rounds differently
on 1 and on 2 of its threads, and its openblas_set_num_threads_local sets the count for the whole
process, not for the calling thread (OpenBLAS 0.3.31, pthreads build). So the count is set to 1 once,
on the calling thread, before any part starts, and put back to what it was once all parts have
returned; a part that reset it on its way out (as this did before) let another part that had not yet
started its product run it on 2 OpenBLAS threads, now and then, under load (about 1 product in 500 on a
busy 2-core machine): same-seed training runs then differed in the last bits.

`count()` is how many threads the scratch engine uses: RNNKIT_NUM_THREADS, else as many as OpenBLAS
uses now (OPENBLAS_NUM_THREADS, threadpoolctl's limits), else OMP_NUM_THREADS, else the CPUs this process
may run on; `set_count(n)` overrides all of these. `one_count` reads it once for a whole call (a layer's
forward or backward): its splits then all follow one reading, and it pays for one (each ~1 us).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import threading
import time

import numpy as np

from . import thresholds
from .kernels import AVAILABLE

if AVAILABLE:
    from . import gemm
    from .kernels import jit
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

ARRIVED_SLOT = 2  # a `run_shared` board: slot 0 the parts claimed, 1 the workers come, 2 + i worker i come
PATIENCE_SPINS = 2000  # turns the calling thread waits for a worker to come and claim a part: ~30-100 us
# turns it waits, its parts settled, for a worker that came to return from its share (back in Python, which
# takes a few microseconds, with the GIL free: the caller back in Python held it, and the worker, asleep on it,
# came to the next call late: the LSTM's inference at hidden 128, batch 8 took 5-10 % longer)
LEAVE_SPINS = 20000
FLAG_STRIDE = 16  # int64s between two threads' flags: one 128-byte block each, so they share no cache line
SPINS_BEFORE_YIELD = 2000
IDLE_SPINS = 8000  # turns a worker spins for its next job before it sleeps: about 1 ms here (Xeon VM)
GRACE_SPINS = 300  # turns a worker waits, after the caller says it enters its part, before it takes the GIL: ~3 us

_count_override: int | None = None
_read_once = threading.local()  # .count: `one_count`'s reading on this thread, or None


def count() -> int:
    """Threads for the scratch engine's parallel steps (at least 1)."""
    if _count_override is not None:
        return _count_override
    once = getattr(_read_once, "count", None)
    return once if once is not None else _environment_count()


def one_count(method):
    """`method` with count() read once, before it starts, for all it runs on the calling thread (a decorator)."""
    @functools.wraps(method)
    def counted(*arguments, **keywords):
        if _count_override is not None or getattr(_read_once, "count", None) is not None:
            return method(*arguments, **keywords)
        _read_once.count = _environment_count()
        try:
            return method(*arguments, **keywords)
        finally:
            _read_once.count = None
    return counted


def _environment_count() -> int:
    """count() as the environment and OpenBLAS set it now."""
    value = os.environ.get("RNNKIT_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if _OPENBLAS.get_threads is not None:  # follows OPENBLAS_NUM_THREADS and threadpoolctl's limits
        return max(1, int(_OPENBLAS.get_threads()))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_count(threads: int | None) -> None:
    """Use `threads` threads from now on; None goes back to the environment's choice (`count`)."""
    global _count_override
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"the thread count must be a positive integer, got {threads!r}")
    _count_override = threads


def _sched_yield_address() -> int:
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):  # no libc symbol to call: spin only
        return 0


YIELD = _sched_yield_address()


class _OpenBLASControls:
    """OpenBLAS's thread controls, from the library NumPy loaded (None where not found):
    local_threads(n) = openblas_set_num_threads_local (this thread only; 0 follows the global count again),
    get_threads() = openblas_get_num_threads."""

    GET_NAMES = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
                 "openblas_get_num_threads64_", "scipy_openblas_get_num_threads")
    CORE_NAMES = ("openblas_get_corename", "scipy_openblas_get_corename64_", "openblas_get_corename64_",
                  "scipy_openblas_get_corename")

    def __init__(self):
        self.local_threads = self.get_threads = None
        self.core = ""  # the kernels OpenBLAS runs ("Haswell", "SkylakeX", ...), lower case; "" if unknown
        for library in self._libraries():
            local = getattr(library, "openblas_set_num_threads_local", None)
            get = next((getattr(library, name) for name in self.GET_NAMES if hasattr(library, name)), None)
            if local is None and get is None:
                continue
            if local is not None:
                local.argtypes, local.restype = [ctypes.c_int], ctypes.c_int
            if get is not None:
                get.argtypes, get.restype = [], ctypes.c_int
            core = next((getattr(library, name) for name in self.CORE_NAMES if hasattr(library, name)), None)
            if core is not None:
                core.argtypes, core.restype = [], ctypes.c_char_p
                self.core = (core() or b"").decode("ascii", "replace").strip().lower()
            self.local_threads, self.get_threads = local, get
            return

    @staticmethod
    def _libraries():
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
        except OSError:  # not Linux
            return
        for path in paths:
            try:
                yield ctypes.CDLL(path)
            except OSError:
                continue


_OPENBLAS = _OpenBLASControls()


_blas_count_lock = threading.Lock()  # one matmul at a time sets OpenBLAS's (process-wide) thread count


_single_blas_thread = threading.local()  # .set: this worker thread has set OpenBLAS's count to 1 for itself


def product_rows(a_rows, b, out_rows, worker):
    """out_rows = a_rows @ b on one BLAS thread (rows of a and of the product, views), a part of
    `run_products` (which has set OpenBLAS's count to 1 on the calling thread already); a worker sets it once
    for itself, which covers an OpenBLAS whose setting is per thread, and never resets it (where the setting
    is process-wide, a reset would reach the parts still starting their products). Once only, and the views
    made before: a part lets the GIL go as soon as it can (see `_Worker`)."""
    if worker and not getattr(_single_blas_thread, "set", False):
        _OPENBLAS.local_threads(1)
        _single_blas_thread.set = True
    np.matmul(a_rows, b, out=out_rows)


# OpenBLAS's kernels that run 512-bit vectors (x86); with any other on a CPU whose kernels here do
# (gemm.VECTOR_BYTES 64), threads.matmul runs gemm.py's kernels instead (`own_products`).
WIDE_OPENBLAS_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def own_products(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `matmul` runs gemm.py's kernels rather than OpenBLAS: float32 operands, numba, 512-bit vectors
    on this CPU, and an OpenBLAS held to narrower ones (a CPU it does not know, or OPENBLAS_CORETYPE set to
    Haswell in the environment, as on the AMD EPYC of family 26 this was measured on: (512, 2048) @ (2048,
    128) on one core 122 GFLOP/s through OpenBLAS's Haswell kernels, 246 on gemm.py's, 166 with the packing
    of A). Depends on the machine and its settings only: the same choice, and bits, on every call."""
    return own_kernels(a.dtype) and b.dtype == np.float32 and a.ndim == 2 and b.ndim == 2


def own_kernels(dtype) -> bool:
    """Whether products of `dtype` run on gemm.py's kernels rather than OpenBLAS (`own_products`)."""
    return (AVAILABLE and _OPENBLAS.core != "" and _OPENBLAS.core not in WIDE_OPENBLAS_CORES
            and gemm.VECTOR_BYTES == 64 and np.dtype(dtype) == np.float32)


def wide_openblas() -> bool:
    """Whether OpenBLAS runs its 512-bit kernels here (WIDE_OPENBLAS_CORES)."""
    return _OPENBLAS.core in WIDE_OPENBLAS_CORES


def read_only_operands(bs) -> tuple:
    """`gemm.matmul_operand` of each b, as read-only views: one numba type for the tuple whether or not the
    caller's arrays are writeable (a read-only input beside a writeable h made the tuple two types, which
    `gemm.matmul_rows` cannot index)."""
    views = []
    for b in bs:
        view = gemm.matmul_operand(b).view()
        view.setflags(write=False)
        views.append(view)
    return tuple(views)


def _own_matmuls(a: np.ndarray, bs, parts: int | None = None) -> list[np.ndarray]:
    """[a @ b for b in bs] on gemm.py's kernels: a's rows in whole panels of MR over `parts` threads (count()
    by default; one: on the calling thread), each part's rows packed once for all the products
    (`gemm.matmul_rows`)."""
    rows = -(-a.shape[0] // gemm.MR)  # panels
    operands = read_only_operands(bs)
    outs = tuple(np.empty((rows * gemm.MR, operand.shape[1]), dtype=operand.dtype) for operand in operands)
    parts = max(1, min(count() if parts is None else parts, rows))
    bounds = [min(a.shape[0], rows * k // parts * gemm.MR) for k in range(parts + 1)]
    run_shared(gemm.matmul_rows, [(a, bounds[k], bounds[k + 1], operands, outs) for k in range(parts)])
    return [out[:a.shape[0], :b.shape[1]] for out, b in zip(outs, bs)]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for 2-D arrays, a's rows split over count() threads, each running BLAS on one thread (or
    gemm.py's kernels, `own_products`); the same bits on every call at a given count() (see the module's
    text)."""
    return matmuls(a, (b,))[0]


# OpenBLAS runs a product of up to this many multiply-adds (M·K·N) on the calling thread alone (its
# GEMM_MULTITHREAD_THRESHOLD 4 × 65536, interface/gemm.c)
OPENBLAS_ONE_THREAD_WORK = 4 * 65536


def matmuls(a: np.ndarray, bs) -> list[np.ndarray]:
    """[`matmul`(a, b) for b in bs], the same bits; on gemm.py's kernels a's rows packed once for all. A
    product of less than thresholds.SPLIT_PRODUCT_WORK multiply-adds runs on the calling thread alone."""
    small = a.shape[0] * a.shape[1] * max(b.shape[1] for b in bs) < thresholds.SPLIT_PRODUCT_WORK
    if all(own_products(a, b) for b in bs):
        return _own_matmuls(a, bs, 1 if small else None)
    return [_blas_matmul(a, b, 1 if small else count()) for b in bs]


def add_products(a: np.ndarray, bs, into, order) -> None:
    """into[i] += a @ bs[i] on gemm.py's kernels (`own_kernels`), with no product array between (a weight
    gradient added where it accumulates): a (G·H, K) whose rows come in G blocks of H (a cell's gates in packed
    order), block q's into the rows of into[i]'s block order[q] (PyTorch's order); bs[i] (K, N_i), into[i]
    (G·H, N_i) C-contiguous. a's rows cut evenly over count() threads; on the calling thread alone below
    thresholds.SPLIT_PRODUCT_WORK multiply-adds where into's entries plus the multiply-adds over
    ADD_PRODUCTS_MULTIPLY_ADDS_PER_ENTRY are fewer than ADD_PRODUCTS_SPLIT_SIZE. Each entry's chain of fused
    multiply-adds continues from its value, in order of k: the bits do not depend on the cut
    (gemm.add_products_rows)."""
    rows, depth = a.shape
    operands = read_only_operands(bs)
    entries = rows * sum(out.shape[1] for out in into)
    size = entries + entries * depth // thresholds.ADD_PRODUCTS_MULTIPLY_ADDS_PER_ENTRY
    small = (rows * depth * max(b.shape[1] for b in operands) < thresholds.SPLIT_PRODUCT_WORK
             and size < thresholds.ADD_PRODUCTS_SPLIT_SIZE)
    parts = 1 if small else max(1, min(count(), rows // gemm.MR))
    cuts = [rows * k // parts for k in range(parts + 1)]
    run_shared(gemm.add_products_blocks, [(a, cuts[k], cuts[k + 1], rows // len(order),
                                           np.asarray(order, dtype=np.int64), operands, tuple(into),
                                           np.zeros(gemm.MR * gemm.MATMUL_N_BLOCK, dtype=a.dtype))
                                          for k in range(parts)])


def _blas_matmul(a: np.ndarray, b: np.ndarray, parts: int) -> np.ndarray:
    """`matmul` on OpenBLAS, a's rows over `parts` parts, one BLAS thread a part."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    parts = min(parts, a.shape[0])
    local = _OPENBLAS.local_threads
    if local is None or a.shape[0] * a.shape[1] * b.shape[1] <= OPENBLAS_ONE_THREAD_WORK:
        return np.matmul(a, b, out=out)
    if parts <= 1:  # held to one OpenBLAS thread: its own would wake, and spin after
        with _blas_count_lock:
            previous = local(1)
            try:
                return np.matmul(a, b, out=out)
            finally:
                local(max(1, previous))
    bounds = [a.shape[0] * k // parts for k in range(parts + 1)]
    run_products(product_rows, [(a[bounds[k]: bounds[k + 1]], b, out[bounds[k]: bounds[k + 1]])
                                for k in range(parts)])
    return out


def run_products(function, argument_sets) -> None:
    """`run_shared` for parts that each take matrix products of their own (`products_here`):
    function(*arguments, worker) with worker False where the part runs on the calling thread, True on a
    worker (told by the thread that runs it, which any may be); OpenBLAS held to one thread on the calling
    thread meanwhile (each worker holds itself to one). Where OpenBLAS's count cannot be set, the parts run
    one after the other on the calling thread."""
    local = _OPENBLAS.local_threads
    if local is None or len(argument_sets) == 1:
        for arguments in argument_sets:
            function(*arguments, False)
        return
    with _blas_count_lock:
        previous = local(1)
        try:
            caller = threading.get_ident()
            run_shared(_told_where, [(function, caller, arguments) for arguments in argument_sets])
        finally:
            local(max(1, previous))


def _told_where(function, caller: int, arguments) -> None:
    """function(*arguments, worker): worker whether this thread is not the `caller` (`run_products`)."""
    function(*arguments, threading.get_ident() != caller)


def products_here(a: np.ndarray, bs, worker: bool) -> list[np.ndarray]:
    """[a @ b for b in bs] on the calling thread alone, inside a part of `run_products` (worker: as it
    passes): gemm.py's kernels where `own_products`, a's rows packed once for all (the same bits as
    `matmuls`'s, whatever the split), else BLAS on one thread."""
    if all(own_products(a, b) for b in bs):
        return _own_matmuls(a, bs, parts=1)
    results = []
    for b in bs:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
        product_rows(a, b, out, worker)
        results.append(out)
    return results


def row_sums_here(a: np.ndarray) -> np.ndarray:
    """`row_sums` on the calling thread alone (the same bits)."""
    if not AVAILABLE or a.ndim != 2 or a.dtype.kind != "f" or a.size < ROW_SUMS_PART_SIZE:
        return a.sum(axis=1)
    out = np.empty(a.shape[0], dtype=a.dtype)
    if _transposed(a):
        _column_sums_part(a.T, out, 0, a.shape[0])
    else:
        _row_sums_part(np.ascontiguousarray(a), out, 0, a.shape[0])
    return out


def _transposed(a: np.ndarray) -> bool:
    """Whether a is the transpose of a C-contiguous array (its rows are that array's columns): summed as
    columns there (`_column_sums_part`), with no transposing copy."""
    return not a.flags.c_contiguous and a.T.flags.c_contiguous


def row_sums(a: np.ndarray) -> np.ndarray:
    """a's row sums (rows,) for a 2-D float array: the rows split over count() threads (`_row_sums_part`),
    each row summed by one thread in one fixed order, so the bits depend neither on the timing nor on the
    thread count; NumPy's a.sum(axis=1) without numba. The bias gradients' sum over time·batch columns:
    measured 2026-12-04 (Xeon, 2 threads, ms, NumPy's a.sum(axis=1) / this): float32 (1024, 1536) 0.30 /
    0.19, (2048, 1536) 0.63 / 0.36, (512, 4096) 0.36 / 0.23; float64 (1024, 1536) 0.45 / 0.27. BLAS's
    product with ones took 0.11 ms at (1024, 1536), but OpenBLAS's own threads then spin for ~0.4 ms
    beside the engine's (runtime.THREAD_TIMEOUT) and delayed the next products' threads by up to 0.36 ms.
    The transpose of a C-contiguous array (the GRU's and the RNN's gradients (G·H, T·B), views of (T·B, G·H))
    is summed along its columns in place, the same bits (`_column_sums_part`): its transposing copy took
    2.3 ms of a GRU's 36 ms training step at hidden 200, batch 64, twice."""
    if not AVAILABLE or a.ndim != 2 or a.dtype.kind != "f" or a.size < ROW_SUMS_PART_SIZE:
        return a.sum(axis=1)
    out = np.empty(a.shape[0], dtype=a.dtype)
    transposed = _transposed(a)
    a = a.T if transposed else np.ascontiguousarray(a)
    rows = a.shape[1] if transposed else a.shape[0]
    parts = max(1, min(count(), a.size // ROW_SUMS_PART_SIZE))
    bounds = [rows * k // parts for k in range(parts + 1)]
    run_shared(_column_sums_part if transposed else _row_sums_part,
               [(a, out, bounds[k], bounds[k + 1]) for k in range(parts)])
    return out


ROW_SUMS_PART_SIZE = 65536  # entries a thread sums at least (below, fewer parts: waking a thread costs more)
_LANES = 16  # partial sums per row: LLVM vectorises the loop over them

if AVAILABLE:
    @jit
    def _row_sums_part(a, out, start, stop):
        """out[r] = Σ_j a[r, j] for rows start..stop-1: _LANES partial sums over j in steps of _LANES
        (lane k takes j ≡ k), the rest into lane 0..; then the lanes summed in halves (pairwise)."""
        columns = a.shape[1]
        whole = columns - columns % _LANES
        lanes = np.zeros(_LANES, dtype=a.dtype)
        for r in range(start, stop):
            row = a[r]
            lanes[:] = 0
            for j in range(0, whole, _LANES):
                for k in range(_LANES):
                    lanes[k] += row[j + k]
            for j in range(whole, columns):
                lanes[j - whole] += row[j]
            out[r] = sum_in_halves(lanes)

    @jit
    def _column_sums_part(a, out, start, stop):
        """out[c] = Σ_r a[r, c] for columns start..stop-1: each column's sums in _row_sums_part's order over
        a's transpose (the same bits), run along a's rows (vectorised over the columns, no copy)."""
        rows = a.shape[0]
        whole = rows - rows % _LANES
        width = stop - start
        lanes = np.zeros((_LANES, width), dtype=a.dtype)
        for j in range(rows):
            lane, row = lanes[(j % _LANES) if j < whole else j - whole], a[j, start:stop]
            for c in range(width):
                lane[c] += row[c]
        size = _LANES
        while size > 1:  # sum_in_halves, for every column at once
            size //= 2
            for k in range(size):
                lane, other = lanes[k], lanes[k + size]
                for c in range(width):
                    lane[c] += other[c]
        out[start:stop] = lanes[0]

    @jit
    def sum_in_halves(lanes):
        """The sum of partial sums (a power of 2 of them), pairwise: the second half added to the first, and
        again, until one is left (lanes is overwritten)."""
        width = lanes.shape[0]
        while width > 1:
            width //= 2
            for k in range(width):
                lanes[k] += lanes[k + width]
        return lanes[0]


if AVAILABLE:
    _X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

    def _flag_pointer(context, builder, sig, args):
        flags = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.gep(flags.data, [context.cast(builder, args[1], sig.args[1], types.int64)])

    @intrinsic
    def _load_acquire(typingctx, flags, index):
        """flags[index], an atomic load with acquire order (int64 array)."""
        def codegen(context, builder, sig, args):
            return builder.load_atomic(_flag_pointer(context, builder, sig, args), "acquire", 8)
        return types.int64(flags, index), codegen

    @intrinsic
    def _store_release(typingctx, flags, index, value):
        """flags[index] = value, an atomic store with release order (int64 array)."""
        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(value, _flag_pointer(context, builder, sig, args), "release", 8)
            return context.get_dummy_value()
        return types.void(flags, index, value), codegen

    @intrinsic
    def _fetch_add(typingctx, flags, index):
        """flags[index] += 1, atomically (acquire and release order); returns the value before (int64 array)."""
        def codegen(context, builder, sig, args):
            one = ir.Constant(ir.IntType(64), 1)
            return builder.atomic_rmw("add", _flag_pointer(context, builder, sig, args), one, "acq_rel")
        return types.int64(flags, index), codegen

    @intrinsic
    def _relax(typingctx, yield_address, spins):
        """One turn of a spin-wait: the CPU's pause hint, and after SPINS_BEFORE_YIELD turns sched_yield()."""
        def codegen(context, builder, sig, args):
            if _X86:
                pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                       "llvm.x86.sse2.pause")
                builder.call(pause, [])
            address = context.cast(builder, args[0], sig.args[0], types.int64)
            spins = context.cast(builder, args[1], sig.args[1], types.int64)
            i64 = ir.IntType(64)
            long_wait = builder.icmp_signed(">", spins, ir.Constant(i64, SPINS_BEFORE_YIELD))
            can_yield = builder.icmp_signed("!=", address, ir.Constant(i64, 0))
            with builder.if_then(builder.and_(long_wait, can_yield), likely=False):
                function = ir.FunctionType(ir.IntType(32), [])
                builder.call(builder.inttoptr(address, function.as_pointer()), [])
            return context.get_dummy_value()
        return types.void(yield_address, spins), codegen

    @intrinsic
    def _compare_and_swap(typingctx, flags, index, expected, value):
        """flags[index] = value if it holds `expected` (atomically, acquire and release order); returns
        whether it did (int64 array)."""
        def codegen(context, builder, sig, args):
            expected = context.cast(builder, args[2], sig.args[2], types.int64)
            value = context.cast(builder, args[3], sig.args[3], types.int64)
            pair = builder.cmpxchg(_flag_pointer(context, builder, sig, args), expected, value, "acq_rel",
                                   "acquire")
            return builder.extract_value(pair, 1)
        return types.boolean(flags, index, expected, value), codegen

    @jit
    def arrive(flags, me, steps):
        """Say that part `me` has finished `steps` steps (everything it wrote before is visible after)."""
        _store_release(flags, me * FLAG_STRIDE, steps)

    @jit
    def wait_all(flags, parts, me, steps, yield_address):
        """Wait until every other part has said it finished at least `steps` steps."""
        for other in range(parts):
            if other != me:
                spins = 0
                while _load_acquire(flags, other * FLAG_STRIDE) < steps:
                    spins += 1
                    _relax(yield_address, spins)


    @jit
    def wait_for(flags, other, steps, yield_address):
        """Wait until part `other` has said it finished at least `steps` steps."""
        spins = 0
        while _load_acquire(flags, other * FLAG_STRIDE) < steps:
            spins += 1
            _relax(yield_address, spins)


    @jit
    def claim(flags, counter):
        """The next item of a shared count (flags[counter·FLAG_STRIDE], from 0), each one to exactly one
        caller, whichever thread asks first."""
        return _fetch_add(flags, counter * FLAG_STRIDE)

    @jit
    def done(flags, first, item):
        """Whether item `item` of a list of done marks (flags[(first + item)·FLAG_STRIDE]) is set."""
        return _load_acquire(flags, (first + item) * FLAG_STRIDE) != 0

    @jit
    def mark_done(flags, first, item):
        """Set item `item`'s done mark (what its thread wrote before is visible after)."""
        _store_release(flags, (first + item) * FLAG_STRIDE, 1)

    @jit
    def relax(yield_address, spins):
        """One turn of a spin-wait (the CPU's pause hint; sched_yield after SPINS_BEFORE_YIELD turns)."""
        _relax(yield_address, spins)


if AVAILABLE:
    def _publish(signals, slot, value):
        """signals[slot] = value, a release store (what the thread wrote before is visible after). Run with
        the GIL held: letting it go and taking it back would race the worker this store wakes for it."""
        _store_release(signals, slot * FLAG_STRIDE, value)

    _publish = jit(_publish, nogil=False)

    @jit
    def _arrived(signals, slot, value, spins, yield_address):
        """Whether signals[slot] reaches `value` within `spins` turns of a spin-wait (0: look once)."""
        for turn in range(spins + 1):
            if _load_acquire(signals, slot * FLAG_STRIDE) >= value:
                return True
            if turn < spins:
                _relax(yield_address, turn + 1)
        return False
else:
    def _publish(signals, slot, value):
        signals[slot * FLAG_STRIDE] = value

    def _arrived(signals, slot, value, spins, yield_address):  # no compiled spin: look, then nap (GIL let go)
        if signals[slot * FLAG_STRIDE] < value and spins:
            time.sleep(1e-5)
        return signals[slot * FLAG_STRIDE] >= value


if AVAILABLE:
    def _arrive_and_claim(board, worker):
        """Worker `worker` comes to a `run_shared` board (marked in slot ARRIVED_SLOT + worker, counted in slot
        1) and claims the next part (slot 0)."""
        _store_release(board, (ARRIVED_SLOT + worker) * FLAG_STRIDE, 1)
        _fetch_add(board, FLAG_STRIDE)
        return _fetch_add(board, 0)

    # called from Python, these hold the GIL: letting it go and taking it back, a worker found it taken by the
    # caller and slept
    arrive_and_claim, claim_holding_gil = (jit(f, nogil=False) for f in (_arrive_and_claim, claim.py_func))

    @jit
    def next_part(board, parts, present, patience, signals, leave_after, yield_address):
        """The calling thread's next part of a `run_shared` board, or parts once the others are all done. It
        claims one at once while the parts left outnumber the `present` workers not yet come (slot 1); else
        it waits up to `patience` turns for them to come and claim, and then claims what is left: a worker
        still spinning for its job starts in a few microseconds, and the caller taking its part meanwhile ran
        two parts one after the other (the LSTM's packing at hidden 23: 57 us against 28). With none left, it
        waits for each worker i that came to finish its job (signals[i][1] reaching the jobs posted,
        signals[i][0]: `_Worker.wait`) and closes the others' (signals[i][3]), without going back to Python
        between: a caller that took the GIL back while a worker ran Python code (a share of `run_balanced`'s
        jobs) found it taken and slept (the same packing: 65 us against 21). leave_after >= 0 (the parts' own
        protocol has said that all their work is done: `run_shared`'s settled): it waits up to that many turns
        for each worker that came, and then leaves without it."""
        for turn in range(patience + 1):
            claimed = _load_acquire(board, 0)
            if claimed >= parts:
                break
            if parts - claimed > present - _load_acquire(board, FLAG_STRIDE) or turn == patience:
                k = _fetch_add(board, 0)
                if k < parts:
                    return k
                break
            _relax(0, 1)
        for i in range(len(signals)):
            if _load_acquire(board, (ARRIVED_SLOT + i) * FLAG_STRIDE) == 0:
                _store_release(signals[i], 3 * FLAG_STRIDE, _load_acquire(signals[i], 0))
        for i in range(len(signals)):
            if _load_acquire(board, (ARRIVED_SLOT + i) * FLAG_STRIDE) != 0:
                spins, posted = 0, _load_acquire(signals[i], 0)
                while _load_acquire(signals[i], FLAG_STRIDE) < posted and not 0 <= leave_after < spins:
                    spins += 1
                    _relax(yield_address, spins)
        return parts

    @jit
    def _finish_and_wait(signals, finished, spins, yield_address):
        """signals[1] = finished (jobs done), then whether signals[0] (jobs posted) passes it within `spins`
        turns: the last job done (finished, or later where jobs were skipped) if so, else -1 - finished. A
        job the caller has closed (signals[3], `run_shared`: every part taken) is skipped here, with the GIL let
        go. For a job to run, the worker waits for signals[2] (the caller enters its own part, which lets the
        GIL go) and GRACE_SPINS turns more before it goes back to Python for the GIL: finding it taken, a
        thread sleeps, and waking it cost 30-60 us here (Xeon VM)."""
        while True:
            _store_release(signals, FLAG_STRIDE, finished)
            if not _arrived(signals, 0, finished + 1, spins, yield_address):
                return -1 - finished
            posted = _load_acquire(signals, 0)
            if _load_acquire(signals, 3 * FLAG_STRIDE) < posted:
                break
            finished = posted  # closed: nothing left to take, and the caller does not wait for this worker
        while not _arrived(signals, 2, finished + 1, spins, yield_address):
            pass
        for turn in range(GRACE_SPINS):
            _relax(0, 1)
        return finished
else:
    def _finish_and_wait(signals, finished, spins, yield_address):
        _publish(signals, 1, finished)
        ready = _arrived(signals, 0, finished + 1, spins, yield_address) and _arrived(signals, 2, finished + 1,
                                                                                      spins, yield_address)
        return finished if ready else -1 - finished


def new_flags(parts: int) -> np.ndarray:
    """The flags for one run of `parts` parts, all at 0 steps."""
    return np.zeros(parts * FLAG_STRIDE, dtype=np.int64)


class _Worker:
    """One worker thread and its jobs. The caller posts a job (`post`), says when it enters its own part
    (`caller_enters`) and later waits for the job (`wait`); each side says what it did through a count in
    `signals` (slot 0 jobs posted, slot 1 jobs finished, slot 2 the caller entering its part, slot 3 the last
    job closed: `run_shared`'s, which it skips) and
    spins on the other's count (compiled, without the GIL): the caller until the job is done, the worker
    for up to IDLE_SPINS turns, then it sleeps on an Event until the next post. Why: waking a sleeping
    thread cost 88 us a run here (Xeon VM, 2 cores: `threads.run` of a job that does nothing), more than a
    whole LSTM step at hidden 128; a worker still spinning from its last job starts in about a microsecond.
    A spinning thread yields its CPU now and then (`relax`), so that on a busy machine it gives way."""

    def __init__(self, name: str):
        self.start = threading.Event()
        self.job, self.error = None, None
        self.signals, self.posted = new_flags(4), 0
        self.leaving = 0  # the last settled job (`run_shared`) it came to, which its caller has left
        self._job_lock = threading.Lock()  # between posting a job and dropping the one done
        threading.Thread(target=self._serve, daemon=True, name=name).start()

    def post(self, function, arguments) -> None:
        with self._job_lock:
            self.posted += 1
            self.error, self.job = None, (self.posted, function, arguments)
        _publish(self.signals, 0, self.posted)
        self.start.set()

    def caught_up(self) -> bool:
        """Whether the worker has finished (or skipped) every job posted to it so far."""
        return bool(self.signals[FLAG_STRIDE] >= self.posted)

    def caller_enters(self) -> None:
        """Say that the caller is about to enter its own part (which lets the GIL go): the worker takes the
        GIL only then, GRACE_SPINS turns later, so that it does not find it taken and sleep."""
        _publish(self.signals, 2, self.posted)

    def wait(self) -> None:
        """Until the last posted job has finished (spinning, and yielding the CPU now and then)."""
        while not _arrived(self.signals, 1, self.posted, IDLE_SPINS, YIELD):
            pass

    def _serve(self) -> None:
        taken = 0
        while True:
            # say the last job is done (from compiled code, with the GIL let go: the caller, spinning for
            # this, then takes the GIL without waiting for it) and spin for the next one
            waited = _finish_and_wait(self.signals, taken, IDLE_SPINS, YIELD)
            if waited < 0:
                taken = -1 - waited
                while not _arrived(self.signals, 0, taken + 1, 0, YIELD):
                    self.start.wait()
                    self.start.clear()
            # the last job posted: a `run_shared` caller does not wait for its workers, so one may find a
            # later job posted before it took the one it was woken for, which the caller has done without it
            taken, function, arguments = self.job
            try:
                function(*arguments)
            except BaseException as error:  # handed to the caller of run(); the worker carries on
                self.error = error
            with self._job_lock:  # its arrays let go, unless a later job has taken its place
                if self.job is not None and self.job[0] == taken:
                    self.job = None


class Pool:
    """Worker threads that each run one part of a `run` call, started on first need and kept."""

    def __init__(self):
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._signals: dict[int, tuple] = {}  # the first n workers' signals, by n (`run_shared`)

    def run(self, function, argument_sets) -> None:
        """function(*argument_sets[k]) for all k at once; returns when all have returned, and raises the
        first part's exception, if any did raise."""
        with self._lock:  # one multi-part run at a time: the parts of two runs must not share workers
            while len(self._workers) < len(argument_sets) - 1:
                self._workers.append(_Worker(f"rnnkit-part-{len(self._workers) + 1}"))
            workers = self._workers[: len(argument_sets) - 1]
            for worker, arguments in zip(workers, argument_sets[1:]):
                worker.post(function, arguments)
            for worker in workers:
                worker.caller_enters()
            try:
                function(*argument_sets[0])
            finally:
                for worker in workers:
                    worker.wait()
            for worker in workers:
                if worker.error is not None:
                    error, worker.error = worker.error, None
                    raise error

    def run_shared(self, function, argument_sets, helpers: int, cpu: int, settled: bool) -> None:
        """`run_shared` (see there) with `helpers` workers; cpu: the calling thread's CPU, which a worker leaves
        while it runs a part (`_kept_off`), or -1."""
        parts = len(argument_sets)
        board, errors = new_flags(ARRIVED_SLOT + helpers), [None] * parts
        board[0] = 1  # part 0 is the calling thread's, begun as soon as the workers are told (`run`'s way)
        with self._lock:
            while len(self._workers) < helpers:
                self._workers.append(_Worker(f"rnnkit-part-{len(self._workers) + 1}"))
            workers = self._workers[:helpers]
            # a worker still on an earlier job (one a caller did without it) is behind a busy neighbour, or
            # asleep: the caller does not wait for it to come; unless that job is a settled one it came to and
            # has done its share of, which it leaves soon after the caller
            present = sum(worker.caught_up() or worker.leaving == worker.posted for worker in workers)
            signals = self._signals.get(helpers)
            if signals is None:
                signals = self._signals[helpers] = tuple(worker.signals for worker in workers)
            for i, worker in enumerate(workers):
                worker.post(_take_parts, (function, argument_sets, board, errors, cpu, i))
            for worker in workers:
                worker.caller_enters()
            k = 0
            while k < parts:
                _run_part(function, argument_sets, errors, k)
                k = next_part(board, parts, present, PATIENCE_SPINS, signals, LEAVE_SPINS if settled else -1, YIELD)
            if settled:
                for i, worker in enumerate(workers):  # one that came, still returning from its share: present
                    if board[(ARRIVED_SLOT + i) * FLAG_STRIDE] and not worker.caught_up():  # at the next call
                        worker.leaving = worker.posted
        for error in errors:
            if error is not None:
                raise error


_NOT_MOVED = contextlib.nullcontext()


def _take_parts(function, argument_sets, board, errors, cpu: int, worker: int) -> None:
    """Worker `worker`'s share of a `run_shared`: the parts it claims first, until none is left. A worker that
    comes late finds nothing to claim and touches nothing."""
    k = arrive_and_claim(board, worker)
    if k < len(argument_sets):
        with _kept_off(cpu) if cpu >= 0 else _NOT_MOVED:
            while k < len(argument_sets):
                _run_part(function, argument_sets, errors, k)
                k = claim_holding_gil(board, 0)


def _run_part(function, argument_sets, errors, k: int) -> None:
    """Part k of a `run_shared`; its exception kept in errors[k]."""
    try:
        function(*argument_sets[k])
    except BaseException as error:  # for the caller to raise, once every part is done
        errors[k] = error


_pool = Pool()


def _after_fork_in_child() -> None:  # a forked child has no worker threads: start anew
    global _pool
    _pool = Pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def run(function, argument_sets) -> None:
    """Run function(*arguments) for every entry of argument_sets at the same time (see the module's text)."""
    if len(argument_sets) == 1:
        function(*argument_sets[0])
    else:
        _pool.run(function, argument_sets)


def run_shared(function, argument_sets, apart: bool = False, settled: bool = False) -> None:
    """Run the independent parts function(*argument_sets[k]), each on whichever thread claims it first (up to
    count() threads): the calling thread takes every part no worker has taken, and waits only for those a
    worker has begun. The parts must not wait for one another (one thread may run them one after the other)
    and each must write its own outputs: then what they compute does not depend on which thread ran them,
    and the bits are `run`'s. apart: a worker leaves the calling thread's CPU while it runs a part
    (`run_apart`). settled: each part returns only once every part's work is done (shared_steps.py), so the
    calling thread returns with its own parts, not waiting for a worker to return from one it began (which
    the scheduler may hold for a time slice; such a part must touch nothing but its own board once the
    work is done, and raise nothing: a late worker's error would reach nobody).

    Why. `run` hands part k to worker k and waits for it. Beside a busy neighbour, a worker the scheduler has
    put behind it starts its part only in its next time slice: the GRU's inference at hidden 33, batch 115,
    input 282, T 13 in two column groups took 4.0 ms a call (median; 1.0 ms on a quiet machine, 1.8 on one
    thread), the calling thread waiting 3 ms for its worker. Here the calling thread runs that part itself."""
    helpers = min(len(argument_sets), count()) - 1
    if helpers < 1 or not AVAILABLE:
        for arguments in argument_sets:
            function(*arguments)
        return
    cpu = _SCHED_GETCPU() if apart and _SCHED_GETCPU is not None and hasattr(os, "sched_setaffinity") else -1
    _pool.run_shared(function, argument_sets, helpers, cpu, settled)


def run_balanced(jobs) -> None:
    """Run the independent (function, arguments, size) jobs of `jobs` in one meeting of count() threads
    (`run`): each thread a share of them, one after the other, largest first, each to the least loaded
    share. Each job writes its own outputs: what they compute does not depend on the shares."""
    shares = [[] for _ in range(max(1, min(count(), len(jobs))))]
    loads = [0] * len(shares)
    for function, arguments, size in sorted(jobs, key=lambda job: -job[2]):
        k = loads.index(min(loads))
        shares[k].append((function, arguments))
        loads[k] += size
    run_shared(call_all, [(share,) for share in shares if share])


def call_all(jobs) -> None:
    """function(*arguments) for each (function, arguments) of `jobs`, in order: one thread's share of a `run`."""
    for function, arguments in jobs:
        function(*arguments)


def run_pipeline(jobs, caller: int = 0) -> None:
    """Run the (function, arguments) pairs of `jobs` at the same time when count() allows two threads or
    more, job `caller` on the calling thread (the one that ends last: its end then waits for no worker to
    wake), else one after the other in the order given. For a producer and a consumer that waits on its
    flags (threaded_lstm.py's helper thread): list the producer first. What each computes does not depend
    on which way they ran. On two threads or more the other jobs go to workers through `run_shared`: one no
    worker has come for (behind a busy neighbour) runs on the calling thread after job `caller`, so job
    `caller` must not wait on another unless it does that one's work itself where it is late (the LSTM's
    steps project the inputs its helper has not reached, `wait_projected`; its backward's steps produce)."""
    if count() < 2 or len(jobs) == 1:
        for function, arguments in jobs:
            function(*arguments)
    else:
        run_shared(_call, [jobs[caller]] + [job for k, job in enumerate(jobs) if k != caller])


def _call(function, arguments) -> None:
    function(*arguments)


def run_apart(function, argument_sets, meet: bool = True) -> None:
    """`run`, each worker thread kept off the calling thread's CPU while its part runs; where the parts do not
    `meet` (never wait for one another), `run_shared`: each part on whichever thread claims it first.

    Why. A worker sleeps between runs, and when the other CPUs are busy the kernel wakes a sleeping thread
    on its waker's CPU (wake-affine): two parts then share one core and every step waits for a context
    switch. Measured on the 2 busy cores: an RNN forward at hidden 64, batch 8 took 4.5 ms instead of 0.7 for
    the first tens of calls of a process, until the load balancer moved a thread (the same 4.5 ms as with
    the whole process on one CPU). Setting the worker's own affinity moves it at once; it is put back when
    the part ends. The calling thread's affinity is left alone."""
    if not meet:
        run_shared(function, argument_sets, apart=True)
        return
    if len(argument_sets) == 1 or _SCHED_GETCPU is None or not hasattr(os, "sched_setaffinity"):
        run(function, argument_sets)
        return
    cpu = _SCHED_GETCPU()
    run(_part_apart, [(-1, function, argument_sets[0])] + [(cpu, function, a) for a in argument_sets[1:]])


def _part_apart(cpu: int, function, arguments) -> None:
    """function(*arguments), kept off `cpu` while it runs (`_kept_off`)."""
    with _kept_off(cpu):
        function(*arguments)


@contextlib.contextmanager
def _kept_off(cpu: int):
    """The calling thread kept off `cpu` inside the block, and let go after (cpu -1, or a thread elsewhere:
    wherever it is; the two affinity calls and their move cost ~10 us, a tenth of a short inference forward's
    time)."""
    if cpu < 0 or _SCHED_GETCPU() != cpu:
        yield
        return
    allowed = os.sched_getaffinity(0)
    elsewhere = allowed - {cpu}
    if not elsewhere or elsewhere == allowed:
        yield
        return
    os.sched_setaffinity(0, elsewhere)
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _libc_sched_getcpu():
    """libc's sched_getcpu() (the calling thread's CPU), or None."""
    try:
        function = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [], ctypes.c_int
    return function


_SCHED_GETCPU = _libc_sched_getcpu()
