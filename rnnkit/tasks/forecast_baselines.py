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

`baseline_intervals(name, m)` gives the same forecast with prediction intervals, as a function of (history,
horizon, levels) -> (forecast, {level: (lower, upper)}). The three simple ones have Gaussian intervals
point -+ z sigma_h, sigma from their one-step residuals on the history (Hyndman & Athanasopoulos, Forecasting:
Principles and Practice, 3rd ed., section 5.5, as R's fable computes them):

    naive            e_t = y_t - y_{t-1},                      sigma_h = sigma sqrt(h)
    seasonal naive   e_t = y_t - y_{t-m},                      sigma_h = sigma sqrt(floor((h - 1) / m) + 1)
    drift            e_t = y_t - y_{t-1} - slope (1 parameter), sigma_h = sigma sqrt(h (1 + h / T))

sigma^2 = sum e_t^2 / (residuals - parameters), T the history's length. ETS's intervals are the quantiles of
1000 paths simulated from the fitted model (statsmodels' `simulate`, Gaussian errors, seed 0); AutoARIMA's are
pmdarima's (`predict(return_conf_int=True)`).
"""

from __future__ import annotations

import warnings
from functools import partial
from statistics import NormalDist

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


# ------------------------------------------------------------------------------------------------ intervals

def _gaussian(point: np.ndarray, sigma: np.ndarray, levels) -> dict:
    """{level: (point - z sigma, point + z sigma)}, z the standard normal's (1 + level / 100) / 2 quantile."""
    z = {lv: NormalDist().inv_cdf(0.5 + lv / 200) for lv in levels}
    return {lv: (point - z[lv] * sigma, point + z[lv] * sigma) for lv in levels}


def _residual_sigma(residuals: np.ndarray, parameters: int, name: str) -> np.ndarray:
    """The residuals' spread per column, sqrt(sum e^2 / (n - parameters))."""
    n = len(residuals) - parameters
    if n < 1:
        raise ValueError(f"the {name} forecast's intervals need more history ({len(residuals)} residuals)")
    return np.sqrt(np.sum(residuals ** 2, axis=0) / n)


def _result(point: np.ndarray, intervals: dict, flat: bool) -> tuple[np.ndarray, dict]:
    """(point, {level: (lower, upper)}), each (horizon, columns), shaped as the history was: (horizon,) if flat."""
    def shaped(values):
        return values[:, 0] if flat else values
    return shaped(point), {lv: (shaped(lo), shaped(hi)) for lv, (lo, hi) in intervals.items()}


def naive_intervals(history, horizon: int, levels) -> tuple[np.ndarray, dict]:
    y, flat = _columns(history)
    point = naive(y, horizon)
    if len(y) < 2:
        raise ValueError("the naive forecast's intervals need at least 2 steps of history")
    sigma = _residual_sigma(np.diff(y, axis=0), 0, "naive") * np.sqrt(np.arange(1, horizon + 1))[:, None]
    return _result(point, _gaussian(point, sigma, levels), flat)


def seasonal_naive_intervals(history, horizon: int, levels, m: int = 12) -> tuple[np.ndarray, dict]:
    y, flat = _columns(history)
    point = seasonal_naive(y, horizon, m)
    if len(y) <= m:
        raise ValueError(f"the seasonal naive forecast's intervals need more than m = {m} steps of history")
    seasons = np.arange(horizon) // m + 1  # floor((h - 1) / m) + 1
    sigma = _residual_sigma(y[m:] - y[:-m], 0, "seasonal naive") * np.sqrt(seasons)[:, None]
    return _result(point, _gaussian(point, sigma, levels), flat)


def drift_intervals(history, horizon: int, levels) -> tuple[np.ndarray, dict]:
    y, flat = _columns(history)
    point = drift(y, horizon)
    steps = np.diff(y, axis=0)
    h = np.arange(1, horizon + 1)[:, None]
    sigma = _residual_sigma(steps - steps.mean(axis=0), 1, "drift") * np.sqrt(h * (1 + h / len(y)))
    return _result(point, _gaussian(point, sigma, levels), flat)


def ets_intervals(history, horizon: int, levels, m: int = 12, paths: int = 1000) -> tuple[np.ndarray, dict]:
    """`ets`'s forecast, and intervals from `paths` simulated futures of the fitted model."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y, flat = _columns(history)
    _check_horizon(horizon)
    seasonal = "add" if m > 1 else None
    points, bounds = [], {lv: ([], []) for lv in levels}
    for j in range(y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing(y[:, j], trend="add", seasonal=seasonal,
                                       seasonal_periods=m if seasonal else None).fit()
            sims = np.asarray(fit.simulate(horizon, repetitions=paths, error="add", random_state=0))
        points.append(np.asarray(fit.forecast(horizon), dtype=np.float64))
        for lv in levels:
            lo, hi = np.quantile(sims.reshape(horizon, -1), [0.5 - lv / 200, 0.5 + lv / 200], axis=1)
            bounds[lv][0].append(lo)
            bounds[lv][1].append(hi)
    return _result(np.stack(points, axis=1), {lv: (np.stack(lo, 1), np.stack(hi, 1)) for lv, (lo, hi) in
                                              bounds.items()}, flat)


def auto_arima_intervals(history, horizon: int, levels, m: int = 1, **search) -> tuple[np.ndarray, dict]:
    """`auto_arima`'s forecast, and pmdarima's intervals of the model it chose."""
    import pmdarima

    y, flat = _columns(history)
    _check_horizon(horizon)
    points, bounds = [], {lv: ([], []) for lv in levels}
    for j in range(y.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = pmdarima.auto_arima(y[:, j], m=m, seasonal=m > 1, suppress_warnings=True,
                                         error_action="ignore", **search)
            points.append(np.asarray(model.predict(n_periods=horizon), dtype=np.float64))
            for lv in levels:
                _, ci = model.predict(n_periods=horizon, return_conf_int=True, alpha=1 - lv / 100)
                bounds[lv][0].append(np.asarray(ci)[:, 0])
                bounds[lv][1].append(np.asarray(ci)[:, 1])
    return _result(np.stack(points, axis=1), {lv: (np.stack(lo, 1), np.stack(hi, 1)) for lv, (lo, hi) in
                                              bounds.items()}, flat)


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


INTERVALS = {"naive": naive_intervals, "seasonal-naive": seasonal_naive_intervals, "drift": drift_intervals,
             "ets": ets_intervals, "auto-arima": auto_arima_intervals}


def baseline_intervals(name: str, m: int = 1):
    """The baseline `name` with intervals, as a function (history, horizon, levels) -> (forecast,
    {level: (lower, upper)}); the forecast is `baseline(name, m)`'s."""
    if name not in INTERVALS:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(INTERVALS)}")
    fn, seasonal = INTERVALS[name], BASELINES[name][1]
    return partial(fn, m=m) if seasonal else fn
