"""The figures of `rnnkit explain` (rnnkit/tasks/explain.py) as PNG bytes: each with a title, axis labels and a
legend. Needs matplotlib (rnnkit.plots draws on its Agg canvas, without pyplot)."""
from __future__ import annotations

import io

import numpy as np

from ..plots import _figure, gates_figure, gradient_norms_figure


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def gradient_png(curves: dict, length: int, title: str | None = None) -> bytes:
    """curves: {label: (T,) ‖∂L/∂h_t‖}."""
    return _png(gradient_norms_figure(
        curves, title or f"Gradient through time at initialisation, adding problem, T = {length}"))


def long_png(long: dict, fraction: float, steps) -> bytes:
    """long: {problem: {label: {T: validation loss / baseline}}}; one panel per problem, loss / baseline against
    T (log-log), with the baseline and the success line; steps: the runs' budget, or {problem: budget}."""
    fig = _figure(5.0 * len(long) + 1.0, 4.2)
    for k, (problem, curves) in enumerate(long.items()):
        ax = fig.add_subplot(1, len(long), k + 1)
        for label, by_length in curves.items():
            lengths = sorted(by_length)
            ax.plot(lengths, [by_length[t] for t in lengths], marker="o", linewidth=1.5, label=label)
        ax.axhline(1.0, color="grey", linestyle="--", label="memoryless baseline")
        ax.axhline(fraction, color="green", linestyle=":", label=f"success: below {fraction:g} × baseline")
        lengths = sorted({t for by_length in curves.values() for t in by_length})
        ax.set_xscale("log")
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("validation loss / baseline")
        budget = steps[problem] if isinstance(steps, dict) else steps
        ax.set_title(f"{problem[0].upper() + problem[1:]}, at most {budget} updates")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def bptt_png(losses: dict, levels: dict) -> bytes:
    """losses: {truncation k: validation nats/char}; levels: echo_losses' "remembers" and "memoryless"."""
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    ks = sorted(losses)
    ax.plot(ks, [losses[k] for k in ks], marker="o", linewidth=1.5, label="character LSTM")
    ax.axhline(levels["memoryless"], color="grey", linestyle="--", label="memoryless (echo not remembered)")
    ax.axhline(levels["remembers"], color="green", linestyle=":", label="echo remembered exactly")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("truncation length k (steps of BPTT per window)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("Truncated BPTT: validation loss against the window length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def embeddings_png(arms: dict) -> bytes:
    """arms: {label: {"accuracy", "macro_f1"}}: grouped bars."""
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(arms))
    for k, (key, name) in enumerate((("accuracy", "accuracy"), ("macro_f1", "macro-F1"))):
        values = [r[key] for r in arms.values()]
        bars = ax.bar(x + (k - 0.5) * 0.38, values, width=0.38, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, list(arms))
    ax.set_ylim(0, 1)
    ax.set_xlabel("inputs")
    ax.set_ylabel("test score")
    ax.set_title("Sentiment: one-hot vs learned vs pretrained embeddings")
    ax.legend(fontsize=8)
    return _png(fig)


def curves_png(runs: dict, title: str, clip: float | None = None) -> bytes:
    """runs: {label: {"loss": (steps,), "grad_norm": (steps,)}}: the training loss and the gradient norm
    before clipping per update, log scale; a run that turns non-finite ends in an x at its last finite value;
    `clip`: the threshold's line."""
    fig = _figure(10.0, 4.0)
    fig.suptitle(title)
    for k, (key, name) in enumerate((("loss", "training loss (MSE)"), ("grad_norm", "gradient norm before clipping"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for label, run in runs.items():
            values = np.asarray(run[key], np.float64)
            shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
            bad = np.nonzero(~np.isfinite(values))[0]
            if len(bad):
                label = f"{label} (non-finite from update {bad[0] + 1})"
            line, = ax.plot(np.arange(1, len(values) + 1), shown, linewidth=1.0, label=label)
            finite = np.nonzero(np.isfinite(shown))[0]
            if len(bad) and len(finite):
                last = finite[finite < bad[0]][-1] if np.any(finite < bad[0]) else finite[0]
                ax.plot([last + 1], [shown[last]], marker="x", markersize=10, color=line.get_color())
        if key == "grad_norm" and clip:
            ax.axhline(clip, color="grey", linestyle="--", label=f"clipping threshold {clip:g}")
        ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_ylabel(name)
        ax.set_title(name.split(" (")[0])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def gates_png(activations: list, title: str) -> bytes:
    """Histograms of the gates' activations (Diagnosis.gate_activations)."""
    return _png(gates_figure(activations, title))
