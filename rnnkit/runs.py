"""A run folder (`--out`): what `rnnkit train` writes there, and the checks before it writes anything.

    RUN/run.json        the task and its settings ({"task": "lm", "settings": {section: {setting: value}}})
    RUN/metrics.jsonl   one JSON object per logged step and per evaluation (rnnkit/train.py)
    RUN/last/ best/     checkpoints: last/ for --resume, best/ the lowest validation loss
    RUN/curves.png      the training curves (rnnkit/plots.py: plot_run), drawn at the end

A run is never overwritten by accident: a folder that already holds a run is continued (`--resume`) or replaced
(`--overwrite`), and a folder that holds anything else is never written to (check_out). `--resume` reads the
run's settings from run.json; a setting that would change the model or the data is refused (check_resume).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from .checkpoint.atomic import write_json

RUN_FILE = "run.json"
METRICS = "metrics.jsonl"
OWN = (RUN_FILE, METRICS, "best", "last", "curves.png", "curves.svg", "tensorboard")  # what --overwrite removes
# Settings a resumed run may change: its budget, its bookkeeping, and how it steps (a lower --lr after a
# divergence). Every other setting (the data, the model; the engine, dtype, optimizer and batch size, which
# the saved optimizer state and carried state depend on) must stay the run's.
MAY_CHANGE = {"epochs", "max_steps", "patience", "eval_every", "checkpoint_every", "checkpoint_minutes",
              "log_every", "progress", "out", "resume", "overwrite", "plot", "tensorboard", "device", "lr", "clip",
              "schedule", "warmup_steps", "weight_decay", "momentum", "seed", "precision", "deterministic"}
NOT_INHERITED = ("progress", "resume", "overwrite")  # a resumed run takes these from its own command line


def is_run(path: Path) -> bool:
    """Whether `path` holds an rnnkit run (a run.json, a metrics log or a checkpoint of the trainer)."""
    return any((path / name).exists() for name in (RUN_FILE, METRICS, "last/config.json", "best/config.json"))


def check_out(out, resume: bool = False, overwrite: bool = False, clear_run: bool = True) -> Path:
    """The run folder `out` once it is safe to write: not empty, not a filesystem root, not a file; holding
    nothing, or a run that is resumed, or (with `overwrite`) a run, whose files are then removed (unless not
    `clear_run`: a check before the data is read). Anything else is a ValueError that says what to do."""
    if out is None or not str(out).strip():
        raise ValueError("the run folder (--out) is empty: name a folder, e.g. --out runs/my-run")
    path = Path(out).expanduser()
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        what = "a filesystem root" if resolved == Path(resolved.anchor) else "your home folder"
        raise ValueError(f"--out {out} is {what}: name a folder of its own for the run, e.g. --out runs/my-run")
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if resume or not path.exists() or not any(path.iterdir()):
        return path
    if not is_run(path):
        raise ValueError(f"--out {out} is a folder that holds other files, not an rnnkit run: name a new or empty "
                         f"folder")
    if not overwrite:
        raise ValueError(f"{out} already holds a run: continue it with --resume, replace it with --overwrite, or "
                         f"name another --out")
    if clear_run:
        clear(path)
    return path


def clear(path: Path) -> None:
    """Remove a run's own files from `path` (OWN, and checkpoints half-written by a crash); nothing else."""
    for entry in path.iterdir():
        own = entry.name in OWN or any(entry.name.startswith(f".{name}.") or entry.name == f"{name}.old"
                                       for name in ("best", "last"))
        if own:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def write_run(path: Path, task: str, settings: dict) -> None:
    """run.json: the task and its settings, {section: {setting: value}}."""
    write_json(path / RUN_FILE, {"task": task, "settings": settings})


def saved_settings(path, task: str) -> dict | None:
    """The settings in `path`/run.json as {section: {setting: value}}, or None where there is no run.json (a run
    from before it existed). A run of another task is a ValueError."""
    file = Path(path) / RUN_FILE
    if not file.exists():
        return None
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
        found, settings = run["task"], run["settings"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{file} is not a run's settings file (expected {{\"task\": ..., \"settings\": ...}})")
    if found != task:
        raise ValueError(f"{path} holds a run of `rnnkit train {found}`, not `train {task}`")
    return settings


def flat(settings: dict) -> dict:
    """{section: {name: value}} → {name: value}."""
    return {name: value for section in settings.values() for name, value in section.items()}


def check_resume(path, saved: dict, given: dict) -> None:
    """Refuse settings in `given` (by name) that differ from the run's `saved` ones (flat) and may not change on
    resume; the message names the first such setting and both values."""
    for name, value in given.items():
        if name in MAY_CHANGE or name not in saved or saved[name] == value:
            continue
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{flag} {_shown(value)} differs from the run's {name} = {_shown(saved[name])} "
                         f"({Path(path) / RUN_FILE}): a resumed run keeps its model and data, so leave {flag} out "
                         f"(the run's settings are read from run.json), or start a new run (another --out, or "
                         f"--overwrite)")


def _shown(value) -> str:
    return "none" if value is None else str(value)


def read_metrics(path, warn=lambda message: print(f"warning: {message}", file=sys.stderr)) -> list[dict]:
    """The records of a metrics.jsonl file, in order. A torn final line (a crash in the middle of appending it:
    no line break after it, not valid JSON) is dropped with a warning; any other line that is not a JSON object
    with a "step" is a ValueError naming its line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # the last line, with no line break after it: torn by a crash
                warn(f"{path}: dropped its last line, cut short by a crash ({line[:40]!r})")
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path}, line {number}: expected a JSON object with a 'step'")
        records.append(record)
    return records
