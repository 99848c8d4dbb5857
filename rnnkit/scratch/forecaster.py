"""The forecaster of the scratch engine: an RNN/LSTM/GRU encoder over a window of the past, and a direct or an
autoregressive decoder for the next `horizon` steps, trained with a point or a probabilistic loss.

Batches (dicts of NumPy float arrays; the torch engine's Forecaster takes the same):
    "x"       (batch, window, input_size)   the past: the `output_size` target series FIRST (x[..., :output_size],
                                            in the scaling of "y"), then the covariates
    "y"       (batch, horizon, output_size) the targets of the next `horizon` steps
    "future"  (batch, horizon, future_size) covariates known in advance (calendar), only when future_size > 0
    "y_prev"  (batch, horizon, output_size) autoregressive decoder, training only, optional: the TRUE value of
                                            the step before each target, y_prev[:, 0] = x[:, -1, :output_size]
                                            (the last observed value) and y_prev[:, t] = y[:, t - 1]; built
                                            from "x" and "y" when absent

Outputs: predict(x, future=None) → (batch, horizon, output_size, K):
    loss "mse" or "mae":  K = 1, the point forecast;
    loss "quantile":      K = len(quantiles), the predicted quantiles in the order given (increasing). Nothing
                          forces them to be monotone: a model may cross them (sort them if that matters);
    loss "gaussian":      K = 2, the mean μ and the scale σ = softplus(s) + SCALE_FLOOR (rnnkit.spec) > 0.

The model (PyTorch's parameter names, as rnnkit/torch/forecaster.py):
    encoder   RNN/LSTM/GRU (num_layers, dropout between layers) over x: final state h_W (and c_W)
    direct:           z = [dropout(h_W^top), future (batch, horizon·future_size)]
                      head(z) = z Wᵀ + b → (batch, horizon·output_size·K) → (batch, horizon, output_size, K)
                      (one pass predicts every step: darts' BlockRNN)
    autoregressive:   decoder RNN of the same cell, starting from the encoder's final state, reads
                      u_t = [ŷ_{t-1}, future_t] (batch, output_size + future_size) at step t = 1..horizon
                      and head(dropout(d_t)) → (batch, output_size·K) at each step, where ŷ_0 is the last
                      observed value and ŷ_{t-1} the point forecast of the step before (the median, or the
                      quantile nearest 0.5, or the mean: rnnkit.spec.point_index)
Training the autoregressive decoder is teacher-forced: ŷ_{t-1} is the true y_prev[:, t] with probability
`teacher_forcing` (each row and step drawn on its own; 1: always), else the model's own point forecast of
that step from an eval-mode (dropout-free) recursion run first. A fed-back forecast is a constant for the
gradient (as `.detach()` in torch): the gradient never flows through it, on both engines. With the inputs
fixed, the decoder then runs over all steps in one call, as the encoder does.

The loss is the mean over batch × horizon × outputs (× quantiles) of
    mse (ŷ - y)², mae |ŷ - y|, quantile max(q (y - ŷ_q), (q - 1)(y - ŷ_q)) (losses.pinball),
    gaussian ½ log 2π + log σ + (y - μ)² / (2σ²) (losses.gaussian_nll).
`eval_loss` scores the forecast as it would be made (the autoregressive decoder feeds its own forecasts,
no teacher forcing): summed loss and the number of terms.
"""
from __future__ import annotations

import numpy as np

from ..spec import SCALE_FLOOR, check_forecast_batch, check_forecaster, forecast_outputs, point_index
from . import losses
from .layers import Dropout, Linear
from .module import Module, as_float_dtype, make_rng


class Forecaster(Module):
    """Encoder RNN → direct head or autoregressive decoder RNN → forecasts (see the module docstring).

    forward(x, future=None, y_prev=None) → raw outputs (batch, horizon, output_size, K): the Gaussian's
        second output is the scale before softplus; y_prev (autoregressive): the values fed, None → the
        recursion on its own forecasts.
    predict(x, future=None) → (batch, horizon, output_size, K) as the module docstring says.
    """

    def __init__(self, input_size: int, output_size: int = 1, horizon: int = 1, future_size: int = 0,
                 hidden_size: int = 64, num_layers: int = 1, cell: str = "lstm", dropout: float = 0.0,
                 decoder: str = "direct", loss: str = "mse", quantiles=(0.025, 0.1, 0.5, 0.9, 0.975),
                 teacher_forcing: float = 1.0, dtype=np.float32, rng=None):
        from .models import make_recurrent  # here: models.py imports this module

        self.quantiles = check_forecaster(input_size, output_size, horizon, future_size, decoder, loss,
                                          quantiles, teacher_forcing)
        self.input_size, self.output_size, self.horizon = int(input_size), int(output_size), int(horizon)
        self.future_size, self.hidden_size, self.cell = int(future_size), int(hidden_size), cell
        self.decoder_kind, self.loss_name, self.teacher_forcing = decoder, loss, float(teacher_forcing)
        self.k = forecast_outputs(loss, self.quantiles)
        self.point = point_index(loss, self.quantiles)
        self.dtype = as_float_dtype(dtype)
        self.rng = make_rng(rng)
        self.encoder = make_recurrent(cell, input_size, hidden_size, num_layers, dropout, dtype=dtype, rng=self.rng)
        if decoder == "direct":
            self.head = Linear(hidden_size + horizon * future_size, horizon * output_size * self.k, dtype=dtype,
                               rng=self.rng)
        else:
            self.decoder = make_recurrent(cell, output_size + future_size, hidden_size, num_layers, dropout,
                                          dtype=dtype, rng=self.rng)
            self.head = Linear(hidden_size, output_size * self.k, dtype=dtype, rng=self.rng)
        self.drop = Dropout(dropout, rng=self.rng)

    # ------------------------------------------------------------------------------------------ forward
    def _inputs(self, batch: dict, need_y: bool):
        check_forecast_batch(batch, self.input_size, self.output_size, self.horizon, self.future_size, need_y)
        x = np.asarray(batch["x"], dtype=self.dtype)
        future = batch.get("future") if self.future_size else None
        return x, None if future is None else np.asarray(future, dtype=self.dtype)

    def forward(self, x, future=None, y_prev=None) -> np.ndarray:
        out, state = self.encoder(x)
        if self.decoder_kind == "direct":
            z = self.drop(out[:, -1])                                        # h_W of the top layer
            if self.future_size:
                z = np.concatenate([z, future.reshape(len(z), -1)], axis=1)
            return self.head(z).reshape(len(x), self.horizon, self.output_size, self.k)
        if y_prev is None:
            return self._recursion(x, future, state)[0]
        steps = y_prev if future is None else np.concatenate([y_prev, future], axis=2)
        d, _ = self.decoder(steps, state)                                   # all steps in one call
        return self.head(self.drop(d)).reshape(len(x), self.horizon, self.output_size, self.k)

    def _recursion(self, x, future, state, feed=None, y_prev=None):
        """The decoder step by step, feeding back its point forecasts (where `feed` (batch, horizon) bool is True
        it reads the true y_prev instead): (raw outputs (batch, horizon, output_size, K), the values fed
        (batch, horizon, output_size)). Its backward is not kept (inference, or a teacher-forced pass's inputs)."""
        value = x[:, -1, :self.output_size]                                 # ŷ_0: the last observed value
        raw, fed = [], []
        for t in range(self.horizon):
            if feed is not None:
                value = np.where(feed[:, t, None], y_prev[:, t], value)
            fed.append(value)
            u = value if future is None else np.concatenate([value, future[:, t]], axis=1)
            d, state = self.decoder(u[:, None], state)
            raw.append(self.head(self.drop(d[:, 0])).reshape(len(x), self.output_size, self.k))
            value = raw[-1][..., self.point]                                # ŷ_t, fed at step t + 1
        return np.stack(raw, axis=1), np.stack(fed, axis=1)

    def distribution(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs → predict's outputs: the Gaussian's scale through softplus, the rest unchanged."""
        if self.loss_name != "gaussian":
            return raw
        return np.stack([raw[..., 0], losses.softplus(raw[..., 1]) + SCALE_FLOOR], axis=-1)

    def predict(self, x, future=None) -> np.ndarray:
        """Forecasts (batch, horizon, output_size, K) for the past x (batch, window, input_size) and the
        known-future covariates (batch, horizon, future_size) if the model takes them."""
        x, future = self._inputs({"x": x, "future": future}, need_y=False)
        return self.distribution(self.forward(x, future))

    # ------------------------------------------------------------------------------------------ loss
    def loss_terms(self, raw: np.ndarray, y: np.ndarray, reduction: str = "mean"):
        """(loss, d raw) of raw outputs (batch, horizon, output_size, K) against y (batch, horizon, output_size)."""
        y = np.asarray(y, dtype=self.dtype)
        d_raw = np.zeros_like(raw)
        if self.loss_name == "quantile":
            return losses.pinball(raw, y, self.quantiles, reduction)
        if self.loss_name == "gaussian":
            s = raw[..., 1]
            loss, (d_mean, d_scale) = losses.gaussian_nll(raw[..., 0], losses.softplus(s) + SCALE_FLOOR, y,
                                                          reduction)
            d_raw[..., 0], d_raw[..., 1] = d_mean, d_scale * losses.softplus_grad(s)  # dσ/ds = sigmoid(s)
            return loss, d_raw
        loss, d_raw[..., 0] = (losses.mse if self.loss_name == "mse" else losses.mae)(raw[..., 0], y, reduction)
        return loss, d_raw

    def teacher_mask(self, batch_size: int) -> np.ndarray:
        """(batch, horizon) bool: True where the decoder reads the true previous value (step 1 always)."""
        mask = self.rng.random((batch_size, self.horizon)) < self.teacher_forcing
        mask[:, 0] = True
        return mask

    def _teacher_inputs(self, batch: dict, x, future):
        """The values the autoregressive decoder reads in training (batch, horizon, output_size)."""
        y_prev = batch.get("y_prev")
        if y_prev is None:
            y_prev = np.concatenate([x[:, -1:, :self.output_size], np.asarray(batch["y"])[:, :-1]], axis=1)
        y_prev = np.asarray(y_prev, dtype=self.dtype)
        if self.teacher_forcing >= 1.0:
            return y_prev
        feed = self.teacher_mask(len(x))
        training = self.training
        self.eval()                                       # the fed-back forecasts come without dropout
        try:
            _, state = self.encoder(x)
            return self._recursion(x, future, state, feed, y_prev)[1]  # constants: no gradient flows through them
        finally:
            self.train(training)

    def loss(self, batch: dict, carry=None):
        """The mean loss of forecasting batch["y"], with its gradients accumulated in `.grad` (forward, loss,
        backward). Returns (loss, None)."""
        x, future = self._inputs(batch, need_y=True)
        y_prev = self._teacher_inputs(batch, x, future) if self.decoder_kind == "autoregressive" else None
        raw = self.forward(x, future, y_prev)
        loss, d_raw = self.loss_terms(raw, batch["y"])
        self.backward(d_raw)
        return float(loss), None

    def backward(self, d_raw: np.ndarray) -> None:
        """Backpropagate d loss / d raw outputs (batch, horizon, output_size, K) of the last training forward.

        direct: dz = d head; dh_W = dropout'(dz[:, :hidden]) reaches the encoder's top layer at its last step
        (the future covariates are inputs, without a gradient). autoregressive: the decoder's outputs get
        dropout'(d head); its BPTT gives d of its initial state, which is the encoder's final state.
        """
        batch = len(d_raw)
        if self.decoder_kind == "direct":
            d_z = self.head.backward(d_raw.reshape(batch, -1))
            d_h_n = np.zeros((self.encoder.num_layers, batch, self.hidden_size), dtype=self.dtype)
            d_h_n[-1] = self.drop.backward(d_z[:, :self.hidden_size])
            self.encoder.backward(d_h_n=d_h_n)
            return
        d_out = self.drop.backward(self.head.backward(d_raw.reshape(batch, self.horizon, -1)))
        _, d_state = self.decoder.backward(d_out)
        if self.cell == "lstm":
            self.encoder.backward(d_h_n=d_state[0], d_c_n=d_state[1])
        else:
            self.encoder.backward(d_h_n=d_state)

    def eval_loss(self, batch: dict, carry=None):
        """(summed loss, number of terms, None) of the forecast as predict makes it, without gradients."""
        x, future = self._inputs(batch, need_y=True)
        loss, _ = self.loss_terms(self.forward(x, future), batch["y"], reduction="sum")
        return float(loss), int(np.asarray(batch["y"]).size) * (self.k if self.loss_name == "quantile" else 1), None
