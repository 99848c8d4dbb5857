"""Batches. Language models: a token stream cut into parallel streams, read in windows of `bptt` steps.

The corpus `ids` (N,) is cut into `batch_size` contiguous streams, the rows of `data` (batch, N // batch)
(the last N % batch tokens are dropped). Window k holds steps [k*bptt, k*bptt + t) of every stream as inputs
and the same steps shifted by one as targets:

    inputs  = data[:, k*bptt     : k*bptt + t]
    targets = data[:, k*bptt + 1 : k*bptt + t + 1]

Row b of window k+1 continues row b of window k exactly where it stopped, so the hidden state a model ends
window k with is the right initial state for window k+1: carry it over (detached, for truncated BPTT)
instead of resetting it. The last window is shorter when (N // batch - 1) is not a multiple of `bptt`.

Padded batches (classification, translation): pad(), and for translation pairs pair_batch() and
PairBatcher (seeded shuffling, optional bucketing by length).

Distributed training (torchrun, W processes of rank r = 0 .. W-1, each with `batch_size` B): a language
model's W·B streams are cut as for one process, and rank r reads rows r·B .. r·B + B - 1 of them, a
contiguous part of the token stream (its carried state stays its own; of a memory-mapped corpus it reads
only its part); shuffled examples are drawn in global batches of W·B, of which rank r takes every W-th row
from row r (`rank_rows`, as torch's DistributedSampler does), so W ranks see the batches one process with
batch W·B would.
"""

from __future__ import annotations

import numpy as np


def rank_rows(rows: np.ndarray, rank: int = 0, world: int = 1) -> np.ndarray:
    """Rank `rank`'s rows of one global batch's row indices `rows`: rows[rank::world], after topping the batch
    up to a multiple of `world` with its own first rows (so every rank gets as many; as DistributedSampler
    tops up an epoch). One process (world 1): `rows` itself."""
    if world == 1:
        return rows
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    short = -len(rows) % world
    if short:
        rows = np.concatenate([rows, np.resize(rows, short)])  # np.resize repeats the rows cyclically
    return rows[rank::world]


def batchify(ids, batch_size: int) -> np.ndarray:
    """Cut a 1-D token array into `batch_size` contiguous streams: shape (batch_size, N // batch_size).

    int64 ids, except a memory-mapped array (rnnkit/data/prepared.py), which stays a view of its file in its
    own dtype (nothing is read until a window is taken; windows are int64).
    """
    mapped = isinstance(ids, np.memmap)
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
    ids = ids[: n * batch_size]
    return (ids if mapped else ids.astype(np.int64, copy=False)).reshape(batch_size, n)


class LMBatcher:
    """Windows of `bptt` steps over `batch_size` parallel streams; see the module docstring.

    `len(batcher)` is the number of windows; `batcher.iter_from(k)` resumes exactly at window k, and
    `batcher[k]` returns window k. Each window is `(inputs, targets)`, two int64 arrays of shape (batch, t).
    With `world` > 1 processes, this is rank `rank`'s part: its `batch_size` rows of the world's
    world·batch_size streams (see the module docstring).
    """

    def __init__(self, ids, batch_size: int, bptt: int, rank: int = 0, world: int = 1):
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {bptt}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        self.data = batchify(ids, batch_size * world)[rank * batch_size:(rank + 1) * batch_size]
        self.batch_size, self.bptt = batch_size, bptt

    def __len__(self) -> int:
        return -(-(self.data.shape[1] - 1) // self.bptt)  # ceil((n - 1) / bptt)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"window {k} out of range for {len(self)} windows")
        i = (k % len(self)) * self.bptt
        t = min(self.bptt, self.data.shape[1] - 1 - i)
        return (np.ascontiguousarray(self.data[:, i : i + t], dtype=np.int64),
                np.ascontiguousarray(self.data[:, i + 1 : i + 1 + t], dtype=np.int64))

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


# ------------------------------------------------------------------------------------ padded sequences


def pad(sequences: list, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token id arrays → (ids (batch, longest) int64 padded with `pad_id`, lengths (batch,) int64)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    ids = np.full((len(sequences), lengths.max()), pad_id, dtype=np.int64)
    for row, seq in zip(ids, sequences):
        row[: len(seq)] = seq
    return ids, lengths


def pair_batch(sources: list, targets: list, bos_id: int = 2, eos_id: int = 3, pad_id: int = 0) -> dict:
    """One translation batch from source and target id arrays (without <bos>/<eos>):

        source         (B, S) int64, padded with pad_id     source_lengths (B,)
        target_in      (B, T) = <bos> y_1 .. y_n, padded    target_lengths (B,) = n + 1
        target_out     (B, T) = y_1 .. y_n <eos>, padded
    The decoder reads target_in and is trained to predict target_out, position by position.
    """
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"a batch needs as many targets as sources, at least one: got {len(sources)} and "
                         f"{len(targets)}")
    source, source_lengths = pad(sources, pad_id)
    target_in, target_lengths = pad([np.concatenate([[bos_id], t]).astype(np.int64) for t in targets], pad_id)
    target_out, _ = pad([np.concatenate([t, [eos_id]]).astype(np.int64) for t in targets], pad_id)
    return {"source": source, "source_lengths": source_lengths, "target_in": target_in,
            "target_out": target_out, "target_lengths": target_lengths}


class PairBatcher:
    """Mini-batches of translation pairs (pair_batch dicts, each with "index" (B,): the pairs' positions).

    shuffle: the order is a permutation drawn from (seed, epoch), so epoch e is the same in a resumed run;
        without it the pairs come in their order (for evaluation).
    bucket: pairs of similar length share a batch (less padding): the order is cut into pools of
        `pool` batches, each pool sorted by (source length, target length), cut into batches, and with
        shuffle the batches are shuffled again. `batches(epoch, start)` resumes at batch `start`.
    world > 1: the batches are the world's (world·batch_size pairs), of which this is rank `rank`'s share
        (rank_rows).
    """

    def __init__(self, pairs: list, batch_size: int, seed: int = 0, shuffle: bool = True, bucket: bool = False,
                 pool: int = 50, bos_id: int = 2, eos_id: int = 3, rank: int = 0, world: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not pairs:
            raise ValueError("no pairs to batch")
        self.pairs, self.batch_size, self.seed = pairs, batch_size * world, seed  # the world's batch
        self.rank, self.world = rank, world
        self.shuffle, self.bucket, self.pool = shuffle, bucket, max(1, pool)
        self.bos_id, self.eos_id = bos_id, eos_id
        self.lengths = np.array([(len(s), len(t)) for s, t, *_ in pairs], dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)

    def num_batches(self) -> int:
        return len(self)

    def order(self, epoch: int = 0) -> list[np.ndarray]:
        """The index arrays of epoch `epoch`'s batches."""
        n, size = len(self.pairs), self.batch_size
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            pools = [order[i: i + size * self.pool] for i in range(0, n, size * self.pool)]
            # lexsort: the last key is the primary one; stable, so equal lengths keep the shuffled order
            order = np.concatenate([p[np.lexsort((self.lengths[p, 1], self.lengths[p, 0]))] for p in pools])
        batches = [order[i: i + size] for i in range(0, n, size)]
        if self.bucket and self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        return batches

    def batches(self, epoch: int = 0, start: int = 0):
        """Yield epoch `epoch`'s batches from batch `start` on."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}], got {start}")
        for rows in self.order(epoch)[start:]:
            rows = rank_rows(rows, self.rank, self.world)
            batch = pair_batch([self.pairs[i][0] for i in rows], [self.pairs[i][1] for i in rows],
                               self.bos_id, self.eos_id)
            batch["index"] = rows.astype(np.int64)
            yield batch

    def __iter__(self):
        return self.batches(0)

    def __repr__(self) -> str:
        return (f"PairBatcher(pairs={len(self.pairs)}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, bucket={self.bucket})")
