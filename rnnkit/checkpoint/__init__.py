"""Checkpoints: a folder of safetensors and JSON, written atomically, loaded without ever unpickling.

`save_checkpoint` checks every input, then puts the whole folder at its path in one swap; `load_checkpoint`
returns the old or the new checkpoint, complete, or raises `CheckpointError` naming the file at fault.

    format.py   the folder: its files, config.json, the bytes of each file
    atomic.py   crash-safe writes: single files, and the checkpoint folder's swap (and how readers follow it)
    checks.py   what a checkpoint may hold: inputs before writing, hostile files before trusting them
    state.py    nested state (an optimizer's state_dict) <-> flat arrays and a JSON skeleton
    schema.py   the keys and values of config.json's sections, one-line errors naming the field
    models.py   a model's settings checked against the stored tensors before the model is built
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import _Folder, _Vanished, locate, replace_folder
from .checks import CheckpointError, check_expected, check_finite
from .format import MODEL, check_tensor_list, read_config, read_resume_state, read_safetensors, serialize
from .state import flatten_state, unflatten_state

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "flatten_state", "unflatten_state"]

_ATTEMPTS = 3


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns; ``path`` is the folder actually read."""

    path: Path
    weights: dict[str, np.ndarray]
    config: dict
    optimizer_state: Any = None
    trainer_state: Any = None
    rnnkit_version: str = ""


def save_checkpoint(path, weights: dict[str, np.ndarray], config: dict, optimizer_state=None,
                    trainer_state: dict | None = None) -> Path:
    """Write a checkpoint folder at ``path`` atomically, replacing an existing checkpoint there.

    ``weights``: flat ``{name: array}`` (PyTorch names). ``config``: JSON-able dict with string keys.
    ``optimizer_state``: nested dicts/lists of arrays and JSON scalars (see `flatten_state`).
    ``trainer_state``: JSON-able dict (step, epoch, RNG states, ...). In ``config`` and ``trainer_state``
    tuples come back as lists; NumPy values are refused (use ``.item()``). Returns the folder's path.
    Inputs are checked before anything is written; one writer per path at a time.
    """
    path = _target(path)
    replace_folder(path, serialize(weights, config, optimizer_state, trainer_state))
    return path


def load_checkpoint(path, expected: dict[str, tuple] | None = None, load_optimizer: bool = False,
                    check_finite: bool = False, check_config=None) -> Checkpoint:
    """Load and validate the checkpoint folder at ``path``; any problem raises `CheckpointError`.

    ``expected``: ``{name: (shape, dtype)}`` the weights must match exactly (``dtype`` None: any);
    e.g. ``{k: (v.shape, v.dtype) for k, v in model.state_dict().items()}``.
    ``load_optimizer``: also load the optimizer and trainer states (an error if the checkpoint has none).
    ``check_finite``: refuse NaN or infinite values in the loaded float arrays.
    ``check_config``: ``check_config(config, tensors, where)``, called with config.json's ``config``, its
    tensor list ``{name: {"dtype", "shape"}}`` (equal to model.safetensors' header) and the folder, before
    any tensor is read: the place to check a model's settings against its weights (rnnkit/checkpoint/models.py).
    A file vanishing mid-read (a concurrent save swapping folders) is retried a few times.
    """
    for attempt in range(_ATTEMPTS):
        try:
            return _load_once(_target(path), expected, load_optimizer, check_finite, check_config)
        except _Vanished:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def _target(path) -> Path:
    """The absolute, normalised checkpoint path; it must name a folder, not a root or '..'."""
    path = Path(os.path.abspath(path))
    if path.name in ("", ".", ".."):
        raise ValueError(f"{path}: a checkpoint path must name a folder")
    return path


def _load_once(path: Path, expected, load_optimizer: bool, finite: bool, check_config=None) -> Checkpoint:
    folder = locate(path)
    with _Folder(folder) as f:
        meta = read_config(f)
        before = None if check_config is None else lambda: check_config(meta["config"], meta["tensors"], folder)
        weights = read_safetensors(f, MODEL, meta, listed=meta["tensors"], before_tensors=before)
        check_tensor_list(f.where(MODEL), weights, meta["tensors"])
        optimizer_state = trainer_state = None
        if load_optimizer:
            optimizer_state, trainer_state = read_resume_state(f, meta, finite)
    if finite:
        check_finite(folder / MODEL, weights)
    if expected is not None:
        check_expected(folder / MODEL, weights, expected)
    return Checkpoint(folder, weights, meta["config"], optimizer_state, trainer_state,
                      str(meta.get("rnnkit_version", "")))
