"""Every setting of every training task: its default, help text and choices, each written once.

A task's settings are three sections, dataclasses of settings (rnnkit/settings.py): what it reads (data), the
model, and how it trains (training: rnnkit/train.py's TrainConfig, shared by the tasks). The command line
(`rnnkit train lm|classify`: one option per field), config files (`--config run.json`), presets
(presets.py) and the task functions (lm.train_lm, classify.train_classifier) all take these:

    settings = LMSettings(LMData(dataset="shakespeare"), LMModel(hidden=512), LMTraining(epochs=3))
    lm.train_lm(settings)
    lm.train_lm(dataset="shakespeare", hidden=512, epochs=3)          # the same, any setting by name
    resolve("classify", {"dataset": "airline-tweets", "epochs": 3}, preset="airline-tweets")

resolve() layers them: the field defaults < a preset < a config file < explicit values.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field

from ..settings import Settings, flatten, layered, redefault, setting
from ..spec import CELLS, INITS, POOLING, check_choice
from ..train import TrainConfig
from . import presets

LEVELS = ("char", "word")
CLASS_WEIGHTS = ("none", "balanced")


def check_source(dataset, data, what: str) -> None:
    if dataset is None and data is None:
        raise ValueError(f"give a dataset name (--dataset) or {what} (--data)")
    if dataset is not None and data is not None:
        raise ValueError(f"give either a dataset name (--dataset) or {what} (--data), not both")


def check_initialization(model) -> None:
    """A model section's --init and --forget-bias (rnnkit/initialization.py applies them)."""
    check_choice("init", model.init, INITS)
    if model.forget_bias is not None and model.cell != "lstm":
        raise ValueError(f"--forget-bias is the LSTM's forget gate bias; a {model.cell} has no forget gate")


# ------------------------------------------------------------------------------------------------ lm

@dataclass
class LMData:
    """What a language model reads, and how it is cut into tokens and windows."""

    dataset: str | None = setting(None, "a registered dataset (see `rnnkit data list`)", exclusive="source")
    data: str | None = setting(None, "a UTF-8 text file", metavar="FILE", exclusive="source")
    valid: str | None = setting(None, "validation text (default: the last 10% of --data)", metavar="FILE")
    level: str | None = setting(None, "tokens (default: the dataset's; char for files)", choices=LEVELS)
    lower: bool = setting(False, "lower-case words (word level)")
    min_freq: int = setting(1, "rarer tokens become <unk>")
    max_vocab: int | None = setting(None, "keep only the most frequent tokens (default: all)")
    bptt: int = setting(64, "steps of backpropagation through time per window")

    def __post_init__(self):
        check_source(self.dataset, self.data, "a text file")
        if self.level is not None:
            check_choice("level", self.level, LEVELS)
        if self.bptt < 1:
            raise ValueError(f"bptt must be >= 1, got {self.bptt}")


@dataclass
class LMModel:
    """A language model: embedding → stacked recurrent layers → a linear layer over the vocabulary."""

    cell: str = setting("lstm", "the recurrent cell", choices=CELLS)
    layers: int = setting(2, "stacked recurrent layers")
    hidden: int = setting(256, "units of each recurrent layer")
    embedding: int | None = setting(None, "embedding size (default: --hidden)")
    dropout: float = setting(0.2, "dropout on the embeddings, between the layers and before the output")
    tie_weights: bool = setting(False, "tie the output layer to the embedding", flags=("--tie", "--tie-weights"))
    init: str = setting("pytorch", "the recurrent weights' initialisation (identity: the IRNN, for rnn_relu)",
                        choices=INITS)
    forget_bias: float | None = setting(None, "the LSTM's forget gate bias at the start (default: as --init)")

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_initialization(self)


@dataclass
class LMTraining(TrainConfig):
    out: str = redefault(TrainConfig, "out", "runs/lm")


@dataclass
class LMSettings(Settings):
    data: LMData
    model: LMModel = field(default_factory=LMModel)
    training: LMTraining = field(default_factory=LMTraining)


# ------------------------------------------------------------------------------------------------ classify

@dataclass
class ClassifyData:
    """The labelled texts a classifier learns from, and how they become token ids."""

    dataset: str | None = setting(None, "a registered labelled dataset (e.g. airline-tweets)", exclusive="source")
    data: str | None = setting(None, "a CSV/TSV (with a header) or JSONL file of texts and labels", metavar="FILE",
                               exclusive="source")
    valid: str | None = setting(None, "validation file (default: 10% of --data)", metavar="FILE")
    test: str | None = setting(None, "test file (default: 10% of --data)", metavar="FILE")
    text_column: str = setting("text", "the column (or JSON key) of the texts in --data")
    label_column: str = setting("label", "the column (or JSON key) of the labels in --data")
    label_map: str | None = setting(None, "rename labels, e.g. pos=positive,neg=negative", metavar="OLD=NEW,...")
    min_freq: int = setting(2, "rarer words become <unk>")
    max_vocab: int | None = setting(None, "keep only the most frequent words (default: all)")
    max_length: int = setting(64, "tokens kept per text")

    def __post_init__(self):
        check_source(self.dataset, self.data, "a labelled file")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")


@dataclass
class ClassifyModel:
    """A text classifier: embedding → recurrent layers → pooling over time → a linear layer over the labels."""

    cell: str = setting("lstm", "the recurrent cell", choices=CELLS)
    layers: int = setting(1, "stacked recurrent layers")
    hidden: int = setting(128, "units of each recurrent layer, per direction")
    embedding: int = setting(100, "embedding size (pretrained --embeddings: theirs)")
    bidirectional: bool = setting(True, "read both ways (--unidirectional: left to right only)",
                                  flags=("--unidirectional", "--no-bidirectional"))
    dropout: float = setting(0.3, "dropout on the embeddings, between the layers and on the pooled vector")
    pooling: str = setting("max", "how the outputs over time become one vector", choices=POOLING)
    attention_size: int = setting(64, "hidden size of the attention scorer, for --pooling attention")
    class_weights: str = setting("none", "balanced: rarer labels weigh more in the loss", choices=CLASS_WEIGHTS)
    word_dropout: float = setting(0.0, "probability that a training token is replaced by <unk>")
    embedding_init_std: float = setting(1.0, "the random embedding starts N(0, std^2) (1: torch's default)")
    embeddings: str | None = setting(None, "pretrained GloVe/word2vec text vectors", metavar="FILE")
    freeze_embeddings: bool = setting(False, "keep the pretrained --embeddings as they are")
    init: str = setting("pytorch", "the recurrent weights' initialisation (identity: the IRNN, for rnn_relu)",
                        choices=INITS)
    forget_bias: float | None = setting(None, "the LSTM's forget gate bias at the start (default: as --init)")

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_initialization(self)
        check_choice("pooling", self.pooling, POOLING)
        check_choice("class_weights", self.class_weights, CLASS_WEIGHTS)
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout}")


@dataclass
class ClassifyTraining(TrainConfig):
    epochs: int = redefault(TrainConfig, "epochs", 8)
    out: str = redefault(TrainConfig, "out", "runs/sentiment")


@dataclass
class ClassifySettings(Settings):
    data: ClassifyData
    model: ClassifyModel = field(default_factory=ClassifyModel)
    training: ClassifyTraining = field(default_factory=ClassifyTraining)


# ------------------------------------------------------------------------------------------------ memory

MEMORY_PROBLEMS = ("adding", "copy", "order")   # rnnkit.data.memory_tasks.TASKS


@dataclass
class MemoryData:
    """A synthetic long-memory problem (rnnkit/data/memory_tasks.py), new sequences every epoch."""

    problem: str = setting("adding", "adding: sum two marked numbers; copy: recall 10 symbols after T blanks; "
                           "order: classify the order of two symbols", choices=MEMORY_PROBLEMS)
    length: int = setting(100, "T, the number of steps the memory must bridge")
    train_size: int = setting(10_000, "training sequences per epoch (drawn anew each epoch)")
    valid_size: int = setting(1_000, "validation sequences (the same every evaluation)")

    def __post_init__(self):
        check_choice("problem", self.problem, MEMORY_PROBLEMS)
        minimum = {"adding": 2, "copy": 1, "order": 10}[self.problem]
        if self.length < minimum:
            raise ValueError(f"the {self.problem} problem needs length >= {minimum}, got {self.length}")
        for name in ("train_size", "valid_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class MemoryModel:
    """One recurrent network read at the end (adding, order) or at every step (copy)."""

    cell: str = setting("lstm", "the recurrent cell", choices=CELLS)
    layers: int = setting(1, "stacked recurrent layers")
    hidden: int = setting(128, "units of each recurrent layer")
    embedding: int = setting(16, "embedding size of the symbols (copy, order)")
    init: str = setting("pytorch", "the recurrent weights' initialisation (identity: the IRNN, for rnn_relu)",
                        choices=INITS)
    forget_bias: float | None = setting(None, "the LSTM's forget gate bias at the start (default: as --init)")

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_initialization(self)


@dataclass
class MemoryTraining(TrainConfig):
    epochs: int = redefault(TrainConfig, "epochs", 20)
    out: str = redefault(TrainConfig, "out", "runs/memory")


@dataclass
class MemorySettings(Settings):
    data: MemoryData = field(default_factory=MemoryData)
    model: MemoryModel = field(default_factory=MemoryModel)
    training: MemoryTraining = field(default_factory=MemoryTraining)


# ------------------------------------------------------------------------------------------------ resolve

TASKS: dict[str, type[Settings]] = {"lm": LMSettings, "classify": ClassifySettings, "memory": MemorySettings}


def resolve(task: str, explicit: typing.Mapping | None = None, *, preset: str | None = None,
            config: typing.Mapping | None = None, where: str = "the config file",
            dataset_preset: bool = False) -> Settings:
    """`task`'s settings, in layers, each over the one before: the field defaults < the preset < `config`
    (a config file's mapping, flat or in sections; `where` names it in errors) < `explicit` values.

    preset: a name in presets.py, or "none"; if None, the config's "preset" key, and else, with
    `dataset_preset` (the command line), the chosen dataset's default preset (airline-tweets' for
    `--dataset airline-tweets`)."""
    cls = TASKS[task]
    from_file = flatten(cls, config, where, extra=("preset",)) if config else {}
    file_preset = from_file.pop("preset", None)
    explicit = dict(explicit or {})
    name = preset if preset is not None else file_preset
    if name is None and dataset_preset:
        name = presets.default_for(task, layered(cls, from_file, explicit).get("dataset"))
    preset_values = {}
    if name is not None and name != presets.NONE:
        preset_values = flatten(cls, presets.get(name, task).settings, f"preset {name!r}")
    return cls.from_flat(layered(cls, preset_values, from_file, explicit))


def settings_of(task: str, settings: Settings | None, preset: str | None, options: dict) -> Settings:
    """What a task function was given: a settings object, `options` (settings by name) over it (or over
    the defaults and the preset), as `train_lm(settings, epochs=3)` or `train_lm(dataset=..., epochs=3)`."""
    if settings is None:
        return resolve(task, options, preset=preset)
    if not isinstance(settings, TASKS[task]):
        raise TypeError(f"the settings of `{task}` are a {TASKS[task].__name__}, not a {type(settings).__name__}")
    if preset is not None:
        raise TypeError("give a preset or a settings object, not both (resolve() puts a preset under settings)")
    return settings.replace(**options) if options else settings
