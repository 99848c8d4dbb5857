"""`rnnkit explain`: the notebook's "Points to Ponder" answered by experiment, as a page with its figures.

    run_experiments(scale)        → Findings: every number the page states, measured on the scratch engine
    write_report(findings, out)   → out/index.html, out/index.md and the PNG figures beside them
    explain(out, scale="quick")   both

The experiments (each with the budget of its Scale, stated on the page):
    vanishing   ‖∂L/∂h_t‖ vs t at initialisation (rnnkit.diagnostics) on adding sequences (a Forecaster read at
                the last step, so ∂L/∂h_t reaches step t only through the recurrence), RNN (tanh) vs LSTM
                (forget bias 1) vs GRU, at each of `gradient_lengths`; and after training (the model of each
                cell trained at the longest T it solved, else the longest it was trained at)
    long        the adding problem (rnnkit.data.memory_tasks.adding; memoryless baseline MSE 1/6) and the copy
                task (memoryless baseline 10 log 8 / (T + 20)): each cell trained at each T for at most `steps`
                Adam updates, stopping as soon as the validation loss is below `success_fraction` × the
                baseline (checked every `check_every` updates): success. A cell that fails at a T is not tried
                at longer ones (`stop_after_failure`)
    exploding   a ReLU RNN whose W_hh is orthogonal × `radius` (spectral radius > 1), trained by plain SGD with
                and without clipping the gradient norm at `clip`: loss and gradient-norm curves
    inits       the ReLU RNN from PyTorch's default vs the identity W_hh (the IRNN, Le et al. 2015)
    bptt        a character LSTM language model on memory_tasks.echo_text (each line's second half repeats its
                first, `echo_width` + 1 characters back) trained on the same characters with each truncation
                length in `bptt`: validation loss against the truncation length
    embeddings  the sentiment classifier (rnnkit.tasks.classify) with one-hot inputs, a learned embedding and
                pretrained vectors from a file (rnnkit.data.count_vectors: PPMI + SVD on the unlabelled training
                texts, written in GloVe's format): test accuracy, macro-F1, trainable parameters, seconds
The runs are independent: they go to `workers` processes (one BLAS and scratch thread each), longest first.
The text of each answer is formatted from the measured numbers; nothing in it is a claim written in advance.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import html
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import memory_tasks
from ..diagnostics import diagnose
from ..engines import build_engine
from ..initialization import initialize_engine
from .memory import MODELS, model_kwargs

CELL_NAMES = {"rnn_tanh": "RNN (tanh)", "rnn_relu": "RNN (ReLU)", "lstm": "LSTM", "gru": "GRU"}
PROBLEM_NAMES = {"adding": "adding problem", "copy": "copy task"}
ARMS = {"one-hot": "one-hot inputs", "learned": "learned embedding", "pretrained": "pretrained vectors (file)"}


@dataclass(frozen=True)
class Scale:
    """How big the experiments are: `quick` (under 2 minutes on 2 cores), `tiny` (the tests), `full`."""
    gradient_lengths: tuple = (100,)      # T of the vanishing-gradient figures
    problems: tuple = ("adding", "copy")
    lengths: tuple = (10, 20, 40)         # T of the long-sequence experiment
    long_cells: tuple = ("rnn_tanh", "lstm", "gru")
    steps: int = 400                      # updates per run at most (batch `batch` each)
    check_every: int = 100                # validation every so many updates: a run stops once it succeeds
    stop_after_failure: bool = True       # a cell that fails at a T is not tried at longer ones
    batch: int = 32
    hidden: int = 32
    lr: float = 1e-2
    # the copy task's long-sequence runs (long_settings; benchmarks/README.md measured why): more units, an LSTM
    # forget gate that starts near 1 (σ(3) = 0.95: the state kept over the T + 10 steps from a symbol to its
    # recall), symbol embeddings from U(-1, 1) (the language model's U(-0.1, 0.1) barely moves the state)
    copy_hidden: int = 128
    copy_batch: int = 128
    copy_lr: float = 1e-2
    copy_forget_bias: float = 3.0
    copy_embedding_bound: float = 1.0
    copy_steps: int | None = None         # the copy task's `steps` (None: as steps)
    copy_lengths: tuple | None = None     # the copy task's T (None: as lengths); its updates cost more per step
    valid: int = 256                      # validation sequences
    success_fraction: float = 0.1         # success: validation loss < this × the memoryless baseline
    explode_length: int = 30
    explode_steps: int = 150
    radius: float = 1.6
    clip: float = 1.0
    init_length: int = 30
    init_steps: int = 300
    bptt: tuple = (5, 10, 25, 50)         # truncation lengths of the language-model experiment
    echo_width: int = 5                   # echo_text's dependency: width + 1 characters back
    echo_lines: int = 3000                # training lines (2 width + 2 characters each)
    bptt_epochs: int = 2
    bptt_hidden: int = 64
    sentiment: str = "airline-tweets"     # or "synthetic": generated posts (the tests, offline)
    sentiment_train: int | None = 3000    # training texts used (None: all)
    sentiment_epochs: int = 2
    sentiment_hidden: int = 32
    sentiment_vocab: int = 1000           # the same vocabulary for the three inputs (one-hot: its size)
    vector_dim: int = 50
    workers: int = 2
    seed: int = 0


SCALES = {"quick": Scale(bptt=(5, 25), echo_lines=2000, sentiment_train=2000, sentiment_vocab=500),
          "tiny": Scale(gradient_lengths=(100,), problems=("adding", "copy"), lengths=(10, 20),
                        long_cells=("rnn_tanh", "lstm"), steps=150, check_every=50, hidden=16, valid=128,
                        copy_hidden=12, copy_batch=32,
                        explode_steps=60, init_steps=80, explode_length=20, init_length=20, bptt=(5, 25),
                        echo_width=3, echo_lines=300, bptt_epochs=1, bptt_hidden=16, sentiment="synthetic",
                        sentiment_train=None, sentiment_epochs=2, sentiment_hidden=8, sentiment_vocab=200,
                        vector_dim=8),
          # sized for under 30 minutes on 2 cores (benchmarks/README.md: about 1,900 CPU seconds at most, the
          # LSTM's and the GRU's adding chains ~850 s each on the two workers): the long-sequence runs dominate (an
          # update at T = 1000 costs ~50 times one at T = 20), bounded by `steps` and by stopping each cell at its
          # first failure. 6000 updates: the LSTM needed 3250 at T = 200 (2000 were too few)
          "full": Scale(gradient_lengths=(100, 500), lengths=(10, 20, 50, 100, 200, 500, 1000), steps=6000,
                        copy_steps=3000, copy_lengths=(10, 20, 50), valid=512, explode_steps=300, init_steps=1500, bptt=(5, 10, 25, 50, 100),
                        echo_lines=8000,
                        bptt_epochs=3, sentiment_train=None, sentiment_epochs=2, sentiment_hidden=32,
                        sentiment_vocab=1000)}


@dataclass
class Findings:
    """What the experiments measured (arrays as NumPy; see the module's docstring)."""
    scale: Scale
    gradient_norms: dict = field(default_factory=dict)     # T → cell → (T,) ‖∂L/∂h_t‖ at initialisation
    long: dict = field(default_factory=dict)               # problem → cell → {T: validation loss / baseline}
    updates: dict = field(default_factory=dict)            # problem → cell → {T: updates to success, or None}
    trained: dict = field(default_factory=dict)            # problem → cell → {T: Diagnosis after training}
    after: dict = field(default_factory=dict)              # T → cell → (T,) ‖∂L/∂h_t‖ of the trained models
    exploding: dict = field(default_factory=dict)          # "clipped"/"unclipped" → {"loss", "grad_norm", "valid"}
    inits: dict = field(default_factory=dict)              # "pytorch"/"identity" → {"loss", "grad_norm", "valid"}
    bptt: dict = field(default_factory=dict)               # truncation → {"loss", "updates", "seconds"}
    embeddings: dict = field(default_factory=dict)         # arm → {"accuracy", "macro_f1", "parameters", ...}
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)            # experiment → seconds of its runs (all workers)
    cpu: dict = field(default_factory=dict)                # experiment → CPU seconds of its runs
    name: str = "custom"                                   # the scale's name in SCALES
    vectors: str | None = None                             # the pretrained arm's file (None: counted vectors)

    @property
    def ratios(self) -> dict:
        """cell → ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ at initialisation, T the first of the gradient lengths."""
        return {cell: float(n[0] / n[-1]) for cell, n in self.gradient_norms[self.scale.gradient_lengths[0]].items()}

    @property
    def baseline(self) -> float:
        return memory_tasks.baseline("adding", 2)


def _batch(n: int, length: int, seed, dtype: str, problem: str = "adding") -> dict:
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v
            for k, v in memory_tasks.generate(problem, n, length, seed).items()}


def _engine(cell: str, s: Scale, *, problem="adding", init="pytorch", forget_bias=None, optimizer="adam", lr=1e-2,
            clip=1.0, dtype="float32", radius=None, hidden=None):
    """A scratch-engine model for a memory problem (`hidden` units, default s.hidden); `radius`: W_hh scaled to
    that spectral radius."""
    eng = build_engine("scratch", MODELS[problem], model_kwargs(problem, cell, hidden or s.hidden, 1, 16),
                       optimizer=optimizer, lr=lr, clip=clip, dtype=dtype, seed=s.seed)
    initialize_engine(eng, cell, init, forget_bias, seed=s.seed)
    if radius is not None:
        weights = eng.weights()
        name = next(n for n in weights if n.endswith("weight_hh_l0"))
        w = np.asarray(weights[name], np.float64)
        weights[name] = (w * radius / np.max(np.abs(np.linalg.eigvals(w)))).astype(dtype)
        eng.load_weights(weights)
    return eng


def _forget_bias(cell: str, value: float = 1.0):
    return value if cell == "lstm" else None


def long_settings(s: Scale, problem: str) -> dict:
    """How the long-sequence runs of `problem` train: {"hidden", "batch", "lr", "forget_bias" (the LSTM's)}.
    The adding problem: s.hidden, s.batch, s.lr, forget bias 1. The copy task: s.copy_* (its 10 symbols must
    all be held for T + 10 steps: more units, and a forget gate that starts closer to 1)."""
    if problem == "copy":
        return {"hidden": s.copy_hidden, "batch": s.copy_batch, "lr": s.copy_lr, "forget_bias": s.copy_forget_bias,
                "steps": s.copy_steps or s.steps, "embedding_bound": s.copy_embedding_bound,
                "lengths": s.copy_lengths or s.lengths}
    return {"hidden": s.hidden, "batch": s.batch, "lr": s.lr, "forget_bias": 1.0, "steps": s.steps,
            "lengths": s.lengths}


LM_EMBEDDING_BOUND = 0.1    # a LanguageModel's embedding starts U(-0.1, 0.1) (rnnkit/scratch/models.py)


def _long_engine(problem: str, cell: str, s: Scale):
    """A fresh model for one long-sequence run of `problem` (long_settings); the copy task's embedding scaled
    from U(-0.1, 0.1) to U(-bound, bound)."""
    run = long_settings(s, problem)
    eng = _engine(cell, s, problem=problem, forget_bias=_forget_bias(cell, run["forget_bias"]), lr=run["lr"],
                  hidden=run["hidden"])
    if "embedding_bound" in run:
        weights = eng.weights()
        scale = np.float32(run["embedding_bound"] / LM_EMBEDDING_BOUND)
        weights["embedding.weight"] = weights["embedding.weight"] * scale
        eng.load_weights(weights)
    return eng


def _train(eng, s: Scale, length: int, steps: int) -> dict:
    """`steps` updates on new adding batches; the loss and gradient norm (before clipping) of each, and the
    validation MSE at the end (the same `s.valid` sequences for every run of a length)."""
    losses, norms = [], []
    with np.errstate(over="ignore", invalid="ignore"):      # a diverging run overflows: its loss says so
        for k in range(steps):
            loss, norm, _ = eng.train_step(_batch(s.batch, length, [s.seed, 0, k], "float32"))
            losses.append(loss)
            norms.append(norm)
        total, count, _ = eng.eval_loss(_batch(s.valid, length, [s.seed, 1], "float32"))
    return {"loss": np.asarray(losses, np.float64), "grad_norm": np.asarray(norms, np.float64),
            "valid": float(total / count)}


def _until_solved(eng, s: Scale, problem: str, length: int) -> dict:
    """Up to long_settings' steps of updates on new batches of `problem` at `length`, validating every
    s.check_every: stops at
    the first validation below s.success_fraction × the baseline. {"ratio": last validation loss / baseline,
    "updates": updates to success or None}."""
    valid = _batch(s.valid, length, [s.seed, 1], "float32", problem)
    base = memory_tasks.baseline(problem, length)
    batch, steps = long_settings(s, problem)["batch"], long_settings(s, problem)["steps"]
    ratio = float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            eng.train_step(_batch(batch, length, [s.seed, 0, k], "float32", problem))
            if (k + 1) % s.check_every == 0 or k + 1 == steps:
                total, count, _ = eng.eval_loss(valid)
                ratio = float(total / count) / base
                if ratio < s.success_fraction:
                    return {"ratio": ratio, "updates": k + 1}
    return {"ratio": ratio, "updates": None}


def long_chain(problem: str, cell: str, s: Scale) -> dict:
    """One cell on one problem at each T of its lengths (long_settings) in turn (see _until_solved), until it
    fails if s.stop_after_failure: {T: {"ratio", "updates", "weights", "seconds"}}."""
    out = {}
    for length in long_settings(s, problem)["lengths"]:
        start = time.perf_counter()
        eng = _long_engine(problem, cell, s)
        run = _until_solved(eng, s, problem, length)
        out[length] = {**run, "weights": eng.weights(), "seconds": time.perf_counter() - start}
        if s.stop_after_failure and run["updates"] is None:
            break
    return out


def vanishing(s: Scale, length: int) -> dict:
    """cell → (T,) ‖∂L/∂h_t‖ at initialisation, in float64, on 16 adding sequences of `length`."""
    batch = _batch(16, length, [s.seed, 2], "float64")
    return {cell: diagnose(_engine(cell, s, forget_bias=_forget_bias(cell), dtype="float64"), batch).gradient_norms[0]
            for cell in ("rnn_tanh", "lstm", "gru")}


def exploding_run(name: str, s: Scale) -> dict:
    """A ReLU RNN with W_hh = orthogonal × s.radius, plain SGD (lr 0.1), unclipped or clipped at s.clip."""
    clip = None if name == "unclipped" else s.clip
    return _train(_engine("rnn_relu", s, init="orthogonal", optimizer="sgd", lr=1e-1, clip=clip, radius=s.radius),
                  s, s.explode_length, s.explode_steps)


def init_run(init: str, s: Scale) -> dict:
    """The ReLU RNN from `init` (pytorch, identity), Adam lr 1e-3, clip 1."""
    return _train(_engine("rnn_relu", s, init=init, lr=1e-3), s, s.init_length, s.init_steps)


def bptt_run(truncation: int, s: Scale) -> dict:
    """A 1-layer character LSTM (s.bptt_hidden units, embedding 16, 8 streams, Adam lr 1e-2, clip 1) on
    echo_text for s.bptt_epochs epochs with windows of `truncation` steps: {"loss": validation nats/char,
    "updates", "seconds"}."""
    from .lm import train_lm

    with tempfile.TemporaryDirectory() as tmp:
        train, valid = Path(tmp, "train.txt"), Path(tmp, "valid.txt")
        train.write_text(memory_tasks.echo_text(s.echo_lines, s.echo_width, [s.seed, 3]))
        valid.write_text(memory_tasks.echo_text(max(50, s.echo_lines // 10), s.echo_width, [s.seed, 4]))
        start = time.perf_counter()
        result = train_lm(data=str(train), valid=str(valid), level="char", bptt=truncation, epochs=s.bptt_epochs,
                          batch_size=8, hidden=s.bptt_hidden, layers=1, embedding=16, dropout=0.0, lr=1e-2,
                          seed=s.seed, out=str(Path(tmp, "run")), progress=False, plot=False, verbose=False,
                          log=lambda line: None)
        return {"loss": float(result.last_metrics["loss"]), "updates": int(result.state.step),
                "seconds": time.perf_counter() - start}


SYNTHETIC_WORDS = {"positive": ("great", "thanks", "love", "awesome", "best"),
                   "negative": ("delayed", "lost", "worst", "rude", "cancelled"),
                   "neutral": ("when", "which", "flight", "gate", "tomorrow")}
SYNTHETIC_FILLERS = ("the", "my", "@airline", "today", "again", "is", "was", "a", "to", "for")


def synthetic_posts(n: int, seed) -> list[tuple[str, str]]:
    """n generated (text, label) posts: 3-8 filler words and 1-2 words of the label's list (the tests' data)."""
    rng = np.random.default_rng(seed)
    labels = sorted(SYNTHETIC_WORDS)
    rows = []
    for _ in range(n):
        label = labels[rng.integers(len(labels))]
        words = list(rng.choice(SYNTHETIC_FILLERS, rng.integers(3, 9))) + \
            list(rng.choice(SYNTHETIC_WORDS[label], rng.integers(1, 3)))
        rows.append((" ".join(str(w) for w in rng.permutation(words)), label))
    return rows


def _sentiment_splits(s: Scale) -> dict:
    """split → (text, label) pairs: airline-tweets (its first s.sentiment_train training texts) or generated."""
    if s.sentiment == "synthetic":
        return {split: synthetic_posts(n, [s.seed, 5, k]) for k, (split, n) in
                enumerate((("train", 600), ("valid", 150), ("test", 150)))}
    from ..data import datasets

    splits = {split: datasets.load_labelled(s.sentiment, split) for split in ("train", "valid", "test")}
    splits["train"] = splits["train"][: s.sentiment_train]
    return splits


def _write_pairs(path: Path, pairs) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("text", "label"))
        writer.writerows(pairs)
    return str(path)


def embedding_run(arm: str, s: Scale, vectors: str | None = None) -> dict:
    """The sentiment classifier (unidirectional LSTM of s.sentiment_hidden, last-state pooling, Adam lr 2e-3,
    s.sentiment_epochs epochs, vocabulary s.sentiment_vocab) with `arm`'s inputs (ARMS), scored on the test
    split: {"accuracy", "macro_f1", "parameters" (trainable), "seconds", "dimensions"}.
    pretrained: `vectors` (a GloVe-format file), or vectors counted on the training texts (count_vectors)."""
    from ..checkpoint import load_checkpoint
    from ..data.count_vectors import count_vectors, write_vectors
    from ..data.posts import PostTokenizer
    from .classify import train_classifier

    splits = _sentiment_splits(s)
    with tempfile.TemporaryDirectory() as tmp:
        files = {split: _write_pairs(Path(tmp, f"{split}.csv"), pairs) for split, pairs in splits.items()}
        options = {}
        if arm == "one-hot":
            options["one_hot"] = True
        elif arm == "pretrained":
            if vectors is None:
                tokenizer = PostTokenizer()
                every_text = _sentiment_splits(dataclasses.replace(s, sentiment_train=None))["train"]
                words, matrix = count_vectors([tokenizer.tokenize(t) for t, _ in every_text], dim=s.vector_dim,
                                              max_words=min(5000, max(s.sentiment_vocab, s.vector_dim + 1) * 2),
                                              seed=s.seed)
                vectors = str(Path(tmp, "vectors.txt"))
                write_vectors(vectors, words, matrix)
            options["embeddings"] = vectors
        else:
            options["embedding"] = s.vector_dim
        start = time.perf_counter()
        result = train_classifier(data=files["train"], valid=files["valid"], test=files["test"], cell="lstm",
                                  hidden=s.sentiment_hidden, bidirectional=False, pooling="last", dropout=0.0,
                                  max_vocab=s.sentiment_vocab, epochs=s.sentiment_epochs, batch_size=32,
                                  embedding_init_std=0.1, seed=s.seed, out=str(Path(tmp, "run")), progress=False,
                                  plot=False, verbose=False, **options)
        seconds = time.perf_counter() - start
        weights = load_checkpoint(result.best).weights
    frozen = {"embedding.weight"} if arm == "one-hot" else set()
    return {"accuracy": float(result.test["accuracy"]), "macro_f1": float(result.test["macro"]["f1"]),
            "parameters": int(sum(np.asarray(w).size for n, w in weights.items() if n not in frozen)),
            "dimensions": int(np.asarray(weights["embedding.weight"]).shape[1]), "seconds": seconds}


@contextlib.contextmanager
def _single_threaded_children():
    """Worker processes start with one BLAS/OpenMP thread and one scratch-LSTM thread each (their models are
    small; two workers already fill two cores). The parent's environment is restored afterwards."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RNNKIT_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _timed(fn, *args):
    """(fn(*args), wall seconds, CPU seconds of this process: what the run costs whatever else the machine runs)."""
    start, cpu = time.perf_counter(), time.process_time()
    return fn(*args), time.perf_counter() - start, time.process_time() - cpu


def _run_all(jobs: dict, workers: int) -> dict:
    """key → fn(*args) for jobs {key: (fn, args)}, in `workers` spawned processes (in order: the longest
    first), or here with workers <= 1. Each result comes with its seconds: key → (result, wall, CPU seconds)."""
    if workers <= 1:
        return {key: _timed(fn, *args) for key, (fn, args) in jobs.items()}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _single_threaded_children(), ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) \
            as pool:
        futures = {key: pool.submit(_timed, fn, *args) for key, (fn, args) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def run_experiments(scale: str | Scale = "quick", vectors: str | None = None) -> Findings:
    """Every experiment of the report at `scale` (a name in SCALES or a Scale); `vectors`: a GloVe-format file
    for the pretrained arm (default: vectors counted on the training texts)."""
    name = scale if isinstance(scale, str) else "custom"
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        scale = SCALES[scale]
    s = scale
    start = time.perf_counter()
    jobs = {("long", p, c): (long_chain, (p, c, s)) for c in s.long_cells for p in s.problems}
    jobs.update({("embeddings", arm): (embedding_run, (arm, s, vectors)) for arm in ARMS})
    jobs.update({("bptt", b): (bptt_run, (b, s)) for b in sorted(s.bptt, reverse=True)})
    jobs.update({("exploding", n): (exploding_run, (n, s)) for n in ("unclipped", "clipped")})
    jobs.update({("inits", i): (init_run, (i, s)) for i in ("pytorch", "identity")})
    done = _run_all(jobs, s.workers)
    found = Findings(scale=s, name=name, vectors=vectors)
    for (kind, *key), (result, seconds, cpu) in done.items():
        found.timings[kind] = found.timings.get(kind, 0.0) + seconds
        found.cpu[kind] = found.cpu.get(kind, 0.0) + cpu
        if kind == "long":
            problem, cell = key
            found.long.setdefault(problem, {})[cell] = {t: r["ratio"] for t, r in result.items()}
            found.updates.setdefault(problem, {})[cell] = {t: r["updates"] for t, r in result.items()}
            found.trained.setdefault(problem, {})[cell] = {
                t: diagnose(_loaded(problem, cell, s, r["weights"]), _batch(16, t, [s.seed, 1], "float32", problem))
                for t, r in result.items()}
            if problem == "adding":
                chosen = trained_at(found, cell)
                for length in s.gradient_lengths:
                    eng = _loaded(problem, cell, s, result[chosen]["weights"])
                    found.after.setdefault(length, {})[cell] = diagnose(
                        eng, _batch(16, length, [s.seed, 1], "float32")).gradient_norms[0]
        else:
            getattr(found, kind)[key[0]] = result
    found.gradient_norms, found.timings["vanishing"], found.cpu["vanishing"] = _timed(
        lambda: {length: vanishing(s, length) for length in s.gradient_lengths})
    found.seconds = time.perf_counter() - start
    return found


def _loaded(problem: str, cell: str, s: Scale, weights: dict):
    eng = _long_engine(problem, cell, s)
    eng.load_weights(weights)
    return eng


# ------------------------------------------------------------------------------------------------ the page

@dataclass
class Section:
    """One question answered: paragraphs of text, an optional table (header, rows), figures (file, caption)."""
    question: str
    paragraphs: list
    table: tuple | None = None
    figures: list = field(default_factory=list)


def _longest(found: Findings, problem: str, cell: str) -> str:
    """How far a cell got: "succeeds up to T = 40" or "succeeds at none of the lengths tried"."""
    solved = [t for t, n in sorted(found.updates[problem][cell].items()) if n is not None]
    return f"succeeds up to T = {solved[-1]}" if solved else "succeeds at none of the lengths tried"


def _diverged(run: dict) -> int | None:
    """The first update (1-based) whose loss or gradient norm is not finite, or None."""
    bad = np.nonzero(~(np.isfinite(run["loss"]) & np.isfinite(run["grad_norm"])))[0]
    return int(bad[0]) + 1 if len(bad) else None


def _ending(run: dict, baseline: float) -> str:
    step = _diverged(run)
    if step is not None:
        return f"its loss became non-finite at update {step} and never recovered (validation MSE {run['valid']:.3g})"
    return f"it ends at validation MSE {run['valid']:.3g} ({run['valid'] / baseline:.2f} × the baseline)"


def _gated(found: Findings) -> list[str]:
    return [cell for cell in found.trained.get("adding", {}) if cell in ("lstm", "gru")]


def after_training(found: Findings, length: int | None = None) -> dict:
    """cell → (T,) ‖∂L/∂h_t‖ of the model trained on the adding problem at trained_at(found, cell), on 16
    validation sequences of `length` (default: the first of the gradient lengths)."""
    return found.after[length or found.scale.gradient_lengths[0]]


def trained_at(found: Findings, cell: str) -> int:
    """The T of `cell`'s adding-problem model measured after training: the longest it solved, else the
    longest it was trained at."""
    solved = [t for t, n in found.updates["adding"][cell].items() if n is not None]
    return max(solved) if solved else max(found.long["adding"][cell])


def gates_length(found: Findings, cell: str) -> int:
    """The T whose trained model's gates the page shows: the longest the cell solved, else the shortest tried."""
    solved = [t for t, n in sorted(found.updates["adding"][cell].items()) if n is not None]
    return solved[-1] if solved else min(found.long["adding"][cell])


def _gates_text(found: Findings, cell: str) -> str:
    length = gates_length(found, cell)
    stats = found.trained["adding"][cell][length].gates[0]
    return (f"The {CELL_NAMES[cell]} trained at T = {length} (validation MSE / baseline "
            f"{found.long['adding'][cell][length]:.3f}), on 16 validation sequences: "
            + ", ".join(f"{gate} gate mean {v['mean']:.2f} ({100 * v['saturated']:.0f}% saturated)"
                        for gate, v in stats.items()) + " (saturated: below 0.05 or above 0.95).")


def _cell_entry(found: Findings, problem: str, cell: str, length: int) -> str:
    """A long-sequence table's entry: loss / baseline, ✓ and the updates it took, or — when not tried."""
    ratio = found.long[problem][cell].get(length)
    if ratio is None:
        return "—"
    updates = found.updates[problem][cell][length]
    return f"{ratio:.3f}" + (f" ✓ ({updates})" if updates is not None else "")


def _vanishing_section(found: Findings) -> Section:
    from ..diagnostics import memory_horizon

    s = found.scale
    first = s.gradient_lengths[0]
    r = found.ratios
    rnn, lstm, gru = r["rnn_tanh"], r["lstm"], r["gru"]
    compare = "smaller" if rnn < lstm else "larger"
    factor = max(rnn, lstm) / min(rnn, lstm) if min(rnn, lstm) > 0 else float("inf")
    text = [
        f"At initialisation, on 16 adding sequences of T = {first} steps read at the last step, "
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ is {rnn:.2g} for the vanilla RNN, {lstm:.2g} for the LSTM (forget bias 1) and "
        f"{gru:.2g} for the GRU (PyTorch's default initialisation): the error signal reaching step 1 of the RNN is "
        f"{factor:.2g} times {compare} than the LSTM's."]
    header = ("cell",) + tuple(h for t in s.gradient_lengths for h in (
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖, T = {t}", f"steps above 1e-3 of ‖∂L/∂h_T‖, T = {t}"))
    rows = [(CELL_NAMES[c],) + tuple(v for t in s.gradient_lengths for v in (
        f"{found.gradient_norms[t][c][0] / found.gradient_norms[t][c][-1]:.2g}",
        str(memory_horizon(found.gradient_norms[t][c])))) for c in ("rnn_tanh", "lstm", "gru")]
    horizon = {c: memory_horizon(n) for c, n in found.gradient_norms[first].items()}
    text.append(f"Counting back from the last step, the gradient stays above 1e-3 of ‖∂L/∂h_T‖ for "
                f"{horizon['rnn_tanh']} steps in the RNN, {horizon['lstm']} in the LSTM and {horizon['gru']} in the "
                "GRU: beyond that, an update barely sees what happened earlier.")
    for t in s.gradient_lengths:
        text.append(
            f"After training (each cell's model trained on the adding problem at the longest T it solved, else "
            "the longest it was trained at: "
            + ", ".join(f"{CELL_NAMES[c]} T = {trained_at(found, c)}" for c in found.after[t])
            + f"), on sequences of T = {t} the ratio is "
            + ", ".join(f"{n[0] / n[-1]:.2g} for the {CELL_NAMES[c]}" for c, n in found.after[t].items()) + ".")
    figures = [(f"gradient_through_time_T{t}.png", f"‖∂L/∂h_t‖ against t at initialisation, T = {t}, log scale")
               for t in s.gradient_lengths]
    figures += [(f"gradient_after_training_T{t}.png", f"‖∂L/∂h_t‖ of the trained models on T = {t}")
                for t in s.gradient_lengths]
    return Section("What is the vanishing gradient problem?", text, (header, rows), figures)


def _long_section(found: Findings) -> Section:
    s = found.scale
    text = [
        "Each model ("
        + "; ".join(f"{PROBLEM_NAMES[p]}: hidden {r['hidden']}, at most {r['steps']} updates of {r['batch']} new "
                    f"sequences, lr {r['lr']:g}, forget bias {r['forget_bias']:g} for the LSTM"
                    + (f", embedding U(-{r['embedding_bound']:g}, {r['embedding_bound']:g})"
                       if "embedding_bound" in r else "")
                    + (f", T up to {max(r['lengths'])}" if r["lengths"] != s.lengths else "")
                    for p, r in ((p, long_settings(s, p)) for p in s.problems))
        + f") trained by Adam (gradient norm clipped at 1), validated on {s.valid} "
        f"sequences every {s.check_every} updates; success is a validation loss below {s.success_fraction:g} × the memoryless "
        "baseline (adding: MSE 1/6; copy: 10 log 8 / (T + 20) nats per step), and a run stops at its first "
        "success." + (" A cell that fails at a T is not tried at longer ones (—)." if s.stop_after_failure else "")
        + " Tables: validation loss / baseline, ✓ (updates to success)."]
    for problem in s.problems:
        text.append(f"On the {PROBLEM_NAMES[problem]}, within this budget "
                    + "; ".join(f"the {CELL_NAMES[c]} {_longest(found, problem, c)}" for c in s.long_cells)
                    + f" (T tried: {', '.join(map(str, long_settings(s, problem)['lengths']))}).")
    header = ("problem", "cell") + tuple(f"T = {t}" for t in s.lengths)
    rows = [(PROBLEM_NAMES[p], CELL_NAMES[c]) + tuple(_cell_entry(found, p, c, t) for t in s.lengths)
            for p in s.problems for c in s.long_cells]
    return Section("How do RNNs handle long sequences?", text, (header, rows),
                   [("long_sequences.png", "validation loss / baseline against T, per problem")])


def _bptt_section(found: Findings) -> Section:
    s = found.scale
    levels = memory_tasks.echo_losses(s.echo_width)
    text = ["Backpropagation through time is the chain rule over the unrolled loop: ∂L/∂h_t = ∂L/∂y_t + "
            "W_hhᵀ (∂L/∂h_{t+1} ⊙ f′) for a vanilla RNN. Every gradient on this page is the scratch engine's "
            "hand-written BPTT (tested against PyTorch and finite differences); examples/worked_step.py works one "
            "step by hand."]
    if found.bptt:
        best = min(found.bptt, key=lambda b: found.bptt[b]["loss"])
        text.append(
            f"Truncated BPTT cuts the unrolled loop into windows of k steps: the state flows on, the gradient stops "
            f"at the window's start. A 1-layer character LSTM ({s.bptt_hidden} units) learned a text whose lines "
            f"repeat their first half ({s.echo_width} letters of a-h, \"|\", the same letters: the echo is "
            f"{s.echo_width + 1} characters back), {s.bptt_epochs} epochs over the same "
            f"{s.echo_lines * (2 * s.echo_width + 2):,} characters for each k. A model that remembers scores "
            f"{levels['remembers']:.3f} nats per character, one that does not {levels['memoryless']:.3f}. "
            "Validation loss: " + ", ".join(f"k = {b}: {r['loss']:.3f}" for b, r in sorted(found.bptt.items()))
            + f"; the best is k = {best}. Shorter windows make more (cheaper) updates of the same characters but "
            f"no gradient across more than k − 1 steps: below k = {s.echo_width + 2} no window holds both a letter "
            "and its echo.")
        table = (("truncation k", "validation loss (nats/char)", "loss / memoryless", "updates", "seconds"),
                 [(str(b), f"{r['loss']:.3f}", f"{r['loss'] / levels['memoryless']:.3f}", str(r["updates"]),
                   f"{r['seconds']:.0f}") for b, r in sorted(found.bptt.items())])
        return Section("What is backpropagation through time (BPTT)?", text, table,
                       [("bptt.png", "validation loss against the truncation length")])
    return Section("What is backpropagation through time (BPTT)?", text)


def _embeddings_section(found: Findings) -> Section:
    s = found.scale
    e = found.embeddings
    source = ("airline-tweets (negative / neutral / positive)" if s.sentiment == "airline-tweets"
              else f"{s.sentiment} posts")
    train = "all" if s.sentiment_train is None else f"the first {s.sentiment_train:,}"
    text = [f"The sentiment classifier on {source}, {train} training texts, scored on the test split: a "
            f"unidirectional LSTM of {s.sentiment_hidden} units read to the last word, {s.sentiment_epochs} epochs, "
            f"the same vocabulary of at most {s.sentiment_vocab:,} words for the three inputs. One-hot inputs are "
            f"the embedding fixed to the identity (`--one-hot`: {e['one-hot']['dimensions']:,} dimensions, one per "
            f"word); the learned embedding has {e['learned']['dimensions']} dimensions, from N(0, 0.1²); the "
            f"pretrained vectors ({e['pretrained']['dimensions']} dimensions) come from a GloVe-format file "
            "(`--embeddings FILE`), "
            + (f"here {Path(found.vectors).name}, " if found.vectors else
               "here counted on the unlabelled training texts by rnnkit.data.count_vectors (PPMI + SVD), ")
            + "and trained further."]
    best = max(e, key=lambda a: e[a]["macro_f1"])
    text.append("Test macro-F1: " + ", ".join(f"{ARMS[a]} {r['macro_f1']:.3f}" for a, r in e.items())
                + f"; the best is the {ARMS[best]}. One-hot inputs make the first layer's input weights as wide as "
                f"the vocabulary ({e['one-hot']['parameters']:,} trainable parameters against "
                f"{e['learned']['parameters']:,} with the learned embedding) and give no two words anything in "
                "common; an embedding lets words used alike share what the model learns about them.")
    table = (("inputs", "accuracy", "macro-F1", "trainable parameters", "input dimensions", "seconds"),
             [(ARMS[a], f"{r['accuracy']:.3f}", f"{r['macro_f1']:.3f}", f"{r['parameters']:,}",
               f"{r['dimensions']:,}", f"{r['seconds']:.0f}") for a, r in e.items()])
    return Section("Why embeddings instead of one-hot vectors?", text, table,
                   [("embeddings.png", "test accuracy and macro-F1 per kind of input")])


def sections(found: Findings) -> list[Section]:
    """The six answers, their text formatted from `found`."""
    s, base = found.scale, found.baseline
    r = found.ratios
    first = s.gradient_lengths[0]
    gated = [
        f"The gates keep a path along which the gradient is multiplied by the forget (LSTM) or 1 − update (GRU) "
        f"gate instead of W_hh and tanh′: measured above, ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ is {r['lstm']:.2g} (LSTM) and "
        f"{r['gru']:.2g} (GRU) against {r['rnn_tanh']:.2g} (RNN) at T = {first}, and on the adding problem "
        + "; ".join(f"the {CELL_NAMES[c]} {_longest(found, 'adding', c)}" for c in s.long_cells)
        + "."] + [_gates_text(found, cell) for cell in _gated(found)]

    ex = found.exploding
    exploding_text = [
        f"A ReLU RNN with W_hh = orthogonal × {s.radius:g} (spectral radius {s.radius:g}), trained by plain SGD "
        f"(lr 0.1) on the adding problem at T = {s.explode_length}: the first update's gradient norm is "
        f"{ex['unclipped']['grad_norm'][0]:.3g}. Without clipping {_ending(ex['unclipped'], base)}; with the "
        f"gradient norm clipped at {s.clip:g}, {_ending(ex['clipped'], base)}."]
    ini = found.inits
    better = "lower" if ini["identity"]["valid"] < ini["pytorch"]["valid"] else "higher"
    init_text = [
        f"The ReLU RNN on the adding problem at T = {s.init_length} ({s.init_steps} Adam updates, lr 1e-3, "
        f"clipping at 1): from the identity W_hh (IRNN, Le et al. 2015) {_ending(ini['identity'], base)}; from "
        f"PyTorch's default {_ending(ini['pytorch'], base)} — the identity start ends {better}."]
    return [
        _vanishing_section(found),
        _long_section(found),
        Section("How do LSTMs and GRUs differ from vanilla RNNs?", gated, None,
                [(f"gates_{cell}.png", f"{CELL_NAMES[cell]}: gate activations after training at T = "
                  f"{gates_length(found, cell)}") for cell in _gated(found)]),
        _bptt_section(found),
        Section("What fixes exploding gradients? (and initialisations compared)", exploding_text + init_text, None,
                [("exploding.png", "loss and gradient norm, with and without clipping"),
                 ("initialisations.png", "ReLU RNN: identity vs default initialisation")]),
        _embeddings_section(found)]


def figures(found: Findings) -> dict[str, bytes]:
    """File name → PNG bytes of every figure the sections link."""
    from . import explain_figures as fig

    s = found.scale
    out = {}
    for t in s.gradient_lengths:
        out[f"gradient_through_time_T{t}.png"] = fig.gradient_png(
            {CELL_NAMES[c] + (" (forget bias 1)" if c == "lstm" else ""): n
             for c, n in found.gradient_norms[t].items()}, t)
        out[f"gradient_after_training_T{t}.png"] = fig.gradient_png(
            {f"{CELL_NAMES[c]} (trained at T = {trained_at(found, c)})": n for c, n in found.after[t].items()}, t,
            f"Gradient through time after training, adding problem, T = {t}")
    out["long_sequences.png"] = fig.long_png(
        {PROBLEM_NAMES[p]: {CELL_NAMES[c]: v for c, v in found.long[p].items()} for p in s.problems},
        s.success_fraction, {PROBLEM_NAMES[p]: long_settings(s, p)["steps"] for p in s.problems})
    for cell in _gated(found):
        out[f"gates_{cell}.png"] = fig.gates_png(
            found.trained["adding"][cell][gates_length(found, cell)].gate_activations,
            f"{CELL_NAMES[cell]} trained at T = {gates_length(found, cell)}")
    out["exploding.png"] = fig.curves_png(found.exploding, f"ReLU RNN, spectral radius {s.radius:g}, SGD", s.clip)
    out["initialisations.png"] = fig.curves_png({f"{k} init": v for k, v in found.inits.items()},
                                                "ReLU RNN, identity vs default init", 1.0)
    if found.bptt:
        out["bptt.png"] = fig.bptt_png({b: r["loss"] for b, r in found.bptt.items()},
                                       memory_tasks.echo_losses(s.echo_width))
    out["embeddings.png"] = fig.embeddings_png({ARMS[a]: r for a, r in found.embeddings.items()})
    return out


TITLE = "Points to Ponder, answered by experiment"


def _intro(found: Findings) -> str:
    spent = ", ".join(f"{kind} {found.timings[kind]:.0f} s ({found.cpu.get(kind, 0.0):.0f} s of CPU)"
                      for kind in sorted(found.timings, key=lambda k: -found.timings[k]))
    return (f"Measured by `rnnkit explain` on the scratch engine in {found.seconds:.0f} s of wall time with "
            f"{found.scale.workers} worker process(es), one thread each (scale {found.name}, seed "
            f"{found.scale.seed}; the runs of each experiment took {spent}). Every number below comes from that "
            "run.")


def markdown(found: Findings, parts: list[Section]) -> str:
    lines = [f"# {TITLE}", "", _intro(found), ""]
    for part in parts:
        lines += [f"## {part.question}", ""]
        for text in part.paragraphs:
            lines += [text, ""]
        if part.table:
            header, rows = part.table
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        for file, caption in part.figures:
            lines += [f"![{caption}]({file})", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Markdown's `code` as HTML, the rest escaped."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def page(found: Findings, parts: list[Section]) -> str:
    e = html.escape
    body = [f"<h1>{e(TITLE)}</h1>", f"<p>{_inline(_intro(found))}</p>"]
    for part in parts:
        body.append(f"<h2>{e(part.question)}</h2>")
        body += [f"<p>{_inline(text)}</p>" for text in part.paragraphs]
        if part.table:
            header, rows = part.table
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
        body += [f'<figure><img src="{e(file)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
                 for file, caption in part.figures]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .6em}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(TITLE)}</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(found: Findings, out) -> list[Path]:
    """out/index.html, out/index.md and the figures (PNG) they link; returns the paths written."""
    from ..checkpoint.atomic import write_bytes_atomic, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = sections(found)
    written = [write_bytes_atomic(out / name, data) for name, data in figures(found).items()]
    written.append(write_text_atomic(out / "index.md", markdown(found, parts)))
    written.append(write_text_atomic(out / "index.html", page(found, parts)))
    return written


def explain(out="report", scale: str | Scale = "quick", vectors: str | None = None,
            workers: int | None = None) -> Findings:
    """Run the experiments at `scale` and write the report into `out`; return what was measured. `vectors`: a
    GloVe-format file for the pretrained-embedding run; `workers`: processes (default: the scale's). A missing
    matplotlib, a missing `vectors` file or an `out` that cannot be a folder is a ValueError/OSError before
    anything runs."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("rnnkit explain draws its figures with matplotlib: pip install 'rnnkit[plots]'")
    if vectors is not None and not Path(vectors).is_file():
        raise ValueError(f"--embeddings {vectors}: no such file")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    Path(out).mkdir(parents=True, exist_ok=True)
    if isinstance(scale, str) and scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    name = scale if isinstance(scale, str) else "custom"
    chosen = SCALES[scale] if isinstance(scale, str) else scale
    if workers is not None:
        chosen = dataclasses.replace(chosen, workers=workers)
    found = run_experiments(chosen, vectors)
    found.name = name
    write_report(found, out)
    return found
