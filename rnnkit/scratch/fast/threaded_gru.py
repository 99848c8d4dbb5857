"""The threaded path for the GRU's forward: each thread owns a slice of the hidden units (numba installed).

The RNN's layout (threaded_rnn.py): per step the products' operand is z_t = [h_t; 1; x_t] (H+1+I, L), L the
batch or the batch padded to whole SIMD vectors, and the arrays are gate-major, rows of L columns. Part k of
P owns the hidden units lo..hi-1 and keeps three packed blocks of its rows (packing.py's order z, r, n, the z
and r rows halved):
    A_zr = [W_hz | b_z | W_iz ; W_hr | b_r | W_ir]   over [h_t; 1; x_t]   (b: b_i + b_h)
    A_hn = [W_hn | b_hn]                              over [h_t; 1]
    A_xn = [b_in | W_in]                              over [1; x_t]
Forward, part k, step t:      wait until every part has written h_t into z_t
    [a_z; a_r] = A_zr z_t,  hn = A_hn [h_t; 1],  xn = A_xn [1; x_t]       (own rows)
    z, r = (1 + tanh(a_z)) / 2, (1 + tanh(a_r)) / 2       (σ of the unhalved pre-activations)
    n = tanh(r ⊙ hn + xn),   h_{t+1} = (h_t - n) ⊙ z + n   (= (1 - z) ⊙ n + z ⊙ h_t)
    h_{t+1} into z_{t+1} and the time-major output; say "t+1 steps done"
Every step has its own z_t, so one meeting per step suffices. Where the units would split and all the
weights fit each core's cache, the batch's columns run in groups instead, one a thread, each all the units
in one part with no meeting (threaded_rnn.column_groups). With one or two columns (threaded_rnn.split_input),
the inputs' products leave the steps: each part first makes A_x [1; x_t] for every step in one product, the
steps' columns as its rows (A_x = [b_z | W_iz ; b_r | W_ir ; b_in | W_in], b_z and b_r summed as above),
and each step then streams only W_hh: [a_z; a_r] = W_h(z,r) h_t + its share of A_x [1; x_t], xn its last
rows. The sums run in the same order whatever the split: the results do not depend on the thread count. A
step's gates and hn live in one gate-major scratch (3H·L and H·L), each part in its own units' rows.

The backward (`backward`) is the threaded RNN's (threaded_rnn.py), with the GRU's step
(kernels.gru_backward_row) and W_hh's three gate blocks: rec = d_gh_{t+1} W_hh, (B, 3H) by (3H, H). It reads
the trace time-major, (T, B, 3H) and (T, B, H), which each part writes for its own units at every step while
they are in its cache (`keep`, a forward a backward may follow); an inference forward keeps none
(`inference_forward`). Before, the forward kept the trace gate-major and the backward transposed it: at hidden
512, batch 64 that copy cost a training step about 20 ms of its 240.
"""
from __future__ import annotations

import numpy as np

from . import lstm_panels, numba_path, threads, thresholds
from .kernels import AVAILABLE
from .threaded_lstm import _bounds, _group_active, _pairs, zero_start
from .threaded_rnn import (backward_copy, backward_split, column_groups, group_operands, made_for_backward,
                           padded_count, panel_width, parts_for, projection_scratch, recurrent_weights, split_input,
                           threaded_backward_batch)
from .trace import Trace, allocator, by_rows, kept

if AVAILABLE:
    from .gemm import MR, VECTOR_BYTES
    from .kernels import gates_tanh, gru_backward_row, gru_state, jit, mul
    from .threaded_rnn import incoming_products, step_product, steps_inputs_into
    from .threaded_lstm import copy_states, sigmoid_to, steps_as_rows


def forward_panels(p, parts: int, rows: bool, split: bool = False, copy: bool = False
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each part's (A_zr, A_hn, A_xn) (see the module's text), packed for gemm_rows (rows) or gemm_panels in
    one compiled pass from the weights as they are (lstm_panels.gathered_panels; NumPy's packing to the
    bit); made once per Packed:
        A_zr = [W_hh | b_ih + b_hh | W_ih] rows z, r (halved),  A_hn = [W_hn | b_hn],  A_xn = [b_in | W_in]
    With the input split off (`split_input`; rows only): A_zr = W_hh's rows z, r (halved), A_hn, and in place of
    A_xn the inputs' rows of all three gates, A_x = [b_ih + b_hh (z, r), b_in (n) | W_ih] over [1; x_t]. With
    `copy` (a training forward), the backward's W_hh and W_ih in the same meeting (threaded_rnn.backward_copy)."""
    def make():
        w_ih, w_hh, b_ih, b_hh = p.originals
        hidden, dtype = p.hidden, w_hh.dtype
        zero = np.zeros((w_hh.shape[0], 1), dtype=dtype)
        b_ih_column = zero if b_ih is None else b_ih[:, None]
        b_hh_column = zero if b_hh is None else b_hh[:, None]
        summed = lstm_panels.bias_column(b_ih, b_hh, w_hh.shape[0], dtype)
        if split:
            input_bias = np.concatenate([summed[:2 * hidden], b_ih_column[2 * hidden:]])  # PyTorch's r, z, n
            sources = ((w_hh,), (w_hh, b_hh_column), (input_bias, w_ih))
        else:
            sources = ((w_hh, summed, w_ih), (w_hh, b_hh_column), (b_ih_column, w_ih))
        jobs, bounds = [], _pairs(_bounds(hidden, parts))
        for lo, hi in bounds:
            zr, n, every = (lstm_panels.source_rows(hidden, lo, hi, dtype, "gru", blocks)
                            for blocks in ((0, 1), (2,), (0, 1, 2)))
            jobs += [(sources[0], *zr), (sources[1], *n), (sources[2], *(every if split else n))]
        panels = lstm_panels.gathered_panels(panel_width(rows, dtype), jobs, len(bounds), backward_copy(p, copy))
        return [tuple(panels[3 * k: 3 * k + 3]) for k in range(len(bounds))]

    return p.derived(("gru_forward_panels", parts, rows, split), make)


if AVAILABLE:
    @jit
    def forward_part(me, parts, lo, hi, zr, hn_rows, xn, rows, z, pre, gates, hn, outs, kept_gates, kept_hn, keep,
                     active, B, flags, yield_address, zx, xw, skip):
        """Part `me` of the forward over all steps (see the module's text). Flattened per step, rows of L columns:
        z (T+1, (H+1+I)·L): [h_t; 1; x_t], h_0, the ones and all x filled in by the caller; pre (rows of the
        three panels × L,) scratch; gates (3H·L,): this step's z, r, n; hn (H·L,): this step's W_hn h + b_hn
        (each part writes and reads only its own units' rows of both); outs (T, B, H): h_1 .. h_T, the layer's
        output, any strides (`threaded_rnn.layout`); keep: also write z, r, n into kept_gates (T, B, 3H) and hn
        into kept_hn (T, B, H), time-major, any strides, for the backward; active (T,) int64: running columns per
        step, B of them at first. With the input split off (zx not empty, `split_input`): z (T+1, (H+1)·L)
        [h_t; 1] only, zr W_hh's rows, xn the inputs' rows of all three gates A_x, and zx (T·B, 1+I) every
        step's [1; x_t] as rows: the part projects them all into xw (T·B, its rows of A_x) before the loop.
        skip: H where h_0 = 0 (the first step's products leave out W_hh: threaded_lstm.zero_start), else 0."""
        T = outs.shape[0]
        H = outs.shape[2]
        HL = hn.shape[0]
        L = HL // H
        units = hi - lo
        lanes = VECTOR_BYTES // z.itemsize
        half = gates.dtype.type(0.5)
        zr_end = zr.shape[0] * zr.shape[2] * L
        hn_end = zr_end + hn_rows.shape[0] * hn_rows.shape[2] * L
        pre_zr, pre_hn, pre_xn = pre[:zr_end], pre[zr_end:hn_end], pre[hn_end:]
        r_off = units * L  # the r rows follow the z rows in A_zr
        split = zx.shape[0] > 0
        if split:  # xw[t·B + b] = A_x [1; x_{t,b}] for every step at once: the steps' rows as the product's rows
            steps_as_rows(xn, zx, xw)
        for t in range(T):
            n = active[t]
            if t > 0:
                threads.wait_all(flags, parts, me, t, yield_address)
            k0 = skip if t == 0 else 0
            step_product(zr, rows, z[t], 0, L, n, pre_zr, lanes, k0)
            step_product(hn_rows, rows, z[t], 0, L, n, pre_hn, lanes, k0)  # K = H+1 rows of z_t: [h_t; 1]
            if split:
                steps_inputs_into(xw, t * B, n, 0, 2 * units, L, pre_zr, True)  # the z and r rows
                steps_inputs_into(xw, t * B, n, 2 * units, units, L, pre_xn, False)  # xn
            else:
                step_product(xn, rows, z[t], H * L, L, n, pre_xn, lanes)   # from row H: [1; x_t]
            a, h_prev, h_new = gates, z[t], z[t + 1]
            count, length = (1, units * L) if n == B else (units, n)
            for r in range(count):
                s = r * L
                own = lo * L + s
                z_gate, r_gate = a[own: own + length], a[HL + own: HL + own + length]
                new, hn_own = a[2 * HL + own: 2 * HL + own + length], hn[own: own + length]
                sigmoid_to(pre_zr[s: s + length], z_gate, half)
                sigmoid_to(pre_zr[r_off + s: r_off + s + length], r_gate, half)
                hn_own[:] = pre_hn[s: s + length]
                mul(r_gate, hn_own, new)
                gates_tanh(new, pre_xn[s: s + length])
                gru_state(h_prev[own: own + length], new, z_gate, h_new[own: own + length])
            threads.arrive(flags, me, t + 1)  # h_{t+1} is there: the others may go on while this part copies
            copy_states(h_new, L, outs[t], lo, units, n)  # the layer's output (and dW_hh's operand)
            if keep:  # the trace, row-major: z, r, n side by side (B, 3H) and hn (B, H)
                for g in range(3):
                    copy_states(a[g * HL:], L, kept_gates[t, :, g * H: (g + 1) * H], lo, units, n)
                copy_states(hn, L, kept_hn[t], lo, units, n)


def forward(p, inputs: np.ndarray, h0: np.ndarray, c0, active, xw=None, keep: bool = True,
            outputs: np.ndarray | None = None) -> Trace:
    """The GRU's forward, one layer direction: inputs (T, B, I) time-major, any strides, h0 (B, H) → Trace with
    h (T+1, B, H) time-major and, with `keep` (a backward may follow), the NumPy path's trace: gates (T, B, 3H)
    activated (z, r, n) and hn (T, B, H), time-major; without, none (an inference forward; given `outputs`
    (T, B, H), any strides, also no h, the states written there). No folded input (xw)."""
    if xw is not None:
        raise ValueError("the threaded GRU projects its own inputs; it takes no looked-up projection")
    time, batch, _ = inputs.shape
    hidden, dtype = p.hidden, inputs.dtype
    if outputs is not None and keep:
        raise ValueError("outputs given are for an inference forward: a backward reads h time-major")
    weights = 3 * hidden * (hidden + 1 + inputs.shape[2])
    groups = column_groups(3 * hidden, batch, weights * dtype.itemsize, call_work=time * batch * weights)
    # (each group all the units on its own columns: one part, no meeting)
    parts = parts_for(3 * hidden, batch) if len(groups) == 1 else 1
    alloc = allocator(active, batch, batch)
    hs = None if outputs is not None else alloc((time + 1, batch, hidden), dtype=dtype)
    if hs is not None:
        hs[0] = h0
    outs = outputs if outputs is not None else hs[1:]
    if keep:  # rows of ended sequences are never written: zeros, so that backward reads finite values there
        alloc = np.empty if active[-1] == batch else np.zeros
        kept = alloc((time, batch, 3 * hidden), dtype=dtype), alloc((time, batch, hidden), dtype=dtype)
    else:
        kept = np.empty((1, 1, 1), dtype=dtype), np.empty((1, 1, 1), dtype=dtype)
    split = split_input(batch, hidden, inputs.shape[2], dtype)  # the whole batch's: the same bits in any group
    arguments = []
    for lo, hi in groups:  # each group's rows of the trace: (T, rows, 3H) and (T, rows, H) views, no copy
        group_active = _group_active(active, lo, hi)
        rows, columns, z, zx = group_operands(inputs[:, lo:hi], h0[lo:hi], hidden, group_active, outs[:, lo:hi],
                                              split)
        group_kept = [a[:, lo:hi] if keep else a for a in kept]
        arguments += _part_arguments(p, parts, rows, columns, z, outs[:, lo:hi], group_kept, keep, group_active,
                                     hi - lo, zx)
    if keep:
        made_for_backward(p)
    threads.run_apart(forward_part, arguments, meet=parts > 1)
    return Trace(hs, None, {"gates": kept[0], "hn": kept[1]} if keep else None, outs)


def _part_arguments(p, parts: int, rows: bool, columns: int, z: np.ndarray, outs: np.ndarray, kept: list,
                    keep: bool, active, batch: int, zx: np.ndarray) -> list[tuple]:
    """forward_part's arguments for each of `parts` parts of one layer (or one column group): kept, the
    trace's gates (T, batch, 3H) and hn (T, batch, H) of the group's rows; zx (T·batch, 1+I) every step's
    inputs as rows where the input is split off (`steps_operand`), else empty."""
    hidden, dtype, time = p.hidden, z.dtype, z.shape[0] - 1
    split = zx.shape[0] > 0
    panels = forward_panels(p, parts, rows, split, copy=keep)
    gates, hn = np.zeros(3 * hidden * columns, dtype=dtype), np.zeros(hidden * columns, dtype=dtype)
    flags, steps = threads.new_flags(parts), np.asarray(active, dtype=np.int64)
    skip = zero_start(z, hidden, batch)
    return [(k, parts, lo, hi, *panels[k], rows, z.reshape(time + 1, -1),
             np.empty(sum(a.shape[0] * a.shape[2] for a in panels[k]) * columns, dtype=dtype), gates, hn,
             outs, kept[0], kept[1], keep, steps, batch, flags, threads.YIELD, zx,
             projection_scratch(zx, panels[k][2]), skip)
            for k, (lo, hi) in enumerate(_pairs(_bounds(hidden, parts)))]


def inference_forward(p, inputs, h0, c0, active, xw=None, outputs: np.ndarray | None = None) -> Trace:
    """`forward` keeping no trace: for a forward no backward follows (eval mode, locked weights)."""
    return forward(p, inputs, h0, c0, active, xw, keep=False, outputs=outputs)


if AVAILABLE:
    @jit
    def backward_part(me, parts, meet, first, last, lo, hi, w, d_gh, d_gx, carry, d_out, batch_major, gates, h, hn,
                      dh_n, rec, active, flags, yield_address):
        """Part `me` of the GRU's backward over all steps: threaded_rnn.backward_part's rows, columns, meetings
        and spare steps, with the GRU's step. w (3H, H) `recurrent_weights`; d_gh (T + spare, B, 3H) and
        d_gx (T, B, 3H): the hidden and the input side's pre-activation gradients, written for the running
        rows of each step; carry (B, H) zeros, then dh ⊙ z of each row's latest step; d_out (T, B, H), or
        (B, T, H) where batch_major; gates (T, B, 3H), h (T+1, B, H), hn (T, B, H) the forward's; dh_n (B, H);
        rec (B rounded up to gemm.MR, Hp) scratch, after the last step d_gh_0 W_hh in its first B rows."""
        T, B, H = active.shape[0], h.shape[1], h.shape[2]
        G, ldw, Hp = w.shape[0], w.shape[1], rec.shape[1]
        flat_gh, flat_w, flat_rec = d_gh.reshape(-1), w.reshape(-1), rec.reshape(-1)
        top = min(hi, H)
        m = 0  # rows running at step t+1
        for t in range(T - 1, -2, -1):  # t = -1: the last product only
            if t < T - 1:
                m = incoming_products(t, meet, first, last, lo, hi, flat_gh, B, G, flat_w, ldw, flat_rec, Hp, active,
                                      parts, me, flags, yield_address)
            if t < 0:
                break
            for b in range(first, min(active[t], last)):
                d = d_out[b, t] if batch_major else d_out[t, b]
                incoming = rec[b] if b < m else dh_n[b]  # a row's last step takes dL/dh_n
                gru_backward_row(lo, top, gates[t, b], d, incoming, carry[b], h[t, b], hn[t, b], d_gx[t, b],
                                 d_gh[t, b])
            if meet:
                threads.arrive(flags, me, T - t)


def backward(p, trace: Trace, d_out: np.ndarray, dh_n: np.ndarray, dc_n, active):
    """numpy_path.gru_backward's gradients (to float rounding) on the threads, from the forward's time-major
    trace: d_out (T, B, H) any strides → (d_gx, d_gh, dh_0, None), each by_rows (3H, T·B). From
    threaded_rnn.threaded_backward_batch rows to numba_path's row split (gru_backward_parts), `backward_part`
    (the same bits on any thread count); else numba_path.gru_backward (where the rows split, a layer in
    training takes every gradient from numba_path.gru_gradients instead: selector.py)."""
    saved = kept(trace)
    gates, hs = saved["gates"], trace.h
    time, batch, hidden = d_out.shape
    # few rows (row panels of padding), or many (OpenBLAS's products with the rows over the threads win)
    if batch < threaded_backward_batch("gru") or numba_path.gru_backward_parts(batch, hidden) > 1:
        return numba_path.gru_backward(p, trace, d_out, dh_n, dc_n, active)
    lanes = VECTOR_BYTES // hs.itemsize
    row_parts, column_parts = backward_split(batch, hidden, lanes, hs.itemsize, gates=3)
    parts = len(row_parts)
    meet = parts > 1 and row_parts[0] == (0, batch)  # the units split: every part needs every row's d_gh
    # zeros where a row has ended (the weight gradients read every row); spare steps for the last row panel
    rows = padded_count(batch, MR)
    spare = -(-rows // batch)
    alloc = np.empty if active[-1] == batch else np.zeros
    d_gh, d_gx = alloc((time + spare, batch, 3 * hidden), dtype=hs.dtype), alloc(gates.shape, dtype=hs.dtype)
    d_gh[time:] = 0
    carry = np.zeros((batch, hidden), dtype=hs.dtype)
    rec = np.empty((rows, padded_count(hidden, lanes)), dtype=hs.dtype)
    d_rows, batch_major = numba_path.rows_of(d_out)
    flags, steps = threads.new_flags(parts), np.asarray(active, dtype=np.int64)
    w = recurrent_weights(p)
    threads.run_apart(backward_part, [(k, parts, meet, *row_parts[k], *column_parts[k], w, d_gh, d_gx, carry, d_rows,
                                       batch_major, gates, hs, saved["hn"], np.ascontiguousarray(dh_n), rec, steps,
                                       flags, threads.YIELD)
                                      for k in range(parts)], meet=meet)
    return by_rows(d_gx), by_rows(d_gh[:time]), rec[:batch, :hidden] + carry, None
