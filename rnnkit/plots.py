"""Figures as PNG files: a confusion matrix, the curves of a training run (`rnnkit plot RUN`), an attention
heat map, a learning curve (scores against epochs), a forecast, and what rnnkit.diagnostics measures
(gradients through time, gate activations, hidden states).

Needs matplotlib (`pip install 'rnnkit[plots]'`), imported only when a figure is drawn. The figures are drawn
on matplotlib's Agg canvas directly, without pyplot, so they never open a window or change the backend of
the program that calls them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .checkpoint.atomic import check_output, write_bytes_atomic


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("rnnkit.plots needs matplotlib; install it with: pip install 'rnnkit[plots]'") from None
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(matrix, label_names, path: str | os.PathLike, title: str = "Confusion matrix") -> Path:
    """Write a confusion matrix (rows true, columns predicted) as a PNG (confusion_figure); return its path."""
    return _save(confusion_figure(matrix, label_names, title), path)


def confusion_figure(matrix, label_names, title: str = "Confusion matrix"):
    """A confusion matrix (rows true, columns predicted) as a matplotlib Figure.

    Each cell shows its count and its share of the row (the true class; "n/a" in a row without examples); the
    colour is that share, so classes of different sizes read alike. `title` may name the model, the data and
    the scores (rnnkit evaluate's does); the count of examples is added to it.
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"expected a non-empty square matrix, got shape {m.shape}")
    names = [str(n) for n in label_names]
    if len(names) != len(m):
        raise ValueError(f"{len(names)} label names for a {len(m)}x{len(m)} matrix")
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    k = len(m)
    size = 2.5 + 0.9 * k
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(k):
        for j in range(k):
            shown = f"{share[i, j]:.0%}" if rows[i, 0] > 0 else "n/a"   # a class with no examples has no share
            ax.text(j, i, f"{int(m[i, j])}\n{shown}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.55 else "black")
    slant = max(map(len, names)) > 6
    ax.set_xticks(range(k), names, rotation=30 if slant else 0, ha="right" if slant else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (n = {int(m.sum())})")
    return fig


def read_history(metrics_jsonl_path: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """The (step, value) series of every numeric metric in a run's metrics.jsonl, by name."""
    from .runs import read_metrics

    series: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(metrics_jsonl_path):
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, []).append((record["step"], float(value)))
    return series


def plot_history(metrics_jsonl_path: str | os.PathLike, path: str | os.PathLike,
                 title: str = "Training history") -> Path:
    """Plot the training loss ("loss") and validation loss ("val_loss") of a run against the step; write a PNG."""
    return _save(history_figure(metrics_jsonl_path, title), path)


def history_figure(metrics_jsonl_path: str | os.PathLike, title: str = "Training history"):
    """plot_history's figure (a matplotlib Figure), not yet saved."""
    series = read_history(metrics_jsonl_path)
    curves = {k: v for k, v in series.items() if k in ("loss", "val_loss")}
    if not curves:
        raise ValueError(f"{metrics_jsonl_path}: no 'loss' or 'val_loss' values to plot "
                         f"(found: {sorted(series) or 'nothing'})")
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    _loss_panel(ax, curves, lambda pairs: [s for s, _ in pairs])
    ax.set_xlabel("step")
    ax.set_title(title)
    return fig


def _loss_panel(ax, series: dict, xs) -> None:
    """Training loss (thin) and validation loss (dots), the best validation loss marked and named in the
    legend (inside the axes, so it is never cut at the figure's edge)."""
    if "loss" in series:
        ax.plot(xs(series["loss"]), [v for _, v in series["loss"]], color="tab:blue", linewidth=1.0, alpha=0.8,
                label="training loss")
    if "val_loss" in series:
        x, values = xs(series["val_loss"]), [v for _, v in series["val_loss"]]
        ax.plot(x, values, color="tab:orange", linewidth=2.0, marker="o", markersize=4, label="validation loss")
        best = int(np.nanargmin(values)) if np.isfinite(values).any() else 0
        ax.plot([x[best]], [values[best]], marker="*", markersize=13, color="tab:red", linestyle="none",
                label=f"best {values[best]:.4g} (step {series['val_loss'][best][0]})")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def plot_run(run_dir: str | os.PathLike, path: str | os.PathLike | None = None, svg: bool = False,
             x: str = "step") -> list[Path]:
    """The curves of a training run (its metrics.jsonl) in four panels: the training and validation loss, the
    other validation metrics, the learning rate, the gradient norm; against the step or (x="time") the wall
    time. Writes `path` (default RUN/curves.png), and beside it an SVG with `svg`; returns the files."""
    fig = run_figure(run_dir, x)
    path = Path(path) if path is not None else Path(run_dir) / "curves.png"
    written = [_save(fig, path)]
    if svg:
        written.append(_save(fig, path.with_suffix(".svg"), "svg"))
    return written


def run_figure(run_dir: str | os.PathLike, x: str = "step"):
    """plot_run's figure (a matplotlib Figure), not yet saved."""
    from .runs import METRICS

    if x not in ("step", "time"):
        raise ValueError(f"x must be step or time, got {x!r}")
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS
    if not metrics.exists():
        raise FileNotFoundError(f"{run_dir} holds no {METRICS}: is it a training run's folder (--out)?")
    series = read_history(metrics)
    if "loss" not in series and "val_loss" not in series:
        raise ValueError(f"{metrics}: no loss values to plot yet")
    xs = lambda pairs: [s for s, _ in pairs]  # noqa: E731
    xlabel = "step"
    if x == "time":
        walls = dict(series.get("wall_s", []))
        if not walls:
            raise ValueError(f"{metrics} has no wall times (wall_s): its run was logged by an older rnnkit; plot it "
                             f"against the step")
        steps, seconds = zip(*sorted(walls.items()))
        xs = lambda pairs: list(np.interp([s for s, _ in pairs], steps, seconds) / 60)  # noqa: E731
        xlabel = "wall time (minutes)"
    fig = _figure(10.0, 6.6)
    (loss_ax, val_ax), (lr_ax, norm_ax) = fig.subplots(2, 2, sharex=True)
    _loss_panel(loss_ax, series, xs)
    loss_ax.set_title("loss")
    shown = [k for k in sorted(series) if k.startswith("val_") and k not in ("val_loss", "val_perplexity")]
    for key in shown:
        val_ax.plot(xs(series[key]), [v for _, v in series[key]], marker="o", markersize=3, label=key[4:])
    val_ax.set_title("validation metrics" if shown else "validation metrics (none but the loss)")
    if shown:
        val_ax.legend(fontsize=8)
    for ax, key, label in ((lr_ax, "lr", "learning rate"), (norm_ax, "grad_norm", "gradient norm")):
        if key in series:
            values = [v for _, v in series[key]]
            ax.plot(xs(series[key]), values, linewidth=1.0)
            if key == "grad_norm" and min(values) > 0 and max(values) / min(values) > 100:
                ax.set_yscale("log")
        ax.set_title(label)
    for ax in (val_ax, lr_ax, norm_ax):
        ax.grid(True, alpha=0.3)
    for ax in (lr_ax, norm_ax):
        ax.set_xlabel(xlabel)
    fig.suptitle(f"training run {run_dir.resolve().name}")
    return fig


def plot_attention(weights, source_tokens, target_tokens, path: str | os.PathLike,
                   title: str = "Attention") -> Path:
    """Write an attention heat map as a PNG; return its path.

    weights (target steps, source tokens): row t is the attention of output step t over the source (each row
    sums to 1 over the real source tokens); columns are labelled with `source_tokens`, rows with
    `target_tokens`. Darker is more attention.
    """
    w = np.asarray(weights, dtype=np.float64)
    sources, targets = [str(t) for t in source_tokens], [str(t) for t in target_tokens]
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"expected non-empty attention weights (target steps, source tokens), got shape {w.shape}")
    if w.shape != (len(targets), len(sources)):
        raise ValueError(f"attention weights of shape {w.shape} for {len(targets)} target and {len(sources)} "
                         f"source tokens")
    if not np.isfinite(w).all() or w.min() < 0 or w.max() > 1 + 1e-6:
        raise ValueError("attention weights must be finite and lie in [0, 1]")
    cell = 0.32
    fig = _figure(min(2.0 + cell * len(sources), 24.0), min(1.6 + cell * len(targets), 24.0))
    ax = fig.add_subplot()
    image = ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention")
    ax.set_xticks(range(len(sources)), sources, rotation=90, fontsize=8)
    ax.set_yticks(range(len(targets)), targets, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title)
    return _save(fig, path)


def learning_curve_figure(curves: dict, xlabel: str, ylabel: str, title: str = "Learning curve",
                          target: float | None = None):
    """Scores against training time: one line with markers per curve, {label: [(x, y), ...]} (e.g. test BLEU
    after each epoch, greedy and beam search), and `target` as a dashed horizontal line."""
    if not curves or not all(len(points) for points in curves.values()):
        raise ValueError("expected at least one curve, each with at least one (x, y) point")
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for label, points in curves.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.5, label=label)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1.0, label=f"target {target:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_learning_curve(curves: dict, path: str | os.PathLike, xlabel: str, ylabel: str,
                        title: str = "Learning curve", target: float | None = None) -> Path:
    """Write learning_curve_figure as a PNG; return its path."""
    return _save(learning_curve_figure(curves, xlabel, ylabel, title, target), path)


def _columns(a, name: str) -> np.ndarray:
    """A (time,) or (time, targets) array as (time, targets) float64."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"expected {name} of shape (time,) or (time, targets), got {a.shape}")
    return a[:, None] if a.ndim == 1 else a


def _date_axis(ax, x) -> None:
    """Readable ticks on a date axis (matplotlib's concise dates: "Feb", "08", "2025" under "Jan"...)."""
    if np.issubdtype(np.asarray(x).dtype, np.datetime64):
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _target_panels(label, targets: int):
    """The axes of a new figure, one panel a target, sharing the time axis, each named by its label (`label`:
    one name, or one per target)."""
    labels = [label] if isinstance(label, str) else list(label)
    if len(labels) != targets:
        raise ValueError(f"{len(labels)} labels for {targets} targets")
    fig = _figure(8.0, 1.0 + 3.2 * targets)
    axes = fig.subplots(targets, 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, labels):
        ax.set_ylabel(name)
    return axes


def _finish_panels(axes, dates, title: str):
    """Grid, date ticks, the title and the legend on `_target_panels`' axes; their figure."""
    for ax in axes:
        ax.grid(True, alpha=0.3)
        _date_axis(ax, dates)
    axes[0].set_title(title)
    axes[0].legend(loc="best")
    return axes[0].figure


def plot_forecast(history_dates, history, dates, forecast, path: str | os.PathLike, intervals=None,
                  truth=None, title: str = "Forecast", label="value") -> Path:
    """Write a forecast figure as a PNG, one panel per target: the history, the forecast, its intervals
    shaded (widest palest) and, when given, the held-out truth; return its path.

    history (time,) or (time, targets) with history_dates; forecast (horizon,) or (horizon, targets) with
    dates (datetime64 or numbers on one axis); intervals {level: (lower, upper)}, each shaped as the
    forecast; truth shaped as the forecast; label: the target's name, or one per target."""
    history, forecast = _columns(history, "history"), _columns(forecast, "forecast")
    targets = forecast.shape[1]
    if len(history) != len(history_dates) or len(forecast) != len(dates) or history.shape[1] != targets:
        raise ValueError(f"expected history and forecast matching their dates and each other's targets; got "
                         f"{history.shape} for {len(history_dates)} dates and {forecast.shape} for {len(dates)}")
    if truth is not None:
        truth = _columns(truth, "truth")
        if truth.shape != forecast.shape:
            raise ValueError(f"truth has shape {truth.shape}, the forecast {forecast.shape}")
    bands = {level: (_columns(lo, "an interval"), _columns(hi, "an interval"))
             for level, (lo, hi) in (intervals or {}).items()}
    if any(lo.shape != forecast.shape or hi.shape != forecast.shape for lo, hi in bands.values()):
        raise ValueError(f"every interval must have the forecast's shape {forecast.shape}")
    axes = _target_panels(label, targets)
    for j, ax in enumerate(axes):
        ax.plot(history_dates, history[:, j], color="black", linewidth=1.2, label="history")
        for i, (level, (lo, hi)) in enumerate(sorted(bands.items(), reverse=True)):
            ax.fill_between(dates, lo[:, j], hi[:, j], color="tab:blue", alpha=0.15 + 0.15 * i, linewidth=0,
                            label=f"{level:g}% interval")
        ax.plot(dates, forecast[:, j], color="tab:blue", linewidth=2.0, label="forecast")
        if truth is not None:
            ax.plot(dates, truth[:, j], color="tab:red", linewidth=1.2, linestyle="--", label="held-out truth")
    return _save(_finish_panels(axes, dates, title), path)


def plot_backtest(dates, series, forecast_dates, forecasts, path: str | os.PathLike, title: str = "Backtest",
                  label="value", last_points_only: bool = False) -> Path:
    """Write a backtest figure as a PNG, one panel per target: the series, and each historical forecast as a
    line from its first step (or, with `last_points_only`, the series of their last points); return its path.

    series (time,) or (time, targets) with dates; forecasts (n, horizon) or (n, horizon, targets), forecast
    k over forecast_dates[k] (horizon,) dates; label: the target's name, or one per target."""
    series = _columns(series, "series")
    forecasts = np.asarray(forecasts, dtype=np.float64)
    forecasts = forecasts[..., None] if forecasts.ndim == 2 else forecasts
    when = np.asarray(forecast_dates)
    targets = series.shape[1]
    if len(series) != len(dates) or forecasts.ndim != 3 or forecasts.shape[2] != targets or \
            when.shape != forecasts.shape[:2]:
        raise ValueError(f"expected the series matching its dates, forecasts (n, horizon, {targets}) and their "
                         f"dates (n, horizon); got {series.shape} for {len(dates)} dates, forecasts "
                         f"{forecasts.shape}, dates {when.shape}")
    axes = _target_panels(label, targets)
    for j, ax in enumerate(axes):
        ax.plot(dates, series[:, j], color="black", linewidth=1.2, label="series")
        if last_points_only:
            ax.plot(when[:, -1], forecasts[:, -1, j], color="tab:blue", linewidth=1.6, marker="o", markersize=3,
                    label=f"forecasts' step {forecasts.shape[1]}")
        else:
            for k in range(len(forecasts)):
                ax.plot(when[k], forecasts[k, :, j], color="tab:blue", linewidth=1.0, alpha=0.6,
                        label="historical forecasts" if k == 0 else None)
    return _save(_finish_panels(axes, dates, title), path)


# ------------------------------------------------------------------------------------------------ diagnostics
# Figures of rnnkit.diagnostics' measurements: gradients through time, gates, hidden states.

def _save(fig, path, format: str = "png") -> Path:
    """The figure written to `path` atomically (drawn in memory first): a failed draw or a full disk leaves
    the file that was there, if any, as it was; a file of another kind there is refused (check_output)."""
    check_output(path, format)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format)
    return write_bytes_atomic(path, buffer.getvalue())


def gradient_norms_figure(curves, title: str = "Gradient through time", state: str = "h"):
    """‖∂L/∂h_t‖ against the step t on a log scale, one line per layer of each curve (`state`: the state's
    letter on the axis, "s" for a decoder's).

    curves: an array (layers, time) or (time,), or {label: such an array} to compare models (cells,
    initialisations, before/after training)."""
    if not isinstance(curves, dict):
        curves = {"": curves}
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for label, norms in curves.items():
        norms = np.atleast_2d(np.asarray(norms, dtype=np.float64))
        for layer, series in enumerate(norms):
            name = " ".join(part for part in (label, f"layer {layer}" if len(norms) > 1 or not label else "") if part)
            positive = np.where(series > 0, series, np.nan)       # log scale: a zero gradient is not drawn
            ax.plot(np.arange(1, len(series) + 1), positive, linewidth=1.5, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(f"‖∂L/∂{state}_t‖")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_gradient_norms(curves, path: str | os.PathLike, title: str = "Gradient through time",
                        state: str = "h") -> Path:
    """Write gradient_norms_figure as a PNG; return its path."""
    return _save(gradient_norms_figure(curves, title, state), path)


def gates_figure(activations: list, title: str = "Gate activations", names: list | None = None):
    """Histograms of each layer's gate activations in [0, 1] (activations: per layer {gate: values}, as
    Diagnosis.gate_activations; `names` per layer, "layer k" by default), the mean and saturated share
    (< 0.05 or > 0.95) of each in its legend."""
    names = names or [f"layer {k}" for k in range(len(activations))]
    layers = [(name, a) for name, a in zip(names, activations) if a]
    if not layers:
        raise ValueError("no gates to plot: a plain RNN has none (LSTM and GRU do)")
    fig = _figure(4.0 * len(layers) + 1.0, 3.8)
    bins = np.linspace(0.0, 1.0, 41)
    for k, (layer, gates) in enumerate(layers):
        ax = fig.add_subplot(1, len(layers), k + 1)
        for name, values in gates.items():
            values = np.ravel(values)
            saturated = np.mean((values < 0.05) | (values > 0.95))
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, density=True,
                    label=f"{name}: mean {values.mean():.2f}, {saturated:.0%} saturated")
        ax.axvspan(0.0, 0.05, color="grey", alpha=0.15)
        ax.axvspan(0.95, 1.0, color="grey", alpha=0.15)
        ax.set_xlabel("gate activation")
        ax.set_ylabel("density")
        ax.set_title(f"{title}, {layer}")
        ax.legend(fontsize=7)
    return fig


def plot_gates(activations: list, path: str | os.PathLike, title: str = "Gate activations",
               names: list | None = None) -> Path:
    return _save(gates_figure(activations, title, names), path)


def hidden_states_figure(hidden, title: str = "Hidden states"):
    """A heat map of hidden states (time, units): time across, one row per unit, the colour the value."""
    h = np.asarray(hidden, dtype=np.float64)
    if h.ndim != 2 or h.size == 0:
        raise ValueError(f"expected hidden states (time, units), got shape {h.shape}")
    fig = _figure(7.5, 2.5 + min(h.shape[1], 64) * 0.04)
    ax = fig.add_subplot()
    bound = max(float(np.abs(h).max()), 1e-12)
    image = ax.imshow(h.T, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest",
                      extent=(0.5, h.shape[0] + 0.5, h.shape[1] - 0.5, -0.5))
    fig.colorbar(image, ax=ax, label="h_t")
    ax.set_xlabel("time step t")
    ax.set_ylabel("unit")
    ax.set_title(title)
    return fig


def plot_hidden_states(hidden, path: str | os.PathLike, title: str = "Hidden states") -> Path:
    return _save(hidden_states_figure(hidden, title), path)


def plot_diagnosis(diagnosis, folder: str | os.PathLike, name: str = "") -> list[Path]:
    """The figures of an rnnkit.diagnostics.Diagnosis in `folder`: gradient_norms.png, decoder_gradient_norms.png
    (a translation model's decoder), gates.png (gated cells), hidden_l{k}.png per layer (and
    decoder_hidden_l{k}.png per decoder layer); `name` goes into the titles. Returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{name}: " if name else ""
    paths = [plot_gradient_norms({diagnosis.cell: diagnosis.gradient_norms}, folder / "gradient_norms.png",
                                 f"{prefix}gradient through time")]
    if diagnosis.decoder_gradient_norms is not None:
        paths.append(plot_gradient_norms({f"{diagnosis.cell} decoder": diagnosis.decoder_gradient_norms},
                                         folder / "decoder_gradient_norms.png",
                                         f"{prefix}decoder's gradient through the target steps", "s"))
    names = (diagnosis.layers or [f"layer {k}" for k in range(len(diagnosis.gradient_norms))]) \
        + diagnosis.decoder_layers
    if any(diagnosis.gate_activations):
        paths.append(plot_gates(diagnosis.gate_activations, folder / "gates.png", f"{prefix}gates", names))
    encoder = len(names) - len(diagnosis.decoder_layers)
    files = [f"hidden_l{k}.png" for k in range(encoder)] + \
        [f"decoder_hidden_l{k}.png" for k in range(len(diagnosis.decoder_layers))]
    for hidden, layer, file in zip(diagnosis.hidden, names, files):
        paths.append(plot_hidden_states(hidden, folder / file, f"{prefix}hidden states, {layer}"))
    return paths
