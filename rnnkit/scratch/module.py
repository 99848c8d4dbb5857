"""Parameters and the module base class of the scratch engine.

A `Parameter` is an array with a gradient of the same shape beside it. A `Module` finds its parameters
and sub-modules among its attributes (in the order they were set, as PyTorch does), names them with dots
(`layers.0.weight`), and gives `state_dict` / `load_state_dict` with PyTorch's names.
"""
from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from typing import Iterator, Mapping

import numpy as np

from ..checkpoint.checks import check_tied

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_dtype(dtype) -> np.dtype:
    """The engine runs in float32 or float64 only; anything else is a clear error."""
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def dtype_note(dtype) -> str:
    """", dtype=float64" in a repr (float32, the default, goes unsaid, and torch says neither)."""
    return "" if np.dtype(dtype) == np.float32 else f", dtype={np.dtype(dtype)}"


def make_rng(seed_or_rng=None) -> np.random.Generator:
    """A NumPy Generator from a seed, a Generator, or None (fresh entropy)."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


class ModelTooLarge(ValueError):
    """Settings that would build a model past the parameter budget in force (`parameter_budget`)."""


_BUDGET: contextvars.ContextVar = contextvars.ContextVar("rnnkit_parameter_budget", default=None)


@contextmanager
def parameter_budget(values: int | None, what: str):
    """Within: the parameters built are counted, each before it is allocated (`claim`), and the first that
    would take their total past `values` raises ModelTooLarge("`what`: ..."), so that settings from a hostile
    checkpoint or a typo (--hidden 100000000) fail at once instead of allocating petabytes. None: no limit."""
    token = _BUDGET.set(None if values is None else [int(values), int(values), what])
    try:
        yield
    finally:
        _BUDGET.reset(token)


def claim(shape) -> tuple[int, ...]:
    """`shape` of a parameter about to be allocated, counted against the `parameter_budget` in force."""
    shape = tuple(int(d) for d in shape)
    budget = _BUDGET.get()
    if budget is not None:
        budget[0] -= math.prod(shape)
        if budget[0] < 0:
            raise ModelTooLarge(f"{budget[2]}: a parameter of shape {list(shape)} takes the model past "
                                f"{budget[1]:,} values")
    return shape


class Parameter:
    """An array to learn, `data`, and its accumulated gradient, `grad` (same shape and dtype)."""

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data: np.ndarray, requires_grad: bool = True):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)
        self.requires_grad = requires_grad  # False: frozen, optimisers leave it alone

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: parameter discovery, state dicts, train/eval mode, zero_grad."""

    training: bool = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _children(self) -> Iterator[tuple[str, object]]:
        for name, value in vars(self).items():
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) pairs; a Parameter shared by two modules (tied weights) comes once, under its
        first name, unless `remove_duplicate=False` (as in PyTorch)."""
        seen: set[int] = set()
        for name, param in self._all_parameters(prefix):
            if remove_duplicate:
                if id(param) in seen:
                    continue
                seen.add(id(param))
            yield name, param

    def _all_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in self._children():
            full = f"{prefix}{name}"
            if isinstance(value, Parameter):
                yield full, value
            else:
                yield from value._all_parameters(full + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator["Module"]:
        yield self
        for _, value in self._children():
            if isinstance(value, Module):
                yield from value.modules()

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout on, backward's caches kept), or eval mode; training unlocks the weights."""
        if mode:
            self.unlock_weights()
        for m in self.modules():
            m.training = mode
        return self

    # Locked weights. A module with locked weights promises that they stay as they are, so layers may keep
    # what they derive from them between calls: the recurrent layers pack their weights (reordered, halved,
    # transposed) once instead of on every eval-mode forward, which is most of the time of a batch-1 step
    # (generating text token by token, a server answering one text). `train()` unlocks, `load_state_dict`
    # drops what was derived; code that writes into `Parameter.data` itself must unlock first.
    # (Not to be confused with a frozen parameter, `requires_grad=False`, which only the optimiser skips.)
    weights_locked: bool = False

    def lock_weights(self) -> "Module":
        for m in self.modules():
            m.weights_locked = True
            m._forget_weights()
        return self

    def unlock_weights(self) -> "Module":
        for m in self.modules():
            m.weights_locked = False
            m._forget_weights()
        return self

    @contextmanager
    def locked_weights(self):
        """`with model.locked_weights(): ...` runs with the weights locked, then leaves the module as it was
        (locked before, it stays locked)."""
        if self.weights_locked:
            yield self
            return
        self.lock_weights()
        try:
            yield self
        finally:
            self.unlock_weights()

    def _forget_weights(self) -> None:
        """Drop whatever was derived from the weights (modules that keep something override this)."""

    def eval(self) -> "Module":
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's names."""
        return {name: p.data.copy() for name, p in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays (NumPy, or anything `np.asarray` takes, e.g. CPU tensors) into the parameters.

        Names must match exactly when `strict`; shapes must always match. Values are cast to the
        parameter's dtype. A tied parameter (two names, one array) must be given the same values under
        each of its names.
        """
        own = dict(self.named_parameters(remove_duplicate=False))
        check_tied(state, {name: id(p) for name, p in own.items()})
        if strict:
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if missing or unexpected:
                raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if name not in own:
                continue
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            param = own[name]
            if array.shape != param.data.shape:
                raise ValueError(f"{name}: shape {array.shape} does not match the parameter's {param.data.shape}")
            param.data[...] = array
        for m in self.modules():    # locked or not, nothing derived from the old weights may stay
            m._forget_weights()

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    # How a module prints, as in PyTorch: `Name(extra_repr)`, or, with sub-modules, one `(name): repr` line
    # for each below the extra_repr, indented.
    def extra_repr(self) -> str:
        """The module's own settings, for its repr (`LSTM(16, 32, num_layers=2, batch_first=True)`)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        children = [(name, value) for name, value in self._children() if isinstance(value, Module)]
        for name, child in children:
            lines.append(f"({name}): " + repr(child).replace("\n", "\n  "))
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not children:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules run in a chain, as torch.nn.Sequential: forward(x) = m_n(... m_2(m_1(x))), and backward(dy)
    runs their backwards in reverse order, each one's input gradient the gradient of the one before.

        model = Sequential(Embedding(1000, 64), LSTM(64, 128, num_layers=2), Linear(128, 1000))
        logits = model(tokens)                      # tokens (batch, time) -> (batch, time, 1000)
        model.backward(d_logits)                    # every parameter's .grad, by BPTT through the LSTM

    A module whose forward returns a tuple, as the recurrent layers do (output, final state), passes its
    first element on; the rest is kept in `states[i]`. Its backward gets the output's gradient alone (the
    final state gets none) and its first result, the input's gradient, goes on. `lengths` (batch,) goes to
    every module whose forward takes `lengths` (recurrent layers, pooling). An Embedding's backward returns
    None (indices have no gradient), so it comes first. Parameters are named as in torch.nn.Sequential
    (`0.weight`, `1.weight_ih_l0`, ...), so state dicts move between the two.
    """

    def __init__(self, *modules: Module):
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes modules; argument {i} is a {type(module).__name__}")
        self.layers = list(modules)
        self.states: list[tuple] = []       # per module: what its forward returned beside the output, if any

    def _children(self) -> Iterator[tuple[str, object]]:
        for i, module in enumerate(self.layers):
            yield str(i), module

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __getitem__(self, index):
        return Sequential(*self.layers[index]) if isinstance(index, slice) else self.layers[index]

    def append(self, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential takes modules, not a {type(module).__name__}")
        self.layers.append(module)
        return self

    def forward(self, x, lengths=None):
        self.states = []
        for module in self.layers:
            x = module(x, lengths=lengths) if _takes_lengths(module) else module(x)
            if isinstance(x, tuple):
                x, rest = x[0], x[1:]
                self.states.append(rest[0] if len(rest) == 1 else rest)
            else:
                self.states.append(None)
        return x

    def backward(self, dy):
        for module in reversed(self.layers):
            dy = module.backward(dy)
            if isinstance(dy, tuple):
                dy = dy[0]          # (d_input, d_initial_state): the chain goes on through the input
        return dy


def _takes_lengths(module: Module) -> bool:
    import inspect

    return "lengths" in inspect.signature(module.forward).parameters
