"""Language-model quality and speed on both engines, side by side.

1. Character level, `shakespeare`: the same 2-layer LSTM trained for the same number of updates on the
   scratch engine and on the torch engine (CPU), from the same seed; validation bits per character,
   perplexity and training tokens/s of each. The engines alternate in chunks of steps, so that a change in
   the machine's speed hits both alike (a run is resumed from its own checkpoint for each chunk); the speed
   is all the tokens over all the time of the updates, from the training loop's own readouts
   (metrics.jsonl; evaluations and saves not counted), with the readouts' median beside it. The validation numbers are
   the run's own evaluation of its final weights (32 streams of 64-character windows, state carried).
2. Word level, `wikitext-2`: a 2-layer LSTM (200 units, the classic "small" setting of PyTorch's
   word_language_model example: batch 20, bptt 35, SGD lr 20, clip 0.25, dropout 0.2) on one engine,
   reporting validation and test perplexity over the standard 33,278-word vocabulary. The reference run
   (about 115 test perplexity) is 12 epochs of about 2,983 updates; the default here is a bounded budget of
   --word-max-steps updates, which fits a small CPU. With time or a GPU, run the reference:

    python benchmarks/lm.py --skip-char --word-epochs 12 --word-max-steps 0 --word-device cuda

    python benchmarks/lm.py                                  # both parts, the default budgets
    python benchmarks/lm.py --char-steps 100 --char-chunk 50 --skip-word   # a quick look
Both engines run with --threads threads (default 1, for BLAS and torch alike): on a machine shared with other
jobs, two spinning BLAS/OpenMP threads per process made both engines 10-50x slower here.
Results (and the machine's load average before and after each part) go to benchmarks/results/lm.json;
the parts skipped in a run (--skip-char, --skip-word) keep their earlier results there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # first thing, before NumPy loads: OpenBLAS's kernels and thread timeout, malloc (rnnkit/runtime.py)

from rnnkit.checkpoint.atomic import update_json  # noqa: E402
from rnnkit.tasks import lm  # noqa: E402


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def set_threads(n: int) -> dict:
    """Limit NumPy's BLAS (threadpoolctl) and torch to n threads each; what is in use, for the results."""
    info = {"threads": n}
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(n)
        info["blas"] = [f"{p['internal_api']} {p.get('version')} {p.get('architecture')}, {p['num_threads']} threads"
                        for p in threadpoolctl.threadpool_info()]
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (the dev extra)
        info["blas"] = "unlimited: threadpoolctl is not installed"
    try:
        import torch

        torch.set_num_threads(n)
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:  # pragma: no cover
        pass
    return info


def training_seconds(log: list[dict], tokens_per_step: int) -> float:
    """The time spent on updates, from the training loop's readouts (each covers the steps since the last)."""
    total, previous = 0.0, 0
    for r in log:
        if "tokens_per_s" in r:
            total += (r["step"] - previous) * tokens_per_step / r["tokens_per_s"]
            previous = r["step"]
    return total


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def char_level(args, work: Path) -> dict:
    """Both engines, the same model, data, seed and number of updates; see the module docstring."""
    common = dict(dataset="shakespeare", level="char", cell="lstm", layers=2, hidden=args.char_hidden,
                  dropout=0.1, batch_size=args.char_batch_size, bptt=args.char_bptt, lr=2e-3, clip=1.0, seed=0,
                  progress=False, checkpoint_every=args.char_chunk, eval_every=args.char_steps, epochs=100)
    engines = ("scratch", "torch")
    seconds = dict.fromkeys(engines, 0.0)
    load = {"before": load_average()}
    for start in range(0, args.char_steps, args.char_chunk):
        stop = min(start + args.char_chunk, args.char_steps)
        for engine in engines if (start // args.char_chunk) % 2 == 0 else engines[::-1]:
            t0 = time.perf_counter()
            lm.train_lm(engine=engine, device="cpu", out=str(work / f"char-{engine}"), resume=start > 0,
                        **{**common, "max_steps": stop})
            seconds[engine] += time.perf_counter() - t0
        print(f"  char level: {stop}/{args.char_steps} steps (load average {load_average()})",
              file=sys.stderr, flush=True)
    load["after"] = load_average()
    result = {}
    for engine in engines:
        log = read_log(work / f"char-{engine}" / "metrics.jsonl")
        final = [r for r in log if "val_loss" in r and r["step"] == args.char_steps][-1]
        speeds = [r["tokens_per_s"] for r in log if "tokens_per_s" in r and r["step"] > 1] or \
            [r["tokens_per_s"] for r in log if "tokens_per_s" in r]  # step 1 (warm-up) only if nothing else
        seconds_training = training_seconds(log, args.char_batch_size * args.char_bptt)
        result[engine] = {"valid_bits_per_char": final["val_bits_per_char"],
                          "valid_perplexity": final["val_perplexity"], "valid_loss": final["val_loss"],
                          "train_tokens_per_s": args.char_steps * args.char_batch_size * args.char_bptt /
                          seconds_training,  # all the tokens over all the time of the updates
                          "median_tokens_per_s": statistics.median(speeds),  # of the readouts (every 10 steps)
                          "train_seconds": seconds_training,
                          "wall_seconds": seconds[engine]}  # training and the evaluations after each chunk
    result["speed_ratio_torch_over_scratch"] = result["torch"]["train_tokens_per_s"] / \
        result["scratch"]["train_tokens_per_s"]
    tokens = args.char_steps * args.char_batch_size * args.char_bptt
    result["budget"] = {"updates": args.char_steps, "tokens": tokens, "chunk": args.char_chunk}
    result["settings"] = {k: v for k, v in common.items() if k not in ("progress", "epochs", "eval_every",
                                                                       "checkpoint_every")}
    result["load_average"] = load
    return result


def word_level(args, work: Path) -> dict:
    """One engine, the word_language_model recipe, a bounded number of updates (0: every epoch)."""
    settings = dict(dataset="wikitext-2", level="word", cell="lstm", layers=args.word_layers,
                    hidden=args.word_hidden, dropout=args.word_dropout, batch_size=args.word_batch_size,
                    bptt=args.word_bptt, lr=args.word_lr, clip=0.25, optimizer="sgd", schedule="cosine",
                    tie_weights=args.word_tie, seed=0)
    load = {"before": load_average()}
    t0 = time.perf_counter()
    run = lm.train_lm(**settings, epochs=args.word_epochs, max_steps=args.word_max_steps or None,
                      engine=args.word_engine, device=args.word_device, out=str(work / "word"),
                      progress=not args.no_progress, log_every=25)
    seconds = time.perf_counter() - t0
    valid_seconds = sum(r.get("eval_seconds", 0.0) for r in read_log(work / "word" / "metrics.jsonl")
                        if "val_loss" in r)
    t1 = time.perf_counter()
    test = lm.evaluate_lm(run.best, dataset="wikitext-2", split="test", engine=args.word_engine,
                          device=args.word_device, batch_size=args.word_batch_size)
    load["after"] = load_average()
    log = read_log(work / "word" / "metrics.jsonl")
    speeds = [r["tokens_per_s"] for r in log if "tokens_per_s" in r and r["step"] > 1]
    best = min(run.state.history, key=lambda h: h["val_loss"])
    steps = run.state.step
    tokens = steps * args.word_batch_size * args.word_bptt
    return {"engine": args.word_engine, "device": args.word_device, "model": settings,
            "epochs_allowed": args.word_epochs, "updates": steps, "train_tokens": tokens,
            "valid_perplexity": best["val_perplexity"], "test_perplexity": test["perplexity"],
            "test_tokens": test["tokens"], "train_tokens_per_s": statistics.median(speeds) if speeds else None,
            "train_seconds": seconds - valid_seconds, "valid_seconds": valid_seconds,
            "test_seconds": time.perf_counter() - t1, "load_average": load}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    char = parser.add_argument_group("character level (shakespeare, both engines)")
    char.add_argument("--char-steps", type=int, default=900, help="updates per engine (default 900)")
    char.add_argument("--char-chunk", type=int, default=300, help="updates per turn when alternating engines; "
                      "each turn ends with a validation pass (default 300)")
    char.add_argument("--char-hidden", type=int, default=256, help="LSTM units per layer (default 256)")
    char.add_argument("--char-batch-size", type=int, default=32, help="parallel streams (default 32)")
    char.add_argument("--char-bptt", type=int, default=64, help="characters per window (default 64)")
    char.add_argument("--skip-char", action="store_true")
    word = parser.add_argument_group("word level (wikitext-2, one engine)")
    word.add_argument("--word-engine", choices=("scratch", "torch"), default="torch", help="(default torch)")
    word.add_argument("--word-device", choices=("cpu", "cuda", "auto"), default="cpu", help="(default cpu)")
    word.add_argument("--word-epochs", type=int, default=12, help="epochs allowed (default 12, the reference)")
    word.add_argument("--word-max-steps", type=int, default=400,
                      help="stop after this many updates; 0: run every epoch (default 400)")
    word.add_argument("--word-layers", type=int, default=2, help="(default 2)")
    word.add_argument("--word-hidden", type=int, default=200, help="embedding and LSTM size (default 200)")
    word.add_argument("--word-dropout", type=float, default=0.2, help="(default 0.2)")
    word.add_argument("--word-tie", action="store_true", help="tie the decoder to the embedding")
    word.add_argument("--word-batch-size", type=int, default=20, help="(default 20)")
    word.add_argument("--word-bptt", type=int, default=35, help="(default 35)")
    word.add_argument("--word-lr", type=float, default=20.0, help="SGD learning rate, cosine decay (default 20)")
    word.add_argument("--skip-word", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads, the same for both "
                        "engines; one avoids threads spinning against other jobs on a shared machine (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for the word-level run")
    parser.add_argument("--work", default="/tmp/rnnkit-bench-lm", help="folder for the runs' checkpoints "
                        "(emptied first)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm.json"))
    args = parser.parse_args(argv)
    if args.char_steps < 1 or args.char_chunk < 1:
        parser.error("--char-steps and --char-chunk must be at least 1")

    work = Path(args.work)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                           **set_threads(args.threads)}}

    def save() -> None:  # after each part, so a long run keeps what it has; parts not run keep earlier results
        update_json(out, results)

    if not args.skip_char:
        _clear(work, ("char-scratch", "char-torch"))
        results["char_shakespeare"] = c = char_level(args, work)
        save()
        b = c["budget"]
        print(f"\ncharacter level, shakespeare, 2x{args.char_hidden} LSTM, {b['updates']} updates of "
              f"{args.char_batch_size}x{args.char_bptt} characters ({b['tokens']:,} characters) per engine; "
              f"load average {c['load_average']}")
        print(f"{'engine':<8} {'valid bpc':>10} {'perplexity':>11} {'tokens/s':>10} {'median':>8} {'wall s':>8}")
        for engine in ("scratch", "torch"):
            r = c[engine]
            print(f"{engine:<8} {r['valid_bits_per_char']:>10.3f} {r['valid_perplexity']:>11.2f} "
                  f"{r['train_tokens_per_s']:>10,.0f} {r['median_tokens_per_s']:>8,.0f} {r['wall_seconds']:>8.0f}")
        print(f"training speed torch / scratch: {c['speed_ratio_torch_over_scratch']:.2f}")
    if not args.skip_word:
        _clear(work, ("word",))
        results["word_wikitext2"] = w = word_level(args, work)
        save()
        m = w["model"]
        print(f"\nword level, wikitext-2, {m['layers']}x{m['hidden']} LSTM on {w['engine']} ({w['device']}): "
              f"{w['updates']} updates, {w['train_tokens']:,} training tokens in {w['train_seconds'] / 60:.1f} min "
              f"(+ {w['valid_seconds'] / 60:.1f} min validation, {w['test_seconds'] / 60:.1f} min test): "
              f"valid perplexity {w['valid_perplexity']:.1f}, test perplexity {w['test_perplexity']:.1f}; "
              f"load average {w['load_average']}")
    save()
    print(f"results written to {out}")
    return 0


def _clear(work: Path, names) -> None:
    import shutil

    for name in names:
        shutil.rmtree(work / name, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
