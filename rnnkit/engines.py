"""The only door to an engine: the `Engine` protocol, `build_engine()`, the carry helpers and `info()`; and the
processes a run trains on (`launch()`: torchrun's variables, `World`, `join_world()`).

Both engines (rnnkit/scratch, rnnkit/torch) build a model from the same keyword arguments and expose it
through an object with the same methods (`ScratchEngine` / `TorchEngine`, both `Engine`s), so the trainer,
the tasks, the CLI and the server never branch on the engine, and never import an engine module: they come
here (tests/test_boundaries.py checks it).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .spec import check_device, check_dtype, check_layers, check_precision
from .spec import check_engine  # the tasks and the server take it from here


@runtime_checkable
class Engine(Protocol):
    """A task model on one engine, as the trainer, the tasks and the server use it. NumPy at the boundary:
    batches (dicts of arrays), weights, optimizer and RNG state go in and come out as NumPy arrays, numbers,
    strings, lists and dicts. A *carry* is what a task passes from one batch to the next (the language
    model's recurrent state: None, h, or (h, c)); the engine may keep it in its own form between steps
    (`to_numpy` / `from_numpy` convert it for checkpoints)."""

    name: str   # "scratch" or "torch": recorded in checkpoints, checked on resume
    model: Any  # the engine's task model; engine-neutral code sets only its plain settings (class_weights)

    @property
    def lr(self) -> float:
        """The learning rate of the next update; the trainer sets it before each step (the schedule)."""

    @lr.setter
    def lr(self, value: float) -> None: ...

    def train_step(self, batch: dict, carry=None) -> tuple[float, float, Any]:
        """One update: (loss, gradient norm before clipping, carry). A non-finite loss or gradient leaves the
        weights untouched. An engine whose `deferred` is True (the torch engine on a GPU) returns the loss and
        norm as values on its device that nothing has read yet; its `settle()` then reads them all at once
        (None, or the first non-finite step: {"steps_ago", "loss", "norm"}), and the trainer calls it only at
        its log steps and before saving (rnnkit/torch/step_guard.py)."""

    def eval_loss(self, batch: dict, carry=None) -> tuple[float, int, Any]:
        """(summed loss, number of targets, carry) in eval mode, without gradients."""

    def through_time(self, batch: dict, carry=None) -> tuple[float, list[dict]]:
        """(loss in eval mode, one record per recurrent layer: cell, layer, inputs (batch, time, features),
        h0 (batch, hidden), h and grad_h = ∂L/∂h_t (batch, time, hidden), weight_ih/hh, bias_ih/hh), for
        rnnkit.diagnostics. Weights and optimizer state stay as they were."""

    def describe(self) -> str:
        """Where the model ran: the scratch engine's path per recurrent layer, the torch engine's device."""

    def predict(self, *inputs):
        """The model's `predict` in eval mode: NumPy outputs (a language model: (logits, state))."""

    def call(self, method: str, *inputs):
        """The model's inference method `method` (one of its `inference_methods`, e.g. a translation model's
        "encode" and "decode_step") in eval mode without gradients: NumPy in, NumPy out."""

    def lock_weights(self) -> None:
        """Promise that the weights no longer change (a served model); training unlocks."""

    def locked_weights(self) -> contextlib.AbstractContextManager:
        """A context with the weights locked (evaluation, a generation loop); afterwards as before."""

    def weights(self) -> dict[str, np.ndarray]:
        """The state dict as NumPy arrays, PyTorch's names (tied weights under both names)."""

    def load_weights(self, weights: dict) -> None:
        """Copy arrays into the model; names and shapes must match."""

    def optimizer_state(self) -> dict:
        """The optimizer's state, NumPy arrays and plain values."""

    def load_optimizer_state(self, state: dict) -> None: ...

    def rng_state(self) -> dict:
        """The random generators' states (the dropout masks to come), NumPy arrays and plain values."""

    def set_rng_state(self, state: dict) -> None: ...

    def to_numpy(self, carry):
        """A carry as NumPy arrays (None stays None)."""

    def from_numpy(self, carry):
        """A carry of NumPy arrays as the engine keeps it between steps."""


def build_engine(engine: str, model: str, model_kwargs: dict, *, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, clip: float | None = None, momentum: float = 0.0,
                 dtype: str = "float32", seed: int = 0, device: str = "auto", frozen=(), precision: str = "fp32",
                 deterministic: bool = True, max_values: int | None = None) -> Engine:
    """An engine holding a fresh `model` ("LanguageModel", ...) built with `model_kwargs`.

    Settings that build no model, or one of more than `max_values` parameter values (default: what this
    machine's memory holds), raise ModelSettingsError before the model is allocated (`scratch_model`).

    The scratch engine seeds its model's NumPy generator with `seed`; the torch engine seeds torch.
    Parameters named in `frozen` are left out of the optimiser (they keep their values). `precision`
    (spec.PRECISIONS) and `deterministic` are the torch engine's (rnnkit/torch/engine.py).
    """
    check_engine(engine)
    check_device(engine, device)
    check_dtype(dtype)
    check_precision(engine, precision, dtype)
    opt = dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay, clip=clip, momentum=momentum)
    net = scratch_model(model, model_kwargs, dtype, seed, max_values)  # torch engine: the size checked, then dropped
    if engine == "scratch":
        from .scratch.engine import ScratchEngine

        _freeze(net, frozen, lambda p: setattr(p, "requires_grad", False))
        return ScratchEngine(net, **opt)
    del net
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ValueError("the torch engine needs PyTorch: pip install 'rnnkit[torch]'") from e
    from .torch import models
    from .torch.device import select_device
    from .torch.engine import TorchEngine

    torch.manual_seed(seed)
    where = select_device(device)
    net = getattr(models, model)(**model_kwargs).to(device=where, dtype=getattr(torch, dtype))
    _freeze(net, frozen, lambda p: p.requires_grad_(False))
    return TorchEngine(net, device=where, precision=precision, deterministic=deterministic, **opt)


class ModelSettingsError(ValueError):
    """Model settings that build no model (an unknown or ill-typed setting), or one past the parameter budget."""


def scratch_model(model: str, model_kwargs: dict, dtype: str = "float32", seed: int = 0, values: int | None = None):
    """The scratch engine's `model` built with `model_kwargs`; ModelSettingsError where they build none, or one
    of more than `values` parameter values (refused before the allocation that would cross it; default: what
    this machine's memory holds, `parameter_limit`). Both engines' models have the same parameters, so it
    sizes a torch model too."""
    from .scratch import models
    from .scratch.module import parameter_budget

    if values is None:
        values = parameter_limit(dtype)
        what = model if values is None else (  # None: the system does not say, and nothing is refused
            f"{model} too large for this machine: its {_memory_gib():.0f} GiB hold at most {values:,} parameter "
            f"values (4 copies: the weights, their gradients, the optimizer's two moments)")
    else:
        what = f"{model} settings build too large a model"
    try:
        check_layers(model_kwargs.get("num_layers"))
        with parameter_budget(values, what):
            return getattr(models, model)(**model_kwargs, dtype=getattr(np, dtype), rng=seed)
    except (TypeError, ValueError) as e:
        raise ModelSettingsError(str(e)) from e


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system, or it does not say
        return None


def _memory_gib() -> float:
    return (_memory_bytes() or 0) / 2**30


def parameter_limit(dtype: str = "float32") -> int | None:
    """The most parameter values a model may hold here: the machine's memory over 4 copies of `dtype` (the
    weights, their gradients and the optimizer's two moments); None where the system does not say."""
    memory = _memory_bytes()
    return None if memory is None else memory // (4 * np.dtype(dtype).itemsize)


def _freeze(net, names, freeze) -> None:
    params = dict(net.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"cannot freeze unknown parameters {unknown}")
    for name in names:
        freeze(params[name])


def inference_method(model, method: str):
    """The bound method `method` of `model`, if the model lists it in `inference_methods`, else a ValueError."""
    allowed = getattr(model, "inference_methods", ())
    if method not in allowed:
        raise ValueError(f"{type(model).__name__} has no inference method {method!r}; "
                         f"it has {', '.join(allowed) or 'none'}")
    return getattr(model, method)


def export_onnx(model: str, model_kwargs: dict, weights: dict, out, config: dict, overwrite: bool = False) -> list:
    """Export the task model `model` ("LanguageModel", ...) with `weights` to ONNX file(s) at `out` on the torch
    engine (rnnkit/torch/export.py: the graphs, their inputs and outputs); `config` goes into the files'
    metadata. Returns a dict per graph written (path, inputs, outputs, dynamic axes, checked difference)."""
    import importlib.util

    missing = [name for name in ("torch", "onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'rnnkit[torch,onnx]'")
    from .torch.export import export

    engine = build_engine("torch", model, model_kwargs, dtype="float32", device="cpu")
    engine.load_weights(weights)
    return export(engine.model, out, config, overwrite)


# ------------------------------------------------------------------------------------------------ processes

@dataclass(frozen=True)
class Launch:
    """Where this process stands in a `torchrun` launch: its RANK among WORLD_SIZE processes, and LOCAL_RANK
    on its host (the GPU it takes). A process started alone is rank 0 of 1."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def launch() -> Launch:
    """This process's Launch, from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK); none: 0 of 1."""
    import os

    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = os.environ.get(name)
        try:
            values[name] = None if text is None else int(text)
        except ValueError:
            raise ValueError(f"the environment variable {name}={text!r} is not a whole number (torchrun sets it; "
                             f"unset it to train in one process)") from None
    rank, size, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if size is None:
        return Launch()
    if size < 1 or rank is None or not 0 <= rank < size:
        raise ValueError(f"WORLD_SIZE={size} with RANK={rank}: torchrun sets both, with 0 <= RANK < WORLD_SIZE")
    return Launch(rank, size, local if local is not None else rank)


class World:
    """The processes a run trains on, as the trainer sees them (rnnkit/train.py). This one is a single
    process, where every exchange is the identity; rnnkit/torch/distributed.py's TorchWorld is the world of
    a torchrun launch (DistributedDataParallel), where rank 0 alone writes the run's files.

    In a checkpoint, a carry is the world's: the carries of all ranks' streams side by side on the batch
    axis (`gather_carry`), as one process with all the streams would hold it; the random generators'
    states are one per rank (`gather_rng`)."""

    rank, size = 0, 1
    CARRY_BATCH_AXIS = 1  # a carry's h and c are (layers, batch, hidden)

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files and shows its progress (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def agree(self, loss: float, tokens: int, signum: int, save: bool) -> tuple[float, int, int, bool]:
        """After a step, the same numbers on every process: (the mean loss over the processes, the tokens of
        all, a signal one of them caught (0: none), whether one of them is due to save)."""
        return loss, tokens, signum, save

    def broadcast(self, record: dict) -> dict:
        """Rank 0's `record` (numbers, strings, lists: JSON) on every process."""
        return record

    def gather_carry(self, carry):
        """A carry (None, h, or (h, c) of NumPy arrays) of every process, joined on the batch axis."""
        return carry

    def own_carry(self, carry):
        """This process's streams of a carry that `gather_carry` joined."""
        if carry is None or self.size == 1:
            return carry
        if isinstance(carry, tuple):
            return tuple(self.own_carry(c) for c in carry)
        rows = carry.shape[self.CARRY_BATCH_AXIS] // self.size
        return np.take(carry, np.arange(self.rank * rows, (self.rank + 1) * rows), axis=self.CARRY_BATCH_AXIS)

    def gather_rng(self, state: dict) -> dict:
        """The random generators' states of every process (Engine.rng_state's), for a checkpoint."""
        return state

    def own_rng(self, state: dict) -> dict:
        """This process's generator states from `gather_rng`'s record."""
        return state


def join_world(engine, seed: int = 0) -> World:
    """The World `engine` trains in: one process, or under `torchrun` (WORLD_SIZE > 1) the torch engine's
    distributed world, joined here (process group, DistributedDataParallel; rnnkit/torch/distributed.py).
    The scratch engine under torchrun is a ValueError: it would train WORLD_SIZE copies of one run."""
    where = launch()
    if where.size == 1:
        return World()
    if engine.name != "torch":
        raise ValueError(f"the {engine.name} engine does not train in parallel, and this process is rank {where.rank} "
                         f"of {where.size} started by torchrun: train with --engine torch (DistributedDataParallel), "
                         f"or start a single process without torchrun")
    from .torch.distributed import join

    return join(engine, where, seed)


# ------------------------------------------------------------------------------------------------ carries

def carry_arrays(carry) -> dict[str, np.ndarray]:
    """A carry (None, h, or (h, c)) of NumPy arrays as named arrays, for checkpoints (`Engine.to_numpy` first)."""
    if carry is None:
        return {}
    if isinstance(carry, tuple):
        return {"h": np.asarray(carry[0]), "c": np.asarray(carry[1])}
    return {"h": np.asarray(carry)}


def carry_from_arrays(arrays: dict):
    """The inverse of `carry_arrays`: None, h, or (h, c) (`Engine.from_numpy` next)."""
    if not arrays:
        return None
    return (arrays["h"], arrays["c"]) if "c" in arrays else arrays["h"]


# ------------------------------------------------------------------------------------------------ info

def info() -> dict:
    """What this installation runs on, for bug reports and benchmark records: a flat dict of str → str or
    number. Imports torch (if installed) to ask about CUDA, and the scratch engine's thread module (which
    imports numba if installed); changes no setting."""
    import importlib.metadata
    import importlib.util
    import platform

    from . import __version__

    out: dict = {"rnnkit": __version__, "python": platform.python_version(), "numpy": np.__version__}
    out.update(_blas())
    if importlib.util.find_spec("torch") is None:
        out["torch"] = "not installed"
    else:
        import torch

        out["torch"] = torch.__version__
        out["torch_cuda"] = torch.version.cuda or "none"      # the CUDA torch was built for
        out["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        out["numba"] = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        out["numba"] = "not installed"
    from .scratch import fast
    from .scratch.fast import threads

    out["scratch_threads"] = threads.count()
    out["scratch_path_forced"] = fast.forced() or "no (RNNKIT_PATH unset)"
    out.update({f"scratch_path_{cell}": path for cell, path in fast.describe().items()})  # float32
    return out


def _blas() -> dict:
    """NumPy's BLAS library, version, kernels and threads, from threadpoolctl (nothing without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return {}
    pool = next((p for p in pools if "numpy" in p.get("filepath", "")), pools[0])  # NumPy's own, if bundled
    out = {"blas": f"{pool.get('internal_api', '?')} {pool.get('version') or ''}".strip(),
           "blas_threads": int(pool.get("num_threads", 0))}
    if pool.get("architecture"):
        out["blas_architecture"] = str(pool["architecture"])
    return out
