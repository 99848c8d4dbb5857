"""Baseline forecasters and backtests (rnnkit.tasks.forecast_baselines, rnnkit.tasks.backtest)."""
import numpy as np
import pytest

from rnnkit import metrics as M
from rnnkit.tasks import forecast_baselines as B
from rnnkit.tasks.backtest import backtest, historical_forecasts, start_index, stateless

Y = np.array([3.0, 5.0, 4.0, 6.0, 8.0, 7.0, 9.0, 11.0])


def test_naive_seasonal_naive_drift_by_hand():
    np.testing.assert_array_equal(B.naive(Y, 3), [11, 11, 11])
    np.testing.assert_array_equal(B.seasonal_naive(Y, 5, m=3), [7, 9, 11, 7, 9])
    np.testing.assert_allclose(B.drift(Y, 2), [11 + 8 / 7, 11 + 16 / 7])  # slope (11 - 3) / 7
    two = np.stack([Y, -Y], 1)
    np.testing.assert_array_equal(B.seasonal_naive(two, 2, m=2), [[9, -9], [11, -11]])
    assert B.drift(two, 1).shape == (1, 2)
    with pytest.raises(ValueError, match=r"period m in 1..8"):
        B.seasonal_naive(Y, 2, m=9)
    with pytest.raises(ValueError, match="unknown baseline 'mean'"):
        B.baseline("mean")
    assert B.baseline("seasonal-naive", m=4)(Y, 1).tolist() == [8.0]


def test_historical_forecasts_expanding_window():
    seen = []

    def fit(history):
        seen.append(("fit", len(history)))
        return len(history)

    def predict(model, history, horizon):
        seen.append(("predict", model, len(history)))
        return np.full(horizon, history[-1])

    starts, forecasts = historical_forecasts(Y, 4, 2, 2, fit, predict, retrain=False)
    assert starts.tolist() == [4, 6] and forecasts.tolist() == [[6, 6], [7, 7]]
    assert seen == [("fit", 4), ("predict", 4, 4), ("predict", 4, 6)]  # fitted once, fed the longer history
    seen.clear()
    historical_forecasts(Y, 3, 1, 1, fit, predict, retrain=2)
    assert [s for s in seen if s[0] == "fit"] == [("fit", 3), ("fit", 5), ("fit", 7)]


def test_naive_backtest_mae_equals_hand_computation():
    # forecasts from t0 = 4 and 6 (horizon 2): naive from y[3] = 6 -> truth 8, 7; from y[5] = 7 -> 9, 11
    result = backtest(Y, 4, 2, 2, *stateless(B.naive), metrics=("mae", "mape", "mase"))
    assert result["starts"] == [4, 6]
    assert result["per_forecast"]["mae"] == [pytest.approx(1.5), pytest.approx(3.0)]
    assert result["mae"] == pytest.approx((2 + 1 + 2 + 4) / 4)
    assert result["mape"] == pytest.approx(100 * np.mean([2 / 8, 1 / 7, 2 / 9, 4 / 11]))
    # MASE of each forecast is scaled by the naive error of its own history
    scale4, scale6 = np.mean(np.abs(np.diff(Y[:4]))), np.mean(np.abs(np.diff(Y[:6])))
    assert result["mase"] == pytest.approx((1.5 / scale4 + 3.0 / scale6) / 2)


def test_last_points_only():
    # darts' default: the series of each forecast's last point, scored as one: naive from t0 = 4 and 6,
    # horizon 2 -> last points y[5] = 7 (forecast 6) and y[7] = 11 (forecast 7)
    result = backtest(Y, 4, 2, 2, *stateless(B.naive), metrics=("mae", "mape"), last_points_only=True)
    assert result["mae"] == pytest.approx((1 + 4) / 2)
    assert result["mape"] == pytest.approx(100 * (1 / 7 + 4 / 11) / 2)
    # every forecast comes back with the scores (naive: y[3] = 6 twice, then y[5] = 7 twice)
    np.testing.assert_array_equal(result["forecasts"], [[6, 6], [7, 7]])
    np.testing.assert_array_equal(backtest(Y, 4, 2, 2, *stateless(B.naive), metrics=("mae",))["forecasts"],
                                  result["forecasts"])


def test_start_forms_and_errors():
    assert start_index(10, 0.5, 2) == 5 and start_index(10, -3, 2) == 7 and start_index(10, 4, 2) == 4
    with pytest.raises(ValueError, match=r"must start in 1..8 .* got 9"):
        start_index(10, 9, 2)
    with pytest.raises(ValueError, match="returned shape"):
        historical_forecasts(Y, 4, 2, 1, lambda h: None, lambda m, h, n: np.zeros(n + 1))


def test_ets_follows_trend_and_season():
    pytest.importorskip("statsmodels")
    t = np.arange(48.0)
    y = 10 + 0.5 * t + 3 * np.sin(2 * np.pi * t / 4)  # trend + period 4, exactly
    truth = 10 + 0.5 * np.arange(48, 56) + 3 * np.sin(2 * np.pi * np.arange(48, 56) / 4)
    assert M.mae(truth, B.ets(y, 8, m=4)) < 0.05
    assert M.mae(truth, B.seasonal_naive(y, 8, m=4)) == pytest.approx(3.0)  # misses the trend: 2, then 4
    assert M.mae(truth, B.ets(y, 8, m=1)) > 1.0  # without its season, Holt's linear trend cannot follow


@pytest.mark.slow
def test_auto_arima_fits_an_ar1():
    pytest.importorskip("pmdarima")
    rng = np.random.default_rng(0)
    y = np.zeros(40)
    for i in range(1, 40):
        y[i] = 0.8 * y[i - 1] + rng.normal()
    f = B.auto_arima(20 + y, 3, start_p=0, start_q=0, max_p=1, max_q=0, d=0)
    # a fitted AR(1) decays geometrically towards its mean: the steps shrink by the same factor
    steps = np.diff(np.concatenate([[20 + y[-1]], f]))
    assert f.shape == (3,) and 0 < steps[1] / steps[0] < 1 and steps[2] / steps[1] == pytest.approx(steps[1] / steps[0])


def test_simple_baselines_intervals_by_hand():
    """point -+ z sigma_h with FPP3's sigma_h (module docstring), on Y (8 steps)."""
    z80 = 1.2815515655446004
    steps = np.diff(Y)
    point, iv = B.naive_intervals(Y, 3, (80,))
    sigma = np.sqrt(np.mean(steps ** 2))
    np.testing.assert_allclose(iv[80][1] - point, z80 * sigma * np.sqrt([1, 2, 3]), rtol=1e-12)
    np.testing.assert_allclose(point - iv[80][0], z80 * sigma * np.sqrt([1, 2, 3]), rtol=1e-12)
    point, iv = B.seasonal_naive_intervals(Y, 5, (80,), m=2)
    np.testing.assert_array_equal(point, B.seasonal_naive(Y, 5, m=2))
    sigma = np.sqrt(np.mean((Y[2:] - Y[:-2]) ** 2))
    np.testing.assert_allclose(iv[80][1] - point, z80 * sigma * np.sqrt([1, 1, 2, 2, 3]), rtol=1e-12)
    point, iv = B.drift_intervals(Y, 2, (80,))
    sigma = np.sqrt(np.sum((steps - steps.mean()) ** 2) / 6)  # 7 residuals, 1 parameter
    np.testing.assert_allclose(iv[80][1] - point, z80 * sigma * np.sqrt([1 * (1 + 1 / 8), 2 * (1 + 2 / 8)]),
                               rtol=1e-12)
    point, iv = B.naive_intervals(np.stack([Y, 2 * Y], 1), 2, (80, 95))  # columns apart
    assert point.shape == iv[95][0].shape == (2, 2)
    np.testing.assert_allclose(iv[80][1][:, 1] - point[:, 1], 2 * (iv[80][1][:, 0] - point[:, 0]), rtol=1e-12)
    assert np.all(iv[95][1] > iv[80][1])
    with pytest.raises(ValueError, match="need more than m = 8 steps"):
        B.seasonal_naive_intervals(Y, 2, (80,), m=8)
    with pytest.raises(ValueError, match="need at least 2 steps"):
        B.naive_intervals(Y[:1], 2, (80,))
    with pytest.raises(ValueError, match=r"drift forecast's intervals need more history \(1 residuals\)"):
        B.drift_intervals(Y[:2], 2, (80,))


@pytest.mark.parametrize("name, make", [
    ("naive", lambda e, n: np.cumsum(e, axis=1)),                              # a random walk
    ("seasonal-naive", lambda e, n: np.cumsum(e.reshape(len(e), -1, 4), axis=1).reshape(len(e), n)),  # one per season
    ("drift", lambda e, n: np.cumsum(e + 0.5, axis=1)),                        # a random walk with drift
])
def test_simple_baselines_intervals_cover_at_their_level_where_their_model_holds(name, make):
    """On 2000 series drawn from the model each interval assumes, the 80 % and 95 % intervals of a 6-step
    forecast cover close to 80 % and 95 % of the truth (binomial sd about 0.4 %; drift's sigma is estimated
    from 94 steps, so a little under)."""
    rng = np.random.default_rng(0)
    n, h = 100, 8
    series = make(rng.standard_normal((2000, n)), n)
    fn = B.baseline_intervals(name, m=4)
    hits = {80: [], 95: []}
    for y in series:
        _, iv = fn(y[:n - h], h, (80, 95))
        for lv in hits:
            hits[lv].append(np.mean((iv[lv][0] <= y[n - h:]) & (y[n - h:] <= iv[lv][1])))
    assert np.mean(hits[80]) == pytest.approx(0.80, abs=0.015)
    assert np.mean(hits[95]) == pytest.approx(0.95, abs=0.01)


def test_ets_and_auto_arima_intervals_around_their_forecasts():
    pytest.importorskip("statsmodels")
    pytest.importorskip("pmdarima")
    rng = np.random.default_rng(1)
    t = np.arange(96)
    seasonal = 50 + 0.5 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(size=96)
    ar = np.zeros(200)
    for i in range(1, 200):
        ar[i] = 0.7 * ar[i - 1] + rng.normal()
    for name, y, m in (("ets", seasonal, 12), ("auto-arima", ar, 1)):
        point, iv = B.baseline_intervals(name, m=m)(y, 12, (80, 95))
        np.testing.assert_allclose(point, B.baseline(name, m=m)(y, 12), rtol=1e-10)
        assert np.all(iv[95][0] < iv[80][0]) and np.all(iv[80][0] < point) and np.all(point < iv[80][1])
        assert np.all(iv[80][1] < iv[95][1])
        # the 95 % half-width of the first step: about 1.96 times the noise's sd of 1
        assert 1.5 < (iv[95][1][0] - iv[95][0][0]) / 2 < 2.5
