"""Language-model batches: a token stream cut into parallel streams, read in windows of `bptt` steps.

The corpus `ids` (N,) is cut into `batch_size` contiguous streams, the rows of `data` (batch, N // batch)
(the last N % batch tokens are dropped). Window k holds steps [k*bptt, k*bptt + t) of every stream as inputs
and the same steps shifted by one as targets:

    inputs  = data[:, k*bptt     : k*bptt + t]
    targets = data[:, k*bptt + 1 : k*bptt + t + 1]

Row b of window k+1 continues row b of window k exactly where it stopped, so the hidden state a model ends
window k with is the right initial state for window k+1: carry it over (detached, for truncated BPTT)
instead of resetting it. The last window is shorter when (N // batch - 1) is not a multiple of `bptt`.
"""

from __future__ import annotations

import numpy as np


def batchify(ids, batch_size: int) -> np.ndarray:
    """Cut a 1-D token array into `batch_size` contiguous streams: shape (batch_size, N // batch_size)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} and dtype {ids.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(ids) // batch_size
    if n < 2:
        raise ValueError(
            f"a corpus of {len(ids)} tokens is too short for batch_size={batch_size}: each stream needs at "
            f"least 2 tokens (an input and its target); use batch_size <= {max(len(ids) // 2, 1)} or more data"
        )
    return ids[: n * batch_size].astype(np.int64, copy=False).reshape(batch_size, n)


class LMBatcher:
    """Windows of `bptt` steps over `batch_size` parallel streams; see the module docstring.

    `len(batcher)` is the number of windows; `batcher.iter_from(k)` resumes exactly at window k, and
    `batcher[k]` returns window k. Each window is `(inputs, targets)`, two int64 arrays of shape (batch, t).
    """

    def __init__(self, ids, batch_size: int, bptt: int):
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        self.data = batchify(ids, batch_size)
        self.batch_size, self.bptt = batch_size, bptt

    def __len__(self) -> int:
        return -(-(self.data.shape[1] - 1) // self.bptt)  # ceil((n - 1) / bptt)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"window {k} out of range for {len(self)} windows")
        i = (k % len(self)) * self.bptt
        t = min(self.bptt, self.data.shape[1] - 1 - i)
        return (np.ascontiguousarray(self.data[:, i : i + t]),
                np.ascontiguousarray(self.data[:, i + 1 : i + 1 + t]))

    def iter_from(self, start: int = 0):
        """Yield the windows from window `start` on (for resuming a run at a saved position)."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}], got {start}")
        for k in range(start, len(self)):
            yield self[k]

    def __iter__(self):
        return self.iter_from(0)

    def __repr__(self) -> str:
        return f"LMBatcher(streams={self.data.shape}, bptt={self.bptt}, windows={len(self)})"


def lm_batches(ids, batch_size: int, bptt: int):
    """Iterate over `(inputs, targets)` windows; shorthand for `iter(LMBatcher(ids, batch_size, bptt))`."""
    return iter(LMBatcher(ids, batch_size, bptt))
