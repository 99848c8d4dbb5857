"""Word-level language-model training on a GPU: rnnkit's trainer against a raw nn.LSTM loop, and wikitext-2 to a
target perplexity (issue 19, "Proof").

0. No synchronisation: on a GPU, 20 training steps in each precision under torch.cuda.set_sync_debug_mode("error")
   (any step that makes the host wait for the GPU raises), before the rest.
1. Speed. A 2x650 LSTM language model on wikitext-2 (33,278 words), bptt 35, batch 20 and 80, SGD (lr 20,
   clip 0.25), dropout 0.5, in fp32 and bf16 (--precisions): rnnkit's training (rnnkit.train.train on the
   torch engine: the trainer's loop, the LM task's batches from NumPy, pinned copies, its logging) against a
   raw PyTorch loop of the same model in the same process (PyTorch's word_language_model example, with the data
   already on the GPU and no read of the loss per step: the fastest plain loop). The two sides take turns
   (--rounds, each side --steps timed updates after --warmup); the table gives each side's median tokens/s and
   rnnkit's share of the raw loop's (target: at least 80%). rnnkit's tokens/s come from its own readouts
   (metrics.jsonl; the validations and saves are not counted), the raw loop's from the clock around its steps.
2. DDP scaling. `torchrun --nproc_per_node N -m rnnkit train lm ...` for N = 1, 2, 4, ... up to the GPUs there
   are (--ddp-procs), tokens/s over all ranks from the run's metrics.jsonl. If the launch fails (torchrun or
   rnnkit's DDP training absent) the row says so, with the error, and the rest goes on.
3. --train-to-target: `rnnkit train lm` on wikitext-2 (2x650, tied, dropout 0.5, SGD lr 20 with cosine decay,
   clip 0.25, batch 20, bptt 35, --target-epochs epochs) on the GPU, then the test perplexity of best/: the
   minutes until the validation perplexity first reached --target (100), the minutes of the run, tokens/s.

    python benchmarks/gpu_lm.py                        # on a GPU: parts 1 and 2 (a few minutes on one H200)
    python benchmarks/gpu_lm.py --train-to-target      # part 3 (about 10 minutes on one H200)
    python benchmarks/gpu_lm.py --quick                # tiny model and corpus, any machine, seconds: a smoke check
    python benchmarks/gpu_lm.py --cpu                  # no GPU: measure the CPU anyway (slow)

Without a GPU it says so and measures nothing unless asked (--cpu, --quick). Results go to
benchmarks/results/gpu_lm.json (--out); --quick writes benchmarks/results/gpu_lm-quick.json unless --out says.
The settings used (and torch's, the GPU's) are recorded with the numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # first thing, before NumPy loads (rnnkit/runtime.py)

import numpy as np  # noqa: E402

from rnnkit.checkpoint.atomic import update_json  # noqa: E402
from rnnkit.tasks import lm  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET_PERPLEXITY = 100.0
# The model and the recipe: PyTorch's word_language_model example, "medium" (650 units, dropout 0.5).
FULL = dict(hidden=650, layers=2, dropout=0.5, bptt=35, batch_sizes=(20, 80), lr=20.0, clip=0.25,
            steps=300, warmup=50, log_every=25, ddp_steps=300)
QUICK = dict(hidden=16, layers=2, dropout=0.1, bptt=8, batch_sizes=(4, 8), lr=1.0, clip=0.25,
             steps=12, warmup=4, log_every=4, ddp_steps=8)


# ------------------------------------------------------------------------------------------------ data

def quick_corpus_file(folder: Path) -> Path:
    """A small word corpus from a fixed grammar (no download): for --quick."""
    rng = np.random.default_rng(0)
    subjects, verbs, objects = ("the cat", "a dog", "the bird", "my friend"), ("sees", "likes", "finds", "takes"), \
        ("the ball", "a stick", "the light", "some bread", "the river")
    lines = [" ".join((subjects[rng.integers(4)], verbs[rng.integers(4)], objects[rng.integers(5)])) + " ."
             for _ in range(600)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "quick-words.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def data_source(args) -> dict:
    """lm.load_corpus's / `rnnkit train lm`'s source: wikitext-2, or --data, or the quick corpus."""
    if args.data:
        return {"data": args.data, "level": "word"}
    if args.quick:
        return {"data": str(quick_corpus_file(Path(args.work))), "level": "word"}
    return {"dataset": "wikitext-2"}


# ------------------------------------------------------------------------------------------------ the raw loop

def raw_loop(corpus, sizes: dict, batch_size: int, precision: str, device, steps: int, warmup: int,
             seed: int = 0) -> dict:
    """PyTorch's word_language_model training loop (embedding, nn.LSTM, linear decoder; dropout; the hidden
    state carried and detached; SGD; clip), the data batchified onto the device once, no read of the loss
    per step. Returns tokens/s over `steps` updates after `warmup`."""
    import torch
    from torch import nn

    from rnnkit.torch.precision import autocast

    torch.manual_seed(seed)
    vocab, hidden, bptt = len(corpus.vocab), sizes["hidden"], sizes["bptt"]

    class RawLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(sizes["dropout"])
            self.encoder = nn.Embedding(vocab, hidden)
            self.rnn = nn.LSTM(hidden, hidden, sizes["layers"], dropout=sizes["dropout"], batch_first=True)
            self.decoder = nn.Linear(hidden, vocab)

        def forward(self, x, state):
            out, state = self.rnn(self.drop(self.encoder(x)), state)
            return self.decoder(self.drop(out)), state

    model = RawLM().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=sizes["lr"])
    ids = torch.as_tensor(np.asarray(corpus.train, dtype=np.int64))
    per_stream = len(ids) // batch_size
    data = ids[:per_stream * batch_size].view(batch_size, per_stream).to(device)  # (batch, stream) on the device
    windows = (per_stream - 1) // bptt
    state, loss = None, None

    def step(i):
        nonlocal state, loss
        start = (i % windows) * bptt
        x, y = data[:, start:start + bptt], data[:, start + 1:start + 1 + bptt]
        if i % windows == 0:
            state = None
        state = None if state is None else tuple(s.detach() for s in state)
        optimizer.zero_grad()
        with autocast(device, precision):
            logits, state = model(x, state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), sizes["clip"])
        optimizer.step()

    model.train()
    for i in range(warmup):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"tokens_per_s": steps * batch_size * bptt / seconds, "seconds": seconds, "last_loss": float(loss.detach())}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ rnnkit

def rnnkit_run(corpus, sizes: dict, batch_size: int, precision: str, device, steps: int, warmup: int,
               run_dir: Path, deterministic: bool, seed: int = 0) -> dict:
    """rnnkit's trainer (rnnkit.train.train) on the torch engine for `warmup + steps` updates; tokens/s from
    its readouts after `warmup` (evaluations, on two validation windows here, and saves are not counted)."""
    from rnnkit.engines import build_engine
    from rnnkit.train import TrainConfig, train

    kwargs = dict(vocab_size=len(corpus.vocab), embedding_dim=sizes["hidden"], hidden_size=sizes["hidden"],
                  num_layers=sizes["layers"], cell="lstm", dropout=sizes["dropout"], tie_weights=False)
    config = TrainConfig(engine="torch", device=str(device), precision=precision, deterministic=deterministic,
                         batch_size=batch_size, optimizer="sgd", lr=sizes["lr"], clip=sizes["clip"], epochs=10_000,
                         max_steps=warmup + steps, log_every=sizes["log_every"], eval_every=warmup + steps,
                         checkpoint_minutes=0, seed=seed, progress=False, verbose=False, plot=False, overwrite=True)
    short = dataclasses.replace(corpus, valid=corpus.valid[:2 * batch_size * sizes["bptt"] + 1])
    task = lm.LMTask(short, kwargs, batch_size, sizes["bptt"], {"training": dataclasses.asdict(config)})
    engine = build_engine("torch", "LanguageModel", kwargs, **config.engine_options())
    train(task, engine, config, run_dir)
    log = read_log(run_dir / "metrics.jsonl")
    seconds = readout_seconds(log, batch_size * sizes["bptt"], after=warmup)
    timed = warmup + steps - _first_readout_after(log, warmup)
    shutil.rmtree(run_dir, ignore_errors=True)  # the checkpoints of a speed run are not kept
    return {"tokens_per_s": timed * batch_size * sizes["bptt"] / seconds, "seconds": seconds,
            "deferred": bool(getattr(engine, "deferred", False))}


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _first_readout_after(log: list[dict], after: int) -> int:
    """The step of the last readout at or before `after`: the timed steps start after it."""
    steps = [r["step"] for r in log if "tokens_per_s" in r and r["step"] <= after]
    return max(steps, default=0)


def readout_seconds(log: list[dict], tokens_per_step: int, after: int = 0) -> float:
    """The seconds of the updates after step `after` (which must fall on a readout), from the trainer's
    readouts: each covers the steps since the one before it."""
    total, previous = 0.0, _first_readout_after(log, after)
    for r in log:
        if "tokens_per_s" in r and r["step"] > previous:
            total += (r["step"] - previous) * tokens_per_step / r["tokens_per_s"]
            previous = r["step"]
    return total


def speed_table(args, corpus, sizes: dict, device) -> list[dict]:
    """Part 1: rnnkit and the raw loop in turns, per precision and batch size; medians and the ratio."""
    rows = []
    work = Path(args.work)
    for precision in args.precisions:
        for batch_size in sizes["batch_sizes"]:
            got = {"rnnkit": [], "raw": []}
            for round_ in range(args.rounds):
                for side in ("rnnkit", "raw") if round_ % 2 == 0 else ("raw", "rnnkit"):
                    if side == "raw":
                        r = raw_loop(corpus, sizes, batch_size, precision, device, sizes["steps"], sizes["warmup"])
                    else:
                        r = rnnkit_run(corpus, sizes, batch_size, precision, device, sizes["steps"],
                                       sizes["warmup"], work / "speed", args.deterministic)
                    got[side].append(r["tokens_per_s"])
                    print(f"  {precision} batch {batch_size} round {round_ + 1}: {side} {r['tokens_per_s']:,.0f} "
                          f"tokens/s", file=sys.stderr, flush=True)
            row = {"precision": precision, "batch_size": batch_size, "bptt": sizes["bptt"],
                   "rnnkit_tokens_per_s": statistics.median(got["rnnkit"]),
                   "raw_tokens_per_s": statistics.median(got["raw"]), "rounds": got}
            row["rnnkit_share_of_raw"] = row["rnnkit_tokens_per_s"] / row["raw_tokens_per_s"]
            row["meets_target"] = row["rnnkit_share_of_raw"] >= 0.8
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ no sync

def sync_check(corpus, sizes: dict, batch_size: int, precision: str, device, steps: int = 20) -> dict:
    """On CUDA: `steps` training steps of the torch engine (after 3 of warm-up) under
    torch.cuda.set_sync_debug_mode("error"), so that any call that makes the host wait for the GPU (a read
    of the loss, a blocking copy) raises; then one settle(), the trainer's read at a log step."""
    import torch

    from rnnkit.engines import build_engine

    if device.type != "cuda":
        return {"precision": precision, "ok": None, "error": "not on a GPU"}
    kwargs = dict(vocab_size=len(corpus.vocab), embedding_dim=sizes["hidden"], hidden_size=sizes["hidden"],
                  num_layers=sizes["layers"], cell="lstm", dropout=sizes["dropout"])
    engine = build_engine("torch", "LanguageModel", kwargs, optimizer="sgd", lr=sizes["lr"], clip=sizes["clip"],
                          device="cuda", precision=precision)
    batches = iter(lm.LMTask(corpus, kwargs, batch_size, sizes["bptt"], {}).batches(0, 0))
    carry, error = None, None
    for _ in range(3):
        _, _, carry = engine.train_step(next(batches), carry)
    engine.settle()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            _, _, carry = engine.train_step(next(batches), carry)
    except RuntimeError as e:
        error = _tail(str(e), 2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return {"precision": precision, "deferred": engine.deferred, "steps": steps, "ok": error is None,
            "error": error, "settle": engine.settle()}


# ------------------------------------------------------------------------------------------------ DDP

def ddp_command(launcher: list[str], procs: int, source: dict, sizes: dict, batch_size: int, precision: str,
                device: str, steps: int, out: Path) -> list[str]:
    """`torchrun --nproc_per_node N -m rnnkit train lm ...`: each rank trains on `batch_size` streams."""
    data = ["--dataset", source["dataset"]] if "dataset" in source else ["--data", source["data"], "--level", "word"]
    return [*launcher, "--standalone", "--nproc_per_node", str(procs), "-m", "rnnkit", "train", "lm", *data,
            "--engine", "torch", "--device", device, "--precision", precision, "--hidden", str(sizes["hidden"]),
            "--layers", str(sizes["layers"]), "--dropout", str(sizes["dropout"]), "--bptt", str(sizes["bptt"]),
            "--batch-size", str(batch_size), "--optimizer", "sgd", "--lr", str(sizes["lr"]), "--clip",
            str(sizes["clip"]), "--max-steps", str(steps), "--eval-every", str(steps), "--log-every",
            str(sizes["log_every"]), "--checkpoint-minutes", "0", "--no-progress", "--no-plot", "--quiet",
            "--overwrite", "--out", str(out)]


def ddp_scaling(args, source: dict, sizes: dict, device: str, gpus: int) -> list[dict]:
    """Part 2: one torchrun launch per process count; a failed launch is a row with its error."""
    rows = []
    batch_size = sizes["batch_sizes"][0]
    for procs in args.ddp_procs or _powers_of_two(gpus):
        out = Path(args.work) / f"ddp-{procs}"
        launcher = args.launcher.split() if args.launcher else [sys.executable, "-m", "torch.distributed.run"]
        cmd = ddp_command(launcher, procs, source, sizes, batch_size, args.precisions[0], device,
                          sizes["ddp_steps"], out)
        row = {"procs": procs, "batch_size_per_rank": batch_size, "precision": args.precisions[0],
               "command": " ".join(cmd)}
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.ddp_timeout,
                                  env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(HERE.parent))))
            row.update(returncode=done.returncode, error=_tail(done.stderr) if done.returncode else None)
        except (OSError, subprocess.TimeoutExpired) as e:
            row.update(returncode=None, error=f"{type(e).__name__}: {e}")
        row["wall_seconds"] = time.perf_counter() - t0
        log = read_log(out / "metrics.jsonl") if (out / "metrics.jsonl").exists() else []
        world = _world_size(out)
        if not row["error"] and procs > 1 and world != procs:  # rnnkit without DDP: N copies of one run
            row["error"] = (f"the run's trainer state says world size {world}, not {procs}: this rnnkit trains "
                            f"without DDP (the {procs} processes were copies of one run)")
        speeds = [r["tokens_per_s"] for r in log if "tokens_per_s" in r and r["step"] > sizes["warmup"]]
        row["logged_tokens_per_s"] = statistics.median(speeds) if speeds and not row["error"] else None
        rows.append(row)
        print(f"  DDP {procs} process(es): " + (f"{row['logged_tokens_per_s']:,.0f} tokens/s (rank 0's log)"
                                                if row["logged_tokens_per_s"] else f"failed: {row['error']}"),
              file=sys.stderr, flush=True)
        shutil.rmtree(out, ignore_errors=True)
    base = rows[0]["logged_tokens_per_s"] if rows and rows[0]["procs"] == 1 else None
    for row in rows:
        row["speedup"] = row["logged_tokens_per_s"] / base if base and row["logged_tokens_per_s"] else None
    return rows


def _world_size(run: Path) -> int | None:
    """The processes that trained the run together, from last/trainer.json (TrainState.world_size; 1 where
    the trainer has no such field: before DDP)."""
    try:
        return int(json.loads((run / "last" / "trainer.json").read_text())["trainer"].get("world_size", 1))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _powers_of_two(n: int) -> list[int]:
    out, p = [], 1
    while p <= max(1, n):
        out.append(p)
        p *= 2
    return out


def _tail(text: str, lines: int = 4) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no message"


# ------------------------------------------------------------------------------------------------ to the target

def train_to_target(args, source: dict, device: str) -> dict:
    """Part 3: `rnnkit train lm` (lm.train_lm) until the epochs are done; when the validation perplexity
    first reached the target, and the test perplexity of best/."""
    quick = args.quick
    settings = dict(source, cell="lstm", layers=2, hidden=16 if quick else 650, dropout=0.1 if quick else 0.5,
                    tie_weights=True, optimizer="sgd", lr=1.0 if quick else 20.0, schedule="cosine", clip=0.25,
                    batch_size=args.target_batch_size, bptt=8 if quick else 35, epochs=args.target_epochs,
                    engine="torch", device=device, precision=args.target_precision,
                    deterministic=args.deterministic, log_every=4 if quick else 100, seed=0,
                    eval_every=args.target_eval_every)
    out = Path(args.work) / "to-target"
    t0 = time.perf_counter()
    run = lm.train_lm(**settings, out=str(out), overwrite=True, progress=False, verbose=args.verbose, plot=False,
                      log=print if args.verbose else (lambda *a: None))
    minutes = (time.perf_counter() - t0) / 60
    test_source = {"data": source["data"]} if "data" in source else {"dataset": source["dataset"]}
    test = lm.evaluate_lm(run.best, **test_source, engine="torch", device=device)
    log = read_log(out / "metrics.jsonl")
    evals = [r for r in log if "val_perplexity" in r]
    first = next((r for r in evals if r["val_perplexity"] <= args.target), None)
    speeds = [r["tokens_per_s"] for r in log if "tokens_per_s" in r and r["step"] > 1]
    return {"settings": settings, "target_perplexity": args.target, "updates": run.state.step,
            "best_valid_perplexity": min(r["val_perplexity"] for r in evals),
            "test_perplexity": test["perplexity"], "test_tokens": test["tokens"],
            "reached_target": test["perplexity"] <= args.target,
            "valid_target_at": None if first is None else {"step": first["step"], "epoch": first["epoch"],
                                                           "minutes": first["wall_s"] / 60},
            "train_minutes": minutes, "median_tokens_per_s": statistics.median(speeds) if speeds else None}


# ------------------------------------------------------------------------------------------------ main

def machine(device) -> dict:
    import torch

    info = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": str(device), "cpus": os.cpu_count()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), gpus=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version())
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and corpus, a few steps: a smoke check "
                        "that runs anywhere in seconds (its numbers mean nothing)")
    parser.add_argument("--cpu", action="store_true", help="without a GPU, measure the CPU anyway (slow)")
    parser.add_argument("--data", help="a word-level text file instead of wikitext-2 (default: wikitext-2; "
                        "--quick: a generated corpus)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated (default fp32,bf16)")
    parser.add_argument("--batch-sizes", help="comma-separated (default 20,80; --quick 4,8)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each side per row (default 3)")
    parser.add_argument("--steps", type=int, help="timed updates per turn (default 300; --quick 12)")
    parser.add_argument("--skip-speed", action="store_true", help="leave out part 1")
    parser.add_argument("--skip-ddp", action="store_true", help="leave out part 2")
    parser.add_argument("--ddp-procs", help="comma-separated process counts (default 1, 2, 4, ... up to the GPUs)")
    parser.add_argument("--launcher", help="the torchrun command (default: this Python's -m torch.distributed.run, "
                        "which torchrun is)")
    parser.add_argument("--ddp-timeout", type=float, default=600, help="seconds per launch (default 600)")
    parser.add_argument("--train-to-target", action="store_true", help="part 3 only: train to --target")
    parser.add_argument("--target", type=float, default=TARGET_PERPLEXITY, help="test perplexity (default 100)")
    parser.add_argument("--target-epochs", type=int, help="epochs of part 3 (default 12; --quick 2)")
    parser.add_argument("--target-batch-size", type=int, help="(default 20; --quick 4)")
    parser.add_argument("--target-precision", default="fp32", help="(default fp32)")
    parser.add_argument("--target-eval-every", type=int, help="steps between validations (default: the "
                        "trainer's, about 12 an epoch; on an H200 they took half of part 3's time)")
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                        help="rnnkit's --no-deterministic: cuDNN autotuning, nondeterministic kernels")
    parser.add_argument("--verbose", action="store_true", help="part 3: the trainer's lines (validations, estimate)")
    parser.add_argument("--work", default="/tmp/rnnkit-bench-gpu-lm", help="folder for runs (emptied first)")
    parser.add_argument("--out", help="results JSON (default benchmarks/results/gpu_lm.json; --quick: "
                        "gpu_lm-quick.json)")
    args = parser.parse_args(argv)

    import torch

    from rnnkit.spec import PRECISIONS, check_choice

    args.precisions = [check_choice("precision", p, PRECISIONS) for p in args.precisions.split(",")]
    check_choice("precision", args.target_precision, PRECISIONS)
    args.ddp_procs = [int(n) for n in args.ddp_procs.split(",")] if args.ddp_procs else None
    sizes = dict(QUICK if args.quick else FULL)
    if args.steps:
        sizes["steps"] = args.steps
    if args.batch_sizes:
        sizes["batch_sizes"] = tuple(int(b) for b in args.batch_sizes.split(","))
    args.target_epochs = args.target_epochs or (2 if args.quick else 12)
    args.target_batch_size = args.target_batch_size or (4 if args.quick else 20)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not gpus and not (args.cpu or args.quick):
        print("no GPU: PyTorch sees no CUDA device (torch {}, CUDA build: {}), so nothing was measured. "
              "--cpu measures the CPU anyway (slow); --quick runs a tiny smoke check.".format(
                  torch.__version__, torch.version.cuda or "no"))
        return 0
    device = torch.device("cuda" if gpus else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # a shared CPU: see benchmarks/lm.py
    if device.type == "cuda":
        from rnnkit.torch.device import cuda_kernels

        cuda_kernels(args.deterministic)  # the same kernels for both sides from the start (process-wide flags)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = Path(args.out or HERE / "results" / ("gpu_lm-quick.json" if args.quick else "gpu_lm.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    source = data_source(args)
    results = {"machine": machine(device), "quick": args.quick, "deterministic": args.deterministic,
               "sizes": sizes, "source": source}

    def save() -> None:  # after each part, so a long run keeps what it has; parts not run keep earlier results
        update_json(out, results)

    if args.train_to_target:
        results["train_to_target"] = t = train_to_target(args, source, device.type)
        save()
        reached = t["valid_target_at"]
        print(f"{source.get('dataset') or 'the quick corpus'} to test perplexity <= {t['target_perplexity']:g}: "
              f"test {t['test_perplexity']:.1f} "
              f"(best validation {t['best_valid_perplexity']:.1f}) after {t['updates']:,} updates, "
              f"{t['train_minutes']:.1f} min, {t['median_tokens_per_s'] or 0:,.0f} tokens/s; validation "
              + (f"reached it at step {reached['step']:,} ({reached['minutes']:.1f} min)" if reached
                 else "never reached it"))
        print(f"results written to {out}")
        return 0

    corpus = lm.load_corpus(**source)
    if device.type == "cuda":  # first: no training step waits for the GPU
        results["sync_check"] = checks = [sync_check(corpus, sizes, sizes["batch_sizes"][0], p, device)
                                          for p in ("fp32", "bf16", "fp16")]
        save()
        for c in checks:
            print(f"{c['precision']}: " + ("no step synchronised with the GPU" if c["ok"] else
                                           f"a step synchronised: {c['error']}"))
    if not args.skip_speed:
        results["speed"] = rows = speed_table(args, corpus, sizes, device)
        save()
        print(f"\n{sizes['layers']}x{sizes['hidden']} LSTM word LM, vocabulary {len(corpus.vocab):,}, bptt "
              f"{sizes['bptt']}, on {results['machine'].get('gpu', device)}: tokens/s (median of {args.rounds})")
        print(f"{'precision':<10}{'batch':>6}{'rnnkit':>12}{'raw loop':>12}{'rnnkit/raw':>12}")
        for r in rows:
            print(f"{r['precision']:<10}{r['batch_size']:>6}{r['rnnkit_tokens_per_s']:>12,.0f}"
                  f"{r['raw_tokens_per_s']:>12,.0f}{r['rnnkit_share_of_raw']:>11.0%}"
                  + ("" if r["meets_target"] else "  (below the 80% target)"))
    if not args.skip_ddp:
        if args.ddp_procs is None and device.type == "cpu":
            results["ddp"] = []  # on the CPU only when asked (--ddp-procs): gloo processes on a shared CPU
        else:
            results["ddp"] = ddp_scaling(args, source, sizes, device.type, gpus)
        save()
        for r in results["ddp"]:
            print(f"DDP {r['procs']} process(es): " + (f"{r['logged_tokens_per_s']:,.0f} tokens/s"
                  + (f", x{r['speedup']:.2f}" if r["speedup"] else "") if r["logged_tokens_per_s"] else
                  f"not measured ({r['error']})"))
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
