"""Language-model quality and speed on both engines, side by side.

1. Character level, `shakespeare`: the same 2-layer LSTM trained for the same number of updates on the
   scratch engine and on the torch engine (CPU), from the same seed; validation bits per character,
   perplexity and training tokens/s of each. The engines alternate in chunks of steps, so that a change in
   the machine's speed hits both alike (a run is resumed from its own checkpoint for each chunk); the speed
   is the median of the training loop's own tokens/s readouts (metrics.jsonl).
2. Word level, `wikitext-2`: a 2-layer LSTM (200 units, the classic "small" setting) trained on one engine
   for a number of epochs, reporting validation and test perplexity. (For reference: about 115 test
   perplexity after 12 epochs.)

    python benchmarks/lm.py                         # both parts, default budgets
    python benchmarks/lm.py --char-steps 100 --skip-word     # a quick look
Results go to benchmarks/results/lm.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from rnnkit.tasks import lm


def char_level(args, out: Path) -> dict:
    common = dict(dataset="shakespeare", level="char", cell="lstm", layers=2, hidden=args.char_hidden,
                  dropout=0.1, batch_size=32, bptt=64, lr=2e-3, clip=1.0, seed=0, progress=False,
                  checkpoint_every=args.char_chunk, eval_every=args.char_steps, epochs=100,
                  max_steps=args.char_steps)
    for start in range(0, args.char_steps, args.char_chunk):
        stop = min(start + args.char_chunk, args.char_steps)
        for engine in ("scratch", "torch") if (start // args.char_chunk) % 2 == 0 else ("torch", "scratch"):
            lm.train_lm(engine=engine, device="cpu", out=str(out / f"char-{engine}"), resume=start > 0,
                        **{**common, "max_steps": stop})
        print(f"  char level: {stop}/{args.char_steps} steps", file=sys.stderr, flush=True)
    result = {}
    for engine in ("scratch", "torch"):
        metrics = lm.evaluate_lm(out / f"char-{engine}" / "last", dataset="shakespeare", split="valid",
                                 engine=engine, device="cpu")
        speeds = [r["tokens_per_s"] for r in read_log(out / f"char-{engine}" / "metrics.jsonl")
                  if "tokens_per_s" in r and r["step"] > 1]  # the training loop's own readout, step 1 excluded
        result[engine] = {"valid_bits_per_char": metrics["bits_per_char"], "valid_perplexity": metrics["perplexity"],
                          "train_tokens_per_s": statistics.median(speeds)}
    result["speed_ratio_scratch_over_torch"] = result["torch"]["train_tokens_per_s"] / \
        result["scratch"]["train_tokens_per_s"]
    result["settings"] = {k: v for k, v in common.items() if k != "progress"}
    return result


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def word_level(args, out: Path) -> dict:
    t0 = time.perf_counter()
    run = lm.train_lm(dataset="wikitext-2", level="word", cell="lstm", layers=2, hidden=200, dropout=0.2,
                      batch_size=20, bptt=35, lr=args.word_lr, clip=0.25, epochs=args.word_epochs,
                      optimizer="sgd", schedule="cosine", engine=args.word_engine, device="cpu",
                      out=str(out / "word"), seed=0, progress=True, max_steps=args.word_max_steps)
    seconds = time.perf_counter() - t0
    test = lm.evaluate_lm(run.best, dataset="wikitext-2", split="test", engine=args.word_engine, device="cpu")
    return {"engine": args.word_engine, "epochs": args.word_epochs, "steps": run.state.step,
            "valid_perplexity": min(h["val_perplexity"] for h in run.state.history),
            "test_perplexity": test["perplexity"], "train_seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--char-steps", type=int, default=600, help="updates per engine (char level)")
    parser.add_argument("--char-chunk", type=int, default=100, help="steps per turn when alternating engines")
    parser.add_argument("--char-hidden", type=int, default=256)
    parser.add_argument("--skip-char", action="store_true")
    parser.add_argument("--word-engine", choices=("scratch", "torch"), default="torch")
    parser.add_argument("--word-epochs", type=int, default=1)
    parser.add_argument("--word-max-steps", type=int, help="stop the word-level run early")
    parser.add_argument("--word-lr", type=float, default=20.0, help="SGD learning rate (word level)")
    parser.add_argument("--skip-word", action="store_true")
    parser.add_argument("--work", default="/tmp/rnnkit-bench-lm", help="folder for the runs' checkpoints")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm.json"))
    args = parser.parse_args(argv)

    work = Path(args.work)
    results = {}
    if not args.skip_char:
        results["char_shakespeare"] = c = char_level(args, work)
        print(f"\ncharacter level, shakespeare, 2x{args.char_hidden} LSTM, {args.char_steps} updates of 32x64 chars")
        print(f"{'engine':<8} {'valid bpc':>10} {'perplexity':>11} {'tokens/s':>10}")
        for engine in ("scratch", "torch"):
            r = c[engine]
            print(f"{engine:<8} {r['valid_bits_per_char']:>10.3f} {r['valid_perplexity']:>11.2f} "
                  f"{r['train_tokens_per_s']:>10,.0f}")
        print(f"training time scratch / torch: {c['speed_ratio_scratch_over_torch']:.2f}")
    if not args.skip_word:
        results["word_wikitext2"] = w = word_level(args, work)
        print(f"\nword level, wikitext-2, 2x200 LSTM on {w['engine']}, {w['epochs']} epoch(s), {w['steps']} steps: "
              f"valid perplexity {w['valid_perplexity']:.1f}, test perplexity {w['test_perplexity']:.1f} "
              f"({w['train_seconds']:.0f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
