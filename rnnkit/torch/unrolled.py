"""torch.nn's RNN / LSTM / GRU unrolled step by step on their own parameters, to see the gradients through time.

nn.LSTM runs a whole sequence in one fused call (cuDNN, oneDNN), so autograd never holds the state of a single
step. `recording(model)` swaps each recurrent layer's `forward` for a Python loop over time steps on the same
parameter tensors (PyTorch's equations, gate order and packed-sequence semantics: a finished sequence keeps
its state and outputs zero), and retains the gradient of every step's state h_t, so after `loss.backward()`
each record holds ∂L/∂h_t. The results equal the fused layer's to float rounding; unidirectional layers only.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def cell_name(rnn: nn.RNNBase) -> str:
    """rnnkit's cell name (spec.CELLS) for a torch recurrent layer: lstm, gru, rnn_tanh, rnn_relu."""
    return rnn.mode.lower()


def step(cell: str, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One time step of PyTorch's cells: x (batch, features), h, c (batch, hidden) → (h', c' or None)."""
    gi, gh = F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh)
    if cell == "lstm":     # i, f, g, o;  c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":      # r, z, n;  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 - z) ⊙ n + z ⊙ h
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    pre = gi + gh          # h' = act(W_ih x + b_ih + W_hh h + b_hh)
    return (torch.relu(pre) if cell == "rnn_relu" else torch.tanh(pre)), None


def _unrolled_forward(rnn: nn.RNNBase, records: list):
    """A `forward(input, hx=None)` for `rnn` computing what it computes, one step at a time, that appends a
    record per layer: cell, layer, inputs (batch, time, features), h0 (batch, hidden), h (batch, time,
    hidden) and `steps`, the per-step state tensors whose `.grad` backward fills."""
    cell, lstm = cell_name(rnn), isinstance(rnn, nn.LSTM)

    def forward(input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)
        else:
            x, lengths = (input if rnn.batch_first else input.transpose(0, 1)), None
        batch, time, _ = x.shape
        zeros = x.new_zeros(rnn.num_layers, batch, rnn.hidden_size)
        h0, c0 = (hx if hx is not None else (zeros, zeros)) if lstm else (zeros if hx is None else hx, None)
        mask = None if lengths is None else (torch.arange(time)[None, :] < lengths[:, None]).to(x.device)
        seq, h_n, c_n = x, [], []
        for layer in range(rnn.num_layers):
            if layer > 0 and rnn.training and rnn.dropout > 0:
                seq = F.dropout(seq, rnn.dropout, training=True)
            weights = [getattr(rnn, f"{n}_l{layer}", None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h, c = h0[layer], (c0[layer] if lstm else None)
            steps = []
            for t in range(time):
                h_new, c_new = step(cell, seq[:, t], h, c, *weights)
                if mask is not None:                       # a finished sequence keeps its state
                    keep = mask[:, t, None]
                    h_new = torch.where(keep, h_new, h)
                    c_new = torch.where(keep, c_new, c) if lstm else None
                if h_new.requires_grad:
                    h_new.retain_grad()
                steps.append(h_new)
                h, c = h_new, c_new
            out = torch.stack(steps, dim=1)
            if mask is not None:
                out = out * mask[..., None].to(out.dtype)  # outputs past a sequence's end are zero
            records.append(dict(cell=cell, layer=layer, direction=0, inputs=seq, h0=h0[layer], h=out, steps=steps,
                                mask=mask, module=rnn))
            h_n.append(h)
            c_n.append(c)
            seq = out
        state = (torch.stack(h_n), torch.stack(c_n)) if lstm else torch.stack(h_n)
        if packed:
            return pack_padded_sequence(seq, lengths, batch_first=True, enforce_sorted=False), state
        return (seq if rnn.batch_first else seq.transpose(0, 1)), state

    return forward


@contextlib.contextmanager
def recording(model: nn.Module):
    """Within the context every recurrent layer of `model` runs unrolled; yields the list its forwards append
    their records to (see `_unrolled_forward`). Afterwards the layers run fused again."""
    layers = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    for m in layers:
        if m.bidirectional or getattr(m, "proj_size", 0):
            raise ValueError("gradients through time: unidirectional layers without projections only")
    records: list = []
    try:
        for m in layers:
            m.forward = _unrolled_forward(m, records)
        yield records
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)
