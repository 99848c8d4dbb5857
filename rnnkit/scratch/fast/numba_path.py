"""The numba path: the LSTM, the GRU and the RNN on kernels.py's compiled steps (numba installed).

The arrays are the NumPy path's (numpy_path.py), time-major. The LSTM runs its
time loop one of two ways, chosen by selector.py:
  * lstm_forward_loop: the whole loop in one compiled call, the products h_t W_hh^T included (small
    batches, where a BLAS call costs more in overhead than in arithmetic);
  * lstm_forward_steps: one BLAS product and one compiled call per step (larger batches whose layer is
    folded, i.e. fed a looked-up input projection, which the threaded LSTM cannot take).
Its backward is one compiled call for all steps, products included. The GRU's and the RNN's forward run the
same two ways (the RNN's only the first), where the threaded path (threaded_gru.py, threaded_rnn.py) does not
take them (see selector.py). Their backward (the threaded paths have their own, threaded_rnn.py) runs per
step one compiled call for the gate arithmetic and one BLAS product for h's gradient through W_hh
(`backward_steps`):
the NumPy path's bits, but for few rows against a W_hh too big for a core's cache (`h_gradient_product`)
and for the GRU's large batches, whose rows split over the threads (`gru_backward_parts`).
"""
from __future__ import annotations

import numpy as np

from . import kernels, numpy_path, packing, threads, thresholds
from .trace import Trace, by_rows, final_rows


def lstm_forward_loop(p, inputs, h0, c0, active, xw=None):
    xw = numpy_path.input_projection(inputs, p, active) if xw is None else xw
    a = numpy_path.lstm_arrays(xw, h0, c0, alloc=np.empty)  # the kernels read and write only the running rows
    kernels.lstm_forward_loop(xw, p.w_hh_t, a["gates"], a["c"], a["tanh_c"], a["h"],
                              np.asarray(active, dtype=np.int64))
    return Trace(a["h"], final_rows(a["c"], active), a)


def lstm_forward_steps(p, inputs, h0, c0, active, xw=None):
    xw = numpy_path.input_projection(inputs, p, active) if xw is None else xw
    a = numpy_path.lstm_arrays(xw, h0, c0, alloc=np.empty)
    hs, acts = a["h"], a["gates"]
    for t, n in enumerate(active):
        np.matmul(hs[t, :n], p.w_hh_t, out=acts[t, :n])
        kernels.lstm_forward_step(t, n, xw, acts, a["c"], a["tanh_c"], hs)
    return Trace(hs, final_rows(a["c"], active), a)


def lstm_backward(p, trace, d_out, dh_n, dc_n, active):
    a = trace.saved
    d_pre = np.zeros_like(a["gates"])
    dh_rec, dc = dh_n.copy(), dc_n.copy()
    kernels.lstm_backward_loop(d_out, p.w_hh, dh_rec, dc, a["gates"], a["c"], a["tanh_c"], d_pre,
                               np.asarray(active, dtype=np.int64))
    d_pre = by_rows(d_pre)
    return d_pre, d_pre, dh_rec, dc


def gru_forward(p, inputs, h0, c0, active, xw=None):
    """One GEMM and one compiled call per step; backward: `gru_backward`."""
    xw = numpy_path.input_projection(inputs, p, active) if xw is None else xw
    hs, acts, hn = numpy_path.gru_arrays(xw, h0, inputs)
    hidden = hs.shape[-1]
    scratch = np.empty(xw.shape[1:], dtype=xw.dtype)
    b_hn = p.b_hn if p.b_hn is not None else np.zeros(hidden, dtype=xw.dtype)
    for t, n in enumerate(active):
        np.matmul(hs[t, :n], p.w_hh_t, out=scratch[:n])
        kernels.gru_forward_step(t, n, xw, scratch, b_hn, hn, acts, hs)
    return Trace(hs, None, {"gates": acts, "hn": hn})


def gru_forward_loop(p, inputs, h0, c0, active, xw=None):
    """The whole time loop in one compiled call, products included (small batches); backward: `gru_backward`."""
    xw = numpy_path.input_projection(inputs, p, active) if xw is None else xw
    hs, acts, hn = numpy_path.gru_arrays(xw, h0, inputs)
    hidden = hs.shape[-1]
    b_hn = p.b_hn if p.b_hn is not None else np.zeros(hidden, dtype=xw.dtype)
    kernels.gru_forward_loop(xw, p.w_hh_t, np.empty(xw.shape[1:], dtype=xw.dtype), b_hn, hn, acts, hs,
                             np.asarray(active, dtype=np.int64))
    return Trace(hs, None, {"gates": acts, "hn": hn})


def per_row_products(p, active) -> bool:
    """Whether a backward over the steps' running rows `active` takes `h_gradient_product`'s per-row products
    for its few-row steps: W_hh larger than a core's cache (thresholds.GEMV_BYTES) and enough such rows in the
    call to pay for transposing W_hh once (GEMV_PRODUCTS_PER_MB)."""
    if p.w_hh.nbytes < thresholds.GEMV_BYTES:
        return False
    rows = sum(n for n in active if n <= thresholds.GEMV_ROWS)
    return rows >= thresholds.GEMV_PRODUCTS_PER_MB * p.w_hh.nbytes / 2**20


def h_gradient_product(p, d_step, dh_rec, n: int, per_row: bool) -> None:
    """dh_rec[:n] = d_step[:n] W_hh, the gradient reaching h_t through step t's product: one matrix product,
    or, for few rows (thresholds.GEMV_ROWS) where `per_row` (`per_row_products`), one matrix-vector product
    per row on W_hh^T (OpenBLAS's threads each stream their half of it; its matrix product would pack all of
    W_hh again on every call)."""
    if per_row and n <= thresholds.GEMV_ROWS:
        for b in range(n):
            np.matmul(p.w_hh_unhalved_t, d_step[b], out=dh_rec[b])
    else:
        np.matmul(d_step[:n], p.w_hh, out=dh_rec[:n])


def gru_backward_parts(batch: int, hidden: int) -> int:
    """Over how many threads the GRU's backward splits the batch's rows (`backward_steps`): threads.count()
    from thresholds.SPLIT_BACKWARD_BATCH rows and SPLIT_BACKWARD_WORK of batch·hidden on, else one."""
    split = batch >= thresholds.SPLIT_BACKWARD_BATCH and batch * hidden >= thresholds.SPLIT_BACKWARD_WORK
    return min(threads.count(), batch) if split else 1


def backward_steps(p, step, arguments, d_step, dh_rec, active, parts: int = 1) -> None:
    """The time loop of the GRU's and the RNN's backward: for t = T-1 .. 0, over the rows running at step t,
    step(t, first, n, *arguments) (a compiled step of kernels.py, writing d_step[t] and reading dh_rec) and
    then dh_rec = d_step[t] W_hh (d_step (T, B, G·H), dh_rec (B, H)).

    A row's gradients never meet another row's until the weight gradients, after the loop. So with
    `parts` > 1 (the GRU, `gru_backward_parts`), each of `parts` threads takes a fixed block of the rows
    through all the steps, its products on one BLAS thread (threads.run_products): no meeting per step, and
    the gate arithmetic on both cores instead of one. The split's bits depend on the thread count only
    (OpenBLAS rounds differently on one thread and on two). With one part, the calling thread alone with
    `h_gradient_product`: the NumPy path's bits. (The RNN's step is too little arithmetic for the split to
    pay: 0.89-1.14 of the time on one part, measured on the Xeon, 2026-12-05.)"""
    if parts <= 1:
        per_row = per_row_products(p, active)
        for t in reversed(range(len(active))):
            n = active[t]
            step(t, 0, n, *arguments)
            h_gradient_product(p, d_step[t], dh_rec, n, per_row)
        return
    bounds = row_bounds(dh_rec.shape[0], parts)
    threads.run_products(_backward_rows, [(p, step, arguments, d_step, dh_rec, active, bounds[k], bounds[k + 1])
                                          for k in range(parts)])


def row_bounds(batch: int, parts: int) -> list[int]:
    """The first row of each of `backward_steps`' parts, then the batch."""
    return [batch * k // parts for k in range(parts + 1)]


def _backward_rows(p, step, arguments, d_step, dh_rec, active, lo, hi, worker) -> None:
    """`backward_steps` for rows lo..hi-1, on the calling thread, its products on one BLAS thread."""
    for t in reversed(range(len(active))):
        n = min(active[t], hi)
        if n > lo:  # rows start running as t goes back (active is non-increasing in t)
            step(t, lo, n, *arguments)
            threads.product_rows(d_step[t, lo:n], p.w_hh, dh_rec[lo:n], worker)


def rows_of(d_out: np.ndarray) -> tuple[np.ndarray, bool]:
    """A time-major (T, B, H) gradient, any strides, as a C-contiguous array the compiled steps index: itself
    (batch_major False), or the batch-major array it is a view of, (B, T, H) (True: the layer's own layout,
    no transposing copy, which read through strides made the steps 1.1x slower), else a time-major copy."""
    if d_out.flags.c_contiguous:
        return d_out, False
    rows = d_out.transpose(1, 0, 2)
    if rows.flags.c_contiguous:
        return rows, True
    return np.ascontiguousarray(d_out), False


def rnn_backward(p, trace, d_out, dh_n, dc_n, active):
    """numpy_path.rnn_backward's gradients, one compiled call (`kernels.rnn_backward_step`) and one BLAS
    product per step (`h_gradient_product`; the NumPy path's bits but for few rows against a big W_hh)."""
    hs, relu = trace.h, trace.saved
    d_pre = (np.empty_like if active[-1] == d_out.shape[1] else np.zeros_like)(hs[1:])
    dh_rec = dh_n.copy()
    d_rows, batch_major = rows_of(d_out)
    backward_steps(p, kernels.rnn_backward_step, (d_rows, batch_major, dh_rec, hs, relu, d_pre), d_pre, dh_rec,
                   active)
    d_pre = by_rows(d_pre)
    return d_pre, d_pre, dh_rec, None


def gru_backward(p, trace, d_out, dh_n, dc_n, active):
    """numpy_path.gru_backward's gradients, in one compiled call (`kernels.gru_backward_step`: the derivative
    factors, the gate gradients and h's gradient through the update gate, fused) and one BLAS product per step
    (`h_gradient_product`), instead of eight NumPy calls per step and a pass for the factors: the NumPy path's
    bits, but for few rows against a big W_hh."""
    arr = trace.saved
    gates = arr["gates"]
    # zeros only where a sequence ends early: the weight gradients' GEMMs read every row
    alloc = np.empty_like if active[-1] == gates.shape[1] else np.zeros_like
    d_gx, d_gh = alloc(gates), alloc(gates)
    dh_rec, carry = dh_n.copy(), np.zeros_like(dh_n)
    backward_steps(p, kernels.gru_backward_step, (d_out, dh_rec, carry, gates, trace.h, arr["hn"], d_gx, d_gh),
                   d_gh, dh_rec, active, gru_backward_parts(*dh_rec.shape))
    dh_rec += carry
    return by_rows(d_gx), by_rows(d_gh), dh_rec, None


def gru_gradients(p, trace, inputs, d_out, dh_n, dc_n, active, into=None):
    """`gru_backward` and the gradients of the weights and the input in one: each row's pre-activation
    gradients written once, d (T, B, 4H) = (dn, dz, dr, dhn), instead of the input side's (dz, dr, dn) and the
    hidden side's (dz, dr, dhn) apart (dz and dr twice), and the bias gradients summed by the steps
    (`kernels.gru_gradient_step`), not in a pass over both afterwards. Then, one product each over all steps,
    each on the threads' own split (threads.matmul: OpenBLAS's threads, which spin after a call, stay asleep):
        dW_hh = d[:, :, H:]ᵀ h_prev         (z, r, hn: the hidden side's rows, in packed order)
        dW_ih = d[:, :, :3H]ᵀ x              (n, z, r, moved to packed order after)
        dx = d[:, :, :3H] W_ih               (W_ih's rows as (n, z, r))
    inputs (T, B, I) time-major, the forward's. Returns (dW_ih (3H, I), dW_hh (3H, H), (db_ih, db_hh) (3H,)
    each, dx (T, B, I), dh_0 (B, H), None), packed row order. Given `into` (W_ih's and W_hh's gradients,
    PyTorch's layout) and gemm.py's kernels (threads.own_kernels), the two weight gradients are added into
    them instead (threads.add_products: no product array, no pass to put it back in PyTorch's order; at hidden
    600, batch 30, T 3 those passes took 0.6 of 5 ms a backward) and None is returned for them."""
    arr, hidden = trace.saved, p.hidden
    time, batch, _ = d_out.shape
    alloc = np.empty if active[-1] == batch else np.zeros  # ended rows: zeros (the products read every row)
    d = alloc((time, batch, 4 * hidden), dtype=d_out.dtype)
    dh_rec, carry = dh_n.copy(), np.zeros_like(dh_n)
    parts = gru_backward_parts(batch, hidden)
    sums = np.zeros((parts, 2, 4 * hidden), dtype=d.dtype)  # each part's bias sums and its step's
    bounds = np.asarray(row_bounds(batch, parts), dtype=np.int64)
    backward_steps(p, kernels.gru_gradient_step, (d_out, dh_rec, carry, arr["gates"], trace.h, arr["hn"], d, bounds,
                                                  sums), d[:, :, hidden:], dh_rec, active, parts)
    dh_rec += carry
    total = sums[0, 0]
    for k in range(1, parts):  # the parts' sums in a fixed order
        total += sums[k, 0]
    rows = d.reshape(time * batch, 4 * hidden)
    x = inputs.reshape(time * batch, -1)
    h_prev = trace.h[:-1].reshape(time * batch, hidden)
    if into is not None and threads.own_kernels(d.dtype):
        w_ih_grad, w_hh_grad = into
        threads.add_products(rows[:, hidden:].T, (h_prev,), (w_hh_grad,), packing.gate_order("gru"))
        threads.add_products(rows[:, : 3 * hidden].T, (x,), (w_ih_grad,), _N_FIRST_ORDER)
        dw_ih = dw_hh = None
    else:
        dw_hh = threads.matmul(rows[:, hidden:].T, h_prev)
        dw_ih = _n_last(hidden, threads.matmul(rows[:, : 3 * hidden].T, x))
    dx = threads.matmul(rows[:, : 3 * hidden], p.derived(("w_ih_n_first",), lambda: np.concatenate(
        [p.w_ih[2 * hidden:], p.w_ih[: 2 * hidden]])))
    return dw_ih, dw_hh, (_n_last(hidden, total[: 3 * hidden]), total[hidden:]), dx.reshape(time, batch, -1), \
        dh_rec, None


# The input side's rows (n, z, r) as PyTorch's gate blocks (r, z, n): block q into block _N_FIRST_ORDER[q]
_N_FIRST_ORDER = (2, 1, 0)


def _n_last(hidden: int, rows: np.ndarray) -> np.ndarray:
    """Rows (n, z, r) of 3H → (z, r, n), the packed order."""
    return np.concatenate([rows[hidden:], rows[:hidden]])


def rnn_forward_loop(p, inputs, h0, c0, active, xw=None):
    """The whole time loop in one compiled call, products included (small batches); backward: `rnn_backward`."""
    xw = numpy_path.input_projection(inputs, p, active) if xw is None else xw
    hs = np.zeros((xw.shape[0] + 1, *xw.shape[1:]), dtype=xw.dtype)
    hs[0] = h0
    relu = p.mode == "rnn_relu"
    kernels.rnn_forward_loop(xw, p.w_hh_t, hs, np.asarray(active, dtype=np.int64), relu)
    return Trace(hs, None, relu)
