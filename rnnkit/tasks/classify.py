"""Text classification (sentiment of posts): read, tokenise, train, evaluate, predict.

    from rnnkit.tasks import classify
    result = classify.train_classifier(dataset="airline-tweets", preset="airline-tweets", epochs=3)
    model = classify.load_classifier(result.best)
    model.predict(["@united lost my bag again", "thanks for the upgrade!"])
    report = classify.evaluate_classifier(result.best, dataset="airline-tweets", split="test")

Each post is tokenised (rnnkit/data/posts.py: URLs, mentions, hashtags, emoji), its tokens looked up in a
vocabulary built on the training split, and read word by word by an RNN/LSTM/GRU whose outputs are pooled
into one vector and classified (rnnkit/scratch/models.py: TextClassifier; the same model on the torch engine).
The CLI (`rnnkit train classify`, `rnnkit evaluate`, `rnnkit predict`) calls exactly these functions.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import metrics
from ..checkpoint.atomic import write_json, write_text_atomic
from ..data import datasets
from ..data.batching import pad, rank_rows
from ..data.posts import PostTokenizer
from ..data.splits import describe, file_sha256, parse_label_map, rename_labels, split_file
from ..data.tables import read_labelled
from ..data.vocab import PAD, UNK, Vocabulary
from ..engines import build_engine, check_engine
from ..initialization import initialize_engine
from ..progress import progress as bar
from ..runs import check_out
from ..train import TrainResult, train
from .checkpoints import load_task_checkpoint
from .pretrained import Pretrained
from .settings import ClassifySettings, settings_of

# ------------------------------------------------------------------------------------------------ data


@dataclass
class Examples:
    """(text, label) pairs of each split, and the label set (sorted: class i is labels[i]). A single file split
    here: `test_rows`, the held-out rows' numbers in the file, and `source["split"]`, what was done."""

    train: list
    valid: list
    test: list
    labels: list
    source: dict
    test_rows: list | None = None


def load_examples(dataset: str | None = None, data: str | None = None, valid: str | None = None,
                  test: str | None = None, text_column: str = "text", label_column: str = "label",
                  label_map: str | None = None) -> Examples:
    """A registered labelled dataset's splits, or a user's CSV/TSV/JSONL file(s); labels renamed by
    `label_map` ("pos=positive,neg=negative").

    A single file is deduplicated and split 80/10/10 per label (rnnkit/data/splits.py: fixed, by a hash of
    each text); `valid` and `test` files, if given, are used as they are.
    """
    if (dataset is None) == (data is None):
        raise ValueError("give either a dataset name (--dataset) or a labelled file (--data), not both")
    mapping = parse_label_map(label_map)
    test_rows = None
    if dataset is not None:
        splits = {s: rename_labels(datasets.load_labelled(dataset, s), mapping) for s in ("train", "valid", "test")}
        source = {"dataset": dataset}
    else:
        read = lambda path: rename_labels(read_labelled(path, text_column, label_column), mapping)  # noqa: E731
        record = None
        if valid is None and test is None:
            made = split_file(data, text_column, label_column, mapping)
            splits, test_rows, record = made.splits, made.rows["test"], made.record
        else:
            splits = {"train": read(data), "valid": read(valid) if valid else [], "test": read(test) if test else []}
            if not splits["valid"]:
                raise ValueError("with --test, give a validation file too (--valid)")
        source = {"data": str(data), "valid": valid and str(valid), "test": test and str(test),
                  "text_column": text_column, "label_column": label_column, "split": record}
    if mapping:
        source["label_map"] = label_map
    labels = sorted({label for _, label in splits["train"]})
    if len(labels) < 2:
        raise ValueError(f"the training data has {len(labels)} label(s) ({labels}); a classifier needs at least 2")
    for split in ("valid", "test"):
        unknown = sorted({label for _, label in splits[split]} - set(labels))
        if unknown:
            raise ValueError(f"the {split} split has labels the training split lacks: {unknown}")
    if not splits["valid"]:
        raise ValueError("the validation split is empty: give more data or a --valid file")
    return Examples(splits["train"], splits["valid"], splits["test"], labels, source, test_rows)


@dataclass
class Encoder:
    """Text → token ids: the post tokenizer, the vocabulary, and a maximum length (longer posts are cut)."""

    tokenizer: PostTokenizer
    vocab: Vocabulary
    max_length: int

    def token_ids(self, text) -> np.ndarray:
        if not isinstance(text, str):
            raise ValueError(f"a text must be a string, got {type(text).__name__}")
        ids = self.vocab.encode(self.tokenizer.tokenize(text)[: self.max_length])
        if len(ids) == 0:
            raise ValueError(f"the text {text[:40]!r} has no tokens (it is empty or only white space)")
        return ids

    def to_config(self) -> dict:
        return {"tokenizer": self.tokenizer.config(), "max_length": self.max_length}


def encode_pairs(encoder: Encoder, pairs, labels: list) -> tuple[list, np.ndarray, int]:
    """(token id arrays, label ids, number of texts dropped because they have no tokens)."""
    index = {label: i for i, label in enumerate(labels)}
    ids, ys, dropped = [], [], 0
    for text, label in pairs:
        tokens = encoder.vocab.encode(encoder.tokenizer.tokenize(text)[: encoder.max_length])
        if len(tokens) == 0:
            dropped += 1
            continue
        ids.append(tokens)
        ys.append(index[label])
    return ids, np.array(ys, dtype=np.int64), dropped


# ------------------------------------------------------------------------------------------------ the task

class ClassifyTask:
    """The trainer's view of classification (see rnnkit/train.py): shuffled mini-batches, reshuffled each
    epoch from (seed, epoch) so a resumed run sees the same order; validation loss, accuracy, macro-F1."""

    carries = False

    def __init__(self, train_ids, train_y, valid_ids, valid_y, batch_size: int, seed: int, config: dict,
                 word_dropout: float = 0.0, unk_id: int = 1):
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        self.train_ids, self.train_y = train_ids, train_y
        self.valid_ids, self.valid_y = valid_ids, valid_y
        self.batch_size, self.seed, self.config = batch_size, seed, config
        self.word_dropout, self.unk_id = word_dropout, unk_id
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        """Train on rank `rank`'s share of each of `world` processes' batches (torchrun; batching.rank_rows)."""
        self.rank, self.world = rank, world

    def num_batches(self) -> int:
        return math.ceil(len(self.train_ids) / (self.batch_size * self.world))

    def batches(self, epoch: int, start: int):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_ids))
        size = self.batch_size * self.world   # the world's batch, of which this rank takes its share
        for k in range(start, self.num_batches()):
            rows = rank_rows(order[k * size: (k + 1) * size], self.rank, self.world)
            inputs, lengths = pad([self.train_ids[i] for i in rows])
            if self.word_dropout:
                ranked = [self.rank] if self.world > 1 else []  # each rank its own draw
                inputs = drop_words(inputs, lengths, self.word_dropout, self.unk_id,
                                    np.random.default_rng([self.seed, epoch, k, 1, *ranked]))
            yield {"inputs": inputs, "lengths": lengths, "labels": self.train_y[rows]}

    @staticmethod
    def batch_tokens(batch) -> int:
        return int(batch["lengths"].sum())

    def evaluate(self, engine) -> dict:
        loss, probs = predict_ids(engine, self.valid_ids, self.valid_y)
        pred = probs.argmax(axis=1)
        report = metrics.classification_report(self.valid_y, pred, list(range(probs.shape[1])))
        return {"loss": loss, "accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"]}

    def checkpoint_config(self) -> dict:
        return self.config


def drop_words(ids: np.ndarray, lengths: np.ndarray, p: float, unk_id: int, rng) -> np.ndarray:
    """Word dropout (training only): each real token of ids (batch, time) becomes `unk_id` with
    probability p; padding (t >= lengths[b]) is left alone. A new array; the same rng gives the same draw.

    The model then cannot lean on any one word and learns what <unk> means in context (the embedding row
    of a dropped word gets no gradient from that step). It happens to the batch, before either engine sees
    it, so both engines train on the same inputs.
    """
    real = np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]
    drop = real & (rng.random(ids.shape) < p)
    return np.where(drop, unk_id, ids)


def predict_ids(engine, ids: list, labels=None, batch_size: int = 256, progress: bool = False):
    """(mean loss or None, probabilities (n, classes)) for token id arrays, in batches (`progress`: a bar)."""
    total, probs = 0.0, []
    starts = range(0, len(ids), batch_size)
    with engine.locked_weights():   # the weights do not change in here: pack them once for all batches
        for start in bar(starts, len(starts), "scoring", enabled=progress):
            inputs, lengths = pad(ids[start: start + batch_size])
            probs.append(engine.predict(inputs, lengths))
            if labels is not None:
                batch = {"inputs": inputs, "lengths": lengths, "labels": labels[start: start + batch_size]}
                total += engine.eval_loss(batch)[0]
    return (total / len(ids) if labels is not None else None), np.concatenate(probs)


MAX_ONE_HOT = 10_000   # words: the identity embedding holds MAX_ONE_HOT² numbers (400 MB in float32)


def one_hot_matrix(size: int, pad_id: int | None = None) -> np.ndarray:
    """(size, size) float32 identity: embedding row i is the one-hot vector e_i, so the first layer computes
    W_ih · e_i = column i of W_ih, exactly a one-hot input. The padding row (pad_id) is all zeros, as a
    learned embedding's is (padding steps are masked in any case)."""
    if size > MAX_ONE_HOT:
        raise ValueError(f"one-hot inputs over {size:,} words would make a {size:,} × {size:,} input matrix; cap "
                         f"the vocabulary with --max-vocab (at most {MAX_ONE_HOT:,})")
    matrix = np.eye(size, dtype=np.float32)
    if pad_id is not None:
        matrix[pad_id, pad_id] = 0.0
    return matrix


def balanced_weights(y: np.ndarray, classes: int) -> np.ndarray:
    """n / (classes · count_c): rarer classes weigh more (scikit-learn's "balanced")."""
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    return len(y) / (classes * np.maximum(counts, 1))


# ------------------------------------------------------------------------------------------------ train

def train_classifier(settings: ClassifySettings | None = None, *, preset: str | None = None, log=print,
                     **options) -> TrainResult:
    """Train a text classifier on `settings` (data, model, training: rnnkit/tasks/settings.py).

        train_classifier(preset="airline-tweets", dataset="airline-tweets")   # the tuned settings
        train_classifier(data="posts.csv", hidden=64, epochs=3)               # any setting by name
        train_classifier(ClassifySettings(ClassifyData(data="posts.csv"), ClassifyModel(cell="gru")))

    `options` are settings by name (ClassifyData's, ClassifyModel's, ClassifyTraining's fields), over
    `settings`, or over the defaults and the `preset` (presets.py). class_weights "balanced": rarer classes
    weigh more. word_dropout: the probability that a training token is replaced by <unk> (a fresh draw per
    batch; see drop_words). embedding_init_std: the random embedding starts N(0, std²) (1 is torch's default;
    0.1 generalises better on airline-tweets). embeddings: a GloVe/word2vec text file whose vectors initialise
    the embedding (its dimension overrides `embedding`), trained further unless `freeze_embeddings`. one_hot:
    one-hot inputs instead of an embedding (one_hot_matrix: the identity, fixed; cap the vocabulary).
    """
    s = settings_of("classify", settings, preset, options)
    data, model, training = s.data, s.model, s.training
    check_out(training.out, training.resume, training.overwrite, clear_run=False)  # before the data is read
    if not training.verbose:
        log = lambda line: None  # noqa: E731
    examples = load_examples(data.dataset, data.data, data.valid, data.test, data.text_column, data.label_column,
                             data.label_map)
    if examples.source.get("split"):
        log(describe(examples.source["split"], data.data))
    tokenizer = PostTokenizer()
    vocab = Vocabulary.build([tokenizer.tokenize(t) for t, _ in examples.train], min_freq=data.min_freq,
                             max_size=data.max_vocab, specials=(PAD, UNK))
    encoder = Encoder(tokenizer, vocab, data.max_length)
    train_ids, train_y, dropped = encode_pairs(encoder, examples.train, examples.labels)
    valid_ids, valid_y, dropped_valid = encode_pairs(encoder, examples.valid, examples.labels)
    dropped += dropped_valid
    log(f"{len(train_ids)} training and {len(valid_ids)} validation texts"
        + (f" ({len(examples.test)} test texts held out, scored at the end)" if examples.test else "")
        + f", {len(examples.labels)} classes {examples.labels}, vocabulary {len(vocab)}"
        + (f"; {dropped} texts without tokens dropped" if dropped else ""))

    matrix, embedding = None, model.embedding
    if model.one_hot:
        matrix = one_hot_matrix(len(vocab), vocab.pad_id)
        embedding = len(vocab)
        log(f"one-hot inputs: {embedding} dimensions, one per word of the vocabulary (the embedding fixed to the "
            "identity)")
    elif model.embeddings is not None:
        from ..data.embeddings import load_embeddings

        matrix, coverage = load_embeddings(model.embeddings, vocab)
        embedding = matrix.shape[1]
        log(f"pretrained embeddings: {coverage['found']} of {coverage['total']} words found "
            f"({coverage['fraction']:.1%}), dimension {embedding}")
    model_kwargs = dict(vocab_size=len(vocab), num_classes=len(examples.labels), embedding_dim=embedding,
                        hidden_size=model.hidden, num_layers=model.layers, cell=model.cell,
                        bidirectional=model.bidirectional, dropout=model.dropout, pooling=model.pooling,
                        attention_size=model.attention_size, padding_idx=0,
                        embedding_init_std=model.embedding_init_std)
    frozen = ("embedding.weight",) if matrix is not None and (model.freeze_embeddings or model.one_hot) else ()
    eng = build_engine(training.engine, "TextClassifier", model_kwargs, frozen=frozen, **training.engine_options())
    initialize_engine(eng, model.cell, model.init, model.forget_bias, seed=training.seed)
    if matrix is not None:
        weights = eng.weights()
        weights["embedding.weight"] = matrix.astype(weights["embedding.weight"].dtype)
        eng.load_weights(weights)
    balanced = model.class_weights == "balanced"
    weights_of_classes = balanced_weights(train_y, len(examples.labels)) if balanced else None
    log("class weights: " + ("none (every example counts the same; --class-weights balanced: rarer labels weigh "
                             "more)" if weights_of_classes is None else "balanced, " + ", ".join(
                                 f"{label} {w:.3g}" for label, w in zip(examples.labels, weights_of_classes))))
    eng.model.class_weights = weights_of_classes
    ckpt_config = {"task": "classify", "model": model_kwargs, "labels": examples.labels,
                   "vocab": vocab.to_dict(), "data": {**encoder.to_config(), "source": examples.source},
                   "class_weights": None if weights_of_classes is None else weights_of_classes.tolist(),
                   "training": asdict(training), "dtype": training.dtype, "word_dropout": model.word_dropout}
    task = ClassifyTask(train_ids, train_y, valid_ids, valid_y, training.batch_size, training.seed, ckpt_config,
                        word_dropout=model.word_dropout, unk_id=vocab.unk_id)
    result = ClassifyResult(**vars(train(task, eng, training, training.out, resume=training.resume,
                                       settings=s.to_dict(), task_name="classify")))
    if examples.test and result.main and (result.best / "config.json").is_file():
        result.test = score_held_out(result, examples, training, log)
    return result


@dataclass
class ClassifyResult(TrainResult):
    test: dict | None = None            # the best checkpoint's report on the held-out test part


def score_held_out(result: TrainResult, examples: Examples, training, log) -> dict:
    """Score the best checkpoint on the test part; write RUN/test_report.json and, for a user's file split
    here, the held-out rows as RUN/test.csv (row: the data row in the file)."""
    model = load_classifier(result.best, training.engine, training.device)
    where = examples.source.get("dataset") or Path(examples.source["test"] or examples.source["data"]).name
    report = score(model, examples.test, f"{where} (test)", model_name=str(result.best))
    write_json(result.run_dir / "test_report.json", report)
    if examples.test_rows is not None:
        write_rows(result.run_dir / "test.csv", examples.test_rows, examples.test, examples.source)
    log(f"test (held out, {report['support']} texts), best checkpoint: accuracy {report['accuracy']:.4f}  macro-F1 "
        f"{report['macro']['f1']:.4f}  loss {report['loss']:.4f}; report in {result.run_dir / 'test_report.json'}")
    return report


def write_rows(path: Path, rows: list, pairs: list, source: dict) -> None:
    """The held-out rows as a CSV (row, text, label columns: the file's names), atomically."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    columns = (source["text_column"], source["label_column"])
    writer.writerow(["row" if "row" not in columns else "data_row", *columns])
    writer.writerows((row, text, label) for row, (text, label) in zip(rows, pairs))
    write_text_atomic(path, out.getvalue())


# ------------------------------------------------------------------------------------------------ use

@dataclass
class LoadedClassifier(Pretrained):
    engine: object
    encoder: Encoder
    labels: list
    config: dict

    @classmethod
    def from_pretrained(cls, folder, engine: str = "scratch", device: str = "auto") -> "LoadedClassifier":
        """load_classifier(folder, engine, device): a checkpoint folder (save_pretrained's, or a run's best/)."""
        return load_classifier(folder, engine, device)

    def predict(self, texts, batch_size: int = 256) -> list[dict]:
        """For each text: {"label": the most likely label, "probabilities": {label: p}}."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise ValueError("predict takes a list of texts")
        if not texts:
            raise ValueError("predict got an empty list of texts")
        ids = [self.encoder.token_ids(t) for t in texts]
        _, probs = predict_ids(self.engine, ids, batch_size=batch_size)
        return [{"label": self.labels[int(p.argmax())],
                 "probabilities": {label: float(q) for label, q in zip(self.labels, p)}} for p in probs]


def load_classifier(path, engine: str = "scratch", device: str = "auto") -> LoadedClassifier:
    """A trained classifier from a checkpoint folder, on either engine. Every setting is checked against the
    weights before the model is built (checkpoints.py)."""
    check_engine(engine)
    ckpt = load_task_checkpoint(path, "classify")
    config = ckpt.config
    eng = build_engine(engine, "TextClassifier", config["model"], dtype=config.get("dtype", "float32"),
                       device=device)
    eng.load_weights(ckpt.weights)
    eng.model.eval()  # as a loaded model is used: dropout off (training switches it back on)
    encoder = Encoder(PostTokenizer(**config["data"]["tokenizer"]), Vocabulary.from_dict(config["vocab"]),
                      config["data"]["max_length"])
    return LoadedClassifier(eng, encoder, config["labels"], config)


def evaluate_classifier(path, data: str | None = None, dataset: str | None = None, split: str | None = None,
                        text_column: str | None = None, label_column: str | None = None,
                        label_map: str | None = None, engine: str = "scratch", device: str = "auto",
                        confusion_png: str | None = None, all_labels: bool = False, progress: bool = False) -> dict:
    """Accuracy, per-class precision/recall/F1, macro and weighted F1 and the confusion matrix of a
    checkpoint on a labelled file or a dataset split (a JSON-ready dict; "notes" say what was chosen for you).

    dataset: its `split` (default test). data: a file, read with the checkpoint's columns and label map unless
    given; `split` "all" scores every row, "train"/"valid"/"test" the rows that part held in training (the file
    must be the one the model was trained on, checked by its SHA-256); the default is "test" for that file,
    "all" for any other. Labels the data lacks are left out, the model's probabilities renormalised over the
    labels present, unless `all_labels`. `progress`: a bar on stderr (on a terminal).
    """
    model = load_classifier(path, engine, device)
    if (dataset is None) == (data is None):
        raise ValueError("give either a labelled file (--data) or a dataset name (--dataset), not both")
    source = model.config["data"].get("source", {})
    notes = []
    if dataset is not None:
        split = split or "test"
        if split == "all":
            raise ValueError("--split all is for a --data file; a dataset has the splits train, valid, test")
        pairs = rename_labels(datasets.load_labelled(dataset, split), parse_label_map(label_map))
        where = f"{dataset} ({split})"
    else:
        text_column = text_column or source.get("text_column", "text")
        label_column = label_column or source.get("label_column", "label")
        mapping = parse_label_map(source.get("label_map") if label_map is None else label_map)
        pairs, split = rows_of_file(data, split, source, text_column, label_column, mapping, notes)
        where = f"{Path(data).name} ({'all rows' if split == 'all' else split})"
    report = score(model, pairs, where, model_name=str(path), all_labels=all_labels, progress=progress,
                   confusion_png=confusion_png, notes=notes)
    report["split"] = split
    return report


def rows_of_file(data, split, source: dict, text_column, label_column, mapping, notes: list):
    """(pairs, split): every row of the file, or the part `split` of the file the model was trained on."""
    record = source.get("split")
    same = record is not None and file_sha256(data) == record["sha256"]
    if split is None:
        split = "test" if same else "all"
        if same:
            notes.append(f"{data} is the file this model was trained on: scoring the {record['sizes']['test']} rows "
                         f"held out as its test part (--split all: every row, training rows included)")
    if split == "all":
        if same or (record is None and source.get("data") and Path(source["data"]).resolve() == Path(data).resolve()):
            notes.append(f"{data} holds the rows the model was trained on: scores on them say little about new "
                         f"texts" + (" (--split test: the held-out rows)" if same else ""))
        try:
            return rename_labels(read_labelled(data, text_column, label_column), mapping), split
        except ValueError as e:
            if "no column" in str(e) and (text_column, label_column) == (source.get("text_column"),
                                                                     source.get("label_column")):
                raise ValueError(f"{e} (the columns the model was trained on; --text-column and --label-column "
                                 f"name others)") from None
            raise
    if record is None:
        raise ValueError(f"--split {split} picks rows of the file the model was trained on, and this model was not "
                         f"split from one file ({source.get('dataset') or 'separate --valid/--test files'}); "
                         f"without --split (or with --split all) every row of {data} is scored")
    if not same:
        raise ValueError(f"{data} is not the file this model was trained on ({source.get('data')}: its SHA-256 "
                         f"differs), so --split {split} cannot pick its rows; --split all scores every row")
    made = split_file(data, source["text_column"], source["label_column"], parse_label_map(source.get("label_map")))
    return made.splits[split], split


def score(model: LoadedClassifier, pairs, where: str, model_name: str = "", all_labels: bool = False,
          progress: bool = False, confusion_png=None, notes: list | None = None) -> dict:
    """The report of `model` on (text, label) pairs; `where` names the data (and split) in the figure.

    Over the labels present in the data (the model's probabilities renormalised over them: p_c / sum of p over
    the present labels), unless `all_labels` or every label is present."""
    notes = [] if notes is None else notes
    present = {label for _, label in pairs}
    unknown = sorted(present - set(model.labels))
    if unknown:
        raise ValueError(f"the data has labels the model does not know: {unknown} (it knows {model.labels}; "
                         f"--label-map OLD=NEW,... renames them)")
    labels = model.labels if all_labels else [label for label in model.labels if label in present]
    ids, y, dropped = encode_pairs(model.encoder, pairs, labels)
    if not ids:
        raise ValueError(f"nothing to score in {where}: no texts with tokens")
    if len(labels) == len(model.labels):
        loss, probs = predict_ids(model.engine, ids, y, progress=progress)
    else:
        _, probs = predict_ids(model.engine, ids, progress=progress)
        probs = probs[:, [model.labels.index(label) for label in labels]].astype(np.float64)
        probs /= probs.sum(axis=1, keepdims=True)
        loss = float(-np.log(np.maximum(probs[np.arange(len(y)), y], 1e-300)).mean())
        missing = [label for label in model.labels if label not in present]
        notes.append(f"the data has {len(labels)} of the model's {len(model.labels)} labels (none of "
                     f"{', '.join(missing)}): scored over {', '.join(labels)}, the model's probabilities "
                     f"renormalised over them (--all-labels: over all {len(model.labels)})")
    report = report_for(y, probs.argmax(axis=1), labels, loss=loss, dropped=dropped)
    if len(labels) < len(model.labels):
        report["model_labels"] = list(model.labels)
    if notes:
        report["notes"] = notes
    if confusion_png:
        from ..plots import plot_confusion

        name = "/".join(Path(model_name).parts[-2:])   # run/best: a long path would not fit
        title = (f"{describe_model(model.config)} {name}\n{where}: accuracy {report['accuracy']:.3f}, "
                 f"macro-F1 {report['macro']['f1']:.3f}")
        report["confusion_png"] = str(plot_confusion(np.array(report["confusion"]), labels, confusion_png, title))
    return report


def describe_model(config: dict) -> str:
    """"BiGRU classifier" (from a checkpoint's config)."""
    m = config["model"]
    cell = {"lstm": "LSTM", "gru": "GRU"}.get(m.get("cell"), "RNN")
    return f"{'Bi' if m.get('bidirectional') else ''}{cell} classifier"


def report_for(y_true, y_pred, labels, loss=None, dropped=0) -> dict:
    report = metrics.classification_report(y_true, y_pred, labels)
    report["confusion"] = metrics.confusion_matrix(y_true, y_pred, len(labels)).tolist()
    report["labels"] = list(labels)
    if loss is not None:
        report["loss"] = loss
    if dropped:
        report["dropped_empty"] = dropped
    return report


def format_full_report(report: dict) -> str:
    """The report as text: the per-class table and the confusion matrix."""
    return (metrics.format_report(report) + "\n\nconfusion matrix (rows: true, columns: predicted)\n"
            + metrics.format_confusion(np.array(report["confusion"]), report["labels"]))

