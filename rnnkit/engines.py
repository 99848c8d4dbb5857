"""Pick an engine by name and build a task model on it.

Both engines build a model from the same keyword arguments and expose it through the same engine object
(`ScratchEngine` / `TorchEngine`), so the tasks and the trainer never branch on the engine.
"""
from __future__ import annotations

import numpy as np

ENGINES = ("scratch", "torch")
DTYPES = {"float32": np.float32, "float64": np.float64}


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return name


def build_engine(engine: str, model: str, model_kwargs: dict, *, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, clip: float | None = None, momentum: float = 0.0,
                 dtype: str = "float32", seed: int = 0, device: str = "auto", frozen=()):
    """An engine holding a fresh `model` ("LanguageModel", ...) built with `model_kwargs`.

    The scratch engine seeds its model's NumPy generator with `seed`; the torch engine seeds torch.
    Parameters named in `frozen` are left out of the optimiser (they keep their values).
    """
    check_engine(engine)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    opt = dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay, clip=clip, momentum=momentum)
    if engine == "scratch":
        from .scratch import models
        from .scratch.engine import ScratchEngine

        net = getattr(models, model)(**model_kwargs, dtype=DTYPES[dtype], rng=seed)
        _freeze(net, frozen, lambda p: setattr(p, "requires_grad", False))
        return ScratchEngine(net, **opt)
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
    return TorchEngine(net, device=where, **opt)


def _freeze(net, names, freeze) -> None:
    params = dict(net.named_parameters())
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"cannot freeze unknown parameters {unknown}")
    for name in names:
        freeze(params[name])
