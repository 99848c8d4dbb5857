"""A trained model out of rnnkit: `rnnkit export CKPT --format onnx` (the graphs: rnnkit/torch/export.py).

    export_checkpoint("runs/lm/best", "lm.onnx")   # → [{"graph": "step", "path": "lm.onnx", ...}]
"""
from __future__ import annotations

from pathlib import Path

from ..engines import export_onnx
from .pretrained import open_checkpoint

MODELS = {"lm": "LanguageModel", "classify": "TextClassifier", "seq2seq": "Seq2Seq", "forecast": "Forecaster"}
FORMATS = ("onnx",)


def export_checkpoint(path, out=None, format: str = "onnx", overwrite: bool = False) -> list[dict]:
    """Export the checkpoint at `path` to `out` (default: TASK.onnx in the current folder); a translation
    model's two graphs go to OUT.encode.onnx and OUT.decode_step.onnx. Existing files are refused unless
    `overwrite`. Returns a dict per file written (graph, path, inputs, outputs, dynamic axes, error: the
    largest difference between onnxruntime and the model on a check after export)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    ckpt = open_checkpoint(path)
    task = ckpt.config.get("task")
    if task not in MODELS:
        raise ValueError(f"{path} holds a {task!r} model; rnnkit exports the tasks {', '.join(MODELS)}")
    out = Path(out) if out is not None else Path(f"{task}.onnx")
    return export_onnx(MODELS[task], ckpt.config["model"], ckpt.weights, out, ckpt.config, overwrite)
