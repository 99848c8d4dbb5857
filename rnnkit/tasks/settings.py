"""Every setting of every training task: its default, help text and choices, each written once.

A task's settings are three sections, dataclasses of settings (rnnkit/settings.py): what it reads (data), the
model, and how it trains (training: rnnkit/train.py's TrainConfig, shared by the tasks). The command line
(`rnnkit train lm|classify|seq2seq`: one option per field), config files (`--config run.json`), presets
(presets.py) and the task functions (lm.train_lm, classify.train_classifier) all take these:

    settings = LMSettings(LMData(dataset="shakespeare"), LMModel(hidden=512), LMTraining(epochs=3))
    lm.train_lm(settings)
    lm.train_lm(dataset="shakespeare", hidden=512, epochs=3)          # the same, any setting by name
    resolve("classify", {"dataset": "airline-tweets", "epochs": 3}, preset="airline-tweets")

resolve() layers them: the field defaults < a preset < a config file < explicit values.
"""
from __future__ import annotations

import numbers
import typing
from dataclasses import dataclass, field

from ..data.pairs import GROUPS, NORMALIZATIONS
from ..settings import Settings, flatten, layered, redefault, setting
from ..decoding import MAX_OFFSET, MAX_RATIO
from ..spec import ATTENTION, CELLS, FORECAST_DECODERS, FORECAST_LOSSES, INITS, POOLING, check_choice
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
    prepared: str | None = setting(None, "a token folder made by `rnnkit data prepare`, memory-mapped (validation: "
                                   "its prepared --valid, else its last 10%)", metavar="DIR", exclusive="source")
    valid: str | None = setting(None, "validation text (default: the last 10% of --data)", metavar="FILE")
    level: str | None = setting(None, "tokens (default: the dataset's; char for files)", choices=LEVELS)
    lower: bool = setting(False, "lower-case words (word level)")
    min_freq: int = setting(1, "rarer tokens become <unk>")
    max_vocab: int | None = setting(None, "keep only the most frequent tokens (default: all)")
    bptt: int = setting(64, "steps of backpropagation through time per window")

    def __post_init__(self):
        if self.prepared is None:
            check_source(self.dataset, self.data, "a text file")
        elif self.dataset is not None or self.data is not None or self.valid is not None:
            raise ValueError("--prepared is the whole data source: drop --dataset/--data/--valid (prepare the "
                             "validation text with `rnnkit data prepare ... --valid FILE`)")
        elif (self.level, self.lower, self.min_freq, self.max_vocab) != (None, False, 1, None):
            raise ValueError("a --prepared folder is already tokenised: give --level/--lower/--min-freq/--max-vocab "
                             "to `rnnkit data prepare`")
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
    one_hot: bool = setting(False, "one-hot inputs: the embedding is the identity matrix, fixed (its size: the "
                            "vocabulary's; cap it with --max-vocab)")
    init: str = setting("pytorch", "the recurrent weights' initialisation (identity: the IRNN, for rnn_relu)",
                        choices=INITS)
    forget_bias: float | None = setting(None, "the LSTM's forget gate bias at the start (default: as --init)")

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_initialization(self)
        if self.one_hot and self.embeddings is not None:
            raise ValueError("--one-hot inputs and pretrained --embeddings exclude each other: choose one")
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


# ------------------------------------------------------------------------------------------------ seq2seq

SEQ2SEQ_SOURCES = ("addition", "dates", "reverse", "copy", "tatoeba-en-es")  # generators, then registered


@dataclass
class Seq2SeqData:
    """The sentence pairs a translation model learns from, how they are split and cut into tokens."""

    dataset: str | None = setting(None, "a generator (addition, dates, reverse, copy) or a registered translation "
                                  "dataset (tatoeba-en-es)", choices=SEQ2SEQ_SOURCES, exclusive="source")
    data: str | None = setting(None, "a TSV/CSV (with a header) or JSONL file of sentence pairs", metavar="FILE",
                               exclusive="source")
    source_column: str = setting("source", "the column (or JSON key) of the source sentences in --data")
    target_column: str = setting("target", "the column (or JSON key) of the target sentences in --data")
    source_language: str | None = setting(None, "a translation dataset's source language (tatoeba-en-es: en or "
                                          "es; default: the name's order)", flags=("--source", "--source-language"))
    target_language: str | None = setting(None, "its target language", flags=("--target", "--target-language"))
    examples: int = setting(50_000, "generators: pairs generated (train, valid and test together)")
    digits: int = setting(3, "addition: the most digits of each operand")
    sequence_length: int = setting(10, "reverse, copy: the longest string generated")
    valid_fraction: float = setting(0.1, "of the pairs, for validation")
    test_fraction: float = setting(0.1, "of the pairs, held out for the test (dates: in formats never trained on)")
    split_seed: int = setting(0, "seeds the split, apart from --seed: the same split for every model")
    split_group: str = setting("source", "keep together the pairs sharing a source (both: a source or a "
                               "target, so one split serves both directions)", choices=GROUPS)
    level: str | None = setting(None, "tokens (default: char for generators, word otherwise)", choices=LEVELS)
    lower: bool = setting(False, "lower-case the sentences")
    normalization: str = setting("NFKC", "the Unicode normal form applied first", choices=NORMALIZATIONS)
    min_freq: int = setting(1, "rarer tokens (in train) become <unk>")
    max_vocab: int | None = setting(None, "keep only the most frequent tokens of each side (default: all)")
    max_length: int | None = setting(None, "drop pairs with more tokens on a side (default: keep all)")

    def __post_init__(self):
        check_source(self.dataset, self.data, "a file of sentence pairs")
        if self.dataset is not None:
            check_choice("dataset", self.dataset, SEQ2SEQ_SOURCES)
        check_choice("split_group", self.split_group, GROUPS)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        if self.level is not None:
            check_choice("level", self.level, LEVELS)
        for name in ("examples", "digits", "sequence_length", "min_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 (or none), got {self.max_length}")


@dataclass
class Seq2SeqModel:
    """An encoder–decoder: embedding → recurrent encoder; embedding → recurrent decoder attending over it."""

    cell: str = setting("lstm", "the recurrent cell of the encoder and the decoder", choices=CELLS)
    layers: int = setting(1, "stacked recurrent layers, in the encoder and in the decoder")
    hidden: int = setting(128, "units of each recurrent layer (the encoder's per direction)")
    embedding: int = setting(64, "embedding size, on both sides")
    bidirectional: bool = setting(True, "the encoder reads both ways (--unidirectional: left to right only)",
                                  flags=("--unidirectional", "--no-bidirectional"))
    attention: str = setting("bahdanau", "none: the classic encoder-decoder; bahdanau: additive; luong-dot, "
                             "luong-general: multiplicative, with input feeding", choices=ATTENTION)
    dropout: float = setting(0.1, "dropout on the embeddings, between the layers and before the output layer")
    teacher_forcing: float = setting(1.0, "probability that the decoder reads the true previous token in "
                                     "training (below 1: scheduled sampling)")
    label_smoothing: float = setting(0.0, "of the training loss")
    tie_embeddings: bool = setting(False, "the output layer shares the target embedding (needs --embedding "
                                   "equal to --hidden)")

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_choice("attention", self.attention, ATTENTION)


@dataclass
class Seq2SeqTraining(TrainConfig):
    epochs: int = redefault(TrainConfig, "epochs", 10)
    batch_size: int = redefault(TrainConfig, "batch_size", 64)
    out: str = redefault(TrainConfig, "out", "runs/seq2seq")
    bucket: bool = setting(True, "batch pairs of similar length together, for less padding (--no-bucket: not)")
    eval_translations: int = setting(200, "validation pairs translated (greedy) at each evaluation for exact "
                                     "match, BLEU and chrF (0: the loss only)")

    def __post_init__(self):
        super().__post_init__()
        if self.eval_translations < 0:
            raise ValueError(f"eval_translations must be >= 0, got {self.eval_translations}")


@dataclass
class Seq2SeqSettings(Settings):
    data: Seq2SeqData
    model: Seq2SeqModel = field(default_factory=Seq2SeqModel)
    training: Seq2SeqTraining = field(default_factory=Seq2SeqTraining)


@dataclass
class Decoding:
    """How `rnnkit translate` and `rnnkit evaluate` search for translations (rnnkit/decoding.py)."""

    beam: int = setting(1, "beam width (1: greedy search)")
    n_best: int = setting(1, "translations per text, best first (at most --beam)")
    length_penalty: float = setting(0.0, "GNMT's alpha: scores are log P / ((5 + length) / 6)^alpha (0: log P)")
    max_ratio: float = setting(MAX_RATIO, "a translation has at most max_ratio x source length + max_offset tokens")
    max_offset: float = setting(MAX_OFFSET, "see --max-ratio")

    def __post_init__(self):
        if self.beam < 1 or not 1 <= self.n_best <= self.beam:
            raise ValueError(f"need beam >= 1 and 1 <= n_best <= beam, got beam {self.beam} and n_best {self.n_best}")
        if self.length_penalty < 0 or self.max_ratio < 0 or self.max_offset < 0:
            raise ValueError("length_penalty, max_ratio and max_offset must be >= 0")

    def search(self) -> dict:
        """rnnkit.decoding.translate's keyword arguments."""
        return dict(beam=self.beam, n_best=self.n_best, alpha=self.length_penalty, max_ratio=self.max_ratio,
                    max_offset=self.max_offset)


# ------------------------------------------------------------------------------------------------ forecast

FILLS = ("none", "ffill", "interpolate")
CALENDARS = ("cyclic", "onehot", "none")
MAX_ENSEMBLE = 100  # members of a forecaster ensemble (each trains and is saved on its own)


@dataclass
class ForecastData:
    """The series a forecaster learns from (rnnkit/data/series.py), and what is held out."""

    dataset: str | None = setting(None, "a registered time series (air-passengers, sunspots)", exclusive="source")
    data: str | None = setting(None, "a CSV/TSV (with a header) or JSONL file: a date column and value columns",
                               metavar="FILE", exclusive="source")
    date_column: str = setting("date", "the column (or JSON key) of the dates in --data")
    target: str | None = setting(None, "the column(s) to forecast, comma-separated (default: every value "
                                 "column but the covariates)")
    covariates: str | None = setting(None, "past-only covariate columns, comma-separated")
    fill: str = setting("none", "missing dates or values: an error (none), carried forward, or interpolated",
                        choices=FILLS)
    freq: str | None = setting(None, "the frequency: minutely, hourly, daily, weekly, business-daily, monthly, "
                               "quarterly, yearly, or pandas' alias (MS, D, ...) (default: inferred from the dates)")
    test: int | None = setting(None, "steps held out at the end for `rnnkit evaluate` (default: the horizon; 0: "
                               "none)")
    valid: int = setting(0, "steps before the test part whose forecasts choose the best checkpoint (0: the "
                         "training windows' loss decides)")

    def __post_init__(self):
        check_source(self.dataset, self.data, "a series file")
        check_choice("fill", self.fill, FILLS)
        for name in ("test", "valid"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class ForecastModel:
    """A forecaster: a recurrent encoder over the last `window` steps, a direct or autoregressive decoder."""

    window: int = setting(24, "past steps the encoder reads")
    horizon: int = setting(12, "steps forecast at once")
    cell: str = setting("gru", "the recurrent cell", choices=CELLS)
    layers: int = setting(1, "stacked recurrent layers")
    hidden: int = setting(32, "units of each recurrent layer")
    dropout: float = setting(0.0, "dropout between the layers and before the head")
    decoder: str = setting("direct", "direct: one pass predicts every step; autoregressive: step by step, "
                           "feeding its forecasts back", choices=FORECAST_DECODERS)
    loss: str = setting("quantile", "mse/mae: point forecasts; quantile: intervals at --levels; gaussian: a "
                        "mean and a scale", choices=FORECAST_LOSSES)
    levels: str = setting("80,95", "prediction-interval levels in percent, comma-separated")
    teacher_forcing: float = setting(1.0, "autoregressive: the probability of feeding the true previous value")
    log: bool = setting(False, "forecast log(y) (the series must be positive)")
    log_offset: float = setting(0.0, "with --log: forecast log(y + offset) (1: log1p, for counts with zeros)")
    diff: int = setting(0, "first differences to take (0, 1 or 2)")
    seasonal_diff: bool = setting(False, "take the seasonal difference (period: the frequency's season)")
    trend: bool = setting(False, "subtract a straight line (of log y with --log) fitted on the training part; the "
                          "forecast continues it (not with --diff or --seasonal-diff)")
    trend_steps: int = setting(0, "with --trend: fit the line on the training part's last N steps (0: all of them)")
    trend_damping: float = setting(1.0, "with --trend: after the training part the line's slope shrinks by this "
                                   "factor each step (ETS' damped trend; 1: a straight line)")
    local_level: bool = setting(False, "subtract each window's mean (of the transformed targets) from its inputs and "
                                "targets and add it back to the forecast: the network forecasts relative to the "
                                "window's own level (with --log, relative to its geometric mean)")
    calendar: str = setting("cyclic", "known-future calendar features (month, weekday, hour)", choices=CALENDARS)
    ensemble: int = setting(1, f"train this many seeds (seed, seed+1, ...; at most {MAX_ENSEMBLE}) and take the "
                            "median forecast")

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_choice("decoder", self.decoder, FORECAST_DECODERS)
        check_choice("loss", self.loss, FORECAST_LOSSES)
        check_choice("calendar", self.calendar, CALENDARS)
        parse_levels(self.levels)
        for name in ("window", "horizon", "ensemble"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ensemble > MAX_ENSEMBLE:  # each member is a run folder on disk (10^6 wrote 14 GB before a kill)
            raise ValueError(f"ensemble must be at most {MAX_ENSEMBLE}, got {self.ensemble}")
        if self.log_offset and not self.log:
            raise ValueError("--log-offset applies to --log: give both")
        if (self.trend_steps or self.trend_damping != 1) and not self.trend:
            raise ValueError("--trend-steps and --trend-damping shape the trend: give --trend too")
        if self.trend and (self.diff or self.seasonal_diff):
            raise ValueError("--trend and differences exclude each other: a difference already removes a straight "
                             "line; take one or the other")


def parse_levels(levels) -> tuple[float, ...]:
    """"80,95" (or [80, 95], or 80 alone) -> (80.0, 95.0); each level in (0, 100)."""
    try:
        items = levels.split(",") if isinstance(levels, str) else [levels] if isinstance(levels, numbers.Real) \
            else list(levels)
        out = tuple(sorted({float(x) for x in items if str(x).strip()}))
    except (TypeError, ValueError):
        raise ValueError(f"levels must be numbers in percent, e.g. 80,95; got {levels!r}") from None
    if not out or not all(0 < x < 100 for x in out):
        raise ValueError(f"levels must lie strictly between 0 and 100 (percent), got {levels!r}")
    return out


@dataclass
class ForecastTraining(TrainConfig):
    epochs: int = redefault(TrainConfig, "epochs", 100)
    batch_size: int = redefault(TrainConfig, "batch_size", 16)
    lr: float = redefault(TrainConfig, "lr", 3e-3)
    progress: bool = redefault(TrainConfig, "progress", False)
    out: str = redefault(TrainConfig, "out", "runs/forecast")


@dataclass
class ForecastSettings(Settings):
    data: ForecastData
    model: ForecastModel = field(default_factory=ForecastModel)
    training: ForecastTraining = field(default_factory=ForecastTraining)


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

TASKS: dict[str, type[Settings]] = {"lm": LMSettings, "classify": ClassifySettings, "seq2seq": Seq2SeqSettings,
                                    "forecast": ForecastSettings, "memory": MemorySettings}


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
    resumed = resumed_settings(task, layered(cls, from_file, explicit), preset)
    if resumed is not None:
        return resumed
    name = preset if preset is not None else file_preset
    if name is None and dataset_preset:
        name = presets.default_for(task, layered(cls, from_file, explicit).get("dataset"))
    preset_values = {}
    if name is not None and name != presets.NONE:
        preset_values = flatten(cls, presets.get(name, task).settings, f"preset {name!r}")
    return cls.from_flat(layered(cls, preset_values, from_file, explicit))


def resumed_settings(task: str, given: dict, preset: str | None) -> Settings | None:
    """With `resume` among the `given` settings: the run's saved settings (RUN/run.json, rnnkit/runs.py) with
    `given` over them, once none of those changes the model or the data (a ValueError naming the setting);
    None without `resume`, or for a run saved without run.json."""
    from .. import runs

    cls = TASKS[task]
    if not given.get("resume"):
        return None
    out = given.get("out", cls.options()["out"].default)
    saved = runs.saved_settings(out, task)
    if saved is None:
        return None
    if preset is not None:
        raise ValueError(f"--resume continues the run with its own settings ({out}/{runs.RUN_FILE}): a --preset "
                         f"cannot change them")
    saved = {name: value for name, value in runs.flat(saved).items()
             if name in cls.options() and name not in runs.NOT_INHERITED}
    runs.check_resume(out, saved, given)
    return cls.from_flat(layered(cls, saved, given))


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
