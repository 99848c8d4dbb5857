"""The scratch engine against PyTorch on the CPU over a grid of batch × hidden sizes: where is it slow?

For RNN, GRU and LSTM, T = 64, input 64 (other sizes: `--time`, `--input`), float32, batch {1, 2, 3, 4, 5, 6,
8, 10, 12, 16, 24, 32, 48, 64} × hidden {64, 128, 256, 512}, three timings per point:
    fwd+bwd   a training forward and backward (all gradients);
    fwd       the training forward alone;
    infer     an inference forward (scratch: eval mode, the weights locked once around the timing, as a served
              or evaluated model runs; torch: eval, no_grad).
Each side runs in its own process, one per (side, cell, hidden), kept for all its batch sizes; the driver
asks the two in turn for one timing at a time, a point's mode on one side and then on the other, in
alternating order over several rounds, so that a point's two timings run seconds apart (these machines drift
in speed by 2x within minutes; until 2026-12-06 each process timed a whole row before the other side's ran,
a minute apart). Each point's ratio is the median of the per-round ratios scratch / torch. Both sides get
the same thread count.

    python benchmarks/engine_sweep.py                   # the full grid (about 10 minutes a round on 2 cores)
    python benchmarks/engine_sweep.py --quick           # a small grid, one round (a smoke test)
    python benchmarks/engine_sweep.py --cells lstm --hidden 256 --batch 4,5,6,8,12,16
    python benchmarks/engine_sweep.py --combine rnn_gru.json lstm.json --out all.json   # one grid of several runs
    python benchmarks/engine_sweep.py --draw 36 --seed 20261206  # 36 shapes drawn at random (cell, sizes, T)

Writes a JSON table (benchmarks/results/engine_sweep.json) and, with matplotlib, a heat map of the ratio per
grid point (engine_sweep.png); prints the worst point of each mode. `--draw` writes engine_draw.json, its
table and the shapes above the issue's targets (each timed again after the draw), no heat map. The scratch
rows name the path the selector chose (rnnkit/scratch/fast/selector.py) in training ("path") and in
inference ("infer_path").
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import engine_speed  # noqa: E402  (this folder's engine benchmark; it tunes the process first, see there)
from engine_speed import _timeit, gemm_worker  # noqa: E402

from rnnkit.checkpoint.atomic import write_json  # noqa: E402

BATCHES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64)
HIDDEN = (64, 128, 256, 512)
CELLS = ("rnn", "gru", "lstm")
MODES = ("fwd+bwd", "fwd", "infer")
ENGINES = ("scratch", "torch")
TIME, INPUT = 64, 64
# `--draw`: each size log-uniform over its range (inclusive), the cell uniform over CELLS
SHAPE = ("cell", "hidden", "batch", "input", "time")  # what names a drawn shape
DRAW_RANGES = {"hidden": (16, 1024), "batch": (1, 128), "input": (1, 512), "time": (2, 128)}
# the targets, scratch / torch: forward+backward per cell, inference for all
TARGETS = {"fwd+bwd": {"rnn": 1.0, "gru": 1.0, "lstm": 1.2}, "infer": dict.fromkeys(CELLS, 1.0)}


class Bench:
    """One side's layer for a cell and hidden size, timing a batch size in one mode on request."""

    def __init__(self, engine: str, cell: str, hidden: int, threads: int, time_steps: int = TIME,
                 input_size: int = INPUT):
        from rnnkit.runtime import tune_process

        tune_process()  # before NumPy, as the rnnkit command does
        import numpy as np

        self.np, self.engine, self.hidden, self.shape = np, engine, hidden, (time_steps, input_size)
        if engine == "scratch":
            from rnnkit.scratch.recurrent import GRU, LSTM, RNN

            self.layer = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[cell](input_size, hidden, dtype=np.float32, rng=0)
        else:
            import torch

            torch.set_num_threads(threads)
            self.torch = torch
            self.layer = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](
                input_size, hidden, batch_first=True)
        self.calls: dict = {}

    def _calls(self, batch: int) -> dict:
        """{mode: a call of that mode} at this batch size, its inputs drawn once (seeded by the batch)."""
        if batch in self.calls:
            return self.calls[batch]
        rng, layer = self.np.random.default_rng(batch), self.layer
        time_steps, input_size = self.shape
        x = rng.standard_normal((batch, time_steps, input_size)).astype(self.np.float32)
        d_out = rng.standard_normal((batch, time_steps, self.hidden)).astype(self.np.float32)
        if self.engine == "scratch":
            def fwd():
                layer.train()
                layer.forward(x)

            def fwd_bwd():
                fwd()
                layer.backward(d_out)

            def infer():  # in eval mode with the weights locked (packed once), as rnnkit's predict, evaluate,
                layer.forward(x)  # generate and serve run a model; `inference` below locks them around the timing
        else:
            torch = self.torch
            xt, dt = torch.tensor(x, requires_grad=True), torch.tensor(d_out)

            def fwd():
                layer.train()
                return layer(xt)[0]

            def fwd_bwd():
                fwd().backward(dt)

            def infer():
                layer.eval()
                with torch.no_grad():
                    layer(xt)
        self.calls = {batch: {"fwd+bwd": fwd_bwd, "fwd": fwd, "infer": infer}}  # one batch's arrays at a time
        return self.calls[batch]

    def time(self, batch: int, mode: str, min_time: float) -> dict:
        """{"seconds": of one call, "path": the scratch path that ran it (training or inference), or "torch"}."""
        call = self._calls(batch)[mode]
        seconds = inference(self.layer, self.engine, call, min_time) if mode == "infer" else _timeit(call, min_time)
        return {"seconds": seconds, "path": self.layer.last_paths[0] if self.engine == "scratch" else "torch"}


def serve(engine: str, cell: str, hidden: int, threads: int, min_time: float, time_steps: int, input_size: int,
          requests=None, replies=None) -> None:
    """A side's worker process: once its layer is built, one line {"ready": true}; then reads "BATCH MODE"
    lines and answers each with one JSON line (`Bench.time`), until its input ends."""
    bench = Bench(engine, cell, hidden, threads, time_steps, input_size)
    print(json.dumps({"ready": True}), file=replies or sys.stdout, flush=True)
    for line in requests or sys.stdin:
        batch, mode = line.split()
        print(json.dumps(bench.time(int(batch), mode, min_time)), file=replies or sys.stdout, flush=True)


def inference(layer, engine: str, infer, min_time: float) -> float:
    """Seconds of one inference forward. The scratch layer's weights are locked once around the timing (until
    2026-12-04 every timed call locked and unlocked them, so each repacked the weights: 0.1-1.3 ms more a call
    than a user's locked model pays); then unlocked, as the training modes need."""
    if engine != "scratch":
        return _timeit(infer, min_time)
    layer.eval()
    with layer.locked_weights():
        seconds = _timeit(infer, min_time)
    layer.train()
    return seconds


def run_worker(args: list[str], threads: int) -> dict:
    return engine_speed.run_worker(args, threads, script=__file__)


class Side:
    """One side's worker process (`serve`) for a cell and hidden size, kept for all its batch sizes: the driver
    asks each side in turn for one timing, so a point's two timings run seconds apart."""

    def __init__(self, args: list[str], threads: int):
        env = engine_speed.worker_environment(threads)
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", "serve", *args, "--threads",
                                         str(threads)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True)

    def ready(self) -> None:
        """Wait until the worker has built its layer (imported its engine: seconds of one core's work, which
        made the other side's first timing of a row up to 6x slow before the two waited for each other)."""
        self._reply()

    def time(self, batch: int, mode: str) -> dict:
        self.process.stdin.write(f"{batch} {mode}\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.errors.seek(0)
            raise RuntimeError(f"worker {self.process.args[3:]} failed:\n{self.errors.read()[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        self.errors.close()


@contextlib.contextmanager
def started_sides(start, spec: list[str], threads: int):
    """{engine: its side}, both started at once and both ready (their layers built) before either is timed;
    both closed on the way out, whatever stopped the timing (a side that failed to start included)."""
    sides = {engine: start([engine, *spec], threads) for engine in ENGINES}
    try:
        for side in sides.values():
            side.ready()
        yield sides
    finally:
        for side in sides.values():
            side.close()


def progress(line: str) -> None:
    """A measured point's line, out at once (the sweep's output is often a log file)."""
    print(line, flush=True)


def sweep(cells, hidden_sizes, batches, rounds: int, threads: int, min_time: float, say=progress,
          time_steps: int = TIME, input_size: int = INPUT, start=None) -> dict:
    """Measure the grid; returns {"points": [...], "gemm_gflops": ...}. Per (cell, hidden) both sides' worker
    processes start once; then for each batch size, round and mode the two are timed one after the other, in
    alternating order (these machines drift in speed by 2x within minutes: the pair's ratio is what holds)."""
    start = start or Side  # (a test passes its own)
    points, gemm = [], []
    blas = "unknown"
    for cell in cells:
        for hidden in hidden_sizes:
            spec = [cell, str(hidden), "--min-time", str(min_time), "--time", str(time_steps), "--input",
                    str(input_size)]
            with started_sides(start, spec, threads) as sides:
                for batch in batches:
                    point = measure_point(sides, cell, hidden, batch, rounds)
                    points.append(point)
                    say(format_point(point))
            measured = run_worker(["gemm", "--min-time", str(min_time)], threads)
            gemm.append(measured["gflops"])
            blas = measured["blas"]
    return {"points": points, "gemm_gflops": statistics.median(gemm), "blas": blas}


def measure_point(sides: dict, cell: str, hidden: int, batch: int, rounds: int) -> dict:
    """One grid point: every mode timed `rounds` times on each side, the sides alternating which goes first;
    each mode's ratio is the median of its per-round ratios scratch / torch."""
    times: dict = {mode: {engine: [] for engine in ENGINES} for mode in MODES}
    paths = {}
    for r in range(rounds):
        for m, mode in enumerate(MODES):
            for engine in ENGINES if (r + m) % 2 == 0 else ENGINES[::-1]:
                reply = sides[engine].time(batch, mode)
                times[mode][engine].append(reply["seconds"])
                if engine == "scratch":
                    paths[mode] = reply["path"]
    point = {"cell": cell, "hidden": hidden, "batch": batch, "path": paths["fwd"], "infer_path": paths["infer"]}
    for mode in MODES:
        scratch, torch = times[mode]["scratch"], times[mode]["torch"]
        point[mode] = {"scratch_ms": statistics.median(scratch) * 1e3, "torch_ms": statistics.median(torch) * 1e3,
                       "ratio": statistics.median(s / t for s, t in zip(scratch, torch))}
    return point


def draw_shapes(count: int, seed: int) -> list[dict]:
    """`count` shapes nobody chose: each {"cell", "hidden", "batch", "input", "time"}, the sizes log-uniform
    over DRAW_RANGES, from `seed` alone. A grid's rows are points someone picked; between them a slow region
    can hide (the issue's 17-30x at batch sizes between its benchmark's)."""
    rng = random.Random(seed)

    def size(low: int, high: int) -> int:
        return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))

    return [{"cell": rng.choice(CELLS), **{name: size(*DRAW_RANGES[name]) for name in ("hidden", "batch", "input",
                                                                                       "time")}}
            for _ in range(count)]


def measure_drawn(shapes: list[dict], rounds: int, threads: int, min_time: float, say=progress,
                  start=None) -> dict:
    """Each shape of `draw_shapes` timed as a grid point (`measure_point`), its own pair of worker processes
    (they are built for one cell, hidden size, input size and T); {"points": [...]} with each point's input
    and time."""
    start = start or Side
    points = []
    for shape in shapes:
        spec = [shape["cell"], str(shape["hidden"]), "--min-time", str(min_time), "--time", str(shape["time"]),
                "--input", str(shape["input"])]
        with started_sides(start, spec, threads) as sides:
            point = measure_point(sides, shape["cell"], shape["hidden"], shape["batch"], rounds)
        point.update(input=shape["input"], time=shape["time"])
        points.append(point)
        say(f"{format_point(point)}  I={shape['input']} T={shape['time']}")
    return {"points": points}


def misses(points: list[dict]) -> list[dict]:
    """The points above the issue's TARGETS, each {"cell", "hidden", "batch", ("input", "time",) "mode",
    "ratio"}."""
    out = []
    for p in points:
        for mode, targets in TARGETS.items():
            if p[mode]["ratio"] > targets[p["cell"]]:
                shape = {k: p[k] for k in SHAPE if k in p}
                out.append({**shape, "mode": mode, "ratio": round(p[mode]["ratio"], 3)})
    return out


def timed_again(missed: list[dict], rounds: int, threads: int, min_time: float, say=progress, start=None
                ) -> list[dict]:
    """Each missed shape of a draw timed once more, on its own workers, after the draw: each miss with "again",
    its mode's new ratio. The draw's count of misses stays as first measured; a miss that does not hold when
    timed again (a burst of the host's load, or a process beside the draw) shows as such, not as gone."""
    def shape(p):
        return tuple(p[k] for k in SHAPE)

    shapes = list(dict.fromkeys(shape(m) for m in missed))  # each shape once, in the draw's order
    again = measure_drawn([dict(zip(SHAPE, s)) for s in shapes], rounds, threads, min_time, say, start)["points"]
    timed = dict(zip(shapes, again))
    return [{**m, "again": round(timed[shape(m)][m["mode"]]["ratio"], 3)} for m in missed]


def format_point(p: dict) -> str:
    cells = "  ".join(f"{mode} {p[mode]['scratch_ms']:8.2f} / {p[mode]['torch_ms']:8.2f} ms = {p[mode]['ratio']:5.2f}"
                      for mode in MODES)
    return f"{p['cell']:>4} H={p['hidden']:<4} B={p['batch']:<3} [{p['path']:>9}]  {cells}"


def worst(points: list[dict], mode: str) -> dict:
    return max(points, key=lambda p: p[mode]["ratio"])


def jumps(points: list[dict], mode: str) -> list[dict]:
    """Neighbouring batch sizes (same cell and hidden) whose ratios scratch / torch differ by more than 1.5x:
    a cliff in the scratch engine (its time growing with the batch, as torch's does, is not one)."""
    out = []
    by_row: dict = {}
    for p in points:
        by_row.setdefault((p["cell"], p["hidden"]), []).append(p)
    for (cell, hidden), row in by_row.items():
        row.sort(key=lambda p: p["batch"])
        for a, b in zip(row, row[1:]):
            factor = b[mode]["ratio"] / a[mode]["ratio"]
            if factor > 1.5 or factor < 1 / 1.5:
                out.append({"cell": cell, "hidden": hidden, "from": a["batch"], "to": b["batch"],
                            "factor": round(factor, 2)})
    return out


def drawn_markdown(result: dict) -> str:
    """The drawn shapes as one Markdown table, a row per shape (benchmarks/README.md's table)."""
    lines = ["| cell | hidden | batch | input | T | fwd+bwd | inference | path |", "|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        lines.append(f"| {p['cell']} | {p['hidden']} | {p['batch']} | {p['input']} | {p['time']} | "
                     f"{p['fwd+bwd']['ratio']:.2f} | {p['infer']['ratio']:.2f} | {p['path']} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    """The grid as Markdown tables, one per cell: a row per hidden size, a column per batch size, each entry
    the fwd+bwd ratio / the infer ratio (benchmarks/README.md's table)."""
    points = result["points"]
    lines = []
    for cell in dict.fromkeys(p["cell"] for p in points):
        batches = sorted({p["batch"] for p in points if p["cell"] == cell})
        lines += [f"**{cell}** (scratch / torch: fwd+bwd · inference)", "",
                  "| hidden | " + " | ".join(f"B={b}" for b in batches) + " |",
                  "|---" * (len(batches) + 1) + "|"]
        for hidden in sorted({p["hidden"] for p in points if p["cell"] == cell}):
            row = {p["batch"]: p for p in points if p["cell"] == cell and p["hidden"] == hidden}
            lines.append(f"| {hidden} | " + " | ".join(
                f"{row[b]['fwd+bwd']['ratio']:.2f} · {row[b]['infer']['ratio']:.2f}" if b in row else "–"
                for b in batches) + " |")
        lines.append("")
    return "\n".join(lines)


def combine(results: list[dict], sources: list[str]) -> dict:
    """Several saved sweeps as one: their points (a later file's point replaces an earlier one's at the same
    cell, hidden and batch), the worst point and the jumps of the whole, each source's own settings kept."""
    merged: dict = {}
    for result in results:
        for point in result["points"]:
            merged[(point["cell"], point["hidden"], point["batch"])] = point
    points = list(merged.values())
    keep = ("gemm_gflops", "blas", "threads", "rounds", "time", "input", "python", "load_average")
    return {"points": points, "gemm_gflops": statistics.median(r["gemm_gflops"] for r in results),
            "blas": results[-1].get("blas", "unknown"),
            "sources": [dict(file=name, **{k: r[k] for k in keep if k in r}) for name, r in zip(sources, results)],
            "worst": {mode: worst(points, mode) for mode in MODES},
            "jumps": {mode: jumps(points, mode) for mode in MODES}}


def grid_axes(points: list[dict]) -> tuple[list, list, list]:
    """The cells (in order of appearance), hidden sizes and batch sizes the points cover."""
    return (list(dict.fromkeys(p["cell"] for p in points)), sorted({p["hidden"] for p in points}),
            sorted({p["batch"] for p in points}))


def heat_map(points: list[dict], cells, hidden_sizes, batches, path: Path) -> Path | None:
    """One panel per (cell, mode): hidden × batch, coloured by the ratio (below 1: scratch faster); a point
    not measured stays blank."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.colors import TwoSlopeNorm
    except ImportError:
        return None
    fig, axes = plt.subplots(len(cells), len(MODES), figsize=(5.2 * len(MODES), 2.2 + 1.1 * len(cells) *
                                                                 len(hidden_sizes) / 2), squeeze=False)
    index = {(p["cell"], p["hidden"], p["batch"]): p for p in points}
    for i, cell in enumerate(cells):
        for j, mode in enumerate(MODES):
            grid = np.array([[index[(cell, h, b)][mode]["ratio"] if (cell, h, b) in index else np.nan
                              for b in batches] for h in hidden_sizes])
            ax = axes[i][j]
            image = ax.imshow(grid, cmap="RdYlGn_r", norm=TwoSlopeNorm(vmin=min(0.2, np.nanmin(grid)), vcenter=1.0,
                                                                        vmax=max(2.0, np.nanmax(grid))), aspect="auto")
            for (r, c), value in np.ndenumerate(grid):
                if not np.isnan(value):
                    ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(batches)), [str(b) for b in batches], fontsize=8)
            ax.set_yticks(range(len(hidden_sizes)), [str(h) for h in hidden_sizes], fontsize=8)
            ax.set_title(f"{cell} {mode}: scratch / torch", fontsize=10)
            ax.set_xlabel("batch", fontsize=8)
            ax.set_ylabel("hidden", fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def positive(text: str) -> int:
    """argparse's type for a count of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per (cell, hidden)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--hidden", default=",".join(map(str, HIDDEN)))
    parser.add_argument("--batch", default=",".join(map(str, BATCHES)))
    parser.add_argument("--min-time", type=float, default=0.15, help="seconds of timing per measurement")
    parser.add_argument("--time", type=int, default=TIME, help="sequence length T")
    parser.add_argument("--input", type=int, default=INPUT, help="input size")
    parser.add_argument("--quick", action="store_true", help="batch 1,5 × hidden 8, one round (a smoke test)")
    parser.add_argument("--draw", type=positive, metavar="N", help="time N shapes drawn at random (`draw_shapes`: "
                        "cell, hidden, batch, input, T) instead of the grid; written to --out without a heat map")
    parser.add_argument("--seed", type=int, default=0, help="the seed of --draw's shapes")
    parser.add_argument("--out", help="the JSON to write (default: results/engine_sweep.json, with --draw "
                        "results/engine_draw.json, in this folder)")
    parser.add_argument("--table", metavar="FILE.json", help="print a saved result as Markdown tables and stop")
    parser.add_argument("--combine", nargs="+", metavar="FILE.json",
                        help="merge saved results into one (--out, its heat map, its tables) and stop")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = args.out or str(Path(__file__).parent / "results" / ("engine_draw.json" if args.draw else
                                                                      "engine_sweep.json"))

    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print(drawn_markdown(saved) if "draw" in saved else markdown(saved))
        return 0

    if args.combine:
        files = [Path(name) for name in args.combine]
        result = combine([json.loads(f.read_text()) for f in files], [f.name for f in files])
        report(result, Path(args.out))
        print(markdown(result))
        return 0

    if args.worker is not None:
        if args.worker[0] == "gemm":
            print(json.dumps(gemm_worker(args.threads, args.min_time)))
        else:  # serve ENGINE CELL HIDDEN
            engine, cell, hidden = args.worker[1:4]
            serve(engine, cell, int(hidden), args.threads, args.min_time, args.time, args.input)
        return 0

    if args.draw:
        return draw(args)

    cells = args.cells.split(",")
    hidden_sizes = [8] if args.quick else [int(h) for h in args.hidden.split(",")]
    batches = [1, 5] if args.quick else [int(b) for b in args.batch.split(",")]
    rounds, min_time = (1, 0.01) if args.quick else (args.rounds, args.min_time)
    load_start = os.getloadavg()
    result = sweep(cells, hidden_sizes, batches, rounds, args.threads, min_time, time_steps=args.time,
                   input_size=args.input)
    points = result["points"]
    result.update(threads=args.threads, rounds=rounds, time=args.time, input=args.input, python=sys.version.split()[0],
                  load_average={"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count()},
                  worst={mode: worst(points, mode) for mode in MODES},
                  jumps={mode: jumps(points, mode) for mode in MODES})
    print(f"\nfloat32 GEMM rate (NumPy BLAS, {args.threads} threads): {result['gemm_gflops']:.1f} GFLOP/s; "
          f"{result['blas']}")
    report(result, Path(args.out))
    return 0


def draw(args) -> int:
    """`--draw N --seed S`: the drawn shapes timed, their table, misses and worst points printed, the JSON
    written."""
    load_start = os.getloadavg()
    result = measure_drawn(draw_shapes(args.draw, args.seed), args.rounds, args.threads, args.min_time)
    points = result["points"]
    gemm = run_worker(["gemm", "--min-time", str(args.min_time)], args.threads)
    result.update(draw={"count": args.draw, "seed": args.seed, "ranges": DRAW_RANGES}, threads=args.threads,
                  rounds=args.rounds, gemm_gflops=gemm["gflops"], blas=gemm["blas"], python=sys.version.split()[0],
                  load_average={"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count()},
                  worst={mode: worst(points, mode) for mode in MODES}, misses=misses(points))
    if result["misses"]:
        print("the misses timed again:")
        result["misses"] = timed_again(result["misses"], args.rounds, args.threads, args.min_time)
    print(drawn_markdown(result))
    print(f"float32 GEMM rate (NumPy BLAS, {args.threads} threads): {gemm['gflops']:.1f} GFLOP/s; {gemm['blas']}")
    print(f"above the targets: {len(result['misses'])} of {2 * len(points)} (shape, mode)s", *result["misses"],
          sep="\n  ")
    print(f"results written to {write_json(Path(args.out), result)}")
    return 0


def report(result: dict, out: Path) -> None:
    """Print the worst point and the jumps of each mode; write the JSON to `out` and its heat map beside it."""
    points = result["points"]
    for mode in MODES:
        w = result["worst"][mode]
        print(f"worst {mode}: {w['cell']} hidden {w['hidden']} batch {w['batch']} [{w['path']}] ratio "
              f"{w[mode]['ratio']:.2f} ({w[mode]['scratch_ms']:.2f} vs {w[mode]['torch_ms']:.2f} ms); "
              f"jumps > 1.5x between neighbouring batches: {len(result['jumps'][mode])}")
    print(f"results written to {write_json(out, result)}")
    png = heat_map(points, *grid_axes(points), out.with_suffix(".png"))
    if png:
        print(f"heat map: {png}")


if __name__ == "__main__":
    sys.exit(main())
