"""The translation model's contract, the same on both engines: its settings, its batches, its inference door.

Both engines build `Seq2Seq` (rnnkit/scratch/seq2seq.py, rnnkit/torch/seq2seq.py) from the same keyword
arguments, checked here once:

    build_engine(engine, "Seq2Seq", dict(
        source_vocab=..., target_vocab=...,   # vocabulary sizes (ids 0 .. size-1)
        embedding_dim=64, hidden_size=128,    # the decoder's hidden size; the encoder's per direction
        num_layers=1, cell="lstm",            # rnnkit.spec.CELLS, the same for encoder and decoder
        bidirectional=False,                  # the encoder's
        attention="bahdanau",                 # rnnkit.spec.ATTENTION: none | bahdanau | luong-dot | luong-general
        dropout=0.0,                          # embeddings, between layers, before the output layer
        teacher_forcing=1.0,                  # P(the true previous token is the next input) in training
        label_smoothing=0.0,                  # of the training loss (eval_loss is the plain NLL)
        tie_embeddings=False,                 # output layer = target embedding (needs embedding_dim == hidden_size)
        pad_id=0, bos_id=2, eos_id=3))        # rnnkit.data.vocab's specials: <pad> 0, <unk> 1, <bos> 2, <eos> 3

luong-dot scores s·h_j and so needs the encoder's outputs to be the decoder's size: not bidirectional.

Parameter names (PyTorch's; state dicts move between engines unchanged), D = 2 if bidirectional else 1,
M = D * hidden (the encoder's output size):
    encoder.embedding.weight (source_vocab, E); encoder.rnn.{weight,bias}_{ih,hh}_l{k}[_reverse]
    bridge.h.{k}.{weight (H, M), bias}; bridge.c.{k}.* for the LSTM     (one projection per layer)
    decoder.embedding.weight (target_vocab, E); decoder.rnn.*_l{k}       (input E, + M bahdanau, + H luong)
    decoder.attention.query.weight (H, H), .key.{weight (H, M), bias}, .score.weight (1, H)   bahdanau
    decoder.attention.key.weight (H, M)                                                      luong-general
    decoder.combine.weight (H, M + H)                                                        luong
    decoder.output.{weight (target_vocab, H), bias}   (weight is decoder.embedding.weight when tied)

A training batch is a dict of NumPy arrays, padded with pad_id:
    "source"         (B, S) int   source ids
    "source_lengths" (B,)   int   1 <= L <= S
    "target_in"      (B, T) int   <bos> y_1 .. y_n
    "target_out"     (B, T) int   y_1 .. y_n <eos>
    "target_lengths" (B,)   int   n + 1, 1 <= . <= T
`loss(batch, carry)` is the mean token cross-entropy over the positions t < target_lengths (with label
smoothing); `eval_loss(batch, carry)` gives (summed NLL, number of target tokens, None). The carry is None.

Inference, through `Engine.call(name, *inputs)` (eval mode, no gradients, NumPy in and out):
    encode(source (B, S), source_lengths (B,)) -> (state, memory)
    decode_step(prev_tokens (B,), state, memory) -> (log_probs (B, V), state, attention (B, S))
state and memory are dicts of NumPy arrays whose axis 0 is the batch, so a search reorders or repeats
hypotheses with `{k: a[index] for k, a in state.items()}`:
    state  "h" (B, layers, H), "c" (B, layers, H) for the LSTM, "feed" (B, H) for Luong (h̃ of the last step)
    memory "memory" (B, S, M) encoder outputs, "keys" (B, S, K) their projections, "mask" (B, S) bool
log_probs are the model's log-softmax over the whole target vocabulary; attention is zero at the source
padding (and everywhere without attention). rnnkit/decoding.py searches with them.
"""
from __future__ import annotations

import numpy as np

from .spec import check_attention, check_cell

INFERENCE_METHODS = ("encode", "decode_step")   # what Engine.call may run on a Seq2Seq


def check_options(source_vocab, target_vocab, embedding_dim, hidden_size, num_layers, cell, bidirectional,
                  attention, dropout, teacher_forcing, label_smoothing, tie_embeddings, pad_id, bos_id,
                  eos_id) -> None:
    """A ValueError naming the first setting out of range (both engines call this before building)."""
    check_cell(cell)
    check_attention(attention)
    for name, value in (("source_vocab", source_vocab), ("target_vocab", target_vocab),
                        ("embedding_dim", embedding_dim), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("dropout", dropout), ("teacher_forcing", teacher_forcing),
                        ("label_smoothing", label_smoothing)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if dropout == 1.0:
        raise ValueError("dropout must be below 1")
    if tie_embeddings and embedding_dim != hidden_size:
        raise ValueError(f"tie_embeddings needs embedding_dim == hidden_size (the output layer's input), "
                         f"got {embedding_dim} and {hidden_size}")
    if attention == "luong-dot" and bidirectional:
        raise ValueError("luong-dot attention scores s·h_j and needs encoder outputs of the decoder's size: "
                         "use luong-general or bahdanau with a bidirectional encoder")
    limits = (("pad_id", pad_id, min(source_vocab, target_vocab)), ("bos_id", bos_id, target_vocab),
              ("eos_id", eos_id, target_vocab))
    for name, value, size in limits:
        if not isinstance(value, (int, np.integer)) or not 0 <= value < size:
            raise ValueError(f"{name} {value!r} is outside the vocabulary (0 .. {size - 1})")


def _ids(batch: dict, key: str, ndim: int) -> np.ndarray:
    if key not in batch:
        raise ValueError(f"a translation batch needs {key!r}")
    a = np.asarray(batch[key])
    if a.ndim != ndim or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"batch[{key!r}] must be a {ndim}-d integer array, got {a.dtype} {a.shape}")
    return a.astype(np.int64, copy=False)


def check_lengths(lengths: np.ndarray, batch: int, time: int, what: str) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.shape != (batch,) or (lengths.size and lengths.dtype.kind not in "iu"):
        raise ValueError(f"{what} must be ({batch},) integers, got {lengths.dtype} {lengths.shape}")
    if batch and (lengths.min() < 1 or lengths.max() > time):
        raise ValueError(f"{what} must be in [1, {time}], got {lengths.min()} .. {lengths.max()}")
    return lengths.astype(np.int64, copy=False)


def check_source(source, source_lengths) -> tuple[np.ndarray, np.ndarray]:
    source = _ids({"source": source}, "source", 2)
    if source.shape[0] == 0 or source.shape[1] == 0:
        raise ValueError(f"the source batch is empty: shape {source.shape}")
    return source, check_lengths(source_lengths, *source.shape, "source_lengths")


def check_step(prev_tokens, state: dict, memory: dict) -> np.ndarray:
    """prev_tokens as int64 (B,), or a ValueError when they, the state and the memory disagree on the batch."""
    prev = _ids({"prev_tokens": prev_tokens}, "prev_tokens", 1)
    missing = [f"state[{k!r}]" for k in ("h",) if k not in state] + \
        [f"memory[{k!r}]" for k in ("memory", "keys", "mask") if k not in memory]
    if missing:
        raise ValueError(f"decode_step needs {', '.join(missing)} (from encode)")
    sizes = {f"state[{k!r}]": len(v) for k, v in state.items()} | {f"memory[{k!r}]": len(v) for k, v in memory.items()}
    wrong = {k: n for k, n in sizes.items() if n != len(prev)}
    if wrong:
        raise ValueError(f"decode_step: {len(prev)} prev_tokens but batch sizes {wrong}")
    return prev


def check_batch(batch: dict) -> dict:
    """The batch's arrays as int64, shapes and lengths checked (see the module docstring)."""
    source, source_lengths = check_source(batch.get("source"), batch.get("source_lengths"))
    target_in, target_out = _ids(batch, "target_in", 2), _ids(batch, "target_out", 2)
    if target_in.shape != target_out.shape or target_in.shape[0] != source.shape[0] or target_in.shape[1] == 0:
        raise ValueError(f"target_in {target_in.shape} and target_out {target_out.shape} must both be "
                         f"(batch={source.shape[0]}, time >= 1)")
    target_lengths = check_lengths(batch.get("target_lengths"), *target_in.shape, "target_lengths")
    return dict(source=source, source_lengths=source_lengths, target_in=target_in, target_out=target_out,
                target_lengths=target_lengths)


def loss_targets(batch: dict, ignore_index: int = -100) -> np.ndarray:
    """target_out with the positions t >= target_lengths set to `ignore_index` (they add nothing to the loss)."""
    targets = batch["target_out"].copy()
    targets[np.arange(targets.shape[1])[None, :] >= batch["target_lengths"][:, None]] = ignore_index
    return targets
