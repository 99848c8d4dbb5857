"""Figures as PNG files: a confusion matrix, the loss curves of a training run, and a forecast.

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
    """Write a confusion matrix (rows true, columns predicted) as a PNG; return its path.

    Each cell shows its count and its share of the row (the true class); the colour is that share, so
    classes of different sizes read alike.
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
            ax.text(j, i, f"{int(m[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.55 else "black")
    slant = max(map(len, names)) > 6
    ax.set_xticks(range(k), names, rotation=30 if slant else 0, ha="right" if slant else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (n = {int(m.sum())})")
    path = Path(path)
    fig.savefig(path, format="png")
    return path


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


def plot_forecast(history_dates, history, dates, forecast, path: str | os.PathLike, intervals=None,
                  truth=None, title: str = "Forecast", label: str = "value") -> Path:
    """Write a forecast figure as a PNG: the history, the forecast, its intervals shaded (widest palest) and,
    when given, the held-out truth; return its path.

    history (time,) with history_dates; forecast (horizon,) with dates (datetime64 or numbers on one axis);
    intervals {level: (lower (horizon,), upper (horizon,))}; truth (horizon,) beside the forecast."""
    history, forecast = np.asarray(history, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if history.ndim != 1 or forecast.ndim != 1 or len(history) != len(history_dates) or len(forecast) != len(dates):
        raise ValueError(f"expected 1-D history and forecast matching their dates; got {history.shape} for "
                         f"{len(history_dates)} dates and {forecast.shape} for {len(dates)}")
    if truth is not None and np.shape(truth) != forecast.shape:
        raise ValueError(f"truth has shape {np.shape(truth)}, the forecast {forecast.shape}")
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(history_dates, history, color="black", linewidth=1.2, label="history")
    for i, (level, (lo, hi)) in enumerate(sorted((intervals or {}).items(), reverse=True)):
        ax.fill_between(dates, np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64),
                        color="tab:blue", alpha=0.15 + 0.15 * i, linewidth=0, label=f"{level:g}% interval")
    ax.plot(dates, forecast, color="tab:blue", linewidth=2.0, label="forecast")
    if truth is not None:
        ax.plot(dates, np.asarray(truth, dtype=np.float64), color="tab:red", linewidth=1.2, linestyle="--",
                label="held-out truth")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    path = Path(path)
    fig.savefig(path, format="png")
    return path
