"""The scratch engine as the trainer sees it: one training step, evaluation, and state to save and restore.

It implements rnnkit.engines.Engine, as the torch engine (rnnkit/torch/engine.py) does, so train.py never
asks which it has. A *carry* is what a task passes from one batch to the next (the language model's
recurrent state); it is None for tasks without one. Engine-neutral code reaches this module only through
rnnkit.engines.
"""
from __future__ import annotations

import numpy as np

from ..engines import inference_method
from ..spec import check_optimizer
from . import optim
from .module import Module


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.0):
    """The scratch optimiser for a name in spec.OPTIMIZERS."""
    check_optimizer(name)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise NotImplementedError(f"optimizer {name!r} is in rnnkit.spec.OPTIMIZERS but the scratch engine lacks it")


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
        loss, carry = self.model.loss(batch, carry)  # the scratch model's loss fills the gradients too
        norm = optim.clip_grad_norm(self.params, self.clip if self.clip else float("inf"))
        if np.isfinite(loss) and np.isfinite(norm):
            self.optimizer.step()
        return loss, norm, carry

    def eval_loss(self, batch: dict, carry=None):
        """(summed loss, number of targets, carry) in eval mode."""
        self.model.eval()
        return self.model.eval_loss(batch, carry)

    def describe(self) -> str:
        """The path each recurrent layer ran on last (fast/selector.py), e.g. "scratch engine: LSTM on threaded"."""
        ran = [f"{type(m).__name__} on {'/'.join(dict.fromkeys(m.last_paths))}"
               for m in self.model.modules() if getattr(m, "last_paths", ())]
        return "scratch engine" + (f": {', '.join(ran)}" if ran else "")

    def predict(self, *inputs):
        """The model's `predict` in eval mode: NumPy outputs (a language model: (logits, state))."""
        self.model.eval()
        return self.model.predict(*inputs)

    def call(self, method: str, *inputs):
        """The model's inference method `method` (listed in its `inference_methods`) in eval mode."""
        self.model.eval()
        return inference_method(self.model, method)(*inputs)

    def through_time(self, batch: dict, carry=None) -> tuple[float, list[dict]]:
        """The loss on `batch` in eval mode (no dropout) and, for each recurrent layer direction of the model,
        what rnnkit.diagnostics reads: cell, inputs (batch, time, features), h0 (batch, hidden), h and grad_h
        (batch, time, hidden) with grad_h[:, t] = ∂L/∂h_t, and the layer's four weights. The layers run on the
        reference path for it (the BPTT that computes ∂L/∂h_t); weights, optimizer and random generators are
        left as they were. The model runs in training mode (whose forward keeps what backward needs) with every
        dropout set to 0, so it computes what the eval-mode model computes.
        A translation model's decoder, stepped one token at a time, records its layers too (part "decoder",
        grad_h[:, t] = ∂L/∂s_t over the target steps; rnnkit/scratch/seq2seq.py)."""
        was_training, rng = self.model.training, self.rng_state()
        self.model.train()
        layers = [m for m in self.model.modules() if hasattr(m, "record_through_time")]
        dropouts = [(m, name, getattr(m, name)) for m in self.model.modules() for name in ("p", "dropout")
                    if isinstance(getattr(m, name, None), float)]
        try:
            for m, name, _ in dropouts:
                setattr(m, name, 0.0)
            for m in layers:
                m.record_through_time = True
            self.model.zero_grad()
            loss, _ = self.model.loss(batch, carry)
            records = []
            for m in layers:
                for k, record in enumerate(m.recorded or ()):   # None: a layer that did not run
                    layer, direction = divmod(k, m.num_directions)
                    params = m._params(layer, direction)
                    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    record.update(cell=m.mode, layer=layer, direction=direction,
                                  **{n: None if p is None else p.data.copy() for n, p in zip(names, params)})
                    records.append(record)
        finally:
            for m in layers:
                m.record_through_time, m.recorded = False, None
            for m, name, value in dropouts:
                setattr(m, name, value)
            self.set_rng_state(rng)
            self.model.zero_grad()
            self.model.train(was_training)
        return float(loss), records

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
        """A carry as NumPy arrays, for checkpoints: the scratch engine's carries already are."""
        return carry

    @staticmethod
    def from_numpy(carry):
        """A carry of NumPy arrays as the engine keeps it: unchanged here."""
        return carry
