"""Speed of the scratch engine's recurrent layers against PyTorch's on the CPU.

Each measurement runs in its own process (one engine, one cell, one shape), and the two engines alternate
over several rounds, because these machines drift in speed by 2x within minutes; the report gives medians.
Both engines get the same thread count. The machine's float32 GEMM rate is measured in the same run, and
each row reports the GFLOP/s the layer achieves in its matrix products.

    python benchmarks/engine_speed.py                 # full table, results in benchmarks/results/
    python benchmarks/engine_speed.py --quick         # tiny shapes, one round (a smoke test)

Each scratch layer runs on the path rnnkit/scratch/fast/selector.py chooses (numba and threaded when numba is
installed; NumPy otherwise or with --no-numba, which sets RNNKIT_NO_NUMBA=1 for the scratch workers;
RNNKIT_PATH forces one); the report names the path each row ran on.
Timed: "fwd" is the training forward pass (PyTorch with autograd recording; the scratch engine keeps its
cache), "fwd+bwd" adds the backward pass with the gradient of the input, the initial state and all weights.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rnnkit.runtime import tune_process

# First thing, before anything loads NumPy (rnnkit.checkpoint does), as the rnnkit command does: the workers'
# OpenBLAS then takes its thread timeout and kernels (rnnkit/runtime.py). Before 2026-12-03 the import below
# came first, so a scratch worker's OpenBLAS threads spun ~80 ms after every product instead of ~1.3 ms and
# slowed the threaded paths' parts sharing their cores (GRU hidden 128, batch 64 fwd+bwd: 53-58 ms against
# 31-38 in a tuned process).
tune_process()

from rnnkit.checkpoint.atomic import write_json  # noqa: E402

SHAPES = [(32, 64, 128, 256), (64, 100, 256, 512), (1, 100, 64, 128), (16, 512, 64, 128)]
QUICK_SHAPES = [(2, 5, 3, 4)]
CELLS = ("rnn", "gru", "lstm")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def flops(cell: str, shape, backward: bool) -> float:
    """Matrix-product FLOPs: forward 2·T·B·G·H·(I+H); backward twice that (input and weight gradients)."""
    b, t, i, h = shape
    forward = 2.0 * t * b * GATES[cell] * h * (i + h)
    return forward * (3 if backward else 1)


def _timeit(fn, min_time: float, min_reps: int = 3) -> float:
    """Median seconds per call in the steady state. The warm-up (at least 3 calls and `min_time`) also
    covers the first calls of a process that allocates large arrays, which run up to 2x slower: glibc
    raises its mmap threshold only as big blocks are freed, and until then each call faults in fresh pages."""
    start = time.perf_counter()
    for calls in range(1000):
        fn()
        if calls >= 2 and time.perf_counter() - start >= min_time:
            break
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker(engine: str, cell: str, shape, threads: int, min_time: float) -> dict:
    from rnnkit.runtime import tune_process

    tune_process()  # before NumPy, as in any rnnkit program: it may pick OpenBLAS's kernels
    import numpy as np

    b, t, i, h = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, i)).astype(np.float32)
    d_out = rng.standard_normal((b, t, h)).astype(np.float32)
    if engine == "scratch":
        from rnnkit.scratch.recurrent import GRU, LSTM, RNN

        layer = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[cell](i, h, dtype=np.float32, rng=0)

        def fwd():
            layer.forward(x)

        def fwd_bwd():
            layer.forward(x)
            layer.backward(d_out)

        fwd()
        path = layer.last_paths[0]  # the path the selector chose (fast/selector.py; RNNKIT_PATH forces one)
    else:
        import torch

        path = "torch"
        torch.set_num_threads(threads)
        layer = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](i, h, batch_first=True)
        xt = torch.tensor(x, requires_grad=True)
        dt = torch.tensor(d_out)

        def fwd():
            layer(xt)

        def fwd_bwd():
            out, _ = layer(xt)
            out.backward(dt)
    return {"fwd": _timeit(fwd, min_time), "fwd+bwd": _timeit(fwd_bwd, min_time), "path": path}


def gemm_worker(threads: int, min_time: float) -> dict:
    """float32 GEMM throughput of NumPy's BLAS on a recurrent-layer-sized product (GFLOP/s)."""
    from rnnkit.runtime import tune_process

    tune_process()  # the same OpenBLAS kernels as the scratch workers
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((6400, 512)).astype(np.float32)
    w = rng.standard_normal((512, 2048)).astype(np.float32)
    seconds = _timeit(lambda: a @ w, min_time)
    return {"gflops": 2.0 * a.shape[0] * a.shape[1] * w.shape[1] / seconds / 1e9, "blas": _blas_kernel()}


def _blas_kernel() -> str:
    """NumPy's BLAS and the CPU kernel set it chose (OpenBLAS falls back to older kernels on CPUs it does not
    know; OPENBLAS_CORETYPE overrides the choice), when threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in blas) or "unknown"


def worker_environment(threads: int) -> dict:
    """This process's environment with every thread pool (OpenMP, OpenBLAS, MKL) held to `threads`."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads))


def run_worker(args: list[str], threads: int, no_numba: bool = False, script: str = __file__) -> dict:
    """`script --worker ARGS` in a fresh process with `threads` BLAS threads; its last line as JSON."""
    env = worker_environment(threads)
    if no_numba:
        env["RNNKIT_NO_NUMBA"] = "1"
    done = subprocess.run([sys.executable, script, "--worker", *args, "--threads", str(threads)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per (cell, shape)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timing per measurement")
    parser.add_argument("--shapes", help="batch,time,input,hidden;... instead of the four default rows")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one round")
    parser.add_argument("--no-numba", action="store_true", help="run the scratch LSTM on its NumPy path")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine_speed.json"))
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        if args.worker[0] == "gemm":
            result = gemm_worker(args.threads, args.min_time)
        else:
            engine, cell, shape = args.worker[0], args.worker[1], tuple(map(int, args.worker[2].split(",")))
            result = worker(engine, cell, shape, args.threads, args.min_time)
        print(json.dumps(result))
        return 0

    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shapes.split(";")]
        if any(len(shape) != 4 or min(shape) < 1 for shape in shapes):
            parser.error(f"--shapes wants positive batch,time,input,hidden;..., got {args.shapes!r}")
    rounds = 1 if args.quick else args.rounds
    min_time = 0.01 if args.quick else args.min_time
    cells = args.cells.split(",")
    gemm = []
    blas = "unknown"
    rows = []
    load_start = os.getloadavg()
    for cell in cells:
        for shape in shapes:
            spec = [cell, ",".join(map(str, shape))]
            runs = {"scratch": [], "torch": []}
            for r in range(rounds):
                engines = ("scratch", "torch") if r % 2 == 0 else ("torch", "scratch")
                for engine in engines:
                    runs[engine].append(run_worker([engine, *spec, "--min-time", str(min_time)], args.threads,
                                                   args.no_numba))
                measured = run_worker(["gemm", "--min-time", str(min_time)], args.threads)
                gemm.append(measured["gflops"])
                blas = measured["blas"]
            row = {"cell": cell, "batch": shape[0], "time": shape[1], "input": shape[2], "hidden": shape[3],
                   "path": runs["scratch"][0]["path"]}
            for mode in ("fwd", "fwd+bwd"):
                s = statistics.median(run[mode] for run in runs["scratch"])
                t = statistics.median(run[mode] for run in runs["torch"])
                # the median of the per-round ratios: each pair ran minutes apart at most, so drift cancels
                ratio = statistics.median(a[mode] / b[mode] for a, b in zip(runs["scratch"], runs["torch"]))
                row[mode] = {"scratch_ms": s * 1e3, "torch_ms": t * 1e3, "ratio": ratio,
                             "scratch_gflops": flops(cell, shape, mode != "fwd") / s / 1e9}
            rows.append(row)
            print(_format_row(row), flush=True)
    gemm_rate = statistics.median(gemm)
    print(f"\nfloat32 GEMM rate of this machine (NumPy BLAS, {args.threads} threads): {gemm_rate:.1f} GFLOP/s "
          f"(median of {len(gemm)}; {blas})")
    load = {"start": load_start, "end": os.getloadavg(), "cpus": os.cpu_count()}
    print("ratio = median over rounds of scratch time / torch time (below 1: scratch is faster); "
          "GF/s = scratch GEMM FLOPs per second")
    print(f"LSTM and GRU path: {rows_path(rows)}; load average (1, 5, 15 min) at start {_load(load['start'])}, "
          f"at end {_load(load['end'])} on {load['cpus']} CPUs")
    result = {"threads": args.threads, "rounds": rounds, "gemm_gflops": gemm_rate, "blas": blas, "rows": rows,
              "python": sys.version.split()[0], "lstm_path": rows_path(rows), "load_average": load}
    print(f"results written to {write_json(args.out, result)}")
    return 0


def rows_path(rows: list[dict]) -> str:
    """The scratch LSTM's and GRU's path in this run ('numba' or 'numpy'), or 'n/a' when neither ran."""
    return ",".join(sorted({row["path"] for row in rows if row["cell"] in ("lstm", "gru")})) or "n/a"


def _load(values) -> str:
    return " ".join(f"{v:.1f}" for v in values)


def _format_row(row: dict) -> str:
    shape = (f"{row['cell']:>4} B={row['batch']:<3} T={row['time']:<4} I={row['input']:<4} H={row['hidden']:<4} "
             f"[{row['path']}]")
    parts = []
    for mode in ("fwd", "fwd+bwd"):
        m = row[mode]
        parts.append(f"{mode}: {m['scratch_ms']:8.2f} ms vs torch {m['torch_ms']:8.2f} ms  "
                     f"ratio {m['ratio']:.2f}  {m['scratch_gflops']:5.1f} GF/s")
    return shape + " | " + " | ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
