"""ONNX export of the torch engine's task models, with dynamic batch and time axes.

Each task model becomes one or more ONNX graphs (`graphs(model)`), each a small nn.Module wrapping the
model's own methods, so the exported computation is the engine's, not a copy:

    LanguageModel   "step"         tokens (batch, time) int64, h (layers, batch, hidden) [, c]
                                   → logits (batch, time, vocab), h_out [, c_out]    (generation: feed h_out back)
    TextClassifier  "classify"     tokens (batch, time) int64, lengths (batch,) int64 → probabilities (batch, classes)
    Seq2Seq         "encode"       source (batch, source_time) int64, source_lengths (batch,) int64
                                   → h (batch, layers, hidden) [, c] [, feed (batch, hidden)], memory, keys, mask
                    "decode_step"  prev_tokens (batch,) int64, h [, c] [, feed], memory, keys, mask
                                   → log_probs (batch, target_vocab), h_out [, c_out] [, feed_out], attention
                                   (the state and memory of rnnkit/seq2seq_spec.py, as named arrays)
    Forecaster      "forecast"     x (batch, window, inputs) [, future (batch, horizon, future_size)]
                                   → forecasts (batch, horizon, outputs, K)   (the model's `predict`)

Exporter: the TorchScript-based `torch.onnx.export(..., dynamo=False)`, opset 17. It maps nn.LSTM / GRU / RNN
to ONNX's own LSTM / GRU / RNN operators and a packed sequence to their `sequence_lens` input, so the
classifier's and the encoder's packing by length (bidirectional included) exports as it runs, with a dynamic
time axis (pytorch#41774). The torch.export-based exporter (`dynamo=True`, onnxscript) unrolls nn.RNN over the
example's time steps (a fixed time axis), fixes time in bidirectional patterns (pytorch#191855) and takes
5-10× longer on these models; the parity tests (tests/test_onnx_export.py) guard the choice.
After export each graph is run through onnxruntime on inputs of another batch size and length than the
example's and compared with the model (`check`).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..checkpoint.atomic import write_bytes_atomic
from .forecaster import Forecaster
from .models import LanguageModel, TextClassifier
from .seq2seq import Seq2Seq

OPSET = 17
TOLERANCE = 1e-4  # the export's own check, relative to the outputs' scale (at least 1); the tests hold tiny
                  # models to 1e-5 absolute


@dataclass
class Graph:
    """One ONNX graph of a model: a module to trace, its inputs' names and dynamic axes, and example inputs."""

    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    axes: dict[str, dict[int, str]]           # name → {axis: "batch" | "time" | ...}
    example: Callable[[int, int, np.random.Generator], dict[str, np.ndarray]]  # (batch, time, rng) → inputs


# ------------------------------------------------------------------------------------------- wrappers

class LMStep(nn.Module):
    """tokens, h (, c) → logits, h_out (, c_out): LanguageModel.forward with the state as separate tensors."""

    def __init__(self, model: LanguageModel):
        super().__init__()
        self.model = model

    def forward(self, tokens, h, c=None):
        logits, state = self.model(tokens, h if c is None else (h, c))
        return (logits, *state) if isinstance(state, tuple) else (logits, state)


class ClassifierProbabilities(nn.Module):
    """tokens, lengths → softmax(TextClassifier(tokens, lengths)): its `predict`."""

    def __init__(self, model: TextClassifier):
        super().__init__()
        self.model = model

    def forward(self, tokens, lengths):
        return torch.softmax(self.model(tokens, lengths), dim=-1)


class Seq2SeqEncode(nn.Module):
    """source, source_lengths → the state (batch first) and memory of Seq2Seq.encode, as separate tensors."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, source, source_lengths):
        m = self.model
        memory, keys, mask, state = m._encode(source, source_lengths)
        h, c = state if m.cell == "lstm" else (state, None)
        out = [h.transpose(0, 1)] + ([c.transpose(0, 1)] if c is not None else [])
        if m.attention_kind.startswith("luong"):
            out.append(memory.new_zeros(source.shape[0], m.hidden_size))
        return (*out, memory, keys, mask)


class Seq2SeqDecodeStep(nn.Module):
    """prev_tokens, h (, c) (, feed), memory, keys, mask → log_probs, h_out (, c_out) (, feed_out), attention:
    Seq2Seq.decode_step."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, prev_tokens, *tensors):
        m = self.model
        lstm, luong = m.cell == "lstm", m.attention_kind.startswith("luong")
        h, rest = tensors[0], list(tensors[1:])
        c = rest.pop(0) if lstm else None
        feed = rest.pop(0) if luong else None
        memory, keys, mask = rest
        h = h.transpose(0, 1).contiguous()
        state = (h, c.transpose(0, 1).contiguous()) if lstm else h
        logits, state, feed, weights = m._step(prev_tokens, state, feed, memory, keys, mask)
        h, c = state if lstm else (state, None)
        out = [torch.log_softmax(logits, dim=-1), h.transpose(0, 1)]
        out += [c.transpose(0, 1)] if lstm else []
        out += [feed] if luong else []
        if weights is None:  # no attention: zeros, as decode_step returns
            weights = torch.zeros_like(mask, dtype=logits.dtype)
        return (*out, weights)


class ForecastPredict(nn.Module):
    """x (, future) → forecasts (batch, horizon, outputs, K): Forecaster.predict."""

    def __init__(self, model: Forecaster):
        super().__init__()
        self.model = model

    def forward(self, x, future=None):
        return self.model.distribution(self.model(x, future))


# ------------------------------------------------------------------------------------------- graphs

def _tokens(rng, vocab: int, batch: int, time: int, low: int = 0) -> np.ndarray:
    return rng.integers(low, vocab, (batch, time)).astype(np.int64)


def _lengths(rng, batch: int, time: int) -> np.ndarray:
    """Lengths in [1, time], the first one `time` (a padded batch as the batcher makes it)."""
    lengths = rng.integers(1, time + 1, batch).astype(np.int64)
    lengths[0] = time
    return lengths


def _padded(tokens: np.ndarray, lengths: np.ndarray, pad: int = 0) -> np.ndarray:
    tokens = tokens.copy()
    tokens[np.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = pad
    return tokens


def graphs(model: nn.Module) -> list[Graph]:
    """The ONNX graphs that make up `model` (see the module docstring)."""
    if isinstance(model, LanguageModel):
        rnn, lstm = model.rnn, model.cell == "lstm"
        state = ["h", "c"] if lstm else ["h"]

        def example(batch, time, rng):
            shape = (rnn.num_layers, batch, rnn.hidden_size)
            out = {"tokens": _tokens(rng, model.vocab_size, batch, time)}
            out.update({name: rng.standard_normal(shape).astype(np.float32) * 0.5 for name in state})
            return out

        axes = {"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
        axes.update({name: {1: "batch"} for name in state + [f"{s}_out" for s in state]})
        return [Graph("step", LMStep(model), ["tokens", *state], ["logits", *(f"{s}_out" for s in state)],
                      axes, example)]
    if isinstance(model, TextClassifier):
        vocab = model.embedding.num_embeddings
        pad = model.embedding.padding_idx or 0

        def example(batch, time, rng):
            lengths = _lengths(rng, batch, time)
            return {"tokens": _padded(_tokens(rng, vocab, batch, time, low=1), lengths, pad), "lengths": lengths}

        axes = {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "probabilities": {0: "batch"}}
        return [Graph("classify", ClassifierProbabilities(model), ["tokens", "lengths"], ["probabilities"],
                      axes, example)]
    if isinstance(model, Seq2Seq):
        return _seq2seq_graphs(model)
    if isinstance(model, Forecaster):
        names = ["x"] + (["future"] if model.future_size else [])

        def example(batch, time, rng):
            out = {"x": rng.standard_normal((batch, time, model.input_size)).astype(np.float32)}
            if model.future_size:
                out["future"] = rng.standard_normal((batch, model.horizon, model.future_size)).astype(np.float32)
            return out

        axes = {"x": {0: "batch", 1: "window"}, "future": {0: "batch"}, "forecasts": {0: "batch"}}
        return [Graph("forecast", ForecastPredict(model), names, ["forecasts"],
                      {k: v for k, v in axes.items() if k in names + ["forecasts"]}, example)]
    raise ValueError(f"no ONNX export for a {type(model).__name__}")


def _seq2seq_graphs(model: Seq2Seq) -> list[Graph]:
    lstm, luong = model.cell == "lstm", model.attention_kind.startswith("luong")
    state = ["h"] + (["c"] if lstm else []) + (["feed"] if luong else [])
    memory = ["memory", "keys", "mask"]
    source_vocab = model.encoder.embedding.num_embeddings
    target_vocab = model.decoder.embedding.num_embeddings
    encode = Seq2SeqEncode(model)

    def encode_example(batch, time, rng):
        lengths = _lengths(rng, batch, time)
        return {"source": _padded(_tokens(rng, source_vocab, batch, time, low=1), lengths, model.pad_id),
                "source_lengths": lengths}

    def step_example(batch, time, rng):
        with torch.no_grad():
            encoded = encode(*(torch.from_numpy(a) for a in encode_example(batch, time, rng).values()))
        out = {"prev_tokens": rng.integers(0, target_vocab, batch).astype(np.int64)}
        out.update({name: t.numpy() for name, t in zip(state + memory, encoded)})
        for name in state:  # a state after some steps, not the one encode gives
            out[name] = out[name] + 0.3 * rng.standard_normal(out[name].shape).astype(np.float32)
        return out

    per_batch = {name: {0: "batch"} for name in state + [f"{s}_out" for s in state]}
    memory_axes = {"memory": {0: "batch", 1: "source_time"}, "keys": {0: "batch", 1: "source_time"},
                   "mask": {0: "batch", 1: "source_time"}}
    encode_axes = {"source": {0: "batch", 1: "source_time"}, "source_lengths": {0: "batch"},
                   **per_batch, **memory_axes}
    step_axes = {"prev_tokens": {0: "batch"}, "log_probs": {0: "batch"},
                 "attention": {0: "batch", 1: "source_time"}, **per_batch, **memory_axes}
    return [Graph("encode", encode, ["source", "source_lengths"], state + memory, encode_axes, encode_example),
            Graph("decode_step", Seq2SeqDecodeStep(model), ["prev_tokens", *state, *memory],
                  ["log_probs", *(f"{s}_out" for s in state), "attention"], step_axes, step_example)]


# ------------------------------------------------------------------------------------------- export

def export_model(model: nn.Module, paths: dict[str, Path], metadata: dict[str, str]) -> dict[str, float]:
    """Export each graph of `model` (eval mode, float32, CPU) to paths[graph name], atomically, with
    `metadata` in the files' metadata_props; returns each graph's largest |onnxruntime - torch| on fresh
    inputs of another batch size and length than the example's (a ValueError above TOLERANCE)."""
    import onnx

    model = model.to(device="cpu", dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    errors = {}
    for graph in graphs(model):
        graph.module.eval()  # a new wrapper starts in training mode, and train() reaches the model's dropout
        example = graph.example(3, 5, rng)
        buffer = io.BytesIO()
        with torch.no_grad(), _quiet():
            torch.onnx.export(graph.module, tuple(torch.from_numpy(a) for a in example.values()), buffer,
                              dynamo=False, opset_version=OPSET, input_names=graph.inputs,
                              output_names=graph.outputs, dynamic_axes=graph.axes)
        proto = onnx.load_from_string(buffer.getvalue())
        for key, value in {**metadata, "rnnkit.graph": graph.name}.items():
            proto.metadata_props.add(key=key, value=value)
        data = proto.SerializeToString()
        errors[graph.name] = check(graph, data, rng)
        write_bytes_atomic(paths[graph.name], data)
    return errors


def paths_of(model: nn.Module, out: Path) -> dict[str, Path]:
    """Where each graph goes: `out` for a model of one graph, else OUT.<graph>.onnx beside it
    (translation.onnx → translation.encode.onnx, translation.decode_step.onnx)."""
    names = [g.name for g in graphs(model)]
    if len(names) == 1:
        return {names[0]: out}
    stem = out.name[:-len(".onnx")] if out.name.endswith(".onnx") else out.name
    return {name: out.with_name(f"{stem}.{name}.onnx") for name in names}


def export(model: nn.Module, out: Path, config: dict, overwrite: bool = False) -> list[dict]:
    """Export `model` to `out` (`paths_of`), refusing existing files unless `overwrite`; for each graph
    {"graph", "path", "inputs", "outputs", "dynamic", "error"} (error: the check's largest difference)."""
    paths = paths_of(model, Path(out))
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} "
                         f"(--overwrite to replace)")
    errors = export_model(model, paths, dumps_metadata(config))
    return [{"graph": g.name, "path": str(paths[g.name]), "inputs": g.inputs, "outputs": g.outputs,
             "dynamic": sorted({axis for axes in g.axes.values() for axis in axes.values()}),
             "error": errors[g.name]} for g in graphs(model)]


def check(graph: Graph, data: bytes, rng: np.random.Generator) -> float:
    """The largest |onnxruntime - torch| of the graph's outputs on inputs of batch 2, time 7 (not the
    example's 3 × 5, so the dynamic axes are exercised); a ValueError above TOLERANCE."""
    session = session_of(data)
    graph.module.eval()  # the exporter restores the mode it found
    inputs = graph.example(2, 7, rng)
    got = session.run(None, feed(session, inputs))
    with torch.no_grad():
        want = graph.module(*(torch.from_numpy(a) for a in inputs.values()))
    want = want if isinstance(want, tuple) else (want,)
    error = max(float(np.max(np.abs(np.asarray(g, np.float64) - w.numpy().astype(np.float64)), initial=0.0))
                for g, w in zip(got, want))
    scale = max([1.0] + [float(np.max(np.abs(w.numpy()), initial=0.0)) for w in want if w.is_floating_point()])
    if not error <= TOLERANCE * scale:  # float32 rounding grows with the outputs' size (a trained LM's logits)
        raise ValueError(f"the exported {graph.name!r} graph differs from the model by {error:.3g} in "
                         f"onnxruntime (more than {TOLERANCE} × {scale:.3g}): please report it")
    return error


def session_of(model):
    """An onnxruntime InferenceSession (CPU) of a model file or its bytes."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ValueError("ONNX export checks its graphs with onnxruntime, which is not installed: "
                         "pip install 'rnnkit[onnx]'") from e
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: not the "expected shape" notes on dynamic axes
    return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                        providers=["CPUExecutionProvider"])


def feed(session, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs the session's graph takes (the exporter drops those a graph does not use: the memory of a
    translation model without attention)."""
    return {i.name: inputs[i.name] for i in session.get_inputs()}


@contextlib.contextmanager
def _quiet():
    """The exporter's warnings off: its deprecation notice (see the module docstring for the choice) and the
    C++ notes on the packed sequence's shape inference, printed to file descriptor 2, shown only on failure."""
    with warnings.catch_warnings(), tempfile.TemporaryFile() as sink:
        warnings.simplefilter("ignore")
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def dumps_metadata(config: dict) -> dict[str, str]:
    """The checkpoint's config (vocabulary, labels, settings) as the ONNX files' metadata."""
    return {"rnnkit.task": str(config.get("task")), "rnnkit.config": json.dumps(config)}
