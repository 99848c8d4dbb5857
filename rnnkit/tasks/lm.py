"""Language modelling: predict the next character or word; train, evaluate, generate.

    from rnnkit.tasks import lm
    result = lm.train_lm(dataset="shakespeare", level="char", cell="lstm", layers=2, hidden=256, epochs=1)
    # or lm.train_lm(LMSettings(...)): the settings are rnnkit/tasks/settings.py's dataclasses
    model = lm.load_lm(result.best)
    print(lm.generate(model, prompt="ROMEO:", length=300, temperature=0.8, seed=1))
    print(lm.evaluate_lm(result.best, dataset="shakespeare", split="test"))

The CLI (`rnnkit train lm`, `rnnkit generate`, `rnnkit evaluate`) calls exactly these functions.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..data import datasets, prepared
from ..data.batching import LMBatcher
from ..data.text import read_text
from ..data.tokenizers import CharTokenizer, WordTokenizer
from ..data.vocab import Vocabulary
from ..engines import build_engine, check_engine
from ..initialization import initialize_engine
from ..metrics import perplexity
from ..progress import progress as bar
from ..runs import check_out
from ..train import TrainResult, train
from .checkpoints import load_task_checkpoint
from .pretrained import Pretrained
from .settings import LMSettings, settings_of

UNK, EOS = "<unk>", "<eos>"
# How each registered dataset is tokenised at each level (wikitext-2 is already split into words).
DATASET_WORD_SPLIT = {"wikitext-2": "whitespace"}
DATASET_LEVEL = {"shakespeare": "char", "wikitext-2": "word"}


# ------------------------------------------------------------------------------------------------ text → ids

def make_tokenizer(settings: dict):
    """A tokenizer from its settings: {"level": "char"} or {"level": "word", "split": ..., "lower": ...}."""
    if settings["level"] == "char":
        return CharTokenizer()
    if settings["level"] == "word":
        return WordTokenizer(split=settings.get("split", "punct"), lower=settings.get("lower", False), eos=EOS)
    raise ValueError(f"unknown level {settings['level']!r}; choose char or word")


@dataclass
class Corpus:
    train: np.ndarray          # (N,) token ids
    valid: np.ndarray
    vocab: Vocabulary
    tokenizer: dict            # make_tokenizer's settings
    source: dict               # where the text came from


def load_corpus(dataset: str | None = None, data: str | None = None, valid: str | None = None,
                level: str | None = None, lower: bool = False, min_freq: int = 1,
                max_vocab: int | None = None, valid_fraction: float = 0.1) -> Corpus:
    """Read a registered dataset or a UTF-8 text file, tokenise it, build the vocabulary on the train part.

    With `data` and no `valid` file, the last `valid_fraction` of the text is held out for validation.
    """
    if (dataset is None) == (data is None):
        raise ValueError("give either a dataset name (--dataset) or a text file (--data), not both")
    if dataset is not None:
        level = level or DATASET_LEVEL.get(dataset, "char")
        train_text, valid_text = datasets.load(dataset, "train"), datasets.load(dataset, "valid")
        source = {"dataset": dataset}
        split = DATASET_WORD_SPLIT.get(dataset, "punct")
    else:
        level = level or "char"
        text = read_text(data)
        if valid is not None:
            train_text, valid_text = text, read_text(valid)
        else:
            if not 0 < valid_fraction < 1:
                raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
            cut = int(len(text) * (1 - valid_fraction))
            train_text, valid_text = text[:cut], text[cut:]
        source = {"data": str(data), "valid": str(valid) if valid else None}
        split = "punct"
    settings = {"level": level} if level == "char" else {"level": level, "split": split, "lower": lower}
    tokenizer = make_tokenizer(settings)
    train_tokens, valid_tokens = tokenizer.tokenize(train_text), tokenizer.tokenize(valid_text)
    specials = (UNK,) if level == "char" else (UNK, EOS)
    vocab = Vocabulary.build(train_tokens, min_freq=min_freq, max_size=max_vocab, specials=specials)
    train_ids, valid_ids = vocab.encode(train_tokens), vocab.encode(valid_tokens)
    for name, ids in (("training", train_ids), ("validation", valid_ids)):
        if len(ids) < 2:
            raise ValueError(f"the {name} text has {len(ids)} tokens; a language model needs at least 2")
    return Corpus(train_ids, valid_ids, vocab, settings, source)


def prepare_corpus(text_file, out, level: str = "char", lower: bool = False, min_freq: int = 1,
                   max_vocab: int | None = None, valid=None, chunk_bytes: int = prepared.CHUNK_BYTES) -> dict:
    """`rnnkit data prepare`: tokenise a text file as load_corpus(data=...) does, streaming, into a folder of
    memory-mapped ids (rnnkit/data/prepared.py); `valid`: a validation text encoded with its vocabulary."""
    settings = {"level": level} if level == "char" else {"level": level, "split": "punct", "lower": lower}
    specials = (UNK,) if level == "char" else (UNK, EOS)
    return prepared.prepare(text_file, out, make_tokenizer(settings), settings, specials, min_freq, max_vocab,
                            valid, chunk_bytes)


def load_prepared(folder, valid_fraction: float = 0.1) -> Corpus:
    """A prepared folder as a Corpus of memory-mapped ids: its valid.bin, else the last `valid_fraction` of
    train.bin for validation (views of the file: nothing is copied)."""
    p = prepared.open_prepared(folder)
    train, valid = p.train, p.valid
    if valid is None:
        cut = int(len(train) * (1 - valid_fraction))
        train, valid = train[:cut], train[cut:]
    return Corpus(train, valid, p.vocab, p.tokenizer, {"prepared": str(folder)})


# ------------------------------------------------------------------------------------------------ the task

class LMTask:
    """The trainer's view of language modelling (see rnnkit/train.py): windows of `bptt` tokens over
    `batch_size` parallel streams, the recurrent state carried from window to window."""

    carries = True

    def __init__(self, corpus: Corpus, model_kwargs: dict, batch_size: int, bptt: int, extra_config: dict):
        self.corpus, self.model_kwargs = corpus, model_kwargs
        self.batches_train = LMBatcher(corpus.train, batch_size, bptt)
        self.batches_valid = LMBatcher(corpus.valid, min(batch_size, max(1, len(corpus.valid) // 2)), bptt)
        self.batch_size, self.bptt, self.extra = batch_size, bptt, extra_config

    def num_batches(self) -> int:
        return len(self.batches_train)

    def shard(self, rank: int, world: int) -> None:
        """Train on rank `rank`'s streams of `world` processes' (torchrun): a contiguous part of the tokens."""
        self.batches_train = LMBatcher(self.corpus.train, self.batch_size, self.bptt, rank, world)

    def batches(self, epoch: int, start: int):
        for inputs, targets in self.batches_train.iter_from(start):
            yield {"inputs": inputs, "targets": targets}

    @staticmethod
    def batch_tokens(batch) -> int:
        return int(batch["targets"].size)

    def evaluate(self, engine) -> dict:
        return corpus_metrics(engine, self.batches_valid, self.corpus.tokenizer["level"])

    def checkpoint_config(self) -> dict:
        return {"task": "lm", "model": self.model_kwargs, "vocab": self.corpus.vocab.to_dict(),
                "data": {"tokenizer": self.corpus.tokenizer, "source": self.corpus.source,
                         "batch_size": self.batch_size, "bptt": self.bptt}, **self.extra}


def corpus_metrics(engine, batches: LMBatcher, level: str, progress: bool = False) -> dict:
    """Loss (nats per token), perplexity and bits per token (per character at char level) over all windows,
    the state carried through as in training (`progress`: a bar on stderr)."""
    total, count, carry = 0.0, 0, None
    with engine.locked_weights():   # the weights do not change in here: pack them once for all windows
        for inputs, targets in bar(batches, len(batches), "scoring", enabled=progress, unit="window"):
            loss, n, carry = engine.eval_loss({"inputs": inputs, "targets": targets}, carry)
            total, count = total + loss, count + n
    loss = total / count
    unit = "bits_per_char" if level == "char" else "bits_per_word"
    ppl = math.nan if math.isnan(loss) else perplexity(loss)  # NaN: a diverged model, which train.py reports
    return {"loss": loss, "perplexity": ppl, unit: loss / math.log(2)}


# ------------------------------------------------------------------------------------------------ train

def train_lm(settings: LMSettings | None = None, *, preset: str | None = None, log=print,
             **options) -> TrainResult:
    """Train a language model on `settings` (data, model, training: rnnkit/tasks/settings.py).

        train_lm(LMSettings(LMData(dataset="shakespeare"), LMModel(hidden=512), LMTraining(epochs=3)))
        train_lm(dataset="shakespeare", hidden=512, epochs=3)     # the same: any setting by name

    `options` are settings by name (LMData's, LMModel's, LMTraining's fields), over `settings`, or over the
    defaults and the `preset`.
    """
    s = settings_of("lm", settings, preset, options)
    data, model, training = s.data, s.model, s.training
    check_out(training.out, training.resume, training.overwrite, clear_run=False)  # before the data is read
    corpus = (load_prepared(data.prepared) if data.prepared else
              load_corpus(data.dataset, data.data, data.valid, data.level, data.lower, data.min_freq, data.max_vocab))
    log(f"{corpus.tokenizer['level']}-level {data.dataset or data.data or data.prepared}: {len(corpus.train):,} "
        f"training and "
        f"{len(corpus.valid):,} validation tokens, vocabulary {len(corpus.vocab):,}; {model.layers}-layer "
        f"{model.cell.upper()} of {model.hidden}, {training.batch_size} streams x {data.bptt} steps per window")
    model_kwargs = dict(vocab_size=len(corpus.vocab), embedding_dim=model.embedding or model.hidden,
                        hidden_size=model.hidden, num_layers=model.layers, cell=model.cell, dropout=model.dropout,
                        tie_weights=model.tie_weights)
    eng = build_engine(training.engine, "LanguageModel", model_kwargs, **training.engine_options())
    initialize_engine(eng, model.cell, model.init, model.forget_bias, seed=training.seed)
    task = LMTask(corpus, model_kwargs, training.batch_size, data.bptt,
                  {"training": asdict(training), "dtype": training.dtype})
    return train(task, eng, training, training.out, resume=training.resume, settings=s.to_dict(), task_name="lm")


# ------------------------------------------------------------------------------------------------ use

@dataclass
class LoadedLM(Pretrained):
    engine: object             # ScratchEngine or TorchEngine holding the model
    vocab: Vocabulary
    tokenizer: dict
    config: dict

    @classmethod
    def from_pretrained(cls, folder, engine: str = "scratch", device: str = "auto") -> "LoadedLM":
        """load_lm(folder, engine, device): a checkpoint folder (save_pretrained's, or a run's best/)."""
        return load_lm(folder, engine, device)


def load_lm(path, engine: str = "scratch", device: str = "auto", dtype: str | None = None) -> LoadedLM:
    """A trained language model from a checkpoint folder, on either engine (any engine can load any
    checkpoint: the weights have the same names on both). Every setting is checked against the weights
    before the model is built (checkpoints.py)."""
    check_engine(engine)
    ckpt = load_task_checkpoint(path, "lm")
    config = ckpt.config
    dtype = dtype or config.get("dtype", "float32")
    eng = build_engine(engine, "LanguageModel", config["model"], dtype=dtype, device=device)
    eng.load_weights(ckpt.weights)
    eng.model.eval()  # as a loaded model is used: dropout off (training switches it back on)
    vocab = Vocabulary.from_dict(config["vocab"])
    return LoadedLM(eng, vocab, config["data"]["tokenizer"], config)


def sample_token(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None) -> int:
    """Draw a token id from logits (vocab,): temperature, then top-k, then nucleus (top-p) filtering.
    Temperature 0 is greedy (argmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    if top_k is not None and 0 < top_k < len(z):
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]  # smallest set reaching top_p
        mask = np.zeros_like(p)
        mask[keep] = p[keep]
        p = mask / mask.sum()
    return int(rng.choice(len(p), p=p))


MAX_GENERATE = 1_000_000  # tokens one generate call makes (held in memory until it returns)


def unknown_prompt(model: LoadedLM, prompt: str) -> list[str]:
    """The prompt's tokens the model's vocabulary lacks (generate reads each as the unknown token)."""
    return [t for t in make_tokenizer(model.tokenizer).tokenize(prompt) if t not in model.vocab] if prompt else []


def generate(model: LoadedLM, prompt: str = "", length: int = 200, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
    """The prompt followed by `length` generated tokens, as text. The same checkpoint and seed give the
    same text on both engines."""
    if not 0 <= length <= MAX_GENERATE:
        raise ValueError(f"length must be 0..{MAX_GENERATE:,} tokens (the text is built in memory), got {length}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None: every token), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    tokenizer = make_tokenizer(model.tokenizer)
    tokens = tokenizer.tokenize(prompt) if prompt else []
    if model.tokenizer["level"] == "word" and tokens and tokens[-1] == EOS and not prompt.endswith("\n"):
        tokens = tokens[:-1]
    if not tokens:  # start from a line break (or end of line) when there is no prompt
        start = EOS if EOS in model.vocab else "\n"
        tokens = [start if start in model.vocab else model.vocab.decode([len(model.vocab.specials)])[0]]
    ids = model.vocab.encode(tokens)
    rng = np.random.default_rng(seed)
    out = []
    with model.engine.locked_weights():  # one token per call: pack the weights once, not per token
        logits, state = model.engine.predict(ids[None, :], None)
        for _ in range(length):
            next_id = sample_token(logits[0, -1], rng, temperature, top_k, top_p)
            out.append(next_id)
            logits, state = model.engine.predict(np.array([[next_id]]), state)
    generated = model.vocab.decode(out)
    text = tokenizer.detokenize(generated)
    return (prompt + ("" if model.tokenizer["level"] == "char" else " ") + text) if prompt else text


def evaluate_lm(path, data: str | None = None, dataset: str | None = None, split: str = "test",
                engine: str = "scratch", device: str = "auto", batch_size: int = 10, bptt: int | None = None,
                progress: bool = False) -> dict:
    """Loss, perplexity and bits per character (or word) of a checkpoint on a text file or a dataset split."""
    model = load_lm(path, engine, device)
    if (dataset is None) == (data is None):
        raise ValueError("give either a text file (--data) or a dataset name (--dataset), not both")
    text = read_text(data) if data is not None else datasets.load(dataset, split)
    ids = model.vocab.encode(make_tokenizer(model.tokenizer).tokenize(text))
    bptt = bptt or model.config["data"].get("bptt", 64)
    batches = LMBatcher(ids, min(batch_size, max(1, len(ids) // 2)), bptt)
    metrics = corpus_metrics(model.engine, batches, model.tokenizer["level"], progress)
    metrics["tokens"] = int(len(ids))
    return metrics
