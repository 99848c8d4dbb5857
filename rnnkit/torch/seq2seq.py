"""Translation with attention on torch.nn: the scratch engine's Seq2Seq (rnnkit/scratch/seq2seq.py), autograd.

Settings, parameter names, batch format and the encode / decode_step contract: rnnkit/seq2seq_spec.py.
The equations are the scratch engine's (rnnkit/scratch/seq2seq.py, rnnkit/scratch/attention.py):

    encoder   m_1..m_S, (h_n, c_n) = RNN(E_src[x])                  packed by length; m_j (M,), zero past L
    bridge    s_0^l = tanh(B_h^l [h_n^{l,fwd}; h_n^{l,bwd}] + b),  c_0^l = B_c^l [c_n^{l,fwd}; c_n^{l,bwd}] + b
    step t    e_t = E_tgt[y_{t-1}]
      none      s_t = RNN(e_t, s_{t-1});                  o_t = s_t
      bahdanau  c_t, α_t = attend(s_{t-1}^top);  s_t = RNN([e_t; c_t], s_{t-1});  o_t = s_t
      luong     s_t = RNN([e_t; h̃_{t-1}], s_{t-1});  c_t, α_t = attend(s_t^top)
                h̃_t = tanh(W_c [c_t; s_t^top]);  o_t = h̃_t
    logits_t = W_out o_t + b_out
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..seq2seq_spec import (INFERENCE_METHODS, check_batch, check_options, check_source, check_step,
                            loss_targets)


class Attention(nn.Module):
    """Scores of a query s (B, Q) against keys K (B, S, K), masked softmax, context Σ_j α_j m_j.

    bahdanau       e_j = v · tanh(W_q s + K_j),  K_j = W_k m_j + b_k
    luong-dot      e_j = s · m_j                 (K = m)
    luong-general  e_j = s · K_j,                K_j = W m_j
    """

    def __init__(self, kind: str, query_size: int, memory_size: int):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.query = nn.Linear(query_size, query_size, bias=False)
            self.key = nn.Linear(memory_size, query_size)
            self.score = nn.Linear(query_size, 1, bias=False)
        elif kind == "luong-general":
            self.key = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory if self.kind == "luong-dot" else self.key(memory)

    def forward(self, query, keys, memory, mask):
        """(context (B, M), weights α (B, S)); α is exactly zero where mask is False."""
        if self.kind == "bahdanau":
            scores = self.score(torch.tanh(self.query(query)[:, None, :] + keys)).squeeze(-1)
        else:
            scores = torch.einsum("bk,bsk->bs", query, keys)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return torch.einsum("bs,bsm->bm", weights, memory), weights


class Seq2Seq(nn.Module):
    """Encoder (embedding → RNN/LSTM/GRU, bidirectional) → bridge → attentional decoder → output layer.

    Arguments as rnnkit/scratch/seq2seq.Seq2Seq (less dtype and rng; `seed` as the other torch models).
    Initialisation by the same distributions as the scratch model: embeddings U(-0.1, 0.1) with the pad row
    zero, torch's defaults elsewhere. Scheduled sampling draws from torch's global generator (which
    TorchEngine.rng_state saves), only when 0 < teacher_forcing < 1.
    """

    inference_methods = INFERENCE_METHODS

    def __init__(self, source_vocab: int, target_vocab: int, embedding_dim: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", bidirectional: bool = False, attention: str = "bahdanau",
                 dropout: float = 0.0, teacher_forcing: float = 1.0, label_smoothing: float = 0.0,
                 tie_embeddings: bool = False, pad_id: int = 0, bos_id: int = 2, eos_id: int = 3,
                 seed: int | None = None):
        super().__init__()
        check_options(source_vocab, target_vocab, embedding_dim, hidden_size, num_layers, cell, bidirectional,
                      attention, dropout, teacher_forcing, label_smoothing, tie_embeddings, pad_id, bos_id, eos_id)
        self.cell, self.attention_kind, self.num_layers = cell, attention, int(num_layers)
        self.hidden_size, self.directions = int(hidden_size), 2 if bidirectional else 1
        self.teacher_forcing, self.label_smoothing = float(teacher_forcing), float(label_smoothing)
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        memory_size = self.directions * hidden_size
        feed = {"none": 0, "bahdanau": memory_size}.get(attention, hidden_size)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = nn.Module()
            self.encoder.embedding = nn.Embedding(source_vocab, embedding_dim, padding_idx=pad_id)
            self.encoder.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout, bidirectional)
            self.bridge = nn.Module()
            self.bridge.h = nn.ModuleList(nn.Linear(memory_size, hidden_size) for _ in range(num_layers))
            if cell == "lstm":
                self.bridge.c = nn.ModuleList(nn.Linear(memory_size, hidden_size) for _ in range(num_layers))
            self.decoder = nn.Module()
            self.decoder.embedding = nn.Embedding(target_vocab, embedding_dim, padding_idx=pad_id)
            self.decoder.rnn = make_recurrent(cell, embedding_dim + feed, hidden_size, num_layers, dropout)
            if attention != "none":
                self.decoder.attention = Attention(attention, hidden_size, memory_size)
            if attention.startswith("luong"):
                self.decoder.combine = nn.Linear(memory_size + hidden_size, hidden_size, bias=False)
            self.decoder.output = nn.Linear(hidden_size, target_vocab)
            with torch.no_grad():
                for embedding in (self.encoder.embedding, self.decoder.embedding):
                    embedding.weight.uniform_(-0.1, 0.1)
                    embedding.weight[pad_id] = 0
        if tie_embeddings:
            self.decoder.output.weight = self.decoder.embedding.weight
        self.drop = nn.Dropout(dropout)

    # ------------------------------------------------------------------------------------------ parts
    def _encode(self, source: torch.Tensor, lengths: np.ndarray):
        """(memory (B, S, M), keys, mask (B, S), initial decoder state: h or (h, c), each (layers, B, H))."""
        time = source.shape[1]
        x = self.drop(self.encoder.embedding(source))
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                                   enforce_sorted=False)
        out, state = self.encoder.rnn(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=time)
        ends = torch.as_tensor(lengths, device=source.device)
        mask = torch.arange(time, device=source.device)[None, :] < ends[:, None]
        keys = self.decoder.attention.keys(memory) if self.attention_kind != "none" else memory

        def bridged(final, projections, squash):
            d = self.directions
            layers = [proj(torch.cat(list(final[k * d:(k + 1) * d]), dim=-1)) for k, proj in enumerate(projections)]
            stacked = torch.stack(layers)
            return torch.tanh(stacked) if squash else stacked

        if self.cell == "lstm":
            state = (bridged(state[0], self.bridge.h, True), bridged(state[1], self.bridge.c, False))
        else:
            state = bridged(state, self.bridge.h, True)
        return memory, keys, mask, state

    def _step(self, prev: torch.Tensor, state, feed, memory, keys, mask):
        """One decoder step: (logits (B, V), state, feed (h̃_t for Luong), attention weights (B, S) or None)."""
        x = self.drop(self.decoder.embedding(prev))
        weights = None
        if self.attention_kind == "bahdanau":
            top = (state[0] if self.cell == "lstm" else state)[-1]
            context, weights = self.decoder.attention(top, keys, memory, mask)
            x = torch.cat([x, context], dim=-1)
        elif self.attention_kind != "none":
            x = torch.cat([x, feed], dim=-1)
        out, state = self.decoder.rnn(x[:, None, :], state)
        o = out[:, 0]
        if self.attention_kind.startswith("luong"):
            context, weights = self.decoder.attention(o, keys, memory, mask)
            o = feed = torch.tanh(self.decoder.combine(torch.cat([context, o], dim=-1)))
        return self.decoder.output(self.drop(o)), state, feed, weights

    def forward(self, source, source_lengths, target_in) -> torch.Tensor:
        """Logits (B, T, V) for target_in (B, T) given the source; the inputs after the first one are the
        true previous tokens with probability `teacher_forcing` in training (always in eval mode), else the
        previous step's argmax."""
        memory, keys, mask, state = self._encode(source, source_lengths)
        batch, time = target_in.shape
        feed = memory.new_zeros(batch, self.hidden_size) if self.attention_kind.startswith("luong") else None
        ratio = self.teacher_forcing if self.training else 1.0
        prev, logits = target_in[:, 0], []
        for t in range(time):
            if t > 0:
                prev = target_in[:, t]
                if ratio < 1.0:
                    sampled = logits[-1].argmax(dim=-1)
                    if ratio > 0.0:
                        sampled = torch.where(torch.rand(batch, device=prev.device) >= ratio, sampled, prev)
                    prev = sampled
            step_logits, state, feed, _ = self._step(prev, state, feed, memory, keys, mask)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    def stepped_recurrent(self) -> tuple:
        """The recurrent layers run one target token per call (the decoder's): the engine's through_time joins
        their calls into one record per layer."""
        return (self.decoder.rnn,)

    # ------------------------------------------------------------------------------------------ training
    def loss(self, batch: dict, carry=None, reduction: str = "mean", label_smoothing: float | None = None):
        """(mean token cross-entropy over the real target positions, None): label-smoothed in training."""
        batch = check_batch(batch)
        device = self.decoder.output.weight.device
        logits = self(as_tensor(batch["source"], torch.long, device), batch["source_lengths"],
                      as_tensor(batch["target_in"], torch.long, device))
        targets = as_tensor(loss_targets(batch), torch.long, device)
        smoothing = self.label_smoothing if label_smoothing is None else label_smoothing
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                               reduction=reduction, label_smoothing=smoothing)
        return loss, None

    def eval_loss(self, batch: dict, carry=None):
        """(summed NLL of the target tokens, their number, None); no label smoothing."""
        loss, _ = self.loss(batch, carry, reduction="sum", label_smoothing=0.0)
        return float(loss), int(np.asarray(batch["target_lengths"]).sum()), None

    # ------------------------------------------------------------------------------------------ inference
    def encode(self, source, source_lengths):
        """(state, memory) as dicts of NumPy arrays, batch first (rnnkit/seq2seq_spec.py)."""
        source, lengths = check_source(source, source_lengths)
        weight = self.decoder.output.weight
        memory, keys, mask, state = self._encode(as_tensor(source, torch.long, weight.device), lengths)
        h, c = state if self.cell == "lstm" else (state, None)
        out = {"h": h.transpose(0, 1)}
        if c is not None:
            out["c"] = c.transpose(0, 1)
        if self.attention_kind.startswith("luong"):
            out["feed"] = memory.new_zeros(len(lengths), self.hidden_size)
        return _numpy(out), _numpy({"memory": memory, "keys": keys, "mask": mask})

    def decode_step(self, prev_tokens, state: dict, memory: dict):
        """(log_probs (B, V), state, attention (B, S)) as NumPy; see rnnkit/seq2seq_spec.py."""
        prev = check_step(prev_tokens, state, memory)
        if prev.size and (prev.min() < 0 or prev.max() >= self.decoder.embedding.num_embeddings):
            raise ValueError(f"prev_tokens must be in [0, {self.decoder.embedding.num_embeddings})")
        weight = self.decoder.output.weight
        like = lambda a: as_tensor(a, weight.dtype, weight.device)  # noqa: E731
        h = like(state["h"]).transpose(0, 1).contiguous()
        rnn_state = (h, like(state["c"]).transpose(0, 1).contiguous()) if self.cell == "lstm" else h
        feed = like(state["feed"]) if "feed" in state else None
        mask = torch.as_tensor(np.asarray(memory["mask"], dtype=bool), device=weight.device)
        prev = as_tensor(prev, torch.long, weight.device)
        logits, rnn_state, feed, weights = self._step(prev, rnn_state, feed, like(memory["memory"]),
                                                      like(memory["keys"]), mask)
        h, c = rnn_state if self.cell == "lstm" else (rnn_state, None)
        out = {"h": h.transpose(0, 1)}
        if c is not None:
            out["c"] = c.transpose(0, 1)
        if feed is not None:
            out["feed"] = feed
        if weights is None:
            weights = torch.zeros(mask.shape, dtype=weight.dtype, device=weight.device)
        return _numpy(torch.log_softmax(logits, dim=-1)), _numpy(out), _numpy(weights)


def _numpy(obj):
    if isinstance(obj, dict):
        return {k: _numpy(v) for k, v in obj.items()}
    return obj.detach().cpu().numpy()


# At the end: models.py imports this module at its own end, so either may be imported first.
from .models import as_tensor, make_recurrent  # noqa: E402
