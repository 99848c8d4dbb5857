"""The forecaster of the torch engine: rnnkit/scratch/forecaster.py on torch.nn, autograd doing the backward.

Same constructor arguments (less dtype and rng; plus `seed`), the same batches, outputs, parameter names
(`encoder.*`, `decoder.*` for the autoregressive decoder, `head.weight`, `head.bias`), the same equations and
the same teacher forcing: the scratch module's docstring is the reference for both. In short:
    batch "x" (batch, window, input_size) targets first, "y" (batch, horizon, output_size),
          "future" (batch, horizon, future_size) if future_size > 0, "y_prev" (batch, horizon, output_size)
          for the autoregressive decoder in training (optional: built from x and y);
    predict(x, future=None) → NumPy (batch, horizon, output_size, K): K = 1 (mse, mae), len(quantiles)
          (quantile), 2 = (mean, scale) (gaussian).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..spec import SCALE_FLOOR, check_forecast_batch, check_forecaster, forecast_outputs, point_index


def pinball(pred: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor, reduction: str = "mean"):
    """Quantile loss: pred (..., Q), target (...); l = q e if e >= 0 else (q - 1) e with e = target - pred."""
    e = target[..., None] - pred
    terms = torch.where(e >= 0, quantiles * e, (quantiles - 1) * e)
    return terms.mean() if reduction == "mean" else terms.sum()


def gaussian_nll(mean, scale, target, reduction: str = "mean"):
    """½ log 2π + log σ + (y - μ)² / (2σ²), torch.nn.GaussianNLLLoss(full=True) with var = σ², unclamped."""
    z = (target - mean) / scale
    terms = 0.5 * math.log(2 * math.pi) + torch.log(scale) + 0.5 * z * z
    return terms.mean() if reduction == "mean" else terms.sum()


class Forecaster(nn.Module):
    """Encoder RNN → direct head or autoregressive decoder RNN → forecasts (rnnkit/scratch/forecaster.py).

    Initialisation: the recurrent layers torch's default, the head nn.Linear's. With `seed` the weights come
    from torch.manual_seed(seed) in a forked generator; dropout masks and teacher-forcing draws from the
    global generator (TorchEngine.rng_state).
    """

    def __init__(self, input_size: int, output_size: int = 1, horizon: int = 1, future_size: int = 0,
                 hidden_size: int = 64, num_layers: int = 1, cell: str = "lstm", dropout: float = 0.0,
                 decoder: str = "direct", loss: str = "mse", quantiles=(0.025, 0.1, 0.5, 0.9, 0.975),
                 teacher_forcing: float = 1.0, seed: int | None = None):
        super().__init__()
        from .models import make_recurrent  # here: models.py imports this module

        self.quantiles = check_forecaster(input_size, output_size, horizon, future_size, decoder, loss,
                                          quantiles, teacher_forcing)
        self.input_size, self.output_size, self.horizon = int(input_size), int(output_size), int(horizon)
        self.future_size, self.hidden_size, self.cell = int(future_size), int(hidden_size), cell
        self.decoder_kind, self.loss_name, self.teacher_forcing = decoder, loss, float(teacher_forcing)
        self.k = forecast_outputs(loss, self.quantiles)
        self.point = point_index(loss, self.quantiles)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = make_recurrent(cell, input_size, hidden_size, num_layers, dropout)
            if decoder == "direct":
                self.head = nn.Linear(hidden_size + horizon * future_size, horizon * output_size * self.k)
            else:
                self.decoder = make_recurrent(cell, output_size + future_size, hidden_size, num_layers, dropout)
                self.head = nn.Linear(hidden_size, output_size * self.k)
        self.drop = nn.Dropout(dropout)

    # ------------------------------------------------------------------------------------------ forward
    def _tensor(self, a) -> torch.Tensor:
        from .models import as_tensor

        weight = self.head.weight
        return as_tensor(np.asarray(a), weight.dtype, weight.device)

    def _inputs(self, batch: dict, need_y: bool):
        check_forecast_batch(batch, self.input_size, self.output_size, self.horizon, self.future_size, need_y)
        future = batch.get("future") if self.future_size else None
        return self._tensor(batch["x"]), None if future is None else self._tensor(future)

    def forward(self, x: torch.Tensor, future=None, y_prev=None) -> torch.Tensor:
        """Raw outputs (batch, horizon, output_size, K) (the Gaussian's scale before softplus)."""
        out, state = self.encoder(x)
        batch = x.shape[0]  # not len(x): the ONNX export traces the batch size
        if self.decoder_kind == "direct":
            z = self.drop(out[:, -1])
            if self.future_size:
                z = torch.cat([z, future.reshape(batch, -1)], dim=1)
            return self.head(z).reshape(batch, self.horizon, self.output_size, self.k)
        if y_prev is None:
            return self._recursion(x, future, state)[0]
        steps = y_prev if future is None else torch.cat([y_prev, future], dim=2)
        d, _ = self.decoder(steps, state)
        return self.head(self.drop(d)).reshape(batch, self.horizon, self.output_size, self.k)

    def _recursion(self, x, future, state, feed=None, y_prev=None):
        """The decoder step by step on its own point forecasts (or y_prev where feed is True):
        (raw outputs (batch, horizon, output_size, K), the values fed (batch, horizon, output_size))."""
        value = x[:, -1, :self.output_size]
        raw, fed = [], []
        for t in range(self.horizon):
            if feed is not None:
                value = torch.where(feed[:, t, None], y_prev[:, t], value)
            fed.append(value)
            u = value if future is None else torch.cat([value, future[:, t]], dim=1)
            d, state = self.decoder(u[:, None], state)
            raw.append(self.head(self.drop(d[:, 0])).reshape(x.shape[0], self.output_size, self.k))
            value = raw[-1][..., self.point]
        return torch.stack(raw, dim=1), torch.stack(fed, dim=1)

    def distribution(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs → predict's outputs: the Gaussian's scale through softplus, the rest unchanged."""
        if self.loss_name != "gaussian":
            return raw
        return torch.stack([raw[..., 0], F.softplus(raw[..., 1]) + SCALE_FLOOR], dim=-1)

    def predict(self, x, future=None) -> np.ndarray:
        """Forecasts (batch, horizon, output_size, K) as NumPy (see the module docstring)."""
        x, future = self._inputs({"x": x, "future": future}, need_y=False)
        return self.distribution(self(x, future)).cpu().numpy()

    # ------------------------------------------------------------------------------------------ loss
    def loss_terms(self, raw: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.loss_name == "quantile":
            return pinball(raw, y, raw.new_tensor(self.quantiles), reduction)
        if self.loss_name == "gaussian":
            scale = F.softplus(raw[..., 1]) + SCALE_FLOOR
            return gaussian_nll(raw[..., 0], scale, y, reduction)
        fn = F.mse_loss if self.loss_name == "mse" else F.l1_loss
        return fn(raw[..., 0], y, reduction=reduction)

    def teacher_mask(self, batch_size: int) -> torch.Tensor:
        """(batch, horizon) bool: True where the decoder reads the true previous value (step 1 always)."""
        mask = torch.rand(batch_size, self.horizon, device=self.head.weight.device) < self.teacher_forcing
        mask[:, 0] = True
        return mask

    def _teacher_inputs(self, batch: dict, x, future):
        y_prev = batch.get("y_prev")
        if y_prev is None:
            y_prev = torch.cat([x[:, -1:, :self.output_size], self._tensor(batch["y"])[:, :-1]], dim=1)
        else:
            y_prev = self._tensor(y_prev)
        if self.teacher_forcing >= 1.0:
            return y_prev
        feed = self.teacher_mask(len(x))
        training = self.training
        self.eval()                                       # the fed-back forecasts come without dropout
        try:
            with torch.no_grad():                         # constants: no gradient flows through them
                _, state = self.encoder(x)
                return self._recursion(x, future, state, feed, y_prev)[1]
        finally:
            self.train(training)

    def loss(self, batch: dict, carry=None, reduction: str = "mean"):
        """(the loss of forecasting batch["y"], a tensor for autograd, None)."""
        x, future = self._inputs(batch, need_y=True)
        y_prev = self._teacher_inputs(batch, x, future) if self.decoder_kind == "autoregressive" else None
        return self.loss_terms(self(x, future, y_prev), self._tensor(batch["y"]), reduction), None

    def eval_loss(self, batch: dict, carry=None):
        """(summed loss, number of terms, None) of the forecast as predict makes it (call under no_grad)."""
        x, future = self._inputs(batch, need_y=True)
        loss = self.loss_terms(self(x, future), self._tensor(batch["y"]), reduction="sum")
        return float(loss), int(np.asarray(batch["y"]).size) * (self.k if self.loss_name == "quantile" else 1), None
