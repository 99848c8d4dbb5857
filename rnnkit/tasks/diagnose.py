"""`rnnkit diagnose CKPT`: rnnkit.diagnostics on a trained checkpoint of any task, on a batch of its kind.

    diagnose_checkpoint(path, data=None, length=None, batch_size=8, engine="scratch", seed=0) → Diagnosis

The batch:
    lm        `batch_size` windows of `length` tokens (default: the training bptt) from the text file `data`
    classify  the first `batch_size` non-empty lines of the text file `data`, each labelled with the model's own
              prediction: the gradients are those of the loss of what the model answers
    memory    `batch_size` new sequences of the problem it was trained on, at `length` (default: its own)
    seq2seq   the first `batch_size` non-empty lines of the text file `data` as sources, each with the model's own
              greedy translation as its target (teacher-forced: the decoder reads it and is scored on it); the
              encoder's layers are measured (∂L/∂h_t per source position) and the decoder's (∂L/∂s_t per target
              step, Diagnosis.decoder_gradient_norms); gates, spectra and hidden states of both
    forecast  the last `batch_size` (window, horizon) samples of the series it was trained on (its dataset or
              file, from its settings), or of the series file `data` (read with the model's column settings);
              an ensemble's first member
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoint import CheckpointError
from ..data import memory_tasks
from ..data.text import read_text
from ..diagnostics import Diagnosis, diagnose
from ..engines import check_engine
from .checkpoints import load_checked_engine
from .memory import MODELS as MEMORY_MODELS
from .pretrained import open_checkpoint


def _lm_batch(path, data, length, batch_size, engine):
    from .lm import load_lm, make_tokenizer

    if data is None:
        raise ValueError("diagnosing a language model needs a text file to read (--data FILE)")
    model = load_lm(path, engine)
    ids = model.vocab.encode(make_tokenizer(model.tokenizer).tokenize(read_text(data)))
    length = length or model.config["data"].get("bptt", 64)
    rows = min(batch_size, (len(ids) - 1) // length)
    if rows < 1:
        raise ValueError(f"{data} has {len(ids)} tokens, fewer than one window of --length {length} plus one")
    windows = np.asarray(ids[: rows * length + 1])
    inputs = np.stack([windows[r * length:(r + 1) * length] for r in range(rows)])
    targets = np.stack([windows[r * length + 1:(r + 1) * length + 1] for r in range(rows)])
    return model.engine, {"inputs": inputs, "targets": targets}


def _classify_batch(path, data, batch_size, engine):
    from .classify import load_classifier, pad

    if data is None:
        raise ValueError("diagnosing a classifier needs texts to read (--data FILE, one text per line)")
    model = load_classifier(path, engine)
    texts = [line for line in read_text(data).splitlines() if line.strip()][:batch_size]
    if not texts:
        raise ValueError(f"{data} has no non-empty line to read")
    inputs, lengths = pad([model.encoder.token_ids(t) for t in texts])
    labels = model.engine.predict(inputs, lengths).argmax(axis=-1)
    return model.engine, {"inputs": inputs, "lengths": lengths, "labels": labels}


def _memory_batch(path, config, weights, length, batch_size, engine, seed):
    where = Path(path) / "config.json"
    data = config.get("data")
    problem = data.get("problem") if isinstance(data, dict) else None
    if problem not in MEMORY_MODELS or config.get("model_class") != MEMORY_MODELS[problem]:
        raise CheckpointError(f"{where}: data.problem and model_class must be one of {MEMORY_MODELS}, got "
                              f"{problem!r} and {config.get('model_class')!r}")
    length = length or data.get("length")
    dtype = config.get("dtype", "float32")
    eng = load_checked_engine(engine, config["model_class"], config.get("model"), weights, dtype, where)
    batch = memory_tasks.generate(data["problem"], batch_size, length, seed)
    return eng, {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in batch.items()}


def _seq2seq_batch(path, data, batch_size, engine):
    from ..data.batching import pair_batch
    from .seq2seq import EOS_ID, load_seq2seq, translate_ids
    from .settings import Decoding

    if data is None:
        raise ValueError("diagnosing a translation model needs source sentences (--data FILE, one per line)")
    model = load_seq2seq(path, engine)
    texts = [line for line in read_text(data).splitlines() if line.strip()][:batch_size]
    if not texts:
        raise ValueError(f"{data} has no non-empty line to read")
    sources = [model.source_ids(t) for t in texts]
    targets = [np.asarray([t for t in h[0].tokens if t != EOS_ID], dtype=np.int64)
               for h in translate_ids(model.engine, sources, Decoding())]
    return model.engine, pair_batch(sources, targets)


def _forecast_batch(path, data, batch_size, engine):
    from dataclasses import replace

    from ..data.windows import sliding_windows
    from .forecast import Forecaster, load_series

    model = Forecaster.from_pretrained(path, engine)
    source = model.settings.data if data is None else replace(model.settings.data, dataset=None, data=str(data))
    series = load_series(source)
    inputs, z = model.features.arrays(series)
    future = model.features.calendar_of(series.dates[model.features.target.lost:])
    samples = sliding_windows(inputs, z, model.window, model.horizon, future if future.shape[1] else None)
    dtype = model.config.get("dtype", "float32")
    return model.engines[0], {k: v[-batch_size:].astype(dtype) if v.dtype.kind == "f" else v[-batch_size:]
                              for k, v in samples.items()}


def diagnose_checkpoint(path, data: str | None = None, length: int | None = None, batch_size: int = 8,
                        engine: str = "scratch", seed: int = 0) -> Diagnosis:
    """Gradients through time, gates, W_hh's spectrum and hidden states of the checkpoint at `path` (see the
    module's docstring for the batch it reads)."""
    check_engine(engine)
    if batch_size < 1 or (length is not None and length < 1):
        raise ValueError("--batch-size and --length must be >= 1")
    ckpt = open_checkpoint(path)
    task = ckpt.config.get("task")
    if task == "lm":
        eng, batch = _lm_batch(path, data, length, batch_size, engine)
    elif task == "classify":
        eng, batch = _classify_batch(path, data, batch_size, engine)
    elif task == "memory":
        eng, batch = _memory_batch(path, ckpt.config, ckpt.weights, length, batch_size, engine, seed)
    elif task == "seq2seq":
        eng, batch = _seq2seq_batch(path, data, batch_size, engine)
    elif task == "forecast":
        eng, batch = _forecast_batch(path, data, batch_size, engine)
    else:
        raise ValueError(f"{path} holds a {task!r} model; diagnose reads lm, classify, memory, seq2seq and forecast "
                         "checkpoints")
    return diagnose(eng, batch)
