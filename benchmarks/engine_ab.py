"""Two checkouts' scratch LSTM in one process, call by call: is a change faster, point by point?

On a busy machine the sweep's alternating processes (engine_sweep.py) see ±20-40% per point from one run to
the next (even two runs of the same code differ that much), too much to tell a 10% change. Here both
versions run in the same process, alternating every call, so a load spike hits both alike: for each point
the median time of each and the median of the per-pair ratios (this checkout / the other).

    python benchmarks/engine_ab.py /work/main --points 64x4,128x12 --pairs 40

The other checkout's rnnkit is copied under another package name (its imports inside rnnkit are relative),
into a temporary folder; its numba functions compile on first use. T 64, input 64, float32, the thread
count of the process (RNNKIT_NUM_THREADS / OpenBLAS's, as the engine reads it).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # before NumPy, as the rnnkit command does

import numpy as np  # noqa: E402

from rnnkit.checkpoint.atomic import write_json  # noqa: E402
from rnnkit.scratch.recurrent import LSTM  # noqa: E402

TIME, INPUT = 64, 64


def other_lstm(checkout: Path, folder: Path):
    """The other checkout's LSTM class, its rnnkit imported as `rnnkit_other`."""
    shutil.copytree(checkout / "rnnkit", folder / "rnnkit_other", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(folder))
    from rnnkit_other.scratch.recurrent import LSTM as Other
    return Other


def measure(layers: dict, hidden: int, batch: int, pairs: int) -> dict:
    """{mode: {name: median ms, "ratio": median of this / other}} for fwd+bwd and inference."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, TIME, INPUT)).astype(np.float32)
    d = rng.standard_normal((batch, TIME, hidden)).astype(np.float32)

    def fwd_bwd(layer):
        layer.train()
        layer.forward(x)
        layer.backward(d)

    def infer(layer):
        layer.eval()
        with layer.locked_weights():
            layer.forward(x)

    result = {}
    for mode, call in (("fwd+bwd", fwd_bwd), ("infer", infer)):
        times = {name: [] for name in layers}
        for name, layer in layers.items():
            for _ in range(5):
                call(layer)
        for i in range(pairs):
            for name in (list(layers) if i % 2 == 0 else list(layers)[::-1]):
                start = time.perf_counter()
                call(layers[name])
                times[name].append(time.perf_counter() - start)
        result[mode] = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        result[mode]["ratio"] = statistics.median(a / b for a, b in zip(times["this"], times["other"]))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", help="the other checkout (a folder holding rnnkit/)")
    parser.add_argument("--points", default="64x4,64x12,128x4,128x12", help="HIDDENxBATCH,...")
    parser.add_argument("--pairs", type=int, default=40, help="calls of each version per point and mode")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine_ab.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        Other = other_lstm(Path(args.other), Path(folder))
        points = []
        print("point     fwd+bwd other / this ms (ratio)   inference other / this ms (ratio)", flush=True)
        for point in args.points.split(","):
            hidden, batch = map(int, point.split("x"))
            layers = {"other": Other(INPUT, hidden, dtype=np.float32, rng=0),
                      "this": LSTM(INPUT, hidden, dtype=np.float32, rng=0)}
            result = measure(layers, hidden, batch, args.pairs)
            points.append({"hidden": hidden, "batch": batch, **result})
            print(f"{point:8s} " + "   ".join(f"{r['other']:6.2f} / {r['this']:6.2f} ({r['ratio']:.2f})"
                                              for r in result.values()), flush=True)
    write_json(Path(args.out), {"other": args.other, "pairs": args.pairs, "time": TIME, "input": INPUT,
                                "points": points})
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
