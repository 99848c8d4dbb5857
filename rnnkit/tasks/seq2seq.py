"""Translation (sequence to sequence): read pairs, train an encoder–decoder, evaluate, translate.

    from rnnkit.tasks import seq2seq
    result = seq2seq.train_seq2seq(dataset="addition", examples=20000, epochs=5)
    model = seq2seq.load_seq2seq(result.best)
    model.translate(["123+45"], beam=5, n_best=3)
    report = seq2seq.evaluate_seq2seq(result.best)          # BLEU, chrF, exact match on the held-out test split

Data (rnnkit/data/pairs.py, generators.py, datasets.py): a generator (addition, dates, reverse, copy: made
here, seeded), a registered translation dataset (tatoeba-en-es, either direction) or a user's TSV/CSV/JSONL
file. The pairs are split by source sentence (split_seed: the same split whatever the model's seed), cut
into word or character tokens, longer pairs than max_length dropped (reported), and each side gets its
vocabulary from the training split. The checkpoint keeps the vocabularies, the tokenizers and how the data
was made, so `evaluate_seq2seq` rebuilds exactly the held-out test split.

The model (the Seq2Seq of rnnkit/seq2seq_spec.py, on either engine) trains with teacher forcing on
PairBatcher's batches; decoding (greedy, beam search) is rnnkit/decoding.py's, engine-neutral.
The CLI (`rnnkit train seq2seq`, `rnnkit translate`, `rnnkit evaluate`) calls exactly these functions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import decoding as decoder
from .. import metrics
from ..checkpoint import load_checkpoint
from ..data import datasets, generators
from ..data.batching import PairBatcher, pad
from ..data.pairs import (PreparedPairs, SentenceTokenizer, SplitReport, filter_by_length, prepare_pairs,
                          read_pairs, split_by_source, tokenize_pairs)
from ..data.vocab import Vocabulary
from ..engines import build_engine, check_engine
from ..runs import check_out
from ..train import TrainResult, train
from .checkpoints import load_checked_engine
from .settings import Decoding, Seq2SeqData, Seq2SeqSettings, settings_of

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # rnnkit/data/pairs.py's SPECIALS, on both sides

GENERATED = tuple(generators.GENERATORS)  # addition, dates, reverse, copy


# ------------------------------------------------------------------------------------------------ data


def pair_splits(data: Seq2SeqData):
    """(splits {"train", "valid", "test"} of (source, target[, attribution]) tuples, SplitReport) of `data`:
    generated, a registered translation dataset, or a file; the same settings give the same splits."""
    fractions = dict(valid=data.valid_fraction, test=data.test_fraction, seed=data.split_seed)
    if data.dataset in GENERATED:
        options = {"addition": {"digits": data.digits}, "dates": {},
                   "reverse": {"max_length": data.sequence_length},
                   "copy": {"max_length": data.sequence_length}}[data.dataset]
        return generators.splits(data.dataset, data.examples, **fractions, **options)
    if data.dataset is not None:
        pairs = datasets.load_pairs(data.dataset, data.source_language, data.target_language)
    else:
        pairs = read_pairs(data.data, data.source_column, data.target_column)
    return split_by_source(pairs, **fractions, group=data.split_group)


def tokenizer_for(data: Seq2SeqData) -> SentenceTokenizer:
    """The tokenizer of both sides: data.level, else char for generators and word otherwise."""
    level = data.level or ("char" if data.dataset in GENERATED else "word")
    return SentenceTokenizer(level, data.lower, data.normalization)


def load_prepared(data: Seq2SeqData, log=print) -> tuple[PreparedPairs, SplitReport]:
    """The splits of `data`, tokenised, filtered by length, encoded with vocabularies built on train; and
    the split's report."""
    splits, split_report = pair_splits(data)
    tokenizer = tokenizer_for(data)
    prepared = prepare_pairs(splits, tokenizer, tokenizer, min_freq=data.min_freq, max_vocab=data.max_vocab,
                             max_length=data.max_length)
    log(f"pairs: {split_report}")
    for name in ("train", "valid", "test"):
        log(f"  {name}: {prepared.report[name]}")
    log(f"vocabularies ({tokenizer.level} level): source {len(prepared.source_vocab):,}, "
        f"target {len(prepared.target_vocab):,}")
    return prepared, split_report


# ------------------------------------------------------------------------------------------------ scores


def group_references(pairs: list) -> tuple[list[str], list[list[str]]]:
    """Distinct sources in first-seen order, and for each all its targets (Tatoeba: several translations)."""
    refs: dict[str, list[str]] = {}
    for p in pairs:
        refs.setdefault(p[0], []).append(p[1])
    return list(refs), list(refs.values())


def score_translations(hypotheses: list, references: list, tokenizer: SentenceTokenizer) -> dict:
    """exact match, BLEU and chrF of hypotheses (token lists) against references (per hypothesis a list of
    target strings). Exact match: the tokens equal those of one reference. BLEU on the tokens (corpus BLEU,
    several references); chrF on the detokenised text against the normalised references (white space does
    not count in chrF, so the detokeniser's spacing does not matter)."""
    ref_tokens = [[tokenizer.tokenize(r) for r in refs] for refs in references]
    exact = sum(any(h == r for r in refs) for h, refs in zip(hypotheses, ref_tokens)) / len(hypotheses)
    return {"exact_match": exact,
            "bleu": metrics.bleu(ref_tokens, hypotheses),
            "chrf": metrics.chrf([[tokenizer.normalize(r) for r in refs] for refs in references],
                                 [tokenizer.detokenize(h) for h in hypotheses])}


def translate_ids(engine, sources: list, decoding: Decoding, batch_size: int = 64) -> list:
    """n-best lists of rnnkit.decoding.Hypothesis for source id arrays, in batches of similar length."""
    out: list = [None] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    with engine.locked_weights():
        for start in range(0, len(order), batch_size):
            rows = order[start: start + batch_size]
            source, lengths = pad([sources[i] for i in rows])
            hyps = decoder.translate(engine, source, lengths, **decoding.search(), bos_id=BOS_ID, eos_id=EOS_ID,
                                     pad_id=PAD_ID)
            for i, h in zip(rows, hyps):
                out[i] = h
    return out


# ------------------------------------------------------------------------------------------------ the task


class Seq2SeqTask:
    """The trainer's view of translation (rnnkit/train.py): PairBatcher's batches (the order drawn from
    (seed, epoch), so a resumed run sees the same batches); validation loss per target token and, on the
    first `eval_translations` distinct validation sources, greedy translations' exact match, BLEU and chrF."""

    carries = False

    def __init__(self, prepared: PreparedPairs, batch_size: int, seed: int, bucket: bool, eval_translations: int,
                 config: dict):
        self.prepared, self.config = prepared, config
        self.train_batches = PairBatcher(prepared.ids["train"], batch_size, seed=seed, bucket=bucket)
        self.batching = dict(batch_size=batch_size, seed=seed, bucket=bucket)
        self.valid = PairBatcher(prepared.ids["valid"], batch_size, shuffle=False, bucket=True)
        sources, refs = group_references(prepared.pairs["valid"][:eval_translations])
        self.eval_sources, self.eval_refs = sources, refs

    def num_batches(self) -> int:
        return len(self.train_batches)

    def shard(self, rank: int, world: int) -> None:
        """Train on rank `rank`'s share of each of `world` processes' batches (torchrun; batching.rank_rows)."""
        self.train_batches = PairBatcher(self.prepared.ids["train"], **self.batching, rank=rank, world=world)

    def batches(self, epoch: int, start: int):
        return self.train_batches.batches(epoch, start)

    @staticmethod
    def batch_tokens(batch) -> int:
        return int(batch["target_lengths"].sum())

    def evaluate(self, engine) -> dict:
        total, count = 0.0, 0
        with engine.locked_weights():
            for batch in self.valid.batches(0):
                batch.pop("index")
                loss, n, _ = engine.eval_loss(batch)
                total, count = total + loss, count + n
        result = {"loss": total / count, "perplexity": metrics.perplexity(total / count)}
        if self.eval_sources:
            tok = self.prepared.source_tokenizer
            ids = [self.prepared.source_vocab.encode(tok.tokenize(s)) for s in self.eval_sources]
            hyps = translate_ids(engine, ids, Decoding())
            tokens = [self.prepared.target_vocab.decode(h[0].tokens) for h in hyps]
            result.update(score_translations(tokens, self.eval_refs, self.prepared.target_tokenizer))
        return result

    def checkpoint_config(self) -> dict:
        return self.config


# ------------------------------------------------------------------------------------------------ train


def train_seq2seq(settings: Seq2SeqSettings | None = None, *, preset: str | None = None, log=print,
                  **options) -> TrainResult:
    """Train a translation model on `settings` (data, model, training: rnnkit/tasks/settings.py).

        train_seq2seq(dataset="addition", examples=20000, epochs=5)             # any setting by name
        train_seq2seq(data="en-es.tsv", source_column="en", target_column="es", attention="luong-general")
    """
    s = settings_of("seq2seq", settings, preset, options)
    data, model, training = s.data, s.model, s.training
    check_out(training.out, training.resume, training.overwrite, clear_run=False)  # before the data is read
    prepared, split_report = load_prepared(data, log)
    if not prepared.ids["valid"]:
        raise ValueError("the validation split is empty: give more pairs or a larger --valid-fraction")
    model_kwargs = dict(source_vocab=len(prepared.source_vocab), target_vocab=len(prepared.target_vocab),
                        embedding_dim=model.embedding, hidden_size=model.hidden, num_layers=model.layers,
                        cell=model.cell, bidirectional=model.bidirectional, attention=model.attention,
                        dropout=model.dropout, teacher_forcing=model.teacher_forcing,
                        label_smoothing=model.label_smoothing, tie_embeddings=model.tie_embeddings,
                        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
    eng = build_engine(training.engine, "Seq2Seq", model_kwargs, **training.engine_options())
    longest = max(len(src) for src, _ in prepared.ids["train"])
    config = {"task": "seq2seq", "model": model_kwargs, "dtype": training.dtype, "training": asdict(training),
              "data": asdict(data), "tokenizer": prepared.source_tokenizer.config(),
              "source_vocab": prepared.source_vocab.to_dict(), "target_vocab": prepared.target_vocab.to_dict(),
              "max_source_length": max(MIN_SOURCE_LIMIT, SOURCE_LIMIT_FACTOR * longest),
              "split": {"sizes": split_report.sizes, "moved": split_report.moved},
              "dropped": {k: asdict(v) for k, v in prepared.report.items()}}
    task = Seq2SeqTask(prepared, training.batch_size, training.seed, training.bucket, training.eval_translations,
                       config)
    return train(task, eng, training, training.out, resume=training.resume, settings=s.to_dict(),
                 task_name="seq2seq")


# ------------------------------------------------------------------------------------------------ use

MIN_SOURCE_LIMIT, SOURCE_LIMIT_FACTOR = 32, 4  # a text may have max(32, 4 x the longest training source) tokens


@dataclass
class LoadedSeq2Seq:
    """A trained translation model: the engine, the tokenizer of both sides, the vocabularies."""

    engine: object
    tokenizer: SentenceTokenizer
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    config: dict

    @property
    def max_source_length(self) -> int:
        return int(self.config["max_source_length"])

    def source_ids(self, text) -> np.ndarray:
        """A text's source ids; ValueError for a non-string, an empty text, one over the length limit, or one
        whose every token is unknown to the model."""
        if not isinstance(text, str):
            raise ValueError(f"a text must be a string, got {type(text).__name__}")
        tokens = self.tokenizer.tokenize(text)
        if not tokens:
            raise ValueError(f"the text {text[:40]!r} has no tokens (it is empty or only white space)")
        if len(tokens) > self.max_source_length:
            raise ValueError(f"the text {text[:40]!r}... has {len(tokens)} tokens; this model takes at most "
                             f"{self.max_source_length} (4 x the longest training source); split it")
        ids = self.source_vocab.encode(tokens)
        if (ids == self.source_vocab.unk_id).all():
            raise ValueError(f"every token of {text[:40]!r} is unknown to the model's source vocabulary "
                             f"(e.g. {tokens[0]!r}): is the text in the language the model translates from?")
        return ids

    def translate(self, texts, decoding: Decoding | None = None, batch_size: int = 64, **search) -> list[dict]:
        """For each text: {"source": text, "source_tokens": [...], "translations": [{"text", "tokens", "score",
        "log_prob", "finished"}, ...] best first, "attention": (output steps, source tokens) of the best}.

        The search: a Decoding, or its fields by name (`translate(texts, beam=5, n_best=3)`); default greedy."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise ValueError("translate takes a list of texts")
        if not texts:
            raise ValueError("translate got an empty list of texts")
        if decoding is not None and search:
            raise TypeError("give a Decoding or its settings by name, not both")
        decoding = decoding or Decoding(**search)
        ids = [self.source_ids(t) for t in texts]
        out = []
        for text, n_best in zip(texts, translate_ids(self.engine, ids, decoding, batch_size)):
            found = []
            for h in n_best:
                tokens = self.target_vocab.decode(h.tokens)
                found.append({"text": self.tokenizer.detokenize(tokens), "tokens": tokens, "score": h.score,
                              "log_prob": h.log_prob, "finished": h.finished})
            out.append({"source": text, "source_tokens": self.tokenizer.tokenize(text), "translations": found,
                        "attention": n_best[0].attention})
        return out


def load_seq2seq(path, engine: str = "scratch", device: str = "auto") -> LoadedSeq2Seq:
    """A trained translation model from a checkpoint folder, on either engine."""
    check_engine(engine)
    ckpt = load_checkpoint(path)
    config = ckpt.config
    if config.get("task") != "seq2seq":
        raise ValueError(f"{path} holds a {config.get('task')!r} model, not a translation model")
    eng = load_checked_engine(engine, "Seq2Seq", config.get("model"), ckpt.weights, config.get("dtype", "float32"),
                              Path(path) / "config.json", device)
    return LoadedSeq2Seq(eng, SentenceTokenizer.from_config(config["tokenizer"]),
                         Vocabulary.from_dict(config["source_vocab"]), Vocabulary.from_dict(config["target_vocab"]),
                         config)


def evaluate_seq2seq(path, split: str = "test", data: str | None = None, source_column: str | None = None,
                     target_column: str | None = None, decoding: Decoding | None = None, engine: str = "scratch",
                     device: str = "auto", examples: int = 5) -> dict:
    """Exact match, BLEU and chrF of a checkpoint on a split of its own data (rebuilt from the checkpoint's
    data settings: the held-out test split by default) or on a file of pairs (`data`). Each distinct source is
    translated once and scored against all its references. The pairs are filtered as in training (an empty
    side, more than the run's max_length tokens on a side) and sources over the model's limit left out
    ("dropped" counts both). A JSON-ready dict, with the first `examples` translations."""
    model = load_seq2seq(path, engine, device)
    decoding = decoding or Decoding()
    if data is not None:
        stored = model.config["data"]
        pairs = read_pairs(data, source_column or stored["source_column"], target_column or stored["target_column"])
        where = str(data)
    else:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {split!r}; choose train, valid or test")
        pairs = pair_splits(Seq2SeqData(**model.config["data"]))[0][split]
        where = f"the {split} split"
    # the training run's filter: pairs with an empty side or over --max-length, or a source over the limit
    tokens = tokenize_pairs(pairs, model.tokenizer, model.tokenizer)
    keep, lengths = filter_by_length(tokens, model.config["data"].get("max_length"))
    keep = [i for i in keep if len(tokens[i][0]) <= model.max_source_length]
    if not keep:
        raise ValueError(f"{where} has no pairs left to score after the length filter ({lengths})")
    sources, references = group_references([pairs[i] for i in keep])
    ids = [model.source_vocab.encode(model.tokenizer.tokenize(s)) for s in sources]
    hyps = translate_ids(model.engine, ids, decoding)
    tokens = [model.target_vocab.decode(h[0].tokens) for h in hyps]
    report = score_translations(tokens, references, model.tokenizer)
    report.update(sources=len(sources), pairs=sum(len(r) for r in references), split=where,
                  dropped=len(pairs) - len(keep), beam=decoding.beam, length_penalty=decoding.length_penalty,
                  examples=[{"source": s, "translation": model.tokenizer.detokenize(t), "references": r}
                            for s, t, r in list(zip(sources, tokens, references))[:examples]])
    return report


def format_report(report: dict) -> str:
    """The evaluation as text: the scores, then the examples."""
    lines = [f"{report['split']}: {report['sources']:,} sources ({report['pairs']:,} pairs), beam {report['beam']}",
             f"  exact match  {report['exact_match']:.4f}",
             f"  BLEU         {100 * report['bleu']:.2f}",
             f"  chrF         {100 * report['chrf']:.2f}"]
    if report["dropped"]:
        lines.append(f"  ({report['dropped']:,} pairs with an empty side or over the length limit were left out)")
    for e in report["examples"]:
        lines.append(f"  {e['source']}  →  {e['translation']}   (reference: {' | '.join(e['references'])})")
    return "\n".join(lines)
