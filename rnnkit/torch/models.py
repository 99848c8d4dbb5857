"""The task models of the torch engine: the scratch engine's models (rnnkit/scratch/models.py) on torch.nn.

Same constructor arguments (less dtype and rng), the same parameter names, shapes, order and
initialisation, so `state_dict()`s move between the engines unchanged. Autograd does the backward.

Every model has the interface TorchEngine uses:
    forward(...)                        the outputs (and the recurrent state, where there is one)
    loss(batch, carry)                  (mean loss tensor, state detached), for training; the scratch models'
                                        `loss` has the same name and returns a float, gradients filled
    eval_loss(batch, carry)             (summed loss float, count, state), for evaluation (call under no_grad)
Batches hold NumPy arrays; the models move them to their own device.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..spec import CELLS, check_cell, check_pooling  # noqa: F401  (CELLS: rnnkit.torch exports it)


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                   bidirectional: bool = False) -> nn.RNNBase:
    """nn.LSTM / nn.GRU / nn.RNN (batch_first) for a cell name in spec.CELLS.

    `dropout` (between layers) is passed on only with num_layers > 1: torch warns otherwise, and it has no
    effect with one layer in either engine.
    """
    check_cell(cell)
    kwargs = dict(num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0,
                  bidirectional=bidirectional, batch_first=True)
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, **kwargs)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, **kwargs)
    if cell in ("rnn_tanh", "rnn_relu"):
        return nn.RNN(input_size, hidden_size, nonlinearity=cell[4:], **kwargs)
    raise NotImplementedError(f"cell {cell!r} is in rnnkit.spec.CELLS but the torch engine does not build it")


def as_tensor(x, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A NumPy array (or tensor, or list) as a tensor of `dtype` on `device`."""
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        x = x.copy()  # torch warns on (and must not share) read-only memory
    return torch.as_tensor(x, dtype=dtype, device=device)


def state_to(state, like: torch.Tensor):
    """A recurrent state (None, h, or (h, c)), NumPy or tensors, as tensors of like's dtype and device."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(as_tensor(s, like.dtype, like.device) for s in state)
    return as_tensor(state, like.dtype, like.device)


def detach(state):
    """The state cut from the graph: the next window's BPTT stops at it."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class LanguageModel(nn.Module):
    """Embedding → dropout → RNN/LSTM/GRU → dropout → Linear over the vocabulary.

    forward(tokens (batch, time) long, state=None) → logits (batch, time, vocab), state
    where state is h (layers, batch, hidden), or (h, c) for an LSTM.
    With `tie_weights` the decoder uses the embedding matrix (embedding_dim must equal hidden_size); the
    state dict holds it under both names.

    Initialisation as the scratch model's: the recurrent layer torch's default U(-1/sqrt(H), 1/sqrt(H)),
    embedding and decoder weight U(-0.1, 0.1), decoder bias 0. With `seed` the initial weights come from
    torch.manual_seed(seed) in a forked generator (the global one is left as it was); with None from the
    global generator. Dropout masks always come from the global generator (TorchEngine.rng_state).
    The model is built in float32 on the CPU; use `.double()` / `.to(device)` (TorchEngine moves it).
    """

    device_inputs = ("inputs", "targets")  # the batch arrays TorchEngine may hand over as device tensors

    def __init__(self, vocab_size: int, embedding_dim: int = 128, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False, seed: int | None = None):
        super().__init__()
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(f"tie_weights needs embedding_dim == hidden_size, got {embedding_dim} and {hidden_size}")
        self.vocab_size, self.cell = int(vocab_size), cell
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.embedding = nn.Embedding(vocab_size, embedding_dim)
            self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout)
            self.decoder = nn.Linear(hidden_size, vocab_size)
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # as PyTorch's word_language_model example
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
            nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, state=None):
        x = self.drop(self.embedding(tokens))
        out, state = self.rnn(x, state)
        return self.decoder(self.drop(out)), state

    def loss(self, batch: dict, carry=None, reduction: str = "mean"):
        """Cross-entropy of predicting batch["targets"] (batch, time) from batch["inputs"] (batch, time).

        `carry` is the previous window's state (tensors or NumPy) or None. Returns (loss tensor, state
        detached): the state after this window, to carry into the next one.
        """
        weight = self.decoder.weight
        tokens = as_tensor(batch["inputs"], torch.long, weight.device)
        targets = as_tensor(batch["targets"], torch.long, weight.device)
        logits, state = self(tokens, state_to(carry, weight))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)
        return loss, detach(state)

    def predict(self, tokens, state=None):
        """Logits (batch, time, vocab) as NumPy for tokens given as NumPy; the state stays on the device."""
        weight = self.decoder.weight
        logits, state = self(as_tensor(tokens, torch.long, weight.device), state_to(state, weight))
        return logits.cpu().numpy(), state

    def eval_loss(self, batch: dict, carry=None):
        """(summed cross-entropy, number of targets, state): the scratch model's `loss`."""
        loss, state = self.loss(batch, carry, reduction="sum")
        return float(loss), int(np.asarray(batch["targets"]).size), state


class AttentionPool(nn.Module):
    """Additive attention over the real steps: α = softmax_t(v · tanh(W h_t + c)), p = Σ α_t h_t
    (parameters `proj` and `score`, as the scratch engine's)."""

    def __init__(self, features: int, attention_size: int):
        super().__init__()
        self.proj = nn.Linear(features, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.einsum("bt,btf->bf", torch.softmax(scores, dim=1), h)


class TextClassifier(nn.Module):
    """Embedding → dropout → RNN/LSTM/GRU (packed by length) → pooling → dropout → Linear over the classes.

    forward(tokens (batch, time) long, lengths (batch,)) → logits (batch, classes). Pooling "last" (final
    state of each direction of the top layer), "mean", "max" or "attention", over the real steps only.
    `class_weights` (NumPy (classes,) or None) weight the loss; it is a setting, not a parameter.
    `embedding_init_std`: the embedding starts N(0, std²), torch's N(0, 1) draw scaled (as the scratch model).
    """

    device_inputs = ("inputs", "labels")  # the batch arrays TorchEngine may hand over as device tensors (not lengths)

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 100, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", bidirectional: bool = False, dropout: float = 0.0,
                 pooling: str = "last", attention_size: int = 64, padding_idx: int = 0,
                 embedding_init_std: float = 1.0, seed: int | None = None):
        super().__init__()
        check_pooling(pooling)
        self.pooling, self.num_classes, self.class_weights = pooling, int(num_classes), None
        features = hidden_size * (2 if bidirectional else 1)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            if not embedding_init_std > 0:
                raise ValueError(f"embedding_init_std must be positive, got {embedding_init_std}")
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
            with torch.no_grad():
                self.embedding.weight.mul_(embedding_init_std)
            self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional)
            if pooling == "attention":
                self.attention = AttentionPool(features, attention_size)
            self.classifier = nn.Linear(features, num_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, lengths) -> torch.Tensor:
        time = tokens.shape[1]
        lengths = lengths.long().cpu() if isinstance(lengths, torch.Tensor) else \
            torch.as_tensor(np.asarray(lengths), dtype=torch.long)  # pack wants them on the CPU
        x = self.drop(self.embedding(tokens))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=time)
        mask = torch.arange(time, device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]
        if self.pooling == "last":
            h_n = state[0] if isinstance(state, tuple) else state
            directions = 2 if self.rnn.bidirectional else 1
            pooled = torch.cat(list(h_n[-directions:]), dim=-1)
        elif self.pooling == "mean":
            pooled = out.sum(dim=1) / lengths.to(out)[:, None]
        elif self.pooling == "max":
            pooled = out.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values
        else:
            pooled = self.attention(out, mask)
        return self.classifier(self.drop(pooled))

    def _logits_and_labels(self, batch: dict):
        weight = self.classifier.weight
        logits = self(as_tensor(batch["inputs"], torch.long, weight.device), batch["lengths"])
        return logits, as_tensor(batch["labels"], torch.long, weight.device)

    def loss(self, batch: dict, carry=None, reduction: str = "mean"):
        """(class-weighted cross-entropy of batch["labels"], None)."""
        logits, labels = self._logits_and_labels(batch)
        weights = None if self.class_weights is None else as_tensor(self.class_weights, logits.dtype, logits.device)
        return F.cross_entropy(logits, labels, weight=weights, reduction=reduction), None

    def eval_loss(self, batch: dict, carry=None):
        loss, _ = self.loss(batch, carry, reduction="sum")
        return float(loss), len(batch["labels"]), None

    def predict(self, tokens, lengths) -> np.ndarray:
        """Class probabilities (batch, classes) as NumPy."""
        logits = self(as_tensor(tokens, torch.long, self.classifier.weight.device), lengths)
        return torch.softmax(logits, dim=-1).cpu().numpy()
# The task models built on the helpers above (imported last: they import them).
from .forecaster import Forecaster  # noqa: E402,F401
from .seq2seq import Seq2Seq  # noqa: E402,F401
