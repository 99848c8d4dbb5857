"""Forecasting samples: sliding (window, horizon) cuts of a series, and seeded batches of them.

Sample i starts at s = i * stride. With inputs (time, input_size), target (time, output_size) and the
known-future covariates future (time, future_size), each row of the same time step:

    x      = inputs[s : s + window]                          (window, input_size)   what the encoder reads
    y      = target[s + window : s + window + horizon]       (horizon, output_size) what is forecast
    y_prev = target[s + window - 1 : s + window + horizon - 1]  the true value one step earlier (the
                                                             autoregressive decoder's teacher-forced input)
    future = future[s + window : s + window + horizon]       (horizon, future_size) known ahead (calendar)

`sliding_windows` returns these stacked over the samples as a dict of arrays {"x": (N, window, input_size),
"y", "y_prev", "future" (only when future is given)}; `batches` cuts such a dict into batches, shuffled
by a generator seeded with (seed, epoch), so that an epoch's order is reproducible and resumable.

`relative_to_level` makes each sample relative to its window's own level, the mean of its targets over the
window (the targets are x's first `columns` features, as the forecaster builds its inputs):

    m      = mean_s x[s, :columns]                           (1, columns)           the window's level
    x[:, :columns] - m,   y - m,   y_prev - m                the network reads and forecasts these; the
                                                             forecast adds m back
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .batching import rank_rows


def n_windows(time: int, window: int, horizon: int, stride: int = 1) -> int:
    """How many samples a series of `time` steps gives (0 if it is shorter than window + horizon)."""
    if window < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"window, horizon and stride must be >= 1, got {window}, {horizon}, {stride}")
    return max(0, (time - window - horizon) // stride + 1)


def _cut(a: np.ndarray, start: int, length: int, starts: np.ndarray) -> np.ndarray:
    """a[s + start : s + start + length] for every s in starts: (N, length, features)."""
    view = sliding_window_view(a, length, axis=0)  # (time - length + 1, features, length)
    return np.ascontiguousarray(view[starts + start].transpose(0, 2, 1))


def sliding_windows(inputs, target, window: int, horizon: int, future=None, stride: int = 1) -> dict:
    """Every (window, horizon) sample of a series; see the module docstring."""
    inputs, target = np.asarray(inputs), np.asarray(target)
    if inputs.ndim != 2 or target.ndim != 2 or len(inputs) != len(target):
        raise ValueError(f"inputs and target must be (time, features) of the same length, got {inputs.shape} "
                         f"and {target.shape}")
    if future is not None:
        future = np.asarray(future)
        if future.ndim != 2 or len(future) != len(target):
            raise ValueError(f"future must be (time, features) like the target, got {future.shape}")
    n = n_windows(len(target), window, horizon, stride)
    if n == 0:
        raise ValueError(f"the series has {len(target)} steps, fewer than the input window plus the horizon "
                         f"({window} + {horizon} = {window + horizon})")
    starts = np.arange(n) * stride
    out = {"x": _cut(inputs, 0, window, starts), "y": _cut(target, window, horizon, starts),
           "y_prev": _cut(target, window - 1, horizon, starts)}
    if future is not None:
        out["future"] = _cut(future, window, horizon, starts)
    return out


def batches(samples: dict, batch_size: int, seed: int | None = None, epoch: int = 0, shuffle: bool = True,
            rank: int = 0, world: int = 1):
    """Yield dicts of up to `batch_size` samples (the last batch may be smaller); shuffled by a generator
    seeded with (seed, epoch) when `shuffle`, else in order. world > 1: rank `rank`'s share of each of the
    world's batches of world·batch_size samples (rnnkit/data/batching.py: rank_rows)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(next(iter(samples.values())))
    order = np.random.default_rng([seed or 0, epoch]).permutation(n) if shuffle else np.arange(n)
    size = batch_size * world
    for i in range(0, n, size):
        take = rank_rows(order[i:i + size], rank, world)
        yield {k: v[take] for k, v in samples.items()}


def relative_inputs(x: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(x with each window's level subtracted from its first `columns` features, a copy; the levels, the
    means over each window's steps of those features, (N, 1, columns)) for windows x (N, window, features)."""
    if x.ndim != 3 or not 1 <= columns <= x.shape[2]:
        raise ValueError(f"expected windows (N, window, features >= {columns}), got {x.shape}")
    level = x[:, :, :columns].mean(axis=1, keepdims=True)
    relative = x.copy()
    relative[:, :, :columns] -= level
    return relative, level


def relative_to_level(samples: dict, columns: int) -> dict:
    """`sliding_windows`' samples made relative to each window's level (see the module docstring): a copy
    with the level taken from x's first `columns` features (the targets), y and y_prev."""
    x, level = relative_inputs(samples["x"], columns)
    return dict(samples, x=x, y=samples["y"] - level, y_prev=samples["y_prev"] - level)
