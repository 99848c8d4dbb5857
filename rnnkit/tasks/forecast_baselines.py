"""Baseline forecasters every forecasting model is compared with, on the same history and horizon.

Each is a function forecast(history, horizon) -> (horizon,) or (horizon, columns), history (time,) or
(time, columns), columns forecast independently:

    naive            yhat_{T+k} = y_T
    seasonal naive   yhat_{T+k} = y_{T+k-m*ceil(k/m)}   (the last observed value of the same season)
    drift            yhat_{T+k} = y_T + k (y_T - y_1) / (T - 1)   (the line through the first and last values)
    ETS              Holt-Winters exponential smoothing, statsmodels' ExponentialSmoothing (additive trend
                     and seasonality with period m by default, as darts' ExponentialSmoothing)
    AutoARIMA        pmdarima's auto_arima (stepwise search by AIC); seasonal with period m when m > 1

ETS and AutoARIMA need `pip install 'rnnkit[forecast]'` (statsmodels, pmdarima). `BASELINES` names them
(as the CLI and the benchmark do) and `baseline(name, m)` gives one as a function of (history, horizon).
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np


def _columns(history) -> tuple[np.ndarray, bool]:
    y = np.asarray(history, dtype=np.float64)
    if y.ndim not in (1, 2) or len(y) == 0:
        raise ValueError(f"history must be (time,) or (time, columns) and non-empty, got shape {y.shape}")
    return (y[:, None] if y.ndim == 1 else y), y.ndim == 1


def _check_horizon(horizon: int) -> None:
    if horizon < 1:
        raise ValueError(f"the horizon must be >= 1, got {horizon}")


def naive(history, horizon: int) -> np.ndarray:
    """The last value, repeated."""
    y, flat = _columns(history)
    _check_horizon(horizon)
    out = np.repeat(y[-1:], horizon, axis=0)
    return out[:, 0] if flat else out


def seasonal_naive(history, horizon: int, m: int = 12) -> np.ndarray:
    """The last season repeated: yhat_{T+k} = y_{T - m + ((k - 1) mod m)} for k = 1..horizon (0-based T)."""
    y, flat = _columns(history)
    _check_horizon(horizon)
    if not 1 <= m <= len(y):
        raise ValueError(f"seasonal naive needs a period m in 1..{len(y)} (the history's length), got {m}")
    out = y[len(y) - m + np.arange(horizon) % m]
    return out[:, 0] if flat else out


def drift(history, horizon: int) -> np.ndarray:
    """The last value plus k times the mean step over the history."""
    y, flat = _columns(history)
    _check_horizon(horizon)
    if len(y) < 2:
        raise ValueError("the drift forecast needs at least 2 steps of history")
    slope = (y[-1] - y[0]) / (len(y) - 1)
    out = y[-1] + np.arange(1, horizon + 1)[:, None] * slope
    return out[:, 0] if flat else out


def _per_column(fn, history, horizon: int) -> np.ndarray:
    y, flat = _columns(history)
    _check_horizon(horizon)
    out = np.stack([np.asarray(fn(y[:, j], horizon), dtype=np.float64) for j in range(y.shape[1])], axis=1)
    return out[:, 0] if flat else out


def ets(history, horizon: int, m: int = 12, trend: str | None = "add", seasonal: str | None = "add",
        damped: bool = False) -> np.ndarray:
    """Holt-Winters exponential smoothing (statsmodels), fitted by maximum likelihood on the history."""
    try:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
    except ImportError as e:
        raise ImportError("the ETS baseline needs statsmodels: pip install 'rnnkit[forecast]'") from e
    seasonal = seasonal if m > 1 else None

    def one(y, h):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' convergence chatter
            model = ExponentialSmoothing(y, trend=trend, damped_trend=damped and trend is not None,
                                         seasonal=seasonal, seasonal_periods=m if seasonal else None)
            return model.fit().forecast(h)

    return _per_column(one, history, horizon)


def auto_arima(history, horizon: int, m: int = 1, **search) -> np.ndarray:
    """pmdarima's auto_arima with its defaults (stepwise), seasonal with period m when m > 1; `search`
    passes on limits of the search (max_p=, max_q=, ...)."""
    try:
        import pmdarima
    except ImportError as e:
        raise ImportError("the AutoARIMA baseline needs pmdarima: pip install 'rnnkit[forecast]'") from e

    def one(y, h):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = pmdarima.auto_arima(y, m=m, seasonal=m > 1, suppress_warnings=True, error_action="ignore",
                                         **search)
            return model.predict(n_periods=h)

    return _per_column(one, history, horizon)


# name -> (function, whether it takes the seasonal period m); the first three need NumPy only
BASELINES = {"naive": (naive, False), "seasonal-naive": (seasonal_naive, True), "drift": (drift, False),
             "ets": (ets, True), "auto-arima": (auto_arima, True)}
NUMPY_BASELINES = ("naive", "seasonal-naive", "drift")


def baseline(name: str, m: int = 1):
    """The baseline `name` as a function forecast(history, horizon), with seasonal period m where it has one."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    fn, seasonal = BASELINES[name]
    return partial(fn, m=m) if seasonal else fn
