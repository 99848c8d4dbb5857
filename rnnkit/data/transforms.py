"""Invertible transforms of a series (time, columns), fitted on the training part only.

In order, each optional:

    u = log(y + offset)                 (log=True; every y + offset must be > 0; offset 1: log1p, for
                                         counts with zeros such as sunspots)
    u = u - line(t)                     (trend=True: a straight line a + b t, least squares on the training
                                         part (trend_steps=k: on its last k steps only), t = the step's
                                         position, 0 at the first training step; the inverse adds the line
                                         back, continued over the forecast's steps. damping=phi < 1: after
                                         the training part's last position e - 1 the slope shrinks by phi a
                                         step, ETS' damped trend: line(t) = a + b (e - 1) + b (phi + ... +
                                         phi^(t - e + 1)) for t >= e)
    v = (1 - B)^d u                     (diff=d: d first differences, v_t = u_t - u_{t-1})
    w = (1 - B^m) v                     (season=m: the seasonal difference, w_t = v_t - v_{t-m})
    z = (w - mean) / std                (scale=True: mean and std of w over the training part, per column)

A difference already removes a straight line, so `trend` excludes them. Each difference drops its lag's first steps: transform(y) has len(y) - lost rows, lost = d + m, and its row
j belongs to row j + lost of y. `inverse(z, history)` undoes all of it for forecasts z (..., horizon,
columns) that continue `history` (time >= lost, columns), given in the original scale: the differences are
undone by the recursions u_t = v_t + u_{t-1} and v_t = w_t + v_{t-m}, seeded with the history's last values
and then fed the forecast's own, so that inverse(transform(y)[k:], y[:k + lost]) == y[k + lost:] exactly
(to float rounding). With a trend, y and history take `start`, the position of their first row (0: the
first training step), since the line depends on it. Scaling and log are monotone, so a quantile of z maps to the same quantile of y; a
difference is not (a level is a sum of steps): invert sample paths and take their quantiles instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class SeriesTransform:
    log: bool = False
    offset: float = 0.0  # added before the log
    diff: int = 0
    season: int = 0
    trend: bool = False
    trend_steps: int = 0  # fit the line on the training part's last trend_steps steps (0: all of them)
    damping: float = 1.0  # phi: the line's slope times phi each step after the training part
    scale: bool = True
    intercept: list = field(default_factory=list)  # fitted with trend: per column, the line a + b t of u
    slope: list = field(default_factory=list)
    end: int = 0  # fitted with trend: the position one past the training part's last step (e)
    mean: list = field(default_factory=list)  # fitted: per column, of w over the training part
    std: list = field(default_factory=list)

    def __post_init__(self):
        if self.diff not in (0, 1, 2):
            raise ValueError(f"diff (the order of differencing) must be 0, 1 or 2, got {self.diff}")
        if not np.isfinite(self.offset) or (self.offset and not self.log):
            raise ValueError(f"the log offset must be finite and needs log=True, got {self.offset}")
        if self.season < 0 or self.season == 1:
            raise ValueError(f"season (the seasonal differencing lag) must be 0 (none) or >= 2, got {self.season}")
        if self.trend_steps < 0 or self.trend_steps == 1:
            raise ValueError(f"trend_steps (the steps the line is fitted on) must be 0 (all) or >= 2, "
                             f"got {self.trend_steps}")
        if not 0 < self.damping <= 1:
            raise ValueError(f"the trend's damping must lie in (0, 1], got {self.damping}")
        if (self.trend_steps or self.damping != 1) and not self.trend:
            raise ValueError("trend_steps and damping shape the trend: they need trend=True")
        if self.trend and self.lost:
            raise ValueError("a trend and differences exclude each other: a difference already removes a straight "
                             "line; take one or the other")

    @property
    def lost(self) -> int:
        """How many leading steps the differences drop."""
        return self.diff + self.season

    @property
    def lags(self) -> list[int]:
        return [1] * self.diff + ([self.season] if self.season else [])

    def _line(self, start: int, steps: int) -> np.ndarray:
        """The fitted line at the positions start .. start + steps - 1: (steps, columns); a + b t up to the
        training part's last position e - 1, then (damping phi < 1) a + b (e - 1) + b sum_{i=1..t-e+1} phi^i."""
        t = np.arange(start, start + steps, dtype=np.float64)
        if self.damping != 1:
            after = np.maximum(t - (self.end - 1), 0)                  # steps past the last training position
            phi = self.damping
            t = np.minimum(t, self.end - 1) + phi * (1 - phi ** after) / (1 - phi)
        return np.asarray(self.intercept) + np.asarray(self.slope) * t[:, None]

    def _stages(self, y, start: int = 0) -> list[np.ndarray]:
        """[u (detrended), after the first difference, ..., w]: the series before each difference and after the
        last; y's first row is at position `start`."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2:
            raise ValueError(f"expected a series of shape (time, columns), got {y.shape}")
        if self.log:
            if np.any(y + self.offset <= 0):
                t, c = map(int, np.argwhere(y + self.offset <= 0)[0])
                raise ValueError(f"the log transform needs values above {0.0 - self.offset:g}; column {c} holds "
                                 f"{y[t, c]:g} at step {t}; drop log (--no-log) or raise --log-offset")
            y = np.log(y + self.offset)
        if self.trend:
            if len(self.slope) != y.shape[1]:
                raise ValueError(f"the trend is fitted for {len(self.slope)} columns, got {y.shape[1]}"
                                 if self.slope else "the transform is not fitted; call fit(train) first")
            y = y - self._line(start, len(y))
        stages = [y]
        for lag in self.lags:
            stages.append(stages[-1][lag:] - stages[-1][:-lag])
        return stages

    def fit(self, y) -> "SeriesTransform":
        """Fit the line (with trend), mean and std on the training series y (time, columns), its first row at
        position 0; returns self."""
        y = np.asarray(y, dtype=np.float64)
        if len(y) < self.lost + 2:
            raise ValueError(f"{len(y)} training steps are too few for differences of lags {self.lags} "
                             f"(need at least {self.lost + 2})")
        if self.trend:  # least squares over the last k steps: b = cov(t, u) / var(t), a = mean(u) - b mean(t)
            k = self.trend_steps or len(y)
            if k > len(y):
                raise ValueError(f"the trend is to be fitted on the last {k} steps; the training part has {len(y)}")
            u = SeriesTransform(log=self.log, offset=self.offset, scale=False)._stages(y)[0][-k:]
            t = np.arange(len(y) - k, len(y), dtype=np.float64)
            self.end = len(y)
            slope = ((t - t.mean()) @ (u - u.mean(axis=0))) / ((t - t.mean()) @ (t - t.mean()))
            self.intercept, self.slope = (u.mean(axis=0) - slope * t.mean()).tolist(), slope.tolist()
        w = self._stages(y)[-1]
        if self.scale:
            std = w.std(axis=0)
            self.mean, self.std = w.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist()
        else:
            self.mean, self.std = [0.0] * w.shape[1], [1.0] * w.shape[1]
        return self

    def _check_fitted(self, columns: int) -> None:
        if len(self.mean) != columns:
            raise ValueError(f"the transform is fitted for {len(self.mean)} columns, got {columns}"
                             if self.mean else "the transform is not fitted; call fit(train) first")

    def transform(self, y, start: int = 0) -> np.ndarray:
        """z (time - lost, columns) of a series y (time, columns) whose first row is at position `start`."""
        w = self._stages(y, start)[-1]
        self._check_fitted(w.shape[1])
        return (w - np.asarray(self.mean)) / np.asarray(self.std)

    def inverse(self, z, history, start: int = 0) -> np.ndarray:
        """The forecasts z (..., horizon, columns) in the original scale, continuing `history` (time, columns)
        whose first row is at position `start`."""
        z = np.asarray(z, dtype=np.float64)
        history = np.asarray(history, dtype=np.float64)
        self._check_fitted(z.shape[-1])
        if history.ndim != 2 or history.shape[1] != z.shape[-1] or len(history) < self.lost:
            raise ValueError(f"the history must have shape (time >= {self.lost}, {z.shape[-1]}), "
                             f"got {history.shape}")
        out = z * np.asarray(self.std) + np.asarray(self.mean)
        stages = self._stages(history, start)
        horizon = z.shape[-2]
        for lag, before in zip(reversed(self.lags), reversed(stages[:-1])):
            # x_t = d_t + x_{t-lag}: seed with the last `lag` values of the stage before this difference
            buf = np.concatenate([np.broadcast_to(before[-lag:], out.shape[:-2] + before[-lag:].shape), out], -2)
            for k in range(horizon):
                buf[..., lag + k, :] += buf[..., k, :]
            out = buf[..., lag:, :]
        if self.trend:
            out = out + self._line(start + len(history), horizon)
        return np.exp(out) - self.offset if self.log else out

    def to_dict(self) -> dict:
        """JSON-ready settings and fitted values (for a checkpoint's config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SeriesTransform":
        known = {k: d[k] for k in ("log", "offset", "diff", "season", "trend", "trend_steps", "damping", "scale",
                                   "mean", "std", "intercept", "slope", "end") if k in d}
        return cls(**known)
