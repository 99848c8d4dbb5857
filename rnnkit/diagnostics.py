"""What a recurrent model does inside, measured: gradients through time, gates, W_hh's spectrum, hidden states.

Engine-neutral: an engine's `through_time(batch, carry)` (rnnkit.engines) runs the model's loss on a batch in
eval mode and hands back, per recurrent layer, its inputs, states and ∂L/∂h_t for every step (the scratch
engine from its hand-written BPTT on the reference path, the torch engine from its layers unrolled with
retained gradients); everything here is NumPy on those records and on state dicts.

    diagnose(engine, batch)        → Diagnosis: loss, gradient norms (layers, time), gate statistics, W_hh's
                                     singular values per gate block, hidden states (time, units) of row 0;
                                     for a translation model also its decoder's ‖∂L/∂s_t‖ (layers, target steps),
                                     gates, spectra and states
    gradient_norms(records)        → (layers, time) ‖∂L/∂h_t‖ over the batch and the units
    gate_values(record)            → the gates' activations (batch, time, hidden) by name
    gate_statistics(records)       → per layer, per gate: mean and saturated fraction (< 0.05 or > 0.95)
    singular_values(weights)       → per weight_hh, per gate block: singular values, largest first
    memory_horizon(norms)          → how many steps back the gradient stays above a fraction of the last one
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Gate names in PyTorch's row order, per cell; the candidate rows (LSTM g, GRU n) are not gates.
GATE_BLOCKS = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "new"),
               "rnn_tanh": ("hidden",), "rnn_relu": ("hidden",)}
GATES = {"lstm": ("input", "forget", "output"), "gru": ("reset", "update"), "rnn_tanh": (), "rnn_relu": ()}
SATURATED_LOW, SATURATED_HIGH = 0.05, 0.95


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))   # σ(x) = 1 / (1 + e^-x), without overflow


def _mask(lengths, batch: int, time: int) -> np.ndarray:
    """(batch, time) bool: the real steps of each sequence (all of them without lengths)."""
    if lengths is None:
        return np.ones((batch, time), dtype=bool)
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


def gradient_norms(records: list[dict]) -> np.ndarray:
    """(layers, time): ‖∂L/∂h_t‖, the Frobenius norm of the gradient reaching step t's state, (batch, hidden)."""
    return np.stack([np.sqrt((np.asarray(r["grad_h"], dtype=np.float64) ** 2).sum(axis=(0, 2))) for r in records])


def gate_values(record: dict) -> dict[str, np.ndarray]:
    """The gates of one layer over its inputs, (batch, time, hidden) each, recomputed from its weights:
    LSTM input, forget, output = σ(W_i· x_t + b_i· + W_h· h_{t-1} + b_h·) (PyTorch's i, f, g, o rows);
    GRU reset r, update z = σ(...) (r, z, n rows). Plain RNNs have none (an empty dict)."""
    cell = record["cell"]
    names = GATES[cell]
    if not names:
        return {}
    x, h = np.asarray(record["inputs"], np.float64), np.asarray(record["h"], np.float64)
    h_prev = np.concatenate([np.asarray(record["h0"], np.float64)[:, None], h[:, :-1]], axis=1)
    pre = x @ record["weight_ih"].T.astype(np.float64) + h_prev @ record["weight_hh"].T.astype(np.float64)
    if record.get("bias_ih") is not None:
        pre = pre + record["bias_ih"] + record["bias_hh"]
    blocks = dict(zip(GATE_BLOCKS[cell], np.split(pre, len(GATE_BLOCKS[cell]), axis=-1)))
    return {name: _sigmoid(blocks[name]) for name in names}


def gate_statistics(records: list[dict], lengths=None) -> list[dict[str, dict[str, float]]]:
    """Per layer, per gate: {"mean": mean activation, "saturated": fraction < 0.05 or > 0.95}, over the real
    steps of the batch (`lengths` (batch,) or None for all)."""
    out = []
    for record in records:
        stats = {}
        for name, value in gate_values(record).items():
            real = value[_mask(lengths, *value.shape[:2])]            # (steps, hidden)
            saturated = (real < SATURATED_LOW) | (real > SATURATED_HIGH)
            stats[name] = {"mean": float(real.mean()), "saturated": float(saturated.mean())}
        out.append(stats)
    return out


def singular_values(weights: dict, cell: str) -> dict[str, dict[str, np.ndarray]]:
    """For every weight_hh_l* in a state dict: {gate block: singular values of its (hidden, hidden) block,
    largest first}. The largest is the block's spectral norm; above 1 the linearised recurrence can grow."""
    blocks = GATE_BLOCKS[cell]
    return {name: {gate: np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
                   for gate, w in zip(blocks, np.split(np.asarray(w), len(blocks), axis=0))}
            for name, w in weights.items() if name.split(".")[-1].startswith("weight_hh_l")}


def memory_horizon(norms: np.ndarray, fraction: float = 1e-3) -> int:
    """The number of steps back from the last over which ‖∂L/∂h_t‖ stays above `fraction` of ‖∂L/∂h_T‖
    (norms (time,)): beyond it the error signal has all but vanished. All steps if it never drops."""
    norms = np.asarray(norms, np.float64)
    last = norms[-1]
    if not last > 0:
        return 0
    below = np.nonzero(norms[::-1] < fraction * last)[0]
    return int(below[0]) if len(below) else len(norms)


def _reach_line(layer: str, norms: np.ndarray, state: str = "h") -> str:
    """One layer's gradient through time in words: the first step's over the last's and memory_horizon."""
    ratio = norms[0] / norms[-1] if norms[-1] > 0 else float("nan")
    horizon = memory_horizon(norms)
    reach = (f"it stays above 1e-3 of the last step's for only {horizon} steps: this model can hardly "
             f"learn dependencies longer than ~{horizon} steps") if horizon < len(norms) else \
        "it stays above 1e-3 of the last step's over the whole sequence"
    return f"{layer}: ‖∂L/∂{state}_1‖ / ‖∂L/∂{state}_T‖ = {ratio:.2g}; {reach}"


@dataclass
class Diagnosis:
    """What `diagnose` measured on one batch."""
    loss: float
    cell: str
    gradient_norms: np.ndarray                       # (layers, time): ‖∂L/∂h_t‖
    gates: list = field(default_factory=list)        # per layer: {gate: {"mean", "saturated"}}
    singular_values: dict = field(default_factory=dict)
    hidden: list = field(default_factory=list)       # per layer: (time, units) states of the batch's row 0
    gate_activations: list = field(default_factory=list)  # per layer: {gate: activations of the real steps}
    layers: list = field(default_factory=list)       # each row's name: "layer 0", "layer 0 reverse", ...
    decoder_gradient_norms: np.ndarray | None = None  # (decoder layers, target steps): ‖∂L/∂s_t‖ (seq2seq)
    decoder_layers: list = field(default_factory=list)  # "decoder layer 0", ...: after `layers` in gates,
                                                        # gate_activations and hidden (seq2seq)

    def summary(self) -> str:
        """A few lines in words: how fast the gradient decays through time, the gates, W_hh's spectrum."""
        lines = [f"loss {self.loss:.4g} on a batch of {self.gradient_norms.shape[1]} steps ({self.cell})"]
        names = self.layers or [f"layer {k}" for k in range(len(self.gradient_norms))]
        lines += [_reach_line(layer, norms) for layer, norms in zip(names, self.gradient_norms)]
        if self.decoder_gradient_norms is not None:
            steps = self.decoder_gradient_norms.shape[1]
            lines.append(f"decoder over {steps} target steps (its state s_t, teacher-forced):")
            lines += [_reach_line(f"decoder layer {k}", norms, "s")
                      for k, norms in enumerate(self.decoder_gradient_norms)]
        for layer, stats in zip(names + self.decoder_layers, self.gates):
            if stats:
                lines.append(f"{layer} gates: " + ", ".join(
                    f"{g} mean {s['mean']:.2f} ({100 * s['saturated']:.0f}% saturated)" for g, s in stats.items()))
        for name, blocks in self.singular_values.items():
            lines.append(f"{name}: largest singular value " + ", ".join(
                f"{g} {sv[0]:.3g}" for g, sv in blocks.items()))
        return "\n".join(lines)

    def to_json(self, hidden: bool = True) -> dict:
        """The measurements as JSON values (`hidden`: with the hidden states of row 0, per layer)."""
        out = {"loss": self.loss, "cell": self.cell, "layers": self.layers,
               "gradient_norms": self.gradient_norms.tolist(),
               "memory_horizon": [memory_horizon(n) for n in self.gradient_norms], "gates": self.gates,
               "summary": self.summary(),
               "singular_values": {n: {g: sv.tolist() for g, sv in b.items()} for n, b in self.singular_values.items()}}
        if self.decoder_gradient_norms is not None:
            out["decoder_layers"] = self.decoder_layers
            out["decoder_gradient_norms"] = self.decoder_gradient_norms.tolist()
            out["decoder_memory_horizon"] = [memory_horizon(n) for n in self.decoder_gradient_norms]
        if hidden:
            out["hidden"] = [h.tolist() for h in self.hidden]
        return out


def diagnose(engine, batch: dict, carry=None) -> Diagnosis:
    """Measure a model (an rnnkit.engines.Engine) on one batch: see the module's docstring. A translation
    model's decoder layers (records of part "decoder") are measured over the target steps
    (batch["target_lengths"]), its encoder's over the source (batch["source_lengths"])."""
    loss, records = engine.through_time(batch, carry)
    decoder = [r for r in records if r.get("part") == "decoder"]
    records = [r for r in records if r.get("part") != "decoder"]
    if not records:
        raise ValueError("the model has no recurrent layer to diagnose")
    lengths = batch.get("lengths", batch.get("source_lengths"))
    cell = records[0]["cell"]
    names = [f"layer {r['layer']}" + (" reverse" if r.get("direction") else "") for r in records]
    decoder_names = [f"decoder layer {r['layer']}" for r in decoder]
    weights = {f"weight_hh_l{r['layer']}" + ("_reverse" if r.get("direction") else ""): r["weight_hh"] for r in records}
    weights.update({f"decoder.weight_hh_l{r['layer']}": r["weight_hh"] for r in decoder})
    parts = [(records, lengths), (decoder, batch.get("target_lengths"))]
    activations, hidden = [], []
    for part, part_lengths in parts:
        for record in part:
            values = gate_values(record)
            activations.append({g: v[_mask(part_lengths, *v.shape[:2])] for g, v in values.items()})
            first = None if part_lengths is None else int(np.asarray(part_lengths)[0])
            hidden.append(np.asarray(record["h"][0, :first], np.float64))
    return Diagnosis(loss=loss, cell=cell, gradient_norms=gradient_norms(records),
                     gates=[g for part, part_lengths in parts for g in gate_statistics(part, part_lengths)],
                     singular_values=singular_values(weights, cell), hidden=hidden, gate_activations=activations,
                     layers=names, decoder_layers=decoder_names,
                     decoder_gradient_norms=gradient_norms(decoder) if decoder else None)
