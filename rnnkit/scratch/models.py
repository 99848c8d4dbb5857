"""The task models of the scratch engine, built from its parts, each with its hand-written backward.

Every model has the interface the trainer, the tasks and checkpointing use:
    forward(...)                     the outputs (and the recurrent state, where there is one)
    loss(batch, carry)               forward + loss + backward: (mean loss, carry), gradients accumulated in
                                     `.grad` (the torch models' `loss` returns a tensor for autograd instead)
    eval_loss(batch, carry)          (summed loss, count, carry), no gradients
    predict(...)                     outputs for serving and generation
    state_dict() / load_state_dict() PyTorch's names, equal to the torch engine's model
"""
from __future__ import annotations

import numpy as np

from ..spec import check_cell, check_pooling
from .layers import Dropout, Embedding, Linear
from .losses import cross_entropy, softmax
from .module import Module, as_float_dtype, make_rng
from .recurrent import GRU, LSTM, RNN, Embedded


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                   bidirectional: bool = False, dtype=np.float32, rng=None):
    """The scratch RNN / LSTM / GRU layer for a cell name in spec.CELLS."""
    check_cell(cell)
    kwargs = dict(num_layers=num_layers, dropout=dropout, bidirectional=bidirectional, dtype=dtype, rng=rng)
    if cell == "lstm":
        return LSTM(input_size, hidden_size, **kwargs)
    if cell == "gru":
        return GRU(input_size, hidden_size, **kwargs)
    if cell in ("rnn_tanh", "rnn_relu"):
        return RNN(input_size, hidden_size, nonlinearity=cell[4:], **kwargs)
    raise NotImplementedError(f"cell {cell!r} is in rnnkit.spec.CELLS but the scratch engine does not build it")


def uniform_(param, bound: float, rng) -> None:
    param.data[...] = rng.uniform(-bound, bound, param.data.shape)


class LanguageModel(Module):
    """Embedding → dropout → RNN/LSTM/GRU → dropout → Linear over the vocabulary.

    forward(tokens (batch, time) int, state=None) → logits (batch, time, vocab), state
    where state is h (layers, batch, hidden), or (h, c) for an LSTM; pass it back in to carry context
    from one window of text to the next (truncated BPTT).
    With `tie_weights` the decoder uses the embedding matrix (embedding_dim must equal hidden_size);
    the state dict then holds it under both names, as PyTorch's does.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 128, hidden_size: int = 256, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False, dtype=np.float32,
                 rng=None):
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(f"tie_weights needs embedding_dim == hidden_size, got {embedding_dim} and {hidden_size}")
        self.dtype = as_float_dtype(dtype)
        self.rng = make_rng(rng)  # one generator for initialisation and every dropout mask
        self.vocab_size, self.cell = int(vocab_size), cell
        self.embedding = Embedding(vocab_size, embedding_dim, dtype=dtype, rng=self.rng)
        self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout, dtype=dtype, rng=self.rng)
        self.decoder = Linear(hidden_size, vocab_size, dtype=dtype, rng=self.rng)
        uniform_(self.embedding.weight, 0.1, self.rng)  # as PyTorch's word_language_model example
        uniform_(self.decoder.weight, 0.1, self.rng)
        self.decoder.bias.data[...] = 0
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        self.drop_in = Dropout(dropout, rng=self.rng)
        self.drop_out = Dropout(dropout, rng=self.rng)

    def forward(self, tokens, state=None):
        x = self.drop_in(self.embedding(tokens))
        out, state = self.rnn(x, state)
        return self.decoder(self.drop_out(out)), state

    def backward(self, d_logits) -> None:
        d_out = self.drop_out.backward(self.decoder.backward(d_logits))
        d_x = self.rnn.backward(d_out)[0]
        self.embedding.backward(self.drop_in.backward(d_x))

    def predict(self, tokens, state=None):
        """forward without caching for a backward: (logits (batch, time, vocab), state)."""
        return self.forward(tokens, state)

    def loss(self, batch: dict, carry=None):
        """Mean cross-entropy of predicting batch["targets"] (batch, time) from batch["inputs"], computing the
        gradients as it goes (forward, loss, backward: they accumulate in each parameter's `.grad`).

        Returns (loss, state): the state after this window, to carry into the next one.
        """
        logits, state = self.forward(batch["inputs"], carry)
        loss, d_logits = cross_entropy(logits, batch["targets"])
        self.backward(d_logits)
        return float(loss), state

    def eval_loss(self, batch: dict, carry=None):
        """(summed cross-entropy, number of targets, state), without gradients (for evaluation)."""
        logits, state = self.forward(batch["inputs"], carry)
        loss, _ = cross_entropy(logits, batch["targets"], reduction="sum")
        return float(loss), int(np.asarray(batch["targets"]).size), state


class TextClassifier(Module):
    """Embedding → dropout → RNN/LSTM/GRU → pooling → dropout → Linear over the classes.

    forward(tokens (batch, time) int, lengths (batch,)) → logits (batch, classes).
    Padding (token `padding_idx`, past each length) never changes a prediction: the recurrent layer stops
    at each sequence's length and the pooling looks only at the real steps.
    With locked weights in eval mode (Module.lock_weights) the recurrent layer takes the embedding as
    `Embedded`, so it may look each token's input projection up from a table (recurrent.py).
    pooling: "last" (the final state of each direction), "mean", "max", "attention" (see pooling.py).
    `class_weights` (classes,), if set, weight the loss for imbalanced labels (as torch's `weight=`).
    `embedding_init_std`: the embedding starts N(0, std²) (1: torch.nn.Embedding's N(0, 1)). A small std
    (0.1) starts every word near the origin, so a word seen a few times stays near it instead of keeping a
    large random vector; the draw is the N(0, 1) one scaled, so the other parameters start the same.
    """

    def __init__(self, vocab_size: int, num_classes: int, embedding_dim: int = 100, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", bidirectional: bool = False, dropout: float = 0.0,
                 pooling: str = "last", attention_size: int = 64, padding_idx: int = 0,
                 embedding_init_std: float = 1.0, dtype=np.float32, rng=None):
        from .pooling import AttentionPool, MaxPool, MeanPool

        check_pooling(pooling)
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.dtype = as_float_dtype(dtype)
        self.rng = make_rng(rng)
        self.pooling, self.num_classes = pooling, int(num_classes)
        self.class_weights = None
        if not embedding_init_std > 0:
            raise ValueError(f"embedding_init_std must be positive, got {embedding_init_std}")
        self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=padding_idx, dtype=dtype, rng=self.rng)
        self.embedding.weight.data *= self.dtype.type(embedding_init_std)
        self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional, dtype,
                                  self.rng)
        features = hidden_size * (2 if bidirectional else 1)
        if pooling == "attention":
            self.attention = AttentionPool(features, attention_size, dtype=dtype, rng=self.rng)
        self.classifier = Linear(features, num_classes, dtype=dtype, rng=self.rng)
        self.drop_in = Dropout(dropout, rng=self.rng)
        self.drop_out = Dropout(dropout, rng=self.rng)
        self._pool = {"mean": MeanPool, "max": MaxPool}.get(pooling, lambda: None)()

    def forward(self, tokens, lengths):
        tokens = np.asarray(tokens)
        lengths = np.asarray(lengths)
        if self.weights_locked and not self.training:  # the layer may fold the embedding into its projection
            x = Embedded(self.embedding.check_indices(tokens), self.embedding.weight.data)
        else:
            x = self.drop_in(self.embedding(tokens))
        out, state = self.rnn(x, lengths=lengths)
        if self.pooling == "last":
            h_n = state[0] if isinstance(state, tuple) else state
            directions = 2 if self.rnn.bidirectional else 1
            pooled = np.concatenate(list(h_n[-directions:]), axis=-1)   # top layer, each direction
        elif self.pooling == "attention":
            pooled = self.attention(out, lengths)
        else:
            pooled = self._pool(out, lengths)
        self._out_shape = out.shape
        return self.classifier(self.drop_out(pooled))

    def backward(self, d_logits) -> None:
        d_pooled = self.drop_out.backward(self.classifier.backward(d_logits))
        if self.pooling == "last":
            directions = 2 if self.rnn.bidirectional else 1
            hidden = self.rnn.hidden_size
            d_h_n = np.zeros((self.rnn.num_layers * directions, d_pooled.shape[0], hidden), dtype=self.dtype)
            d_h_n[-directions:] = d_pooled.reshape(-1, directions, hidden).transpose(1, 0, 2)
            d_x = self.rnn.backward(None, d_h_n)[0]
        else:
            pool = self.attention if self.pooling == "attention" else self._pool
            d_x = self.rnn.backward(pool.backward(d_pooled))[0]
        self.embedding.backward(self.drop_in.backward(d_x))

    def predict(self, tokens, lengths) -> np.ndarray:
        """Class probabilities (batch, classes)."""
        return softmax(self.forward(tokens, lengths), axis=-1)

    def _loss(self, batch, reduction):
        logits = self.forward(batch["inputs"], batch["lengths"])
        return logits, cross_entropy(logits, batch["labels"], reduction=reduction, weight=self.class_weights)

    def loss(self, batch: dict, carry=None):
        """Mean (class-weighted) cross-entropy of batch["labels"] (batch,) given batch["inputs"] and
        batch["lengths"], computing the gradients as it goes (they accumulate in `.grad`). Returns (loss, None)."""
        _, (loss, d_logits) = self._loss(batch, "mean")
        self.backward(d_logits)
        return float(loss), None

    def eval_loss(self, batch: dict, carry=None):
        """(summed loss, number of examples, None) without gradients."""
        _, (loss, _) = self._loss(batch, "sum")
        return float(loss), len(batch["labels"]), None

from .forecaster import Forecaster  # noqa: E402,F401  (after make_recurrent, which it imports)
