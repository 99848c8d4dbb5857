"""Checkpoints: a folder of safetensors and JSON, written atomically, loaded without ever unpickling.

On disk (format ``rnnkit-checkpoint``, version 1)::

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

Crash safety (one writer per path at a time). `save_checkpoint` writes every file into a fresh sibling
folder ``.<name>.tmp-<random>`` and fsyncs the files and the folder; only then it swaps:

1. if ``path`` exists, rename it to ``<name>.old``;
2. rename the temporary folder to ``path``;
3. delete ``<name>.old``.

``path`` therefore only ever appears by renaming a complete, fsynced folder. A crash before step 1 leaves
the old checkpoint at ``path`` (plus a stale temporary folder); between steps 1 and 2 -- the one small window --
there is nothing at ``path`` but the old checkpoint is complete at ``<name>.old``; after step 2 the new one
is at ``path`` (a crash in step 3 leaves a partly deleted ``<name>.old``, which loading ignores because
``path`` exists). `load_checkpoint` never looks at temporary folders; when ``path`` is missing and
``<name>.old`` exists it loads that, with a warning. The next save removes stale temporary folders and
``<name>.old`` (the latter once a complete checkpoint is at ``path`` again).

Loading reads each file once through a handle on the folder (so a save renaming it meanwhile cannot mix
two versions), checks sizes and SHA-256 against ``config.json``, checks the safetensors header itself (its
length against the file size, its JSON, the dtypes) before the safetensors library parses the rest, and
refuses anything wrong with a `CheckpointError` naming the file. A reader beside a writer gets the old or
the new checkpoint; if the copy it opened is deleted under it, it tries again (a few times).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "flatten_state", "unflatten_state"]

FORMAT = "rnnkit-checkpoint"
FORMAT_VERSION = 1
#: The dtypes a checkpoint may hold: NumPy name -> safetensors name.
DTYPES = {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32", "uint8": "U8", "bool": "BOOL"}
_SAFETENSORS_DTYPES = set(DTYPES.values())
MAX_HEADER_BYTES = 100 * 2**20     # the safetensors library's own limit
MAX_JSON_BYTES = 256 * 2**20
_ATTEMPTS = 3
MODEL, OPTIMIZER, TRAINER, CONFIG = "model.safetensors", "optimizer.safetensors", "trainer.json", "config.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, tampered with, or not matching the model."""


class _Vanished(CheckpointError):
    """A folder or file that disappeared while loading: worth another try (a save may be swapping)."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns; ``path`` is the folder actually read."""

    path: Path
    weights: dict[str, np.ndarray]
    config: dict
    optimizer_state: Any = None
    trainer_state: Any = None
    rnnkit_version: str = ""


# ----------------------------------------------------------------------------------------------- saving

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
    files = _serialize(weights, config, optimizer_state, trainer_state)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(path)
    _remove_stale(path)
    tmp = _write_temp(path, files)
    _swap(tmp, path)
    return path


def _target(path) -> Path:
    """The absolute, normalised checkpoint path; it must name a folder, not a root or '..'."""
    path = Path(os.path.abspath(path))
    if path.name in ("", ".", ".."):
        raise ValueError(f"{path}: a checkpoint path must name a folder")
    return path


def _aside(path: Path) -> Path:
    """Where the previous checkpoint waits during a swap."""
    return path.with_name(path.name + ".old")


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _serialize(weights, config, optimizer_state, trainer_state) -> dict[str, bytes]:
    """Every file of the checkpoint as bytes, ``config.json`` last; all input checks happen here."""
    from rnnkit import __version__

    weights = _checked_arrays(weights, "weights")
    _check_json(config, "config", dict)
    files = {MODEL: _safetensors_bytes(weights)}
    if optimizer_state is not None or trainer_state is not None:
        if trainer_state is not None:
            _check_json(trainer_state, "trainer_state", dict)
        skeleton = None
        if optimizer_state is not None:
            arrays, skeleton = flatten_state(optimizer_state)
            files[OPTIMIZER] = _safetensors_bytes(arrays)
        files[TRAINER] = _json_bytes({"format": FORMAT, "format_version": FORMAT_VERSION,
                                      "trainer": trainer_state, "optimizer": skeleton})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
        "config": config,
        "tensors": {k: {"dtype": a.dtype.name, "shape": list(a.shape)} for k, a in weights.items()},
        "files": {k: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for k, b in files.items()},
    }
    files[CONFIG] = _json_bytes(meta)
    return files


def _checked_array(a, where: str) -> np.ndarray:
    """A C-contiguous little-endian copy or view of ``a``, which must be an array of an allowed dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where} is a {type(a).__name__}, not a NumPy array "
                        "(convert torch tensors with .detach().cpu().numpy())")
    if a.dtype.name not in DTYPES:
        raise TypeError(f"{where} has dtype {a.dtype}; a checkpoint holds only {', '.join(DTYPES)}")
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")


def _checked_arrays(arrays, where: str) -> dict[str, np.ndarray]:
    """A flat ``{str: array}`` dict, each array checked."""
    if not isinstance(arrays, dict):
        raise TypeError(f"{where} must be a dict of NumPy arrays, got {type(arrays).__name__}")
    for k in arrays:
        if not isinstance(k, str):
            raise TypeError(f"{where}: key {k!r} is not a string")
    return {k: _checked_array(a, f"{where}[{k!r}]") for k, a in arrays.items()}


def _check_json(obj, where: str, kind=None) -> None:
    """Refuse what JSON cannot hold or would change silently (non-string keys, NumPy values), naming where."""
    if kind is not None and not isinstance(obj, kind):
        raise TypeError(f"{where} must be a {kind.__name__}, got {type(obj).__name__}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string (JSON keys are strings)")
            _check_json(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_json(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (str, int, float))):
        raise TypeError(f"{where} is a {type(obj).__name__}, not JSON-able "
                        "(convert NumPy values with .item() or .tolist())")


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


def _check_replaceable(path: Path) -> None:
    """Refuse to replace anything but a checkpoint folder or an empty folder."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or (any(path.iterdir()) and not (path / CONFIG).is_file()):
        raise FileExistsError(f"{path} exists and is not a checkpoint folder; refusing to replace it")


def _remove_stale(path: Path) -> None:
    """Delete temporary folders of crashed saves, and ``<name>.old`` if a complete checkpoint is at ``path``."""
    prefix = _temp_prefix(path)
    for p in path.parent.iterdir():
        if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
    if path.is_dir() and _aside(path).is_dir():
        shutil.rmtree(_aside(path))


def _write_temp(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` into a new temporary sibling folder, fsynced; removed again if writing fails."""
    tmp = path.with_name(_temp_prefix(path) + secrets.token_hex(8))
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make renames and new entries in a folder durable (POSIX; a no-op on Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap(tmp: Path, path: Path) -> None:
    """Put the complete folder ``tmp`` at ``path``; see the module docstring for the crash argument."""
    old = _aside(path)
    if path.exists():
        os.replace(path, old)
        _fsync_dir(path.parent)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- loading

def load_checkpoint(path, expected: dict[str, tuple] | None = None, load_optimizer: bool = False,
                    check_finite: bool = False) -> Checkpoint:
    """Load and validate the checkpoint folder at ``path``; any problem raises `CheckpointError`.

    ``expected``: ``{name: (shape, dtype)}`` the weights must match exactly (``dtype`` None: any);
    e.g. ``{k: (v.shape, v.dtype) for k, v in model.state_dict().items()}``.
    ``load_optimizer``: also load the optimizer and trainer states (an error if the checkpoint has none).
    ``check_finite``: refuse NaN or infinite values in the loaded float arrays.
    A file vanishing mid-read (a concurrent save swapping folders) is retried a few times.
    """
    for attempt in range(_ATTEMPTS):
        try:
            return _load_once(_target(path), expected, load_optimizer, check_finite)
        except _Vanished:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def _load_once(path: Path, expected, load_optimizer: bool, check_finite: bool) -> Checkpoint:
    folder = _locate(path)
    with _Folder(folder) as f:
        meta = _read_config(f)
        weights = _read_safetensors(f, MODEL, meta)
        _check_tensor_list(f.where(MODEL), weights, meta["tensors"])
        optimizer_state = trainer_state = None
        if load_optimizer:
            optimizer_state, trainer_state = _read_resume_state(f, meta, check_finite)
    if check_finite:
        _check_finite(folder / MODEL, weights)
    if expected is not None:
        _check_expected(folder / MODEL, weights, expected)
    return Checkpoint(folder, weights, meta["config"], optimizer_state, trainer_state,
                      str(meta.get("rnnkit_version", "")))


def _locate(path: Path) -> Path:
    """The folder to read: ``path``, or ``<name>.old`` left by a save interrupted between its renames."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return path
        raise CheckpointError(f"{path}: not a checkpoint folder (a folder with {CONFIG} and {MODEL})")
    except FileNotFoundError:
        pass
    old = _aside(path)
    if old.is_dir():
        warnings.warn(f"no checkpoint at {path}: a save was interrupted between its two renames; loading the "
                      f"previous checkpoint from {old}. The next save to {path} cleans up, or rename {old} "
                      f"to {path} by hand.", RuntimeWarning, stacklevel=4)
        return old
    raise CheckpointError(f"{path}: no checkpoint there")


class _Folder:
    """A checkpoint folder opened once: every file comes from the same copy even if a save renames it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None
        if os.open in os.supports_dir_fd:
            try:
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except FileNotFoundError:
                raise _Vanished(f"{path}: vanished while loading") from None
            except OSError as e:
                raise CheckpointError(f"{path}: cannot open the checkpoint folder ({e})") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)

    def where(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str, size: int | None = None, limit: int = MAX_JSON_BYTES) -> bytes:
        """The bytes of a regular file, which must be ``size`` bytes long (or at most ``limit``)."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)     # a FIFO planted here must not block us
        try:
            if self.fd is not None:
                fd = os.open(name, flags, dir_fd=self.fd)
            else:
                fd = os.open(self.where(name), flags)
        except FileNotFoundError:
            raise _Vanished(f"{self.where(name)}: missing") from None
        except OSError as e:
            raise CheckpointError(f"{self.where(name)}: cannot open ({e})") from e
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{self.where(name)}: not a regular file")
            if size is not None and st.st_size != size:
                raise CheckpointError(f"{self.where(name)}: {st.st_size} bytes, but {CONFIG} records {size}: "
                                      "the file was truncated or changed")
            if size is None and st.st_size > limit:
                raise CheckpointError(f"{self.where(name)}: {st.st_size} bytes, more than {limit} allowed")
            data = fh.read(st.st_size)
        if len(data) != st.st_size:
            raise CheckpointError(f"{self.where(name)}: changed while being read")
        return data


def _parse_json(data: bytes, where) -> Any:
    """JSON from bytes, or a CheckpointError naming ``where``."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: not valid JSON ({e})") from e


def _read_config(f: _Folder) -> dict:
    """``config.json``, checked: format name and version, and the shape of its keys."""
    where = f.where(CONFIG)
    meta = _parse_json(f.read(CONFIG), where)
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


def _read_safetensors(f: _Folder, name: str, meta: dict) -> dict[str, np.ndarray]:
    """The verified arrays of a safetensors file."""
    data = _read_verified(f, name, meta)
    _check_safetensors_header(data, f.where(name))
    try:
        arrays = _safetensors().load(data)
    except Exception as e:     # SafetensorError, and whatever a malformed file provokes
        raise CheckpointError(f"{f.where(name)}: not a valid safetensors file ({e})") from e
    return {k: a if a.flags.writeable else a.copy() for k, a in arrays.items()}


def _check_safetensors_header(data: bytes, where) -> None:
    """Check the header before the library sees it: the length prefix against the file, the JSON, the dtypes."""
    if len(data) < 8:
        raise CheckpointError(f"{where}: {len(data)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > MAX_HEADER_BYTES:
        raise CheckpointError(f"{where}: header length {n} does not fit the file ({len(data)} bytes); "
                              "not a safetensors file, or truncated")
    header = _parse_json(data[8:8 + n], f"{where} (safetensors header)")
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: safetensors header is not a JSON object")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{where}: tensor {name!r} has dtype {dtype!r}; allowed: "
                                  + ", ".join(sorted(_SAFETENSORS_DTYPES)))


def _check_tensor_list(where, arrays: dict[str, np.ndarray], tensors: dict) -> None:
    """The arrays must be exactly those that ``config.json`` lists."""
    found = {k: {"dtype": a.dtype.name, "shape": list(a.shape)} for k, a in arrays.items()}
    if found != tensors:
        raise CheckpointError(f"{where}: its tensors differ from the list in {CONFIG}")


def _read_resume_state(f: _Folder, meta: dict, check_finite: bool):
    """The optimizer state (rebuilt from its skeleton and arrays) and the trainer state."""
    if TRAINER not in meta["files"]:
        raise CheckpointError(f"{f.path}: saved without optimizer or trainer state; "
                              "load it with load_optimizer=False")
    where = f.where(TRAINER)
    resume = _parse_json(_read_verified(f, TRAINER, meta), where)
    ours = isinstance(resume, dict) and (resume.get("format"), resume.get("format_version")) == (FORMAT, FORMAT_VERSION)
    if not ours:
        raise CheckpointError(f"{where}: not an rnnkit trainer state of format version {FORMAT_VERSION}")
    optimizer_state = None
    if OPTIMIZER in meta["files"]:
        arrays = _read_safetensors(f, OPTIMIZER, meta)
        if check_finite:
            _check_finite(f.where(OPTIMIZER), arrays)
        try:
            optimizer_state = unflatten_state(arrays, resume.get("optimizer"))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{where}: the optimizer skeleton does not match {OPTIMIZER}: {e}") from e
    return optimizer_state, resume.get("trainer")


def _check_finite(where, arrays: dict[str, np.ndarray]) -> None:
    bad = [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(f"{where}: non-finite values in {', '.join(bad)}")


def _check_expected(where, weights: dict[str, np.ndarray], expected: dict) -> None:
    """Compare the weights with ``{name: (shape, dtype)}``, listing every difference in one message."""
    problems = []
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    for k, (shape, dtype) in expected.items():
        if k not in weights:
            continue
        a = weights[k]
        if a.shape != tuple(shape):
            problems.append(f"{k} has shape {a.shape}, expected {tuple(shape)}")
        if dtype is not None and a.dtype != np.dtype(dtype):
            problems.append(f"{k} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if problems:
        raise CheckpointError(f"{where}: the weights do not fit the model: " + "; ".join(problems))


# ----------------------------------------------------------------------------------- nested state <-> flat

def flatten_state(state) -> tuple[dict[str, np.ndarray], Any]:
    """Split a nested state into flat arrays ``{"a.b.c": array}`` and a JSON-able skeleton of the rest.

    ``state`` is made of dicts (string or int keys), lists, tuples, NumPy arrays and scalars, and JSON
    scalars. The skeleton mirrors it with each array replaced by ``{"$array": key}`` (a NumPy scalar by
    ``{"$scalar": key}``), tuples by ``{"$tuple": [...]}``, and dicts whose keys are not all plain strings
    by ``{"$dict": [[key, value], ...]}``. `unflatten_state` rebuilds ``state`` exactly.
    """
    arrays: dict[str, np.ndarray] = {}
    return arrays, _flatten(state, (), arrays)


def _flatten(obj, keys: tuple, arrays: dict):
    if isinstance(obj, (np.ndarray, np.generic)):
        name = ".".join(map(str, keys))
        if name in arrays:
            raise ValueError(f"two entries of the state flatten to the same key {name!r}")
        arrays[name] = _checked_array(np.asarray(obj), f"state[{name!r}]")
        return {"$scalar" if isinstance(obj, np.generic) else "$array": name}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"state key {k!r} at {'.'.join(map(str, keys)) or 'the top'} is not a str or int")
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _flatten(v, (*keys, k), arrays) for k, v in obj.items()}
        return {"$dict": [[k, _flatten(v, (*keys, k), arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, (*keys, i), arrays) for i, v in enumerate(obj)]
        return {"$tuple": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    raise TypeError(f"state entry {'.'.join(map(str, keys))!r} is a {type(obj).__name__}; "
                    "expected arrays, dicts, lists, tuples, numbers, strings or None")


def unflatten_state(arrays: dict[str, np.ndarray], skeleton):
    """Rebuild the nested state from `flatten_state`'s output; every array must be used exactly once."""
    used: set[str] = set()
    state = _unflatten(skeleton, arrays, used)
    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"arrays not referenced by the skeleton: {', '.join(unused)}")
    return state


def _unflatten(node, arrays: dict, used: set):
    if isinstance(node, list):
        return [_unflatten(v, arrays, used) for v in node]
    if not isinstance(node, dict):
        return node
    tags = [k for k in node if k.startswith("$")]
    if not tags:
        return {k: _unflatten(v, arrays, used) for k, v in node.items()}
    if len(node) != 1:
        raise ValueError(f"malformed skeleton node with keys {sorted(node)}")
    tag, value = tags[0], node[tags[0]]
    if tag in ("$array", "$scalar"):
        return _take_array(value, tag == "$scalar", arrays, used)
    if tag == "$tuple" and isinstance(value, list):
        return tuple(_unflatten(v, arrays, used) for v in value)
    if tag == "$dict" and isinstance(value, list):
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int)) for p in value):
            raise ValueError("malformed $dict node")
        return {k: _unflatten(v, arrays, used) for k, v in value}
    raise ValueError(f"unknown or malformed skeleton tag {tag!r}")


def _take_array(name, scalar: bool, arrays: dict, used: set):
    """The array a skeleton leaf names (as a NumPy scalar if ``scalar``), marked as used."""
    if not isinstance(name, str) or name not in arrays:
        raise ValueError(f"the skeleton names an array {name!r} that is not there")
    if name in used:
        raise ValueError(f"the skeleton names the array {name!r} twice")
    used.add(name)
    a = arrays[name]
    if scalar:
        if a.ndim != 0:
            raise ValueError(f"array {name!r} should be a scalar but has shape {a.shape}")
        return a[()]
    return a
