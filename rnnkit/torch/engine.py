"""The torch engine as the trainer sees it: rnnkit.engines.Engine (ScratchEngine's methods) on PyTorch.

NumPy at the boundary: batches, weights, optimizer and RNG state go in and come out as NumPy arrays (plus
numbers, strings, lists, tuples and dicts), so checkpoints never hold a tensor. A carry stays a tensor on
the device between steps (no copy each step); `to_numpy` / `from_numpy` convert it for checkpoints.

Optimisers are torch.optim's with their defaults. On the CPU torch takes the single-tensor (non-foreach)
path, which the scratch optimisers copy formula for formula, so the two engines agree to rounding; on CUDA
the engine takes the fused one (the same maths in one kernel, summed in another order), which lets a
non-finite step be skipped without the host reading the loss (step_guard.py).

On a GPU (rnnkit/torch/device.py, precision.py, step_guard.py): the models' nn.LSTM/GRU/RNN run cuDNN's fused
kernels on one flattened weight buffer; token batches go up from pinned memory without blocking; the
forward runs under autocast with --precision bf16/fp16 (fp16 with a gradient scaler), the weights staying
float32; and no step waits for the device: the loss and norm are read at the trainer's log steps.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from ..checkpoint.checks import check_tied
from ..engines import inference_method
from ..spec import check_optimizer, check_precision
from .device import batch_to_device, cuda_kernels, select_device
from .device import without_onednn as _without_onednn
from .models import state_to
from .precision import autocast, grad_scaler
from .step_guard import StepGuard


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
                   fused: bool = False):
    """The torch.optim optimiser for a name in spec.OPTIMIZERS; `fused`: its fused kernel (one launch for
    all parameters, and a skip decided on the device: step_guard.py)."""
    check_optimizer(name)
    more = {"fused": True} if fused else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **more)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **more)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **more)
    raise NotImplementedError(f"optimizer {name!r} is in rnnkit.spec.OPTIMIZERS but the torch engine lacks it")


def tensors_to_numpy(obj):
    """Every tensor in a nested dict / list / tuple as a NumPy copy (on the CPU); the rest as it is. A bfloat16 or
    float16 tensor (a state computed under autocast) comes out float32, exactly (NumPy has no bfloat16)."""
    if isinstance(obj, torch.Tensor):
        if obj.dtype in (torch.bfloat16, torch.float16):
            obj = obj.float()
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


class TorchEngine:
    """One training step, evaluation, and state to save and restore, for a torch model.

    The model must give `loss(batch, carry) -> (mean loss tensor, state)` and
    `eval_loss(batch, carry) -> (summed loss, count, state)` (see models.py). `device` is "cpu", "cuda",
    "auto" or a torch.device; the model is moved there before the optimizer is made. `precision` "fp32",
    "bf16" or "fp16" (precision.py); `deterministic`: the CUDA kernels (device.cuda_kernels, on a GPU only);
    `deferred` (default: on a GPU) leaves each step's loss and norm on the device (step_guard.py).
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, clip: float | None = None, momentum: float = 0.0,
                 device: str | torch.device = "auto", precision: str = "fp32", deterministic: bool = True,
                 deferred: bool | None = None):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.kernels = cuda_kernels(deterministic) if self.device.type == "cuda" else {}  # the flags set
        self.model = model.to(self.device)
        for module in self.model.modules():
            if isinstance(module, torch.nn.RNNBase):
                module.flatten_parameters()  # one contiguous weight buffer: cuDNN's fused kernel, no copy per call
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # frozen ones are not trained
        self.precision = check_precision("torch", precision,
                                         str(next(self.model.parameters()).dtype).removeprefix("torch."))
        self.scaler = grad_scaler(self.device, precision)
        # deferred (a GPU by default): the step's loss and norm stay on the device until the trainer's log
        # steps (step_guard.py), and a fused optimizer skips a non-finite step there
        self.deferred = self.device.type == "cuda" if deferred is None else bool(deferred)
        self.guard = StepGuard(self.deferred, overflow_is_fatal=self.scaler is None)
        self.optimizer = make_optimizer(optimizer, self.params, lr, weight_decay, momentum, fused=self.deferred)
        self.clip = clip
        self.loss_of = self.model.loss  # training's loss: under torchrun through DDP (distributed.py)
        self.world = None               # distributed.TorchWorld once joined

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def train_step(self, batch: dict, carry=None):
        """One update. Returns (loss, gradient norm before clipping, carry): floats, or with `deferred` 0-d
        tensors on the device that nothing has read yet (`settle()` says whether every step was fine). A
        non-finite loss or gradient leaves the weights untouched (the trainer stops the run); under fp16, a
        gradient that overflowed is skipped and the scale lowered (precision.py)."""
        self.model.train()
        self.optimizer.zero_grad()
        batch = batch_to_device(batch, self.device, getattr(self.model, "device_inputs", ()))
        with autocast(self.device, self.precision):
            loss, carry = self.loss_of(batch, carry)  # DDP's wrapper under torchrun
        # fp16: the backward of S·L, then g = ∂(S·L)/∂w ÷ S (unscale_), so that small gradients survive float16
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # the true gradients, for clipping and the norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip if self.clip else math.inf)
        skip, loss, norm = self.guard.check(loss.detach(), norm)
        self.guard.step(self.optimizer, skip)
        if self.scaler is not None:
            self.scaler.update()  # halves the scale after an overflow (on the device), grows it after 2000 good steps
        return loss, norm, carry

    def settle(self) -> dict | None:
        """Whether the steps since the last call were all fine: None, or the first fatal one's {"steps_ago",
        "loss", "norm"} (step_guard.py). With `deferred`, one read of the device."""
        return self.guard.settle()

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
        unrolled (unrolled.py). The layers a model steps one token per call (its `stepped_recurrent()`: a
        translation model's decoder) give one record per layer over all their calls, part "decoder", grad_h[:, t]
        = ∂L/∂s_t; any other layer called more than once is left out. Weights and optimizer are left as they
        were; gradients are cleared."""
        from .unrolled import recording

        self.model.eval()
        self.model.zero_grad(set_to_none=True)
        try:
            with recording(self.model) as found:
                loss, _ = self.model.loss(batch, carry)
                loss.backward()
            stepped = {id(m) for m in getattr(self.model, "stepped_recurrent", tuple)()}
            calls: dict = {}                                   # (module, layer) → its records, in call order
            for r in found:
                calls.setdefault((id(r["module"]), r["layer"]), []).append(r)
            records = []
            for runs in calls.values():
                r = runs[0]
                if len(runs) > 1 and id(r["module"]) not in stepped:
                    continue                                   # e.g. a forecaster's decoder fed its own forecasts
                steps = [s for run in runs for s in run["steps"]]
                grad = torch.stack([s.grad if s.grad is not None else torch.zeros_like(s) for s in steps], 1)
                if r["mask"] is not None:
                    grad = grad * r["mask"][..., None].to(grad.dtype)  # past a sequence's end: no state of its own
                record = {"inputs": torch.cat([run["inputs"] for run in runs], 1), "h0": r["h0"],
                          "h": torch.cat([run["h"] for run in runs], 1)}
                record = {k: v.detach().cpu().numpy().copy() for k, v in record.items()}
                record.update(cell=r["cell"], layer=r["layer"], direction=0, grad_h=grad.cpu().numpy())
                if id(r["module"]) in stepped:
                    record["part"] = "decoder"
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
        """torch.optim's state dict with every tensor as a NumPy copy ("state" keeps its int keys); with fp16,
        the gradient scaler's state (its scale and count of good steps) under "grad_scaler", for an exact resume."""
        state = tensors_to_numpy(self.optimizer.state_dict())
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()  # plain numbers
        return state

    def load_optimizer_state(self, state: dict) -> None:
        state = numpy_to_tensors(state)
        scaler = state.pop("grad_scaler", None)
        if self.scaler is not None and scaler is not None:
            self.scaler.load_state_dict(scaler)
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
