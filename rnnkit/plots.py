"""Figures as PNG files: a confusion matrix, the loss curves of a training run, and what rnnkit.diagnostics
measures (gradients through time, gate activations, hidden states).

Needs matplotlib (`pip install 'rnnkit[plots]'`), imported only when a figure is drawn. The figures are drawn
on matplotlib's Agg canvas directly, without pyplot, so they never open a window or change the backend of
the program that calls them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


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
    path = Path(path)
    confusion_figure(matrix, label_names, title).savefig(path, format="png")
    return path


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
    path = Path(metrics_jsonl_path)
    series: dict[str, list[tuple[int, float]]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path}, line {lineno}: expected a JSON object with a 'step'")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, []).append((record["step"], float(value)))
    return series


def plot_history(metrics_jsonl_path: str | os.PathLike, path: str | os.PathLike,
                 title: str = "Training history") -> Path:
    """Plot the training loss ("loss") and validation loss ("val_loss") of a run against the step; write a PNG."""
    series = read_history(metrics_jsonl_path)
    curves = {k: v for k, v in series.items() if k in ("loss", "val_loss")}
    if not curves:
        raise ValueError(f"{metrics_jsonl_path}: no 'loss' or 'val_loss' values to plot "
                         f"(found: {sorted(series) or 'nothing'})")
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    if "loss" in curves:
        steps, values = zip(*curves["loss"])
        ax.plot(steps, values, color="tab:blue", linewidth=1.0, alpha=0.8, label="training loss")
    if "val_loss" in curves:
        steps, values = zip(*curves["val_loss"])
        ax.plot(steps, values, color="tab:orange", linewidth=2.0, marker="o", markersize=4,
                label="validation loss")
        best = int(np.argmin(values))
        ax.annotate(f"best {values[best]:.3f}", (steps[best], values[best]), textcoords="offset points",
                    xytext=(0, 10), ha="center", fontsize=8, color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


# ------------------------------------------------------------------------------------------------ diagnostics
# Figures of rnnkit.diagnostics' measurements: gradients through time, gates, hidden states.

def _save(fig, path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def gradient_norms_figure(curves, title: str = "Gradient through time"):
    """‖∂L/∂h_t‖ against the step t on a log scale, one line per layer of each curve.

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
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_gradient_norms(curves, path: str | os.PathLike, title: str = "Gradient through time") -> Path:
    """Write gradient_norms_figure as a PNG; return its path."""
    return _save(gradient_norms_figure(curves, title), path)


def gates_figure(activations: list, title: str = "Gate activations"):
    """Histograms of each layer's gate activations in [0, 1] (activations: per layer {gate: values}, as
    Diagnosis.gate_activations), the mean and saturated share (< 0.05 or > 0.95) of each in its legend."""
    layers = [a for a in activations if a]
    if not layers:
        raise ValueError("no gates to plot: a plain RNN has none (LSTM and GRU do)")
    fig = _figure(4.0 * len(layers) + 1.0, 3.8)
    bins = np.linspace(0.0, 1.0, 41)
    for k, gates in enumerate(layers):
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
        ax.set_title(f"{title}, layer {k}")
        ax.legend(fontsize=7)
    return fig


def plot_gates(activations: list, path: str | os.PathLike, title: str = "Gate activations") -> Path:
    return _save(gates_figure(activations, title), path)


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
    """The figures of an rnnkit.diagnostics.Diagnosis in `folder`: gradient_norms.png, gates.png (gated cells),
    hidden_l{k}.png per layer; `name` goes into the titles. Returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{name}: " if name else ""
    paths = [plot_gradient_norms({diagnosis.cell: diagnosis.gradient_norms}, folder / "gradient_norms.png",
                                 f"{prefix}gradient through time")]
    if any(diagnosis.gate_activations):
        paths.append(plot_gates(diagnosis.gate_activations, folder / "gates.png", f"{prefix}gates"))
    for k, hidden in enumerate(diagnosis.hidden):
        paths.append(plot_hidden_states(hidden, folder / f"hidden_l{k}.png", f"{prefix}hidden states, layer {k}"))
    return paths
