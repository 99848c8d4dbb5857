"""Sequence-to-sequence translation with attention on the scratch engine, every backward written by hand.

Settings, parameter names, batch format and the encode / decode_step contract: rnnkit/seq2seq_spec.py.
The same model as rnnkit/torch/seq2seq.py, equation for equation (float64 parity in tests/test_seq2seq_models.py):

    encoder   m (B, S, M), (h_n, c_n) = RNN(dropout(E_src[x]), lengths)     recurrent.py, its BPTT included
    bridge    s_0^l = tanh(B_h^l [h_n^{l,fwd}; h_n^{l,bwd}] + b_h^l)       one projection per layer l
              c_0^l = B_c^l [c_n^{l,fwd}; c_n^{l,bwd}] + b_c^l               (the LSTM's cell, not squashed)
    decoder, step t = 1..T, from the previous token y_{t-1} (y_0 = <bos>):
              e_t = dropout(E_tgt[y_{t-1}])
      none      x_t = e_t
      bahdanau  c_t, α_t = attend(s_{t-1}^top);  x_t = [e_t; c_t]
      luong     x_t = [e_t; h̃_{t-1}]   (input feeding, h̃_0 = 0)
              s_t^l = cell(x_t^l, s_{t-1}^l),  x_t^1 = x_t,  x_t^{l+1} = dropout(s_t^l)    the reference cells
      luong     c_t, α_t = attend(s_t^top);  h̃_t = tanh(W_c [c_t; s_t^top]);  o_t = h̃_t
      else      o_t = s_t^top
              logits_t = W_out dropout(o_t) + b_out
    attend: rnnkit/scratch/attention.py.

Backward through time, t = T..1, with δs^l the gradient reaching s_t^l from step t+1 (and from the
loss through o_t), δh̃ the gradient reaching h̃_t from step t+1's input:

    luong     δo = dL/do_t + δh̃;   δa = δo ⊙ (1 - h̃_t²);   dW_c += δaᵀ [c_t; s_t];   [δc; δs] = δa W_c
              δs += attend_backward(δc)
    else      δs = dL/do_t
    top-down over layers: the cell's backward with δs^l (+ δs from this step); its dx feeds the layer below
    (through the dropout mask) and its dh_prev, dc_prev become step t-1's δs^l, δc^l
    dx_t^1 = [δe_t; δc_t] (bahdanau: δs_{t-1}^top += attend_backward(δc_t)) or [δe_t; δh̃_{t-1}] (luong)
Then δs_0, δc_0 go through the bridge to the encoder's h_n, c_n; the attention's gradients of the memory and
the keys to the encoder's outputs; the encoder runs its own BPTT.

Gradients through time (rnnkit.diagnostics): with the decoder's `rnn.record_through_time` set, forward keeps
each step's layer inputs x_t^l and states s_t^l, and backward the gradient reaching each state, δs_t^l =
∂L/∂s_t^l (from the output at t, from step t+1 and, below the top, from layer l+1 at t: the `d_h` each cell's
backward takes); `rnn.recorded` then holds one record per layer, as the encoder's layers keep theirs, with
part = "decoder". While recording, the decoder reads the true tokens (no scheduled sampling), as in eval mode.

Scheduled sampling (training, 0 <= teacher_forcing < 1): the input of step t > 1 is y_{t-1} with probability
teacher_forcing, else the argmax of step t-1's logits; the draws come from the model's generator `rng`
(which also draws the dropout masks). Eval mode always feeds the true tokens.
"""
from __future__ import annotations

import numpy as np

from ..seq2seq_spec import (INFERENCE_METHODS, check_batch, check_options, check_source, check_step,
                            loss_targets)
from .attention import Attention
from .cells import CELLS
from .layers import Dropout, Embedding, Linear
from .losses import cross_entropy, log_softmax
from .module import Module, as_float_dtype, make_rng
from .pooling import length_mask


def _drop_mask(rng, p: float, shape, dtype):
    """An inverted-dropout mask (as layers.Dropout's), or None when there is nothing to drop."""
    if p == 0.0:
        return None
    return (rng.random(shape) >= p).astype(dtype) / dtype.type(1.0 - p)


class Encoder(Module):
    """Embedding → dropout → RNN/LSTM/GRU over the real source positions."""

    def __init__(self, vocab: int, embedding_dim: int, hidden_size: int, num_layers: int, cell: str,
                 bidirectional: bool, dropout: float, pad_id: int, dtype, rng):
        self.lstm = cell == "lstm"
        self.embedding = Embedding(vocab, embedding_dim, padding_idx=pad_id, dtype=dtype, rng=rng)
        self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional, dtype, rng)
        self.drop = Dropout(dropout, rng=rng)

    def forward(self, source, lengths):
        """memory (B, S, M), h_n (layers*D, B, H), c_n (the same, or None)."""
        out, state = self.rnn(self.drop(self.embedding(source)), None, lengths)
        return (out, *state) if self.lstm else (out, state, None)

    def backward(self, d_memory, d_h_n, d_c_n) -> None:
        d_x = (self.rnn.backward(d_memory, d_h_n, d_c_n) if self.lstm else self.rnn.backward(d_memory, d_h_n))[0]
        self.embedding.backward(self.drop.backward(d_x))


class Bridge(Module):
    """The encoder's final states, both directions of layer l, projected to the decoder's layer l."""

    def __init__(self, memory_size: int, hidden_size: int, num_layers: int, lstm: bool, directions: int,
                 dtype, rng):
        self.directions = directions
        self.h = [Linear(memory_size, hidden_size, dtype=dtype, rng=rng) for _ in range(num_layers)]
        if lstm:
            self.c = [Linear(memory_size, hidden_size, dtype=dtype, rng=rng) for _ in range(num_layers)]

    def _join(self, final: np.ndarray, layer: int) -> np.ndarray:
        d = self.directions
        return np.concatenate(list(final[layer * d:(layer + 1) * d]), axis=-1)

    def forward(self, h_n, c_n):
        """s_0 (layers, B, H) and c_0 (or None)."""
        self._s0 = np.stack([np.tanh(proj(self._join(h_n, k))) for k, proj in enumerate(self.h)])
        c0 = None if c_n is None else np.stack([proj(self._join(c_n, k)) for k, proj in enumerate(self.c)])
        return self._s0, c0

    def _split(self, d_joined: list) -> np.ndarray:
        return np.concatenate([np.stack(np.split(d, self.directions, axis=-1)) for d in d_joined])

    def backward(self, d_s0, d_c0):
        """dL/dh_n, dL/dc_n (layers*D, B, H)."""
        d_pre = d_s0 * (1 - self._s0 * self._s0)
        d_h_n = self._split([proj.backward(d_pre[k]) for k, proj in enumerate(self.h)])
        d_c_n = None if d_c0 is None else self._split([proj.backward(d_c0[k]) for k, proj in enumerate(self.c)])
        return d_h_n, d_c_n


class _Step:
    """What one decoder step keeps for its backward."""

    __slots__ = ("embed_mask", "attend", "cells", "layer_masks", "combined", "output")

    def __init__(self, embed_mask, attend, cells, layer_masks, combined, output):
        self.embed_mask, self.attend, self.cells, self.layer_masks = embed_mask, attend, cells, layer_masks
        self.combined, self.output = combined, output


class Decoder(Module):
    """Embedding → (attention) → the reference cells, one step at a time → (Luong's combine) → output layer."""

    def __init__(self, vocab: int, embedding_dim: int, hidden_size: int, num_layers: int, cell: str,
                 attention: str, memory_size: int, dropout: float, pad_id: int, dtype, rng):
        self.cell, self.kind, self.embedding_dim = cell, attention, int(embedding_dim)
        self.luong = attention.startswith("luong")
        feed = {"none": 0, "bahdanau": memory_size}.get(attention, hidden_size)
        self.embedding = Embedding(vocab, embedding_dim, padding_idx=pad_id, dtype=dtype, rng=rng)
        self.rnn = make_recurrent(cell, embedding_dim + feed, hidden_size, num_layers, dropout, dtype=dtype, rng=rng)
        if attention != "none":
            self.attention = Attention(attention, hidden_size, memory_size, dtype=dtype, rng=rng)
        if self.luong:
            self.combine = Linear(memory_size + hidden_size, hidden_size, bias=False, dtype=dtype, rng=rng)
        self.output = Linear(hidden_size, vocab, dtype=dtype, rng=rng)
        self.dropout = float(dropout)
        self.step_fn = CELLS[cell]
        self.cell_options = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
        self.steps_recorded: list | None = None   # per step, while the gradients through time are measured

    def start_recording(self) -> None:
        """Keep every step's inputs and states from the next forward (its backward adds their gradients),
        if `rnn.record_through_time` is set."""
        self.steps_recorded = [] if self.rnn.record_through_time else None

    def finish_recording(self) -> None:
        """Per layer l, into `rnn.recorded` (as recurrent.py's layers record themselves): part "decoder",
        inputs (B, T, features), h0 = s_0^l (B, H), h and grad_h = ∂L/∂s_t^l (B, T, H), t = 1..T."""
        steps, self.steps_recorded = self.steps_recorded, None
        if steps is None:
            return
        stack = lambda key, layer: np.stack([step[key][layer] for step in steps], axis=1)  # noqa: E731
        self.rnn.recorded = [{"part": "decoder", "inputs": stack("inputs", layer), "h0": steps[0]["h_prev"][layer],
                              "h": stack("h", layer), "grad_h": stack("grad_h", layer)}
                             for layer in range(len(steps[0]["h"]))]

    def _weights(self, layer: int):
        return [p.data for p in self.rnn._params(layer, 0)]

    def step(self, prev, hs: list, cs: list | None, feed, keys, memory, mask, rng):
        """One step from the previous tokens (B,): (o_t (B, H), hs, cs, feed, α (B, S) or None, _Step).
        hs, cs: per layer (B, H); dropout (masks from `rng`) only in training mode."""
        dtype = self.embedding.weight.data.dtype
        p = self.dropout if self.training else 0.0
        x = self.embedding.weight.data[prev]
        embed_mask = _drop_mask(rng, p, x.shape, dtype)
        if embed_mask is not None:
            x = x * embed_mask
        weights = attend = None
        if self.kind == "bahdanau":
            context, weights, attend = self.attention.step(hs[-1], keys, memory, mask)
            x = np.concatenate([x, context], axis=1)
        elif self.luong:
            x = np.concatenate([x, feed], axis=1)
        new_hs, new_cs, cells, layer_masks = [], [] if cs is not None else None, [], []
        inputs = []
        for layer in range(len(hs)):
            layer_mask = _drop_mask(rng, p, x.shape, dtype) if layer > 0 else None
            if layer_mask is not None:
                x = x * layer_mask
            inputs.append(x)
            if cs is not None:
                h, c, cache = self.step_fn.forward(x, hs[layer], cs[layer], *self._weights(layer))
                new_cs.append(c)
            else:
                h, cache = self.step_fn.forward(x, hs[layer], *self._weights(layer), **self.cell_options)
            new_hs.append(h)
            cells.append(cache)
            layer_masks.append(layer_mask)
            x = h
        if self.steps_recorded is not None:      # through_time: this step's inputs and states, per layer
            self.steps_recorded.append({"inputs": inputs, "h_prev": list(hs), "h": new_hs,
                                        "grad_h": [None] * len(hs)})
        o, combined = x, None
        if self.luong:
            context, weights, attend = self.attention.step(o, keys, memory, mask)
            combined = np.concatenate([context, o], axis=1)
            o = feed = np.tanh(combined @ self.combine.weight.data.T)
        return o, new_hs, new_cs, feed, weights, _Step(embed_mask, attend, cells, layer_masks, combined, o)

    def step_backward(self, d_o, d_hs: list, d_cs: list | None, saved: _Step, d_keys, d_memory, recorded=None):
        """Given dL/do_t and the gradients reaching s_t^l, c_t^l from step t+1 (lists, changed in place into
        those reaching s_{t-1}^l, c_{t-1}^l): (dL/de_t (B, E) before the dropout, dL/dh̃_{t-1} or None).
        `recorded`: step t's record of `steps_recorded`, whose grad_h[l] gets ∂L/∂s_t^l."""
        if self.luong:
            d_pre = d_o * (1 - saved.output * saved.output)
            self.combine.weight.grad += d_pre.T @ saved.combined
            d_combined = d_pre @ self.combine.weight.data
            memory_size = d_combined.shape[1] - d_o.shape[1]
            d_s = d_combined[:, memory_size:] + self.attention.step_backward(
                d_combined[:, :memory_size], saved.attend, d_keys, d_memory)
        else:
            d_s = d_o
        d_h = d_hs[-1] + d_s
        for layer in reversed(range(len(d_hs))):
            if recorded is not None:
                recorded["grad_h"][layer] = d_h      # ∂L/∂s_t^l: all that reaches the state, the cell's input
            if d_cs is not None:
                grads = self.step_fn.backward(d_h, d_cs[layer], saved.cells[layer])
                d_cs[layer] = grads.c_prev
            else:
                grads = self.step_fn.backward(d_h, saved.cells[layer])
            d_hs[layer] = grads.h_prev
            for param, g in zip(self.rnn._params(layer, 0), (grads.w_ih, grads.w_hh, grads.b_ih, grads.b_hh)):
                param.grad += g
            d_x = grads.x if saved.layer_masks[layer] is None else grads.x * saved.layer_masks[layer]
            if layer > 0:
                d_h = d_hs[layer - 1] + d_x
        d_embed, d_feed = d_x[:, :self.embedding_dim], None
        if saved.embed_mask is not None:
            d_embed = d_embed * saved.embed_mask
        if self.kind == "bahdanau":
            d_hs[-1] = d_hs[-1] + self.attention.step_backward(d_x[:, self.embedding_dim:], saved.attend,
                                                               d_keys, d_memory)
        elif self.luong:
            d_feed = d_x[:, self.embedding_dim:]
        return d_embed, d_feed


class Seq2Seq(Module):
    """Encoder → bridge → attentional decoder → output layer (see the module docstring and seq2seq_spec.py).

    Arguments as rnnkit/seq2seq_spec.py lists them, plus dtype and rng (a seed or a NumPy Generator: the
    initial weights, the dropout masks and the scheduled-sampling draws). Initialisation as the torch model's
    distributions: embeddings U(-0.1, 0.1) with the pad row zero, PyTorch's defaults elsewhere.
    """

    inference_methods = INFERENCE_METHODS

    def __init__(self, source_vocab: int, target_vocab: int, embedding_dim: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", bidirectional: bool = False, attention: str = "bahdanau",
                 dropout: float = 0.0, teacher_forcing: float = 1.0, label_smoothing: float = 0.0,
                 tie_embeddings: bool = False, pad_id: int = 0, bos_id: int = 2, eos_id: int = 3,
                 dtype=np.float32, rng=None):
        check_options(source_vocab, target_vocab, embedding_dim, hidden_size, num_layers, cell, bidirectional,
                      attention, dropout, teacher_forcing, label_smoothing, tie_embeddings, pad_id, bos_id, eos_id)
        self.dtype = as_float_dtype(dtype)
        self.rng = make_rng(rng)
        self.cell, self.attention_kind, self.hidden_size = cell, attention, int(hidden_size)
        self.teacher_forcing, self.label_smoothing = float(teacher_forcing), float(label_smoothing)
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        directions = 2 if bidirectional else 1
        memory_size = directions * hidden_size
        common = dict(dtype=self.dtype, rng=self.rng)
        self.encoder = Encoder(source_vocab, embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout,
                               pad_id, **common)
        self.bridge = Bridge(memory_size, hidden_size, num_layers, cell == "lstm", directions, **common)
        self.decoder = Decoder(target_vocab, embedding_dim, hidden_size, num_layers, cell, attention, memory_size,
                               dropout, pad_id, **common)
        for embedding in (self.encoder.embedding, self.decoder.embedding):
            embedding.weight.data[...] = self.rng.uniform(-0.1, 0.1, embedding.weight.shape)
            embedding.weight.data[pad_id] = 0
        if tie_embeddings:
            self.decoder.output.weight = self.decoder.embedding.weight
        self._saved = None

    # ------------------------------------------------------------------------------------------ parts
    def _encode(self, source, lengths):
        """memory, keys, mask (B, S), per-layer lists of s_0 (and c_0)."""
        memory, h_n, c_n = self.encoder(source, lengths)
        keys = self.decoder.attention.keys(memory) if self.attention_kind != "none" else memory
        s0, c0 = self.bridge(h_n, c_n)
        return memory, keys, length_mask(lengths, source.shape[1]), list(s0), None if c0 is None else list(c0)

    def forward(self, source, source_lengths, target_in) -> np.ndarray:
        """Logits (B, T, V), keeping what `backward` needs (scheduled sampling in training: module docstring)."""
        memory, keys, mask, hs, cs = self._encode(source, source_lengths)
        self.decoder.start_recording()
        batch, time = target_in.shape
        feed = np.zeros((batch, self.hidden_size), self.dtype) if self.decoder.luong else None
        measuring = self.decoder.steps_recorded is not None          # through_time: as in eval mode
        ratio = self.teacher_forcing if self.training and not measuring else 1.0
        p = self.decoder.dropout if self.training else 0.0
        output = self.decoder.output
        inputs, outputs, steps = target_in.copy(), [], []
        for t in range(time):
            if t > 0 and ratio < 1.0:
                logits = outputs[-1] @ output.weight.data.T + output.bias.data
                sampled = logits.argmax(axis=1)
                if ratio > 0.0:
                    sampled = np.where(self.rng.random(batch) >= ratio, sampled, target_in[:, t])
                inputs[:, t] = sampled
            o, hs, cs, feed, _, saved = self.decoder.step(inputs[:, t], hs, cs, feed, keys, memory, mask, self.rng)
            out_mask = _drop_mask(self.rng, p, o.shape, self.dtype)
            outputs.append(o if out_mask is None else o * out_mask)
            steps.append((saved, out_mask))
        self._saved = (inputs, steps, memory, keys, cs is not None)
        return output(np.stack(outputs, axis=1))

    def backward(self, d_logits) -> None:
        if self._saved is None:
            raise RuntimeError("Seq2Seq.backward needs a forward first")
        inputs, steps, memory, keys, lstm = self._saved
        d_outputs = self.decoder.output.backward(d_logits)                     # (B, T, H)
        batch, hidden = d_outputs.shape[0], self.hidden_size
        layers = len(self.bridge.h)
        d_hs = [np.zeros((batch, hidden), self.dtype) for _ in range(layers)]
        d_cs = [np.zeros((batch, hidden), self.dtype) for _ in range(layers)] if lstm else None
        d_memory, d_keys = np.zeros_like(memory), np.zeros_like(keys)
        d_embed = np.zeros((*inputs.shape, self.decoder.embedding_dim), self.dtype)
        d_feed = None
        for t in reversed(range(len(steps))):
            saved, out_mask = steps[t]
            d_o = d_outputs[:, t] if out_mask is None else d_outputs[:, t] * out_mask
            if d_feed is not None:
                d_o = d_o + d_feed
            recorded = None if self.decoder.steps_recorded is None else self.decoder.steps_recorded[t]
            d_embed[:, t], d_feed = self.decoder.step_backward(d_o, d_hs, d_cs, saved, d_keys, d_memory, recorded)
        self.decoder.finish_recording()
        self.decoder.embedding(inputs)                                          # its lookup, for the backward
        self.decoder.embedding.backward(d_embed)
        if self.attention_kind != "none":
            d_memory += self.decoder.attention.keys_backward(d_keys)
        d_h_n, d_c_n = self.bridge.backward(np.stack(d_hs), None if d_cs is None else np.stack(d_cs))
        self.encoder.backward(d_memory, d_h_n, d_c_n)
        self._saved = None

    # ------------------------------------------------------------------------------------------ training
    def _logits(self, batch):
        return self.forward(batch["source"], batch["source_lengths"], batch["target_in"])

    def loss(self, batch: dict, carry=None):
        """Mean (label-smoothed) token cross-entropy over the real target positions, gradients accumulated
        in `.grad`. Returns (loss, None)."""
        batch = check_batch(batch)
        loss, d_logits = cross_entropy(self._logits(batch), loss_targets(batch), label_smoothing=self.label_smoothing)
        self.backward(d_logits)
        return float(loss), None

    def eval_loss(self, batch: dict, carry=None):
        """(summed NLL of the target tokens, their number, None), without gradients or label smoothing."""
        batch = check_batch(batch)
        loss, _ = cross_entropy(self._logits(batch), loss_targets(batch), reduction="sum")
        self._saved = None
        return float(loss), int(batch["target_lengths"].sum()), None

    # ------------------------------------------------------------------------------------------ inference
    def encode(self, source, source_lengths):
        """(state, memory) as dicts of arrays, batch first (rnnkit/seq2seq_spec.py)."""
        source, lengths = check_source(source, source_lengths)
        memory, keys, mask, hs, cs = self._encode(source, lengths)
        state = {"h": np.stack(hs, axis=1)}
        if cs is not None:
            state["c"] = np.stack(cs, axis=1)
        if self.decoder.luong:
            state["feed"] = np.zeros((len(lengths), self.hidden_size), self.dtype)
        return state, {"memory": memory, "keys": keys, "mask": mask}

    def decode_step(self, prev_tokens, state: dict, memory: dict):
        """(log_probs (B, V), state, attention (B, S)); see rnnkit/seq2seq_spec.py."""
        prev = self.decoder.embedding.check_indices(check_step(prev_tokens, state, memory))
        like = lambda a: np.asarray(a, dtype=self.dtype)  # noqa: E731
        hs = list(like(state["h"]).transpose(1, 0, 2))
        cs = list(like(state["c"]).transpose(1, 0, 2)) if "c" in state else None
        feed = like(state["feed"]) if "feed" in state else None
        mask = np.asarray(memory["mask"], dtype=bool)
        o, hs, cs, feed, weights, _ = self.decoder.step(prev, hs, cs, feed, like(memory["keys"]),
                                                        like(memory["memory"]), mask, self.rng)
        logits = o @ self.decoder.output.weight.data.T + self.decoder.output.bias.data
        out = {"h": np.stack(hs, axis=1)}
        if cs is not None:
            out["c"] = np.stack(cs, axis=1)
        if feed is not None:
            out["feed"] = feed
        if weights is None:
            weights = np.zeros(mask.shape, self.dtype)
        return log_softmax(logits), out, weights


# At the end: models.py imports this module at its own end, so either may be imported first.
from .models import make_recurrent  # noqa: E402
