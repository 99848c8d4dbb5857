"""A small schema for the JSON objects in config.json: which keys, which values; one-line errors naming the field.

    check_object(value, {"hidden_size": Key(integer(1)), "dropout": Key(number(0, 1), required=False)},
                 "model", where)        # CheckpointError: ".../config.json: model.hidden_size must be ..."

Written out rather than with pydantic: core rnnkit depends on NumPy only, and predict, evaluate and generate
load checkpoints without the `serve` extra, so a check that ran only where pydantic is installed would let the
same file through in one place and not in another. A check is a function returning what is wrong with a value
(a phrase such as "must be an integer from 1 to 2147483647") or None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .checks import CheckpointError

Check = Callable[[object], "str | None"]
MAX_INT = 2**31 - 1     # no setting needs more; a larger one is an attack or a typo


@dataclass(frozen=True)
class Key:
    check: Check
    required: bool = True


def json_type(value) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _shown(value) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else json_type(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(low: int = 0, high: int = MAX_INT) -> Check:
    def check(value):
        if type(value) is not int or not low <= value <= high:
            return f"must be an integer from {low} to {high}, got {_shown(value)}"
    return check


def number(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    """A finite number in [low, high]; ``low_open`` / ``high_open`` leave that end out."""
    def check(value):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (low < value if low_open else low <= value) and (value < high if high_open else value <= high))
        if not ok:
            return (f"must be a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}, "
                    f"got {_shown(value)}")
    return check


def boolean(value):
    if not isinstance(value, bool):
        return f"must be true or false, got {_shown(value)}"


def string(value):
    if not isinstance(value, str):
        return f"must be a string, got {_shown(value)}"


def choice(*choices) -> Check:
    def check(value):
        if not isinstance(value, str) or value not in choices:
            return f"must be one of {', '.join(choices)}, got {_shown(value)}"
    return check


def optional(inner: Check) -> Check:
    """``inner``, or null."""
    return lambda value: None if value is None else inner(value)


def strings(value):
    """An array of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"must be an array of strings, got {json_type(value)}"


def any_object(value):
    if not isinstance(value, dict):
        return f"must be an object, got {json_type(value)}"


def check_object(value, keys: dict[str, Key], field: str, where) -> dict:
    """Refuse a ``value`` that is not an object, lacks a required key, has a key not in ``keys``, or holds a
    value its check refuses: one CheckpointError naming ``where`` and the field (``model.hidden_size``)."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: {field} must be an object, got {json_type(value)}")
    missing = [k for k, key in keys.items() if key.required and k not in value]
    if missing:
        raise CheckpointError(f"{where}: {field} lacks the key(s) {', '.join(missing)}")
    extra = [k for k in value if k not in keys]
    if extra:
        raise CheckpointError(f"{where}: {field} has unknown key(s) {', '.join(map(repr, extra[:5]))}; "
                              f"it takes {', '.join(keys)}")
    for k, v in value.items():
        problem = keys[k].check(v)
        if problem:
            raise CheckpointError(f"{where}: {field}.{k} {problem}")
    return value
