"""The checkpoint folder format (``rnnkit-checkpoint``, version 1): which files, what they hold, and their bytes.

On disk::

    path/
      config.json            the caller's config, the tensor list and the manifest of the other files
      model.safetensors      the weights, keyed by PyTorch parameter names
      optimizer.safetensors  optional, for resuming: the arrays of the (flattened) optimizer state
      trainer.json           optional, for resuming: the trainer state and the optimizer state's other parts

``config.json``::

    {"format": "rnnkit-checkpoint", "format_version": 1, "rnnkit_version": "0.1.0",
     "config": {...},   # the caller's dict, verbatim; by convention: task, model, data, vocab, training
     "tensors": {"weight_ih_l0": {"dtype": "float32", "shape": [32, 8]}, ...},        # model.safetensors
     "files": {"model.safetensors": {"sha256": "<hex>", "bytes": 1234}, ...}}       # every other file

``trainer.json`` is ``{"format", "format_version", "trainer": <trainer_state>, "optimizer": <skeleton>}``,
where the skeleton comes from `flatten_state` (its arrays are in ``optimizer.safetensors``). JSON floats
round-trip exactly; ``NaN`` and ``Infinity`` are written as Python's json module does.

Writing (`serialize`) checks every input before anything is written. Reading checks ``config.json``'s format,
version and keys, and each other file's size and SHA-256 against it before parsing that file (see `checks`).
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

from .checks import CheckpointError, check_finite, check_json, check_safetensors_header, checked_arrays, parse_json
from .state import flatten_state, unflatten_state

if TYPE_CHECKING:
    from .atomic import _Folder

FORMAT = "rnnkit-checkpoint"
FORMAT_VERSION = 1
MODEL, OPTIMIZER, TRAINER, CONFIG = "model.safetensors", "optimizer.safetensors", "trainer.json", "config.json"


# ------------------------------------------------------------------------------------------------ writing

def serialize(weights, config, optimizer_state, trainer_state) -> dict[str, bytes]:
    """Every file of the checkpoint as bytes, ``config.json`` last; all input checks happen here."""
    from rnnkit import __version__

    weights = checked_arrays(weights, "weights")
    check_json(config, "config", dict)
    files = {MODEL: _safetensors_bytes(weights)}
    if optimizer_state is not None or trainer_state is not None:
        if trainer_state is not None:
            check_json(trainer_state, "trainer_state", dict)
        skeleton = None
        if optimizer_state is not None:
            arrays, skeleton = flatten_state(optimizer_state)
            files[OPTIMIZER] = _safetensors_bytes(arrays)
        files[TRAINER] = _json_bytes({"format": FORMAT, "format_version": FORMAT_VERSION,
                                      "trainer": trainer_state, "optimizer": skeleton})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
        "config": config,
        "tensors": _tensor_list(weights),
        "files": {k: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for k, b in files.items()},
    }
    files[CONFIG] = _json_bytes(meta)
    return files


def _tensor_list(arrays: dict[str, np.ndarray]) -> dict:
    """``config.json``'s ``tensors``: each array's dtype and shape."""
    return {k: {"dtype": a.dtype.name, "shape": list(a.shape)} for k, a in arrays.items()}


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8")


def _safetensors():
    """The safetensors.numpy module, imported on first use (it is the optional `io` extra)."""
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError("checkpoints need the safetensors package: install rnnkit[train]") from e
    return safetensors.numpy


def _safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    return _safetensors().save(arrays)


# ------------------------------------------------------------------------------------------------ reading

def read_config(f: _Folder) -> dict:
    """``config.json``, checked: format name and version, and the shape of its keys."""
    where = f.where(CONFIG)
    meta = parse_json(f.read(CONFIG), where)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{where}: format {found!r} is not {FORMAT!r}; not an rnnkit checkpoint")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where}: format version {version!r}; this rnnkit reads version {FORMAT_VERSION}"
                              + (" (upgrade rnnkit)" if isinstance(version, int) and version > FORMAT_VERSION
                                 else ""))
    for key in ("config", "tensors", "files"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(f"{where}: {key!r} is missing or not an object")
    _manifest_entry(f, meta, MODEL)
    return meta


def _manifest_entry(f: _Folder, meta: dict, name: str) -> tuple[str, int]:
    """The (sha256, size) that ``config.json`` records for ``name``."""
    entry = meta["files"].get(name)
    ok = (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
          and type(entry.get("bytes")) is int and entry["bytes"] >= 0)
    if not ok:
        raise CheckpointError(f"{f.where(CONFIG)}: no valid 'files' entry for {name}")
    return entry["sha256"], entry["bytes"]


def _read_verified(f: _Folder, name: str, meta: dict) -> bytes:
    """A file's bytes, after checking its size and SHA-256 against ``config.json``."""
    sha, size = _manifest_entry(f, meta, name)
    data = f.read(name, size=size)
    if hashlib.sha256(data).hexdigest() != sha:
        raise CheckpointError(f"{f.where(name)}: SHA-256 does not match {CONFIG}: "
                              "the file was modified or corrupted")
    return data


def read_safetensors(f: _Folder, name: str, meta: dict, listed: dict | None = None,
                     before_tensors=None) -> dict[str, np.ndarray]:
    """The verified arrays of a safetensors file.

    ``listed``: the tensor list (``{name: {"dtype", "shape"}}``) its header must equal. ``before_tensors``:
    called once the header is checked, before any tensor is read (a caller's checks of the settings).
    """
    data = _read_verified(f, name, meta)
    header = check_safetensors_header(data, f.where(name))
    if listed is not None and header != listed:
        raise CheckpointError(f"{f.where(name)}: its tensors differ from the list in {CONFIG}")
    if before_tensors is not None:
        before_tensors()
    try:
        arrays = _safetensors().load(data)
    except Exception as e:     # SafetensorError, and whatever a malformed file provokes
        raise CheckpointError(f"{f.where(name)}: not a valid safetensors file ({e})") from e
    # in the order the list gives (the order saved), else by name: the library's own order changes from one
    # process to the next (a hash map), and with it any message or loop that follows the dict
    order = [k for k in listed if k in arrays] if listed is not None else sorted(arrays)
    return {k: arrays[k] if arrays[k].flags.writeable else arrays[k].copy() for k in order}


def check_tensor_list(where, arrays: dict[str, np.ndarray], tensors: dict) -> None:
    """The arrays must be exactly those that ``config.json`` lists."""
    if _tensor_list(arrays) != tensors:
        raise CheckpointError(f"{where}: its tensors differ from the list in {CONFIG}")


def read_resume_state(f: _Folder, meta: dict, finite: bool):
    """The optimizer state (rebuilt from its skeleton and arrays) and the trainer state."""
    if TRAINER not in meta["files"]:
        raise CheckpointError(f"{f.path}: saved without optimizer or trainer state; "
                              "load it with load_optimizer=False")
    where = f.where(TRAINER)
    resume = parse_json(_read_verified(f, TRAINER, meta), where)
    ours = isinstance(resume, dict) and (resume.get("format"), resume.get("format_version")) == (FORMAT, FORMAT_VERSION)
    if not ours:
        raise CheckpointError(f"{where}: not an rnnkit trainer state of format version {FORMAT_VERSION}")
    optimizer_state = None
    if OPTIMIZER in meta["files"]:
        arrays = read_safetensors(f, OPTIMIZER, meta)
        if finite:
            check_finite(f.where(OPTIMIZER), arrays)
        try:
            optimizer_state = unflatten_state(arrays, resume.get("optimizer"))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{where}: the optimizer skeleton does not match {OPTIMIZER}: {e}") from e
    return optimizer_state, resume.get("trainer")
