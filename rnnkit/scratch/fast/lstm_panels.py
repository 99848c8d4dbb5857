"""The threaded LSTM's weights packed into GEMM panels in one compiled pass (numba installed); the threaded GRU's
and RNN's forward panels too (`gathered_panels`).

A part of the threaded LSTM (threaded_lstm.py) owns the hidden units lo..hi-1 and multiplies by its rows of
the weights, packed for gemm.py's kernels: panels (P, K, w), panel p holding rows p·w .. p·w+w-1, each k's w
values together (`gemm.pack_panels`; the last panel's missing rows are zeros). Packed through NumPy (gate
rows gathered, halved, padded, then a transposing copy) this took 5.9 ms for the forward and 10.5 ms for the
backward at hidden 512 (float32, 2 parts), on every training step: more than the step's arithmetic at small
batches. Here each panel is written once, in order, from the weights as they are:

    forward    panel row j of part [lo, hi): packed gate row  q·H + u,  q = j // (hi-lo), u = lo + j % (hi-lo),
               i.e. PyTorch's row ORDER[q]·H + u (packing.row_index), times ½ for the sigmoid gates i, f, o;
               its columns the given blocks side by side: [W_hh | W_ih | b] or [W_hh] or [W_ih | b]
    backward   panel row j: column lo + j of W_hh (packed row order, not halved), i.e. row j of W_hh^T[lo:hi],
               made gate block by gate block from PyTorch's W_hh (no reordered copy of it); W_ih needs none
               (the one-part backward reads the forward's [W_ih | b] panels transposed, transposed_products.py)

The values are the NumPy packing's to the bit (halving is exact; the bias is b_ih + b_hh as packing.py sums
it), so the products and their rounding do not change.
"""
from __future__ import annotations

import functools

import numpy as np

from . import packing, threads
from .kernels import AVAILABLE

if AVAILABLE:
    from . import gemm
    from .kernels import jit


def gate_rows(hidden: int, lo: int, hi: int) -> np.ndarray:
    """The packed gate rows of units lo..hi-1: i, f, o, g blocks in turn."""
    return np.concatenate([np.arange(g * hidden + lo, g * hidden + hi) for g in range(4)])


@functools.lru_cache(maxsize=256)
def source_rows(hidden: int, lo: int, hi: int, dtype: np.dtype, mode: str = "lstm",
                blocks: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(PyTorch rows, scales in dtype) of a part's packed gate rows, units lo..hi-1 of each packed gate block
    of `blocks` in turn (all the cell's by default; the LSTM's: `gate_rows`): the row each comes from and ½
    for sigmoid rows; read-only, made once per shape (a training forward packs its weights anew every step,
    and making these took 40 of its 735 us at hidden 256 batch 1)."""
    blocks = range(packing.GATES[mode]) if blocks is None else blocks
    packed = np.concatenate([np.arange(g * hidden + lo, g * hidden + hi) for g in blocks])
    rows = packing.row_index(mode, hidden)[packed].astype(np.int64)
    scales = np.where(packed < packing.sigmoid_rows(mode, hidden), 0.5, 1.0).astype(dtype)
    for array in (rows, scales):
        array.setflags(write=False)
    return rows, scales


def bias_column(b_ih, b_hh, rows: int, dtype) -> np.ndarray:
    """b_ih + b_hh as a (4H, 1) column in PyTorch's row order (zeros without biases), summed as packing.py does."""
    bias = np.zeros(rows, dtype=dtype)
    if b_ih is not None:
        bias += b_ih
    if b_hh is not None:
        bias += b_hh
    return bias[:, None]


def forward_panels(p, bounds, width: int, blocks: str) -> list[np.ndarray]:
    """For each part [lo, hi) of `bounds`, its gate rows of `blocks` ("hh": W_hh; "ih": [W_ih | b]; "all":
    [W_hh | W_ih | b]), halved sigmoid rows, packed into panels (P, K, width) for gemm.py; each part's on
    its own thread (threads.run)."""
    return forward_panel_sets(p, bounds, width, (blocks,))[0]


def forward_panel_sets(p, bounds, width: int, sets, input_bounds=None) -> list[list[np.ndarray]]:
    """`forward_panels` for each `blocks` of `sets` (e.g. ("hh", "ih")), all in one threads.run: one job per
    part and set, each on its own thread (the "ih" set's parts those of `input_bounds` where given)."""
    panels, jobs = forward_jobs(p, bounds, width, sets, input_bounds)
    threads.run_shared(gather_blocks, [job[1] for job in jobs])
    return panels


def forward_jobs(p, bounds, width: int, sets, input_bounds=None) -> tuple[list[list[np.ndarray]], list]:
    """(`forward_panel_sets`' panels, allocated, and the (function, arguments, size) jobs that fill them:
    threads.run_balanced's); the "ih" set's parts those of `input_bounds` where given."""
    w_ih, w_hh, b_ih, b_hh = p.originals
    bias = bias_column(b_ih, b_hh, w_hh.shape[0], w_hh.dtype)
    parts = [input_bounds if blocks == "ih" and input_bounds is not None else bounds for blocks in sets]
    panels, jobs = _gathered_jobs(width, [({"hh": (w_hh,), "ih": (w_ih, bias), "all": (w_hh, w_ih, bias)}[blocks],
                                           *source_rows(p.hidden, lo, hi, w_hh.dtype))
                                          for blocks, own in zip(sets, parts) for lo, hi in own])
    starts = np.cumsum([0] + [len(own) for own in parts])
    return [panels[a:b] for a, b in zip(starts[:-1], starts[1:])], jobs


def gathered_panels(width: int, jobs, parts: int = 1, extra=()) -> list[np.ndarray]:
    """For each (sources, rows, scales) of `jobs`: the rows `rows` of [A_0 | A_1 | ...] (sources, each
    (R, k_i), PyTorch's row order), row j times scales[j], packed into panels (P, K, width) for gemm.py, the
    last panel's missing rows zeros (`gather_blocks`); all in one meeting of the threads. `jobs` are `parts`
    runs of equal length, one a part of the layer's units: where the threads are as many as the parts, thread
    k packs part k's (whose steps then read them from its own cache), else the jobs are shared by size
    (threads.run_balanced). The GRU's three blocks a part, run two at a time in turn before, took 0.26 ms warm
    at hidden 608 where one meeting takes 0.16. Shared by the threaded GRU and RNN (their forward's panels,
    the same values as NumPy's packing to the bit). `extra`: other (function, arguments, size) jobs for the
    same meeting (a training forward's copies of W_hh and W_ih for its backward, Packed.backward_jobs): one to
    each part's thread where they are `parts`, else shared by size with the rest."""
    panels, jobs = _gathered_jobs(width, jobs)
    extra = list(extra)
    if parts > 1 and parts == threads.count() and len(jobs) % parts == 0 and len(extra) in (0, parts):
        each = len(jobs) // parts
        shares = [jobs[k * each:(k + 1) * each] + extra[k:k + 1] for k in range(parts)]
        threads.run_shared(threads.call_all, [([(job[0], job[1]) for job in share],) for share in shares])
    else:
        threads.run_balanced(jobs + extra)
    return panels


def _gathered_jobs(width: int, jobs) -> tuple[list[np.ndarray], list]:
    """`gathered_panels`' panels, allocated, and its (gather_blocks, arguments, size) jobs."""
    panels, out = [], []
    for sources, rows, scales in jobs:
        sources = tuple(np.ascontiguousarray(a) for a in sources)
        panels.append(np.empty((-(-len(rows) // width), sum(a.shape[1] for a in sources), width),
                               dtype=sources[0].dtype))
        out.append((gather_blocks, (sources, rows, scales, panels[-1]), panels[-1].size))
    return panels, out


def backward_panels(p, bounds, width: int) -> list[np.ndarray]:
    """For each part [lo, hi): W_hh^T's rows lo..hi-1 (unhalved, their k in packed gate order), (hi-lo, 4H),
    packed into panels for gemm.py, straight from the weights as given (`gate_blocks_at`: no reordered copy
    of them), all in one threads.run (one job a part). (W_ih^T needs none: the input gradient reads the
    forward's W_ih panels transposed, transposed_products.py.)"""
    panels, jobs = backward_jobs(p, bounds, width)
    threads.run_shared(gate_blocks_at, [job[1] for job in jobs])
    return panels


def backward_jobs(p, bounds, width: int) -> tuple[list, list]:
    """(`backward_panels`' panels, allocated, and the (function, arguments, size) jobs that fill them:
    threads.run_balanced's)."""
    w_hh = p.originals[1]
    blocks = _gate_blocks_transposed(p, w_hh)
    panels = [np.empty((-(-(hi - lo) // width), w_hh.shape[0], width), dtype=w_hh.dtype) for lo, hi in bounds]
    jobs = [(gate_blocks_at, (blocks, lo, hi, out), out.size) for (lo, hi), out in zip(bounds, panels)]
    return panels, jobs


def training_panels(p, bounds, backward_bounds, width: int, sets, input_bounds=None) -> tuple[list, list]:
    """(`forward_panel_sets`, `backward_panels`) of a training step's forward (the "ih" set's parts those of
    `input_bounds` where given). Where the backward runs on one part (a small step's), all in one meeting of
    the threads, balanced (threads.run_balanced): two meetings of two packings each waited on the larger of
    each pair (hidden 103, input 462: 106 against 138 us). Where it splits its units too, each set in a
    meeting of its own, part k's on thread k: one meeting was slower there (hidden 420 and 512: 299 against
    267 us, 354 against 266)."""
    if len(backward_bounds) > 1:
        backward = backward_panels(p, backward_bounds, width)
        return forward_panel_sets(p, bounds, width, sets, input_bounds), backward
    forward, forward_work = forward_jobs(p, bounds, width, sets, input_bounds)
    backward, backward_work = backward_jobs(p, backward_bounds, width)
    threads.run_balanced(backward_work + forward_work)
    return forward, backward


def _gate_blocks_transposed(p, w: np.ndarray) -> tuple:
    """w's gate blocks (H, K) in packed gate order, each transposed (K, H): a view, no copy."""
    return tuple(w[q * p.hidden:(q + 1) * p.hidden].T for q in packing.gate_order(p.mode))


def transposed_panels(w: np.ndarray, bounds, width: int) -> list[np.ndarray]:
    """For each [lo, hi) of bounds over w's columns: the rows lo..hi-1 of w^T (W_ih^T's: the input
    gradient's product) packed into panels for gemm.py (`transposed_panel_sets`)."""
    return transposed_panel_sets(width, [(w, bounds)])[0]


def transposed_panel_sets(width: int, sets) -> list[list[np.ndarray]]:
    """For each (matrix (M, N), bounds over N) of `sets`: the panels of matrix^T's rows [lo, hi) for each
    [lo, hi) of bounds, all in one threads.run (one job each)."""
    jobs, result = [], []
    for w, bounds in sets:
        panels = [np.empty((-(-(hi - lo) // width), w.shape[0], width), dtype=w.dtype) for lo, hi in bounds]
        jobs += [(w.T, lo, hi, out) for (lo, hi), out in zip(bounds, panels)]  # W^T's rows: W's columns
        result.append(panels)
    threads.run_shared(gemm.pack_rows, jobs)
    return result


if AVAILABLE:
    @jit
    def gather_rows(source, rows, scales, k0, out):
        """out[p, k0 + k, r] = scales[j] · source[rows[j], k] for j = p·w + r < len(rows), zero for the
        padding rows j >= len(rows); k over source's columns. In blocks of 16 k: each of a panel's w source
        rows gives one cache line of 16 values, written to 16 panel rows that stay in cache; all K of one
        row at a time instead wrote w·4 bytes apart across the whole panel (2.2x slower: 428 against 194
        us for W_hh at hidden 256 on one core)."""
        count, depth, width = out.shape
        K = source.shape[1]
        n = rows.shape[0]
        zero = out.dtype.type(0)
        kind = gemm.panel_kind(width)
        # float32 panels: VW values of k at a time, transposed in vector registers (gemm.py); panels of whole
        # vectors of rows also the last values of k (masked), the MR-row panels' in the loop below
        fast = kind >= 0 and out.itemsize == 4 and source.itemsize == 4 and source.strides[1] == 4 and n > 0
        whole = (K if kind > 0 else K - K % gemm.VW) if fast else 0
        if fast:
            offsets = np.empty(count * width, dtype=np.int64)  # a padding row reads row rows[0], then zeros
            padded_scales = np.zeros(count * width, dtype=scales.dtype)
            offsets[:n] = rows * (source.strides[0] // 4)
            offsets[n:] = offsets[0]
            padded_scales[:n] = scales
            flat = out.reshape(-1)
            for p in range(count):
                valid = min(width, n - p * width)  # rows past them zeros (not 0·w: w may be inf)
                for k in range(0, whole, gemm.VW):
                    gemm.pack_block_gathered(kind, source, offsets, padded_scales, p * width, k, flat,
                                             (p * depth + k0 + k) * width, valid, min(gemm.VW, K - k))
        for p in range(count):
            for k_lo in range(whole, K, 16):
                k_hi = min(K, k_lo + 16)
                for r in range(width):
                    j = p * width + r
                    if j < n:
                        row, s = source[rows[j]], scales[j]
                        for k in range(k_lo, k_hi):
                            out[p, k0 + k, r] = row[k] * s
                    else:
                        for k in range(k_lo, k_hi):
                            out[p, k0 + k, r] = zero

    @jit
    def gate_blocks_at(blocks, lo, hi, out):
        """Rows lo..hi-1 of each of `blocks` (each (H, H) or any (·, K_q)) into panels out (P, Σ K_q, w), block
        q's at k from Σ_{q' < q} K_q' (gemm.pack_rows_at): W_hh^T's rows with k in packed gate order, taken
        from PyTorch's gate blocks as they lie."""
        start = 0
        for a in blocks:
            gemm.pack_rows_at(a, lo, hi, out, start)
            start += a.shape[1]

    @jit
    def gather_blocks(sources, rows, scales, out):
        """`gather_rows` of each source in turn, side by side along k: out's columns [A_0 | A_1 | ...]."""
        start = 0
        for a in sources:
            gather_rows(a, rows, scales, start, out)
            start += a.shape[1]
