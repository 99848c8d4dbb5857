"""Backtesting: historical forecasts over an expanding window, and metrics over all of them.

Engine-neutral: a forecaster is a pair of functions, `fit_fn(history) -> model` and
`predict_fn(model, history, horizon) -> (horizon,) or (horizon, columns)`, so the same code backtests the
NumPy baselines, statsmodels and an RNN. As darts' `historical_forecasts(..., last_points_only=False)`:
forecasts start at t0 = start, start + stride, ... while the whole horizon lies inside the series; each
sees the history y[:t0] only (the window expands). With retrain=True the model is fitted again on y[:t0]
before every forecast; with False it is fitted once, on y[:start], and then only fed the longer history;
an int k refits before every k-th forecast.
"""

from __future__ import annotations

import numpy as np

from .. import metrics as M

METRICS = ("mae", "rmse", "mape", "smape", "mase")


def start_index(n: int, start, horizon: int) -> int:
    """The row of the first forecast: an int (negative counts from the end) or a fraction in (0, 1) of n."""
    if isinstance(start, float):
        if not 0 < start < 1:
            raise ValueError(f"a fractional start must lie in (0, 1), got {start}")
        start = int(round(start * n))
    start = int(start) + (n if int(start) < 0 else 0)
    if not 1 <= start <= n - horizon:
        raise ValueError(f"the first forecast must start in 1..{n - horizon} (series of {n} steps, horizon "
                         f"{horizon}), got {start}")
    return start


def historical_forecasts(series, start, horizon: int, stride: int, fit_fn, predict_fn, retrain=True):
    """(starts (n,), forecasts (n, horizon, ...)): every forecast of the backtest (module docstring)."""
    y = np.asarray(series, dtype=np.float64)
    if horizon < 1 or stride < 1:
        raise ValueError(f"horizon and stride must be >= 1, got {horizon} and {stride}")
    start = start_index(len(y), start, horizon)
    every = 1 if retrain is True else 0 if retrain is False else int(retrain)
    if every < 0:
        raise ValueError(f"retrain must be True, False or an int >= 1, got {retrain}")
    starts = np.arange(start, len(y) - horizon + 1, stride)
    forecasts, model = [], None
    for i, t0 in enumerate(starts):
        if i == 0 or (every and i % every == 0):
            model = fit_fn(y[:t0])
        f = np.asarray(predict_fn(model, y[:t0], horizon), dtype=np.float64)
        if f.shape[:1] != (horizon,) or f.shape[1:2] != y.shape[1:2]:
            raise ValueError(f"predict_fn returned shape {f.shape}, expected ({horizon},) + {y.shape[1:]}")
        forecasts.append(f)
    return starts, np.stack(forecasts)


def score(truth, forecast, history, metrics=METRICS, m: int = 1) -> dict:
    """{metric: value} of one forecast; MASE is scaled by the seasonal naive error (period m) of `history`."""
    out = {}
    for name in metrics:
        if name == "mase":
            out[name] = M.mase(truth, forecast, history, m)
        elif name in METRICS:
            out[name] = getattr(M, name)(truth, forecast)
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return out


def backtest(series, start, horizon: int, stride: int, fit_fn, predict_fn, retrain=True, metrics=METRICS,
             m: int = 1, last_points_only: bool = False) -> dict:
    """Historical forecasts scored against the truth.

    Returns {"starts": [t0, ...], "forecasts": (n, horizon, ...) array, "per_forecast": {metric: [one value
    per forecast]}, metric: the mean over the forecasts} (darts' `backtest` with its default mean reduction;
    for MAE, MAPE and sMAPE this equals the metric over all forecast points pooled, as every forecast has the
    same horizon).
    last_points_only: score instead the series made of each forecast's last point (darts'
    historical_forecasts default, last_points_only=True), as one metric; MASE scaled by y[:start]."""
    y = np.asarray(series, dtype=np.float64)
    starts, forecasts = historical_forecasts(y, start, horizon, stride, fit_fn, predict_fn, retrain)
    if last_points_only:
        ends = starts + horizon - 1
        out = {"starts": starts.tolist(), "forecasts": forecasts, "last_points_only": True}
        out.update(score(y[ends], forecasts[:, -1], y[:starts[0]], metrics, m))
        return out
    per = [score(y[t0:t0 + horizon], f, y[:t0], metrics, m) for t0, f in zip(starts, forecasts)]
    out = {"starts": starts.tolist(), "forecasts": forecasts,
           "per_forecast": {k: [p[k] for p in per] for k in metrics}}
    out.update({k: float(np.mean(out["per_forecast"][k])) for k in metrics})
    return out


def stateless(forecast):
    """A forecast(history, horizon) function (a baseline) as the (fit_fn, predict_fn) pair backtests take."""
    return (lambda history: None), (lambda model, history, horizon: forecast(history, horizon))
