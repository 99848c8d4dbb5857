"""Forecasting quality: the baselines on the issue's three protocols (darts' published figures beside them).

    1. air-passengers, the last 36 months (1958-01 .. 1960-12) held out, one 36-month forecast
       (darts' quickstart: seasonal naive 13.19 % MAPE, ETS 5.11 %, AutoARIMA 12.70 %)
    2. air-passengers backtest: 6-month forecasts starting 1959-01, stride 1, expanding window (darts'
       RNNModel example: 2.71 % MAPE)
    3. sunspots backtest: 36-month forecasts starting 1940-10, stride 10, expanding window (darts' BlockRNN
       example: BlockRNN-GRU 66.0 % MAPE, ETS 115.0 %; its ETS has a season of 120 months, "ets-120" here,
       and its MAPE divides by the forecast: "mape_darts" below)

Each model forecasts from the history before each forecast only (the statistical ones are fitted again on
it). Seasonal period m = 12. AutoARIMA runs twice: with pmdarima's defaults (non-seasonal, m = 1, as darts'
AutoARIMA() without arguments) and seasonal (m = 12). The RNN ("rnn", rnnkit.tasks.forecast.Forecaster with
the settings RNN names per protocol; how they were chosen: benchmarks/README.md) is trained once on the
history before the first forecast (or the month RNN names), an ensemble of seeds 0..N-1 (the median
forecast), and not retrained, as in darts' examples; on the protocols CALIBRATE names its intervals are
calibrated first (conformal, on forecasts inside its training part), their coverage and mean pinball loss
reported beside the model's own (coverage_*_uncalibrated, pinball_uncalibrated); where a protocol makes one forecast, the
baselines' own intervals are scored alike (rnnkit.tasks.forecast_baselines.baseline_intervals; with several
forecasts the mean over them, for INTERVALS_EVERY_FORECAST). Results go to benchmarks/results/forecast.json with the
CPU seconds of each row and the load average; a run updates the rows it computes and keeps the others. The metrics are
the mean over the forecasts of each forecast's metric (darts' `backtest(last_points_only=False)`);
--last-points-only scores the series of each forecast's last point instead (darts' historical_forecasts
default), stored as PROTOCOL-last, with "mape_darts" beside MAPE: the last points' MAPE as darts' RNN
notebook prints it, mape(pred_series, val_series), which divides by the forecast instead of the truth;
--both scores both ways.

    python benchmarks/forecast.py                     # all three protocols
    python benchmarks/forecast.py --protocols air-holdout --models naive,seasonal-naive,ets
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # before NumPy loads (rnnkit/runtime.py)

import numpy as np  # noqa: E402

from rnnkit.metrics import mape  # noqa: E402
from rnnkit.checkpoint.atomic import write_json  # noqa: E402
from rnnkit.data import datasets  # noqa: E402
from rnnkit.data.series import format_date  # noqa: E402
from rnnkit.tasks import forecast_baselines as B  # noqa: E402
from rnnkit.tasks.backtest import backtest, stateless  # noqa: E402
from rnnkit.tasks.forecast import Forecaster, interval_scores  # noqa: E402

M = 12
MODELS = {"naive": B.naive, "seasonal-naive": partial(B.seasonal_naive, m=M), "drift": B.drift,
          "ets": partial(B.ets, m=M), "auto-arima": partial(B.auto_arima, m=1),
          "auto-arima-seasonal": partial(B.auto_arima, m=M), "ets-120": None, "rnn": None, "rnn-low": None,
          "rnn-darts": None}
# the baselines' intervals (forecast_baselines.baseline_intervals), scored where a protocol makes one forecast
INTERVALS = {"naive": B.naive_intervals, "seasonal-naive": partial(B.seasonal_naive_intervals, m=M),
             "drift": B.drift_intervals, "ets": partial(B.ets_intervals, m=M),
             "auto-arima": partial(B.auto_arima_intervals, m=1),
             "auto-arima-seasonal": partial(B.auto_arima_intervals, m=M)}
# where a protocol makes several forecasts, the baselines whose intervals are scored at each (AutoARIMA's
# search, refitted at each, would cost minutes more)
INTERVALS_EVERY_FORECAST = ("naive", "seasonal-naive", "drift", "ets")
# models run on some protocols only: "ets-120" is darts' RNN notebook's ETS on sunspots,
# ExponentialSmoothing(seasonal_periods=120) fitted on the series min-max scaled by the months up to the first
# forecast (its Scaler; statsmodels' fit is not scale-free); air-passengers is too short for two such seasons
ONLY = {"ets-120": ("sunspots-backtest",), "rnn-low": ("sunspots-backtest",),
        "rnn-darts": ("sunspots-backtest", "air-backtest")}
# the RNN of each protocol: (train it on the months before this one (None: the first forecast), the settings
# of rnnkit train forecast). The air-passengers settings were chosen by 36-month forecasts from 1954-01,
# 1954-07 and 1955-01 inside the training part, by a rule fixed before (benchmarks/README.md, "AirPassengers:
# a third round"); the 6-month backtest uses the same model as the 36-month forecast
# (trained before 1958-01), forecasting 6 of its 36 steps from the longer history, so it runs only once.
AIR = dict(horizon=36, window=12, batch_size=8, eval_every=20, log=True, trend=True, trend_damping=0.98, epochs=300,
           ensemble=5)
# the sunspots RNN chosen on 36-month forecasts from 1900-10 .. 1940-09 (benchmarks/README.md, "Sunspots:
# darts' figures traced"), the benchmark's RNN until 2026-12-05 and the base of rnn-low
SUNSPOTS_LOG = dict(horizon=36, window=240, hidden=32, epochs=15, batch_size=32, log=True, log_offset=0.1, ensemble=5)
RNN = {
    "air-holdout": (None, AIR),
    "air-backtest": ("1958-01", AIR),
    # chosen on the same forecasts by the rule of "The window's own level" (benchmarks/README.md, 2026-12-05)
    "sunspots-backtest": (None, dict(horizon=36, window=240, hidden=32, epochs=15, batch_size=32, local_level=True,
                                     ensemble=5)),
}
# the RNN's intervals calibrated (Forecaster.calibrate) on forecasts made inside its training part: protocol ->
# (forecasts, stride), each forecast by an ensemble with the RNN's settings trained on the months before it;
# 19 forecasts are the fewest with the conformal guarantee at 95 % (benchmarks/README.md, "Calibrated intervals")
CALIBRATE = {"air-holdout": (19, 1)}
# "rnn-low": the RNN whose point forecast is a low quantile of its forecast distribution instead of the median
# (MAPE rewards low forecasts): protocol -> (settings, the quantile), chosen on 1900-10 .. 1940-09 as RNN's
RNN_LOW = {"sunspots-backtest": (dict(SUNSPOTS_LOG, levels="20,40,60,80,95"), 0.1)}
# "rnn-darts": the RNNs of darts' RNN notebook on rnnkit, their settings as published, not chosen here:
# protocol -> (train on the months before this one (None: the first forecast), the settings). Sunspots: its
# BlockRNNModel, a GRU of 10 units, input 125, output 36, MSE, Adam lr 1e-3, batch 32, 100 epochs, no calendar
# features (its dropout 0.1 acts on nothing with one layer and no hidden fully connected layers; its Scaler is
# min-max, ours z-score). AirPassengers: its RNNModel, an LSTM of 20 units fed its own forecasts (input 14,
# training length 20: 6 teacher-forced steps), MSE, lr 1e-3, batch 16, 300 epochs, trained before 1959-01; its
# covariates are the year and the month, here the month's cyclic features and --trend (a line fitted on the
# training part) for the year. One seed each, darts' random_state 42.
RNN_DARTS = {
    "sunspots-backtest": (None, dict(horizon=36, window=125, cell="gru", hidden=10, layers=1, loss="mse",
                                     calendar="none", epochs=100, batch_size=32, lr=1e-3, seed=42)),
    "air-backtest": ("1959-01", dict(horizon=6, window=14, cell="lstm", hidden=20, layers=1, loss="mse",
                                     decoder="autoregressive", trend=True, epochs=300, batch_size=16, lr=1e-3,
                                     seed=42)),
}
# protocol -> (dataset, first forecast, horizon, stride, darts' published MAPE per model)
PROTOCOLS = {
    "air-holdout": ("air-passengers", "1958-01", 36, 36,
                    {"seasonal-naive": 13.19, "ets": 5.11, "auto-arima": 12.70}),
    "air-backtest": ("air-passengers", "1959-01", 6, 1, {"rnn (darts RNNModel)": 2.71}),
    "sunspots-backtest": ("sunspots", "1940-10", 36, 10, {"ets-120": 115.0, "rnn (darts BlockRNN-GRU)": 66.0}),
}
METRICS = ("mape", "smape", "mase", "mae", "rmse")


def run(protocol: str, models, last_points_only: bool = False) -> dict:
    name, first, horizon, stride, published = PROTOCOLS[protocol]
    series = datasets.load_series(name)
    y, start = series.y[:, 0], series.index_of(first)
    rows = {}
    for model in [m for m in models if protocol in ONLY.get(m, (protocol,))]:
        cpu = time.process_time()
        if model in ("rnn", "rnn-low", "rnn-darts"):
            before, settings = {"rnn": RNN, "rnn-darts": RNN_DARTS}[model][protocol] if model != "rnn-low" else \
                (None, RNN_LOW[protocol][0])
            end = start if before is None else series.index_of(before)
            key = (name, end, json.dumps(settings, sort_keys=True))
            if key in _TRAINED:  # trained once for both scorings (and protocols); its training counts in each
                cpu -= _TRAINED[key][1]
            else:
                _TRAINED[key] = train_rnn(settings, series, end)
            trained = _TRAINED[key][0]
            calibration_cpu = None
            if model == "rnn" and protocol in CALIBRATE and trained.calibration is None:
                before_cal = time.process_time()
                trained.calibrate(*CALIBRATE[protocol], series=series.slice(None, end))
                calibration_cpu = round(time.process_time() - before_cal, 2)
                cpu += calibration_cpu  # reported apart, as calibration_cpu_s
            q = RNN_LOW[protocol][1] if model == "rnn-low" else None
            r = rnn_backtest(trained, series, start, horizon, stride, last_points_only, q)
            r |= {"settings": settings, **({"point_quantile": q} if q else {}), "trained_before": format_date(series.dates[end], series.freq)}
            if trained.calibration is not None and model == "rnn":
                r |= {"calibration": trained.calibration.summary(), "calibration_cpu_s": calibration_cpu}
        else:
            fn = ets_minmax(y[:start + 1], 120) if model == "ets-120" else MODELS[model]
            r = backtest(y, start, horizon, stride, *stateless(fn), metrics=METRICS, m=M,
                         last_points_only=last_points_only)
        rows[model] = {k: r[k] for k in METRICS} | {"forecasts": len(r["starts"]),
                                                    "cpu_s": round(time.process_time() - cpu, 2)}
        if last_points_only:
            rows[model]["mape_darts"] = mape_darts(y, start, horizon, stride, r["forecasts"])
        elif model in INTERVALS and (len(r["starts"]) == 1 or model in INTERVALS_EVERY_FORECAST):
            # each forecast's intervals, refitted on its history (not in cpu_s), their scores' mean
            scores = [interval_scores(y[t:t + horizon], *INTERVALS[model](y[:t], horizon, (80, 95)))
                      for t in r["starts"]]
            r |= {k: float(np.mean([sc[k] for sc in scores])) for k in scores[0]}
        intervals = [f"{k}{suffix}" for k in ("coverage_80", "coverage_95", "pinball")
                     for suffix in ("", "_uncalibrated")]
        rows[model] |= {k: r[k] for k in ("settings", "point_quantile", "trained_before", "seeds", *intervals,
                                          "calibration", "calibration_cpu_s") if k in r}
        print(f"{protocol:18s} {model:20s} MAPE {r['mape']:7.2f} %  sMAPE {r['smape']:7.2f} %  "
              f"MASE {r['mase']:6.3f}  ({len(r['starts'])} forecasts, {rows[model]['cpu_s']} s CPU)", flush=True)
    return {"dataset": name, "first_forecast": first, "horizon": horizon, "stride": stride, "m": M,
            "published_mape_darts": published, "models": rows}


def ets_minmax(train, m: int):
    """ETS with season m fitted on the history scaled to [0, 1] by the min and max of `train` (darts' Scaler,
    fitted on the training part, the first forecast's month included as darts' split_after keeps it), the
    forecast scaled back: forecast(history, horizon)."""
    lo, span = float(np.min(train)), float(np.ptp(train))

    def forecast(history, horizon):
        return B.ets((np.asarray(history) - lo) / span, horizon, m=m) * span + lo
    return forecast


def mape_darts(y, start: int, horizon: int, stride: int, forecasts) -> float:
    """The last points' MAPE as darts' RNN notebook prints it: mape(pred_series, val_series), its arguments
    swapped (darts' mape(actual, pred) divides by the first), so 100 * mean |y - yhat| / |yhat| over the
    forecasts (n, horizon[, 1]) made from rows start, start + stride, ..."""
    last = np.asarray(forecasts, dtype=np.float64)[:, -1].reshape(-1)
    ends = start + stride * np.arange(len(last)) + horizon - 1
    return mape(last, y[ends])


_TRAINED: dict = {}  # (dataset, first month after training, settings) -> (the trained RNN, its training CPU s)


def train_rnn(settings: dict, series, start: int, out=None):
    """(the Forecaster with `settings` trained on series[:start] into the run folder `out` (default a
    temporary one; the weights stay in memory), the CPU seconds it took)."""
    cpu = time.process_time()
    with tempfile.TemporaryDirectory(prefix="rnnkit-bench-") as scratch:
        f = Forecaster(data="given", test=0, out=str(out or scratch), verbose=False, plot=False, **settings)
        f.fit(series.slice(None, start), log=lambda line: None)
    return f, time.process_time() - cpu


def rnn_backtest(model, series, start: int, horizon: int, stride: int, last_points_only: bool,
                 point_quantile: float | None = None) -> dict:
    """The trained RNN's backtest report (Forecaster.backtest, not retrained: fed the longer history); with
    one forecast scored whole, the coverage of its 80 % and 95 % intervals too. point_quantile q: each
    forecast is the quantile q instead (the lower end of the model's 100 (1 - 2q) % interval)."""
    if point_quantile is None:
        r = model.backtest(start, horizon, stride, series=series, m=M, last_points_only=last_points_only)
    else:
        level = round(100 * (1 - 2 * point_quantile), 10)

        def low(_, history, h):
            return model.predict_interval(h, (level,), history=series.slice(None, len(history)))["intervals"][
                level][0][:, 0]
        r = backtest(series.y[:, 0], start, horizon, stride, lambda history: None, low, retrain=False,
                     metrics=METRICS, m=M, last_points_only=last_points_only)
    if len(r["starts"]) == 1 and not last_points_only:
        truth = series.y[start:start + horizon]
        for suffix, calibrated in (("", True), ("_uncalibrated", False)):
            if calibrated or model.calibration is not None:
                p = model.predict_interval(horizon, (80, 95), history=series.slice(None, start), calibrated=calibrated)
                r |= {f"{k}{suffix}": v for k, v in interval_scores(truth, p["forecast"], p["intervals"]).items()}
    seed, n = model.settings.training.seed, model.settings.model.ensemble
    return r | {"seeds": list(range(seed, seed + n))}


def format_table(results: dict) -> str:
    lines = ["| protocol | model | MAPE % | darts' MAPE % | sMAPE % | MASE | forecasts | CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for protocol, r in results["protocols"].items():
        for model, row in r["models"].items():
            darts = r["published_mape_darts"].get(model, "")
            model += f" ({len(row['seeds'])} seeds)" if "seeds" in row else ""
            lines.append(f"| {protocol} | {model} | {row['mape']:.2f} | {darts} | {row['smape']:.2f} | "
                         f"{row['mase']:.3f} | {row['forecasts']} | {row['cpu_s']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--last-points-only", action="store_true",
                        help="score each forecast's last point only (darts' historical_forecasts default); "
                             "stored as PROTOCOL-last")
    parser.add_argument("--both", action="store_true", help="score both ways (the mean, then the last points), "
                        "the RNN trained once")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "forecast.json"))
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(args.protocols.split(",")) - set(PROTOCOLS))
    if unknown:
        parser.error(f"unknown: {unknown}; models {list(MODELS)}, protocols {list(PROTOCOLS)}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"protocols": {}}  # other rows stay
    for protocol in args.protocols.split(","):
        for last in (False, True) if args.both else (args.last_points_only,):
            load = os.getloadavg()
            r = run(protocol, models, last) | {"last_points_only": last}
            key = protocol + ("-last" if last else "")
            rows = results["protocols"].get(key, {}).get("models", {})
            r["models"] = rows | r["models"]
            results["protocols"][key] = r | {"load_average": [load, os.getloadavg()]}
            write_json(args.out, results)  # each protocol as it lands
    print(format_table(results))
    print(f"results written to {write_json(args.out, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
