"""Choosing a forecaster's settings inside the training part (benchmarks/README.md, "Choosing the RNN's
settings"): each run trains the seeds as one ensemble on the history before a cut and scores it.

    # AirPassengers: train on 1949-01 .. 1956-12, forecast 1957 (12 months of the 36-step model)
    python benchmarks/forecast_select.py holdout air-passengers 1958-01 12 \\
        '{"horizon": 36, "window": 24, "log": true, "diff": 1, "seasonal_diff": true, "epochs": 20}'
    # the same settings on the real protocol (the last 36 months held out): cut "end", 36
    # AirPassengers, rolling origins inside 1949-1957: 36-month forecasts from 1954-01 and from 1955-01, each
    # trained on the months before it (cuts 1957-01 and 1958-01, the last 36 months of each held out)
    python benchmarks/forecast_select.py holdout air-passengers 1957-01,1958-01 36 \\
        '{"horizon": 36, "window": 12, "log": true, "diff": 1, "epochs": 100}'
    # sunspots: train before 1900-10, 36-month forecasts from it every 10 months up to 1940-09
    python benchmarks/forecast_select.py backtest sunspots 1900-10 1940-10 --horizon 36 --stride 10 \\
        '{"window": 120, "hidden": 32, "epochs": 15, "batch_size": 32, "log": true, "log_offset": 1.0}'

    # the baselines on the same rolling origins (ETS, seasonal AutoARIMA, ...), fitted on the months before each
    python benchmarks/forecast_select.py baselines air-passengers 1957-01,1957-07,1958-01 36

holdout DATASET CUT TEST SETTINGS: the series up to CUT ("end": all of it), its last TEST steps held out;
prints MAPE and 80 % coverage per seed and the MAPE of the median of the seeds. Several CUTs (comma-separated:
rolling origins) run one after the other, each trained anew; "mean_ensemble_mape" is then the mean over them. backtest DATASET FIRST CUT
SETTINGS: trained on the steps before FIRST, forecasts from FIRST on the series up to CUT (not retrained),
scored both ways (mean, last points); "mape_nonzero": the mean's MAPE over the months that are not 0 (defined
where MAPE is not); "mape_darts": the last points' MAPE as darts' RNN notebook computes it,
mape(forecast, truth), which divides by the forecast; with the quantile loss, "mape_nonzero_lower": the same
with the lower end of each interval (quantile q) as the point forecast (MAPE rewards low forecasts). One JSON
line per run, also appended to --log. baselines DATASET CUTS TEST: as holdout, for each of BASELINES
(rnnkit/tasks/forecast_baselines.py, season 12) instead of the RNN.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from rnnkit.runtime import tune_process

tune_process()  # before NumPy loads (rnnkit/runtime.py)

import numpy as np  # noqa: E402

from rnnkit import metrics as M  # noqa: E402
from rnnkit.data import datasets  # noqa: E402
from rnnkit.tasks import forecast_baselines as B  # noqa: E402
from rnnkit.tasks.forecast import Forecaster  # noqa: E402
from rnnkit.tasks.settings import parse_levels  # noqa: E402

QUIET = dict(verbose=False, plot=False)


def cut_series(name: str, cut: str):
    series = datasets.load_series(name)
    return series if cut == "end" else series.slice(None, series.index_of(cut))


def holdout(name: str, cut: str, test: int, settings: dict, seeds) -> dict:
    s = cut_series(name, cut)
    history, truth = s.split(test)
    forecasts, mape, cover = [], [], []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as d:
            f = Forecaster(data="given", test=test, seed=seed, out=d, **QUIET, **settings).fit(s, log=lambda *a: None)
        p = f.predict_interval(test, (80,), history=history)
        forecasts.append(p["forecast"][:, 0])
        mape.append(round(M.mape(truth.y[:, 0], forecasts[-1]), 2))
        lo, hi = p["intervals"][80.0]
        cover.append(round(M.coverage(truth.y[:, 0], lo[:, 0], hi[:, 0]), 3))
    return {"mape": mape, "coverage_80": cover,
            "ensemble_mape": round(M.mape(truth.y[:, 0], np.median(forecasts, axis=0)), 2)}


BASELINES = ("naive", "seasonal-naive", "drift", "ets", "auto-arima", "auto-arima-seasonal")


def baselines(name: str, cuts, test: int) -> dict:
    """{baseline: {"per_cut": {cut: MAPE}, "mean_mape": ...}}: each fitted on the series up to each cut less
    its last `test` steps, forecasting those steps (holdout's protocol, with no network)."""
    out = {}
    for model in BASELINES:
        fn = B.baseline(model.removesuffix("-seasonal"), 1 if model == "auto-arima" else 12)  # as forecast.py
        per = {}
        for cut in cuts:
            history, truth = cut_series(name, cut).split(test)
            per[cut] = round(M.mape(truth.y[:, 0], fn(history.y, test)[:, 0]), 2)
        out[model] = {"per_cut": per, "mean_mape": round(float(np.mean(list(per.values()))), 2)}
    return out


def backtest(name: str, first: str, cut: str, horizon: int, stride: int, settings: dict, seeds) -> dict:
    s = cut_series(name, cut)
    t0 = s.index_of(first)
    with tempfile.TemporaryDirectory() as d:
        f = Forecaster(data="given", test=0, horizon=horizon, seed=seeds[0], ensemble=len(seeds), out=d, **QUIET,
                       **settings).fit(s.slice(None, t0), log=lambda *a: None)
    out = {}
    for last in (False, True):
        r = f.backtest(t0, horizon, stride, series=s, last_points_only=last)
        out["last" if last else "mean"] = {k: r[k] and round(r[k], 3) for k in ("mape", "smape", "mase")}
    starts = np.array([s.index_of(d) for d in r["starts"]])
    out["mean"]["mape_nonzero"] = round(mape_nonzero(s.y[:, 0], starts, np.asarray(r["forecasts"])[..., 0]), 3)
    ends, last_points = starts + horizon - 1, np.asarray(r["forecasts"])[:, -1, 0]
    out["last"]["mape_darts"] = round(M.mape(last_points, s.y[ends, 0]), 3)
    if f.settings.model.loss == "quantile":  # each interval's lower end as the point forecast instead
        levels = parse_levels(f.settings.model.levels)
        lower = [f.predict_interval(horizon, levels, history=s.slice(None, t))["intervals"] for t in starts]
        out["mean"]["mape_nonzero_lower"] = {f"q{(100 - lv) / 200:g}": round(mape_nonzero(
            s.y[:, 0], starts, np.stack([p[lv][0][:, 0] for p in lower])), 3) for lv in levels}
    return out | {"forecasts": len(r["starts"])}


def mape_nonzero(y, starts, forecasts) -> float:
    """The mean over the forecasts (n, horizon) from rows `starts` of each one's MAPE over its months where y
    is not 0 (MAPE itself is undefined there): the validation's stand-in for the test's MAPE."""
    per = []
    for t, f in zip(starts, forecasts):
        truth = y[t:t + len(f)]
        keep = truth != 0
        per.append(M.mape(truth[keep], f[keep]))
    return float(np.mean(per))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("how", choices=("holdout", "backtest", "baselines"))
    parser.add_argument("dataset")
    parser.add_argument("args", nargs="+", help="holdout: CUT TEST SETTINGS; backtest: FIRST CUT SETTINGS; "
                        "baselines: CUT TEST")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--horizon", type=int, default=36, help="backtest: steps per forecast")
    parser.add_argument("--stride", type=int, default=10, help="backtest: steps between forecasts")
    parser.add_argument("--log", help="append the JSON line to this file too")
    a = parser.parse_intermixed_args(argv)
    seeds = [int(x) for x in a.seeds.split(",")]
    if len(a.args) != (2 if a.how == "baselines" else 3):
        parser.error(f"{a.how} takes {2 if a.how == 'baselines' else 3} arguments after the dataset, got {a.args}")
    settings = json.loads(a.args[2]) if a.how != "baselines" else {}
    cpu = time.process_time()
    if a.how == "baselines":
        result = {"baselines": baselines(a.dataset, a.args[0].split(","), int(a.args[1]))}
    elif a.how == "holdout":
        cuts = a.args[0].split(",")
        result = {cut: holdout(a.dataset, cut, int(a.args[1]), settings, seeds) for cut in cuts}
        result = result[cuts[0]] if len(cuts) == 1 else {"per_cut": result, "mean_ensemble_mape": round(
            float(np.mean([r["ensemble_mape"] for r in result.values()])), 2)}
    else:
        result = backtest(a.dataset, a.args[0], a.args[1], a.horizon, a.stride, settings, seeds)
    line = json.dumps({"how": a.how, "dataset": a.dataset, "args": a.args[:2], "settings": settings, "seeds": seeds}
                      | result | {"cpu_s": round(time.process_time() - cpu, 1)})
    print(line)
    if a.log:
        with open(a.log, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
