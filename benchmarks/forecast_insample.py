"""In-sample coverage of an AirPassengers forecaster's intervals (benchmarks/README.md, "The trend model's
intervals"): one seed trained on 1949-01 .. 1957-12 (no test month read), then the 80 % and 95 % intervals of
the 36-month forecasts from every origin whose 36 months end by 1957-12, against the truth; one JSON line per
number of epochs.

    python benchmarks/forecast_insample.py 1000,100          # the second round's model (--log --trend)
    python benchmarks/forecast_insample.py 300 '{"trend_damping": 0.98}'
"""
from __future__ import annotations

import argparse
import json
import tempfile

from rnnkit.runtime import tune_process

tune_process()  # before NumPy loads (rnnkit/runtime.py)

import numpy as np  # noqa: E402

from rnnkit import metrics as M  # noqa: E402
from rnnkit.data import datasets  # noqa: E402
from rnnkit.tasks.forecast import Forecaster  # noqa: E402

SETTINGS = dict(horizon=36, window=12, batch_size=8, eval_every=20, log=True, trend=True)


def in_sample(epochs: int, extra: dict) -> dict:
    s = datasets.load_series("air-passengers")
    s = s.slice(None, s.index_of("1958-01"))
    with tempfile.TemporaryDirectory() as d:
        f = Forecaster(data="given", test=0, out=d, verbose=False, plot=False, epochs=epochs,
                       **(SETTINGS | extra)).fit(s, log=lambda *a: None)
    cover, width = {80: [], 95: []}, []
    origins = range(f.window, len(s) - 36 + 1)
    for t in origins:
        p = f.predict_interval(36, (80, 95), history=s.slice(None, t))
        for lv in cover:
            cover[lv].append(M.coverage(s.y[t:t + 36], *p["intervals"][float(lv)]))
        lo, hi = p["intervals"][80.0]
        width.append(float(np.mean(np.log(hi / lo))))
    return {"epochs": epochs, "seed": 0, "settings": SETTINGS | extra, "origins": len(origins),
            "in_sample_coverage_80": round(float(np.mean(cover[80])), 3),
            "in_sample_coverage_95": round(float(np.mean(cover[95])), 3),
            "mean_log_width_80": round(float(np.mean(width)), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("epochs", help="comma-separated")
    parser.add_argument("settings", nargs="?", default="{}", help="JSON settings over --log --trend")
    a = parser.parse_args(argv)
    for epochs in a.epochs.split(","):
        print(json.dumps(in_sample(int(epochs), json.loads(a.settings))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
