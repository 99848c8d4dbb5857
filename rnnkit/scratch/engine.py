"""The scratch engine as the trainer sees it: one training step, evaluation, and state to save and restore.

The torch engine (rnnkit/torch/engine.py) has the same methods, so train.py never asks which it has.
A *carry* is what a task passes from one batch to the next (the language model's recurrent state);
it is None for tasks without one.
"""
from __future__ import annotations

import numpy as np

from . import optim
from .module import Module

OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0):
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def carry_arrays(carry) -> dict[str, np.ndarray]:
    """A carry (None, h, or (h, c)) as named arrays, for checkpoints."""
    if carry is None:
        return {}
    if isinstance(carry, tuple):
        return {"h": np.asarray(carry[0]), "c": np.asarray(carry[1])}
    return {"h": np.asarray(carry)}


def carry_from_arrays(arrays: dict):
    if not arrays:
        return None
    return (arrays["h"], arrays["c"]) if "c" in arrays else arrays["h"]


class ScratchEngine:
    name = "scratch"

    def __init__(self, model: Module, optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
                 clip: float | None = None, momentum: float = 0.0):
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]  # frozen ones are not trained
        self.optimizer = make_optimizer(optimizer, self.params, lr, weight_decay, momentum)
        self.clip = clip

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def train_step(self, batch: dict, carry=None):
        """One update. Returns (loss, gradient norm before clipping, carry). A non-finite loss or gradient
        leaves the weights untouched (the trainer stops the run)."""
        self.model.train()
        self.model.zero_grad()
        loss, carry = self.model.loss_and_grads(batch, carry)
        norm = optim.clip_grad_norm(self.params, self.clip if self.clip else float("inf"))
        if np.isfinite(loss) and np.isfinite(norm):
            self.optimizer.step()
        return loss, norm, carry

    def eval_loss(self, batch: dict, carry=None):
        """(summed loss, number of targets, carry) in eval mode."""
        self.model.eval()
        return self.model.eval_loss(batch, carry)

    def predict(self, *inputs):
        """The model's `predict` in eval mode: NumPy outputs (a language model: (logits, state))."""
        self.model.eval()
        return self.model.predict(*inputs)

    def lock_weights(self) -> None:
        """Promise that the weights no longer change (a served model), so predictions reuse the layers'
        packed weights; training (`train_step`) unlocks. See Module.lock_weights."""
        self.model.lock_weights()

    def locked_weights(self):
        """A context with the weights locked (a generation loop): afterwards the model is as it was."""
        return self.model.locked_weights()

    def weights(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def load_weights(self, weights: dict) -> None:
        self.model.load_state_dict(weights)

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def rng_state(self) -> dict:
        """The model's random generator (dropout masks), JSON-able."""
        return {"numpy": self.model.rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        self.model.rng.bit_generator.state = state["numpy"]

    @staticmethod
    def to_numpy(carry):
        return carry
