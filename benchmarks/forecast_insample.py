"""benchmarks/forecast_insample.py EPOCHS[,EPOCHS]: In-sample coverage of the trend model's intervals: trained on 1949-01 .. 1957-12 (no test month read),
the 80/95 % intervals of the 36-month forecasts from every training origin whose 36 months end by 1957-12."""
import json, sys, tempfile
import numpy as np
from rnnkit import metrics as M
from rnnkit.data import datasets
from rnnkit.tasks.forecast import Forecaster
s = datasets.load_series('air-passengers').slice(None, 108)
for epochs in (int(e) for e in sys.argv[1].split(",")):
    with tempfile.TemporaryDirectory() as d:
        f = Forecaster(data="given", test=0, out=d, verbose=False, plot=False, horizon=36, window=12, batch_size=8,
                       eval_every=20, log=True, trend=True, epochs=epochs).fit(s, log=lambda *a: None)
    cov = {80: [], 95: []}; width = []
    for t in range(12, 108 - 36 + 1):
        p = f.predict_interval(36, (80, 95), history=s.slice(None, t))
        truth = s.y[t:t + 36]
        for lv in (80, 95):
            lo, hi = p["intervals"][float(lv)]
            cov[lv].append(M.coverage(truth, lo, hi))
        lo, hi = p["intervals"][80.0]
        width.append(float(np.mean(np.log(hi / lo))))
    print(json.dumps({"epochs": epochs, "seed": 0, "origins": 108 - 36 - 12 + 1,
                      "in_sample_coverage_80": round(float(np.mean(cov[80])), 3),
                      "in_sample_coverage_95": round(float(np.mean(cov[95])), 3),
                      "mean_log_width_80": round(float(np.mean(width)), 4)}), flush=True)
