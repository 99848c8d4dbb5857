"""Synthetic long-memory tasks, generated for any length T from a seed: the classic tests of how far back a
recurrent network can carry information.

    adding(n, T, rng)          the adding problem (Hochreiter & Schmidhuber 1997; in the form of Le et al. 2015
                               and Arjovsky et al. 2016): x (n, T, 2), channel 0 values ~ U(0, 1), channel 1 a
                               marker, 1 at one step of the first half and one of the second; y (n, 1, 1) the sum
                               of the two marked values. Predicting the mean, 1, scores MSE = Var(u + v) = 2/12 = 1/6.
    copy(n, T, rng)            the copy task (Arjovsky et al. 2016): inputs (n, T + 20) = 10 symbols from 1..8,
                               T - 1 blanks (0), a delimiter (9), 10 blanks; targets (n, T + 20) = T + 10 blanks,
                               then the 10 symbols. A memoryless model (blanks, then uniform over the 8 symbols)
                               scores a cross-entropy of 10 log 8 / (T + 20) per step.
    temporal_order(n, T, rng)  temporal order (Hochreiter & Schmidhuber 1997, task 6a; Pascanu et al. 2013):
                               inputs (n, T) = B, then distractors a-d, with X or Y at one step in [0.1T, 0.2T]
                               and one in [0.5T, 0.6T], E last; label the order XX, XY, YX, YY (0..3).
                               Chance scores a cross-entropy of log 4. Token ids start at 1 (0 is padding).

    echo_text(lines, width, rng) a character corpus for language models: each line is `width` letters drawn
                               from a-h, "|", the same letters again, a newline ("cbhadgfeab|cbhadgfeab"). The
                               second half is predictable only by remembering width + 1 characters back; a model
                               that does scores (width log 8) / (2 width + 2) nats per character, one that does
                               not (2 width log 8) / (2 width + 2) (ECHO_LOSSES).

Each of the first three returns a batch dict in the layout of the model that learns it (rnnkit.tasks.memory): the adding problem
a Forecaster's ("x", "y"), the copy task a LanguageModel's ("inputs", "targets"), temporal order a
TextClassifier's ("inputs", "lengths", "labels").
"""
from __future__ import annotations

import math

import numpy as np

TASKS = ("adding", "copy", "order")

# The copy task's vocabulary: 0 blank, 1..8 symbols, 9 the delimiter.
COPY_BLANK, COPY_SYMBOLS, COPY_DELIMITER, COPY_REMEMBER, COPY_VOCAB = 0, 8, 9, 10, 10
# Temporal order's: 0 padding, 1-4 distractors a-d, 5 X, 6 Y, 7 B (begin), 8 E (end).
ORDER_X, ORDER_Y, ORDER_BEGIN, ORDER_END, ORDER_VOCAB, ORDER_CLASSES = 5, 6, 7, 8, 9, 4
ORDER_LABELS = ("XX", "XY", "YX", "YY")
MIN_LENGTH = {"adding": 2, "copy": 1, "order": 10}
MAX_ELEMENTS = 50_000_000   # n × T per generated batch: a clear error, not a huge allocation


def _check(task: str, n: int, length: int) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown memory task {task!r}; choose one of {', '.join(TASKS)}")
    for name, value, low in (("n", n, 1), ("length", length, MIN_LENGTH[task])):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"the {task} task needs {name} >= {low}, got {value!r}")
    if n * (length + 20) > MAX_ELEMENTS:
        raise ValueError(f"{n} sequences of length {length} are too many at once (at most {MAX_ELEMENTS:,} steps)")


def adding(n: int, length: int, rng=None) -> dict:
    """n adding-problem sequences of `length` steps: {"x" (n, T, 2) float64, "y" (n, 1, 1)}."""
    _check("adding", n, length)
    rng = np.random.default_rng(rng)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)                   # one marker in each half
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return {"x": np.stack([values, markers], axis=-1), "y": y[:, None, None]}


def copy(n: int, length: int, rng=None) -> dict:
    """n copy-task sequences with `length` = T blanks between the symbols and their recall:
    {"inputs", "targets"} (n, T + 20) int64."""
    _check("copy", n, length)
    rng = np.random.default_rng(rng)
    symbols = rng.integers(1, COPY_SYMBOLS + 1, size=(n, COPY_REMEMBER))
    total = length + 2 * COPY_REMEMBER
    inputs = np.full((n, total), COPY_BLANK, dtype=np.int64)
    inputs[:, :COPY_REMEMBER] = symbols
    inputs[:, COPY_REMEMBER + length - 1] = COPY_DELIMITER
    targets = np.full((n, total), COPY_BLANK, dtype=np.int64)
    targets[:, -COPY_REMEMBER:] = symbols
    return {"inputs": inputs, "targets": targets}


def temporal_order(n: int, length: int, rng=None) -> dict:
    """n temporal-order sequences of `length` steps: {"inputs" (n, T) int64, "lengths" (n,), "labels" (n,)}."""
    _check("order", n, length)
    rng = np.random.default_rng(rng)
    inputs = rng.integers(1, 5, size=(n, length))           # distractors a-d
    inputs[:, 0], inputs[:, -1] = ORDER_BEGIN, ORDER_END
    first = rng.integers(max(1, length // 10), max(2, 2 * length // 10) + 1, size=n)
    second = rng.integers(5 * length // 10, 6 * length // 10 + 1, size=n)
    which = rng.integers(0, 2, size=(n, 2))                 # 0: X, 1: Y
    rows = np.arange(n)
    inputs[rows, first] = ORDER_X + which[:, 0]
    inputs[rows, second] = ORDER_X + which[:, 1]
    return {"inputs": inputs.astype(np.int64), "lengths": np.full(n, length, dtype=np.int64),
            "labels": (2 * which[:, 0] + which[:, 1]).astype(np.int64)}


GENERATORS = {"adding": adding, "copy": copy, "order": temporal_order}


def generate(task: str, n: int, length: int, rng=None) -> dict:
    """`n` sequences of `task` (TASKS) at `length`."""
    _check(task, n, length)
    return GENERATORS[task](n, length, rng)


def baseline(task: str, length: int) -> float:
    """The loss of the best memoryless predictor, in the task's loss (MSE for adding, mean cross-entropy per
    step for copy, per sequence for order): 1/6, 10 log 8 / (T + 20), log 4. A model must beat it to have
    remembered anything."""
    _check(task, 1, length)
    if task == "adding":
        return 1.0 / 6.0
    if task == "copy":
        return COPY_REMEMBER * math.log(COPY_SYMBOLS) / (length + 2 * COPY_REMEMBER)
    return math.log(ORDER_CLASSES)


ECHO_LETTERS = "abcdefgh"


def echo_text(lines: int, width: int, rng=None) -> str:
    """`lines` lines of `width` random letters (a-h), "|", the same letters, "\\n" (see the module's docstring)."""
    if lines < 1 or width < 1:
        raise ValueError(f"echo_text needs lines >= 1 and width >= 1, got {lines}, {width}")
    rng = np.random.default_rng(rng)
    letters = np.asarray(list(ECHO_LETTERS))[rng.integers(0, len(ECHO_LETTERS), size=(lines, width))]
    return "".join(f"{word}|{word}\n" for word in ("".join(row) for row in letters))


def echo_losses(width: int) -> dict:
    """Cross-entropy per character (nats) on echo_text: "remembers" (the second half known exactly, the "|" and
    newline too) and "memoryless" (the letters of both halves uniform over 8; separators known)."""
    per_line = 2 * width + 2
    return {"remembers": width * math.log(len(ECHO_LETTERS)) / per_line,
            "memoryless": 2 * width * math.log(len(ECHO_LETTERS)) / per_line}
