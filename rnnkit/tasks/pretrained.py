"""A trained model as a folder: opening a checkpoint (a run folder is pointed to its best/), and
`save_pretrained(folder)` / `from_pretrained(folder)` on the loaded task models, as in the ecosystem:

    model = classify.LoadedClassifier.from_pretrained("runs/sentiment/best")   # = classify.load_classifier
    model.save_pretrained("models/sentiment")    # config.json + model.safetensors, atomically
"""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def open_checkpoint(path, **checks):
    """load_checkpoint(path, **checks); a run folder given instead of a checkpoint is refused with the checkpoint
    to give (RUN/best), rather than "RUN/config.json: missing"."""
    try:
        return load_checkpoint(path, **checks)
    except CheckpointError:
        run = Path(path)
        inside = [run / name for name in ("best", "last") if (run / name / "config.json").is_file()]
        if inside:
            raise CheckpointError(f"{run} is a run folder, not a checkpoint: give {inside[0]}"
                                  + (f" (or {inside[1]}, the latest, for --resume)" if len(inside) > 1 else ""))
        raise


class Pretrained:
    """save_pretrained for a loaded task model (an `engine` and the checkpoint's `config`); each task model
    adds its own `from_pretrained(folder, engine, device)`."""

    engine: object
    config: dict

    def save_pretrained(self, folder) -> Path:
        """Write the model as a checkpoint folder (config.json + model.safetensors; no optimizer state),
        atomically, replacing one already there; `from_pretrained(folder)` loads it on either engine."""
        return save_checkpoint(folder, self.engine.weights(), dict(self.config))
