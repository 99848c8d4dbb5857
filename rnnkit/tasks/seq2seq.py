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

from ..data import datasets, generators
from ..data.pairs import (PreparedPairs, SentenceTokenizer, SplitReport, prepare_pairs, read_pairs,
                          split_by_source)
from .settings import Seq2SeqData

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
