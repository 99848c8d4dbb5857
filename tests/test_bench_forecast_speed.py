"""benchmarks/forecast_speed.py's worker: a training step of the issue's shape on each engine, timed."""
import importlib.util
import sys
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(FOLDER))  # the script imports engine_speed from its own folder
spec = importlib.util.spec_from_file_location("bench_forecast_speed", FOLDER / "forecast_speed.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_the_shape_is_the_issues():
    assert (bench.BATCH, bench.WINDOW, bench.HIDDEN, bench.HORIZON) == (32, 36, 64, 36)


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_worker_times_a_training_step(engine, monkeypatch):
    pytest.importorskip("torch")
    for name, value in {"BATCH": 2, "WINDOW": 3, "HIDDEN": 4, "HORIZON": 2}.items():   # a tiny shape: fast
        monkeypatch.setattr(bench, name, value)
    out = bench.worker(engine, "gru", "autoregressive", "quantile", threads=1, min_time=0.0)
    assert 0 < out["step_ms"] < 10_000
    assert out["ran_on"].startswith(f"{engine} engine")
