"""Text generation speed: tokens per second of `rnnkit generate` on the scratch engine and on torch (CPU).

    .venv/bin/python benchmarks/generate_speed.py                    # trains a small LSTM LM first
    .venv/bin/python benchmarks/generate_speed.py --checkpoint runs/lm/best --rounds 5

Generation runs the model one token per call (batch 1, one time step), so what a call costs besides its
arithmetic decides the speed. Three sides, each measurement in its own process, alternating over rounds
(these machines drift in speed by 2x within minutes), medians reported:
  * scratch: `lm.generate` as it is, with the weights locked for the loop (packed once);
  * scratch, repacking: the same with the lock turned off, so every token packs the weights again (what
    generation did before the lock existed);
  * torch: the same checkpoint on the torch engine, CPU.
It prints tokens/s and the ratios, and writes benchmarks/results/generate_speed.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # first thing, before NumPy loads: OpenBLAS's kernels and thread timeout, malloc (rnnkit/runtime.py)

from rnnkit.checkpoint.atomic import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("scratch", "scratch-repacking", "torch")


def train_small(out: str, cell: str, hidden: int, layers: int) -> str:
    """A word-level LM on made-up sentences: one short epoch, enough to have a real checkpoint."""
    import random

    from rnnkit.tasks import lm

    rng = random.Random(0)
    words = "the a cat dog bird sat ran on under by log mat tree house and then quickly slowly".split()
    text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(3000))
    path = Path(out) / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    result = lm.train_lm(data=str(path), level="word", cell=cell, hidden=hidden, layers=layers, dropout=0.0,
                         batch_size=16, bptt=32, epochs=1, out=str(Path(out) / "run"), progress=False, seed=0)
    return str(result.best)


def measure(checkpoint: str, side: str, tokens: int, threads: int) -> dict:
    """Seconds per generated token for one side (in this process), after a warm-up generation."""
    from threadpoolctl import threadpool_limits

    from rnnkit.tasks import lm

    threadpool_limits(threads)
    engine = "torch" if side == "torch" else "scratch"
    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
    model = lm.load_lm(checkpoint, engine, "cpu")
    if side == "scratch-repacking":
        model.engine.locked_weights = contextlib.nullcontext
    lm.generate(model, "the", 20, seed=0)                      # warm-up: first-use allocations, compilation
    start = time.perf_counter()
    text = lm.generate(model, "the", tokens, seed=0)
    seconds = time.perf_counter() - start
    return {"side": side, "seconds_per_token": seconds / tokens, "tokens": tokens, "text_head": text[:60]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="a language model checkpoint (default: train a small LSTM LM)")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn_tanh"))
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens", type=int, default=300, help="tokens generated per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generate_speed.json"))
    p.add_argument("--worker", nargs=2, metavar=("CHECKPOINT", "SIDE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker[0], args.worker[1], args.tokens, args.threads)))
        return {}
    if args.tokens < 1 or args.rounds < 1 or args.threads < 1:
        p.error("--tokens, --rounds and --threads must be positive")

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or train_small(tmp, args.cell, args.hidden, args.layers)
        runs = []
        for round_ in range(args.rounds):
            for side in SIDES:
                cmd = [sys.executable, __file__, "--worker", checkpoint, side, "--tokens", str(args.tokens),
                       "--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads)})
                if done.returncode != 0:
                    raise SystemExit(f"{side} failed:\n{done.stderr[-2000:]}")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                runs.append({**r, "round": round_})
                print(f"round {round_ + 1}/{args.rounds} {side:<18} {1 / r['seconds_per_token']:8.0f} tokens/s",
                      flush=True)
        texts = {r["side"]: r["text_head"] for r in runs}

    per_token = {s: statistics.median(r["seconds_per_token"] for r in runs if r["side"] == s) for s in SIDES}
    print(f"\n{'side':<18} {'tokens/s':>9} {'ms/token':>9}")
    for s in SIDES:
        print(f"{s:<18} {1 / per_token[s]:>9.0f} {1000 * per_token[s]:>9.3f}")
    ratios = {"scratch_over_torch": per_token["scratch"] / per_token["torch"],
              "repacking_over_scratch": per_token["scratch-repacking"] / per_token["scratch"]}
    print(f"\ntime per token, scratch / torch: {ratios['scratch_over_torch']:.2f}; "
          f"repacking / locked scratch: {ratios['repacking_over_scratch']:.2f}")
    print("same text on all sides:", len(set(texts.values())) == 1)
    report = {"settings": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
              "median_seconds_per_token": per_token, "ratios": ratios, "same_text": len(set(texts.values())) == 1,
              "runs": runs}
    print(f"written to {write_json(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
