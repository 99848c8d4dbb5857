"""Translation quality and training time (issue 16), and the engines' speed per training step.

Quality rows: each (task, attention) is trained once with the row's settings and seed (on the scratch engine;
--engine torch --device cuda on a GPU), the checkpoint with the lowest validation loss is kept, and it is
evaluated on the held-out test split (`evaluate_seq2seq`: exact match, corpus BLEU, chrF) with greedy search
and with beam search (width 5).
Every row of a task uses the same data and split (split_seed 0). Each training runs in a fresh process of its
own, one after another.

    addition-3  "123+45" -> "168", 50k examples (addition-4, addition-5: 4, 5 digits)  target: exact match >= 0.99
    dates       21 human formats -> ISO; the test split in 3 formats never trained on   target: exact match >= 0.99
                (the table lists the split of the formats and each held-out format's exact match and errors)
    tatoeba     Tatoeba en -> es, pairs of <= 10 words, lower-cased: no attention vs
                Bahdanau vs Luong (general)                                             target: BLEU >= 30
Reaching the target: the first validation pass (greedy, the first `eval_translations` validation sources)
at or over it, with its epoch and the training minutes up to it (the run's time x the share of its steps).

Speed row: one training step (forward, backward, Adam) of the Tatoeba model at the benchmark shape (batch 64,
source 10 and target 12 tokens, vocabularies 6,000 and 9,000, hidden 256, embedding 128, bidirectional LSTM,
Bahdanau), each engine in its own process with the same thread count, the engines alternating over the
rounds; medians and the ratio scratch / torch (target: <= 1.5).

    python benchmarks/seq2seq.py                              # addition-3, dates, tatoeba, speed: hours on 2 cores
    python benchmarks/seq2seq.py --rows addition-4,addition-5 --no-speed
    python benchmarks/seq2seq.py --rows tatoeba --attentions none,bahdanau --set epochs=5
    python benchmarks/seq2seq.py --rows tatoeba --engine torch --device cuda --no-speed   # on a GPU
    python benchmarks/seq2seq.py --quick                      # tiny models, a few steps each: a smoke run
    python benchmarks/seq2seq.py --rows addition-4 --work W --score-only   # score W's run, stopped by hand
    python benchmarks/seq2seq.py --rows tatoeba-cpu-12ep --attentions bahdanau --no-speed --curve
                                                              # 12 epochs on one core; test BLEU after each
Results go to benchmarks/results/seq2seq.json (--out); the runs' checkpoints to a temporary folder (--work).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # first thing, before NumPy loads: OpenBLAS's kernels and thread timeout, malloc (rnnkit/runtime.py)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_speed import _timeit, run_worker  # noqa: E402

from rnnkit.checkpoint.atomic import write_json  # noqa: E402
from rnnkit.tasks.settings import Seq2SeqSettings  # noqa: E402

# ------------------------------------------------------------------------------------------------ the rows

GENERATED = dict(hidden=128, embedding=32, cell="lstm", bidirectional=True, dropout=0.0, epochs=30, lr=3e-3,
                 batch_size=64, patience=4, eval_translations=1000, examples=50_000)
ROWS = {   # name -> (the task's settings, the attentions compared, (metric, target))
    "addition-3": ({**GENERATED, "dataset": "addition", "digits": 3}, ("bahdanau",), ("exact_match", 0.99)),
    # 4 digits over-fit 40,000 sums at a constant rate (0.985 at best, with a hand-made lr drop): dropout 0.2 and
    # a cosine decay over 30 epochs, validated at each epoch's end, reach 0.99 in one run (benchmarks/README.md)
    "addition-4": ({**GENERATED, "dataset": "addition", "digits": 4, "dropout": 0.2, "batch_size": 128,
                    "schedule": "cosine", "patience": None, "eval_every": 0}, ("bahdanau",), ("exact_match", 0.99)),
    "addition-5": ({**GENERATED, "dataset": "addition", "digits": 5}, ("bahdanau",), ("exact_match", 0.99)),
    "dates": ({**GENERATED, "dataset": "dates", "epochs": 20}, ("bahdanau",), ("exact_match", 0.99)),
    "tatoeba": (dict(dataset="tatoeba-en-es", level="word", lower=True, max_length=10, min_freq=2, hidden=256,
                     embedding=128, cell="lstm", bidirectional=True, dropout=0.2, epochs=15, lr=2e-3, batch_size=64,
                     patience=3, eval_translations=500),
                ("none", "bahdanau", "luong-general"), ("bleu", 0.30)),
}
# The Tatoeba comparison sized for a small shared CPU (2 cores, 8 jobs): the same data filter, 4,000 words a side,
# a GRU of 128, a fixed number of steps (a fraction of an epoch) for every attention, a small validation and test
# split (each distinct test source is decoded greedy and with beam 5), the validation BLEU every 250 steps.
ROWS["tatoeba-cpu"] = ({**ROWS["tatoeba"][0], "max_vocab": 4000, "valid_fraction": 0.02, "test_fraction": 0.03,
                        "cell": "gru", "hidden": 128, "embedding": 128, "dropout": 0.1, "lr": 3e-3, "epochs": 1,
                        "max_steps": 1500, "eval_every": 250, "eval_translations": 200, "patience": None},
                       ROWS["tatoeba"][1], ROWS["tatoeba"][2])
# The same model trained for 12 epochs (cosine decay of the learning rate to 0 over them), validated every half
# epoch (896 steps: half of the row's 1,792 an epoch, so a validation and a save of last/ fall on each epoch's end)
# on 1,000 validation pairs: how far one CPU core gets (with --curve: the test split scored after each epoch).
ROWS["tatoeba-cpu-12ep"] = ({**ROWS["tatoeba-cpu"][0], "max_steps": None, "epochs": 12, "schedule": "cosine",
                             "eval_every": 896, "eval_translations": 1000}, ROWS["tatoeba"][1], ROWS["tatoeba"][2])
DEFAULT_ROWS = ("addition-3", "dates", "tatoeba")
BEAMS = (1, 5)
QUICK = dict(examples=300, hidden=16, embedding=8, epochs=1, max_steps=5, eval_translations=20, patience=None)
QUICK_TATOEBA = dict(valid_fraction=0.005, test_fraction=0.005, max_vocab=2000)   # a small test split to score
FIXED = ("dataset", "data", "attention", "engine", "device", "out", "resume", "progress", "verbose")

SPEED_SHAPE = dict(batch=64, source=10, target=12, source_vocab=6000, target_vocab=9000, hidden=256, embedding=128)
QUICK_SHAPE = dict(batch=4, source=5, target=6, source_vocab=20, target_vocab=24, hidden=8, embedding=4)


# ------------------------------------------------------------------------------------------------ quality

def train_one(settings: dict, attention: str, run_dir: str, engine: str = "scratch", device: str = "cpu",
              curve: bool = False) -> dict:
    """Train one row and evaluate its best checkpoint greedy and with beam 5, on `engine` (a child process);
    `curve`: also the checkpoint at each epoch's end (EpochSnapshots, score_curve)."""
    from rnnkit.tasks import seq2seq

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with EpochSnapshots(run_dir) if curve else contextlib.nullcontext():
        result = seq2seq.train_seq2seq(**settings, attention=attention, engine=engine, device=device, out=run_dir,
                                       progress=False, log=lambda *a: None)
    seconds = time.perf_counter() - start
    s = result.state
    state = dict(epoch=s.epoch, batch=s.batch, step=s.step, best_step=s.best_step, history=s.history)
    return {**score_run(settings, attention, run_dir, state, seconds, engine, device, curve),
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}


class EpochSnapshots:
    """While a run trains in this process, keep the weights at each epoch's end for the test split's learning
    curve (--curve): a thread reads RUN/last/trainer.json every `every` seconds and, when last/ holds the end of
    epoch N (trainer state: epoch N >= 1, batch 0), saves its weights as RUN/epoch-N/. The trainer saves last/ at
    each validation, so one falls on each epoch's end with eval_every 0 (or None), or dividing an epoch's steps."""

    def __init__(self, run_dir, every: float = 5.0):
        self.run_dir, self.every = Path(run_dir), every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.poll()  # the last epoch's end, saved as training finished

    def _watch(self):
        while not self.stop.wait(self.every):
            self.poll()

    def poll(self) -> int | None:
        """Save last/ as epoch-N/ if it holds the end of epoch N and epoch-N/ is not there yet; N, or None."""
        from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

        last = self.run_dir / "last"
        try:   # a cheap look first; a save swapping the folder meanwhile is seen at the next poll
            trainer = json.loads((last / "trainer.json").read_text())["trainer"]
        except (OSError, ValueError, KeyError):
            return None
        epoch = trainer["epoch"]
        if trainer["batch"] != 0 or epoch < 1 or (self.run_dir / EPOCH_DIR.format(epoch)).exists():
            return None
        try:
            ckpt = load_checkpoint(last, load_optimizer=True)
        except (CheckpointError, OSError):
            return None
        if (ckpt.trainer_state["epoch"], ckpt.trainer_state["batch"]) != (epoch, 0):
            return None    # replaced by a later save since the look
        save_checkpoint(self.run_dir / EPOCH_DIR.format(epoch), ckpt.weights, ckpt.config)
        return epoch


EPOCH_DIR = "epoch-{}"   # RUN/epoch-N/: the weights at the end of epoch N (EpochSnapshots)


def score_existing(settings: dict, attention: str, run_dir: str, engine: str = "scratch", device: str = "cpu",
                   curve: bool = False) -> dict:
    """Evaluate a run already in `run_dir` as train_one does (--score-only: a run stopped by hand once converged);
    its state from last/trainer.json, its training seconds from metrics.jsonl's last wall_s."""
    run = Path(run_dir)
    state = json.loads((run / "last" / "trainer.json").read_text())["trainer"]
    seconds = wall_seconds(run)
    out = score_run(settings, attention, run_dir, state, seconds, engine, device, curve)
    if (run / "run.json").exists():  # the settings the run last trained with (a resumed run's may differ)
        out["run_settings"] = json.loads((run / "run.json").read_text())
    if not state.get("finished"):
        out["stopped_by_hand"] = f"stopped by hand after step {state['step']}; best/ (step {state['best_step']}) scored"
    return out


def score_run(settings: dict, attention: str, run_dir: str, state: dict, seconds: float, engine: str,
              device: str, curve: bool = False) -> dict:
    """The row of a trained run: its best/ checkpoint on the test split, greedy and with beam 5 (dates: also
    per source format), and how long it trained (`state`: epoch, batch, step, best_step, history); `curve`:
    also each epoch's checkpoint (score_curve)."""
    from rnnkit.checkpoint import load_checkpoint

    best = Path(run_dir) / "best"
    kept = load_checkpoint(best).config["dropped"]["train"]["kept"]      # training pairs after the filter
    per_epoch = -(-kept // settings["batch_size"])
    epochs_run = state["epoch"] + state["batch"] / per_epoch  # fractional: mid-epoch
    out = {"attention": attention, "engine": engine, "device": device,
           "searches": score_checkpoint(best, settings, engine, device), "steps": state["step"],
           "epochs_run": round(epochs_run, 3), "best_step": state["best_step"], "train_seconds": seconds,
           "checkpoint": str(best), "history": state["history"]}
    if curve:
        out["curve"] = score_curve(run_dir, settings, per_epoch, state["history"], engine, device)
    return out


def score_checkpoint(path, settings: dict, engine: str, device: str) -> dict:
    """{"beam1": ..., "beam5": ...}: a checkpoint on its test split (evaluate_seq2seq: exact match, BLEU, chrF;
    the first 3 translations; dates: also per source format), greedy and with beam 5."""
    from rnnkit.tasks import seq2seq
    from rnnkit.tasks.settings import Decoding

    dates = settings.get("dataset") == "dates"
    searches = {}
    for beam in BEAMS:
        r = seq2seq.evaluate_seq2seq(path, decoding=Decoding(beam=beam), engine=engine, device=device,
                                     examples=10 ** 9 if dates else 3)
        searches[f"beam{beam}"] = {k: r[k] for k in ("exact_match", "bleu", "chrf", "sources", "pairs", "dropped")}
        searches[f"beam{beam}"]["examples"] = r["examples"][:3]
        if dates:
            searches[f"beam{beam}"]["by_format"] = by_format(r["examples"])
    return searches


def score_curve(run_dir, settings: dict, per_epoch: int, history: list, engine: str, device: str) -> list[dict]:
    """The learning curve on the test split: each RUN/epoch-N/ (EpochSnapshots) scored as best/ is, in order of
    N, with its step (N x `per_epoch`), the run's training minutes up to it (metrics.jsonl) and the validation
    pass at that step (from `history`)."""
    run = Path(run_dir)
    epochs = sorted(int(p.name[len("epoch-"):]) for p in run.glob(EPOCH_DIR.format("*"))
                    if p.name[len("epoch-"):].isdigit())
    out = []
    for n in epochs:
        step = n * per_epoch
        valid = next((h for h in history if h["step"] == step), {})
        out.append({"epoch": n, "step": step, "minutes": wall_seconds(run, step) / 60,
                    "val_loss": valid.get("val_loss"), "val_bleu": valid.get("val_bleu"),
                    "searches": score_checkpoint(run / EPOCH_DIR.format(n), settings, engine, device)})
    return out


def wall_seconds(run_dir, step: int | None = None) -> float:
    """The run's training seconds (metrics.jsonl's wall_s) up to `step` (default: all of it)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return max((r.get("wall_s", 0.0) for r in records if step is None or r.get("step", 0) <= step), default=0.0)


def by_format(translations: list, errors: int = 5) -> dict:
    """Dates: per format of the sources (the held-out ones in the test split), {"sources", "exact_match",
    "errors": the first `errors` wrong [source, translation]}, from evaluate_seq2seq's examples (all of them)."""
    import datetime as dt

    from rnnkit.data.generators import DATE_FORMATS, format_date

    out: dict = {}
    for t in translations:
        date = dt.date.fromisoformat(t["references"][0])
        for name in (f for f in DATE_FORMATS if format_date(date, f) == t["source"]):
            row = out.setdefault(name, {"sources": 0, "right": 0, "errors": []})
            row["sources"] += 1
            if t["translation"] in t["references"]:
                row["right"] += 1
            elif len(row["errors"]) < errors:
                row["errors"].append([t["source"], t["translation"]])
    return {name: {"sources": r["sources"], "exact_match": r["right"] / r["sources"], "errors": r["errors"]}
            for name, r in sorted(out.items())}


def reached(row: dict, metric: str, target: float) -> dict | None:
    """The first validation pass with val_<metric> >= target: its step, epoch and minutes (by share of steps)."""
    for h in row["history"]:
        if h.get(f"val_{metric}", -1.0) >= target:
            return {"step": h["step"], "epoch": h["epoch"],
                    "minutes": row["train_seconds"] / 60 * h["step"] / max(row["steps"], 1)}
    return None


def curve(row: dict, metric: str) -> list[tuple[int, float]]:
    """The learning curve: (step, val_<metric>) at each validation pass, in order."""
    return [(h["step"], h[f"val_{metric}"]) for h in row["history"] if f"val_{metric}" in h]


def _child(queue, work, *args):
    try:
        queue.put(("ok", work(*args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which stops with it
        import traceback

        queue.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def run_isolated(settings: dict, attention: str, run_dir: str, engine: str = "scratch", device: str = "cpu",
                 work=None, curve: bool = False) -> dict:
    """train_one (or `work`: score_existing) in a fresh (spawned) process."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, work or train_one, settings, attention, run_dir, engine, device,
                                            curve))
    proc.start()
    status, payload = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{settings.get('dataset')} with attention {attention} failed:\n{payload}")
    return payload


def parse_overrides(pairs) -> dict:
    """["hidden=256", "schedule=cosine"] -> {"hidden": 256, "schedule": "cosine"}: JSON values or strings, each
    a setting of `rnnkit train seq2seq` and fitting it."""
    options = Seq2SeqSettings.options()
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        if key not in options or key in FIXED:
            raise ValueError(f"unknown setting {key!r}; {', '.join(FIXED)} are the benchmark's")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out[key] = options[key].check(value, "--set")
    return out


# ------------------------------------------------------------------------------------------------ speed

def speed_worker(engine: str, shape: dict, threads: int, min_time: float) -> dict:
    """Median ms per training step of the Tatoeba model at `shape` on `engine` (in a child process: --worker)."""
    import numpy as np

    from rnnkit.data.batching import pair_batch
    from rnnkit.engines import build_engine

    if engine == "torch":
        import torch

        torch.set_num_threads(threads)
    s = shape
    rng = np.random.default_rng(0)
    sources = [rng.integers(4, s["source_vocab"], s["source"]) for _ in range(s["batch"])]
    targets = [rng.integers(4, s["target_vocab"], s["target"] - 1) for _ in range(s["batch"])]
    batch = pair_batch(sources, targets, 2, 3)
    kwargs = dict(source_vocab=s["source_vocab"], target_vocab=s["target_vocab"], embedding_dim=s["embedding"],
                  hidden_size=s["hidden"], num_layers=1, cell="lstm", bidirectional=True, attention="bahdanau",
                  dropout=0.0, teacher_forcing=1.0, label_smoothing=0.0, tie_embeddings=False, pad_id=0, bos_id=2,
                  eos_id=3)
    model = build_engine(engine, "Seq2Seq", kwargs, seed=0, device="cpu")
    seconds = _timeit(lambda: model.train_step(batch), min_time)
    return {"step_ms": seconds * 1e3, "ran_on": model.describe()}


def speed(shape: dict, rounds: int, threads: int, min_time: float) -> dict:
    times: dict[str, list[float]] = {"scratch": [], "torch": []}
    ran_on = ""
    for _ in range(rounds):
        for engine in ("scratch", "torch"):
            out = run_worker([engine, json.dumps(shape), "--min-time", str(min_time)], threads, script=__file__)
            times[engine].append(out["step_ms"])
            ran_on = out["ran_on"] if engine == "scratch" else ran_on
    s, t = statistics.median(times["scratch"]), statistics.median(times["torch"])
    return {"shape": shape, "threads": threads, "rounds": rounds, "scratch_ms": s, "torch_ms": t, "ratio": s / t,
            "scratch_all": times["scratch"], "torch_all": times["torch"], "scratch_path": ran_on}


# ------------------------------------------------------------------------------------------------ report

def format_tables(results: dict) -> str:
    lines = []
    if results["rows"]:
        lines += ["| task | attention | search | exact match | BLEU | chrF | epochs | train min | target reached |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, per_attention in results["rows"].items():
            metric, target = results["targets"][name]
            for attention, r in per_attention.items():
                hit = r.get("reached")
                shown = f"{metric} >= {target:g}" if metric == "exact_match" else f"{metric} >= {100 * target:g}"
                when = (f"epoch {hit['epoch']}, {hit['minutes']:.1f} min" if hit else "no") + f" ({shown})"
                for search, m in r["searches"].items():
                    lines.append(f"| {name} | {attention} | {search.replace('beam1', 'greedy')} | "
                                 f"{m['exact_match']:.4f} | {100 * m['bleu']:.2f} | {100 * m['chrf']:.2f} | "
                                 f"{r['epochs_run']:.3g} | {r['train_seconds'] / 60:.1f} | {when} |")
        per_format = [f"{name} {attention} {search.replace('beam1', 'greedy')}, format {fmt!r}: exact match "
                      f"{f['exact_match']:.4f} of {f['sources']}"
                      + (" (e.g. " + "; ".join(f"{a} -> {b}" for a, b in f["errors"][:3]) + ")" if f["errors"] else "")
                      for name, per_attention in results["rows"].items() for attention, r in per_attention.items()
                      for search, m in r["searches"].items() for fmt, f in m.get("by_format", {}).items()]
        lines += [""] + per_format if per_format else []
        for name, per_attention in results["rows"].items():
            metric, target = results["targets"][name]
            scale = 1 if metric == "exact_match" else 100
            for attention, r in per_attention.items():
                if not r.get("reached"):
                    points = ", ".join(f"{step}: {scale * v:.3g}" for step, v in curve(r, metric))
                    lines.append(f"\n{name} {attention}, validation {metric} (greedy) by step: {points}")
    for name, per_attention in results["rows"].items():
        for attention, r in per_attention.items():
            if r.get("curve"):
                lines += ["", *format_curve(f"{name} {attention}", r["curve"])]
    if results.get("date_formats"):
        f = results["date_formats"]
        lines += ["", f"dates: trained on {len(f['train'])} formats ({', '.join(map(repr, f['train']))}); tested on "
                      f"{len(f['held_out'])} held-out formats ({', '.join(map(repr, f['held_out']))})"]
    if results.get("speed"):
        sp = results["speed"]
        shape = ", ".join(f"{k} {v}" for k, v in sp["shape"].items())
        lines += ["", f"speed per training step ({shape}; {sp['threads']} thread(s), {sp['rounds']} rounds, medians)",
                  "| scratch ms | torch ms | scratch / torch | scratch ran on |", "|---|---|---|---|",
                  f"| {sp['scratch_ms']:.2f} | {sp['torch_ms']:.2f} | {sp['ratio']:.2f} | {sp['scratch_path']} |"]
    return "\n".join(lines)


def format_curve(title: str, points: list) -> list[str]:
    """The test-split learning curve (score_curve) as a table: per epoch, validation loss and greedy BLEU,
    then the test split's BLEU and chrF, greedy and beam 5."""
    lines = [f"| {title}: epoch | step | train min | val loss | val BLEU | test BLEU greedy | test BLEU beam5 | "
             f"test chrF greedy | test chrF beam5 |", "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        g, b = p["searches"]["beam1"], p["searches"][f"beam{BEAMS[-1]}"]
        val_loss = "-" if p.get("val_loss") is None else f"{p['val_loss']:.3f}"
        val_bleu = "-" if p.get("val_bleu") is None else f"{100 * p['val_bleu']:.2f}"
        lines.append(f"| {p['epoch']} | {p['step']} | {p['minutes']:.1f} | {val_loss} | {val_bleu} | "
                     f"{100 * g['bleu']:.2f} | {100 * b['bleu']:.2f} | {100 * g['chrf']:.2f} | {100 * b['chrf']:.2f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "SHAPE"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help=f"comma-separated, of {', '.join(ROWS)} "
                        "(empty: none)")
    parser.add_argument("--attentions", help="comma-separated: only these of each row's attentions")
    parser.add_argument("--no-speed", action="store_true", help="leave out the speed row")
    parser.add_argument("--engine", default="scratch", choices=("scratch", "torch"),
                        help="the quality rows' engine (torch with --device cuda: the GPU run)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for --engine torch")
    parser.add_argument("--quick", action="store_true", help="tiny models, a few steps each; a tiny speed shape")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting of every row (a JSON value or a bare word); repeatable")
    parser.add_argument("--rounds", type=int, default=3, help="speed: rounds of the two engines")
    parser.add_argument("--threads", type=int, default=1, help="speed: BLAS/torch threads per process")
    parser.add_argument("--min-time", type=float, default=2.0, help="speed: seconds of timed steps per process")
    parser.add_argument("--work", help="folder for the runs' checkpoints (default: a new temporary folder)")
    parser.add_argument("--score-only", action="store_true", help="train nothing: score the runs already in "
                        "--work (e.g. stopped by hand once converged: their best/), as a finished run is scored")
    parser.add_argument("--curve", action="store_true", help="also keep the weights at each epoch's end "
                        "(RUN/epoch-N/) and score them on the test split, greedy and beam 5: the learning curve "
                        "(with --score-only: the epoch-N/ already in --work)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "seq2seq.json"))
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(speed_worker(args.worker[0], json.loads(args.worker[1]), args.threads, args.min_time)))
        return 0

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as e:
        parser.error(str(e))
    only = {a.strip() for a in args.attentions.split(",")} if args.attentions else None
    if args.score_only and not args.work:
        parser.error("--score-only scores the runs in --work: give --work")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rnnkit-bench-seq2seq-"))

    results = {"quick": args.quick, "engine": args.engine, "device": args.device,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version()},
               "settings": {}, "targets": {}, "rows": {}, "speed": None}
    for name in rows:
        base, attentions, (metric, target) = ROWS[name]
        quick = {**QUICK, **(QUICK_TATOEBA if name.startswith("tatoeba") else {})} if args.quick else {}
        settings = {**base, **quick, **overrides}
        results["settings"][name], results["targets"][name] = settings, (metric, target)
        if settings["dataset"] == "dates":
            from rnnkit.data.generators import HELD_OUT_FORMATS, TRAIN_FORMATS

            results["date_formats"] = {"train": list(TRAIN_FORMATS), "held_out": list(HELD_OUT_FORMATS)}
        for attention in attentions:
            if only is not None and attention not in only:
                continue
            print(f"{'scoring' if args.score_only else 'training'} {name} with attention {attention} ...",
                  file=sys.stderr, flush=True)
            r = run_isolated(settings, attention, str(work / f"{name}-{attention}"), args.engine, args.device,
                             score_existing if args.score_only else train_one, args.curve)
            r["reached"] = reached(r, metric, target)
            results["rows"].setdefault(name, {})[attention] = r
            best = r["searches"][f"beam{BEAMS[-1]}"]
            print(f"  beam {BEAMS[-1]}: exact match {best['exact_match']:.4f}, BLEU {100 * best['bleu']:.2f}, "
                  f"{r['train_seconds'] / 60:.1f} min", file=sys.stderr, flush=True)
    if not args.no_speed:
        print("timing a training step on both engines ...", file=sys.stderr, flush=True)
        results["speed"] = speed(QUICK_SHAPE if args.quick else SPEED_SHAPE, args.rounds, args.threads, args.min_time)
    print(format_tables(results))
    print(f"results written to {write_json(args.out, results)}; runs in {work}")
    for name, per_attention in results["rows"].items():
        for attention, r in per_attention.items():
            if r.get("curve"):
                png = Path(args.out).with_name(f"{Path(args.out).stem}-{name}-{attention}-curve.png")
                print(f"learning curve drawn in {plot_curve(r, results['targets'][name], png, f'{name} {attention}')}")
    return 0


def plot_curve(row: dict, target: tuple, path, title: str) -> Path:
    """The test split's BLEU (or exact match) after each epoch, greedy and beam 5, with the target: a PNG
    (rnnkit.plots.plot_learning_curve)."""
    from rnnkit.plots import plot_learning_curve

    metric, goal = target
    scale = 1 if metric == "exact_match" else 100     # BLEU and chrF in points, as in the tables
    curves = {("greedy" if b == 1 else f"beam {b}"): [(p["epoch"], scale * p["searches"][f"beam{b}"][metric])
                                                      for p in row["curve"]] for b in BEAMS}
    label = {"bleu": "BLEU", "chrf": "chrF"}.get(metric, metric.replace("_", " "))
    return plot_learning_curve(curves, path, "epoch", f"test {label}",
                               title=f"{title}: the test split after each epoch", target=scale * goal)


if __name__ == "__main__":
    sys.exit(main())
