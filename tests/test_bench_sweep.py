"""benchmarks/engine_sweep.py's bookkeeping: the worst point and the jumps between neighbouring batch sizes."""
import importlib.util
import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(FOLDER))  # the sweep imports engine_speed from its own folder
spec = importlib.util.spec_from_file_location("bench_sweep", FOLDER / "engine_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def point(cell, hidden, batch, scratch_ms, torch_ms):
    timing = {"scratch_ms": scratch_ms, "torch_ms": torch_ms, "ratio": scratch_ms / torch_ms}
    return {"cell": cell, "hidden": hidden, "batch": batch, "path": "numpy", **dict.fromkeys(sweep.MODES, timing)}


POINTS = [point("lstm", 64, 4, 10.0, 10.0), point("lstm", 64, 6, 16.0, 10.0), point("lstm", 64, 5, 11.0, 10.0),
          point("gru", 64, 4, 1.0, 4.0), point("gru", 64, 5, 2.0, 4.0)]


def test_worst_is_the_largest_ratio():
    assert sweep.worst(POINTS, "fwd+bwd")["batch"] == 6


def test_jumps_compare_neighbouring_batches_of_one_row():
    # lstm 4 → 5 → 6: 1.1x and 1.45x, no jump; gru 4 → 5: 2x
    assert sweep.jumps(POINTS, "infer") == [{"cell": "gru", "hidden": 64, "from": 4, "to": 5, "factor": 2.0}]


def test_the_grid_is_the_issues():
    assert sweep.BATCHES == (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64)
    assert sweep.HIDDEN == (64, 128, 256, 512) and (sweep.TIME, sweep.INPUT) == (64, 64)


def test_markdown_has_a_row_per_hidden_size_and_both_ratios():
    table = sweep.markdown({"points": POINTS})
    assert "| hidden | B=4 | B=5 | B=6 |" in table
    assert "| 64 | 1.00 · 1.00 | 1.10 · 1.10 | 1.60 · 1.60 |" in table
