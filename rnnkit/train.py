"""One training loop for every task and both engines.

    result = train(task, engine, TrainConfig(epochs=3, lr=2e-3), run_dir="runs/lm")

The loop asks the *engine* (rnnkit/engines.py: the Engine protocol, either engine) for a training step and the
*task* (rnnkit/tasks/*) for batches, an evaluation and what goes into a checkpoint's config; it knows nothing
else of either. A task provides:
    num_batches()                   windows or mini-batches per epoch
    batches(epoch, start)           iterator of batch dicts from index `start` of that epoch
    batch_tokens(batch)             how many tokens (or examples) a batch holds, for the speed readout
    carries                         True if a batch's carry (recurrent state) feeds the next batch
    evaluate(engine) -> dict        validation metrics, "loss" among them (lower is better)
    checkpoint_config() -> dict     task, model and data settings, vocabulary: config.json's "config"

What a run writes in `run_dir`:
    last/           checkpoint + optimizer and trainer state: `--resume` continues from here
    best/           the checkpoint with the lowest validation loss so far
    metrics.jsonl   one JSON object per logged step (loss, grad_norm and grad_norm_clipped: the gradient norm before
                    and after clipping, lr, tokens_per_s) and per evaluation (val_<metric>..., eval_seconds)

Resume is exact: the checkpoint holds the weights, the optimizer state, the step, the position in the epoch,
the carried recurrent state and the random generators' states, so a run killed at any point and resumed
ends with the weights of a run that never stopped (bit-identical on the scratch engine).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .checkpoint.atomic import write_text_atomic
from .engines import carry_arrays, carry_from_arrays
from .settings import setting
from .spec import DEVICES, DTYPES, ENGINES, OPTIMIZERS, SCHEDULES, check_choice, check_device


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss); the message says what happened and what was kept."""


@dataclass
class TrainConfig:
    """How a model is trained, on which engine, and where the run goes: every task's training settings.

    Each field is an option of every `rnnkit train` command (`--kebab-case`) and a key of its --config files
    (rnnkit/settings.py); a task whose default differs redefines the field (rnnkit/tasks/settings.py)."""

    engine: str = setting("scratch", "scratch: NumPy, written from scratch; torch: PyTorch (cuDNN on a GPU)",
                          choices=ENGINES)
    device: str = setting("auto", "for the torch engine (auto: a GPU if there is one)", choices=DEVICES)
    dtype: str = setting("float32", "the floating-point type of the weights and the arithmetic", choices=DTYPES)
    epochs: int = setting(10, "passes over the training data, at most")
    batch_size: int = setting(32, "examples per update; a language model's parallel streams of text")
    lr: float = setting(2e-3, "learning rate, after the warm-up")
    optimizer: str = setting("adam", "how the gradients update the weights", choices=OPTIMIZERS)
    weight_decay: float = setting(0.0, "L2 penalty on the weights, decoupled for adamw")
    momentum: float = setting(0.0, "for sgd")
    clip: float | None = setting(1.0, "max gradient norm (0 or none: no clipping)")
    schedule: str = setting("constant", "the learning rate after the warm-up: constant, or decaying to 0 over "
                            "the run", choices=SCHEDULES)
    warmup_steps: int = setting(0, "updates of linear warm-up before the schedule")
    patience: int | None = setting(None, "stop after this many evaluations without improvement (default: none, "
                                   "train on)")
    eval_every: int = setting(0, "steps between evaluations (0: each epoch)")
    checkpoint_every: int = setting(0, "steps between saves for --resume (0: at each evaluation)")
    max_steps: int | None = setting(None, "stop after this many updates (default: none, the epochs decide)")
    log_every: int = setting(10, "steps between lines of metrics.jsonl")
    seed: int = setting(0, "seeds the weights, dropout and the order of the data")
    progress: bool = setting(True, "show a progress bar on stderr (--no-progress: do not)")
    verbose: bool = setting(True, "print the data summary and the validation lines (--quiet: neither, nor the "
                            "progress bar)", flags=("--quiet",))
    out: str = setting("runs/train", "run folder (checkpoints best/ and last/, metrics.jsonl)")
    resume: bool = setting(False, "continue the run in --out from last/")

    def __post_init__(self):
        for kind, choices in (("engine", ENGINES), ("device", DEVICES), ("dtype", DTYPES),
                              ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            check_choice(kind, getattr(self, kind), choices)
        check_device(self.engine, self.device)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.clip == 0:
            self.clip = None        # the command line's --clip 0
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be positive (or 0 or None: no clipping), got {self.clip}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        for name in ("weight_decay", "momentum", "warmup_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("patience", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (or None), got {getattr(self, name)}")

    def engine_options(self) -> dict:
        """rnnkit.engines.build_engine's keyword arguments from these settings."""
        return dict(optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, clip=self.clip,
                    momentum=self.momentum, dtype=self.dtype, seed=self.seed, device=self.device)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for update number `step` (0-based): warm-up, then the schedule."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    span = max(1, total_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return config.lr * (1 - progress)
    return config.lr


@dataclass
class TrainState:
    """Where a run is; saved in last/trainer.json."""

    epoch: int = 0                      # the epoch in progress
    batch: int = 0                      # the next batch index within it
    step: int = 0                       # updates done
    best_loss: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    finished: bool = False
    history: list = field(default_factory=list)   # evaluations: {"step", "epoch", metrics...}


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    last_metrics: dict
    ran_on: str = ""                    # Engine.describe(): the engine, and the scratch engine's paths

    @property
    def best(self) -> Path:
        return self.run_dir / "best"

    @property
    def last(self) -> Path:
        return self.run_dir / "last"


class _Log:
    """metrics.jsonl: appended line by line; on resume, cut back to the checkpoint's step."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_text_atomic(path, "".join(line + "\n" for line in keep))  # a crash here keeps the old log

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def train(task, engine, config: TrainConfig, run_dir, resume: bool = False) -> TrainResult:
    """Train `engine`'s model on `task`; see the module docstring. Returns where things are."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state, carry = TrainState(), None
    if resume:  # a finished run resumed with a larger budget (--epochs, --max-steps) goes on
        state, carry = _restore(run_dir / "last", engine)
    log = _Log(run_dir / "metrics.jsonl", state.step if resume else None)

    per_epoch = task.num_batches()
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    bar = _progress(config.progress and config.verbose, total, state.step)
    say = bar.write if config.verbose else (lambda line: None)
    metrics: dict = state.history[-1] if state.history else {}
    tokens, busy = 0, 0.0   # since the last log line: tokens trained, seconds spent on them
    mark = time.perf_counter()
    stop = state.step >= total

    while not stop and state.epoch < config.epochs:
        for batch in task.batches(state.epoch, state.batch):
            engine.lr = learning_rate(config, state.step, total)
            loss, norm, carry = engine.train_step(batch, carry if task.carries else None)
            busy += time.perf_counter() - mark  # the batch and the step; evaluations and saves are not counted
            if not (math.isfinite(loss) and math.isfinite(norm)):
                bar.close()
                raise TrainingError(
                    f"the loss became {loss} (gradient norm {norm}) at step {state.step + 1}; the update was not "
                    f"applied and the run stopped. {_last_good(run_dir)} Try a lower --lr or gradient clipping "
                    f"(--clip).")
            state.step += 1
            state.batch += 1
            tokens += task.batch_tokens(batch)
            if state.step % config.log_every == 0 or state.step == 1:
                speed = tokens / max(busy, 1e-9)
                clipped = min(norm, config.clip) if config.clip else norm  # the norm the update used
                log.write({"step": state.step, "epoch": state.epoch, "loss": loss, "grad_norm": norm,
                           "grad_norm_clipped": clipped, "lr": engine.lr, "tokens_per_s": speed})
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", refresh=False)
                tokens, busy = 0, 0.0
            bar.update(1)
            end_of_epoch = state.batch >= per_epoch
            stop = state.step >= total
            if end_of_epoch:
                state.epoch, state.batch, carry = state.epoch + 1, 0, None
            evaluate = (config.eval_every and state.step % config.eval_every == 0) or \
                       (not config.eval_every and end_of_epoch) or stop
            if evaluate:
                metrics = _evaluate(task, engine, state, log, run_dir, say)
                if config.patience is not None and state.bad_evals >= config.patience:
                    stop = True
            state.finished = stop
            if evaluate or stop or (config.checkpoint_every and state.step % config.checkpoint_every == 0):
                _save(run_dir / "last", task, engine, state, carry, optimizer=True, close=bar.close)
            mark = time.perf_counter()
            if stop or end_of_epoch:
                break
    bar.close()
    return TrainResult(run_dir, state, metrics, engine.describe())


def _evaluate(task, engine, state: TrainState, log: _Log, run_dir: Path, say) -> dict:
    start = time.perf_counter()
    metrics = task.evaluate(engine)
    record = {"step": state.step, "epoch": state.epoch, **{f"val_{k}": v for k, v in metrics.items()},
              "eval_seconds": time.perf_counter() - start}
    state.history.append(record)
    log.write(record)
    if metrics["loss"] < state.best_loss:
        state.best_loss, state.best_step, state.bad_evals = metrics["loss"], state.step, 0
        _save(run_dir / "best", task, engine, state, None, optimizer=False)
    else:
        state.bad_evals += 1
    shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    say(f"step {state.step} (epoch {state.epoch}): validation {shown}")
    return metrics


def _save(path: Path, task, engine, state: TrainState, carry, optimizer: bool, close=lambda: None) -> None:
    """Write a checkpoint, unless an update has left a weight NaN or infinite (a finite loss and gradient
    can still overflow): then the run stops, and the checkpoint already there, the last good one, stays."""
    weights = engine.weights()
    bad = [name for name, w in weights.items() if np.issubdtype(w.dtype, np.floating) and not np.isfinite(w).all()]
    if bad:
        close()
        raise TrainingError(
            f"the weights became non-finite after the update of step {state.step} (in {', '.join(bad)}); they "
            f"were not saved and the run stopped. {_last_good(path.parent)} Try a lower --lr or gradient "
            f"clipping (--clip).")
    config = dict(task.checkpoint_config(), engine=engine.name)
    if not optimizer:
        save_checkpoint(path, weights, config)
        return
    extra = {"optimizer": engine.optimizer_state(), "carry": carry_arrays(engine.to_numpy(carry)),
             "rng": engine.rng_state()}
    save_checkpoint(path, weights, config, optimizer_state=extra, trainer_state=asdict(state))


def _restore(path: Path, engine):
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"nothing to resume: {path} holds no checkpoint (was the run started with this "
                                f"--out folder?)")
    ckpt = load_checkpoint(path, load_optimizer=True)
    if ckpt.optimizer_state is None or ckpt.trainer_state is None:
        raise ValueError(f"{path} has no optimizer/trainer state to resume from")
    saved_engine = ckpt.config.get("engine")
    if saved_engine and saved_engine != engine.name:
        raise ValueError(f"{path} was trained with the {saved_engine} engine; resume it with --engine {saved_engine}")
    engine.load_weights(ckpt.weights)
    extra = ckpt.optimizer_state
    engine.load_optimizer_state(extra["optimizer"])
    engine.set_rng_state(extra["rng"])
    carry = carry_from_arrays(extra.get("carry") or {})
    if carry is not None:
        carry = engine.from_numpy(carry)
    state = TrainState(**ckpt.trainer_state)
    return state, carry


def _last_good(run_dir: Path) -> str:
    """Where the last good checkpoint is, for the message of a stopped run."""
    try:
        step = json.loads((run_dir / "last" / "trainer.json").read_text())["trainer"]["step"]
    except (OSError, ValueError, KeyError):
        return "No checkpoint had been saved yet."
    return f"The last good checkpoint is {run_dir / 'last'} (step {step}; --resume continues from it)."


def _progress(enabled: bool, total: int, initial: int):
    """A tqdm bar (loss, tokens/s, ETA) on stderr; a silent stand-in when disabled or tqdm is missing."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)
            bar.write = lambda line: tqdm.write(line, file=sys.stderr)
            return bar
        except ImportError:
            pass
    return _NoBar()


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass

    @staticmethod
    def write(line: str) -> None:
        print(line, file=sys.stderr)
