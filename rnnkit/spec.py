"""The engine-neutral vocabulary: the names a user may choose, each listed once and checked in one place.

Both engines (rnnkit/scratch, rnnkit/torch), the trainer, the tasks and the CLI take their choices from here,
so a new cell, pooling, optimizer or schedule is added in one line.
"""
from __future__ import annotations

ENGINES = ("scratch", "torch")
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}     # gate blocks in weight_ih/weight_hh's rows
POOLING = ("last", "mean", "max", "attention")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")


def check_choice(kind: str, value, choices) -> str:
    """`value` if it is one of `choices`, else a ValueError that lists them ("unknown cell 'x'; choose one of ...")."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_engine(name) -> str:
    return check_choice("engine", name, ENGINES)


def check_cell(name) -> str:
    return check_choice("cell", name, CELLS)


def check_pooling(name) -> str:
    return check_choice("pooling", name, POOLING)


def check_optimizer(name) -> str:
    return check_choice("optimizer", name, OPTIMIZERS)


def check_dtype(name) -> str:
    return check_choice("dtype", name, DTYPES)
