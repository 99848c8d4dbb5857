"""The engine-neutral vocabulary: the names a user may choose, each listed once and checked in one place.

Both engines (rnnkit/scratch, rnnkit/torch), the trainer, the tasks and the CLI take their choices from here,
so a new cell, pooling, optimizer or schedule is added in one line.
"""
from __future__ import annotations

import numbers

ENGINES = ("scratch", "torch")
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}     # gate blocks in weight_ih/weight_hh's rows
POOLING = ("last", "mean", "max", "attention")
ATTENTION = ("none", "bahdanau", "luong-dot", "luong-general")   # the translation decoder's
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")   # the torch engine's arithmetic in training: autocast, weights kept fp32
INITS = ("pytorch", "xavier", "orthogonal", "identity")   # the recurrent layers' initial weights (initialization.py)


def check_choice(kind: str, value, choices) -> str:
    """`value` if it is one of `choices`, else a ValueError that lists them ("unknown cell 'x'; choose one of ...")."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_engine(name) -> str:
    return check_choice("engine", name, ENGINES)


def check_device(engine: str, device: str) -> str:
    """`device` if `engine` can run on it: the scratch engine (NumPy) runs on the CPU only, so it refuses
    "cuda" rather than quietly train on the CPU; "auto" is the CPU for it, a GPU if there is one for torch."""
    check_choice("device", device, DEVICES)
    if engine == "scratch" and device == "cuda":
        raise ValueError("the scratch engine runs on the CPU only; for a GPU use the torch engine "
                         "(--engine torch --device cuda), or --device cpu")
    return device


def check_precision(engine: str, precision: str, dtype: str = "float32") -> str:
    """`precision` if `engine` can train in it: bf16/fp16 are the torch engine's mixed precision (autocast over
    float32 weights), so the scratch engine and float64 weights refuse them rather than quietly train in fp32."""
    check_choice("precision", precision, PRECISIONS)
    if precision != "fp32" and engine == "scratch":
        raise ValueError(f"--precision {precision} is the torch engine's mixed precision; the scratch engine "
                         f"computes in --dtype (float32 or float64): use --engine torch, or --precision fp32")
    if precision != "fp32" and dtype != "float32":
        raise ValueError(f"--precision {precision} keeps float32 master weights; it needs --dtype float32, "
                         f"got {dtype}")
    return precision


def check_cell(name) -> str:
    return check_choice("cell", name, CELLS)


def check_pooling(name) -> str:
    return check_choice("pooling", name, POOLING)


def check_attention(name) -> str:
    return check_choice("attention", name, ATTENTION)


def check_optimizer(name) -> str:
    return check_choice("optimizer", name, OPTIMIZERS)


def check_dtype(name) -> str:
    return check_choice("dtype", name, DTYPES)


MAX_LAYERS = 64  # stacked recurrent layers a model may have (each layer is built in Python: 10^6 took minutes)


def check_layers(num_layers) -> None:
    """At most MAX_LAYERS stacked layers (the models check the type and the lower bound)."""
    if isinstance(num_layers, numbers.Integral) and not isinstance(num_layers, bool) and num_layers > MAX_LAYERS:
        raise ValueError(f"num_layers must be at most {MAX_LAYERS}, got {num_layers}")


# ------------------------------------------------------------------------------------------- forecasting
FORECAST_DECODERS = ("direct", "autoregressive")
FORECAST_LOSSES = ("mse", "mae", "quantile", "gaussian")
SCALE_FLOOR = 1e-6  # the Gaussian head's scale is softplus(raw) + SCALE_FLOOR, so log(scale) stays finite


def check_forecaster(input_size, output_size, horizon, future_size, decoder, loss, quantiles,
                     teacher_forcing) -> tuple[float, ...]:
    """Check a Forecaster's settings (both engines call this); returns the quantiles as a tuple of floats.

    The targets are the first `output_size` of the `input_size` features of each past step, so
    input_size >= output_size. Quantiles: distinct, strictly increasing, each in (0, 1).
    """
    for name, value, low in (("input_size", input_size, 1), ("output_size", output_size, 1),
                             ("horizon", horizon, 1), ("future_size", future_size, 0)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if input_size < output_size:
        raise ValueError(f"input_size ({input_size}) must count the {output_size} target series and the "
                         f"covariates, so it cannot be smaller than output_size")
    check_choice("decoder", decoder, FORECAST_DECODERS)
    check_choice("forecast loss", loss, FORECAST_LOSSES)
    if not isinstance(teacher_forcing, numbers.Real) or not 0.0 <= teacher_forcing <= 1.0:
        raise ValueError(f"teacher_forcing must be in [0, 1], got {teacher_forcing}")
    if not isinstance(quantiles, (list, tuple)) or not all(isinstance(q, numbers.Real) for q in quantiles):
        raise ValueError(f"quantiles must be a list of numbers in (0, 1), got {quantiles!r}")
    quantiles = tuple(float(q) for q in quantiles)
    if loss == "quantile":
        if not quantiles:
            raise ValueError("the quantile loss needs at least one quantile")
        if not all(0.0 < q < 1.0 for q in quantiles) or any(a >= b for a, b in zip(quantiles, quantiles[1:])):
            raise ValueError(f"quantiles must be strictly increasing, each in (0, 1), got {quantiles}")
    return quantiles if loss == "quantile" else ()


def forecast_outputs(loss: str, quantiles) -> int:
    """K, the numbers a forecaster gives per step and target: 1 (mse, mae), len(quantiles), 2 (mean, scale)."""
    return {"quantile": len(quantiles), "gaussian": 2}.get(loss, 1)


def point_index(loss: str, quantiles) -> int:
    """Which of the K outputs is the point forecast: the quantile nearest 0.5 (the median when 0.5 is one of
    them), the mean for the Gaussian, the only one otherwise. The autoregressive decoder feeds it back."""
    if loss != "quantile":
        return 0
    return min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))


def check_forecast_batch(batch: dict, input_size: int, output_size: int, horizon: int, future_size: int,
                         need_y: bool = True) -> None:
    """Clear errors for a forecasting batch (see rnnkit/scratch/forecaster.py) of the wrong shapes."""
    import numpy as np

    x = np.shape(batch.get("x", ()))
    if len(x) != 3 or x[0] == 0 or x[1] == 0 or x[2] != input_size:
        raise ValueError(f"x must be (batch, window, input_size={input_size}) with batch, window >= 1, got {x}")
    expected = {"y": output_size, "future": future_size, "y_prev": output_size}
    for name, width in expected.items():
        if name not in batch or batch[name] is None:
            if name == "future" and future_size:
                raise ValueError(f"this forecaster takes {future_size} known-future covariates: the batch "
                                 f"needs 'future' (batch, horizon, {future_size})")
            if name == "y" and need_y:
                raise ValueError("the batch needs 'y' (batch, horizon, output_size)")
            continue
        if name == "future" and not future_size:
            raise ValueError("this forecaster takes no known-future covariates (future_size=0), but the "
                             "batch has 'future'")
        shape = np.shape(batch[name])
        if shape != (x[0], horizon, width):
            raise ValueError(f"{name} must be (batch, horizon, {width}) = {(x[0], horizon, width)}, got {shape}")
