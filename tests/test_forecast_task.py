"""The forecasting task (rnnkit.tasks.forecast) and its commands, on a tiny generated monthly series."""
import json

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.series import make_series, read_series
from rnnkit.tasks.forecast import Forecaster, prepare, quantiles_for, train_forecaster
from rnnkit.tasks.settings import parse_levels, resolve

N = 60
TINY = dict(horizon=4, window=8, hidden=6, epochs=2, batch_size=8, log_every=1)


def toy_values(n=N, seed=0):
    t = np.arange(n)
    return 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(seed).normal(size=n)


def toy_series(n=N):
    return make_series([f"{2000 + i // 12}-{i % 12 + 1:02d}" for i in range(n)], toy_values(n), "sales", name="toy")


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("series") / "toy.csv"
    rows = [f"{2000 + i // 12}-{i % 12 + 1:02d},{v:.6f}" for i, v in enumerate(toy_values())]
    path.write_text("month,sales\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def ensemble(csv_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fc"
    settings = resolve("forecast", dict(data=str(csv_file), date_column="month", ensemble=2, out=str(out), **TINY))
    results = train_forecaster(settings, log=lambda *a: None)
    return out, results


def test_levels_and_quantiles():
    assert parse_levels("95,80") == (80.0, 95.0)
    assert quantiles_for("80,95") == (0.025, 0.1, 0.5, 0.9, 0.975)
    with pytest.raises(ValueError, match="strictly between 0 and 100"):
        parse_levels("80,100")
    with pytest.raises(ValueError, match="numbers in percent"):
        parse_levels("high")
    assert parse_levels(80) == parse_levels([80]) == (80.0,)  # one level as a number
    with pytest.raises(ValueError, match="numbers in percent, e.g. 80,95; got None"):
        parse_levels(None)


def test_windows_stay_inside_the_training_part():
    s = resolve("forecast", dict(data="given", diff=1, seasonal_diff=True, test=6, valid=5, **TINY))
    series = toy_series()
    features, train, valid, kwargs, train_part, test = prepare(s, series)
    n_fit = N - 6 - 5
    lost = 1 + 12
    assert test == 6 and len(train_part) == n_fit and features.target.lost == lost
    # every training window's targets lie in the first n_fit rows: n_fit - lost - window - horizon + 1 windows
    assert len(train["x"]) == n_fit - lost - 8 - 4 + 1
    # validation windows end in the validation part (one per step of it), never in the test part
    assert len(valid["x"]) == 5
    z = features.target.transform(series.y[:N - 6])
    np.testing.assert_allclose(train["y"][0, :, 0], z[8:12, 0])          # targets follow the window
    np.testing.assert_allclose(train["x"][0, :, 0], z[:8, 0])            # x[..., 0] is the target itself
    np.testing.assert_allclose(train["y_prev"][0, 0], train["x"][0, -1, :1])
    # the scaling is fitted on the training part only
    w = np.diff(series.y[:n_fit], axis=0)
    w = w[12:] - w[:-12]
    assert features.target.mean == pytest.approx([w.mean()])
    assert kwargs["input_size"] == 1 + 2 and kwargs["future_size"] == 2  # the target + month (sin, cos)
    # log(y + 1) takes a series with zeros; the offset goes with the fitted transform into the checkpoint
    zeros = make_series(series.dates, np.maximum(series.y - 11, 0), "sales")
    features = prepare(resolve("forecast", dict(data="given", log=True, log_offset=1.0, **TINY)), zeros)[0]
    assert features.target.offset == 1.0 and features.to_config()["target"]["offset"] == 1.0
    with pytest.raises(ValueError, match="--log-offset applies to --log"):
        resolve("forecast", dict(data="given", log_offset=1.0))
    with pytest.raises(ValueError, match=rf"has {len(series) - 12} steps to train on \({len(series)} less 12 for "
                                         r"--test\), fewer than the input window plus the horizon \(50 \+ 12"):
        prepare(resolve("forecast", dict(data="given", window=50, horizon=12)), series)
    with pytest.raises(ValueError, match=rf"\({len(series)} less 3 for --test and 5 for --valid\)"):
        prepare(resolve("forecast", dict(data="given", window=50, horizon=12, test=3, valid=5)), series)
    long = make_series(np.arange("2000-01-01", "2005-01-01", dtype="datetime64[h]"), np.zeros(43848), "y")
    with pytest.raises(ValueError, match=r"windows of 20000 \+ 12 steps would take .* GiB"):
        prepare(resolve("forecast", dict(data="given", window=20000, horizon=12)), long)


def test_predict_intervals_and_reload(ensemble):
    out, results = ensemble
    assert [r.best for r in results] == [out / "member-0" / "best", out / "member-1" / "best"]
    model = Forecaster.from_pretrained(out)
    assert len(model.engines) == 2
    p = model.predict_interval(3)
    assert p["dates"].astype("datetime64[M]").astype(str).tolist() == ["2005-01", "2005-02", "2005-03"]
    assert p["forecast"].shape == (3, 1) and set(p["intervals"]) == {80.0, 95.0}
    lo80, hi80 = p["intervals"][80.0]
    lo95, hi95 = p["intervals"][95.0]
    assert np.all(lo95 <= lo80) and np.all(lo80 <= p["forecast"]) and np.all(p["forecast"] <= hi80)
    assert np.all(hi80 <= hi95)
    # the ensemble's forecast is the median (here: the mean of two) of its members' forecasts
    members = [Forecaster.from_pretrained(r.best).predict(3)["forecast"] for r in results]
    np.testing.assert_allclose(model.predict(3)["forecast"], np.median(members, axis=0), rtol=1e-12)
    # the torch engine computes the same forecast from the same checkpoints
    pytest.importorskip("torch")
    on_torch = Forecaster.from_pretrained(out, engine="torch", device="cpu").predict(3)["forecast"]
    np.testing.assert_allclose(on_torch, model.predict(3)["forecast"], rtol=1e-4)
    with pytest.raises(ValueError, match="forecasts 1..4 steps, got a horizon of 5"):
        model.predict(5)
    import shutil

    stale = out.parent / "stale"
    shutil.copytree(out, stale)
    shutil.copytree(out / "member-1", stale / "member-2")  # a member left over from a larger ensemble
    with pytest.raises(ValueError, match="3 members found .* for an ensemble of 2"):
        Forecaster.from_pretrained(stale)
    with pytest.raises(ValueError, match=r"trained for the levels \[80.0, 95.0\]; \[50.0\] need other quantiles"):
        model.predict_interval(2, levels="50")


def test_history_argument_and_backtest_by_hand(ensemble, csv_file):
    out, _ = ensemble
    model = Forecaster.from_pretrained(out)
    series = read_series(csv_file, "month")
    head = series.slice(None, 40)
    f = model.predict(4, history=head)["forecast"]
    assert str(model.predict(4, history=head)["dates"][0])[:7] == "2003-05"
    report = model.backtest(40, 4, 8, series)
    assert report["starts"] == ["2003-05", "2004-01", "2004-09"]
    mae0 = np.mean(np.abs(series.y[40:44] - f))
    assert report["per_forecast"]["mae"][0] == pytest.approx(mae0)
    assert report["mae"] == pytest.approx(np.mean(report["per_forecast"]["mae"]))
    assert np.shape(report["forecasts"]) == (3, 4, 1)  # every forecast, as lists (JSON)
    np.testing.assert_allclose(report["forecasts"][0], f, rtol=1e-12)
    with pytest.raises(ValueError, match="the model needs the last 8"):
        model.predict(2, history=series.slice(None, 5))
    for bad, message in ((2.5, "horizon must be a whole number, got 2.5"), (True, "whole number, got True")):
        with pytest.raises(TypeError, match=message):
            model.predict(bad)
    with pytest.raises(TypeError, match=r"history must be a Series \(rnnkit.data.series.read_series"):
        model.predict(2, history=list(head.y[:, 0]))
    with pytest.raises(TypeError, match="series must be a Series .*got ndarray"):
        model.backtest(40, 4, 8, series.y)
    for horizon in (0, model.horizon + 1):  # the backtest's horizon, as the forecast's
        with pytest.raises(ValueError, match=f"this model forecasts 1..{model.horizon} steps, got a horizon of "
                                             f"{horizon}"):
            model.backtest(40, horizon, 8, series)
    # a value in other units (or garbage) far outside the training part: an error, not a saturated forecast
    values = head.values.copy()
    values[-2] *= 1e9
    far = make_series(head.dates, values, "sales")
    with pytest.raises(ValueError, match=r"too far from the series the model was trained on \(at 2003-03, more "
                                         r"than 10000 standard deviations"):
        model.predict(2, history=far)
    values[-2] = head.values[-2] * 3  # far, but not absurd: the model still answers
    assert np.isfinite(model.predict(2, history=make_series(head.dates, values, "sales"))["forecast"]).all()


def test_backtest_retrain_and_last_points_only(ensemble, csv_file, tmp_path):
    out, _ = ensemble
    model = Forecaster.from_pretrained(out)
    series = read_series(csv_file, "month")
    said = []
    report = model.backtest(40, 4, 8, series, retrain=2, log=said.append)
    assert report["starts"] == ["2003-05", "2004-01", "2004-09"] and report["retrain"] == 2
    assert said == ["retraining on the 40 steps before 2003-05", "retraining on the 56 steps before 2004-09"]
    # a model with the same settings and seeds trained on the 40 steps alone makes forecasts 0 and 1, the
    # second fed the longer history: the refit sees nothing after its start, and is reproducible
    fresh = model.refit(series.slice(None, 40), tmp_path / "refit")
    assert len(fresh.engines) == 2 and fresh.settings.data.test == 0
    for k, t in enumerate((40, 48)):
        f = fresh.predict(4, history=series.slice(None, t))["forecast"]
        assert report["per_forecast"]["mae"][k] == pytest.approx(np.mean(np.abs(series.y[t:t + 4] - f)), rel=1e-12)
    assert report["mae"] != pytest.approx(model.backtest(40, 4, 8, series)["mae"])
    # the last points of the not-retrained forecasts (rows 43, 51, 59), scored as one series
    last = model.backtest(40, 4, 8, series, last_points_only=True)
    ends = [model.predict(4, history=series.slice(None, t))["forecast"][-1, 0] for t in (40, 48, 56)]
    truth = series.y[[43, 51, 59], 0]
    assert "per_forecast" not in last and last["last_points_only"] is True
    assert last["mae"] == pytest.approx(np.mean(np.abs(truth - ends)))
    assert last["mape"] == pytest.approx(100 * np.mean(np.abs(truth - ends) / truth))
    with pytest.raises(ValueError, match="retrain must be True, False or an int >= 1"):
        model.backtest(40, 4, 8, series, retrain=-1)


def test_evaluation_and_backtest_score_the_intervals_coverage_and_pinball_loss(ensemble, csv_file):
    """Every forecast with intervals is scored on them too: the coverage of each level and the mean pinball
    loss over the quantiles they stand for (the forecast as the median, each level's bounds)."""
    from rnnkit import metrics as M

    out, _ = ensemble
    model = Forecaster.from_pretrained(out)
    series = read_series(csv_file, "month")
    qs = [0.5, 0.1, 0.9, 0.025, 0.975]

    def by_hand(history, truth):
        p = model.predict_interval(len(truth), history=history)
        bounds = [b for lv in (80.0, 95.0) for b in p["intervals"][lv]]
        want = {"pinball": M.pinball(truth, np.stack([p["forecast"]] + bounds, axis=-1), qs)}
        for lv in (80.0, 95.0):
            want[f"coverage_{lv:g}"] = M.coverage(truth, *p["intervals"][lv])
        return want, p

    report = model.evaluate()
    want, _ = by_hand(series.slice(None, N - 4), series.y[-4:])
    assert want["pinball"] > 0
    for k, v in want.items():
        assert report["model"][k] == pytest.approx(v, rel=1e-12)
    # the baselines' own intervals at the model's levels, scored alike
    from rnnkit.tasks import forecast_baselines as B

    point, intervals = B.seasonal_naive_intervals(series.y[:-4], 4, (80, 95), m=12)
    lo, hi = intervals[80]
    assert report["baselines"]["seasonal-naive"]["coverage_80"] == pytest.approx(
        M.coverage(series.y[-4:], lo, hi), rel=1e-12)
    assert report["baselines"]["seasonal-naive"]["pinball"] == pytest.approx(M.pinball(
        series.y[-4:], np.stack([point, lo, hi, *intervals[95]], axis=-1), qs), rel=1e-12)
    assert {"coverage_95", "pinball"} <= set(report["baselines"]["drift"])
    bt = model.backtest(40, 4, 8, series)
    assert bt["levels"] == [80.0, 95.0]
    for i, t in enumerate((40, 48, 56)):
        want, _ = by_hand(series.slice(None, t), series.y[t:t + 4])
        for k, v in want.items():
            assert bt["per_forecast"][k][i] == pytest.approx(v, rel=1e-12)
    assert bt["pinball"] == pytest.approx(np.mean(bt["per_forecast"]["pinball"]), rel=1e-12)
    # the series of the last points, with the last point of each interval
    last = model.backtest(40, 4, 8, series, last_points_only=True, levels=80)  # or "80", or [80]
    ends = [by_hand(series.slice(None, t), series.y[t:t + 4])[1] for t in (40, 48, 56)]
    lo, hi = (np.stack([p["intervals"][80.0][k][-1] for p in ends]) for k in (0, 1))
    point, truth = np.stack([p["forecast"][-1] for p in ends]), series.y[[43, 51, 59]]
    assert last["coverage_80"] == pytest.approx(M.coverage(truth, lo, hi))
    assert last["pinball"] == pytest.approx(M.pinball(truth, np.stack([point, lo, hi], axis=-1), [0.5, 0.1, 0.9]))
    assert "coverage_95" not in last
    plain = model.backtest(40, 4, 8, series, levels=())
    assert plain["levels"] == [] and "pinball" not in plain and plain["mae"] == pytest.approx(bt["mae"], rel=1e-12)
    # the baselines beside it, forecasting from the same histories, their own intervals at the same levels
    assert list(bt["baselines"]) == ["naive", "seasonal-naive", "drift"] and "pinball" not in plain["baselines"]["naive"]
    drift_mae = np.mean([np.mean(np.abs(series.y[t:t + 4] - B.drift(series.y[:t], 4))) for t in (40, 48, 56)])
    assert bt["baselines"]["drift"]["mae"] == pytest.approx(drift_mae, rel=1e-12)
    drift_cov = np.mean([M.coverage(series.y[t:t + 4], *B.drift_intervals(series.y[:t], 4, (80,))[1][80])
                         for t in (40, 48, 56)])
    assert bt["baselines"]["drift"]["coverage_80"] == pytest.approx(drift_cov, rel=1e-12)
    ends = [B.seasonal_naive(series.y[:t], 4, m=12)[-1] for t in (40, 48, 56)]
    assert last["baselines"]["seasonal-naive"]["mae"] == pytest.approx(np.mean(np.abs(truth[:, 0] - np.ravel(ends))))
    with pytest.raises(ValueError, match=r"\[50.0\] need other quantiles"):
        model.backtest(40, 4, 8, series, levels="50")


def test_historical_forecasts_are_the_forecasts_the_backtest_scores(ensemble, csv_file):
    """darts' historical_forecasts: each forecast from the history before it, with the model's own intervals
    when asked; the backtest scores exactly these."""
    out, _ = ensemble
    model = Forecaster.from_pretrained(out)
    series = read_series(csv_file, "month")
    h = model.historical_forecasts("2003-05", 4, 8, series, levels=(80,))
    assert h["starts"].tolist() == [40, 48, 56] and h["forecasts"].shape == (3, 4, 1)
    assert [str(d)[:7] for d in h["dates"]] == ["2003-05", "2004-01", "2004-09"]
    for k, t in enumerate((40, 48, 56)):
        p = model.predict_interval(4, (80,), series.slice(None, t))
        np.testing.assert_array_equal(h["forecasts"][k], p["forecast"])
        np.testing.assert_array_equal(h["intervals"][k][80.0][1], p["intervals"][80.0][1])
    np.testing.assert_array_equal(model.backtest("2003-05", 4, 8, series)["forecasts"], h["forecasts"])
    assert model.historical_forecasts(40, 4, 8, series)["intervals"] == [{}, {}, {}]  # none unless asked


def test_predict_quantiles_of_a_quantile_and_a_gaussian_model(ensemble, csv_file, tmp_path):
    out, _ = ensemble
    model = Forecaster.from_pretrained(out)
    q = model.predict_quantiles(3)
    assert q["quantiles"] == [0.025, 0.1, 0.5, 0.9, 0.975] and q["values"].shape == (5, 3, 1)
    p = model.predict_interval(3)
    for k, bound in ((0, p["intervals"][95.0][0]), (1, p["intervals"][80.0][0]), (3, p["intervals"][80.0][1])):
        np.testing.assert_array_equal(q["values"][k], bound)
    np.testing.assert_array_equal(q["values"][2], p["forecast"])
    assert model.predict_quantiles(2, "0.9,0.1")["quantiles"] == [0.9, 0.1]  # in the order asked
    assert model.predict_quantiles(2, 0.5)["values"].shape == (1, 2, 1)  # one number: one quantile
    for bad, message in (([0.3], r"trained for the quantiles \[0.025, 0.1, 0.5, 0.9, 0.975\]; \[0.3\] are not"),
                         ("0.1,x", "quantiles must be numbers in"), ([1.0], "strictly between 0 and 1"),
                         ([0.5] * 100, "at most 99 quantiles a forecast, got 100"), ("nan", "strictly between"),
                         (object(), "quantiles must be numbers in"),
                         ([], "strictly between 0 and 1")):
        with pytest.raises(ValueError, match=message):
            model.predict_quantiles(2, bad)
    gauss = Forecaster(data=str(csv_file), date_column="month", loss="gaussian", out=str(tmp_path / "g"),
                       **TINY).fit(log=lambda *a: None)
    g = gauss.predict_quantiles(4, (0.05, 0.3, 0.5, 0.7, 0.95))
    assert np.all(np.diff(g["values"], axis=0) > 0)  # any quantile, in order
    np.testing.assert_allclose(g["values"][2], g["forecast"], rtol=1e-12)
    lo, hi = gauss.predict_interval(4, (90,))["intervals"][90.0]
    np.testing.assert_allclose(g["values"][[0, 4]], [lo, hi], rtol=1e-12)
    assert gauss.predict_quantiles(4)["quantiles"] == [0.1, 0.5, 0.9]


def test_pandas_series_and_dataframes_are_taken_where_a_series_is(ensemble, csv_file, tmp_path):
    pd = pytest.importorskip("pandas")
    out, _ = ensemble
    model = Forecaster.from_pretrained(out)
    series = read_series(csv_file, "month")
    index = pd.DatetimeIndex(series.dates)
    history = pd.Series(series.y[:40, 0], index=index[:40])  # unnamed: the model's one target
    np.testing.assert_array_equal(model.predict(4, history)["forecast"],
                                  model.predict(4, series.slice(None, 40))["forecast"])
    frame = pd.DataFrame({"sales": series.y[:, 0]}, index=index)
    assert model.backtest(40, 4, 8, frame)["mae"] == pytest.approx(model.backtest(40, 4, 8, series)["mae"], rel=1e-12)
    fitted = Forecaster(data="given", out=str(tmp_path / "pd"), **TINY).fit(frame, log=lambda *a: None)
    assert fitted.history.target == ("sales",) and len(fitted.engines) == 1


def test_point_model_refuses_intervals(csv_file, tmp_path):
    Forecaster(data=str(csv_file), date_column="month", loss="mse", decoder="autoregressive", out=str(tmp_path),
               **TINY).fit(log=lambda *a: None)
    model = Forecaster.from_pretrained(tmp_path)
    assert model.predict(2)["forecast"].shape == (2, 1)
    with pytest.raises(ValueError, match="mse loss: it gives point forecasts only"):
        model.predict_interval(2)
    with pytest.raises(ValueError, match="mse loss: it gives point forecasts only; .* for quantiles"):
        model.predict_quantiles(2)
    report = model.evaluate()
    assert report["held_out"] == 4 and set(report["baselines"]) == {"naive", "seasonal-naive", "drift"}
    assert "pinball" not in report["model"] and model.backtest(40, 2, 8)["levels"] == []
    assert "coverage_80" not in report["baselines"]["naive"]  # no levels to score them at
    truth, history = read_series(csv_file, "month").y[-4:], read_series(csv_file, "month").y[:-4]
    assert report["baselines"]["naive"]["mae"] == pytest.approx(np.mean(np.abs(truth - history[-1])))


def test_cli_forecast_backtest_evaluate(ensemble, csv_file, capsys):
    out, _ = ensemble
    assert main(["forecast", str(out), "--horizon", "2", "--levels", "80", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["dates"] == ["2005-01", "2005-02"] and list(got["intervals"]) == ["80"]
    assert len(got["forecast"]) == 2 and len(got["intervals"]["80"]["lower"]) == 2
    assert main(["forecast", str(out), "--data", str(csv_file), "--horizon", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split("\t") == ["date", "sales", "lo80", "hi80", "lo95", "hi95"]
    assert main(["forecast", str(out), "--horizon", "2", "--quantiles", "0.1,0.5"]) == 0
    table = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    want = Forecaster.from_pretrained(out).predict_quantiles(2, (0.1, 0.5))["values"]
    assert table[0] == ["date", "sales", "q0.1", "q0.5"] and [r[0] for r in table[1:]] == ["2005-01", "2005-02"]
    assert [float(r[2]) for r in table[1:]] == pytest.approx(want[0, :, 0], rel=1e-3)
    assert main(["forecast", str(out), "--horizon", "2", "--quantiles", "0.9", "--json"]) == 0
    assert np.shape(json.loads(capsys.readouterr().out)["quantiles"]["0.9"]) == (2, 1)
    assert main(["forecast", str(out), "--quantiles", "0.3"]) == 2
    assert "[0.3] are not among them" in capsys.readouterr().err
    assert main(["backtest", str(out), "--start", "2003-05", "--horizon", "4", "--stride", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["starts"] == ["2003-05", "2004-01", "2004-09"]
    assert main(["backtest", str(out), "--start", "2004-01", "--horizon", "4", "--stride", "8", "--retrain", "2",
                 "--last-points-only"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["retraining on the 48 steps before 2004-01", "2 forecasts of 4 steps from 2004-01, every 8, "
                         "retrained every 2 forecasts; the series of their last points scored"]
    assert lines[2].split() == ["mae", "rmse", "mape", "smape", "mase", "coverage_80", "coverage_95", "pinball"]
    assert [line.split()[0] for line in lines[3:]] == ["model", "naive", "seasonal-naive", "drift"]
    assert main(["backtest", str(out), "--start", "2004-01", "--horizon", "4", "--levels", "none"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "mase"
    assert main(["backtest", str(out), "--start", "2004-01", "--retrain", "-1"]) == 2
    assert capsys.readouterr().err.startswith("error: retrain must be True, False or an int >= 1")
    assert main(["evaluate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"mae", "mape", "mase", "coverage_80", "coverage_95", "pinball"} <= set(report["model"])
    assert main(["evaluate", str(out)]) == 0
    assert "seasonal-naive" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--baselines", "drift,naive", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["baselines"]) == ["drift", "naive"]
    assert main(["backtest", str(out), "--start", "2004-01", "--horizon", "4", "--baselines", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["baselines"] == {}
    assert main(["evaluate", str(out), "--baselines", "naive,prophet"]) == 2
    assert "unknown baseline 'prophet'; choose from naive, seasonal-naive, drift, ets, auto-arima" in \
        capsys.readouterr().err
    assert main(["evaluate", str(out), "--test", "0"]) == 2  # not the default's 4 steps
    assert "nothing is held out (test = 0)" in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    assert main(["forecast", str(out), "--horizon", "3", "--plot", str(out / "f.png")]) == 0
    assert main(["evaluate", str(out), "--plot", str(out / "e.png")]) == 0
    assert main(["backtest", str(out), "--start", "2003-05", "--horizon", "4", "--stride", "8", "--json",
                 "--plot", str(out / "b.png")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["plot"] == str(out / "b.png")
    for name in ("f.png", "e.png", "b.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000
    capsys.readouterr()
    assert main(["forecast", str(out), "--horizon", "9"]) == 2
    assert capsys.readouterr().err.startswith("error: this model forecasts 1..4 steps")


def test_a_missing_optional_part_is_an_error_naming_its_extra_not_a_traceback(ensemble, monkeypatch, capsys,
                                                                              tmp_path):
    from rnnkit import plots

    def no_matplotlib(*args):
        raise ImportError("rnnkit.plots needs matplotlib; install it with: pip install 'rnnkit[plots]'")
    monkeypatch.setattr(plots, "_figure", no_matplotlib)
    out, _ = ensemble
    assert main(["evaluate", str(out), "--plot", str(tmp_path / "e.png")]) == 2
    assert capsys.readouterr().err == "error: rnnkit.plots needs matplotlib; install it with: pip install " \
                                      "'rnnkit[plots]'\n"


def test_cli_train_forecast(csv_file, tmp_path, capsys):
    args = ["train", "forecast", "--data", str(csv_file), "--date-column", "month", "--horizon", "3",
            "--window", "6", "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main(args + ["--diff", "1", "--log"]) == 0
    assert "rnnkit forecast" in capsys.readouterr().out and (tmp_path / "run" / "best" / "config.json").exists()
    # a differenced series: intervals from sample paths, nested, around a forecast near the last level
    assert main(["forecast", str(tmp_path / "run"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    lo80, hi80 = np.array(got["intervals"]["80"]["lower"]), np.array(got["intervals"]["80"]["upper"])
    lo95, hi95 = np.array(got["intervals"]["95"]["lower"]), np.array(got["intervals"]["95"]["upper"])
    assert np.all(lo95 <= lo80) and np.all(lo80 < hi80) and np.all(hi80 <= hi95)
    assert np.all(np.abs(np.array(got["forecast"]) / toy_values()[-1] - 1) < 0.5)
    assert main(args[:-2] + ["--out", str(tmp_path / "r2"), "--window", "100"]) == 2
    assert "fewer than the input window plus the horizon" in capsys.readouterr().err


def test_sample_steps_and_the_quantiles_of_a_sum():
    from rnnkit.data.transforms import SeriesTransform
    from rnnkit.tasks.forecast import sample_steps

    rng = np.random.default_rng(1)
    horizon = 9
    out = np.zeros((horizon, 1, 2))
    out[..., 1] = 1.0                                              # every step's difference ~ N(0, 1)
    draws = sample_steps(out, "gaussian", (), 4000, rng)
    assert draws.shape == (4000, horizon, 1) and abs(draws.std() - 1) < 0.05
    t = SeriesTransform(diff=1, scale=False).fit(np.arange(10.0)[:, None])
    levels = t.inverse(draws, np.array([[5.0]]))                   # random walks from 5
    hi = np.quantile(levels, 0.9, axis=0)[:, 0]
    # the 90% quantile of a sum of k independent N(0, 1) is 5 + 1.2816 sqrt(k), not 5 + 1.2816 k
    np.testing.assert_allclose(hi - 5, 1.2816 * np.sqrt(np.arange(1, horizon + 1)), rtol=0.08)
    # a quantile model's inverse CDF: linear between its quantiles, clamped outside
    qs = (0.1, 0.5, 0.9)
    out = np.array([[[-1.0, 0.0, 3.0]]])
    draws = sample_steps(out, "quantile", qs, 20000, rng)[:, 0, 0]
    assert np.mean(draws <= 0.0) == pytest.approx(0.5, abs=0.02) and np.mean(draws == -1.0) == pytest.approx(0.1, abs=0.01)
    assert np.quantile(draws, 0.7) == pytest.approx(1.5, abs=0.1)


def test_torch_engine_trains_a_gaussian_autoregressive_forecaster(csv_file, tmp_path):
    pytest.importorskip("torch")
    settings = dict(TINY, epochs=1, loss="gaussian", decoder="autoregressive", engine="torch", device="cpu")
    Forecaster(data=str(csv_file), date_column="month", out=str(tmp_path), **settings).fit(log=lambda *a: None)
    on_torch = Forecaster.from_pretrained(tmp_path, engine="torch", device="cpu").predict_interval(4, "50,90")
    on_scratch = Forecaster.from_pretrained(tmp_path).predict_interval(4, "50,90")  # any level: a Gaussian
    np.testing.assert_allclose(on_scratch["forecast"], on_torch["forecast"], rtol=1e-4)
    for level in (50.0, 90.0):
        np.testing.assert_allclose(on_scratch["intervals"][level], on_torch["intervals"][level], rtol=1e-4)
    lo50, hi50 = on_scratch["intervals"][50.0]
    lo90, hi90 = on_scratch["intervals"][90.0]
    assert np.all(lo90 < lo50) and np.all(hi50 < hi90)
    # a Gaussian's intervals are symmetric around its mean: mean ± z_q sigma
    np.testing.assert_allclose((lo50 + hi50) / 2, on_scratch["forecast"], rtol=1e-9)
    np.testing.assert_allclose((hi90 - lo90) / (hi50 - lo50), 1.6449 / 0.6745, rtol=1e-3)


def test_trend_continues_from_the_dates_on_both_engines(tmp_path, capsys):
    """--trend: the line is fitted on the training part (position 0 at its first date, kept in the checkpoint);
    a history that starts later is placed on the line by its dates, so the forecast does not depend on where
    the history starts; the torch engine forecasts the same from the same checkpoint."""
    series = toy_series()
    settings = dict(TINY, data="given", log=True, trend=True, test=6, out=str(tmp_path / "run"))
    model = Forecaster(**settings).fit(series, log=lambda *a: None)
    features = model.features
    assert features.origin == "2000-01" and features.target.trend and features.target.lost == 0
    u, t = np.log(series.y[:N - 6, 0]), np.arange(N - 6)
    b, a = np.polyfit(t, u, 1)  # the line of log y over the 54 training months
    assert features.target.slope == [pytest.approx(b, rel=1e-9)] and features.target.intercept == [pytest.approx(a)]
    assert features.position(series.slice(30, None)) == 30
    # the model sees log y minus the line, scaled: its forecast of the detrended scale is put back on the line
    z = features.arrays(series.slice(10, 40))[1][:, 0]
    np.testing.assert_allclose(z * features.target.std[0] + features.target.mean[0],
                               u[10:40] - (a + b * t[10:40]), atol=1e-9)
    head, later = series.slice(None, N - 6), series.slice(N - 6 - 20, N - 6)
    reloaded = Forecaster.from_pretrained(tmp_path / "run")
    full = reloaded.predict(4, history=head)["forecast"]
    np.testing.assert_allclose(reloaded.predict(4, history=later)["forecast"], full, rtol=1e-12)
    np.testing.assert_allclose(reloaded.predict(4)["forecast"], reloaded.predict(4, history=series)["forecast"],
                               rtol=1e-12)  # the stored tail of the series ends where the series does
    pytest.importorskip("torch")
    on_torch = Forecaster.from_pretrained(tmp_path / "run", engine="torch", device="cpu").predict(4, history=later)
    np.testing.assert_allclose(on_torch["forecast"], full, rtol=1e-4)
    with pytest.raises(ValueError, match="--trend and differences exclude each other"):
        resolve("forecast", dict(data="given", trend=True, diff=1))
    assert main(["train", "forecast", "--dataset", "air-passengers", "--trend", "--seasonal-diff"]) == 2
    assert "--trend and differences exclude each other" in capsys.readouterr().err


def test_quantiles_go_through_the_log_and_the_damped_trend_unchanged(tmp_path):
    """Without differences the transform is monotone: each predicted quantile of z becomes
    exp(line(t) + mean + std z_q) at its step, the same quantile of y; the 80 % interval is the 0.1 and 0.9
    quantiles so mapped, around the median's forecast (an ensemble: the median over members of each)."""
    import contextlib

    series = toy_series()
    settings = dict(TINY, data="given", log=True, trend=True, trend_steps=24, trend_damping=0.9, test=6,
                    out=str(tmp_path / "run"))
    model = Forecaster(**settings).fit(series, log=lambda *a: None)
    qs = model.config["model"]["quantiles"]
    assert qs == [0.025, 0.1, 0.5, 0.9, 0.975]
    z = np.array([-2.0, -1.0, 0.0, 1.5, 3.0])

    class Fixed:  # an engine whose forecast is z_q + shift at every step
        def __init__(self, shift):
            self.shift = shift

        def locked_weights(self):
            return contextlib.nullcontext()

        def predict(self, x, future):
            return np.broadcast_to(z + self.shift, (1, 4, 1, 5)).copy()

    model.engines = [Fixed(0.0), Fixed(0.2), Fixed(1.0)]
    history = series.slice(None, N - 6)
    p = model.predict_interval(4, (80, 95), history=history)
    tr = model.features.target
    assert tr.end == N - 6 and tr.damping == 0.9 and tr.trend_steps == 24
    after = np.arange(1, 5)
    line = tr.intercept[0] + tr.slope[0] * (N - 7 + 0.9 * (1 - 0.9 ** after) / 0.1)  # the damped line
    want = {q: np.exp(line + tr.mean[0] + tr.std[0] * (zq + 0.2)) for q, zq in zip(qs, z)}  # the median member
    np.testing.assert_allclose(p["forecast"][:, 0], want[0.5], rtol=1e-12)
    np.testing.assert_allclose(p["intervals"][80.0][0][:, 0], want[0.1], rtol=1e-12)
    np.testing.assert_allclose(p["intervals"][80.0][1][:, 0], want[0.9], rtol=1e-12)
    np.testing.assert_allclose(p["intervals"][95.0][0][:, 0], want[0.025], rtol=1e-12)
    np.testing.assert_allclose(p["intervals"][95.0][1][:, 0], want[0.975], rtol=1e-12)
    with pytest.raises(ValueError, match="--trend-steps and --trend-damping shape the trend: give --trend"):
        resolve("forecast", dict(data="given", trend_damping=0.9))


@pytest.mark.parametrize("loss", ["quantile", "gaussian"])
def test_local_level_makes_each_window_relative_and_the_forecast_scale_free(tmp_path, loss):
    """--local-level: each window's targets (x's first columns, y, y_prev) lose the window's mean of the
    transformed target, which the forecast adds back. With --log that makes the model scale-free: a history
    3 times as large gets a forecast and intervals 3 times as large (a quantile shifts, a Gaussian's mean
    shifts and its scale stays), on both engines."""
    series = toy_series()
    plain = prepare(resolve("forecast", dict(data="given", log=True, test=6, **TINY)), series)[1]
    s = resolve("forecast", dict(data="given", log=True, test=6, local_level=True, **TINY))
    features, train, *_ = prepare(s, series)
    level = plain["x"][:, :, :1].mean(axis=1, keepdims=True)  # (N, 1, 1)
    np.testing.assert_allclose(train["x"][:, :, 0].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(train["x"][:, :, :1], plain["x"][:, :, :1] - level, atol=1e-12)
    np.testing.assert_array_equal(train["x"][:, :, 1:], plain["x"][:, :, 1:])  # the calendar stays
    np.testing.assert_allclose(train["y"], plain["y"] - level, atol=1e-12)
    np.testing.assert_allclose(train["y_prev"], plain["y_prev"] - level, atol=1e-12)
    out = tmp_path / "run"
    Forecaster(data="given", log=True, test=6, local_level=True, loss=loss, out=str(out), **TINY).fit(
        series, log=lambda *a: None)
    model = Forecaster.from_pretrained(out)
    history = series.slice(None, N - 6)
    larger = make_series(history.dates, 3 * history.y, "sales")
    p, q = model.predict_interval(4, (80,), history), model.predict_interval(4, (80,), larger)
    np.testing.assert_allclose(q["forecast"], 3 * p["forecast"], rtol=1e-5)
    for a, b in zip(q["intervals"][80.0], p["intervals"][80.0]):
        np.testing.assert_allclose(a, 3 * b, rtol=1e-5)
    assert np.all(p["intervals"][80.0][1] > p["intervals"][80.0][0])
    pytest.importorskip("torch")
    on_torch = Forecaster.from_pretrained(out, engine="torch", device="cpu").predict(4, history=larger)
    np.testing.assert_allclose(on_torch["forecast"], q["forecast"], rtol=1e-4)


HOSTILE_FORECASTER = {
    "hidden 10^8": (lambda c: c["model"].update(hidden_size=10**8), "build too large a model: a parameter of shape"),
    "10^6 layers": (lambda c: c["model"].update(num_layers=10**6), "do not fit the weights"),
    "horizon 10^9": (lambda c: c["model"].update(horizon=10**9), "build too large a model: a parameter of shape"),
    "another cell": (lambda c: c["model"].update(cell="lstm"), "do not fit the weights"),
    "a smaller model": (lambda c: c["model"].update(hidden_size=3),
                        r"the weights do not fit the model settings: encoder.weight_ih_l0 has shape \[18, 3\], "
                        r"expected \[9, 3\]"),
    "another dtype": (lambda c: c.update(dtype="float64"), "dtype is 'float64', but the weights' encoder.bias_hh_l0 is 'float32'"),
    "an unknown setting": (lambda c: c["model"].update(width=3), "unexpected keyword argument 'width'"),
    "a list for a model": (lambda c: c.update(model=[1]), "model must be an object"),
    "dtype float16": (lambda c: c.update(dtype="float16"), "dtype must be one of"),
    "no settings": (lambda c: c.update(settings={}), "settings, features or history are not valid"),
    "no features": (lambda c: c.pop("features"), "settings, features or history are not valid"),
    "a broken history": (lambda c: c.update(history={"target": 5}), "settings, features or history are not valid"),
}


@pytest.mark.parametrize("case", list(HOSTILE_FORECASTER))
def test_a_hostile_forecaster_checkpoint_is_refused_before_its_model_is_built(ensemble, tmp_path, case):
    """config.json's settings are checked against the stored tensors before a model is built: settings that
    claim a larger model are refused without allocating it (hidden 10^8 asked numpy for 213 PiB), and the
    rest of the file gets a one-line error, not a KeyError's traceback."""
    import shutil

    from rnnkit.checkpoint import CheckpointError

    out, _ = ensemble
    folder = tmp_path / "member"
    shutil.copytree(out / "member-0" / "best", folder)
    path = folder / "config.json"
    document = json.loads(path.read_text())
    change, message = HOSTILE_FORECASTER[case]
    change(document["config"])
    path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=message):
        Forecaster.from_pretrained(folder)


def test_an_ensemble_has_at_most_100_members(csv_file):
    with pytest.raises(ValueError, match="ensemble must be at most 100, got 101"):
        resolve("forecast", dict(data=str(csv_file), ensemble=101))


def test_fit_takes_a_series_long_enough_for_its_test_part(csv_file, tmp_path):
    series = read_series(csv_file, "month")
    model = Forecaster(data=str(csv_file), date_column="month", out=str(tmp_path / "run"), **TINY)
    with pytest.raises(TypeError, match="series must be a Series .*got list"):
        model.fit([1.0, 2.0])
    with pytest.raises(ValueError, match=r"the series has 0 steps to train on \(2 less 4 for --test\)"):
        model.fit(series.slice(None, 2))



def test_an_ensemble_resumed_part_way_trains_the_members_it_had_not_reached(csv_file, tmp_path):
    """--resume of an ensemble stopped in its second member: the first is done, the second (stopped before
    its first save: only its log) and the third start now; all end with the bits of a run never stopped
    (resume used to fail on the first member with no checkpoint: 'nothing to resume')."""
    import shutil

    from rnnkit.checkpoint import load_checkpoint

    common = dict(data=str(csv_file), date_column="month", ensemble=3, **TINY)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train_forecaster(resolve("forecast", dict(common, out=str(straight))), log=lambda *a: None)
    shutil.copytree(straight / "member-0", stopped / "member-0")
    (stopped / "member-1").mkdir()
    shutil.copy(straight / "member-1" / "metrics.jsonl", stopped / "member-1")
    train_forecaster(resolve("forecast", dict(common, out=str(stopped), resume=True)), log=lambda *a: None)
    for k in range(3):
        a = load_checkpoint(straight / f"member-{k}" / "best").weights
        b = load_checkpoint(stopped / f"member-{k}" / "best").weights
        assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a), k


def test_a_new_model_replaces_the_one_in_its_folder_whole_and_only_when_asked(csv_file, tmp_path):
    """An ensemble, a single run, an ensemble of another size in one --out: each refused there without
    --overwrite, and with it the model before removed whole (its members, best/, calibration), so that the
    folder loads as the new model alone; a file of the user's beside it stays."""
    out = tmp_path / "fc"

    def fit(**extra):
        settings = dict(data=str(csv_file), date_column="month", out=str(out), **TINY)
        return train_forecaster(resolve("forecast", {**settings, **extra}), log=lambda *a: None)

    fit(ensemble=3)
    (out / "calibration.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    for extra in ({"ensemble": 2}, {}):
        with pytest.raises(ValueError, match=r"already holds a forecaster \(an ensemble\): continue it with"):
            fit(**extra)
    fit(ensemble=2, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["member-0", "member-1", "notes.txt"]
    assert len(Forecaster.from_pretrained(out).engines) == 2
    with pytest.raises(ValueError, match=r"holds other files beside its ensemble \(notes.txt\)"):
        fit(overwrite=True)  # a single run does not go into a folder of other files; the ensemble stays
    assert len(Forecaster.from_pretrained(out).engines) == 2
    (out / "notes.txt").unlink()
    fit(overwrite=True)
    assert {"best", "last"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("member-*")) and len(Forecaster.from_pretrained(out).engines) == 1
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"already holds a forecaster \(a run\)"):
        fit(ensemble=2)
    fit(ensemble=2, overwrite=True)
    assert not (out / "best").exists() and len(Forecaster.from_pretrained(out).engines) == 2
    assert (out / "notes.txt").read_text() == "mine"
