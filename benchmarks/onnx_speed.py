"""Classifier inference: the exported ONNX graph in onnxruntime against the scratch engine's `predict` (NumPy),
one thread each (as `rnnkit serve --threads 1`), at batch 1 and 32.

The model is `rnnkit train classify`'s default (bidirectional LSTM, 100 → 128, max pooling) with a
5,000-word vocabulary and random weights; texts of 40 tokens (the batch's lengths 8 to 40, padded).
Each measurement runs in its own process, the two sides alternating over the rounds (engine_speed.py says
why); the report gives each side's median milliseconds per call and the ratio scratch / onnx.

    python benchmarks/onnx_speed.py                  # 5 rounds, batch 1 and 32
    python benchmarks/onnx_speed.py --rounds 3 --batches 1,8,32 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_speed import _timeit, run_worker  # noqa: E402

VOCAB, CLASSES, TIME = 5000, 3, 40


def inputs(batch: int):
    import numpy as np

    rng = np.random.default_rng(batch)
    lengths = rng.integers(8, TIME + 1, batch)
    lengths[0] = TIME
    tokens = rng.integers(1, VOCAB, (batch, TIME)) * (np.arange(TIME)[None] < lengths[:, None])
    return tokens.astype(np.int64), lengths.astype(np.int64)


def worker(side: str, folder: str, batch: int, threads: int, min_time: float) -> dict:
    from rnnkit.runtime import tune_process

    tune_process()
    tokens, lengths = inputs(batch)
    if side == "scratch":
        from rnnkit.checkpoint import load_checkpoint
        from rnnkit.engines import build_engine

        ckpt = load_checkpoint(Path(folder) / "ckpt")
        engine = build_engine("scratch", "TextClassifier", ckpt.config["model"])
        engine.load_weights(ckpt.weights)
        engine.model.eval()
        with engine.locked_weights():  # as served
            seconds = _timeit(lambda: engine.predict(tokens, lengths), min_time)
        return {"ms": seconds * 1e3, "ran_on": engine.describe()}
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(Path(folder) / "classify.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    feed = {"tokens": tokens, "lengths": lengths}
    seconds = _timeit(lambda: session.run(None, feed), min_time)
    return {"ms": seconds * 1e3, "ran_on": f"onnxruntime {onnxruntime.__version__}"}


def prepare(folder: Path) -> None:
    """The classifier's checkpoint (random weights) and its export, in `folder`."""
    from rnnkit.checkpoint import save_checkpoint
    from rnnkit.engines import build_engine
    from rnnkit.tasks.export import export_checkpoint

    kwargs = dict(vocab_size=VOCAB, num_classes=CLASSES, embedding_dim=100, hidden_size=128, cell="lstm",
                  bidirectional=True, pooling="max")
    engine = build_engine("scratch", "TextClassifier", kwargs, seed=0)
    save_checkpoint(folder / "ckpt", engine.weights(), {"task": "classify", "model": kwargs, "dtype": "float32"})
    export_checkpoint(folder / "ckpt", folder / "classify.onnx")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "FOLDER", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.worker:
        side, folder, batch = args.worker
        print(json.dumps(worker(side, folder, int(batch), args.threads, args.min_time)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp))
        for batch in [int(b) for b in args.batches.split(",")]:
            times = {"scratch": [], "onnx": []}
            ran_on = {}
            for r in range(args.rounds):
                for side in (("scratch", "onnx") if r % 2 == 0 else ("onnx", "scratch")):
                    out = run_worker([side, tmp, str(batch), "--min-time", str(args.min_time)], args.threads,
                                     script=__file__)
                    times[side].append(out["ms"])
                    ran_on[side] = out["ran_on"]
            row = {"batch": batch, **{f"{s}_ms": statistics.median(t) for s, t in times.items()},
                   "rounds": times, "ran_on": ran_on}
            row["scratch_over_onnx"] = row["scratch_ms"] / row["onnx_ms"]
            rows.append(row)
            print(f"batch {batch:>3}: scratch {row['scratch_ms']:.2f} ms, onnxruntime {row['onnx_ms']:.2f} ms, "
                  f"scratch / onnx {row['scratch_over_onnx']:.2f}   (scratch on {ran_on['scratch']})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
