"""Nested state (a torch optimizer's state_dict, in NumPy) <-> flat arrays and a JSON skeleton, exactly.

`flatten_state` refuses what it could not rebuild (arrays of a dtype a checkpoint cannot hold, other types,
two entries flattening to the same key); `unflatten_state` rebuilds the state bit for bit and types included
(tuples, int keys, NumPy scalars), and refuses a skeleton that does not match its arrays with a ValueError.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .checks import checked_array


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
        arrays[name] = checked_array(np.asarray(obj), f"state[{name!r}]")
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
