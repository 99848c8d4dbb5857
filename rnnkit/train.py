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

What a run writes in `run_dir` (a new or empty folder, or a run resumed or replaced: rnnkit/runs.py):
    run.json        the task's settings, which `--resume` reads
    last/           checkpoint + optimizer and trainer state: `--resume` continues from here; saved at each
                    evaluation, every `checkpoint_minutes` of training, and on SIGINT/SIGTERM
    best/           the checkpoint with the lowest validation loss so far
    metrics.jsonl   one JSON object per logged step (loss, grad_norm and grad_norm_clipped: the gradient norm
                    before and after clipping, lr, tokens_per_s) and per evaluation
                    (val_<metric>..., eval_seconds), each with its time (UTC) and wall_s
    curves.png      the curves of the run, drawn at the end (rnnkit/plots.py: plot_run)

A run stops with a TrainingError, keeping the last good checkpoint, when the loss becomes NaN or infinite or
the validation loss diverges (DIVERGED_FACTOR x the first step's loss, DIVERGED_EVALS evaluations in a row).

Resume is exact: the checkpoint holds the weights, the optimizer state, the step, the position in the epoch,
the carried recurrent state and the random generators' states, so a run killed at any point and resumed
ends with the weights of a run that never stopped (bit-identical on the scratch engine).

Under `torchrun` (the torch engine only), the loop runs in every process, in step: rnnkit.engines.join_world
gives it the World it trains in (rnnkit/torch/distributed.py: DistributedDataParallel), the task its part of
the data (`shard(rank, world_size)`); after each step the processes agree on the mean loss, the tokens, a
caught signal and a due save, and on rank 0's validation metrics, so that all decide alike. Rank 0 alone
writes the run folder; the others wait for each save at a barrier. A checkpoint holds every rank's carry
and generators, and the number of processes, which a resumed run must have too.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .checkpoint.atomic import write_text_atomic
from .engines import World, carry_arrays, carry_from_arrays, join_world
from .runs import METRICS, check_out, check_resume, flat, read_metrics, saved_settings, write_run
from .settings import setting
from .spec import DEVICES, DTYPES, ENGINES, OPTIMIZERS, PRECISIONS, SCHEDULES, check_choice, check_device, \
    check_precision


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss, a divergence); the message says what happened and what was kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run after saving last/; `exit_code` is 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


# Automatic validation (--eval-every unset): each epoch, in equal parts of at most this many steps.
EVAL_STEPS = 250


@dataclass
class TrainConfig:
    """How a model is trained, on which engine, and where the run goes: every task's training settings.

    Each field is an option of every `rnnkit train` command (`--kebab-case`) and a key of its --config files
    (rnnkit/settings.py); a task whose default differs redefines the field (rnnkit/tasks/settings.py)."""

    engine: str = setting("scratch", "scratch: NumPy, written from scratch; torch: PyTorch (cuDNN on a GPU)",
                          choices=ENGINES)
    device: str = setting("auto", "for the torch engine (auto: a GPU if there is one)", choices=DEVICES)
    dtype: str = setting("float32", "the floating-point type of the weights and the arithmetic", choices=DTYPES)
    precision: str = setting("fp32", "the torch engine's arithmetic in training: bf16 or fp16 autocast (fp16 with a "
                             "gradient scaler) over float32 weights, saved float32", choices=PRECISIONS)
    deterministic: bool = setting(True, "on a GPU, deterministic cuDNN/cuBLAS kernels: same seed, same bits "
                                  "(--no-deterministic: cuDNN autotunes; faster, not bit-reproducible)")
    epochs: int = setting(10, "passes over the training data, at most")
    batch_size: int = setting(32, "examples per update; a language model's parallel streams of text (under "
                              "torchrun: per process)")
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
    eval_every: int | None = setting(None, "steps between evaluations (default: each epoch, and within an epoch "
                                     f"of more than {EVAL_STEPS} steps in equal parts of at most that many; 0: "
                                     f"each epoch)")
    checkpoint_every: int = setting(0, "steps between saves of last/ for --resume, besides those at each "
                                    "evaluation (0: none)")
    checkpoint_minutes: float = setting(10.0, "minutes of training between saves of last/ for --resume, besides "
                                        "those at each evaluation (0: none)")
    max_steps: int | None = setting(None, "stop after this many updates (default: none, the epochs decide)")
    log_every: int = setting(10, "steps between lines of metrics.jsonl")
    seed: int = setting(0, "seeds the weights, dropout and the order of the data")
    progress: bool = setting(True, "show a progress bar on stderr (--no-progress: do not)")
    verbose: bool = setting(True, "print the data summary and the validation lines (--quiet: neither, nor the "
                            "progress bar)", flags=("--quiet",))
    plot: bool = setting(True, "draw the training curves in RUN/curves.png at the end (needs matplotlib; --no-plot: "
                        "do not)")
    tensorboard: bool = setting(False, "also log the metrics for TensorBoard, in RUN/tensorboard/ (needs the "
                                "tensorboard package)")
    out: str = setting("runs/train", "run folder (checkpoints best/ and last/, metrics.jsonl)")
    resume: bool = setting(False, "continue the run in --out from last/, with its settings (run.json)")
    overwrite: bool = setting(False, "replace the run already in --out (without it, training there is refused)")

    def __post_init__(self):
        for kind, choices in (("engine", ENGINES), ("device", DEVICES), ("dtype", DTYPES),
                              ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            check_choice(kind, getattr(self, kind), choices)
        check_device(self.engine, self.device)
        check_precision(self.engine, self.precision, self.dtype)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a positive, finite number, got {self.lr}")
        if self.clip == 0:
            self.clip = None        # the command line's --clip 0
        if self.clip is not None and not 0 < self.clip < math.inf:
            raise ValueError(f"clip must be positive and finite (or 0 or None: no clipping), got {self.clip}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        for name in ("weight_decay", "momentum", "warmup_steps", "checkpoint_every", "checkpoint_minutes"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be >= 0 and finite, got {getattr(self, name)}")
        for name in ("patience", "max_steps", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (or None), got {getattr(self, name)}")

    def engine_options(self) -> dict:
        """rnnkit.engines.build_engine's keyword arguments from these settings."""
        return dict(optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, clip=self.clip,
                    momentum=self.momentum, dtype=self.dtype, seed=self.seed, device=self.device,
                    precision=self.precision, deterministic=self.deterministic)


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
    first_loss: float | None = None     # the training loss of step 1: divergence is measured against it
    diverged_evals: int = 0             # evaluations in a row far above it
    wall_seconds: float = 0.0           # seconds in train() so far, resumed runs included
    world_size: int = 1                 # processes training together (torchrun); a resumed run needs as many


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    last_metrics: dict
    ran_on: str = ""                    # Engine.describe(): the engine, and the scratch engine's paths
    main: bool = True                   # False on the ranks > 0 of a torchrun launch, which write nothing

    @property
    def best(self) -> Path:
        return self.run_dir / "best"

    @property
    def last(self) -> Path:
        return self.run_dir / "last"


class _Log:
    """metrics.jsonl: appended line by line; on resume, cut back to the checkpoint's step (a line torn by a crash
    in the middle of writing it is dropped, with a warning)."""

    def __init__(self, path: Path, resume_step: int | None, tensorboard: Path | None = None):
        self.path = path
        self.board = _tensorboard_writer(tensorboard, resume_step) if tensorboard is not None else None
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            keep = [record for record in read_metrics(path) if record.get("step", 0) <= resume_step]
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))  # a crash here keeps the old log

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(key, value, record["step"])
            self.board.flush()


def _summary_writer():
    """TensorBoard's SummaryWriter class: tensorboardX's, else torch's (which needs the tensorboard package); a
    ValueError if neither is installed (found without importing torch, which takes seconds)."""
    import importlib.util

    if importlib.util.find_spec("tensorboardX") is not None:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    if importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("torch") is not None:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard")


def _tensorboard_writer(folder: Path, resume_step: int | None):
    """A SummaryWriter on `folder`; on resume, TensorBoard drops the events logged after `resume_step`."""
    return _summary_writer()(log_dir=str(folder), purge_step=None if resume_step is None else resume_step + 1)


def train(task, engine, config: TrainConfig, run_dir, resume: bool = False, settings: dict | None = None,
          task_name: str | None = None) -> TrainResult:
    """Train `engine`'s model on `task`; see the module docstring. Returns where things are.

    `run_dir` must be new, empty, or hold a run that is resumed (`resume`) or replaced (`config.overwrite`):
    rnnkit/runs.py. `settings` ({section: {setting: value}}) of the task `task_name` go to run.json, which
    `--resume` reads. SIGINT (Ctrl-C) or SIGTERM saves last/ after the step under way and raises
    TrainingInterrupted (exit code 130 or 143)."""
    world = join_world(engine, config.seed)  # under torchrun: this process's rank (before anything is written)
    main = world.is_main
    run_dir = check_out(run_dir, resume, config.overwrite, clear_run=world.size == 1)
    if world.size > 1:
        _shard(task, world)
        world.barrier()  # every rank has looked at the folder before rank 0 changes it
        if main:
            check_out(run_dir, resume, config.overwrite)
    if config.tensorboard and main:
        _summary_writer()  # installed, or a clear error before anything is written
    state, carry = TrainState(world_size=world.size), None
    if resume:  # a finished run resumed with a larger budget (--epochs, --max-steps) goes on
        saved = saved_settings(run_dir, task_name) if settings is not None else None
        if saved is not None:
            check_resume(run_dir, flat(saved), flat(settings))
        state, carry = _restore(run_dir / "last", engine, world)
    world.barrier()  # every rank has read last/ before rank 0 writes anything
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            write_run(run_dir, task_name or "?", settings)
    log = _Log(run_dir / METRICS, state.step if resume else None,
               run_dir / "tensorboard" if config.tensorboard else None) if main else _NoLog()
    say = _NoBar.write if config.verbose and main else (lambda line: None)

    per_epoch = task.num_batches()
    total = config.epochs * per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    every = eval_interval(config.eval_every, per_epoch)
    if resume and state.finished and (state.step >= total or _patience_spent(config, state)):
        say(f"the run in {run_dir} had already finished (step {state.step}; best validation loss "
            f"{state.best_loss:.4f} at step {state.best_step}): nothing to train. To train on, resume it with a "
            f"larger --epochs or --max-steps" + (" or --patience" if _patience_spent(config, state) else ""))
        return TrainResult(run_dir, state, state.history[-1] if state.history else {}, engine.describe(), main)
    parameters = sum(int(np.size(w)) for w in engine.weights().values())
    say(f"{parameters:,} parameters; {per_epoch:,} steps per epoch, {total:,} in all"
        + (f" ({total - state.step:,} to go)" if state.step else "")
        + ("; validation at the end of each epoch" if every >= per_epoch and not config.eval_every else
           f"; validation every {every:,} steps" + ("" if config.eval_every else " and at the end of each epoch")))
    if world.size > 1:
        say(f"{world.size} processes (torchrun), each reading its own part of the data: a global batch of "
            f"{world.size} x --batch-size {config.batch_size} = {world.size * config.batch_size}; rank 0 writes the "
            f"run")
    bar = _progress(config.progress and config.verbose and main, total, state.step)
    say = bar.write if config.verbose and main else say
    metrics: dict = state.history[-1] if state.history else {}
    tokens, busy = 0, 0.0   # since the last log line: tokens trained, seconds spent on them
    clock = _Clock(state, total, lambda: _steps_to_eval(config, state, every, per_epoch, total), say)
    mark = time.perf_counter()
    stop = state.step >= total
    deferred = getattr(engine, "deferred", False)  # the torch engine on a GPU: no step waits for the device

    with _signals_caught(bar.write if main else (lambda line: None), once=world.size > 1) as caught:
        while not stop and state.epoch < config.epochs:
            for batch in task.batches(state.epoch, state.batch):
                engine.lr = learning_rate(config, state.step, total)
                logged = (state.step + 1) % config.log_every == 0 or state.step == 0
                with clock.step(engine.name):
                    loss, norm, carry = engine.train_step(batch, carry if task.carries else None)
                    # a deferring engine's step values are read at log steps only; under torchrun the
                    # ranks agree on each step's loss, so it is read at every step there
                    if logged or not deferred or world.size > 1:
                        loss, norm = _read_steps(engine, loss, norm, state.step + 1, run_dir, bar.close)
                loss, count, signum, due = world.agree(loss, task.batch_tokens(batch), caught[0] if caught else 0,
                                                       clock.save_due(config.checkpoint_minutes))
                busy += time.perf_counter() - mark  # the batch and the step; evaluations and saves are not counted
                state.step += 1
                state.batch += 1
                if state.first_loss is None:
                    state.first_loss = loss
                tokens += count
                if logged:
                    speed = tokens / max(busy, 1e-9)
                    clipped = min(norm, config.clip) if config.clip else norm  # the norm the update used
                    log.write({"step": state.step, "epoch": state.epoch, "loss": loss, "grad_norm": norm,
                               "grad_norm_clipped": clipped, "lr": engine.lr, "tokens_per_s": speed,
                               **clock.stamp()})
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", refresh=False)
                    tokens, busy = 0, 0.0
                bar.update(1)
                clock.estimate(engine.describe)
                end_of_epoch = state.batch >= per_epoch
                stop = state.step >= total
                evaluate = (state.step % every == 0 if config.eval_every else state.batch % every == 0) \
                    or (not config.eval_every and end_of_epoch) or stop
                if end_of_epoch:
                    state.epoch, state.batch, carry = state.epoch + 1, 0, None
                if evaluate and deferred and not logged:  # every step read before best/ may be saved
                    _read_steps(engine, loss, norm, state.step, run_dir, bar.close)
                if evaluate:
                    metrics = _evaluate(task, engine, state, log, run_dir, say, clock.stamp, world)
                    if state.diverged_evals >= DIVERGED_EVALS:
                        bar.close()
                        raise TrainingError(_diverged(state, run_dir))
                    if _patience_spent(config, state):
                        stop = True
                state.finished = stop
                # a signal stops every rank after the same step: the one all of them agreed on
                halt = signum if world.size > 1 else caught[0] if caught else 0
                if state.diverged_evals == 0 and (
                        evaluate or stop or halt or due
                        or (config.checkpoint_every and state.step % config.checkpoint_every == 0)):
                    if deferred and not logged:
                        _read_steps(engine, loss, norm, state.step, run_dir, bar.close)  # before last/ is saved
                    _save(run_dir / "last", task, engine, state, carry, optimizer=True, close=bar.close, world=world)
                    clock.saved()
                if halt:
                    bar.close()
                    raise TrainingInterrupted(halt, f"stopped by {signal.Signals(halt).name} after step "
                                              f"{state.step}. {_last_good(run_dir)}")
                mark = time.perf_counter()
                if stop or end_of_epoch:
                    break
        if caught:  # noted after the last step's check (while it saved): the run is whole, and still stops here
            bar.close()
            raise TrainingInterrupted(caught[0], f"stopped by {signal.Signals(caught[0]).name} at the end of the "
                                      f"run (step {state.step}). {_last_good(run_dir)}")
    bar.close()
    if config.plot and main:
        _plot(run_dir, say)
    return TrainResult(run_dir, state, metrics, engine.describe(), main)


def _read_steps(engine, loss, norm, step: int, run_dir: Path, close) -> tuple[float, float]:
    """(loss, norm) of step number `step` as floats, after checking every step since the last read (one
    synchronisation for an engine that defers: rnnkit/torch/step_guard.py); a TrainingError at the first one
    whose loss or gradient norm was not finite (its update, and those of the steps after it, not applied)."""
    settle = getattr(engine, "settle", None)
    if settle is not None:
        bad = settle()
    else:
        bad = None if math.isfinite(loss) and math.isfinite(norm) else {"steps_ago": 0, "loss": loss, "norm": norm}
    if bad is not None:
        close()
        later = f" (nor those of the {bad['steps_ago']} steps after it)" if bad["steps_ago"] else ""
        raise TrainingError(
            f"the loss became {bad['loss']} (gradient norm {bad['norm']}) at step {step - bad['steps_ago']}; the "
            f"update{later} was not applied and the run stopped. {_last_good(run_dir)} Try a lower --lr or "
            f"gradient clipping (--clip).")
    return float(loss), float(norm)


# Divergence: the validation loss above DIVERGED_FACTOR x the first step's training loss, this many times in a row.
DIVERGED_FACTOR, DIVERGED_EVALS = 10.0, 3


def eval_interval(eval_every: int | None, per_epoch: int) -> int:
    """Steps between evaluations: `eval_every` if given (> 0); else (None or 0) within each epoch of
    `per_epoch` steps, at its end, and for None also every ceil(per_epoch / parts) steps, the epoch cut into
    as few equal parts as keep each at most EVAL_STEPS (so the first validation of a long epoch comes early)."""
    if eval_every:
        return eval_every
    if eval_every == 0:
        return per_epoch
    parts = math.ceil(per_epoch / EVAL_STEPS)
    return math.ceil(per_epoch / parts)


def _steps_to_eval(config: TrainConfig, state: TrainState, every: int, per_epoch: int, total: int) -> int:
    if config.eval_every:
        return min(every - state.step % every, total - state.step)
    return min(every - state.batch % every, per_epoch - state.batch, total - state.step)


def _patience_spent(config: TrainConfig, state: TrainState) -> bool:
    return config.patience is not None and state.bad_evals >= config.patience


def _evaluate(task, engine, state: TrainState, log: _Log, run_dir: Path, say, stamp, world: World) -> dict:
    start = time.perf_counter()
    metrics = world.broadcast(task.evaluate(engine))  # every rank decides on rank 0's numbers
    record = {"step": state.step, "epoch": state.epoch, **{f"val_{k}": v for k, v in metrics.items()},
              "eval_seconds": time.perf_counter() - start, **stamp()}
    state.history.append(record)
    log.write(record)
    loss = metrics["loss"]
    first = state.first_loss
    far = first is not None and math.isfinite(first) and not loss <= DIVERGED_FACTOR * max(first, 1e-3)
    state.diverged_evals = state.diverged_evals + 1 if far else 0
    if loss < state.best_loss and not far:
        state.best_loss, state.best_step, state.bad_evals = loss, state.step, 0
        _save(run_dir / "best", task, engine, state, None, optimizer=False, world=world)
    else:
        state.bad_evals += 1
    shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    say(f"step {state.step} (epoch {state.epoch}): validation {shown}")
    return metrics


def _diverged(state: TrainState, run_dir: Path) -> str:
    recent = state.history[-DIVERGED_EVALS:]
    losses = ", ".join(f"{h['val_loss']:.3g} at step {h['step']}" for h in recent)
    best = (f"best/ holds step {state.best_step} (validation loss {state.best_loss:.4g})" if state.best_step >= 0
            else "No evaluation was good enough to keep in best/")
    return (f"the run diverged: the validation loss was more than {DIVERGED_FACTOR:g}x the first step's loss "
            f"({state.first_loss:.4g}) at {DIVERGED_EVALS} evaluations in a row ({losses}), and the run stopped. "
            f"{best}. {_last_good(run_dir)} Try a lower --lr or gradient clipping (--clip).")


def _save(path: Path, task, engine, state: TrainState, carry, optimizer: bool, close=lambda: None,
          world: World = World()) -> None:
    """Write a checkpoint, unless an update has left a weight NaN or infinite (a finite loss and gradient
    can still overflow): then the run stops, and the checkpoint already there, the last good one, stays.
    Under torchrun every rank gives its carry and generators; rank 0 writes, the others wait until it has."""
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
        if world.is_main:
            save_checkpoint(path, weights, config)
        world.barrier()
        return
    extra = {"optimizer": engine.optimizer_state(), "carry": carry_arrays(world.gather_carry(engine.to_numpy(carry))),
             "rng": world.gather_rng(engine.rng_state())}
    if world.is_main:
        save_checkpoint(path, weights, config, optimizer_state=extra, trainer_state=asdict(state))
    world.barrier()


def _restore(path: Path, engine, world: World):
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"nothing to resume: {path} holds no checkpoint (was the run started with this "
                                f"--out folder?)")
    ckpt = load_checkpoint(path, load_optimizer=True)
    if ckpt.optimizer_state is None or ckpt.trainer_state is None:
        raise ValueError(f"{path} has no optimizer/trainer state to resume from")
    saved_engine = ckpt.config.get("engine")
    if saved_engine and saved_engine != engine.name:
        raise ValueError(f"{path} was trained with the {saved_engine} engine; resume it with --engine {saved_engine}")
    state = TrainState(**ckpt.trainer_state)
    if state.world_size != world.size:
        raise ValueError(f"{path} was trained by {state.world_size} process(es) and this run has {world.size}: "
                         f"resume it with as many (torchrun --nproc_per_node x --nnodes = {state.world_size}; "
                         f"1: without torchrun), since each one's data, carried state and generators are in it")
    engine.load_weights(ckpt.weights)
    extra = ckpt.optimizer_state
    engine.load_optimizer_state(extra["optimizer"])
    engine.set_rng_state(world.own_rng(extra["rng"]))
    carry = world.own_carry(carry_from_arrays(extra.get("carry") or {}))
    if carry is not None:
        carry = engine.from_numpy(carry)
    return state, carry


class _Clock:
    """The run's clocks: its wall time (resumed runs included: TrainState.wall_seconds) and the timestamps of
    metrics.jsonl; a notice while the first step compiles kernels; the estimated time, from the steps after
    the first; timed saves of last/ (--checkpoint-minutes)."""

    WARM = 5              # steps after the first, timed for the estimate
    SLOW_FIRST_STEP = 2.0  # seconds: a first step longer than this is compiling (numba) or warming up (CUDA)

    def __init__(self, state: TrainState, total: int, steps_to_eval, say):
        self.state, self.total, self.steps_to_eval, self.say = state, total, steps_to_eval, say
        self.start = self.last_save = time.monotonic()
        self.base, self.first = state.wall_seconds, state.step + 1
        self.times: list[float] = []

    def stamp(self) -> dict:
        """A metrics.jsonl record's timestamp (UTC) and wall seconds since the run began."""
        self.state.wall_seconds = self.base + time.monotonic() - self.start
        now = datetime.datetime.now(datetime.timezone.utc)
        return {"time": now.isoformat(timespec="seconds"), "wall_s": round(self.state.wall_seconds, 3)}

    @contextlib.contextmanager
    def step(self, engine_name: str):
        """Times a training step; says so if the first takes long (kernels compile, once: numba caches them)."""
        first = self.state.step + 1 == self.first
        notice = None
        if first:
            what = "compiling kernels" if engine_name == "scratch" else "warming up"
            notice = threading.Timer(self.SLOW_FIRST_STEP, self.say, [f"first step: {what} (once) ..."])
            notice.daemon = True
            notice.start()
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            if notice is not None:
                notice.cancel()
                if took >= self.SLOW_FIRST_STEP:
                    self.say(f"first step done in {took:.1f} s (compiling kernels or warming up, once; the "
                             f"estimate leaves it out)")
            else:
                self.times.append(took)
            self.state.wall_seconds = self.base + time.monotonic() - self.start

    def estimate(self, describe) -> None:
        """Once WARM steps after the first are timed: the estimated time of the rest of the run."""
        if len(self.times) != self.WARM:
            return
        self.times.append(math.nan)  # said once
        per_step = sorted(self.times[:self.WARM])[self.WARM // 2]
        left = self.total - self.state.step
        to_eval = self.steps_to_eval()
        self.say(f"estimated time: {_duration(per_step * left)} for the {left:,} steps to go at {per_step:.3g} "
                 f"s/step ({describe()}), plus the validations; the next validation in {to_eval:,} steps, "
                 f"~{_duration(per_step * to_eval)}")

    def save_due(self, minutes: float) -> bool:
        return minutes > 0 and time.monotonic() - self.last_save >= 60 * minutes

    def saved(self) -> None:
        self.last_save = time.monotonic()


def _duration(seconds: float) -> str:
    """"45 s", "12 min", "8 h 24 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min"


@contextlib.contextmanager
def _signals_caught(say, once: bool = False):
    """SIGINT and SIGTERM, while in here, are noted (in the list this yields) for the loop to save and stop at
    the end of its step; a second one stops at once (KeyboardInterrupt), unless `once` (under torchrun, which
    passes a Ctrl-C on to its workers, who get it twice, and kills those that do not stop in time). Only in
    the main thread (where Python runs signal handlers); elsewhere the signals keep their handlers."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def note(signum, frame):
        if caught and once:
            return
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)
        say(f"{signal.Signals(signum).name}: saving last/ after this step, then stopping"
            + ("" if once else " (again: stop at once)"))

    kept = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def _plot(run_dir: Path, say) -> None:
    """curves.png at the end of a run, if matplotlib is installed."""
    try:
        from .plots import plot_run

        plot_run(run_dir, run_dir / "curves.png")
    except ImportError:
        pass
    except (ValueError, OSError) as e:
        say(f"warning: the curves were not drawn: {e}")


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


def _shard(task, world: World) -> None:
    """Give each rank its part of the data (the task's `shard(rank, world_size)`), or refuse the task."""
    if not hasattr(task, "shard"):
        raise ValueError(f"{type(task).__name__} does not train under torchrun (it cannot split its data between "
                         f"processes); start it as a single process")
    task.shard(world.rank, world.size)


class _NoLog:
    """The metrics log of a rank > 0: rank 0 alone writes metrics.jsonl."""

    def write(self, record: dict) -> None:
        pass


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
