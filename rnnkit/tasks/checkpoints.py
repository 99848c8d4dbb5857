"""A task's checkpoint, loaded as untrusted input: every setting checked before a model is built.

    ckpt = load_task_checkpoint(path, "classify")     # a Checkpoint, or a one-line CheckpointError

config.json is checked against the weights' tensor list before any tensor is read (its "model" section by
rnnkit/checkpoint/models.py; its "vocab", "data", "labels" and "dtype" here), then the weights for NaN and
infinity. Every refusal is one line naming the file and the field, e.g.
``runs/x/best/config.json: labels has 2 entries, but model.num_classes is 3``. The loaders (load_lm,
load_classifier), and through them the CLI and the server, load checkpoints only through here.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..checkpoint import Checkpoint, CheckpointError
from ..checkpoint.models import check_model, check_tensors
from ..checkpoint.schema import Key, any_object, boolean, check_object, choice, integer, optional, string, strings
from ..data.vocab import UNK, Vocabulary
from ..engines import ModelSettingsError, build_engine
from ..spec import DTYPES
from .pretrained import open_checkpoint

MODEL_OF_TASK = {"lm": "LanguageModel", "classify": "TextClassifier"}
VOCAB_KEYS = {"format": Key(string), "version": Key(integer(1, 1)), "specials": Key(strings), "tokens": Key(strings)}
DATA_KEYS = {
    "lm": {"tokenizer": Key(any_object), "source": Key(any_object, required=False),
           "batch_size": Key(integer(1), required=False), "bptt": Key(integer(1), required=False)},
    "classify": {"tokenizer": Key(any_object), "max_length": Key(integer(1)),
                 "source": Key(any_object, required=False)},
}
TOKENIZER_KEYS = {
    "lm": {"level": Key(choice("char", "word")), "split": Key(choice("punct", "whitespace"), required=False),
           "lower": Key(boolean, required=False)},
    "classify": {k: Key(optional(string), required=False) for k in ("url", "user", "number")}
    | {"lower": Key(boolean, required=False), "max_repeat": Key(optional(integer(1)), required=False)},
}


def load_task_checkpoint(path, task: str) -> Checkpoint:
    """The checkpoint at ``path``, refused unless it is a consistent, finite ``task`` checkpoint."""
    return open_checkpoint(path, check_finite=True,
                           check_config=lambda config, tensors, folder: check_task_config(
                               task, config, tensors, folder / "config.json"))


def check_task_config(task: str, config: dict, tensors: dict, where) -> None:
    """Refuse a ``config`` (config.json's) that does not describe a ``task`` model holding ``tensors``."""
    if config.get("task") != task:
        raise CheckpointError(f"{where}: task is {config.get('task')!r}; expected {task!r}")
    dtype = config.get("dtype", "float32")
    if dtype not in DTYPES:
        raise CheckpointError(f"{where}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = check_model(MODEL_OF_TASK[task], config.get("model"), tensors, dtype, where)
    check_vocab(config.get("vocab"), model["vocab_size"], where)
    data = check_object(config.get("data"), DATA_KEYS[task], "data", where)
    check_object(data["tokenizer"], TOKENIZER_KEYS[task], "data.tokenizer", where)
    if task == "classify":
        check_labels(config.get("labels"), model["num_classes"], where)


def check_vocab(vocab, size: int, where) -> None:
    """A vocabulary of exactly ``size`` distinct tokens (the embedding's rows), holding <unk>."""
    check_object(vocab, VOCAB_KEYS, "vocab", where)
    try:
        built = Vocabulary.from_dict(vocab)
    except ValueError as e:
        raise CheckpointError(f"{where}: vocab: {e}") from None
    if len(built) != size:
        raise CheckpointError(f"{where}: vocab.tokens has {len(built)} tokens, but model.vocab_size (the "
                              f"embedding's rows) is {size}")
    if UNK not in built.specials:     # without it, any unseen token would fail each request
        raise CheckpointError(f"{where}: vocab.specials {built.specials[:5]} lack {UNK!r}")


def check_labels(labels, classes: int, where) -> None:
    """``classes`` distinct, non-empty label strings."""
    problem = strings(labels)
    if problem:
        raise CheckpointError(f"{where}: labels {problem}")
    if len(labels) != classes:
        raise CheckpointError(f"{where}: labels has {len(labels)} entries, but model.num_classes is {classes}")
    repeated = sorted(label for label, n in Counter(labels).items() if n > 1)
    if repeated:
        raise CheckpointError(f"{where}: labels repeats {repeated[:5]}")
    if not all(labels):
        raise CheckpointError(f"{where}: labels holds an empty label")


def load_checked_engine(engine: str, model: str, settings, weights, dtype: str, where, device: str = "auto"):
    """An engine holding config.json's `model` built with its `settings` and loaded with the stored `weights`
    ({name: array}), refused unless the settings build exactly those tensors (names, shapes, dtype). The model
    is built with no more parameter values than the file holds, so settings that claim a larger one
    (hidden_size 10^8) fail before they allocate it."""
    if not isinstance(settings, dict):
        raise CheckpointError(f"{where}: model must be an object, got {type(settings).__name__}")
    if dtype not in DTYPES:
        raise CheckpointError(f"{where}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    stored = {name: {"dtype": str(np.asarray(a).dtype), "shape": list(np.shape(a))} for name, a in weights.items()}
    try:
        eng = build_engine(engine, model, settings, dtype=dtype, device=device,
                           max_values=sum(int(np.prod(t["shape"])) for t in stored.values()))
    except ModelSettingsError as e:
        raise CheckpointError(f"{where}: the model settings do not fit the weights: {e}") from None
    check_tensors(stored, {name: np.shape(a) for name, a in eng.weights().items()}, dtype, where)
    eng.load_weights(weights)
    return eng
