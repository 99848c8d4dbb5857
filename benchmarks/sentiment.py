"""Sentiment quality and training time: vanilla RNN, GRU, LSTM, BiLSTM, BiGRU on both engines, beside the baselines.

On `airline-tweets` (the registry's fixed train / valid / test split) each model is trained with the same
settings and seed on the scratch engine (NumPy) and on the torch engine (CPU), the checkpoint with the lowest
validation loss is kept, and it is evaluated on the test split (accuracy, macro-F1) beside the majority class
and TF-IDF + logistic regression. Each training runs in a fresh process of its own (one after another, never
two at once), so one engine's threads, caches and memory do not weigh on the other's run.

    python benchmarks/sentiment.py                          # 5 models x 2 engines, the main job's settings
    python benchmarks/sentiment.py --models bilstm --engines scratch --epochs 3
    python benchmarks/sentiment.py --set hidden=64 --set lr=2e-3   # any setting overridden
    python benchmarks/sentiment.py --quick                  # a tiny smoke run (a few dozen steps each)

Time is wall-clock of the whole `train_classifier` call: building the vocabulary, the training steps, and the
validation pass and checkpoint save after each epoch; per epoch is that divided by the epochs run. The load
average around each run is recorded in the JSON: other work on the machine slows the runs it overlaps.
Results go to benchmarks/results/sentiment.json; runs (checkpoints) to a temporary folder (--work).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rnnkit.runtime import tune_process

tune_process()  # first thing, before NumPy loads: OpenBLAS's kernels and thread timeout, malloc (rnnkit/runtime.py)

from rnnkit.checkpoint.atomic import write_json  # noqa: E402
from rnnkit.tasks.presets import PRESETS  # noqa: E402
from rnnkit.tasks.settings import ClassifySettings  # noqa: E402

DATASET = "airline-tweets"
MODELS = {                    # name → (cell, bidirectional)
    "rnn": ("rnn_tanh", False),
    "gru": ("gru", False),
    "lstm": ("lstm", False),
    "bilstm": ("lstm", True),
    "bigru": ("gru", True),
}
NAMES = {"rnn": "vanilla RNN (tanh)", "gru": "GRU", "lstm": "LSTM", "bilstm": "BiLSTM", "bigru": "BiGRU"}
ENGINES = ("scratch", "torch")

# The main job's settings (examples/airline_sentiment.py: the preset airline-tweets, rnnkit/tasks/presets.py),
# the same for every model and engine; only the cell and the direction change.
PRESET = "airline-tweets"
SETTINGS = {k: v for k, v in PRESETS[PRESET].settings.items() if k not in ("cell", "bidirectional")}
FIXED = ("dataset", "data", "cell", "bidirectional", "engine", "device", "out", "resume", "progress")  # per run
QUICK = dict(hidden=32, embedding=32, epochs=1, max_steps=40, eval_every=0)


def train_one(model: str, engine: str, settings: dict, run_dir: str) -> dict:
    """Train one model on one engine and evaluate its best checkpoint (runs in a child process)."""
    from rnnkit.data import datasets
    from rnnkit.tasks import classify

    cell, bidirectional = MODELS[model]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = classify.train_classifier(preset=PRESET, dataset=DATASET, cell=cell, bidirectional=bidirectional,
                                       engine=engine, device="cpu", out=run_dir, progress=False,
                                       log=lambda *a: None, **settings)
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    history = result.state.history
    state = result.state
    per_epoch = math.ceil(len(datasets.load_labelled(DATASET, "train")) / settings["batch_size"])
    epochs_run = state.epoch + state.batch / per_epoch      # fractional when max_steps stops mid-epoch
    best = min(history, key=lambda h: h["val_loss"])
    test = classify.evaluate_classifier(result.best, dataset=DATASET, split="test", engine=engine, device="cpu")
    threads = None
    if engine == "torch":
        import torch

        threads = torch.get_num_threads()
    return {"model": model, "engine": engine, "cell": cell, "bidirectional": bidirectional,
            "test_accuracy": test["accuracy"], "test_macro_f1": test["macro"]["f1"],
            "test_weighted_f1": test["weighted"]["f1"], "test_loss": test["loss"],
            "valid_accuracy": best["val_accuracy"], "valid_macro_f1": best["val_macro_f1"],
            "valid_loss": best["val_loss"], "best_epoch": best["epoch"], "best_step": state.best_step,
            "steps": state.step, "epochs_run": round(epochs_run, 3), "train_seconds": seconds,
            "seconds_per_epoch": seconds / max(epochs_run, 1e-9), "torch_threads": threads,
            "load_average_before": load_before, "load_average_after": load_after,
            "history": history}


def _child(queue, *args):
    try:
        queue.put(("ok", train_one(*args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which stops with it
        import traceback

        queue.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def run_isolated(model: str, engine: str, settings: dict, run_dir: str) -> dict:
    """train_one in a fresh process (spawned: nothing inherited from this one)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, model, engine, settings, run_dir))
    proc.start()
    status, payload = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{model} on {engine} failed:\n{payload}")
    return payload


def baselines() -> dict:
    import numpy as np

    from rnnkit.data import datasets
    from rnnkit.tasks import baselines as base

    train = datasets.load_labelled(DATASET, "train")
    test = datasets.load_labelled(DATASET, "test")
    labels = sorted({label for _, label in train})
    index = {label: i for i, label in enumerate(labels)}
    train_y = np.array([index[label] for _, label in train])
    test_y = np.array([index[label] for _, label in test])
    out = {"majority class": base.majority(train_y, test_y, labels)}
    try:
        out["TF-IDF + logistic regression"] = base.tfidf_logistic([t for t, _ in train], train_y,
                                                                  [t for t, _ in test], test_y, labels)
    except ImportError as e:
        print(f"(skipping the TF-IDF baseline: {e})", file=sys.stderr)
    return {name: {"test_accuracy": r["accuracy"], "test_macro_f1": r["macro"]["f1"],
                   "test_weighted_f1": r["weighted"]["f1"]} for name, r in out.items()}


def parse_overrides(pairs) -> dict:
    """["hidden=256", "schedule=cosine", "patience=null"] → {"hidden": 256, "schedule": "cosine", ...}:
    each value is read as JSON, or kept as a string if it is not JSON; the key must be a setting of
    `rnnkit train classify` (rnnkit/tasks/settings.py) and the value fit it."""
    options = ClassifySettings.options()
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {pair!r}")
        if key not in options or key in FIXED:
            known = ", ".join(k for k in options if k not in FIXED)
            raise ValueError(f"unknown setting {key!r}; known: {known} ({', '.join(FIXED)} are the benchmark's)")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out[key] = options[key].check(value, "--set")
    return out


def format_table(results: dict) -> str:
    rows = [f"{'model':<28} {'engine':<8} {'test acc':>8} {'macro F1':>8} {'val acc':>8} {'val F1':>7} "
            f"{'epochs':>6} {'train s':>8} {'s/epoch':>8}"]
    for name, r in results["baselines"].items():
        rows.append(f"{name:<28} {'-':<8} {r['test_accuracy']:>8.3f} {r['test_macro_f1']:>8.3f}")
    for model, per_engine in results["models"].items():
        for engine, r in per_engine.items():
            rows.append(f"{NAMES[model]:<28} {engine:<8} {r['test_accuracy']:>8.3f} {r['test_macro_f1']:>8.3f} "
                        f"{r['valid_accuracy']:>8.3f} {r['valid_macro_f1']:>7.3f} {r['epochs_run']:>6.3g} "
                        f"{r['train_seconds']:>8.1f} {r['seconds_per_epoch']:>8.1f}")
    ratios = [f"{NAMES[m]} {p['scratch']['train_seconds'] / p['torch']['train_seconds']:.2f}"
              for m, p in results["models"].items() if set(ENGINES) <= set(p)]
    if ratios:
        rows.append("training time scratch / torch: " + ", ".join(ratios))
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {SETTINGS['epochs']})")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, of scratch, torch")
    parser.add_argument("--quick", action="store_true", help="tiny models, a few dozen steps each (a smoke run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (a JSON value: --set hidden=256 --set schedule='\"cosine\"'; "
                             "a bare word is a string: --set schedule=cosine); repeatable")
    parser.add_argument("--work", help="folder for the runs' checkpoints (default: a new temporary folder)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sentiment.json"))
    args = parser.parse_args(argv)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [m for m in models if m not in MODELS] + [e for e in engines if e not in ENGINES]
    if unknown or not models or not engines:
        parser.error(f"unknown or missing models/engines {unknown}; models: {', '.join(MODELS)}; "
                     f"engines: {', '.join(ENGINES)}")
    if "torch" in engines:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            parser.error("the torch engine needs PyTorch: pip install 'rnnkit[torch]' (or --engines scratch)")
    settings = {**SETTINGS, **(QUICK if args.quick else {})}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    try:
        settings.update(parse_overrides(args.set))
    except ValueError as e:
        parser.error(str(e))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rnnkit-bench-sentiment-"))

    results = {"dataset": DATASET, "quick": args.quick, "settings": settings,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version()},
               "baselines": baselines(), "models": {}}
    for model in models:
        for engine in engines:
            print(f"training {NAMES[model]} on {engine} ...", file=sys.stderr, flush=True)
            r = run_isolated(model, engine, settings, str(work / f"{model}-{engine}"))
            results["models"].setdefault(model, {})[engine] = r
            print(f"  test accuracy {r['test_accuracy']:.3f}, macro-F1 {r['test_macro_f1']:.3f}, "
                  f"{r['train_seconds']:.1f} s", file=sys.stderr, flush=True)

    shown = {k: v for k, v in settings.items()}
    print(f"\n{DATASET}: test split, best checkpoint by validation loss; settings {json.dumps(shown)}")
    print(format_table(results))
    print(f"results written to {write_json(args.out, results)}; runs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
