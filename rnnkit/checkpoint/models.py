"""A model's settings in config.json, checked against the stored tensors before the model is built.

    check_model("TextClassifier", config["model"], tensors, "float32", where)   # or a one-line CheckpointError

The settings decide how much memory building a model takes; the weights file, how much there is. So each
setting that shapes a tensor is compared with the tensor list (config.json's, which the loader has matched
with the safetensors header; no tensor is read yet) and a difference is refused naming the field
("model.hidden_size is 30000, but the weights have 256: rnn.weight_hh_l0 has shape [1024, 256]"). Only then
is the whole list of names and shapes the settings imply built, and compared: a model built afterwards holds
exactly what the file holds, never more. The other settings get types and ranges (schema.py); every tensor
must have the model's dtype.

The parameter names and shapes are PyTorch's, the same on both engines (tests/test_checkpoint_trust.py
compares `parameter_shapes` with both engines' models).
"""
from __future__ import annotations

from ..spec import CELLS, GATES, POOLING
from .checks import CheckpointError
from .schema import Key, boolean, check_object, choice, integer, number, optional

_RECURRENT = {"vocab_size": Key(integer(1)), "embedding_dim": Key(integer(1)), "hidden_size": Key(integer(1)),
              "num_layers": Key(integer(1)), "cell": Key(choice(*CELLS)),
              "dropout": Key(number(0, 1, high_open=True), required=False)}
#: The keys of config.json's "model" section, per model: those that shape a tensor are required.
MODEL_KEYS = {
    "LanguageModel": {**_RECURRENT, "tie_weights": Key(boolean)},
    "TextClassifier": {**_RECURRENT, "num_classes": Key(integer(2)), "bidirectional": Key(boolean),
                       "pooling": Key(choice(*POOLING)), "attention_size": Key(integer(1)),
                       "padding_idx": Key(optional(integer(0)), required=False),
                       "embedding_init_std": Key(number(0, 1e6, low_open=True), required=False)},
}


def check_model(model: str, settings, tensors: dict, dtype: str, where) -> dict:
    """Refuse ``settings`` (config.json's "model") that do not fit ``tensors`` (``{name: {"dtype", "shape"}}``)
    or ``dtype``; returns the settings."""
    check_object(settings, MODEL_KEYS[model], "model", where)
    s = settings
    directions = 2 if s.get("bidirectional") else 1
    stored = _Stored(tensors, where)
    vocab, embedding = stored.shape("embedding.weight", 2)
    stored.same("model.vocab_size", s["vocab_size"], vocab, "embedding.weight")
    stored.same("model.embedding_dim", s["embedding_dim"], embedding, "embedding.weight")
    layers = stored.count_layers()
    stored.same("model.num_layers", s["num_layers"], layers, "rnn.weight_hh_l*")
    if directions == 1 and "rnn.weight_hh_l0_reverse" in tensors:
        raise CheckpointError(f"{where}: model.bidirectional is false, but the weights hold rnn.*_reverse tensors")
    rows, hidden = stored.shape("rnn.weight_hh_l0", 2)
    stored.same("model.hidden_size", s["hidden_size"], hidden, "rnn.weight_hh_l0")
    if rows != GATES[s["cell"]] * hidden:
        raise CheckpointError(f"{where}: model.cell is {s['cell']!r} ({GATES[s['cell']]} gate blocks), but "
                              f"rnn.weight_hh_l0 has shape [{rows}, {hidden}]")
    if model == "LanguageModel":
        if s["tie_weights"] and s["embedding_dim"] != s["hidden_size"]:
            raise CheckpointError(f"{where}: model.tie_weights needs embedding_dim == hidden_size, got "
                                  f"{s['embedding_dim']} and {s['hidden_size']}")
    else:
        classes, _ = stored.shape("classifier.weight", 2)
        stored.same("model.num_classes", s["num_classes"], classes, "classifier.weight")
        if s["pooling"] == "attention":
            size, _ = stored.shape("attention.proj.weight", 2)
            stored.same("model.attention_size", s["attention_size"], size, "attention.proj.weight")
        if s.get("padding_idx") is not None and s["padding_idx"] >= s["vocab_size"]:
            raise CheckpointError(f"{where}: model.padding_idx {s['padding_idx']} is not below vocab_size "
                                  f"{s['vocab_size']}")
    stored.exactly(parameter_shapes(model, s), dtype)
    return settings


def parameter_shapes(model: str, s: dict) -> dict[str, tuple]:
    """``{name: shape}`` of the model that the settings ``s`` build (PyTorch's names; a tied decoder is listed
    under its own name too, as in the state dict)."""
    vocab, embedding, hidden = s["vocab_size"], s["embedding_dim"], s["hidden_size"]
    directions = 2 if s.get("bidirectional") else 1
    shapes = {"embedding.weight": (vocab, embedding)}
    rows = GATES[s["cell"]] * hidden
    for layer in range(s["num_layers"]):
        inputs = embedding if layer == 0 else hidden * directions
        for suffix in ("", "_reverse")[:directions]:
            shapes.update({f"rnn.weight_ih_l{layer}{suffix}": (rows, inputs),
                           f"rnn.weight_hh_l{layer}{suffix}": (rows, hidden),
                           f"rnn.bias_ih_l{layer}{suffix}": (rows,), f"rnn.bias_hh_l{layer}{suffix}": (rows,)})
    features = hidden * directions
    if model == "LanguageModel":
        shapes.update({"decoder.weight": (vocab, hidden), "decoder.bias": (vocab,)})
        return shapes
    if s["pooling"] == "attention":
        size = s["attention_size"]
        shapes.update({"attention.proj.weight": (size, features), "attention.proj.bias": (size,),
                       "attention.score.weight": (1, size)})
    shapes.update({"classifier.weight": (s["num_classes"], features), "classifier.bias": (s["num_classes"],)})
    return shapes


def check_tensors(tensors: dict, shapes: dict[str, tuple], dtype: str, where) -> None:
    """The tensor list ``tensors`` (``{name: {"dtype", "shape"}}``, as config.json holds it) has exactly the
    names and ``shapes`` given, every tensor of ``dtype``; else a one-line CheckpointError listing the
    differences."""
    _Stored(tensors, where).exactly(shapes, dtype)


class _Stored:
    """The tensor list, read defensively: it comes from the file."""

    def __init__(self, tensors: dict, where):
        self.tensors, self.where = tensors, where

    def shape(self, name: str, ndim: int) -> tuple:
        info = self.tensors.get(name)
        if info is None:
            raise CheckpointError(f"{self.where}: the weights lack {name}")
        shape = info.get("shape") if isinstance(info, dict) else None
        if not (isinstance(shape, list) and len(shape) == ndim and all(type(d) is int and d >= 0 for d in shape)):
            raise CheckpointError(f"{self.where}: tensor {name} has shape {shape!r}; expected {ndim} dimensions")
        return tuple(shape)

    def same(self, field: str, value: int, stored: int, name: str) -> None:
        if value != stored:
            raise CheckpointError(f"{self.where}: {field} is {value}, but the weights have {stored} ({name})")

    def count_layers(self) -> int:
        layers = 0
        while f"rnn.weight_hh_l{layers}" in self.tensors:     # at most as many as there are tensors
            layers += 1
        return layers

    def exactly(self, shapes: dict[str, tuple], dtype: str) -> None:
        """Names and shapes equal to ``shapes``, every dtype ``dtype``; the differences listed in one line."""
        missing = [k for k in shapes if k not in self.tensors]
        unexpected = sorted(k for k in self.tensors if k not in shapes)  # the file's order may vary
        problems = [f"{what} {', '.join(names[:5])}" for what, names in (("missing", missing),
                                                                          ("unexpected", unexpected)) if names]
        problems += [f"{k} has shape {self.tensors[k].get('shape')}, expected {list(shape)}"
                     for k, shape in shapes.items()
                     if k in self.tensors and self.tensors[k].get("shape") != list(shape)]
        if problems:
            raise CheckpointError(f"{self.where}: the weights do not fit the model settings: "
                                  + "; ".join(problems[:5]))
        for k, info in sorted(self.tensors.items()):
            if info.get("dtype") != dtype:
                raise CheckpointError(f"{self.where}: dtype is {dtype!r}, but the weights' {k} is "
                                      f"{info.get('dtype')!r}")
