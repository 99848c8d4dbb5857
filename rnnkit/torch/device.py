"""Which device the torch engine runs on, which kernels it uses there, and how batches get there."""
from __future__ import annotations

import contextlib
import os

import numpy as np
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


def cuda_kernels(deterministic: bool) -> dict:
    """Choose the CUDA kernels for training (process-wide torch flags; the torch engine calls this on a GPU
    only, so nothing changes on the CPU). Returns the flags set.

    deterministic=True (the default, --deterministic): the project's promise, same seed same bits on one
    machine. cuDNN picks its deterministic algorithms (`cudnn.deterministic`, `cudnn.benchmark` off),
    torch.use_deterministic_algorithms(warn_only=True) swaps in the deterministic kernels it has (and warns
    about an op that has none), and cuBLAS gets the fixed workspace it needs to reduce in a fixed order
    (CUBLAS_WORKSPACE_CONFIG=:4096:8, unless already set; read when cuBLAS starts, so set before the first
    matrix product of the process).
    deterministic=False (--no-deterministic): `cudnn.benchmark` on, so cuDNN times its algorithms once per
    shape and keeps the fastest (a window of fixed (batch, bptt) has one shape; a classifier's padded
    batches a few), and the nondeterministic, faster kernels (atomic adds in the embedding's backward).
    nn.LSTM/GRU/RNN take cuDNN's fused kernels either way.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return {"cudnn.benchmark": not deterministic, "cudnn.deterministic": deterministic,
            "deterministic_algorithms": deterministic}


def batch_to_device(batch: dict, device: torch.device, keys=(), pin: bool | None = None) -> dict:
    """The batch with its arrays named in `keys` (the model's `device_inputs`: token ids, targets) on
    `device` as tensors, copied from page-locked (pinned) host memory with non_blocking=True, so the copy
    runs on the GPU's copy engine while the host goes on queueing kernels, and needs no synchronisation.
    Other entries (lengths, which packing wants on the host) stay as they are.

    `pin` None: on CUDA only. On the CPU the batch comes back unchanged (the model takes NumPy itself)."""
    if pin is None:
        pin = device.type == "cuda"
    if not pin:
        return batch
    moved = dict(batch)
    for key in keys:
        value = batch.get(key)
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "iu":
                value = value.astype(np.int64, copy=False)  # token ids as torch's long (a memmap's uint16 too)
            if not (value.flags.c_contiguous and value.flags.writeable):
                value = np.array(value, order="C")  # torch shares no read-only memory
            host = torch.from_numpy(value).pin_memory()  # a copy into page-locked memory: the batch is free again
            moved[key] = host.to(device, non_blocking=True)
    return moved


@contextlib.contextmanager
def without_onednn():
    """torch's CPU LSTM goes through oneDNN, which reorders the weights into its own layout on every call:
    a one-step call of a 2x256 LSTM at batch 1 takes ~1.8-2.2 ms that way and ~0.2-0.4 ms on ATen's own
    kernel (measured here, one thread). Longer calls keep oneDNN, which is faster there ((32, 64): 45
    against 80 ms). Under autocast on a CPU without bf16/fp16 units, oneDNN's LSTM fails (precision.py).
    Only the `enabled` flag changes, and it is put back."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
