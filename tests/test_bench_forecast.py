"""benchmarks/forecast.py's RNN rows: the Forecaster trained before the first forecast, scored as the baselines."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rnnkit import metrics as M
from rnnkit.data import datasets
from rnnkit.tasks import forecast_baselines as B
from rnnkit.tasks.forecast import Forecaster

spec = importlib.util.spec_from_file_location("bench_forecast",
                                              Path(__file__).resolve().parents[1] / "benchmarks" / "forecast.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

TINY = dict(horizon=36, window=12, hidden=4, epochs=1, ensemble=2)


def test_rnn_row_scores_the_forecast_of_a_model_trained_before_it(tmp_path):
    series = datasets.load_series("air-passengers")
    start = series.index_of("1958-01")
    trained, cpu = bench.train_rnn(TINY, series, start, out=tmp_path)
    r = bench.rnn_backtest(trained, series, start, 36, 36, False)
    model = Forecaster.from_pretrained(tmp_path)
    assert len(model.engines) == 2 and str(model.history.dates[-1])[:7] == "1957-12"  # trained before 1958
    history, truth = series.slice(None, start), series.y[start:, 0]
    p = model.predict_interval(36, (80, 95), history=history)
    assert r["starts"] == ["1958-01"] and r["seeds"] == [0, 1] and cpu > 0
    assert r["mape"] == pytest.approx(M.mape(truth, p["forecast"][:, 0]), rel=1e-12)
    lo, hi = p["intervals"][80.0]
    assert r["coverage_80"] == pytest.approx(np.mean((lo[:, 0] <= truth) & (truth <= hi[:, 0])))


def test_rnn_row_in_the_table(monkeypatch):
    monkeypatch.setitem(bench.RNN, "air-holdout", (None, TINY))
    monkeypatch.setitem(bench.RNN, "air-backtest", ("1958-01", TINY))
    monkeypatch.setattr(bench, "_TRAINED", {})
    monkeypatch.setitem(bench.CALIBRATE, "air-holdout", (2, 6))
    result = bench.run("air-holdout", ["seasonal-naive", "rnn"])
    assert result["models"]["seasonal-naive"]["mape"] == pytest.approx(13.19, abs=0.005)  # darts' figure
    y = datasets.load_series("air-passengers").y[:, 0]  # its own intervals, from the 108 months before 1958
    lo, hi = B.seasonal_naive_intervals(y[:108], 36, (80,), m=12)[1][80]
    assert result["models"]["seasonal-naive"]["coverage_80"] == pytest.approx(M.coverage(y[108:], lo, hi))
    assert result["models"]["seasonal-naive"]["pinball"] > 0
    row = result["models"]["rnn"]
    assert row["forecasts"] == 1 and row["seeds"] == [0, 1] and row["cpu_s"] > 0 and 0 <= row["coverage_95"] <= 1
    assert row["settings"] == TINY and row["trained_before"] == "1958-01"
    # its intervals calibrated on 2 forecasts inside 1949-1957 (the last from 1955-01 ends in 1957-12)
    assert row["calibration"]["forecasts"] == 2 and row["calibration"]["last"] == "1955-01"
    assert row["calibration_cpu_s"] > 0 and 0 <= row["coverage_80_uncalibrated"] <= 1
    assert row["pinball"] > 0 and row["pinball_uncalibrated"] > 0
    # the last-points scoring reuses the model trained for the mean: its last point is forecast 36 of the mean's
    (key, trained), = bench._TRAINED.items()
    last = bench.run("air-holdout", ["rnn"], last_points_only=True)["models"]["rnn"]
    assert last["forecasts"] == 1 and last["mape"] != row["mape"] and last["coverage_80"] in (0, 1)  # one point
    assert trained[1] <= row["cpu_s"] + 0.01 and last["cpu_s"] == pytest.approx(row["cpu_s"], abs=0.5)  # trained once
    # the 6-month backtest from 1959-01 uses the same model, trained before 1958-01
    six = bench.run("air-backtest", ["rnn"])["models"]["rnn"]
    assert list(bench._TRAINED.items()) == [(key, trained)] and six["forecasts"] == 19
    assert six["trained_before"] == "1958-01" and 0 <= six["coverage_80"] <= 1 and six["pinball"] > 0
    table = bench.format_table({"protocols": {"air-holdout": result}})
    assert "| air-holdout | rnn (2 seeds) |" in table


def test_mape_darts_divides_by_the_forecast():
    # darts' RNN notebook prints mape(pred_series, val_series): its mape(actual, pred) divides by the first
    # argument, so the forecast. Forecasts from rows 2 and 4 (horizon 2): last points at rows 3 and 5.
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 10.0])
    forecasts = np.array([[[9.0], [5.0]], [[9.0], [8.0]]])
    assert bench.mape_darts(y, 2, 2, 2, forecasts) == pytest.approx(100 * (1 / 5 + 2 / 8) / 2)
    assert bench.mape_darts(y, 2, 2, 2, forecasts[..., 0]) == pytest.approx(100 * (1 / 5 + 2 / 8) / 2)


def test_ets_120_runs_on_sunspots_only(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "ets_minmax", lambda train, m: lambda history, horizon: calls.append(
        (len(train), m, len(history))) or np.full(horizon, history[-1]))
    air = bench.run("air-holdout", ["naive", "ets-120"])
    assert list(air["models"]) == ["naive"] and calls == []
    sun = bench.run("sunspots-backtest", ["ets-120"], last_points_only=True)
    row = sun["models"]["ets-120"]
    assert len(calls) == row["forecasts"] == 49 and sun["published_mape_darts"]["ets-120"] == 115.0
    first = datasets.load_series("sunspots").index_of("1940-10")
    assert calls[0] == (first + 1, 120, first) and calls[-1][2] == first + 480  # scaled on 1749-01 .. 1940-10
    # a naive forecast's last point: the month before each forecast; scored darts' way and the usual way
    series = datasets.load_series("sunspots")
    y, t = series.y[:, 0], series.index_of("1940-10") + 10 * np.arange(49)
    assert row["mape_darts"] == pytest.approx(M.mape(y[t - 1], y[t + 35]))
    assert row["mape"] == pytest.approx(M.mape(y[t + 35], y[t - 1]))


def test_select_mape_nonzero_skips_the_zero_months():
    spec = importlib.util.spec_from_file_location(
        "bench_forecast_select", Path(__file__).resolve().parents[1] / "benchmarks" / "forecast_select.py")
    select = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(select)
    y = np.array([1.0, 2.0, 0.0, 4.0, 5.0])
    forecasts = np.array([[1.0, 3.0], [2.0, 5.0]])  # from rows 1 and 3: truth (2, 0) and (4, 5)
    assert select.mape_nonzero(y, [1, 3], forecasts) == pytest.approx(100 * (1 / 2 + (2 / 4 + 0) / 2) / 2)


def test_ets_minmax_scales_and_scales_back(monkeypatch):
    seen = []
    monkeypatch.setattr(bench.B, "ets", lambda history, horizon, m: seen.append((history.copy(), m))
                        or np.full(horizon, 0.5))
    f = bench.ets_minmax(np.array([2.0, 6.0, 4.0]), 120)(np.array([2.0, 6.0, 4.0, 10.0]), 3)
    np.testing.assert_allclose(seen[0][0], [0.0, 1.0, 0.5, 2.0])
    assert seen[0][1] == 120
    np.testing.assert_allclose(f, [4.0, 4.0, 4.0])  # 0.5 * (6 - 2) + 2


def test_rnn_low_forecasts_the_lower_end_of_an_interval(tmp_path):
    # the point forecast is the quantile 0.1: the lower end of the 80 % interval
    series = datasets.load_series("sunspots")
    start = series.index_of("1980-01")
    settings = dict(horizon=6, window=12, hidden=4, epochs=1, levels="80")
    trained, _ = bench.train_rnn(settings, series, start, out=tmp_path)
    r = bench.rnn_backtest(trained, series, start, 6, 12, False, point_quantile=0.1)
    assert r["starts"] == [start, start + 12, start + 24, start + 36]
    lo = trained.predict_interval(6, (80,), history=series.slice(None, start + 12))["intervals"][80.0][0][:, 0]
    np.testing.assert_allclose(r["forecasts"][1], lo, rtol=1e-12)
    assert r["mape"] == pytest.approx(np.mean([M.mape(series.y[t:t + 6, 0], f) for t, f in
                                               zip(r["starts"], r["forecasts"])]))
    median = bench.rnn_backtest(trained, series, start, 6, 12, False)
    assert np.all(np.asarray(median["forecasts"])[..., 0] >= np.asarray(r["forecasts"]))


def test_rnn_darts_is_darts_blockrnn_on_sunspots_and_not_on_the_holdout(monkeypatch):
    before, settings = bench.RNN_DARTS["sunspots-backtest"]
    assert before is None and (settings["window"], settings["horizon"], settings["hidden"], settings["cell"],
                               settings["loss"], settings["epochs"], settings["lr"], settings["seed"]) == \
        (125, 36, 10, "gru", "mse", 100, 1e-3, 42)
    tiny = dict(settings, window=24, hidden=2, epochs=1)
    monkeypatch.setitem(bench.RNN_DARTS, "sunspots-backtest", (None, tiny))
    monkeypatch.setattr(bench, "_TRAINED", {})
    assert list(bench.run("air-holdout", ["naive", "rnn-darts"])["models"]) == ["naive"]
    row = bench.run("sunspots-backtest", ["rnn-darts"], last_points_only=True)["models"]["rnn-darts"]
    assert row["settings"] == tiny and row["seeds"] == [42] and row["trained_before"] == "1940-10"
    assert row["forecasts"] == 49 and np.isfinite(row["mape_darts"]) and row["cpu_s"] > 0


def test_rnn_darts_on_the_air_backtest_trains_before_1959(monkeypatch):
    before, settings = bench.RNN_DARTS["air-backtest"]
    assert before == "1959-01" and (settings["cell"], settings["hidden"], settings["window"],
                                    settings["decoder"]) == ("lstm", 20, 14, "autoregressive")
    tiny = dict(settings, hidden=2, epochs=1)
    monkeypatch.setitem(bench.RNN_DARTS, "air-backtest", (before, tiny))
    monkeypatch.setattr(bench, "_TRAINED", {})
    row = bench.run("air-backtest", ["rnn-darts"])["models"]["rnn-darts"]
    assert row["trained_before"] == "1959-01" and row["forecasts"] == 19 and row["seeds"] == [42]


def test_select_baselines_score_the_holdout_protocol(monkeypatch):
    """`forecast_select.py baselines`: each baseline fitted on the months before each origin, scored on the
    next TEST months as holdout scores the RNN (the seasonal naive by hand here; ETS and AutoARIMA stubbed)."""
    spec = importlib.util.spec_from_file_location(
        "bench_forecast_select", Path(__file__).resolve().parents[1] / "benchmarks" / "forecast_select.py")
    select = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(select)
    stub = {"ets": lambda h, n, m: np.full((n, 1), h[-1, 0]), "auto-arima": lambda h, n, m: np.full((n, 1), 1.0)}
    real = select.B.baseline
    monkeypatch.setattr(select.B, "baseline", lambda name, m=1: (lambda h, n: stub[name](h, n, m))
                        if name in stub else real(name, m))
    out = select.baselines("air-passengers", ["1957-01", "1958-01"], 12)
    y = datasets.load_series("air-passengers").y[:, 0]
    origin = 12 * (1957 - 1949) - 12  # 1956-01: the last 12 months before the cut 1957-01 held out
    by_hand = M.mape(y[origin:origin + 12], y[origin - 12:origin])
    assert out["seasonal-naive"]["per_cut"]["1957-01"] == round(by_hand, 2)
    assert out["ets"]["per_cut"]["1957-01"] == round(M.mape(y[origin:origin + 12], np.full(12, y[origin - 1])), 2)
    assert set(out) == set(select.BASELINES)
    assert out["drift"]["mean_mape"] == round(np.mean(list(out["drift"]["per_cut"].values())), 2)


def test_a_baselines_intervals_are_scored_at_every_forecast_of_a_backtest():
    row = bench.run("air-backtest", ["drift"])["models"]["drift"]
    y = datasets.load_series("air-passengers").y[:, 0]
    starts = range(120, 139)  # 1959-01 .. 1960-07, 19 forecasts of 6 months
    want = [M.coverage(y[t:t + 6], *B.drift_intervals(y[:t], 6, (80,))[1][80]) for t in starts]
    assert row["forecasts"] == 19 and row["coverage_80"] == pytest.approx(np.mean(want), rel=1e-12)
    assert row["pinball"] > 0 and 0 <= row["coverage_95"] <= 1
