"""Which device the torch engine runs on."""
from __future__ import annotations

import torch

from ..engines import launch

DEVICES = ("cpu", "cuda", "auto")


def select_device(name: str | torch.device = "auto") -> torch.device:
    """"cpu", "cuda" (or "cuda:N"), or "auto": the GPU if there is one, else the CPU. Under torchrun, "cuda"
    and "auto" are the GPU numbered LOCAL_RANK (one GPU per process).

    Asking for CUDA where there is none is a ValueError, not a silent fall-back to the CPU.
    """
    name = str(name)
    if name in ("auto", "cuda") and launch().size > 1 and torch.cuda.is_available():
        name = f"cuda:{launch().local_rank}"  # under torchrun: this host's GPU number LOCAL_RANK
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                             "use device 'cpu' or 'auto'")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but there are only {torch.cuda.device_count()} GPUs")
        return device
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
