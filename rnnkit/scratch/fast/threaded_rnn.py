"""The threaded path for the vanilla RNN's forward: each thread owns a slice of the hidden units (numba installed).

The LSTM's machinery (threaded_lstm.py) with one gate. Per step the product's operand is z_t = [h_t; 1; x_t]
(H+1+I, L), L the batch (up to thresholds.ROW_KERNEL_BATCH, on gemm.gemm_rows) or the batch padded to whole
SIMD vectors (on gemm.gemm_panels; the padding columns give results nobody reads). Part k of P owns the
hidden units lo..hi-1 and keeps their rows of [W_hh | b | W_ih], packed once per Packed (the ones row sits
between h and x so that the GRU can take [W_hn | b_hn] over [h; 1] and [b_in | W_in] over [1; x]).

Forward, part k, step t:      wait until every part has written h_t into z_t
    pre = [W_hh | b | W_ih]_k z_t = W_hh h_t + b + W_ih x_t     (own rows; one sum per element, in order)
    h_{t+1} = tanh(pre)  (or max(pre, 0))  into z_{t+1} and the time-major output; say "t+1 steps done"
Every step has its own z_t, so a part never overwrites what another still reads: one meeting per step.
With one or two columns (`split_input`) the inputs leave the steps: each part first makes [b | W_ih]_k [1; x_t]
for every step in one product, the steps' columns as its rows, and each step then takes W_hh_k h_t plus its own.

Why. Above a few rows the numba and NumPy paths run each step as one OpenBLAS product, which packs W_hh again
on every call and leaves the activation on one core; here the weights are packed once, each core keeps its
rows in its cache, and both cores run the activation of their own units.

Column groups (`column_groups`: a wide batch, where the step is too small to split its units, or where
it would split them and all the weights fit each core's cache). The batch's columns are cut in one group a
thread, and each group runs the steps above on its columns alone, all units in one part:
no meeting, and no core reads an h another wrote. A column's sums are the same in any group.

The forward's sums run in the same order whatever the split, so its results do not depend on the thread count.

Inference, where the groups are wide (`inference_forward`, `rows_forward`): the same steps batch-major, each
group's rows [h_t | 1 | x_t] times [W_hh | b | W_ih]ᵀ (gemm.gemm_row_major_pairs), h_{t+1} written into the
output's rows as they are, the same sums in the same order: the same bits, without the transposing copy.

Backward (`backward`; the GRU's too, threaded_gru.py), everything row-major, W_hh padded with zero columns to
whole vectors once per Packed. Part k owns a block of the batch's rows (`backward_split`: while W_hh is small
in a core's cache; no meeting at all, rows never meet before the weight gradients), or the units lo..hi-1
(whole vectors) and their columns of W_hh, with a meeting per step. For t = T-1 .. 0:
    (units: wait until every part has written g_{t+1} = dL/dpre_{t+1} (B, H); not at t = T-1)
    rec[own] = g_{t+1} W_hh  (own rows or columns; gemm.gemm_row_major: g's rows as they are, no packing)
    g_t[own] = (d_out_t + rec) ⊙ act'(h_{t+1})       (rec = dh_n for a row's last step)
and after step 0, dh_0 = g_0 W_hh the same way. Each element of a product is one fused multiply-add chain
over k in order, so the results do not depend on the thread count either. Why: numba_path.rnn_backward runs
one OpenBLAS product per step, which packs all of W_hh again on every call, and the step's arithmetic on
one core; here W_hh stays in the cores' caches and both cores run the step's arithmetic.
"""
from __future__ import annotations

import numpy as np

from . import lstm_panels, packing, threads, thresholds
from .kernels import AVAILABLE
from .numba_path import rnn_backward, rows_of
from .threaded_lstm import _bounds, _group_active, _pairs, by_rows, zero_start
from .trace import Trace, allocator
from .trace import by_rows as gradient_matrix

if AVAILABLE:
    from .gemm import (MR, ROW_MAJOR_TAIL, RV, VECTOR_BYTES, gemm_panels, gemm_row_major, gemm_row_major_pairs,
                       gemm_rows, pack_column_pairs)
    from .kernels import jit, tanh_into
    from .threaded_lstm import copy_inputs, copy_states, padded, steps_as_rows


def parts_for(gate_rows: int, batch: int) -> int:
    """How many parts (threads) split a layer whose step has `gate_rows` rows (G·H) and `batch` columns: each
    gets at least thresholds.MIN_ROWS_PER_PART of them, or MIN_ROWS_PER_PART_WIDE from WIDE_STEP_BATCH
    columns on (a wider step's product pays the meeting with fewer rows). The forward's bits do not depend
    on it."""
    least = thresholds.MIN_ROWS_PER_PART_WIDE if batch >= thresholds.WIDE_STEP_BATCH else thresholds.MIN_ROWS_PER_PART
    return max(1, min(threads.count(), gate_rows // least))


def step_rows(p, rows) -> np.ndarray:
    """The packed rows `rows` of [W_hh | b | W_ih] (halved where the cell halves them): (len(rows), H+1+I)."""
    return np.concatenate([p.w_hh_half[rows], p.bias[rows, None], p.w_ih_half[rows]], axis=1)


def threaded_backward_batch(cell: str) -> int:
    """From how many rows the threaded backward of `cell` ("rnn" or "gru") runs its own steps; below, numba_path's
    (an OpenBLAS product per step): thresholds.THREADED_BACKWARD_BATCH where OpenBLAS runs its 512-bit kernels
    (threads.WIDE_OPENBLAS_CORES), else THREADED_BACKWARD_BATCH_NARROW_BLAS (its product of a few rows packs
    all of W_hh on every call there). Depends on the machine only: the same path, and bits, on every call."""
    if threads.wide_openblas():
        return thresholds.THREADED_BACKWARD_BATCH[cell]
    return thresholds.THREADED_BACKWARD_BATCH_NARROW_BLAS[cell]


def split_input(batch: int, hidden: int, inputs: int, dtype) -> bool:
    """Whether the threaded RNN's and GRU's inputs' products run apart from the steps' (few columns, on the row
    kernel): every step's [b | W_ih] [1; x_t] in one product before the loop, the steps' rows as its rows
    (threaded_lstm.steps_as_rows), so that each step streams only W_hh; else each step's product takes
    [W_hh | b | W_ih] over [h_t; 1; x_t]. At one column always, at up to thresholds.RNN_SPLIT_INPUT_BATCH where
    the inputs are at least RNN_SPLIT_INPUT_SHARE of the step's operand [h_t; 1; x_t] (measured there).
    Depends on the shape alone: the forward's bits are the same in either mode, on any thread count, in any
    column group."""
    if not by_rows(batch, dtype):
        return False
    return batch == 1 or (batch <= thresholds.RNN_SPLIT_INPUT_BATCH
                          and inputs >= thresholds.RNN_SPLIT_INPUT_SHARE * (hidden + 1 + inputs))


def steps_operand(inputs: np.ndarray) -> np.ndarray:
    """The inputs (T, B, I), any strides, as the rows [1, x_{t,b}] of one product over every step: (T·B, 1+I),
    row t·B + b (threaded_lstm.steps_as_rows)."""
    time, batch, features = inputs.shape
    zx = np.empty((time, batch, features + 1), dtype=inputs.dtype)
    zx[:, :, 0] = 1
    zx[:, :, 1:] = inputs
    return zx.reshape(time * batch, features + 1)


def group_operands(inputs: np.ndarray, h0: np.ndarray, hidden: int, active, outs: np.ndarray, split: bool):
    """One column group's operands (inputs (T, its B, I), h0, active and outs its own): (rows, L, z, zx) as
    `layout` gives the first three, and zx: with the input split off (`split_input`), z holds [h_t; 1] only and
    zx (T·B, 1+I) every step's [1; x_t] as rows (`steps_operand`); else z holds x_t too and zx is empty.
    Shared by the threaded GRU."""
    rows, columns, z, _, _ = layout(inputs[:, :, :0] if split else inputs, h0, hidden, active, outs)
    zx = steps_operand(inputs) if split else np.empty((0, 0), dtype=inputs.dtype)
    return rows, columns, z, zx


def projection_scratch(zx: np.ndarray, x_panels: np.ndarray) -> np.ndarray:
    """A part's xw (T·B, its rows of the input panels) for `steps_as_rows`, or an empty one without the split."""
    shape = (zx.shape[0], x_panels.shape[0] * x_panels.shape[2]) if zx.shape[0] > 0 else (0, 0)
    return np.empty(shape, dtype=zx.dtype)


def forward_panels(p, parts: int, rows: bool, copy: bool = False) -> list[np.ndarray]:
    """Each part's rows of [W_hh | b | W_ih], packed for gemm_rows (rows) or gemm_panels in one compiled pass
    from the weights as they are (lstm_panels.gathered_panels: `step_rows` packed, to the bit); made once per
    Packed. With `copy` (a training forward), the backward's W_hh and W_ih (`backward_copy`) in the same meeting."""
    def make():
        w_ih, w_hh, b_ih, b_hh = p.originals
        dtype = w_hh.dtype
        sources = (w_hh, lstm_panels.bias_column(b_ih, b_hh, w_hh.shape[0], dtype), w_ih)
        bounds = _pairs(_bounds(p.hidden, parts))
        return lstm_panels.gathered_panels(panel_width(rows, dtype), [
            (sources, *lstm_panels.source_rows(p.hidden, lo, hi, dtype, p.mode)) for lo, hi in bounds], len(bounds),
            backward_copy(p, copy))

    return p.derived(("rnn_forward_panels", parts, rows), make)


def split_panels(p, parts: int, rows: bool, copy: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each part's (W_hh's rows, [b | W_ih]'s rows) packed for gemm_rows (rows) or gemm_panels, where the
    inputs are projected before the steps (`split_input`): the steps' product over [h_t], the projection's
    over [1; x_t]; made once per Packed (with `copy`, as `forward_panels`)."""
    def make():
        w_ih, w_hh, b_ih, b_hh = p.originals
        dtype = w_hh.dtype
        sources = ((w_hh,), (lstm_panels.bias_column(b_ih, b_hh, w_hh.shape[0], dtype), w_ih))
        bounds = _pairs(_bounds(p.hidden, parts))
        jobs = [(blocks, *lstm_panels.source_rows(p.hidden, lo, hi, dtype, p.mode))
                for lo, hi in bounds for blocks in sources]
        panels = lstm_panels.gathered_panels(panel_width(rows, dtype), jobs, len(bounds), backward_copy(p, copy))
        return list(zip(panels[0::2], panels[1::2]))

    return p.derived(("rnn_split_panels", parts, rows), make)


def backward_copy(p, copy: bool) -> list:
    """Where `copy`: the jobs that make the backward's W_hh (Packed.w_hh, `recurrent_weights`) and W_ih (the
    input gradient's), those not made yet, one job a thread (Packed.backward_jobs), for the forward's packing
    to run in its own meeting. The RNN's and the GRU's training forward make them so
    (Implementation.keeps_w_hh, keeps_w_ih): on one thread, before the forward, W_hh's copy took 0.12 of a 0.86
    ms training call at hidden 768, batch 2, T 2, and 0.63 of 4.9 ms for the GRU at batch 12. Else (and below
    thresholds.BACKWARD_COPY_SPLIT_SIZE entries: `made_for_backward` copies them on the calling thread) none."""
    w_ih, w_hh = p.originals[:2]
    if not copy or w_ih.size + w_hh.size < thresholds.BACKWARD_COPY_SPLIT_SIZE:
        return []
    return p.backward_jobs(threads.count())


def made_for_backward(p) -> None:
    """After a training forward: the backward's W_hh and W_ih made, here on one thread where the forward's
    packing did not (its panels made before, for another call)."""
    missing = not p.has("w_hh"), not p.has("w_ih")
    if any(missing):
        p.copy_for_backward(*missing)


def panel_width(rows: bool, dtype) -> int:
    """The height of a part's weight panels: RV vectors for gemm_rows (rows), MR rows for gemm_panels."""
    return RV * VECTOR_BYTES // np.dtype(dtype).itemsize if rows else MR


if AVAILABLE:
    @jit
    def relu_into(a, out):
        """out ← max(a, 0)."""
        zero = out.dtype.type(0)
        for j in range(out.shape[0]):
            out[j] = max(a[j], zero)

    @jit
    def step_product(panels, rows, z, z_off, L, n, out, lanes, k0=0):
        """out = A z_t[:, :n] for A packed in `panels` (gemm_rows), or over whole vectors (gemm_panels, the
        padding columns too); from A's column k0 where z_t's rows before it are zeros (none left: out = 0).
        Shared by the threaded GRU."""
        if k0 == panels.shape[1]:
            out[:] = 0
        elif rows:
            gemm_rows(panels, z, z_off, L, n, out, L, False, k0)
        else:
            gemm_panels(panels, z, z_off, L, padded(n, lanes), out, L, False, k0)

    @jit
    def steps_inputs_into(xw, first, n, offset, count, L, pre, add):
        """A step's projected inputs into its rows of L columns, for the running columns b < n and count rows
        j: pre[j·L + b] += xw[first + b, offset + j] (add), else =; xw (T·B, the part's rows), row t·B + b the
        step's column b (`steps_operand`)."""
        for b in range(n):
            row = xw[first + b]
            if add:
                for j in range(count):
                    pre[j * L + b] += row[offset + j]
            else:
                for j in range(count):
                    pre[j * L + b] = row[offset + j]

    @jit
    def forward_part(me, parts, lo, hi, panels, rows, z, pre, outs, active, B, relu, flags, yield_address, x_panels,
                     zx, xw, skip):
        """Part `me` of the forward over all steps (see the module's text). Flattened per step:
        z (T+1, (H+1+I)·L): [h_t; 1; x_t] rows of L columns, h_0, all x and the ones filled in by the caller;
        pre (rows of the panels × L,) scratch; outs (T, B, H): h_1 .. h_T, the layer's output, any strides;
        active (T,) int64: running columns per step, B of them at first; relu: max(·, 0) instead of tanh.
        With the input split off (zx not empty, `split_input`): z (T+1, (H+1)·L) [h_t; 1], panels W_hh's rows,
        and zx (T·B, 1+I) every step's [1; x_t] as rows, which the part projects with x_panels ([b | W_ih]'s
        rows) into xw (T·B, its rows) before the loop; each step adds its own. skip: H where h_0 = 0 (the first
        step's product leaves out W_hh, whose terms are all zero: the same bits), else 0."""
        T = outs.shape[0]
        L = pre.shape[0] // (panels.shape[0] * panels.shape[2])
        units = hi - lo
        lanes = VECTOR_BYTES // z.itemsize
        split = zx.shape[0] > 0
        if split:  # xw[t·B + b] = [b | W_ih]_k [1; x_{t,b}] for every step at once, the steps' rows as its rows
            steps_as_rows(x_panels, zx, xw)
        for t in range(T):
            n = active[t]
            if t > 0:
                threads.wait_all(flags, parts, me, t, yield_address)
            step_product(panels, rows, z[t], 0, L, n, pre, lanes, skip if t == 0 else 0)
            if split:
                steps_inputs_into(xw, t * B, n, 0, units, L, pre, True)
            h = z[t + 1]
            count, length = (1, units * L) if n == B else (units, n)
            for r in range(count):
                s = r * L
                if relu:
                    relu_into(pre[s: s + length], h[lo * L + s: lo * L + s + length])
                else:
                    tanh_into(pre[s: s + length], h[lo * L + s: lo * L + s + length])
            threads.arrive(flags, me, t + 1)  # h_{t+1} is there: the others may go on while this part copies
            copy_states(h, L, outs[t], lo, units, n)  # the layer's output, and dW_hh's operand (own units)


def operand(inputs: np.ndarray, h0: np.ndarray, hidden: int, columns: int, alloc=np.zeros) -> np.ndarray:
    """z (T+1, H+1+I, columns): z_t = [h_t; 1; x_t] with h_0 and every x_t filled in, the rest zeros (the
    columns of ended sequences and the padding stay finite), or left unset with alloc=np.empty (where every
    entry a step reads is written before: `allocator`). Shared by the threaded GRU."""
    time, batch, features = inputs.shape
    z = alloc((time + 1, hidden + 1 + features, columns), dtype=inputs.dtype)
    copy_inputs(inputs, z.reshape(time + 1, -1), hidden + 1, columns)
    z[:, hidden] = 1
    z[0, :hidden, :batch] = h0.T
    return z


def columns_for(batch: int, dtype) -> int:
    """L: the batch, or the batch padded to whole vectors where the products run on the column kernel."""
    return batch if by_rows(batch, dtype) else padded(batch, VECTOR_BYTES // np.dtype(dtype).itemsize)


def layout(inputs: np.ndarray, h0: np.ndarray, hidden: int, active, outputs: np.ndarray | None = None):
    """What the threaded RNN's and GRU's forwards lay out before their loop: (rows: whether the products run
    on gemm_rows, L the columns, the operands z (T+1, H+1+I, L), the states hs (T+1, B, H) with hs[0] = h0
    (None given `outputs`), the states after each step outs (T, B, H): hs[1:], or the given `outputs`, any
    strides, a view of the layer's own output)."""
    time, batch, _ = inputs.shape
    columns = columns_for(batch, inputs.dtype)
    alloc = allocator(active, batch, columns)
    if outputs is not None:
        hs, outs = None, outputs
    else:
        hs = alloc((time + 1, batch, hidden), dtype=inputs.dtype)
        hs[0] = h0
        outs = hs[1:]
    return by_rows(batch, inputs.dtype), columns, operand(inputs, h0, hidden, columns, alloc), hs, outs


def forward(p, inputs: np.ndarray, h0: np.ndarray, c0, active, xw=None, outputs: np.ndarray | None = None,
            training: bool = True) -> Trace:
    """The RNN's forward, one layer direction: inputs (T, B, I) time-major, any strides, h0 (B, H) → Trace with
    h (T+1, B, H) time-major (given `outputs` (T, B, H): none, the states written there, for an inference
    forward);
    saved: whether the activation is ReLU (numpy_path.rnn_backward's trace). No folded input (xw). `training`
    (a backward may follow): also the backward's copies of W_hh and W_ih (`backward_copy`)."""
    if xw is not None:
        raise ValueError("the threaded RNN projects its own inputs; it takes no looked-up projection")
    time, batch, _ = inputs.shape
    hidden, dtype = p.hidden, inputs.dtype
    relu = p.mode == "rnn_relu"
    weights = hidden * (hidden + 1 + inputs.shape[2])
    groups = column_groups(hidden, batch, weights * dtype.itemsize, call_work=time * batch * weights)
    # (each group all the units on its own columns: one part, no meeting)
    parts = parts_for(hidden, batch) if len(groups) == 1 else 1  # one gate
    alloc = allocator(active, batch, batch)
    hs = None if outputs is not None else alloc((time + 1, batch, hidden), dtype=dtype)
    if hs is not None:
        hs[0] = h0
    outs = outputs if outputs is not None else hs[1:]
    split = split_input(batch, hidden, inputs.shape[2], dtype)  # the whole batch's: the same bits in any group
    arguments = []
    for lo, hi in groups:
        group_active = _group_active(active, lo, hi)
        rows, columns, z, zx = group_operands(inputs[:, lo:hi], h0[lo:hi], hidden, group_active, outs[:, lo:hi],
                                              split)
        arguments += _part_arguments(p, parts, rows, columns, z, outs[:, lo:hi], group_active, hi - lo, relu, zx,
                                     training)
    if training:
        made_for_backward(p)
    threads.run_apart(forward_part, arguments, meet=parts > 1)
    return Trace(hs, None, relu, outs)


def column_groups(gate_rows: int, batch: int, weight_bytes: int = 0, call_work: int | None = None
                  ) -> list[tuple[int, int]]:
    """The batch's columns cut in count() equal groups, each run as a layer of its own on its own thread
    (all the units, one part: no meeting at all), for the RNN's or the GRU's step of `gate_rows` rows (G·H).
    Where a split of units would leave one part (`parts_for`) and the call has
    thresholds.RNN_COLUMN_GROUPS_CALL_WORK multiply-adds (`call_work`, T·B·G·H·(H+1+I); None: a long call),
    groups of at least RNN_COLUMN_GROUPS_MIN_COLUMNS, or down to RNN_COLUMN_GROUPS_NARROW_COLUMNS where a
    group's step still has RNN_COLUMN_GROUPS_MIN_WORK entries (columns × gate rows) and the call
    RNN_COLUMN_GROUPS_NARROW_CALL_WORK. Where it would split the units, groups of at least
    RNN_SPLIT_GROUPS_MIN_COLUMNS while the weights, `weight_bytes` (G·H·(H+1+I) entries), fit
    RNN_SPLIT_GROUPS_BYTES. Else [(0, batch)]. Each column's sums run in the same order in any group: the
    bits are those of one group."""
    if parts_for(gate_rows, batch) > 1:  # in place of a split of units
        if weight_bytes > thresholds.RNN_SPLIT_GROUPS_BYTES:
            return [(0, batch)]
        least = thresholds.RNN_SPLIT_GROUPS_MIN_COLUMNS
    else:  # in place of one part, on a long enough call
        if call_work is not None and call_work < thresholds.RNN_COLUMN_GROUPS_CALL_WORK:
            return [(0, batch)]
        least = thresholds.RNN_COLUMN_GROUPS_MIN_COLUMNS
        if call_work is None or call_work >= thresholds.RNN_COLUMN_GROUPS_NARROW_CALL_WORK:
            enough = -(-thresholds.RNN_COLUMN_GROUPS_MIN_WORK // gate_rows)  # the columns a big enough step needs
            least = min(least, max(thresholds.RNN_COLUMN_GROUPS_NARROW_COLUMNS, enough))
    groups = min(threads.count(), batch // least)
    if groups < 2:
        return [(0, batch)]
    cuts = [batch * k // groups for k in range(groups + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _part_arguments(p, parts: int, rows: bool, columns: int, z: np.ndarray, outs: np.ndarray, active, batch: int,
                    relu: bool, zx: np.ndarray, training: bool) -> list[tuple]:
    """forward_part's arguments for each of `parts` parts of one layer (or one column group); zx (T·batch, 1+I)
    every step's inputs as rows where the input is split off (`steps_operand`), else empty."""
    time, dtype = z.shape[0] - 1, z.dtype
    split = zx.shape[0] > 0
    pairs = split_panels(p, parts, rows, training) if split else [(a, np.empty((0, 0, 0), dtype=dtype))
                                                                   for a in forward_panels(p, parts, rows, training)]
    flags, steps = threads.new_flags(parts), np.asarray(active, dtype=np.int64)
    skip = zero_start(z, p.hidden, batch)
    return [(k, parts, lo, hi, panels, rows, z.reshape(time + 1, -1),
             np.empty(panels.shape[0] * panels.shape[2] * columns, dtype=dtype), outs, steps, batch, relu,
             flags, threads.YIELD, x_panels, zx, projection_scratch(zx, x_panels), skip)
            for k, ((lo, hi), (panels, x_panels)) in enumerate(zip(_pairs(_bounds(p.hidden, parts)), pairs))]



def inference_forward(p, inputs, h0, c0, active, xw=None, outputs: np.ndarray | None = None) -> Trace:
    """`forward`, for a forward no backward follows: its states into `outputs` where given; there, from
    thresholds.RNN_ROWS_FORWARD_MIN_HIDDEN units while the weights fit RNN_ROWS_FORWARD_BYTES, where the
    batch's columns would run in groups of at least RNN_ROWS_FORWARD_MIN_ROWS and every sequence runs every
    step, batch-major (`rows_forward`; the output's rows contiguous)."""
    weight_bytes = p.hidden * (p.hidden + 1 + inputs.shape[2]) * inputs.dtype.itemsize
    if (xw is None and outputs is not None and outputs.strides[2] == outputs.itemsize
            and active[-1] == inputs.shape[1] and p.hidden >= thresholds.RNN_ROWS_FORWARD_MIN_HIDDEN
            and weight_bytes <= thresholds.RNN_ROWS_FORWARD_BYTES):
        groups = column_groups(p.hidden, inputs.shape[1], weight_bytes,
                               call_work=inputs.shape[0] * inputs.shape[1] * weight_bytes // inputs.dtype.itemsize)
        if len(groups) > 1 and min(hi - lo for lo, hi in groups) >= thresholds.RNN_ROWS_FORWARD_MIN_ROWS:
            return rows_forward(p, inputs, h0, outputs, groups)
    return forward(p, inputs, h0, c0, active, xw, outputs, training=False)


def row_weights(p) -> np.ndarray:
    """[W_hh | b | W_ih]ᵀ (H+1+I, H) in pairs of vectors of columns (gemm.pack_column_pairs): (pairs, H+1+I,
    2·lanes), the batch-major step's right operand; made once per Packed."""
    return p.derived("rnn_row_weights", lambda: pack_column_pairs(step_rows(p, slice(0, p.hidden)).T))


if AVAILABLE:
    @jit
    def rows_part(z, w, pre, x, x_at, x_step, x_row, out, out_at, out_step, out_row, T, n, H, relu):
        """One group of n rows of the batch-major forward over T steps (see `rows_forward`): z (2, R, H+1+I),
        the operand's two slots [h_t | 1 | x_t] row-major, R = n rounded up to gemm.ROW_MAJOR_TAIL, h_0 and
        the ones filled in by the caller; w `row_weights` (pairs, H+1+I, 2·lanes); pre (R, Hp) scratch, Hp = H
        rounded up to whole vectors; x_t's row b is x[x_at + t·x_step + b·x_row:][:I], and h_{t+1}'s goes to
        out's the same way (`flat_view`)."""
        K, Hp = w.shape[1], pre.shape[1]
        I = K - H - 1
        flat_w, flat_pre = w.reshape(-1), pre.reshape(-1)
        for t in range(T):
            now, after = z[t % 2], z[(t + 1) % 2]
            for b in range(n):
                at = x_at + t * x_step + b * x_row
                now[b, H + 1:] = x[at: at + I]
            # pre = [h_t | 1 | x_t] [W_hh | b | W_ih]ᵀ: each entry's chain of fused multiply-adds over k in the
            # order of `forward`'s, so the same bits
            gemm_row_major_pairs(now.reshape(-1), 0, K, n, flat_w, K, Hp, flat_pre, 0, Hp)
            for b in range(n):
                at = out_at + t * out_step + b * out_row
                h = out[at: at + H]
                if relu:
                    relu_into(pre[b, :H], h)
                else:
                    tanh_into(pre[b, :H], h)
                after[b, :H] = h


def flat_view(a: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """a (T, B, N), unit strides along N, any others (negative too) → (flat, at, step, row): a 1-D array over
    the memory a spans, with a[t, b, j] = flat[at + t·step + b·row + j]. The compiled loops then take a row as
    a contiguous slice, which they vectorise (through the view's strides they copied one value at a time)."""
    item = a.itemsize
    step, row, unit = (s // item for s in a.strides)
    if unit != 1 or any(s % item for s in a.strides):
        raise ValueError("flat_view needs unit strides along the last axis")
    time, batch, width = a.shape
    corner = a[time - 1 if step < 0 else 0:][:1, batch - 1 if row < 0 else 0:][:, :1]  # the lowest address
    span = (time - 1) * abs(step) + (batch - 1) * abs(row) + width
    flat = np.lib.stride_tricks.as_strided(corner, shape=(span,), strides=(item,))
    at = (time - 1) * max(0, -step) + (batch - 1) * max(0, -row)
    return flat, at, step, row


def rows_forward(p, inputs: np.ndarray, h0: np.ndarray, outputs: np.ndarray, groups) -> Trace:
    """The inference forward batch-major: each group of the batch's rows on its own thread, all units, each
    step one product of the states' rows [h_t | 1 | x_t] (R, H+1+I) and `row_weights` (gemm_row_major_pairs),
    h_{t+1} = tanh(pre) (or max(pre, 0)) written into the output's rows and the next step's operand.
    inputs (T, B, I), h0 (B, H), outputs (T, B, H), any strides (a view of the layer's output) → Trace.

    Why. `forward` keeps the states unit-major (H, L) for its column kernel, so every step's h_{t+1} was copied
    into the output's rows transposed, and every x_t into the operand: 8-14 % of the RNN's inference at hidden
    256-448 (Sapphire Rapids). Here both are row copies. Each entry's sums run in `forward`'s order: the same
    bits."""
    time, batch, features = inputs.shape
    hidden, dtype = p.hidden, inputs.dtype
    w = row_weights(p)
    if inputs.strides[2] != inputs.itemsize:
        inputs = np.ascontiguousarray(inputs)
    x, x_at, x_step, x_row = flat_view(inputs)
    out, out_at, out_step, out_row = flat_view(outputs)
    arguments = []
    for lo, hi in groups:
        rows = padded_count(hi - lo, ROW_MAJOR_TAIL)
        z = np.zeros((2, rows, hidden + 1 + features), dtype=dtype)
        z[:, :, hidden] = 1
        z[0, :hi - lo, :hidden] = h0[lo:hi]
        pre = np.empty((rows, padded_count(hidden, VECTOR_BYTES // dtype.itemsize)), dtype=dtype)
        arguments.append((z, w, pre, x, x_at + lo * x_row, x_step, x_row, out, out_at + lo * out_row, out_step,
                          out_row, time, hi - lo, hidden, p.mode == "rnn_relu"))
    threads.run_apart(rows_part, arguments, meet=False)
    return Trace(None, None, p.mode == "rnn_relu", outputs)


def recurrent_weights(p) -> np.ndarray:
    """W_hh (G·H, H), packed row order: the backward's product's right operand (the RNN's and the GRU's), p.w_hh
    itself. The product reads whole vectors of each row, past H into the next row's first values and, on the
    last row, into packing.ROW_SLACK values past its end; those columns of its result are never read. (Before,
    a copy padded with zero columns to whole vectors: 0.1-0.4 ms a training call at hidden 500, batch 12.)"""
    assert p.w_hh.base is not None and p.w_hh.base.size - p.w_hh.size >= packing.ROW_SLACK
    return p.w_hh


def padded_count(count: int, unit: int) -> int:
    """count rounded up to a multiple of unit."""
    return -(-count // unit) * unit


if AVAILABLE:
    @jit
    def incoming_products(t, meet, first, last, lo, hi, flat_g, B, K, flat_w, ldw, flat_rec, ldr, active, parts, me,
                          flags, yield_address):
        """Before step t of a part of a threaded backward (the RNN's, the GRU's; t = -1: the last product):
        where the parts split the units (meet), wait until every part has written step t+1's gradients; then
        rec[first:, lo:hi] = g_{t+1}[first:] W[:, lo:hi] for the part's rows running at step t+1 (flat: g
        (·, B, K), W (K, ldw), rec (·, ldr); hi may pass ldw, W's rows then read into the next row, those
        columns of rec to be ignored). Returns how many rows of the batch ran step t+1."""
        if meet:
            threads.wait_all(flags, parts, me, active.shape[0] - 1 - t, yield_address)
        m = active[t + 1]
        if m > first:
            gemm_row_major(flat_g, ((t + 1) * B + first) * K, K, min(m, last) - first, flat_w, lo, ldw, hi - lo, K,
                           flat_rec, first * ldr + lo, ldr)
        return m

    @jit
    def backward_part(me, parts, meet, first, last, lo, hi, w, g, d_out, batch_major, h, relu, dh_n, rec, active,
                      flags, yield_address):
        """Part `me` of the backward over all steps (see the module's text): rows first..last-1 of the batch
        and columns lo..hi-1 of the padded hidden axis (whole vectors); meet: wait for every part's g_{t+1}
        before each product (a split of the units; a split of the rows needs no meeting: a row's gradients
        never meet another row's, and each part's rows start on a multiple of gemm.ROW_MAJOR_TAIL, so no block
        of rows writes another part's rows; the last part's last block reads past the batch's rows, into rows
        it ignores). w (H, H) `recurrent_weights`; g (T + spare, B, H): g[t] = dL/dpre_t,
        written for the running rows of each step (the rest as the caller set them), then spare steps that
        the last block of rows may read past g[T-1]'s rows; d_out (T, B, H), or (B, T, H) where batch_major; h
        (T+1, B, H) the forward's states; dh_n (B, H); rec (B rounded up to gemm.MR, Hp) scratch, after the
        last step dL/dh_0 in its first B rows; active (T,) int64."""
        T, B, H = active.shape[0], h.shape[1], h.shape[2]
        ldw, Hp = w.shape[1], rec.shape[1]
        one, zero = h.dtype.type(1), h.dtype.type(0)
        flat_g, flat_w, flat_rec = g.reshape(-1), w.reshape(-1), rec.reshape(-1)
        top = min(hi, H)
        m = 0  # rows running at step t+1
        for t in range(T - 1, -2, -1):  # t = -1: dL/dh_0's product only
            if t < T - 1:
                m = incoming_products(t, meet, first, last, lo, hi, flat_g, B, H, flat_w, ldw, flat_rec, Hp, active,
                                      parts, me, flags, yield_address)
            if t < 0:
                break
            for b in range(first, min(active[t], last)):
                d = d_out[b, t] if batch_major else d_out[t, b]
                incoming = rec[b] if b < m else dh_n[b]  # a row's last step takes dL/dh_n
                row, out = h[t + 1, b], g[t, b]
                if relu:
                    for j in range(lo, top):
                        out[j] = (d[j] + incoming[j]) * (one if row[j] > zero else zero)
                else:
                    for j in range(lo, top):
                        out[j] = (d[j] + incoming[j]) * (one - row[j] * row[j])
            if meet:
                threads.arrive(flags, me, T - t)


def backward_split(batch: int, hidden: int, lanes: int, itemsize: int, gates: int = 1) -> tuple[
        list[tuple[int, int]], list[tuple[int, int]]]:
    """How the backward's parts split the work (the RNN's, or the GRU's with gates=3): ([(first, last) rows],
    [(lo, hi) padded columns]), one pair per part. The rows, evenly in blocks of gemm.ROW_MAJOR_TAIL, over
    the threads where the batch has more than one row panel (gemm.MR) and W_hh (G·H, Hp) stays small in a
    core's cache (thresholds.RNN_BACKWARD_ROWS_BYTES): no meeting per step; else the units, in whole vectors,
    as the forward splits them (`parts_for`), with a meeting per step; else one part."""
    vectors = padded_count(hidden, lanes) // lanes
    small = gates * hidden * vectors * lanes * itemsize <= thresholds.RNN_BACKWARD_ROWS_BYTES
    if batch > MR and threads.count() > 1 and small:
        blocks = -(-batch // ROW_MAJOR_TAIL)
        parts = min(threads.count(), blocks)
        rows = [min(batch, ROW_MAJOR_TAIL * (blocks * k // parts)) for k in range(parts + 1)]
        return _pairs(rows), [(0, vectors * lanes)] * parts
    parts = max(1, min(parts_for(gates * hidden, batch), vectors))
    return [(0, batch)] * parts, _pairs([lanes * (vectors * k // parts) for k in range(parts + 1)])


def backward(p, trace: Trace, d_out: np.ndarray, dh_n: np.ndarray, dc_n, active):
    """numpy_path.rnn_backward's gradients (to float rounding; the same bits on any thread count) on the
    threads: d_out (T, B, H) any strides → (d_pre, d_pre, dh_0, None), d_pre by_rows (H, T·B). Below
    `threaded_backward_batch` rows, numba_path.rnn_backward."""
    hs, relu = trace.h, trace.saved
    time, batch, hidden = d_out.shape
    if batch < threaded_backward_batch("rnn"):  # row panels of padding
        return rnn_backward(p, trace, d_out, dh_n, dc_n, active)
    lanes = VECTOR_BYTES // hs.itemsize
    row_parts, column_parts = backward_split(batch, hidden, lanes, hs.itemsize)
    parts = len(row_parts)
    meet = parts > 1 and row_parts[0] == (0, batch)  # the units split: every part needs every row's g
    # zeros where a row has ended (the weight gradients read every row); spare steps for the last row panel
    # to read past the last step's rows (its results land in rec's rows past the batch, unused)
    rows = padded_count(batch, MR)
    spare = -(-rows // batch)
    g = (np.empty if active[-1] == batch else np.zeros)((time + spare, batch, hidden), dtype=hs.dtype)
    g[time:] = 0
    rec = np.empty((rows, padded_count(hidden, lanes)), dtype=hs.dtype)
    d_rows, batch_major = rows_of(d_out)
    flags, steps = threads.new_flags(parts), np.asarray(active, dtype=np.int64)
    w = recurrent_weights(p)
    threads.run_apart(backward_part, [(k, parts, meet, *row_parts[k], *column_parts[k], w, g, d_rows, batch_major,
                                       hs, relu, np.ascontiguousarray(dh_n), rec, steps, flags, threads.YIELD)
                                      for k in range(parts)], meet=meet)
    d_pre = gradient_matrix(g[:time])
    return d_pre, d_pre, rec[:batch, :hidden].copy(), None
