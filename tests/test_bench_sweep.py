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


def saved(points, gflops, **extra):
    return {"points": points, "gemm_gflops": gflops, "blas": "OpenBLAS", "threads": 2, "rounds": 3, **extra}


def test_combine_merges_the_points_of_several_runs_and_names_the_worst_of_all():
    rnn_gru = saved([point("gru", 64, 4, 1.0, 4.0), point("gru", 64, 5, 2.0, 4.0)], 100.0)
    lstm = saved([point("lstm", 64, 4, 10.0, 10.0), point("lstm", 64, 5, 13.0, 10.0),
                  point("gru", 64, 5, 3.0, 4.0)], 80.0)  # a later file's point replaces the earlier one's
    result = sweep.combine([rnn_gru, lstm], ["rnn_gru.json", "lstm.json"])
    by_key = {(p["cell"], p["batch"]): p for p in result["points"]}
    assert sorted(by_key) == [("gru", 4), ("gru", 5), ("lstm", 4), ("lstm", 5)]
    assert by_key[("gru", 5)]["infer"]["ratio"] == 0.75
    assert result["gemm_gflops"] == 90.0
    assert [s["file"] for s in result["sources"]] == ["rnn_gru.json", "lstm.json"]
    assert result["worst"]["fwd+bwd"]["cell"] == "lstm" and result["worst"]["fwd+bwd"]["batch"] == 5
    assert result["jumps"]["infer"] == [{"cell": "gru", "hidden": 64, "from": 4, "to": 5, "factor": 3.0}]


def test_combine_writes_one_json_and_one_heat_map_from_the_command_line(tmp_path, capsys):
    import json

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(saved([point("gru", 64, 4, 1.0, 4.0), point("gru", 128, 8, 2.0, 4.0)], 100.0)))
    second.write_text(json.dumps(saved([point("lstm", 64, 4, 12.0, 10.0)], 100.0)))
    out = tmp_path / "all.json"
    assert sweep.main(["--combine", str(first), str(second), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert len(merged["points"]) == 3 and merged["worst"]["infer"]["cell"] == "lstm"
    printed = capsys.readouterr().out
    assert "worst infer: lstm hidden 64 batch 4" in printed and "**gru**" in printed and "**lstm**" in printed
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert out.with_suffix(".png").stat().st_size > 1000  # a grid with blank (unmeasured) points


def test_inference_is_timed_with_the_weights_locked_once_and_leaves_them_unlocked():
    """The scratch side packs its weights once for all the timed calls (as a served model), not per call."""
    import numpy as np
    from rnnkit.scratch.recurrent import LSTM

    layer = LSTM(3, 5, dtype=np.float32, rng=0)
    x = np.ones((2, 4, 3), dtype=np.float32)
    locks, seen = [], []
    lock = layer.lock_weights
    layer.lock_weights = lambda: locks.append(1) or lock()

    def infer():
        seen.append((layer.training, layer.weights_locked))
        layer.forward(x)

    assert sweep.inference(layer, "scratch", infer, min_time=0.0) > 0
    assert len(locks) == 1 and len(seen) >= 3 and set(seen) == {(False, True)}
    assert layer.training and not layer.weights_locked


class FakeSide:
    """A side that answers every timing at once: 1 ms for scratch, 2 ms for torch."""

    def __init__(self, args, threads):
        self.args, self.asked, self.closed, self.readied = args, [], False, False

    def ready(self):
        self.readied = True

    def time(self, batch, mode):
        assert self.readied, "timed before it was ready"
        self.asked.append((batch, mode))
        return {"seconds": 1e-3 if self.args[0] == "scratch" else 2e-3, "path": "threaded"}

    def close(self):
        self.closed = True


def test_time_and_input_reach_every_worker_and_the_saved_result(tmp_path, monkeypatch):
    """`--time 7 --input 5`: each worker process is told the sizes, and the JSON records them."""
    import json

    sides = []
    monkeypatch.setattr(sweep, "Side", lambda args, threads: sides.append(FakeSide(args, threads)) or sides[-1])
    monkeypatch.setattr(sweep, "run_worker", lambda args, threads: {"gflops": 1.0, "blas": "test"})
    out = tmp_path / "s.json"
    assert sweep.main(["--cells", "lstm", "--hidden", "24", "--batch", "3", "--rounds", "1", "--time", "7",
                       "--input", "5", "--out", str(out)]) == 0
    assert len(sides) == 2 and all(s.args[s.args.index("--time") + 1] == "7" and s.args[s.args.index("--input") + 1]
                                   == "5" for s in sides)
    saved_result = json.loads(out.read_text())
    assert (saved_result["time"], saved_result["input"]) == (7, 5)


def test_the_sides_take_turns_point_by_point_and_close_after_their_row(monkeypatch):
    """Both sides' processes start once per (cell, hidden); every batch and mode is timed on each side
    `rounds` times, the side that goes first alternating; the ratio is scratch / torch."""
    sides, order = [], []

    class Logged(FakeSide):
        def time(self, batch, mode):
            order.append((self.args[1], batch, mode, self.args[0]))
            return super().time(batch, mode)

    def start(args, threads):
        sides.append(Logged(args, threads))
        return sides[-1]

    monkeypatch.setattr(sweep, "run_worker", lambda args, threads: {"gflops": 1.0, "blas": "test"})
    result = sweep.sweep(["gru"], [8, 16], [1, 3], rounds=2, threads=1, min_time=0.0, say=lambda line: None,
                         start=start)
    assert [s.args[:2] for s in sides] == [["scratch", "gru"], ["torch", "gru"]] * 2 and all(s.closed for s in sides)
    assert [s.args[2] for s in sides] == ["8", "8", "16", "16"]
    assert len(order) == 2 * 2 * 2 * 3 * 2  # hidden × batch × round × mode × side
    first = [engine for k, (_, _, _, engine) in enumerate(order) if k % 2 == 0]
    assert first[:6] == ["scratch", "torch", "scratch", "torch", "scratch", "torch"]  # round 0 then round 1
    assert all(order[k][:3] == order[k + 1][:3] for k in range(0, len(order), 2))  # a pair: one point and mode
    assert [(p["hidden"], p["batch"]) for p in result["points"]] == [(8, 1), (8, 3), (16, 1), (16, 3)]
    assert all(p[mode]["ratio"] == 0.5 for p in result["points"] for mode in sweep.MODES)


def test_a_worker_builds_its_layer_and_inputs_at_the_sizes_given():
    bench = sweep.Bench("scratch", "gru", 6, threads=1, time_steps=3, input_size=5)
    for mode in sweep.MODES:
        timed = bench.time(2, mode, min_time=0.0)
        assert timed["seconds"] > 0 and timed["path"] in ("numpy", "numba", "threaded")
    out, _ = bench.layer.forward(bench.np.zeros((2, 3, 5), dtype=bench.np.float32))
    assert out.shape == (2, 3, 6)


def test_a_served_worker_answers_one_json_line_a_request():
    import io
    import json

    replies = io.StringIO()
    sweep.serve("scratch", "rnn", 4, threads=1, min_time=0.0, time_steps=3, input_size=2,
                requests=io.StringIO("1 fwd\n2 infer\n"), replies=replies)
    lines = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert lines[0] == {"ready": True}
    assert len(lines) == 3 and all(line["seconds"] > 0 for line in lines[1:])


def test_drawn_shapes_come_from_the_seed_alone_and_cover_their_ranges():
    shapes = sweep.draw_shapes(300, seed=7)
    assert shapes == sweep.draw_shapes(300, seed=7) and shapes != sweep.draw_shapes(300, seed=8)
    assert sweep.draw_shapes(5, seed=7) == shapes[:5]  # more shapes extend the list, the first stay
    assert {s["cell"] for s in shapes} == set(sweep.CELLS)
    for name, (low, high) in sweep.DRAW_RANGES.items():
        sizes = [s[name] for s in shapes]
        assert low <= min(sizes) and max(sizes) <= high
        # log-uniform: about half below the geometric mean of the range, the small sizes drawn as often as large
        share = sum(size < (low * high) ** 0.5 for size in sizes) / len(sizes)
        assert 0.35 < share < 0.65, (name, share)


def test_each_drawn_shape_gets_its_own_workers_and_keeps_its_sizes():
    sides = []

    def start(args, threads):
        sides.append(FakeSide(args, threads))
        return sides[-1]

    shapes = [{"cell": "lstm", "hidden": 33, "batch": 5, "input": 7, "time": 3},
              {"cell": "rnn", "hidden": 600, "batch": 1, "input": 300, "time": 90}]
    result = sweep.measure_drawn(shapes, rounds=2, threads=1, min_time=0.0, say=lambda line: None, start=start)
    assert [s.args[:2] for s in sides] == [["scratch", "lstm"], ["torch", "lstm"], ["scratch", "rnn"], ["torch", "rnn"]]
    assert all(s.closed for s in sides)
    assert [(s.args[s.args.index("--time") + 1], s.args[s.args.index("--input") + 1]) for s in sides] == [
        ("3", "7"), ("3", "7"), ("90", "300"), ("90", "300")]
    assert [s.asked[0][0] for s in sides] == [5, 5, 1, 1]
    assert [{k: p[k] for k in shapes[0]} for p in result["points"]] == shapes
    assert all(p[mode]["ratio"] == 0.5 for p in result["points"] for mode in sweep.MODES)


def test_misses_hold_each_cell_to_the_issues_target():
    lstm, rnn = point("lstm", 64, 4, 11.5, 10.0), point("rnn", 64, 4, 10.5, 10.0)  # 1.15 and 1.05 everywhere
    lstm["infer"] = {"scratch_ms": 9.0, "torch_ms": 10.0, "ratio": 0.9}
    assert sweep.misses([lstm, rnn]) == [{"cell": "rnn", "hidden": 64, "batch": 4, "mode": "fwd+bwd", "ratio": 1.05},
                                         {"cell": "rnn", "hidden": 64, "batch": 4, "mode": "infer", "ratio": 1.05}]
    lstm["fwd+bwd"]["ratio"] = 1.21
    assert sweep.misses([lstm])[0]["mode"] == "fwd+bwd"


def test_draw_from_the_command_line_writes_its_table_and_misses(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setattr(sweep, "Side", FakeSide)
    monkeypatch.setattr(sweep, "run_worker", lambda args, threads: {"gflops": 1.0, "blas": "test"})
    out = tmp_path / "d.json"
    assert sweep.main(["--draw", "3", "--seed", "11", "--rounds", "1", "--out", str(out)]) == 0
    saved_result = json.loads(out.read_text())
    assert saved_result["draw"]["count"] == 3 and saved_result["draw"]["seed"] == 11
    assert [{k: p[k] for k in ("cell", "hidden", "batch", "input", "time")} for p in saved_result["points"]] == \
        sweep.draw_shapes(3, 11)
    assert saved_result["misses"] == []  # every ratio 0.5
    assert not out.with_suffix(".png").exists()  # no grid, no heat map
    printed = capsys.readouterr().out
    assert printed.count("| 0.50 | 0.50 |") == 3 and "above the targets: 0 of 6" in printed
    assert sweep.main(["--table", str(out)]) == 0
    assert capsys.readouterr().out.startswith("| cell | hidden | batch | input | T |")


def test_a_draws_misses_are_timed_again_and_kept_as_first_measured(tmp_path, monkeypatch, capsys):
    """A shape above its target is timed once more on its own workers after the draw: the miss keeps its
    first ratio, and "again" holds the new one (here the first timing 3x torch's, the second 0.5x)."""
    import json

    started = []

    class SlowFirst(FakeSide):  # the first pair of workers of each shape answers 6 ms for scratch
        def __init__(self, args, threads):
            super().__init__(args, threads)
            started.append(tuple(args[:2]))
            self.slow = args[0] == "scratch" and started.count(tuple(args[:2])) == 1

        def time(self, batch, mode):
            answer = super().time(batch, mode)
            return {**answer, "seconds": 6e-3} if self.slow else answer

    monkeypatch.setattr(sweep, "Side", SlowFirst)
    monkeypatch.setattr(sweep, "run_worker", lambda args, threads: {"gflops": 1.0, "blas": "test"})
    out = tmp_path / "d.json"
    assert sweep.main(["--draw", "1", "--seed", "11", "--rounds", "1", "--out", str(out)]) == 0
    shape = sweep.draw_shapes(1, 11)[0]
    saved = json.loads(out.read_text())
    assert saved["misses"] == [{**shape, "mode": mode, "ratio": 3.0, "again": 0.5} for mode in ("fwd+bwd", "infer")]
    assert [p["fwd+bwd"]["ratio"] for p in saved["points"]] == [3.0]  # the table as first measured
    assert len(started) == 4  # the draw's pair, then one more pair for the shape timed again
    assert "above the targets: 2 of 2" in capsys.readouterr().out


def test_a_draw_of_no_shapes_is_refused_by_the_command_line(capsys, monkeypatch, tmp_path):
    import pytest

    monkeypatch.setattr(sweep, "Side", FakeSide)  # (were it let through: no real workers, and no sweep's file)
    monkeypatch.setattr(sweep, "run_worker", lambda args, threads: {"gflops": 1.0, "blas": "test"})
    monkeypatch.chdir(tmp_path)
    for count in ("0", "-3"):
        with pytest.raises(SystemExit) as refused:
            sweep.main(["--draw", count, "--out", str(tmp_path / "d.json")])
        assert refused.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_both_sides_are_ready_before_either_is_timed_and_a_failed_start_closes_both():
    """The two workers start together; the first timing waits until both have built their layers (a side
    still importing its engine took a core from the other's first timings). A side that dies while starting
    stops the sweep with its error, and the other side's process is not left running."""
    events = []

    class Logged(FakeSide):
        def ready(self):
            events.append(("ready", self.args[0]))
            super().ready()

        def time(self, batch, mode):
            events.append(("time", self.args[0]))
            return super().time(batch, mode)

    sides = []

    def start(args, threads):
        sides.append(Logged(args, threads))
        return sides[-1]

    sweep.sweep(["rnn"], [8], [2], rounds=1, threads=1, min_time=0.0, say=lambda line: None, start=start)
    assert events[:2] == [("ready", "scratch"), ("ready", "torch")] and events[2][0] == "time"

    class Dies(FakeSide):
        def ready(self):
            if self.args[0] == "torch":
                raise RuntimeError("worker ['torch'] failed")

    started = []

    def start_dying(args, threads):
        started.append(Dies(args, threads))
        return started[-1]

    import pytest

    with pytest.raises(RuntimeError, match="failed"):
        sweep.sweep(["rnn"], [8], [2], rounds=1, threads=1, min_time=0.0, say=lambda line: None, start=start_dying)
    assert len(started) == 2 and all(side.closed for side in started)
