"""The torch engine as the trainer sees it: rnnkit.engines.Engine (ScratchEngine's methods) on PyTorch.

NumPy at the boundary: batches, weights, optimizer and RNG state go in and come out as NumPy arrays (plus
numbers, strings, lists, tuples and dicts), so checkpoints never hold a tensor. A carry stays a tensor on
the device between steps (no copy each step); `to_numpy` / `from_numpy` convert it for checkpoints.

Optimisers are torch.optim's with their defaults. On the CPU torch takes the single-tensor (non-foreach)
path, which the scratch optimisers copy formula for formula, so the two engines agree to rounding; on CUDA
torch takes its foreach path (the same maths, summed in another order).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from ..checkpoint.checks import check_tied
from ..engines import inference_method
from ..spec import check_optimizer
from .device import select_device
from .models import state_to


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0):
    """The torch.optim optimiser for a name in spec.OPTIMIZERS."""
    check_optimizer(name)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise NotImplementedError(f"optimizer {name!r} is in rnnkit.spec.OPTIMIZERS but the torch engine lacks it")


def tensors_to_numpy(obj):
    """Every tensor in a nested dict / list / tuple as a NumPy copy (on the CPU); the rest as it is."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {k: tensors_to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensors_to_numpy(v) for v in obj)
    return obj


def numpy_to_tensors(obj):
    """The inverse of `tensors_to_numpy`: every NumPy array as a (CPU) tensor of its dtype."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))  # a writable copy
    if isinstance(obj, dict):
        return {k: numpy_to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(numpy_to_tensors(v) for v in obj)
    return obj


@contextlib.contextmanager
def _without_onednn():
    """torch's CPU LSTM goes through oneDNN, which reorders the weights into its own layout on every call:
    a one-step call of a 2x256 LSTM at batch 1 takes ~1.8-2.2 ms that way and ~0.2-0.4 ms on ATen's own
    kernel (measured here, one thread). Longer calls keep oneDNN, which is faster there ((32, 64): 45
    against 80 ms). Only the `enabled` flag changes, and it is put back."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


class TorchEngine:
    """One training step, evaluation, and state to save and restore, for a torch model.

    The model must give `loss(batch, carry) -> (mean loss tensor, state)` and
    `eval_loss(batch, carry) -> (summed loss, count, state)` (see models.py). `device` is "cpu", "cuda",
    "auto" or a torch.device; the model is moved there before the optimizer is made.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, clip: float | None = None, momentum: float = 0.0,
                 device: str | torch.device = "auto"):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # frozen ones are not trained
        self.optimizer = make_optimizer(optimizer, self.params, lr, weight_decay, momentum)
        self.clip = clip

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def train_step(self, batch: dict, carry=None):
        """One update. Returns (loss, gradient norm before clipping, carry). A non-finite loss or gradient
        leaves the weights untouched (the trainer stops the run)."""
        self.model.train()
        self.optimizer.zero_grad()
        loss, carry = self.model.loss(batch, carry)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip if self.clip else math.inf)
        loss, norm = torch.stack([loss.detach(), norm.to(loss)]).tolist()  # one device sync
        if math.isfinite(loss) and math.isfinite(norm):
            self.optimizer.step()
        return loss, norm, carry

    def eval_loss(self, batch: dict, carry=None):
        """(summed loss, number of targets, carry) in eval mode, without gradients."""
        self.model.eval()
        with torch.no_grad():
            return self.model.eval_loss(batch, carry)

    def describe(self) -> str:
        """The device the model runs on, e.g. "torch engine on cpu"."""
        return f"torch engine on {self.device}"

    def predict(self, *inputs):
        """The model's `predict` in eval mode, without gradients: NumPy outputs. A call of one time step on
        the CPU (generation) runs without oneDNN (see `_without_onednn`)."""
        self.model.eval()
        one_step = self.device.type == "cpu" and np.ndim(inputs[0]) >= 2 and np.shape(inputs[0])[-1] == 1
        with torch.no_grad(), (_without_onednn() if one_step else contextlib.nullcontext()):
            return self.model.predict(*inputs)

    def call(self, method: str, *inputs):
        """The model's inference method `method` (listed in its `inference_methods`) in eval mode, without
        gradients; the model's methods take and return NumPy."""
        call = inference_method(self.model, method)
        self.model.eval()
        with torch.no_grad():
            return call(*inputs)

    def through_time(self, batch: dict, carry=None) -> tuple[float, list[dict]]:
        """The scratch engine's `through_time`: the loss in eval mode and, per recurrent layer, cell, inputs,
        h0, h, grad_h = ∂L/∂h_t (batch, time, hidden) and the layer's weights, as NumPy, from the layers run
        unrolled (unrolled.py). Weights and optimizer are left as they were; gradients are cleared."""
        from .unrolled import recording

        self.model.eval()
        self.model.zero_grad(set_to_none=True)
        try:
            with recording(self.model) as found:
                loss, _ = self.model.loss(batch, carry)
                loss.backward()
            records = []
            calls = {}
            for r in found:
                calls[id(r["module"]), r["layer"]] = calls.get((id(r["module"]), r["layer"]), 0) + 1
            for r in found:
                if calls[id(r["module"]), r["layer"]] > 1:   # stepped one token at a time (a decoder): left out,
                    continue                                   # as the scratch engine's hand-stepped cells are
                grad = torch.stack([s.grad if s.grad is not None else torch.zeros_like(s) for s in r["steps"]], 1)
                if r["mask"] is not None:
                    grad = grad * r["mask"][..., None].to(grad.dtype)  # past a sequence's end: no state of its own
                record = {k: r[k].detach().cpu().numpy().copy() for k in ("inputs", "h0", "h")}
                record.update(cell=r["cell"], layer=r["layer"], direction=0, grad_h=grad.cpu().numpy())
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    tensor = getattr(r["module"], f"{name}_l{r['layer']}", None)
                    record[name] = None if tensor is None else tensor.detach().cpu().numpy().copy()
                records.append(record)
        finally:
            self.model.zero_grad(set_to_none=True)
        return float(loss.detach()), records

    def lock_weights(self) -> None:
        """The scratch engine's promise that the weights stay; torch derives nothing from them, so a no-op."""

    def locked_weights(self):
        return contextlib.nullcontext(self)

    def weights(self) -> dict[str, np.ndarray]:
        """The state dict as contiguous NumPy copies (tied weights under both names, as torch has them)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def load_weights(self, weights: dict) -> None:
        """Copy NumPy arrays (or tensors) into the model, cast to its dtype. Names and shapes must match."""
        own = self.model.state_dict()
        missing = [k for k in own if k not in weights]
        unexpected = [k for k in weights if k not in own]
        shapes = [f"{k}: {tuple(np.shape(v))} != {tuple(own[k].shape)}"
                  for k, v in weights.items() if k in own and tuple(np.shape(v)) != tuple(own[k].shape)]
        if missing or unexpected or shapes:
            raise ValueError(f"weights do not fit the model: missing {missing}, unexpected {unexpected}, "
                             f"wrong shapes {shapes}")
        check_tied(weights, {name: tensor.data_ptr() for name, tensor in own.items()})  # tied: one storage
        self.model.load_state_dict({k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v))
                                    for k, v in weights.items()})

    def optimizer_state(self) -> dict:
        """torch.optim's state dict with every tensor as a NumPy copy ("state" keeps its int keys)."""
        return tensors_to_numpy(self.optimizer.state_dict())

    def load_optimizer_state(self, state: dict) -> None:
        state = numpy_to_tensors(state)
        state["state"] = {int(k): v for k, v in state["state"].items()}  # in case JSON made them strings
        self.optimizer.load_state_dict(state)

    def rng_state(self) -> dict:
        """torch's CPU generator (and the device's CUDA one) as uint8 arrays: the dropout masks to come."""
        state = {"torch": torch.get_rng_state().numpy().copy()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device).numpy().copy()
        return state

    def set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(torch.from_numpy(np.array(state["torch"], dtype=np.uint8)))
        if self.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(torch.from_numpy(np.array(state["cuda"], dtype=np.uint8)), self.device)

    @staticmethod
    def to_numpy(carry):
        """A carry (None, h, or (h, c)) as NumPy arrays, for checkpoints (rnnkit.engines.carry_arrays)."""
        return tensors_to_numpy(carry)

    def from_numpy(self, carry):
        """A carry of NumPy arrays as tensors on the model's device, in its dtype."""
        return state_to(carry, next(self.model.parameters()))
