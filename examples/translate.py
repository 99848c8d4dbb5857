"""Translation in miniature: an encoder–decoder with attention learns to write words backwards.

The `reverse` generator makes pairs like "hello" → "olleh" (random letters, 1 to 6 of them; seeded, nothing
downloaded). Each character is a token. The encoder (a bidirectional LSTM) reads the source; the decoder (an
LSTM) writes the target one character at a time, and at each step Bahdanau's attention weighs the source
characters it looks at. To reverse a word it must look at the mirrored position: the attention printed at
the end shows it does. Then: the held-out test split (words never seen in training) scored greedy and with
beam search, and new words translated with their three best candidates.

    python examples/translate.py            # about a minute on 2 cores (12 epochs of 100 steps)
    python examples/translate.py --quick    # a few steps of a tiny model, to see it run (seconds)

The same from the command line: `rnnkit train seq2seq --dataset reverse ...`, `rnnkit translate`,
`rnnkit evaluate`, `rnnkit serve` (POST /translate); see the README's translation section.
Run: python examples/translate.py
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):   # small matrices: one thread
    os.environ.setdefault(_name, "1")

from rnnkit.runtime import tune_process  # noqa: E402

tune_process()

import numpy as np  # noqa: E402

from rnnkit.data import generators  # noqa: E402
from rnnkit.tasks import seq2seq  # noqa: E402
from rnnkit.tasks.settings import Decoding  # noqa: E402

SETTINGS = dict(dataset="reverse", sequence_length=6, examples=4000, hidden=64, embedding=16, attention="bahdanau",
                dropout=0.0, epochs=12, lr=0.01, schedule="cosine", batch_size=32, eval_translations=200, seed=0)
QUICK = dict(examples=300, hidden=16, embedding=8, epochs=1, max_steps=5, eval_translations=20)
NEW_WORDS = ["rnn", "hello", "python", "abcdef"]


def show_attention(result: dict) -> list[str]:
    """Each output character with the source character its attention weighs most (and that weight)."""
    source, best = result["source_tokens"], result["translations"][0]
    weights = result["attention"]                        # (output steps, source characters)
    lines = []
    for step, out in enumerate(best["tokens"] + (["</s>"] if best["finished"] else [])):
        looked = int(np.argmax(weights[step]))
        lines.append(f"  {out:>4}  ← {source[looked]!r} (position {looked + 1}, "
                     f"weight {weights[step][looked]:.2f})")
    return lines


def main(quick: bool = False, out: str | None = None) -> dict:
    settings = {**SETTINGS, **(QUICK if quick else {})}
    out = out or tempfile.mkdtemp(prefix="rnnkit-translate-")
    pairs = generators.reverse(4, max_length=6, seed=1)
    print("pairs like these, made by the reverse generator:", ", ".join(f"{s} → {t}" for s, t in pairs))

    # 1. train: data, vocabularies and model from the settings; the best checkpoint by validation loss
    start = time.perf_counter()
    result = seq2seq.train_seq2seq(**settings, out=out, progress=False)
    print(f"trained in {time.perf_counter() - start:.0f} s; checkpoint {result.best}")

    # 2. the held-out test split, greedy and beam 5
    reports = {}
    for beam in (1, 5):
        reports[beam] = seq2seq.evaluate_seq2seq(result.best, decoding=Decoding(beam=beam), examples=3)
        print(seq2seq.format_report(reports[beam]))

    # 3. new words, the three best translations of each
    model = seq2seq.load_seq2seq(result.best)
    translations = model.translate(NEW_WORDS, beam=5, n_best=3)
    for t in translations:
        candidates = "   ".join(f"{c['text']} ({c['score']:.2f})" for c in t["translations"])
        print(f"{t['source']:>8} → {candidates}")

    # 4. where the decoder looked while writing "python" backwards
    print("attention while writing 'python' backwards: output ← the source character weighed most")
    print("\n".join(show_attention(translations[2])))
    return {"settings": settings, "checkpoint": str(result.best), "reports": reports, "translations": translations}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model (seconds)")
    parser.add_argument("--out", help="the run folder (default: a new temporary folder)")
    args = parser.parse_args()
    main(args.quick, args.out)
    sys.exit(0)
