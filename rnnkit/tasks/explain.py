"""`rnnkit explain`: the notebook's "Points to Ponder" answered by experiment, as a page with its figures.

    run_experiments(scale)        → Findings: every number the page states, measured on the scratch engine
    write_report(findings, out)   → out/index.html, out/index.md and the PNG figures beside them
    explain(out, scale="quick")   both

Every experiment is the adding problem (rnnkit.data.memory_tasks.adding: sum the two marked numbers of T;
predicting the mean scores MSE 1/6, the memoryless baseline) learned by a Forecaster read at the last step, so
∂L/∂h_t reaches step t only through the recurrence:
    vanishing   ‖∂L/∂h_t‖ vs t at initialisation (rnnkit.diagnostics), RNN (tanh) vs LSTM (forget bias 1)
                vs GRU, and the ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖
    long        validation MSE after a fixed budget of updates, per cell and T; success = MSE below
                `success_fraction` of the baseline
    exploding   a ReLU RNN whose W_hh is orthogonal × `radius` (spectral radius `radius` > 1), trained by plain
                SGD with and without clipping the gradient norm at `clip`: loss and gradient-norm curves
    inits       the ReLU RNN from PyTorch's default vs the identity W_hh (the IRNN, Le et al. 2015)
BPTT's truncation length and embeddings vs one-hot are not measured yet: the page says so.
The text of each answer is formatted from the measured numbers; nothing in it is a claim written in advance.
"""
from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import memory_tasks
from ..diagnostics import diagnose
from ..engines import build_engine
from ..initialization import initialize_engine
from .memory import model_kwargs

CELL_NAMES = {"rnn_tanh": "RNN (tanh)", "rnn_relu": "RNN (ReLU)", "lstm": "LSTM", "gru": "GRU"}


@dataclass(frozen=True)
class Scale:
    """How big the experiments are: `quick` (under 2 minutes on 2 cores), `tiny` (the tests), `full`."""
    gradient_length: int = 100            # T of the vanishing-gradient measurement
    lengths: tuple = (10, 20, 40)         # T of the long-sequence experiment
    long_cells: tuple = ("rnn_tanh", "lstm", "gru")
    steps: int = 400                      # updates per run (batch `batch` each)
    batch: int = 32
    hidden: int = 32
    valid: int = 256                      # validation sequences
    success_fraction: float = 0.1         # success: validation MSE < this × the baseline 1/6
    explode_length: int = 30
    explode_steps: int = 150
    radius: float = 1.6
    clip: float = 1.0
    init_length: int = 30
    init_steps: int = 300
    seed: int = 0


SCALES = {"quick": Scale(),
          "tiny": Scale(gradient_length=100, lengths=(10, 20), long_cells=("rnn_tanh", "lstm"), steps=150, hidden=16,
                        valid=128, explode_steps=60, init_steps=80, explode_length=20, init_length=20),
          # not yet timed: estimated ~15 minutes on 2 cores (the cost grows with steps × the sum of the lengths)
          "full": Scale(gradient_length=100, lengths=(10, 20, 50, 100, 200), steps=1500, valid=1000,
                        explode_steps=300, init_steps=1500)}


@dataclass
class Findings:
    """What the experiments measured (arrays as NumPy; see the module's docstring)."""
    scale: Scale
    gradient_norms: dict = field(default_factory=dict)     # cell → (T,) ‖∂L/∂h_t‖ at initialisation
    long: dict = field(default_factory=dict)               # cell → {T: validation MSE}
    trained: dict = field(default_factory=dict)            # cell → {T: Diagnosis after training}
    exploding: dict = field(default_factory=dict)          # "clipped"/"unclipped" → {"loss", "grad_norm", "valid"}
    inits: dict = field(default_factory=dict)              # "pytorch"/"identity" → {"loss", "grad_norm", "valid"}
    seconds: float = 0.0
    name: str = "custom"                                   # the scale's name in SCALES

    @property
    def ratios(self) -> dict:
        """cell → ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖."""
        return {cell: float(n[0] / n[-1]) for cell, n in self.gradient_norms.items()}

    @property
    def baseline(self) -> float:
        return memory_tasks.baseline("adding", 2)

    def solved(self, loss: float) -> bool:
        return bool(loss < self.scale.success_fraction * self.baseline)


def _batch(n: int, length: int, seed, dtype: str) -> dict:
    return {k: v.astype(dtype) for k, v in memory_tasks.adding(n, length, seed).items()}


def _engine(cell: str, s: Scale, *, init="pytorch", forget_bias=None, optimizer="adam", lr=1e-2, clip=1.0,
            dtype="float32", radius=None):
    """A scratch-engine Forecaster for the adding problem; `radius`: W_hh scaled to that spectral radius."""
    eng = build_engine("scratch", "Forecaster", model_kwargs("adding", cell, s.hidden, 1, 16), optimizer=optimizer,
                       lr=lr, clip=clip, dtype=dtype, seed=s.seed)
    initialize_engine(eng, cell, init, forget_bias, seed=s.seed)
    if radius is not None:
        weights = eng.weights()
        name = next(n for n in weights if n.endswith("weight_hh_l0"))
        w = np.asarray(weights[name], np.float64)
        weights[name] = (w * radius / np.max(np.abs(np.linalg.eigvals(w)))).astype(dtype)
        eng.load_weights(weights)
    return eng


def _train(eng, s: Scale, length: int, steps: int) -> dict:
    """`steps` updates on new adding batches; the loss and gradient norm (before clipping) of each, and the
    validation MSE at the end (the same `s.valid` sequences for every run of a length)."""
    losses, norms = [], []
    with np.errstate(over="ignore", invalid="ignore"):      # a diverging run overflows: its loss says so
        for k in range(steps):
            loss, norm, _ = eng.train_step(_batch(s.batch, length, [s.seed, 0, k], "float32"))
            losses.append(loss)
            norms.append(norm)
        total, count, _ = eng.eval_loss(_batch(s.valid, length, [s.seed, 1], "float32"))
    return {"loss": np.asarray(losses, np.float64), "grad_norm": np.asarray(norms, np.float64),
            "valid": float(total / count)}


def vanishing(s: Scale) -> dict:
    """cell → (T,) ‖∂L/∂h_t‖ at initialisation, in float64, on 16 adding sequences of s.gradient_length."""
    batch = _batch(16, s.gradient_length, [s.seed, 2], "float64")
    return {cell: diagnose(_engine(cell, s, forget_bias=1.0 if cell == "lstm" else None, dtype="float64"),
                           batch).gradient_norms[0]
            for cell in ("rnn_tanh", "lstm", "gru")}


def long_sequences(s: Scale) -> tuple[dict, dict]:
    """cell → {T: validation MSE after s.steps Adam updates (lr 1e-2, clip 1)}, and
    cell → {T: the trained model's Diagnosis (gradients through time, gates) on 16 validation sequences}."""
    long, trained = {}, {}
    for cell in s.long_cells:
        for T in s.lengths:
            eng = _engine(cell, s, forget_bias=1.0 if cell == "lstm" else None)
            long.setdefault(cell, {})[T] = _train(eng, s, T, s.steps)["valid"]
            trained.setdefault(cell, {})[T] = diagnose(eng, _batch(16, T, [s.seed, 1], "float32"))
    return long, trained


def exploding(s: Scale) -> dict:
    """A ReLU RNN with W_hh = orthogonal × s.radius, plain SGD (lr 0.1), with and without clipping."""
    return {name: _train(_engine("rnn_relu", s, init="orthogonal", optimizer="sgd", lr=1e-1, clip=clip,
                                 radius=s.radius), s, s.explode_length, s.explode_steps)
            for name, clip in (("unclipped", None), ("clipped", s.clip))}


def initialisations(s: Scale) -> dict:
    """The ReLU RNN from PyTorch's default vs the identity W_hh (IRNN), Adam lr 1e-3, clip 1."""
    return {init: _train(_engine("rnn_relu", s, init=init, lr=1e-3), s, s.init_length, s.init_steps)
            for init in ("pytorch", "identity")}


def run_experiments(scale: str | Scale = "quick") -> Findings:
    """Every experiment of the report at `scale` (a name in SCALES or a Scale)."""
    name = scale if isinstance(scale, str) else "custom"
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        scale = SCALES[scale]
    start = time.perf_counter()
    long, trained = long_sequences(scale)
    found = Findings(scale=scale, gradient_norms=vanishing(scale), long=long, trained=trained,
                     exploding=exploding(scale), inits=initialisations(scale))
    found.seconds, found.name = time.perf_counter() - start, name
    return found


# ------------------------------------------------------------------------------------------------ the page

@dataclass
class Section:
    """One question answered: paragraphs of text, an optional table (header, rows), figures (file, caption)."""
    question: str
    paragraphs: list
    table: tuple | None = None
    figures: list = field(default_factory=list)


def _longest(by_length: dict, found: Findings) -> str:
    """How far a cell got: "succeeds up to T = 40" or "succeeds at none of the lengths tried"."""
    solved = [t for t, loss in sorted(by_length.items()) if found.solved(loss)]
    return f"succeeds up to T = {solved[-1]}" if solved else "succeeds at none of the lengths tried"


def _diverged(run: dict) -> int | None:
    """The first update (1-based) whose loss or gradient norm is not finite, or None."""
    bad = np.nonzero(~(np.isfinite(run["loss"]) & np.isfinite(run["grad_norm"])))[0]
    return int(bad[0]) + 1 if len(bad) else None


def _ending(run: dict, baseline: float) -> str:
    step = _diverged(run)
    if step is not None:
        return f"its loss became non-finite at update {step} and never recovered (validation MSE {run['valid']:.3g})"
    return f"it ends at validation MSE {run['valid']:.3g} ({run['valid'] / baseline:.2f} × the baseline)"


def _gated(found: Findings) -> list[str]:
    return [cell for cell in found.trained if cell in ("lstm", "gru")]


def after_training(found: Findings) -> dict:
    """cell → (T,) ‖∂L/∂h_t‖ of the model trained at the longest T tried, on its validation sequences."""
    longest = max(found.scale.lengths)
    return {cell: by_length[longest].gradient_norms[0] for cell, by_length in found.trained.items()}


def gates_length(found: Findings, cell: str) -> int:
    """The T whose trained model's gates the page shows: the longest the cell solved, else the shortest tried."""
    solved = [t for t, loss in sorted(found.long[cell].items()) if found.solved(loss)]
    return solved[-1] if solved else min(found.long[cell])


def _gates_text(found: Findings, cell: str) -> str:
    length = gates_length(found, cell)
    stats = found.trained[cell][length].gates[0]
    return (f"The {CELL_NAMES[cell]} trained at T = {length} (validation MSE / baseline "
            f"{found.long[cell][length] / found.baseline:.3f}), on 16 validation sequences: "
            + ", ".join(f"{gate} gate mean {v['mean']:.2f} ({100 * v['saturated']:.0f}% saturated)"
                        for gate, v in stats.items()) + " (saturated: below 0.05 or above 0.95).")


def sections(found: Findings) -> list[Section]:
    """The six answers, their text formatted from `found`."""
    from ..diagnostics import memory_horizon

    s, base = found.scale, found.baseline
    r = found.ratios
    horizon = {cell: memory_horizon(n) for cell, n in found.gradient_norms.items()}
    rnn, lstm, gru = r["rnn_tanh"], r["lstm"], r["gru"]
    compare = "smaller" if rnn < lstm else "larger"
    factor = max(rnn, lstm) / min(rnn, lstm) if min(rnn, lstm) > 0 else float("inf")
    vanishing_text = [
        f"At initialisation, on 16 adding sequences of T = {s.gradient_length} steps read at the last step, "
        f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ is {rnn:.2g} for the vanilla RNN, {lstm:.2g} for the LSTM (forget bias 1) and "
        f"{gru:.2g} for the GRU (PyTorch's default initialisation): the error signal reaching step 1 of the RNN is "
        f"{factor:.2g} times {compare} than the LSTM's.",
        f"Counting back from the last step, the gradient stays above 1e-3 of ‖∂L/∂h_T‖ for "
        f"{horizon['rnn_tanh']} steps in the RNN, {horizon['lstm']} in the LSTM and {horizon['gru']} in the GRU: "
        "beyond that, an update barely sees what happened earlier."]
    table = (("cell", "‖∂L/∂h_1‖ / ‖∂L/∂h_T‖", "steps above 1e-3 of ‖∂L/∂h_T‖"),
             [(CELL_NAMES[c], f"{r[c]:.2g}", str(horizon[c])) for c in ("rnn_tanh", "lstm", "gru")])
    gradient = ("gradient_through_time.png", f"‖∂L/∂h_t‖ against t at T = {s.gradient_length}, log scale")
    trained = after_training(found)
    vanishing_text.append(
        f"After the {s.steps} updates of the next section at T = {max(s.lengths)}, the ratio is "
        + ", ".join(f"{n[0] / n[-1]:.2g} for the {CELL_NAMES[c]}" for c, n in trained.items()) + ".")
    after = ("gradient_after_training.png", f"‖∂L/∂h_t‖ after training at T = {max(s.lengths)}")

    long_header = ("cell",) + tuple(f"T = {t}" for t in s.lengths)
    long_rows = [(CELL_NAMES[c],) + tuple(f"{found.long[c][t] / base:.3f}" + (" ✓" if found.solved(found.long[c][t])
                                                                              else "") for t in s.lengths)
                 for c in s.long_cells]
    long_text = [
        f"Each model (hidden {s.hidden}) trained for {s.steps} Adam updates of {s.batch} new adding sequences "
        f"(lr 1e-2, clipping at 1); success is a validation MSE below {s.success_fraction:g} × the memoryless "
        f"baseline 1/6 (table: MSE / baseline, ✓ = success). Within this budget "
        + "; ".join(f"the {CELL_NAMES[c]} {_longest(found.long[c], found)}" for c in s.long_cells)
        + f" (T tried: {', '.join(map(str, s.lengths))})."]
    long_fig = ("long_sequences.png", "validation MSE / baseline against T")

    gated = [
        f"The gates keep a path along which the gradient is multiplied by the forget (LSTM) or 1 − update (GRU) "
        f"gate instead of W_hh and tanh′: measured above, ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ is {lstm:.2g} (LSTM) and "
        f"{gru:.2g} (GRU) against {rnn:.2g} (RNN) at T = {s.gradient_length}, and on the adding problem "
        + "; ".join(f"the {CELL_NAMES[c]} {_longest(found.long[c], found)}" for c in s.long_cells)
        + "."] + [_gates_text(found, cell) for cell in _gated(found)]

    bptt = ["Backpropagation through time is the chain rule over the unrolled loop: ∂L/∂h_t = ∂L/∂y_t + "
            "W_hhᵀ (∂L/∂h_{t+1} ⊙ f′) for a vanilla RNN. Every gradient on this page is the scratch engine's "
            "hand-written BPTT (tested against PyTorch and finite differences); examples/worked_step.py works one "
            "step by hand. Not measured yet: the full report is to add the effect of the truncation length on a "
            "language model's validation loss (no scale of `rnnkit explain` measures it so far)."]

    ex = found.exploding
    first = ex["unclipped"]["grad_norm"][0]
    exploding_text = [
        f"A ReLU RNN with W_hh = orthogonal × {s.radius:g} (spectral radius {s.radius:g}), trained by plain SGD "
        f"(lr 0.1) on the adding problem at T = {s.explode_length}: the first update's gradient norm is "
        f"{first:.3g}. Without clipping {_ending(ex['unclipped'], base)}; with the gradient norm clipped at "
        f"{s.clip:g}, {_ending(ex['clipped'], base)}."]
    ini = found.inits
    better = "lower" if ini["identity"]["valid"] < ini["pytorch"]["valid"] else "higher"
    init_text = [
        f"The ReLU RNN on the adding problem at T = {s.init_length} ({s.init_steps} Adam updates, lr 1e-3, "
        f"clipping at 1): from the identity W_hh (IRNN, Le et al. 2015) {_ending(ini['identity'], base)}; from "
        f"PyTorch's default {_ending(ini['pytorch'], base)} — the identity start ends {better}."]

    embeddings = ["Not measured yet: the full report is to train the sentiment classifier on one-hot inputs, on "
                  "a learned embedding and on pretrained vectors from a file, and compare accuracy, macro-F1, the "
                  "number of parameters and the training time (no scale of `rnnkit explain` measures it so far)."]
    return [
        Section("What is the vanishing gradient problem?", vanishing_text, table, [gradient, after]),
        Section("How do RNNs handle long sequences?", long_text, (long_header, long_rows), [long_fig]),
        Section("How do LSTMs and GRUs differ from vanilla RNNs?", gated, None,
                [(f"gates_{cell}.png", f"{CELL_NAMES[cell]}: gate activations after training at T = "
                  f"{gates_length(found, cell)}") for cell in _gated(found)]),
        Section("What is backpropagation through time (BPTT)?", bptt),
        Section("What fixes exploding gradients? (and initialisations compared)", exploding_text + init_text, None,
                [("exploding.png", "loss and gradient norm, with and without clipping"),
                 ("initialisations.png", "ReLU RNN: identity vs default initialisation")]),
        Section("Why embeddings instead of one-hot vectors?", embeddings)]


def figures(found: Findings) -> dict[str, bytes]:
    """File name → PNG bytes of every figure the sections link."""
    from . import explain_figures as fig

    s = found.scale
    return {
        "gradient_through_time.png": fig.gradient_png(
            {CELL_NAMES[c] + (" (forget bias 1)" if c == "lstm" else ""): n for c, n in found.gradient_norms.items()},
            s.gradient_length),
        "long_sequences.png": fig.long_png({CELL_NAMES[c]: v for c, v in found.long.items()}, found.baseline,
                                           s.success_fraction, s.steps),
        **{f"gates_{cell}.png": fig.gates_png(found.trained[cell][gates_length(found, cell)].gate_activations,
                                              f"{CELL_NAMES[cell]} trained at T = {gates_length(found, cell)}")
           for cell in _gated(found)},
        "gradient_after_training.png": fig.gradient_png(
            {CELL_NAMES[c]: n for c, n in after_training(found).items()}, max(s.lengths),
            f"Gradient through time after training at T = {max(s.lengths)}"),
        "exploding.png": fig.curves_png(found.exploding, f"ReLU RNN, spectral radius {s.radius:g}, SGD", s.clip),
        "initialisations.png": fig.curves_png({f"{k} init": v for k, v in found.inits.items()},
                                              "ReLU RNN, identity vs default init", 1.0)}


TITLE = "Points to Ponder, answered by experiment"


def _intro(found: Findings) -> str:
    return (f"Measured by `rnnkit explain` on the scratch engine in {found.seconds:.0f} s (scale {found.name}, "
            f"seed {found.scale.seed}). Every number below comes from that run.")


def markdown(found: Findings, parts: list[Section]) -> str:
    lines = [f"# {TITLE}", "", _intro(found), ""]
    for part in parts:
        lines += [f"## {part.question}", ""]
        for text in part.paragraphs:
            lines += [text, ""]
        if part.table:
            header, rows = part.table
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        for file, caption in part.figures:
            lines += [f"![{caption}]({file})", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Markdown's `code` as HTML, the rest escaped."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def page(found: Findings, parts: list[Section]) -> str:
    e = html.escape
    body = [f"<h1>{e(TITLE)}</h1>", f"<p>{_inline(_intro(found))}</p>"]
    for part in parts:
        body.append(f"<h2>{e(part.question)}</h2>")
        body += [f"<p>{_inline(text)}</p>" for text in part.paragraphs]
        if part.table:
            header, rows = part.table
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
        body += [f'<figure><img src="{e(file)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
                 for file, caption in part.figures]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .6em}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(TITLE)}</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(found: Findings, out) -> list[Path]:
    """out/index.html, out/index.md and the figures (PNG) they link; returns the paths written."""
    from ..checkpoint.atomic import write_bytes_atomic, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = sections(found)
    written = [write_bytes_atomic(out / name, data) for name, data in figures(found).items()]
    written.append(write_text_atomic(out / "index.md", markdown(found, parts)))
    written.append(write_text_atomic(out / "index.html", page(found, parts)))
    return written


def explain(out="report", scale: str | Scale = "quick") -> Findings:
    """Run the experiments at `scale` and write the report into `out`; return what was measured. A missing
    matplotlib or an `out` that cannot be a folder is a ValueError/OSError before anything runs."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("rnnkit explain draws its figures with matplotlib: pip install 'rnnkit[plots]'")
    Path(out).mkdir(parents=True, exist_ok=True)
    found = run_experiments(scale)
    write_report(found, out)
    return found
