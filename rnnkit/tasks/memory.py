"""Training on the synthetic memory problems (rnnkit/data/memory_tasks.py): `rnnkit train memory`.

Each problem is learned by a model the engines already have, so nothing here is new but the data:
    adding   Forecaster (input 2, one output, horizon 1, direct head, MSE): the regression of the sum
    copy     LanguageModel over 10 tokens: a prediction at every step, the mean cross-entropy per step
    order    TextClassifier (unidirectional, the last state) over 4 classes
Every epoch draws `train_size` new sequences (seeded by the seed and the epoch: resume is exact); the
validation set is drawn once. Evaluation reports the loss, the memoryless baseline, their ratio (below 1: the
model remembers something) and, for copy and order, the accuracy of what must be remembered.

    from rnnkit.tasks import memory
    result = memory.train_memory(problem="adding", length=50, cell="lstm", epochs=5)
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..data import memory_tasks
from ..engines import build_engine
from ..initialization import initialize_engine
from ..train import TrainResult, train
from .settings import MemorySettings, settings_of

MODELS = {"adding": "Forecaster", "copy": "LanguageModel", "order": "TextClassifier"}


def model_kwargs(problem: str, cell: str, hidden: int, layers: int, embedding: int) -> dict:
    """The keyword arguments of the model that learns `problem` (MODELS)."""
    common = dict(hidden_size=hidden, num_layers=layers, cell=cell)
    if problem == "adding":
        return dict(input_size=2, output_size=1, horizon=1, decoder="direct", loss="mse", **common)
    if problem == "copy":
        return dict(vocab_size=memory_tasks.COPY_VOCAB, embedding_dim=embedding, **common)
    return dict(vocab_size=memory_tasks.ORDER_VOCAB, num_classes=memory_tasks.ORDER_CLASSES, embedding_dim=embedding,
                bidirectional=False, pooling="last", padding_idx=0, **common)


class MemoryTask:
    """The trainer's view of a memory problem (see rnnkit/train.py)."""

    carries = False

    def __init__(self, problem: str, length: int, train_size: int, valid_size: int, batch_size: int, seed: int,
                 dtype: str, config: dict):
        self.problem, self.length, self.batch_size, self.seed = problem, length, batch_size, seed
        self.train_size, self.dtype, self.config = train_size, np.dtype(dtype), config
        self.valid = [self._cast(memory_tasks.generate(problem, min(batch_size, valid_size - start), length,
                                                       [seed, 1, start]))
                      for start in range(0, valid_size, batch_size)]

    def _cast(self, batch: dict) -> dict:
        return {k: v.astype(self.dtype) if v.dtype.kind == "f" else v for k, v in batch.items()}

    def num_batches(self) -> int:
        return max(1, self.train_size // self.batch_size)

    def batches(self, epoch: int, start: int):
        for k in range(start, self.num_batches()):
            seed = [self.seed, 0, epoch, k]
            yield self._cast(memory_tasks.generate(self.problem, self.batch_size, self.length, seed))

    def batch_tokens(self, batch) -> int:
        return self.batch_size * self.length

    def evaluate(self, engine) -> dict:
        total, count, right, asked = 0.0, 0, 0, 0
        with engine.locked_weights():
            for batch in self.valid:
                loss, n, _ = engine.eval_loss(batch)
                total, count = total + loss, count + n
                if self.problem == "copy":          # the 10 recalled symbols
                    logits, _ = engine.predict(batch["inputs"])
                    recalled = slice(-memory_tasks.COPY_REMEMBER, None)
                    right += int((logits[:, recalled].argmax(-1) == batch["targets"][:, recalled]).sum())
                    asked += batch["targets"][:, recalled].size
                elif self.problem == "order":
                    probs = engine.predict(batch["inputs"], batch["lengths"])
                    right, asked = right + int((probs.argmax(-1) == batch["labels"]).sum()), asked + len(probs)
        loss, baseline = total / count, memory_tasks.baseline(self.problem, self.length)
        out = {"loss": loss, "baseline": baseline, "loss_vs_baseline": loss / baseline}
        if asked:
            out["accuracy"] = right / asked
        return out

    def checkpoint_config(self) -> dict:
        return self.config


def train_memory(settings: MemorySettings | None = None, *, preset: str | None = None, **options) -> TrainResult:
    """Train on a memory problem: `settings` (rnnkit/tasks/settings.py's MemorySettings) or its settings by
    name, e.g. train_memory(problem="copy", length=20, cell="gru", epochs=3)."""
    s = settings_of("memory", settings, preset, options)
    data, model, training = s.data, s.model, s.training
    kwargs = model_kwargs(data.problem, model.cell, model.hidden, model.layers, model.embedding)
    eng = build_engine(training.engine, MODELS[data.problem], kwargs, **training.engine_options())
    initialize_engine(eng, model.cell, model.init, model.forget_bias, seed=training.seed)
    config = {"task": "memory", "model_class": MODELS[data.problem], "model": kwargs, "data": asdict(data),
              "training": asdict(training), "dtype": training.dtype}
    task = MemoryTask(data.problem, data.length, data.train_size, data.valid_size, training.batch_size,
                      training.seed, training.dtype, config)
    return train(task, eng, training, training.out, resume=training.resume)
