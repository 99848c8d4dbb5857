"""Forecast air passengers: train a GRU on 1949-1957, forecast the 36 held-out months (1958-1960) with 80% and
95% intervals, and score it beside the naive, seasonal-naive and drift baselines; draw the figure.

The `air-passengers` dataset (Box & Jenkins' 144 monthly totals, in thousands) is fetched from a pinned PyPI
wheel (pmdarima) by the registry and cached (rnnkit/data/datasets.py). The model forecasts log(y), first
differences, scaled (all fitted on the training months only and undone on the forecast), the same as
`rnnkit train forecast --dataset air-passengers --horizon 36 --window 36 --log --diff 1 --epochs 300`.

    python examples/forecast_air_passengers.py            # about 15 s of CPU
    python examples/forecast_air_passengers.py --quick    # 20 epochs (what the tests run)
"""
import argparse
import time
from pathlib import Path

from rnnkit.tasks.forecast import Forecaster

SETTINGS = dict(dataset="air-passengers", horizon=36, window=36, log=True, diff=1, epochs=300, seed=0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 epochs (a check that it runs, not a result)")
    parser.add_argument("--out", default="runs/air-passengers")
    args = parser.parse_args(argv)
    out, start = Path(args.out), time.process_time()

    settings = dict(SETTINGS, out=str(out), overwrite=True, verbose=False, epochs=20 if args.quick else 300)
    print("training: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("out", "verbose", "overwrite")))
    model = Forecaster(**settings).fit(log=lambda *a: None)
    report = model.evaluate(plot=str(out / "forecast.png"))

    print(f"held out: the last {report['held_out']} months (from {report['first']}), one forecast")
    print(f"{'':<16}{'MAPE %':>8}{'sMAPE %':>9}{'MASE':>7}")
    for name, s in {"GRU (ours)": report["model"], **report["baselines"]}.items():
        print(f"{name:<16}{s['mape']:>8.2f}{s['smape']:>9.2f}{s['mase']:>7.3f}")
    print(f"interval coverage: 80% -> {report['model']['coverage_80']:.0%}, "
          f"95% -> {report['model']['coverage_95']:.0%} of the 36 months; mean pinball loss "
          f"{report['model']['pinball']:.2f} (thousands of passengers)")
    print(f"figure: {report['plot']}  ({time.process_time() - start:.0f} s of CPU)")
    return report


if __name__ == "__main__":
    main()
