"""The threaded path: the gate-major LSTM with each thread owning a slice of the hidden units (numba installed).

Layout, gate-major: per step the gates are a (4H, L) block in the packed order i, f, o, g (sigmoid rows
halved), c and tanh c (H, L) blocks, and the product's operand is z_t = [h_t; x_t; 1] (H+I+1, L), where L is
the batch B padded to whole SIMD vectors (`padded`): the products run on whole vectors, and the padding
columns, zeros and ones to start with, give results nobody reads (up to thresholds.ROW_KERNEL_BATCH the
products run on gemm.gemm_rows, up to WIDE_ROWS_BATCH on gemm.gemm_rows_wide, which need no padding: L = B).
Part k of P owns the hidden units lo..hi-1: the gate rows g·H+lo..g·H+hi-1 of each of the four gates, and c, h
of those units. P = `parts_for(H, B)`: one part where a step is small (no meeting at all), else one per thread.

Forward, part k, step t:      wait until every part has written h_t into z_t
    pre = W_k z_t               W_k: [W_hh | W_ih | b] of the part's 4·(hi-lo) gate rows, packed panels
    (up to thresholds.SPLIT_INPUT_BATCH columns the input is split off: xw_t = [W_ih | b]_k [x_t; 1] for
    every t before the loop, then pre = W_hh,k h_t + xw_t, so that each step streams W_hh only)
    i, f, o = (1 + tanh(pre))/2 (halved rows), g = tanh(pre); c_{t+1} = f ⊙ c_t + i ⊙ g;
    h_{t+1} = o ⊙ tanh(c_{t+1}) for units lo..hi-1; h_{t+1} into z_{t+1}; then say "t+1 steps done"
Backward, part k, step t (T-1 down to 0):
    dh += d_out_t (own units);  dc_t = dc + dh ⊙ o ⊙ (1 - tanh²c_{t+1})
    d_i = dc_t ⊙ g ⊙ i(1-i), d_f = dc_t ⊙ c_t ⊙ f(1-f), d_o = dh ⊙ tanh c_{t+1} ⊙ o(1-o),
    d_g = dc_t ⊙ i ⊙ (1-g²) into the own rows of d_steps[t];  dc ← dc_t ⊙ f;  say "done", wait for all
    dh = W_hh^T[lo:hi] d_steps[t]   (all 4H gate rows of step t, hence the wait)
Every step's operands stay in memory (z and d_steps for all t), so a part that runs ahead never
overwrites what another still reads, and one meeting per step suffices. The products run on `gemm.py`'s
kernels, on panels packed by lstm_panels.py. The parts run and meet on shared_steps.py: a part's step is a
unit (`forward_step` then `forward_copy`; `backward_step` then `backward_stage`, whose unit u holds step
T-1-u's gradients and the product for the step before) that any thread runs where the part's own thread is
behind (a busy neighbour): the split and each part's arithmetic are fixed, and so are the bits. One part
that meets no other (a column group, or the one part beside its helper) runs its steps on the same compiled
loop (`forward_parts`, `backward_parts`, shared_steps.alone): each loop holds the step once, since each
compiled function costs seconds for all it calls (numba optimizes it with them linked in).

One part and a helper thread (a small step, `small_step`: P = 1 on any thread count). The steps then run
on one core with no meeting, and the second core takes the work that does not lie on the steps' chain
(the forward's units are split as in inference, though: one part and a helper only where inference too
runs one part, below thresholds.ONE_PART_INFERENCE_HIDDEN):
    forward   the helper projects xw_t = [W_ih | b] [x_t; 1] step after step (`project_part`), each step
              claimed from a shared count; the steps' part, before step t, claims and projects steps itself
              until step t's is done (at the start, while the helper's thread wakes; or when it lags)
    backward  the steps' part runs the steps as above and then dx_t = W_ih^T d_t for every t, from the
              forward's [W_ih | b] panels read transposed (`backward_steps_part`, `forward_input_gradient`:
              no W_ih^T panels; the forward's are one set of all 4H rows even where its units are split,
              each part projecting the panels that hold its rows); the helper sums dW_hh = Σ_t d_t h_t^T,
              dW_ih = Σ_t d_t x_t^T and db = Σ_t d_t a chunk of steps at a time, as soon as the steps'
              part has done them (`weight_gradient_part`, gemm.gemm_rows_add_blocks), so the layer's three
              products after the loop (three 2-thread OpenBLAS calls, ~1.3 ms of 4.2 at hidden 128, batch 4)
              are gone (`gradients`)
Each element is computed by one thread in one fixed order, so the bits do not depend on the timing, nor
on the thread count: on one thread the helper's work runs after the steps' (threads.run_pipeline).

Measured at hidden 128, batch 4 (T 64, input 64, float32) on a quiet moment before this: fwd+bwd 4.2 ms,
of which forward steps 0.94 (input projection 0.23, products 0.45), backward steps 0.83, weight and input
products 1.34, packing 0.23.

Measured at (batch, time, input, hidden) = (32, 64, 128, 256), float32, 2 threads on this 2-core Zen 4,
against the previous steps (one 2-thread OpenBLAS product plus one compiled gate call per step):
forward 11.8-16.1 → 9.0-11.3 ms, backward's steps 9.7-14.3 → 8.4-10.0 ms.

Column groups (`column_groups`: a large batch, W_hh small enough for each core's cache). The batch's columns
are cut in one group a thread, and each group runs the one-part steps above on its columns alone, forward
and backward, without a helper: no meeting per step, and no core reads an h or a gradient that another
core wrote. Each column's arithmetic is the same as in the unit split (a column's sums run over k in one
order, whichever kernel and however many columns), so are the bits of the outputs and states. The
gradients are each group's products over its columns, the weight gradients summed over the groups
(`split_gradients`): the same to rounding, their bits depending on the group count (the thread count).
"""
from __future__ import annotations

import numpy as np

from . import lstm_panels, packing, shared_steps, thresholds, threads
from .kernels import AVAILABLE
from .trace import Trace, allocator, kept, lengths_of

if AVAILABLE:
    from . import gemm
    from .gemm import (MR, RV, RW, VECTOR_BYTES, VW, add_side_panels, copy_transposed, gemm_panels, gemm_rows,
                       gemm_rows_add_blocks, gemm_rows_wide, pack_block_summed, pack_rows, panel_kind,
                       panel_products)
    from .kernels import add_into, cell_grad, jit, mul_in_place, scalar_tanh, sigmoid_grad, tanh_grad
    from .lstm_cell import lstm_cell_pass, lstm_state_pass
    from .transposed_products import transposed_product

def parts_for(hidden: int, batch: int | None = None, training: bool = True, inputs: int | None = None) -> int:
    """How many parts (threads) split a layer of `hidden` units running `batch` columns (None: as many as
    its units allow) of `inputs` features. One where the step is small (`small_step`): the threads' meeting
    at every step would cost more than the split gains (the second thread then helps beside the steps
    instead)."""
    if batch is not None and small_step(hidden, batch, training, inputs):
        return 1
    return max(1, min(threads.count(), hidden // thresholds.MIN_UNITS_PER_PART))


def small_step(hidden: int, batch: int, training: bool = True, inputs: int | None = None) -> bool:
    """Whether the weights fit one core's cache and a step's product is small: the steps then run on one
    part, whatever the thread count. In training batch·hidden² up to thresholds.ONE_PART_WORK, batch up
    to SPLIT_INPUT_BATCH and the helper thread's share, batch·hidden·(2·inputs + hidden), up to
    ONE_PART_HELPER_WORK (it projects the inputs and sums the weight gradients; inputs None: not bounded);
    in inference hidden below ONE_PART_INFERENCE_HIDDEN, batch·hidden² up to ONE_PART_INFERENCE_WORK and
    batch·hidden below COLUMN_GROUPS_WORK (above it, `column_groups`)."""
    if training:
        return (hidden < thresholds.LOOP_HIDDEN and batch * hidden * hidden <= thresholds.ONE_PART_WORK
                and batch <= thresholds.SPLIT_INPUT_BATCH
                and (inputs is None or batch * hidden * (2 * inputs + hidden) <= thresholds.ONE_PART_HELPER_WORK))
    return (hidden < thresholds.ONE_PART_INFERENCE_HIDDEN and batch * hidden * hidden <=
            thresholds.ONE_PART_INFERENCE_WORK and not _grouped_narrow(hidden, batch, training))


def _grouped_narrow(hidden: int, batch: int, training: bool) -> bool:
    """Whether a step of at most COLUMN_GROUPS_HIDDEN units runs in column groups: batch·hidden from
    COLUMN_GROUPS_WORK, and also from COLUMN_GROUPS_NARROW_WORK where the input is not split
    off (the one part's helper would then have nothing to do); in inference from hidden
    ONE_PART_INFERENCE_HIDDEN on (the alternative: a split of units) only from COLUMN_GROUPS_SPLIT_BATCH
    columns."""
    work = batch * hidden
    if not training and hidden >= thresholds.ONE_PART_INFERENCE_HIDDEN and batch < thresholds.COLUMN_GROUPS_SPLIT_BATCH:
        return False
    return work >= thresholds.COLUMN_GROUPS_WORK or (
        not split_input(batch) and work >= thresholds.COLUMN_GROUPS_NARROW_WORK)


def _bounds(hidden: int, parts: int) -> list[int]:
    return [hidden * k // parts for k in range(parts + 1)]


COLUMNS, ROWS, WIDE_ROWS = 0, 1, 2  # gemm.py's kernels: gemm_panels, gemm_rows, gemm_rows_wide


def by_rows(batch: int, dtype=np.float32) -> bool:
    """Whether the products run on a row-vector kernel of gemm.py (no lane idles on a missing column; L = B)
    rather than its column one (on whole vectors of columns, the batch padded): for few columns, and where
    the padding would add more than thresholds.ROW_KERNEL_PADDING of the batch (also used by the threaded
    GRU and RNN)."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize if AVAILABLE else 1
    whole = -(-batch // lanes) * lanes
    return batch <= thresholds.ROW_KERNEL_BATCH or whole > thresholds.ROW_KERNEL_PADDING * batch


def kernel_for(batch: int, dtype=np.float32) -> int:
    """Which of gemm.py's kernels runs the LSTM's products: the row-vector ones for few columns (the tall one
    for one or two) or many padding columns, else the column kernel."""
    if not by_rows(batch, dtype):
        return COLUMNS
    return WIDE_ROWS if batch <= thresholds.WIDE_ROWS_BATCH else ROWS


def split_input(batch: int) -> bool:
    """Whether the input projection runs apart from the steps' products (few columns: the steps then stream
    only W_hh, and a small step's helper thread projects the inputs ahead of the steps, `small_step`) rather
    than inside each step's product. Depends neither on the thread count nor on the mode (training or
    inference): the forward's bits do not."""
    return batch <= thresholds.SPLIT_INPUT_BATCH


def _width(kernel: int, dtype) -> int:
    """The panels' height: RV (RW) vectors for gemm_rows (gemm_rows_wide), MR rows for gemm_panels."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    return {COLUMNS: MR, ROWS: RV * lanes, WIDE_ROWS: RW * lanes}[kernel]


def forward_panels(p, parts: int, kernel: int, blocks: str = "all") -> list[np.ndarray]:
    """Each part's gate rows of `blocks` (lstm_panels.forward_panels: "all" [W_hh | W_ih | b], "hh" W_hh,
    "ih" [W_ih | b]), halved, packed for `kernel`; made once per Packed."""
    width = _width(kernel, p.originals[1].dtype)
    return p.derived(("lstm_forward_panels", parts, kernel, blocks),
                     lambda: lstm_panels.forward_panels(p, _pairs(_bounds(p.hidden, parts)), width, blocks))


def forward_panel_pair(p, parts: int, kernel: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(`forward_panels` "hh", the same "ih"), each set's parts on their threads (one part: on the calling
    thread, which then waits for no worker to wake)."""
    return forward_panels(p, parts, kernel, "hh"), forward_panels(p, parts, kernel, "ih")


def training_panels(p, parts: int, backward_parts: int, kernel: int, split: bool, input_parts: int | None = None):
    """((`forward_panel_pair` if `split`, else (`forward_panels` "all", None)), the backward's W_hh^T panels,
    each part's rows (hi-lo, 4H), unhalved) for a training forward, from the weights as they are, all made in
    one meeting of the threads (lstm_panels.training_panels); [W_ih | b]'s in `input_parts` parts (default
    `parts`); made once per Packed."""
    width = _width(kernel, p.originals[1].dtype)
    input_parts = parts if input_parts is None else input_parts

    def make():
        sets = ("hh", "ih") if split else ("all",)
        forward, backward = lstm_panels.training_panels(p, _pairs(_bounds(p.hidden, parts)),
                                                        _pairs(_bounds(p.hidden, backward_parts)), width, sets,
                                                        _pairs(_bounds(p.hidden, input_parts)))
        return (forward[0], forward[1] if split else None), backward
    return p.derived(("lstm_training_panels", parts, backward_parts, kernel, split, input_parts), make)


def backward_x_panels(p, kernel: int) -> np.ndarray:
    """W_ih^T's rows (the input gradient's product), unhalved, as one part's panels packed for `kernel` from
    the forward's copy (`input_operand`); made once per Packed."""
    w_ih = input_operand(p)[:, :p.originals[0].shape[1]]
    return p.derived(("lstm_backward_x_panels", kernel),
                     lambda: lstm_panels.transposed_panels(w_ih, [(0, w_ih.shape[1])], _width(kernel, w_ih.dtype))[0])


def input_operand(p) -> np.ndarray:
    """W_ih in packed gate order, unhalved, its columns padded with zeros to whole vectors of gemm.py's kernels
    (4H, I'): the input gradient's operand as `threads.matmuls` takes it without a copy (gemm.matmul_operand),
    made in one pass from the weights as given; a training forward makes it (Implementation.keeps_w_ih: no
    reordered copy of W_ih, and no padded copy of that, on every backward). Made once per Packed."""
    def make():
        w_ih = p.originals[0]
        rows, features = w_ih.shape
        lanes = VECTOR_BYTES // w_ih.itemsize
        out = np.empty((rows, -(-features // lanes) * lanes), dtype=w_ih.dtype)
        out[:, features:] = 0
        hidden = p.hidden
        for k, q in enumerate(packing.gate_order(p.mode)):
            out[k * hidden:(k + 1) * hidden, :features] = w_ih[q * hidden:(q + 1) * hidden]
        return out
    return p.derived(("lstm_input_operand",), make)


def gradient_chunk(time: int, batch: int) -> int:
    """Steps per chunk of the helper thread's weight-gradient sums (`weight_gradient_part`): about 64
    columns (k) a chunk, and four chunks over the sequence where each still has 32 columns or more, so
    that the helper starts early. Each chunk reads and writes all of dW_ih and dW_hh: at fewer columns that
    pass costs more than the early start gains (hidden 160, batch 2, input 462, T 5: chunks of 2 steps
    took 511 us, one chunk 264; hidden 64, batch 3, T 9: 139 against 98)."""
    return max(1, min(-(-64 // batch), max(-(-time // 4), -(-32 // batch))))


def _pairs(bounds):
    return list(zip(bounds[:-1], bounds[1:]))


if AVAILABLE:
    @jit
    def padded(columns, lanes):
        """columns rounded up to whole vectors of `lanes`: the products run on whole vectors only, the
        padding columns' results unused (a plain loop over 5 of 8 columns ran 13x slower than 8)."""
        return -(-columns // lanes) * lanes

    @jit
    def sigmoid_to(a, out, half):
        """out ← (1 + tanh(a)) / 2 (halved rows)."""
        for j in range(out.shape[0]):
            out[j] = scalar_tanh(a[j]) * half + half

    @jit
    def _product(panels, kernel, z, z_off, L, n, out, backwards=False, k0=0):
        """out ← A z for the first n of L columns: gemm_rows_wide, gemm_rows, or gemm_panels on whole vectors
        (the padding columns too, their results unused); from A's column k0 where z's rows before it are
        zeros (none left: out = 0)."""
        if k0 == panels.shape[1]:
            out[:] = 0
        elif kernel == WIDE_ROWS:
            gemm_rows_wide(panels, z, z_off, L, n, out, L, k0)
        elif kernel == ROWS:
            gemm_rows(panels, z, z_off, L, n, out, L, backwards, k0)
        else:
            gemm_panels(panels, z, z_off, L, padded(n, VECTOR_BYTES // z.itemsize), out, L, backwards, k0)

    @jit
    def steps_as_rows(x_panels, zx, xw, ranges=None):
        """xw[t] = [W_ih | b]_k [x_t; 1] for every step t of a one-column forward (L = 1), as one product with
        the steps as its rows: (T, I+1) @ the panels' rows transposed, each panel (I+1, width) of x_panels
        (P, I+1, width) read as it is (given `ranges` (n, 2): the panels first..last-1 of each row, their rows
        of xw, only). A step at a time, a one-column product streams the panels for two fused multiply-adds a
        vector loaded (64 GFLOP/s); here each value of the panels serves every step. Each xw entry is the
        same chain of fused multiply-adds over k in order: the same bits."""
        T = zx.shape[0]
        count, depth, width = x_panels.shape
        if ranges is None:
            ranges = np.array([[0, count]], dtype=np.int64)
        size = xw.shape[1]
        a = np.empty((-(-T // MR), depth, MR), dtype=zx.dtype)
        pack_rows(zx, 0, T, a)
        full = T // MR  # whole panels of steps straight into xw; the last few steps' rows through `rest`
        rest = np.empty(MR * size, dtype=xw.dtype)
        flat_x, flat_out = x_panels.reshape(-1), xw.reshape(-1)
        for i in range(ranges.shape[0]):
            first, last = ranges[i, 0], ranges[i, 1]
            for p in range(first, last):
                if full > 0:
                    gemm_panels(a[:full], flat_x, p * depth * width, width, width, flat_out[p * width:], size)
                if T > full * MR:
                    gemm_panels(a[full:], flat_x, p * depth * width, width, width, rest[p * width:], size)
            lo, hi = first * width, min(size, last * width)
            for t in range(full * MR, T):
                xw[t, lo:hi] = rest[(t - full * MR) * size + lo: (t - full * MR) * size + hi]

    @jit
    def project_panels(x_panels, ranges, kernel, zx, L, B, xw):
        """xw[t] = [W_ih | b]_k [x_t; 1] for every step t, the rows of x_panels' panels first..last-1 of each
        row of ranges (n, 2): one product with the steps as rows for one column (`steps_as_rows`), else a step
        at a time."""
        if L == 1:
            steps_as_rows(x_panels, zx, xw, ranges)
        else:
            rows = x_panels.shape[2] * L
            for t in range(xw.shape[0]):
                for i in range(ranges.shape[0]):
                    first, last = ranges[i, 0], ranges[i, 1]
                    _product(x_panels[first:last], kernel, zx[t], 0, L, B, xw[t][first * rows:])

    @jit
    def project_part(x_panels, kernel, zx, L, B, xw, flags, yield_address):
        """The helper thread's forward (one part): xw_t = [W_ih | b] [x_t; 1] for the steps it claims
        (`project_step`) until none is left; the steps' part claims steps as well, those it reaches first."""
        T = xw.shape[0]
        while project_step(x_panels, kernel, zx, L, B, xw, flags) < T:
            pass

    @jit
    def project_step(x_panels, kernel, zx, L, B, xw, flags):
        """Claim the next step not yet claimed (flags' counter 1) and project its input into xw, marking it
        done (flags from 2 on); returns the step (T and more: none was left). Each step is projected once,
        by whichever thread claims it: the same bits either way."""
        t = threads.claim(flags, 1)
        if t < xw.shape[0]:
            _product(x_panels, kernel, zx[t], 0, L, B, xw[t])
            threads.mark_done(flags, 2, t)
        return t

    @jit
    def wait_projected(x_panels, kernel, zx, L, B, xw, flags, t, yield_address):
        """Until step t's input is projected: project the next unclaimed steps here (the helper may be
        late), then wait for the one the helper holds."""
        spins = 0
        while not threads.done(flags, 2, t):
            if project_step(x_panels, kernel, zx, L, B, xw, flags) >= xw.shape[0]:
                spins += 1
                threads.relax(yield_address, spins)

    @jit
    def copy_inputs(x_in, z, row, L):
        """z[t, (row + i)·L + b] = x_in[t, b, i]: the inputs (T, B, I), any strides, into rows of an operand
        (flattened per step), each x_t's row read once along i (NumPy's transposing copy of a batch-major
        input's view ran along b, reading one value a page)."""
        T, B, I = x_in.shape
        blocks = x_in.itemsize == z.itemsize == 4 and x_in.strides[2] == 4
        # in blocks of VW features transposed in registers (2-4x faster), the last features one value at a time
        whole_i = I - I % VW if blocks else 0
        for t in range(T):
            target = z[t]
            if blocks:
                copy_transposed(x_in, t * x_in.strides[0] // 4, x_in.strides[1] // 4, target, row * L, L, B, I)
            for b in range(B):  # the last features
                source = x_in[t, b]
                for i in range(whole_i, I):
                    target[(row + i) * L + b] = source[i]

    @jit
    def copy_states(h, L, rows, lo, units, n):
        """rows[b, lo + j] = h[(lo + j)·L + b] for b < n, j < units: a step's states, rows of L columns a unit (the
        next product's operand), into the layer's output rows (B, H), any strides; in blocks of VW × VW
        transposed in registers, the last columns one value at a time. Entry by entry the copy read one
        value a cache line, a quarter of the RNN's inference at hidden 384 batch 128."""
        blocks = h.itemsize == rows.itemsize == 4 and rows.strides[1] == 4
        whole_b = n - n % VW if blocks else 0
        if whole_b:
            copy_transposed(h, lo * L, L, rows, lo, rows.strides[0] // 4, units, n)
        for b in range(whole_b, n):
            row, column = rows[b, lo: lo + units], h[lo * L + b:]
            for j in range(units):
                row[j] = column[j * L]

    @jit
    def fill_inputs(x_in, z, row, L):
        """z[t, (row + i)·L + b] = x_in[t, b, i] for t < T (the steps' inputs, rows of L columns) and the row
        after them all ones, in every step z holds (T or T+1). A column group's part runs it itself
        (`forward_parts`): filled by the caller, its operand sat in the caller's core's cache, and the other
        group's steps ran 20 % slower (inference, hidden 64 batch 64: the caller waited 0.15 ms of 0.9 for the
        worker's group)."""
        I = x_in.shape[2]
        one = z.dtype.type(1)
        copy_inputs(x_in, z, row, L)
        for t in range(z.shape[0]):
            target = z[t]
            for b in range(L):
                target[(row + I) * L + b] = one

    @jit
    def forward_start(T, lo, hi, x_panels, kernel, z, zx, xw, c, B, producer, x_in, first, last, L):
        """`forward_step`'s work before step 0 (its arguments; L: columns a row): the part's share of the
        inputs into its operand and their projection. Not inlined into the step: the allocations here, in
        the loop that runs the steps, cost every step (hidden 128, batch 8, T 64, inference, in one process
        against each part's steps in one function: 1.03-1.04 inlined, 1.00 called)."""
        HL = c.shape[1]
        H = HL // L
        split = x_panels.shape[0] > 0
        if last > first:
            target = zx if split else z
            stop = target.shape[0] if last >= T else last  # (the last share: the rows of ones after it)
            fill_inputs(x_in[first:last], target[first:stop], 0 if split else H, L)
        if split and producer == -1:  # xw_t = [W_ih | b]_k [x_t; 1], every step's before the first
            project_panels(x_panels, np.array([[0, x_panels.shape[0]]], dtype=np.int64), kernel, zx, L, B, xw)
        if producer == -2:
            count, width = x_panels.shape[0], x_panels.shape[2]
            ranges = np.zeros((4, 2), dtype=np.int64)
            for q in range(4):  # (from the last one's end: a panel may hold rows of two gates)
                ranges[q, 0] = max(ranges[q - 1, 1] if q > 0 else 0, (q * H + lo) // width)
                ranges[q, 1] = max(ranges[q, 0], min(count, -(-(q * H + hi) // width)))
            project_panels(x_panels, ranges, kernel, zx, L, B, xw)

    @jit(inline="always")
    def forward_step(t, lo, hi, panels, x_panels, kernel, z, zx, xw, pre, gates, c, tanh_c, outs, active, B, flags,
                     yield_address, producer, x_in, first, last, skip):
        """Step t of the part of units lo..hi-1 (see the module's text): h_{t+1} and c_{t+1} of its units, with
        every part's h_t there; at t = 0 its inputs first. Rows of L columns (L >= B, the batch padded to whole
        vectors, `padded`), flattened per step:
        z (T+1, (H+I+1)·L): [h_t; x_t; 1] rows, h_0, all x and the ones filled in by the caller; or, with the
        input split off (x_panels not empty), z (2, H·L) h_t only, step t in slot t % 2, and zx (T, (I+1)·L)
        [x_t; 1], whose products with x_panels go to xw (T, rows of the panels × L) at step 0 (two slots are
        enough: a part writes h_{t+2} over h_t only once every part has computed step t+1);
        pre (rows of the panels × L,) scratch; gates (T, 4H·L); c (T+1, H·L) with c_0; tanh_c (T, H·L): the
        trace a backward reads; where none follows (`inference_forward`), gates and tanh_c with no steps (none
        stored: `lstm_state_pass`) and c (2, H·L), step t in slot t % 2 (each part reads only its own rows);
        outs (T, B, H): h_1 .. h_T, the layer's output, any strides (time-major, or a view of a batch-major
        array; `forward_copy`); active (T,) int64: running columns per step;
        producer: 1 where a helper thread projects the inputs beside the steps (`project_part`; then flags
        holds the claims of steps to project, `project_step`), -1 where the part projects them all first, -2
        where x_panels hold all 4H rows and xw (T, 4H·L') their order: the part projects the panels with its
        rows first;
        x_in (T, B, I): the inputs, of which this part puts steps first..last-1 into its operand, zx or z's x
        rows, with their rows of ones (and the last's: last = T), itself (`fill_inputs`): a column group's
        only part all of them; in a split of units, each part a share of steps 1..T-1 (every part reads them
        all: each part fills its share at its step 0, and step t >= 1 waits for every part to compute step
        t-1); none (first = last) where `_forward_group` did; skip: H where h_0 = 0 (the first step's product
        leaves out W_hh: `zero_start`), else 0."""
        T = outs.shape[0]
        L = pre.shape[0] // panels.shape[0] // panels.shape[2]
        HL = c.shape[1]
        H = HL // L
        split = x_panels.shape[0] > 0
        # xw's rows: the part's own (gate q's units at q·run); or (producer -2) rows in the order of all 4H
        # (gate q's units at q·H·L, this part's from lo), the part's own xw with the panels that hold its rows
        # projected (a few rows of another part's too, where a panel holds both): read from its own core's cache
        # (each part a share of one xw of all rows took 40 us more at hidden 128, batch 4: each step read half
        # its rows from the other core)
        units = hi - lo
        run = units * L
        x_stride, x_first = (HL, lo * L) if producer == -2 else (run, 0)
        if t == 0:
            forward_start(T, lo, hi, x_panels, kernel, z, zx, xw, c, B, producer, x_in, first, last, L)
        half = gates.dtype.type(0.5)
        Z, C = z.shape[0], c.shape[0]  # T+1 steps kept, or slots reused in turn (step t in slot t % Z)
        # no backward follows where gates has no steps: then no gates or tanh c stored (`lstm_state_pass`; they
        # took L2 room the weights' panels need: inference on the Zen 5, 2 threads, 6 alternating rounds, new /
        # before, hidden 128-512 batch 28-64 0.95-0.98)
        traced = gates.shape[0] > 0
        n = active[t]
        if producer >= 0:
            wait_projected(x_panels, kernel, zx, L, B, xw, flags, t, yield_address)
        # odd steps take the panels last to first: where a part's weights overflow L2 (hidden 512: 2.1-2.4
        # MB a part), the panels the step before read last are still there (inference, hidden 512, worker
        # processes asked in turn, 8 rounds, new / before: batch 4-24 0.85-0.96, 32-64 0.96-1.01)
        _product(panels, kernel, z[t % Z], 0, L, n, pre, t % 2 == 1, skip if t == 0 else 0)
        cell, c_prev = c[(t + 1) % C], c[t % C]
        h = z[(t + 1) % Z]
        count, length = (1, run) if n == B else (units, n)
        for r in range(count):
            s, own = r * L, lo * L + r * L
            x = xw[t] if split else pre  # (not read without the split)
            xs = x_first + s if split else s
            if not traced:
                lstm_state_pass(pre[s: s + length], pre[run + s: run + s + length],
                                pre[2 * run + s: 2 * run + s + length], pre[3 * run + s: 3 * run + s + length],
                                x[xs: xs + length], x[x_stride + xs: x_stride + xs + length],
                                x[2 * x_stride + xs: 2 * x_stride + xs + length],
                                x[3 * x_stride + xs: 3 * x_stride + xs + length],
                                split, c_prev[own: own + length], cell[own: own + length], h[own: own + length],
                                half)
                continue
            a, squashed = gates[t], tanh_c[t]
            lstm_cell_pass(pre[s: s + length], pre[run + s: run + s + length],
                           pre[2 * run + s: 2 * run + s + length], pre[3 * run + s: 3 * run + s + length],
                           x[xs: xs + length], x[x_stride + xs: x_stride + xs + length],
                           x[2 * x_stride + xs: 2 * x_stride + xs + length],
                           x[3 * x_stride + xs: 3 * x_stride + xs + length], split,
                           a[own: own + length], a[HL + own: HL + own + length],
                           a[2 * HL + own: 2 * HL + own + length], a[3 * HL + own: 3 * HL + own + length],
                           c_prev[own: own + length], cell[own: own + length], squashed[own: own + length],
                           h[own: own + length], half)

    @jit(inline="always")
    def forward_copy(t, lo, hi, panels, x_panels, kernel, z, zx, xw, pre, gates, c, tanh_c, outs, active, B, flags,
                     yield_address, producer, x_in, first, last, skip):
        """Step t's h_{t+1} of the part's units into the layer's output, outs[t] (and dW_hh's operand), once
        the other parts may go on (`forward_step`'s arguments)."""
        L = pre.shape[0] // panels.shape[0] // panels.shape[2]
        copy_states(z[(t + 1) % z.shape[0]], L, outs[t], lo, hi - lo, active[t])

    @jit
    def forward_parts(me, argument_sets, parts, units, board, patience, relax_yield):
        """The forward's units that part `me`'s thread takes (shared_steps.run_steps; `parts` parts, their
        arguments, `forward_step`'s, argument_sets[k]): `forward_step` and `forward_copy` of each, its own
        part's and those of a part whose thread is behind, through one inlined copy of the step. One part
        alone (a column group, or the one part beside its helper: shared_steps.alone) runs its steps in
        order, meeting no other. A part's arguments are taken from the tuple once for a run of its units
        (taken at every unit, the one part's steps took 3-5 % longer at hidden 64, batch 4)."""
        k, u = shared_steps.next_unit(board, me, parts, units, -1, 0, patience, relax_yield)
        while k >= 0:
            a, j = argument_sets[k], k
            while k == j:
                forward_step(u, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                             a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21])
                shared_steps.computed(board, k, u)
                forward_copy(u, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                             a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21])
                k, u = shared_steps.next_unit(board, me, parts, units, k, u, patience, relax_yield)

    @jit(inline="always")
    def backward_step(u, lo, hi, panels, kernel, d_out, dh, dc, product, staged, gates, c, tanh_c, d_steps, d_pre,
                      active, flags, yield_address, B):
        """Unit u of the part of units lo..hi-1's backward (see the module's text), with step t = T-1-u's
        pre-activation gradients there from every part: dh = W_hh^T[lo:hi] d_{t+1} (+ d_out_t, staged) where
        u > 0, then step t's gradients of its units into d_steps[t]; u = T: dh_0 only, then the part's rows
        of every step into d_pre. d_out (T, B, H) time-major, any strides (a view of the layer's batch-major
        gradient);
        dh, dc ((hi-lo)·L,): the own units' gradients reaching h_T, c_T (zeros in the padding columns), on
        return h_0, c_0; product (rows of the panels × L,) scratch; staged ((hi-lo)·L,): d_out_t, own units,
        as rows of L columns (`backward_stage`); gates, c, tanh_c: forward's arrays, flattened per step, rows
        of L columns; d_steps (T, 4H·L): each step's pre-activation gradients (unhalved), each part writing
        its own rows; at the end the part copies its rows into d_pre (4H, T, B), the weight gradients' operand
        (a column group's own array: `_group_steps`; not with an empty d_pre: `gradients` takes d_steps as it
        is).

        Time-major d_steps keeps each step's writes and its product's reads in one contiguous block; writing
        d_pre's columns directly instead touches 4H rows T·B apart at every step (about 5 ms of cache misses
        at T=64, B=32, H=256)."""
        T = gates.shape[0]
        H = d_out.shape[2]
        HL = c.shape[1]
        L = HL // H
        units = hi - lo
        if u == 0:
            for b in range(active[T - 1]):
                row = d_out[T - 1, b, lo:hi]
                for j in range(units):
                    dh[j * L + b] += row[j]
        else:  # dh_t = W_hh^T d_{t+1} + d_out_t
            t = T - u  # the step whose gradients are there
            n = active[t]
            m = active[t - 1] if t > 0 else 0  # running at step t-1 (m >= n)
            _product(panels, kernel, d_steps.reshape(-1), t * 4 * HL, L, n, product)
            if n == B and t > 0:  # (the padding columns' stay 0)
                add_into(product[: units * L], staged, dh)
            elif n == B:
                dh[:] = product[: units * L]
            else:  # the running columns take the product, those that start running at t-1 keep their dh
                for j in range(units):
                    for b in range(n):
                        dh[j * L + b] = product[j * L + b]
                    for b in range(m):
                        dh[j * L + b] += staged[j * L + b]
        if u == T:
            if d_pre.shape[0] > 0:
                for i in range(4 * units):  # own rows, whole
                    q, j = divmod(i, units)
                    r = q * H + lo + j
                    for t in range(T):
                        src, dst = d_steps[t, r * L: r * L + B], d_pre[r, t]
                        for b in range(B):
                            dst[b] = src[b]
            return
        t = T - 1 - u
        n = active[t]
        a, d = gates[t], d_steps[t]
        count, length = (1, units * L) if n == B else (units, n)  # all own units in one pass, or ragged
        for r in range(count):
            s, own = r * L, lo * L + r * L
            i, f = a[own: own + length], a[HL + own: HL + own + length]
            o, g = a[2 * HL + own: 2 * HL + own + length], a[3 * HL + own: 3 * HL + own + length]
            dh_j, dc_j, squashed = dh[s: s + length], dc[s: s + length], tanh_c[t, own: own + length]
            cell_grad(dh_j, o, squashed, dc_j)
            sigmoid_grad(dc_j, i, g, d[own: own + length])
            sigmoid_grad(dc_j, f, c[t, own: own + length], d[HL + own: HL + own + length])
            sigmoid_grad(dh_j, o, squashed, d[2 * HL + own: 2 * HL + own + length])
            tanh_grad(dc_j, i, g, d[3 * HL + own: 3 * HL + own + length])
            mul_in_place(dc_j, f)

    @jit(inline="always")
    def backward_stage(u, lo, hi, panels, kernel, d_out, dh, dc, product, staged, gates, c, tanh_c, d_steps, d_pre,
                       active, flags, yield_address, B):
        """While the other parts finish unit u (step t = T-1-u): d_out_{t-1} of the part's units into staged,
        transposed (`backward_step`'s arguments)."""
        T = gates.shape[0]
        t = T - 1 - u
        if t > 0:
            L = c.shape[1] // d_out.shape[2]
            units = hi - lo
            for b in range(active[t - 1]):
                row = d_out[t - 1, b, lo:hi]
                for j in range(units):
                    staged[j * L + b] = row[j]

    @jit
    def backward_parts(me, argument_sets, parts, units, board, patience, relax_yield):
        """The backward's units that part `me`'s thread takes (`forward_parts`' way; the arguments
        `backward_step`'s): `backward_step` and `backward_stage` of each of T+1 units a part. One part alone
        also says after each step that its d_steps are there (its flags' count: the one part's helper,
        `weight_gradient_part`, reads it)."""
        k, u = shared_steps.next_unit(board, me, parts, units, -1, 0, patience, relax_yield)
        while k >= 0:
            a, j = argument_sets[k], k
            while k == j:
                backward_step(u, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
                              a[14], a[15], a[16], a[17])
                shared_steps.computed(board, k, u)
                if parts == 1 and u < units - 1:
                    threads.arrive(a[15], 0, u + 1)  # step T-1-u's d_steps are there
                backward_stage(u, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
                               a[13], a[14], a[15], a[16], a[17])
                k, u = shared_steps.next_unit(board, me, parts, units, k, u, patience, relax_yield)

    @jit
    def input_gradient_part(x_panels, kernel, d_steps, L, B, out, dx):
        """dx[t, b] = W_ih^T d_t for every step (x_panels: W_ih^T's rows packed, unhalved), into dx (T, B, I),
        any strides; d_steps (T, 4H·L) gate-major; out (rows of x_panels × L,) scratch. With one column
        (L = 1), all steps in one product with the steps as its rows (`steps_as_rows`, the same bits): a
        step at a time streamed W_ih for one multiply-add a value (training at hidden 200, batch 1, input
        300: the backward's steps 1.35 ms, of which this took most)."""
        features = dx.shape[2]
        if L == 1 and d_steps.shape[0] > 1:
            rows = np.empty((d_steps.shape[0], x_panels.shape[0] * x_panels.shape[2]), dtype=d_steps.dtype)
            steps_as_rows(x_panels, d_steps, rows)
            for t in range(d_steps.shape[0]):
                row = dx[t, 0]
                for j in range(features):
                    row[j] = rows[t, j]
            return
        flat = d_steps.reshape(-1)
        size = d_steps.shape[1]
        for t in range(d_steps.shape[0]):
            _product(x_panels, kernel, flat, t * size, L, B, out)
            for b in range(B):
                row = dx[t, b]
                for j in range(features):
                    row[j] = out[j * L + b]

    @jit
    def forward_input_gradient(x_panels, d_steps, L, B, z, dx):
        """dx[t, b] = W_ih^T d_t for every step, read from the forward's [W_ih | b] panels of all 4H rows
        (x_panels, halved sigmoid rows) as they are, transposed (`transposed_products.transposed_product`): no
        W_ih^T panels packed. d_t's rows, the sigmoid rows doubled (exact: each term of the sum is the one of
        W·d), go to z (T·B × the panels' rows, zeros past 4H); d_steps (T, 4H·L) gate-major; dx (T, B, I)
        C-contiguous. One fixed order: the same bits on any thread count."""
        T = d_steps.shape[0]
        G = d_steps.shape[1] // L
        H = G // 4
        features = dx.shape[2]
        two = d_steps.dtype.type(2)
        zz = z.reshape((T * B, -1))
        for t in range(T):
            for b in range(B):
                row = zz[t * B + b]
                for j in range(G):
                    value = d_steps[t, j * L + b]
                    row[j] = value * two if j < 3 * H else value
                for j in range(G, row.shape[0]):
                    row[j] = 0
        transposed_product(x_panels, 0, features, zz, T * B, dx.reshape(-1), 0, 1, features)

    @jit
    def pack_steps(d_steps, L, B, first, out, db):
        """out[p, t·B + b, r] = d_steps[t, (first + p·w + r)·L + b], zero for rows past d_steps' G = 4H: the
        steps' pre-activation gradients, rows from `first` on, as the panels (P, T·B, w) of the weight
        gradients' product (d (4H, T·B) packed, `gemm.pack_rows`), read from the steps' gate-major blocks as
        they are, with no (4H, T, B) copy first; and db[i] = Σ_t Σ_b d_steps[t, (first + i)·L + b], the
        bias gradient of those rows, summed as they are packed. float32 panels of gemm.PANEL_WIDTHS: VW
        values of b at a time in vector registers, the last few of a step masked (their lanes' zeros land
        in the next step's places, written over when it is packed, or, after the last step, in the next
        panel's or in VW·w entries of room past out, which the caller leaves). Each row's sum: VW partial
        sums (lane k takes the b ≡ k of each step, t ascending), then summed in halves: one fixed order."""
        count, K, width = out.shape
        T = d_steps.shape[0]
        G = d_steps.shape[1] // L
        flat_in, flat = d_steps.reshape(-1), out.reshape(-1)
        kind = panel_kind(width) if out.itemsize == 4 else -1
        full = min(count, (G - first) // width) if kind >= 0 else 0  # panels with all their rows
        zero = out.dtype.type(0)
        lanes = np.zeros(count * width * VW, dtype=db.dtype)
        for p in range(count):
            for t in range(T):
                step = t * G * L
                if p < full:
                    for b0 in range(0, B, VW):
                        pack_block_summed(kind, flat_in, step + (first + p * width) * L + b0, L, flat,
                                          (p * K + t * B + b0) * width, lanes, p * width * VW, min(VW, B - b0))
                    continue
                for b in range(B):
                    column = out[p, t * B + b]
                    for r in range(width):
                        row = first + p * width + r
                        value = flat_in[step + row * L + b] if row < G else zero
                        column[r] = value
                        lanes[(p * width + r) * VW + b % VW] += value
        for i in range(db.shape[0]):
            db[i] = threads.sum_in_halves(lanes[i * VW: (i + 1) * VW])

    @jit
    def gradients_part(d_steps, L, B, lo, hi, operands, outs, db, x_panels, kernel, t_lo, t_hi, scratch, dx):
        """A part's share of the gradients from d_steps (T, 4H·L) as the steps wrote them
        (`_step_gradients`): rows lo..hi-1 of dW_ih and dW_hh (outs, the tuple of `gemm.matmul_rows`'s, for
        operands (x, h_prev) (T·B, ·)) and of db, d packed straight from the steps (`pack_steps`); dx_t =
        W_ih^T d_t for steps t_lo..t_hi-1 into dx (T, B, I) (`input_gradient_part`). Each element is one
        part's, in one fixed order: the same bits on any thread count."""
        K = operands[0].shape[0]
        count = -(-(hi - lo) // MR)
        room = np.empty(count * K * MR + VW * MR, dtype=d_steps.dtype)  # room past the panels: `pack_steps`
        panels = room[:count * K * MR].reshape((count, K, MR))
        pack_steps(d_steps, L, B, lo, panels, db[lo:hi])
        panel_products(panels, operands, outs, lo)
        input_gradient_part(x_panels, kernel, d_steps[t_lo:t_hi], L, B, scratch, dx[t_lo:t_hi])

    @jit
    def backward_steps_part(steps, x_panels, x_operand, dx):
        """The one-part backward's steps (`backward_parts` on `steps`, its arguments for one part alone:
        shared_steps.alone; it says after each step that its d_steps are there, for `weight_gradient_part`),
        then the input gradient of every step from the forward's panels (`forward_input_gradient`)."""
        backward_parts(*steps)
        a = steps[1][0]  # backward_step's arguments
        d_out, c, d_steps, B = a[4], a[10], a[12], a[17]
        forward_input_gradient(x_panels, d_steps, c.shape[1] // d_out.shape[2], B, x_operand, dx)

    @jit
    def weight_gradient_part(d_steps, L, B, hs, xs, chunk, R, buffer, dw_hh, dw_ih, db, order, side_hh, side_ih,
                             flags, yield_address):
        """The helper thread's backward (one part): the weight gradients over all steps,
            dW_hh = Σ_t d_t h_t^T,  dW_ih = Σ_t d_t x_t^T,  db = Σ_t Σ_b d_t,
        `chunk` steps at a time, last steps first, each as soon as the steps' part has said that their
        d_steps are there. d_steps (T, 4H·L) gate-major; hs (T+1)·B·H: h time-major, flat (step t's h_prev
        is hs[t]); xs T·B·I: x time-major, flat; buffer: P·chunk·B·R scratch for a chunk's d packed in
        panels R rows tall (gemm.gemm_rows_add_blocks'); dw_hh (4H, H), dw_ih (4H, I) added into, packed gate
        block q's rows into their block order[q] (gemm.gemm_rows_add_blocks: the parameters' gradients in
        PyTorch's order, or zeros in packed order); side_hh, side_ih zeros, that function's side panels
        (gemm.side_panels); db (4H,) zeros, packed order. Each sum runs in one fixed order (chunks last first, in a
        chunk t then b ascending): the same bits whatever the threads' timing."""
        T = d_steps.shape[0]
        G = db.shape[0]
        H = dw_hh.shape[1]
        I = dw_ih.shape[1]
        P = -(-G // R)
        zero = db.dtype.type(0)
        for start in range(0, T, chunk):
            t_hi = T - start
            t_lo = max(0, t_hi - chunk)
            threads.wait_for(flags, 0, T - t_lo, yield_address)
            K = (t_hi - t_lo) * B
            a = buffer[: P * K * R].reshape((P, K, R))
            for t in range(t_lo, t_hi):
                d = d_steps[t]
                for b in range(B):
                    k = (t - t_lo) * B + b
                    for p in range(P):
                        column = a[p, k]
                        for r in range(R):
                            row = p * R + r
                            if row < G:
                                value = d[row * L + b]
                                column[r] = value
                                db[row] += value
                            else:
                                column[r] = zero
            gemm_rows_add_blocks(a, hs, t_lo * B * H, H, H, dw_hh.reshape(-1), H, H, order, side_hh)
            gemm_rows_add_blocks(a, xs, t_lo * B * I, I, I, dw_ih.reshape(-1), I, H, order, side_ih)
        add_side_panels(side_hh, R, H, dw_hh.reshape(-1), H, H, order)
        add_side_panels(side_ih, R, I, dw_ih.reshape(-1), I, H, order)


def column_groups(hidden: int, batch: int, training: bool = True, weight_bytes: int = 0,
                  inputs: int | None = None) -> list[tuple[int, int]]:
    """The batch's columns in groups that run as independent layers, one a thread, each with all the hidden
    units (`forward`): [(0, batch)] (one group: the units split into parts, or one part, instead), or, where
    each core holds all of W_hh in its cache and the batch is large (thresholds.COLUMN_GROUPS_HIDDEN,
    COLUMN_GROUPS_WORK; COLUMN_GROUPS_NARROW_WORK above SPLIT_INPUT_BATCH columns:
    `_grouped_narrow`) and the step is not a small one (`small_step`, with `inputs` features), the columns
    cut in count() equal groups. In inference also above that hidden size where all the forward's weights,
    `weight_bytes` (4H·(H+I+1) entries), fit COLUMN_GROUPS_INFERENCE_BYTES and batch·hidden is at least
    COLUMN_GROUPS_INFERENCE_WORK, or, whatever their size, where a group gets at least
    COLUMN_GROUPS_STREAM_COLUMNS columns (each step's pass over the weights, from the next cache level, then
    does enough arithmetic a byte to run at the FMA units' rate). A group's steps then meet no other thread
    and read no h or gradient that another core wrote."""
    groups = min(threads.count(), batch)
    if hidden <= thresholds.COLUMN_GROUPS_HIDDEN:
        wide = _grouped_narrow(hidden, batch, training)
    else:
        wide = not training and (batch // groups >= thresholds.COLUMN_GROUPS_STREAM_COLUMNS or (
            weight_bytes <= thresholds.COLUMN_GROUPS_INFERENCE_BYTES
            and batch * hidden >= thresholds.COLUMN_GROUPS_INFERENCE_WORK))
    if groups < 2 or not wide or small_step(hidden, batch, training, inputs):
        return [(0, batch)]
    cuts = [batch * k // groups for k in range(groups + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _group_active(active, lo: int, hi: int) -> np.ndarray:
    """Running columns per step within columns lo..hi-1 (the batch's rows run longest first)."""
    active = np.asarray(active, dtype=np.int64)
    if lo == 0 and active[0] <= hi:  # (one group: as it is)
        return active
    return np.minimum(np.maximum(active - lo, 0), hi - lo)  # np.clip: 2x slower


def forward(p, inputs: np.ndarray, h0: np.ndarray, c0: np.ndarray, active, xw=None, keep: bool = True,
            outputs: np.ndarray | None = None) -> Trace:
    """The gate-major forward of one layer direction: inputs (T, B, I), any strides; h time-major (T+1, B, H)
    in the trace (given `outputs`, only without `keep`: no h, the states after each step written into
    outputs (T, B, H), any strides, a view of the layer's own output; trace.outputs is it); kept for
    backward (`keep`) c (T+1, H, L), gates (T, 4H, L) activated, tanh_c (T, H, L), with L the batch padded to
    whole vectors; without `keep` (an inference forward) only c's two slots, reused, no gates or tanh c, and
    no trace to run a backward on. No folded input (xw). Where `column_groups` cuts the batch, each group of
    columns runs as a layer of its own on its thread (one part, all units), the trace one such set a group.
    With the input split off (`split_input`) the trace holds the forward's [W_ih | b] panels and their parts'
    units too (`gradients`' input gradient reads them)."""
    if xw is not None:
        raise ValueError("the threaded LSTM projects its own inputs; it takes no looked-up projection")
    time, batch, features = inputs.shape
    groups = column_groups(p.hidden, batch, training=keep,
                           weight_bytes=4 * p.hidden * (p.hidden + features + 1) * inputs.itemsize, inputs=features)
    split = split_input(batch)  # the whole batch's choice: the same bits in any group, in either mode
    if outputs is not None and keep:
        raise ValueError("outputs given are for an inference forward: a backward reads h time-major")
    alloc = allocator(active, batch, batch)
    hs = None if outputs is not None else alloc((time + 1, batch, p.hidden), dtype=inputs.dtype)
    outs = outputs if outputs is not None else hs[1:]
    if len(groups) == 1:
        return _forward_group(p, inputs, h0, c0, active, keep, split, hs, outs, True)
    jobs = [_forward_group(p, inputs[:, lo:hi], h0[lo:hi], c0[lo:hi], _group_active(active, lo, hi), keep, split,
                           None if hs is None else hs[:, lo:hi], outs[:, lo:hi], False)
            for lo, hi in groups]
    threads.run_shared(forward_parts, [shared_steps.alone(arguments, time) for arguments, _ in jobs])
    saved = [finish() for _, finish in jobs]
    c_n = np.concatenate([trace.c_n for trace in saved])
    return Trace(hs, c_n, {"groups": groups, "traces": saved} if keep else None, outs)


def zero_start(z: np.ndarray, hidden: int, batch: int) -> int:
    """How many leading rows of z_0 (z (steps, K, L), its first `hidden` rows h_0ᵀ in the first `batch`
    columns) the first step's product may leave out: H where h_0 is all zeros (a layer started from no
    state: W_hh's terms add exact zeros, the same bits), else 0. Shared by the threaded RNN and GRU."""
    return 0 if z[0, :hidden, :batch].any() else hidden


def _forward_group(p, inputs, h0, c0, active, keep: bool, split: bool, hs, outs, run: bool):
    """`forward` over one group of columns: hs (T+1, B, H) its h (a view into the layer's; None without
    one: given outputs), outs (T, B, H) its states after each step (hs[1:], or a view); with `run` the
    whole forward, its units split into parts; else one part's arguments for forward_parts and a function
    that makes the group's Trace once it ran."""
    time, batch, features = inputs.shape
    hidden, dtype = p.hidden, inputs.dtype
    # a small training step's forward splits its units as inference does (its backward still runs on one
    # part and its helper, `gradients`, which reads any split's trace): at hidden 128-224 batch 1-6 fwd+bwd
    # 0.82-0.95 of the one-part forward's time
    parts = parts_for(hidden, batch, keep and not small_step(hidden, batch, inputs=features), features) if run else 1
    bounds = _bounds(hidden, parts)
    kernel = kernel_for(batch, dtype)
    # one part runs the steps, a helper thread projects the inputs beside them (where the input is split
    # off at any part count: the forward's bits stay those of any thread count; from
    # thresholds.HELPER_PROJECTION_BATCH columns or HELPER_PROJECTION_WORK inputs × columns: below, the
    # projection is too small to pay the helper's wake)
    helper = run and parts == 1 and split and (batch >= thresholds.HELPER_PROJECTION_BATCH
                                               or batch * features >= thresholds.HELPER_PROJECTION_WORK)
    # a training forward makes the backward's W_hh^T panels too (its parts: a training step's split, or one),
    # from the weights as they are: the backward reads the forward's weights with no copy of them (`gradients`'
    # input gradient the forward's W_ih panels, `split_gradients`' W_ih's copy made here)
    w_hh_t = None
    # a small training step (its input always split off: small_step bounds the batch by SPLIT_INPUT_BATCH) keeps
    # [W_ih | b]'s panels as one part's (all 4H rows) at any part count: its backward's input gradient reads them
    # transposed, in one order on any thread count (`forward_input_gradient`); where the units are split, each
    # part projects the panels with its rows (forward_step's producer -2)
    small = keep and run and small_step(hidden, batch, inputs=features)
    projected = small and parts > 1
    if keep:
        (panels, x_panels), w_hh_t = training_panels(
            p, parts, parts_for(hidden, batch, inputs=features) if run else 1, kernel, split, 1 if small else parts)
        if not small:
            input_operand(p)
    elif split:
        panels, x_panels = forward_panel_pair(p, parts, kernel)
    else:
        panels, x_panels = forward_panels(p, parts, kernel), None
    if x_panels is None:  # (the input not split off: it is in the panels)
        x_panels = [np.empty((0, 0, 0), dtype=dtype)] * parts
    columns = batch if kernel != COLUMNS else padded(batch, VECTOR_BYTES // dtype.itemsize)
    # zeros where some entries are never written (zeroing z and hs cost 0.3 of 1.9 ms at hidden 64, batch 64)
    alloc = allocator(active, batch, columns)
    if split:
        z = alloc((2, hidden, columns), dtype=dtype)
        zx = alloc((time, features + 1, columns), dtype=dtype)
    else:
        z = alloc((time + 1, hidden + features + 1, columns), dtype=dtype)
        zx = np.empty((0, 0, 0), dtype=dtype)  # not read: x is in z
    # the inputs go into the operand on the parts' own cores: a column group's all of them; in a split of
    # units (the input not split off) each part a share of steps 1.. (step 0 here: every part's first
    # product reads it before any meeting); else all here. Sharing the fill, inference new / before
    # (Zen 5, 2 threads): hidden 192-384 batch 20-56 0.98-0.99 (the fill alone took 1.5-3.6 % of the forward)
    shared_fill = run and not split and 1 < parts < time
    # the steps each part fills itself, first..last-1 of the one inputs array (every part's arguments of one
    # numba type: shared_steps.run_steps indexes them as a tuple)
    shares = [(0, 0 if run else time)] * parts
    if shared_fill:
        cuts = [1 + (time - 1) * k // parts for k in range(parts + 1)]
        shares = list(zip(cuts[:-1], cuts[1:]))
    if run:
        operand = zx if split else z
        filled = operand[:1] if shared_fill else operand
        fill_inputs(inputs[:len(filled)], filled.reshape(len(filled), -1), 0 if split else hidden, columns)
    z[0, :hidden, :batch] = h0.T
    skip = zero_start(z, hidden, batch)
    if hs is not None:
        hs[0] = h0
    steps_kept = time if keep else 0  # the trace's steps (none in inference: c's two slots used in turn)
    cs = np.empty((time + 1 if keep else 2, hidden, columns), dtype=dtype)
    cs[0] = 0
    cs[0, :, :batch] = c0.T
    gates = np.empty((steps_kept, 4 * hidden, columns), dtype=dtype)
    tanh_c = np.empty((steps_kept, hidden, columns), dtype=dtype)
    flat = [a.reshape(len(a), -1) if a.size else a.reshape(0, 0) for a in (z, zx, gates, cs, tanh_c)]
    flat.append(outs)
    # with the helper: flags 1 the count of claimed steps, 2.. each step's done mark (0 unused)
    flags, steps = threads.new_flags(time + 2 if helper else 1), np.asarray(active, dtype=np.int64)
    arguments = []
    if projected:  # (x_panels one set of all 4H rows, each part's xw in their order)
        x_panels = [x_panels[0]] * parts
    for k, (lo, hi) in enumerate(_pairs(bounds)):
        size = panels[k].shape[0] * panels[k].shape[2] * columns
        rows = x_panels[k].shape[0] * x_panels[k].shape[2] * columns if projected else size
        xw = np.empty((time if split else 0, rows), dtype=dtype)
        arguments.append((lo, hi, panels[k], x_panels[k], kernel, flat[0], flat[1], xw,
                          np.empty(size, dtype=dtype), flat[2], flat[3], flat[4], flat[5], steps, batch, flags,
                          threads.YIELD, -2 if projected else 1 if helper else -1, inputs, *shares[k], skip))

    def finish() -> Trace:
        # each sequence's last c: the slot its last step wrote (its column is not written after that step)
        if steps[-1] == batch:  # every sequence runs all steps: one slot
            c_n = cs[time % len(cs), :, :batch].T
        else:
            c_n = cs[lengths_of(active) % len(cs), :, np.arange(batch)]
        saved = {"c": cs, "gates": gates, "tanh_c": tanh_c, "w_hh_t": w_hh_t}
        if small:
            saved["x_panels"] = x_panels[0]
        return Trace(hs, c_n, saved if keep else None, outs)

    if not run:
        return arguments[0], finish
    if helper:  # on one thread (threads.run_pipeline), the helper's part first: it projects every step
        xw = arguments[0][7]
        threads.run_pipeline([(project_part, (x_panels[0], kernel, flat[1], columns, batch, xw, flags,
                                              threads.YIELD)),
                              (forward_parts, shared_steps.alone(arguments[0], time))], caller=1)
    elif parts == 1:
        forward_parts(*shared_steps.alone(arguments[0], time))
    else:  # the units split: parts meeting at every step, any thread taking a part whose thread is behind
        shared_steps.run_steps(forward_parts, arguments, time)
    return finish()


def inference_forward(p, inputs, h0, c0, active, xw=None, outputs: np.ndarray | None = None) -> Trace:
    """`forward` keeping no trace: for a forward no backward follows (eval mode, locked weights)."""
    return forward(p, inputs, h0, c0, active, xw, keep=False, outputs=outputs)


def _backward_buffers(trace: Trace, d_out: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray, active):
    """What a backward's steps write: (L, the forward's padded batch; d_steps (T, 4H, L); dh, dc (H, L), the
    gradients reaching h_T, c_T, updated in place by the steps). d_steps is left unset only when every entry
    is written (no sequence ends early, no padding); else zeros, as dh and dc past the batch."""
    time, batch, hidden = d_out.shape
    columns = trace.saved["c"].shape[-1]
    full = active[-1] == batch == columns
    d_steps = (np.empty if full else np.zeros)((time, 4 * hidden, columns), dtype=d_out.dtype)
    dh, dc = (np.zeros((hidden, columns), dtype=d_out.dtype) for _ in range(2))
    dh[:, :batch], dc[:, :batch] = dh_n.T, dc_n.T
    return columns, d_steps, dh, dc


def backward(p, trace: Trace, d_out: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray, active):
    """Backward of `forward`: (d_pre (4H, T·B), the same, dh_0 (B, H), dc_0 (B, H)). A forward in column
    groups runs its backward in the same groups, one a thread, each group's d_pre its own array (`_group_steps`),
    here put side by side (the layer itself takes `split_gradients` instead, which reads them as they are)."""
    arrays = kept(trace)
    time, batch, hidden = d_out.shape
    if "groups" not in arrays:
        d_pre = np.empty((4 * hidden, time, batch), dtype=d_out.dtype)
        arguments, finish, _ = _backward_group(trace, d_out, dh_n, dc_n, active, d_pre)
        _run_backward(arguments)
        dh_0, dc_0 = finish()
    else:
        d_pres, dh_0, dc_0 = _group_steps(p, trace, d_out, dh_n, dc_n, active)
        d_pre = np.concatenate(d_pres, axis=2)
    d_pre = d_pre.reshape(4 * hidden, -1)
    return d_pre, d_pre, dh_0, dc_0


def _run_backward(arguments) -> None:
    """The backward's steps of one group of columns: its one part, or its parts meeting at every step (the
    units split, any thread taking a part whose thread is behind: shared_steps.run_steps)."""
    units = arguments[0][9].shape[0] + 1
    if len(arguments) == 1:
        backward_parts(*shared_steps.alone(arguments[0], units))
    else:
        shared_steps.run_steps(backward_parts, arguments, units)


def _group_steps(p, trace: Trace, d_out, dh_n, dc_n, active, copy: bool = True):
    """The backward's steps of a forward in column groups, a group a thread: ([each group's d_pre (4H, T,
    its columns)], dh_0 (B, H), dc_0 (B, H)); without `copy`, each group's d_steps (T, 4H, its L) as the
    steps wrote them in the list's place. Each group copies whole rows into an array of its own: the
    columns of one shared d_pre (half of every row each) took 4-9x longer a byte on the Zen 5 (hidden 128,
    batch 64: 1.3-1.4 ms of the backward's steps, against 0.15-0.3 for whole rows)."""
    arrays = kept(trace)
    time, batch, hidden = d_out.shape
    groups = arrays["groups"]
    d_pres = [np.empty((4 * hidden, time, hi - lo) if copy else (0, 0, 0), dtype=d_out.dtype)
              for lo, hi in groups]
    jobs = [_backward_group(group, d_out[:, lo:hi], dh_n[lo:hi], dc_n[lo:hi], _group_active(active, lo, hi), d_pre)
            for (lo, hi), group, d_pre in zip(groups, arrays["traces"], d_pres)]
    threads.run_shared(backward_parts, [shared_steps.alone(arguments[0], time + 1) for arguments, _, _ in jobs])
    dh_0, dc_0 = (np.concatenate(parts) for parts in zip(*(finish() for _, finish, _ in jobs)))
    return (d_pres if copy else [d_steps for _, _, d_steps in jobs]), dh_0, dc_0


def split_gradients(p, trace: Trace, inputs: np.ndarray, d_out: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray,
                    active, into=None):
    """The whole backward of a forward with its units split or in column groups (`gradients` for one part):
    (dW_ih (4H, I), dW_hh (4H, H), db (4H,), dx (T, B, I), dh_0 (B, H), dc_0 (B, H)), rows in packed order,
    unhalved; inputs (T, B, I) time-major, the forward's. The products over all steps, one each:
        dW_ih = Σ_t d_t x_t^T,  dW_hh = Σ_t d_t h_{t-1}^T,  db = Σ_t Σ_b d_t,  dx_t = W_ih^T d_t,
    on d_pre (4H, T·B) (`backward`), or on d_steps as the steps wrote them (`_step_gradients`: on gemm.py's
    kernels, from thresholds.STEP_GRADIENTS_BATCH columns), or, in column groups, on each group's d_pre or
    d_steps and its columns, the weight gradients summed over the groups (g ascending), each group's dx its
    own product: their bits then depend on the group count, that is on the thread count (the forward's do not).
    into: W_ih's and W_hh's gradients (PyTorch's layout), where the weight gradients on d_pre and gemm.py's
    kernels are added into them (`add_weight_products`; dW_ih and dW_hh then returned as None)."""
    arrays = kept(trace)
    h_prev = trace.h[:-1]
    time, batch, features = inputs.shape
    own = threads.own_kernels(inputs.dtype)
    if "groups" not in arrays and not (own and batch >= thresholds.STEP_GRADIENTS_BATCH):
        d_pre, _, dh_0, dc_0 = backward(p, trace, d_out, dh_n, dc_n, active)
        return (*_products(p, d_pre, inputs, h_prev, into=into if own else None), dh_0, dc_0)
    # dx (T, B, I) as the view of a batch-major array (each column group writing its rows on its thread): the
    # layer hands it to a batch_first caller without a transposing copy
    dx = np.empty((batch, time, features), dtype=inputs.dtype).transpose(1, 0, 2)
    if "groups" not in arrays:  # on gemm.py's kernels, the gradients from d_steps as the steps wrote them
        arguments, finish, d_steps = _backward_group(trace, d_out, dh_n, dc_n, active,
                                                     np.empty((0, 0, 0), dtype=inputs.dtype))
        _run_backward(arguments)
        return (*_step_gradients(p, d_steps, inputs, h_prev, dx, threads.count()), dx, *finish())
    # on gemm.py's kernels, groups of thresholds.STEP_GRADIENTS_GROUP columns or more: each group's products
    # read its d_steps as the steps wrote them (no d_pre copy)
    from_steps = own and min(hi - lo for lo, hi in arrays["groups"]) >= thresholds.STEP_GRADIENTS_GROUP
    d_pres, dh_0, dc_0 = _group_steps(p, trace, d_out, dh_n, dc_n, active, copy=not from_steps)
    sums = [None] * len(d_pres)
    threads.run_products(_group_step_products if from_steps else _group_products,
                         [(p, d_pre, inputs[:, lo:hi], h_prev[:, lo:hi], dx[:, lo:hi], sums, g)
                          for g, ((lo, hi), d_pre) in enumerate(zip(arrays["groups"], d_pres))])
    total = sums[0]
    for more in sums[1:]:
        total = [a + b for a, b in zip(total, more)]
    return (*total, dx, dh_0, dc_0)


def _step_gradients(p, d_steps, inputs, h_prev, dx, parts: int):
    """(dW_ih, dW_hh, db) from d_steps (T, 4H, L) as the steps wrote them, the steps' inputs (T, B, I) and
    h_{t-1} (T, B, H), rows in packed order, on gemm.py's kernels (`gradients_part`), and dx (T, B, I)
    written: `parts` parts (1: on the calling thread), each taking whole panels of MR rows of the weight
    gradients and a share of the steps of dx. The same bits as the products on d_pre for dW_ih, dW_hh and
    dx (each element the same chain of fused multiply-adds over the same k, in order), on any part count;
    db summed as d is packed (`pack_steps`), in another fixed order."""
    time, batch, features = inputs.shape
    rows, L, dtype = d_steps.shape[1], d_steps.shape[2], d_steps.dtype
    operands = threads.read_only_operands((inputs.reshape(time * batch, -1), h_prev.reshape(time * batch, -1)))
    panels = -(-rows // MR)
    outs = tuple(np.empty((panels * MR, operand.shape[1]), dtype=dtype) for operand in operands)
    db = np.empty(rows, dtype=dtype)
    kernel = kernel_for(batch, dtype)
    x_panels = backward_x_panels(p, kernel)
    parts = max(1, min(parts, panels))
    row_cuts = [min(rows, panels * k // parts * MR) for k in range(parts + 1)]
    step_cuts = [time * k // parts for k in range(parts + 1)]
    arguments = [(d_steps.reshape(time, -1), L, batch, row_cuts[k], row_cuts[k + 1], operands, outs, db, x_panels,
                  kernel, step_cuts[k], step_cuts[k + 1],
                  np.empty(x_panels.shape[0] * x_panels.shape[2] * L, dtype=dtype), dx) for k in range(parts)]
    if parts == 1:
        gradients_part(*arguments[0])
    else:
        threads.run_shared(gradients_part, arguments)
    dw_ih, dw_hh = (out[:rows, :width] for out, width in zip(outs, (features, h_prev.shape[2])))
    return dw_ih, dw_hh, db


def _group_products(p, d_pre, inputs, h_prev, dx, sums, g: int, worker: bool) -> None:
    """Column group g's `_products` on its thread alone (threads.run_products), over its columns: sums[g] =
    [dW_ih, dW_hh, db], and dx (T, its B, I), a view of the layer's. Each core reads the d_pre its group
    wrote."""
    dw_ih, dw_hh, db, dx[...] = _products(p, d_pre.reshape(len(d_pre), -1), inputs, h_prev,
                                          lambda a, bs: threads.products_here(a, bs, worker), threads.row_sums_here)
    sums[g] = [dw_ih, dw_hh, db]


def _group_step_products(p, d_steps, inputs, h_prev, dx, sums, g: int, worker: bool) -> None:
    """`_group_products` from the group's d_steps (T, 4H, L) as its steps wrote them (`_step_gradients` on
    the calling thread). At hidden 128 batch 32-64 the d_pre copy took 0.11-0.43 ms."""
    sums[g] = list(_step_gradients(p, d_steps, inputs, h_prev, dx, 1))


def add_weight_products(d_pre: np.ndarray, inputs: np.ndarray, h_prev: np.ndarray, into) -> None:
    """dW_ih = Σ_t d_t x_t^T and dW_hh = Σ_t d_t h_{t-1}^T added into `into` (W_ih's and W_hh's gradients,
    PyTorch's layout) with no product array between (threads.add_products): d_pre (4H, T·B) in packed gate
    order, inputs (T, B, I), h_prev (T, B, H)."""
    depth = d_pre.shape[1]
    threads.add_products(d_pre, tuple(b.reshape(depth, -1) for b in (inputs, h_prev)), into,
                         packing.gate_order("lstm"))


def _products(p, d_pre: np.ndarray, inputs: np.ndarray, h_prev: np.ndarray, matmuls=threads.matmuls,
              row_sums=threads.row_sums, into=None):
    """(dW_ih, dW_hh, db, dx (T, B, I)) from d_pre (4H, T·B) and the steps' inputs (T, B, I) and h_{t-1}
    (T, B, H): products (the two weight gradients' in one call, d_pre packed once) and row sums
    (threads.matmuls and row_sums, over the threads, by default); given `into` (W_ih's and W_hh's gradients),
    the weight gradients added into them on gemm.py's kernels (`add_weight_products`), None in their place."""
    time, batch = inputs.shape[:2]
    if into is None:
        dw_ih, dw_hh = matmuls(d_pre, (inputs.reshape(time * batch, -1), h_prev.reshape(time * batch, -1)))
    else:
        add_weight_products(d_pre, inputs, h_prev, into)
        dw_ih = dw_hh = None
    dx = matmuls(d_pre.T, (input_operand(p),))[0][:, :inputs.shape[2]].reshape(time, batch, -1)
    return dw_ih, dw_hh, row_sums(d_pre), dx


def _backward_group(trace: Trace, d_out, dh_n, dc_n, active, d_pre):
    """backward_step's arguments for each part of one group of columns (as many as its forward made W_hh^T
    panels for; d_out (T, B, H) its columns, a view; d_pre (4H, T, B) its own, or empty: none
    copied), a function returning the group's (dh_0, dc_0) once they ran, and its d_steps (T, 4H, L)."""
    arrays = kept(trace)
    time, batch, hidden = d_out.shape
    dtype = d_out.dtype
    panels = arrays["w_hh_t"]
    parts = len(panels)
    bounds = _pairs(_bounds(hidden, parts))
    kernel = kernel_for(batch, dtype)
    columns, d_steps, dh, dc = _backward_buffers(trace, d_out, dh_n, dc_n, active)
    gates, cs, tanh_c, d_steps_flat = (x.reshape(x.shape[0], -1) for x in (arrays["gates"], arrays["c"],
                                                                           arrays["tanh_c"], d_steps))
    flags, steps = threads.new_flags(1), np.asarray(active, dtype=np.int64)  # (one part: its steps done)
    arguments = [
        (lo, hi, panels[k], kernel, d_out, dh[lo:hi].reshape(-1), dc[lo:hi].reshape(-1),
         np.empty(panels[k].shape[0] * panels[k].shape[2] * columns, dtype=dtype),
         np.zeros((hi - lo) * columns, dtype=dtype), gates, cs, tanh_c, d_steps_flat, d_pre, steps, flags,
         threads.YIELD, batch)
        for k, (lo, hi) in enumerate(bounds)]
    return arguments, lambda: (dh[:, :batch].T, dc[:, :batch].T), d_steps


def gradients(p, trace: Trace, inputs: np.ndarray, d_out: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray, active,
              into=None):
    """The whole backward of a small training step (`small_step`; its forward on one part or on the
    inference split's parts), weight and input gradients included, on two threads: the steps' part
    (`backward_steps_part`: the steps, then dx) and a helper (`weight_gradient_part`: dW_hh, dW_ih, db, a
    chunk of steps as soon as they are done). With one thread (threads.count()), the same two one after the
    other: the same bits.
    inputs (T, B, I) time-major, the forward's. Returns (dW_ih (4H, I), dW_hh (4H, H), db (4H,), dx (T, B, I),
    dh_0 (B, H), dc_0 (B, H)), rows in packed order, unhalved; given `into` (W_ih's gradient, W_hh's: PyTorch's
    layout, C-contiguous, the inputs' dtype) the weight gradients are added into those instead (each
    entry's chain continued from its value: no product array, no pass to add it) and None is returned for
    them."""
    arrays = kept(trace)
    time, batch, hidden = d_out.shape
    features, dtype = inputs.shape[2], d_out.dtype
    x_panels = arrays["x_panels"]  # the forward's [W_ih | b] panels, all 4H rows
    # the steps' one part (its W_hh^T panels one part's), flags its count of steps done
    arguments, finish, d_steps = _backward_group(trace, d_out, dh_n, dc_n, active, np.empty((0, 0, 0), dtype=dtype))
    columns, flags = d_steps.shape[2], arguments[0][15]
    rows = RV * VECTOR_BYTES // dtype.itemsize  # gemm_rows_add_blocks' panel height
    chunk = gradient_chunk(time, batch)
    if into is None:  # in packed order, into zeros
        dw_ih, dw_hh = np.zeros((4 * hidden, features), dtype=dtype), np.zeros((4 * hidden, hidden), dtype=dtype)
        order = np.arange(4, dtype=np.int64)
    else:
        dw_ih, dw_hh = into
        order = np.asarray(packing.gate_order(p.mode), dtype=np.int64)
    side = gemm.side_panels(4, hidden, rows, order)
    db = np.zeros(4 * hidden, dtype=dtype)
    dx = np.empty((time, batch, features), dtype=dtype)
    d_steps_flat = d_steps.reshape(time, -1)
    steps_part = (backward_steps_part, (
        shared_steps.alone(arguments[0], time + 1), x_panels,
        np.empty(time * batch * x_panels.shape[0] * x_panels.shape[2], dtype=dtype), dx))
    helper = (weight_gradient_part, (
        d_steps_flat, columns, batch, trace.h.reshape(-1), np.ascontiguousarray(inputs).reshape(-1), chunk, rows,
        np.empty(-(-4 * hidden // rows) * chunk * batch * rows, dtype=dtype), dw_hh, dw_ih, db, order,
        *(np.zeros(side * rows * width, dtype=dtype) for width in (hidden, features)), flags, threads.YIELD))
    threads.run_pipeline([steps_part, helper])  # the steps first where the two run one after the other
    dh_0, dc_0 = finish()
    if into is not None:
        return None, None, db, dx, dh_0, dc_0
    return dw_ih, dw_hh, db, dx, dh_0, dc_0
