"""Mixed precision for the torch engine's training step: `--precision fp32 | bf16 | fp16`.

    fp32   every operation in float32 (or the model's dtype): as the scratch engine computes
    bf16   the forward under torch.autocast(bfloat16): matrix products and the recurrent layers in bfloat16
           where autocast lists them, reductions and the loss in float32. bfloat16 has float32's range, so no
           scaling is needed
    fp16   the forward under torch.autocast(float16) and a torch.amp.GradScaler: the loss is multiplied by a
           scale S before the backward so that small gradients do not flush to zero in float16, the gradients
           are divided by S again (unscale) before clipping, and a step whose gradients overflowed (inf/NaN) is
           skipped while S is halved; S doubles after 2000 steps without overflow (GradScaler's defaults)

In all three the parameters, their gradients and the optimizer state stay float32 ("master weights"), so a
checkpoint is float32 whatever the precision, and loads on the scratch engine. Only the forward (and the
backward autograd derives from it) runs in the lower precision.

On the CPU, autocast sends nn.LSTM/GRU/RNN to oneDNN in bf16/fp16, which needs CPU support for those types
(AVX512-BF16/AMX; on this AMD EPYC it fails: "could not create a primitive descriptor for the LSTM forward
propagation primitive"). So on the CPU the step runs with oneDNN off: the recurrent layers then run on ATen's
own kernel in float32, and the embedding-side and output matrix products in the lower precision. The CPU path
is for tests and for CPUs with bf16 units; the speed is the GPU's.
"""
from __future__ import annotations

import contextlib

import torch

from ..spec import PRECISIONS, check_choice
from .device import without_onednn

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The context the forward runs in: torch.autocast for bf16/fp16 on `device` (with oneDNN off on the
    CPU: see the module docstring), nothing for fp32."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    if device.type == "cpu":
        stack.enter_context(without_onednn())
    stack.enter_context(torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision]))
    return stack


def grad_scaler(device: torch.device, precision: str):
    """A torch.amp.GradScaler for fp16 on `device`; None for bf16 and fp32 (no scaling)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
