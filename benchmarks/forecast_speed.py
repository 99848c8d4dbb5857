"""Time per training step of the Forecaster on both engines (float32, CPU), at the issue's shape: batch 32,
window 36, hidden 64, horizon 36, one series.

Each measurement runs in its own process (one engine, one cell, one decoder), the engines alternating over the
rounds (engine_speed.py says why); the report gives each side's median and the ratio scratch / torch.

    python benchmarks/forecast_speed.py                    # lstm and gru, both decoders, 3 rounds, 1 thread
    python benchmarks/forecast_speed.py --rounds 5 --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_speed import _timeit, run_worker  # noqa: E402

BATCH, WINDOW, HIDDEN, HORIZON = 32, 36, 64, 36


def worker(engine: str, cell: str, decoder: str, loss: str, threads: int, min_time: float) -> dict:
    from rnnkit.runtime import tune_process

    tune_process()
    import numpy as np

    from rnnkit.engines import build_engine

    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((BATCH, WINDOW, 1)), "y": rng.standard_normal((BATCH, HORIZON, 1))}
    kwargs = dict(input_size=1, horizon=HORIZON, hidden_size=HIDDEN, cell=cell, decoder=decoder, loss=loss)
    model = build_engine(engine, "Forecaster", kwargs, seed=0, device="cpu")
    seconds = _timeit(lambda: model.train_step(batch), min_time)
    return {"step_ms": seconds * 1e3, "ran_on": model.describe()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=4, metavar=("ENGINE", "CELL", "DECODER", "LOSS"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--decoders", default="direct,autoregressive")
    parser.add_argument("--loss", default="quantile")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.threads, args.min_time)))
        return 0
    rows = []
    print(f"batch {BATCH}, window {WINDOW}, hidden {HIDDEN}, horizon {HORIZON}, loss {args.loss}, "
          f"{args.threads} thread(s), {args.rounds} rounds; ms per training step, medians")
    print("| cell | decoder | scratch ms | torch ms | scratch / torch | scratch ran on |")
    print("|---|---|---|---|---|---|")
    for cell in args.cells.split(","):
        for decoder in args.decoders.split(","):
            times: dict[str, list[float]] = {"scratch": [], "torch": []}
            where = ""
            for _ in range(args.rounds):
                for engine in ("scratch", "torch"):
                    out = run_worker([engine, cell, decoder, args.loss, "--min-time", str(args.min_time)],
                                     args.threads, script=__file__)
                    times[engine].append(out["step_ms"])
                    where = out["ran_on"] if engine == "scratch" else where
            s, t = statistics.median(times["scratch"]), statistics.median(times["torch"])
            rows.append({"cell": cell, "decoder": decoder, "scratch_ms": s, "torch_ms": t, "ratio": s / t,
                         "scratch_all": times["scratch"], "torch_all": times["torch"], "scratch_path": where})
            print(f"| {cell} | {decoder} | {s:.2f} | {t:.2f} | {s / t:.2f} | {where} |", flush=True)
    if args.json:
        from rnnkit.checkpoint.atomic import write_json

        write_json(args.json, {"threads": args.threads, "rounds": args.rounds, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
