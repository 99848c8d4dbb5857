"""Optimisers and gradient clipping of the scratch engine (the learning-rate schedule is train.py's).

The update formulas are torch.optim's (single-tensor, non-foreach, non-fused path), so a scratch model
and a torch model with the same weights and gradients stay equal step for step. Updates are in place
on `p.data`. There is one parameter group; `opt.lr` is a plain attribute the trainer changes at each step.

`state_dict()` is a flat dict of numbers and NumPy arrays (no pickling needed):
    {"lr": 0.001, "beta1": 0.9, ..., "step": 10, "state.0.exp_avg": array, "state.1.exp_avg": array, ...}
`load_state_dict()` restores it exactly (hyperparameters included, as torch does).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .module import Parameter


def _param_list(params) -> list[Parameter]:
    params = [params] if isinstance(params, Parameter) else list(params)
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"expected Parameters, got {type(p).__name__}")
    return params


class Optimizer:
    """Base class: a list of Parameters, hyperparameters named in `hyper`, per-parameter state arrays."""

    hyper: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter]):
        self.params = _param_list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        sd = {k: getattr(self, k) for k in self.hyper}
        sd["step"] = self.step_count
        for i, st in enumerate(self.state):
            for k, v in st.items():
                sd[f"state.{i}.{k}"] = v.copy()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        missing = [k for k in (*self.hyper, "step") if k not in sd]
        if missing:
            raise ValueError(f"{type(self).__name__} state dict is missing {missing}")
        state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        for key, value in sd.items():
            if not key.startswith("state."):
                continue
            _, i, name = key.split(".", 2)
            i = int(i)
            if i >= len(self.params):
                raise ValueError(f"{key}: the optimizer has only {len(self.params)} parameters")
            p = self.params[i].data
            value = np.asarray(value)
            if value.shape != p.shape:
                raise ValueError(f"{key}: shape {value.shape} does not match the parameter's {p.shape}")
            state[i][name] = value.astype(p.dtype, copy=True)
        if any(st.keys() != state[0].keys() for st in state):
            raise ValueError(f"{type(self).__name__} state dict: the parameters' states do not match "
                             f"({[sorted(st) for st in state]})")
        for k in self.hyper:
            v = sd[k]
            setattr(self, k, v.item() if isinstance(v, np.ndarray | np.generic) else v)
        self.step_count = int(sd["step"])
        self.state = state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)}" for k in self.hyper)
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """SGD with momentum, dampening, L2 weight decay and Nesterov, as torch.optim.SGD:

        g = grad + weight_decay * p
        buf = g (first step), else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf        (when momentum != 0)
        p -= lr * g
    """

    hyper = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening == 0")
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def step(self) -> None:
        self.step_count += 1
        for p, st in zip(self.params, self.state):
            g = p.grad
            if self.weight_decay != 0:
                g = g + self.weight_decay * p.data
            if self.momentum != 0:
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = g.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (and AMSGrad) with L2 weight decay added to the gradient, as torch.optim.Adam:

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2;   vmax = max(vmax, v) (amsgrad)
        p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
    """

    hyper = ("lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad")
    decoupled = False  # AdamW: decay the weights directly instead of adding to the gradient

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        beta1, beta2 = betas
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: lr, eps and weight_decay must be >= 0, "
                             f"got {lr}, {eps}, {weight_decay}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def step(self) -> None:
        self.step_count += 1
        t, b1, b2 = self.step_count, self.beta1, self.beta2
        step_size = self.lr / (1 - b1**t)
        bc2_sqrt = (1 - b2**t) ** 0.5
        for p, st in zip(self.params, self.state):
            if not st:
                st["exp_avg"], st["exp_avg_sq"] = np.zeros_like(p.data), np.zeros_like(p.data)
            if self.amsgrad and "max_exp_avg_sq" not in st:
                st["max_exp_avg_sq"] = np.zeros_like(p.data)
            g = p.grad
            if self.weight_decay != 0:
                if self.decoupled:
                    p.data *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.data
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m += (1 - b1) * (g - m)  # torch's lerp: m + (1 - b1)(g - m)
            v *= b2
            v += (1 - b2) * g * g
            if self.amsgrad:
                np.maximum(st["max_exp_avg_sq"], v, out=st["max_exp_avg_sq"])
                v = st["max_exp_avg_sq"]
            denom = np.sqrt(v) / bc2_sqrt + self.eps
            p.data -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay, as torch.optim.AdamW: p *= 1 - lr * weight_decay, then Adam."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


# ------------------------------------------------------------------------------------------------ clipping

def clip_grad_norm(params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so their total norm is at most max_norm, as
    torch.nn.utils.clip_grad_norm_. Returns the total norm before clipping.

    total = ||(||g_1||, ..., ||g_k||)||  (p-norm of the per-parameter p-norms; norm_type may be inf)
    g *= min(max_norm / (total + 1e-6), 1)
    """
    grads = [p.grad for p in _param_list(params)]
    norm_type = float(norm_type)
    if not grads:
        return 0.0
    norms = [np.linalg.norm(g.ravel(), norm_type) if g.size else 0.0 for g in grads]
    total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite ({total}), "
                           "so it cannot be clipped; set error_if_nonfinite=False to clip anyway")
    coef = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
    for g in grads:
        g *= g.dtype.type(coef)
    return total


def clip_grad_value(params, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place, as torch.nn.utils.clip_grad_value_."""
    clip_value = float(clip_value)
    for p in _param_list(params):
        np.clip(p.grad, -clip_value, clip_value, out=p.grad)
