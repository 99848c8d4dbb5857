"""What a checkpoint may hold, checked both ways: inputs before anything is written, files before they are trusted.

Writing refuses what would not come back exactly: arrays of a dtype outside `DTYPES`, JSON with non-string
keys or NumPy values. Reading treats each file as hostile and never unpickles: JSON is parsed with its
errors caught; a safetensors header is checked (its length against the file size, its JSON, the dtypes)
before the safetensors library parses the rest; loaded arrays can be checked for NaN and infinity and
against the shapes and dtypes a model expects. Every refusal while reading is a `CheckpointError` naming
the file. (How a file is read at all -- a regular file, of the recorded size or under a limit -- is
`atomic._Folder.read`.)
"""
from __future__ import annotations

import json
import struct
from typing import Any, Mapping

import numpy as np

#: The dtypes a checkpoint may hold: NumPy name -> safetensors name.
DTYPES = {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32", "uint8": "U8", "bool": "BOOL"}
SAFETENSORS_DTYPES = set(DTYPES.values())
_NUMPY_DTYPES = {v: k for k, v in DTYPES.items()}
MAX_HEADER_BYTES = 100 * 2**20     # the safetensors library's own limit
MAX_JSON_BYTES = 256 * 2**20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, tampered with, or not matching the model."""


# ----------------------------------------------------------------------------------------------- inputs

def checked_array(a, where: str) -> np.ndarray:
    """A C-contiguous little-endian copy or view of ``a``, which must be an array of an allowed dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where} is a {type(a).__name__}, not a NumPy array "
                        "(convert torch tensors with .detach().cpu().numpy())")
    if a.dtype.name not in DTYPES:
        raise TypeError(f"{where} has dtype {a.dtype}; a checkpoint holds only {', '.join(DTYPES)}")
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")


def checked_arrays(arrays, where: str) -> dict[str, np.ndarray]:
    """A flat ``{str: array}`` dict, each array checked."""
    if not isinstance(arrays, dict):
        raise TypeError(f"{where} must be a dict of NumPy arrays, got {type(arrays).__name__}")
    for k in arrays:
        if not isinstance(k, str):
            raise TypeError(f"{where}: key {k!r} is not a string")
    return {k: checked_array(a, f"{where}[{k!r}]") for k, a in arrays.items()}


def check_json(obj, where: str, kind=None) -> None:
    """Refuse what JSON cannot hold or would change silently (non-string keys, NumPy values), naming where."""
    if kind is not None and not isinstance(obj, kind):
        raise TypeError(f"{where} must be a {kind.__name__}, got {type(obj).__name__}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string (JSON keys are strings)")
            check_json(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_json(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (str, int, float))):
        raise TypeError(f"{where} is a {type(obj).__name__}, not JSON-able "
                        "(convert NumPy values with .item() or .tolist())")


# ------------------------------------------------------------------------------------------------ files

def parse_json(data: bytes, where) -> Any:
    """JSON from bytes, or a CheckpointError naming ``where``."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: not valid JSON ({e})") from e


def check_safetensors_header(data: bytes, where) -> dict:
    """Check the header before the library sees it: the length prefix against the file, the JSON, the dtypes.

    Returns its tensor list, ``{name: {"dtype": NumPy name, "shape": [...]}}`` (as config.json's ``tensors``),
    read without loading any tensor.
    """
    if len(data) < 8:
        raise CheckpointError(f"{where}: {len(data)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > MAX_HEADER_BYTES:
        raise CheckpointError(f"{where}: header length {n} does not fit the file ({len(data)} bytes); "
                              "not a safetensors file, or truncated")
    header = parse_json(data[8:8 + n], f"{where} (safetensors header)")
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: safetensors header is not a JSON object")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{where}: tensor {name!r} has dtype {dtype!r}; allowed: "
                                  + ", ".join(sorted(SAFETENSORS_DTYPES)))
    return {name: {"dtype": _NUMPY_DTYPES[info["dtype"]], "shape": info.get("shape")}
            for name, info in header.items() if name != "__metadata__"}


def check_finite(where, arrays: dict[str, np.ndarray]) -> None:
    bad = [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(f"{where}: non-finite values in {', '.join(bad)}")


def check_expected(where, weights: dict[str, np.ndarray], expected: dict) -> None:
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


# ----------------------------------------------------------------------------------------------- weights

def check_tied(state: Mapping, identity: Mapping[str, object]) -> None:
    """Refuse a state dict that gives one tied parameter (names with the same `identity`) different values:
    which of them would win is an accident of order."""
    first: dict = {}
    for name in identity:
        if name in state:
            key = identity[name]
            if key in first:
                other = first[key]
                a, b = (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                        for v in (state[other], state[name]))
                if a.shape == b.shape and not np.array_equal(a, b):
                    raise ValueError(f"{other} and {name} are one tied parameter, but the weights give them "
                                     f"different values")
            else:
                first[key] = name
