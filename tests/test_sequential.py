"""The scratch library API (issue 21, item 14): Sequential, torch-like reprs, batch_first=False.

Sequential's forward and gradients equal the hand-chained layers' (bit for bit) and torch's with copied
weights (float64, 1e-9); recurrent layers with batch_first=False equal torch.nn's default layout, forward
and backward; reprs read as torch's do.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.scratch.layers import Dropout, Embedding, Linear
from rnnkit.scratch.module import Sequential
from rnnkit.scratch.pooling import MeanPool
from rnnkit.scratch.recurrent import GRU, LSTM, RNN, Embedded

torch = pytest.importorskip("torch")

TOL = 1e-9
SCRATCH = {"rnn_tanh": lambda **kw: RNN(nonlinearity="tanh", **kw),
           "rnn_relu": lambda **kw: RNN(nonlinearity="relu", **kw), "lstm": LSTM, "gru": GRU}
TORCH = {"rnn_tanh": lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
         "rnn_relu": lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw), "lstm": torch.nn.LSTM,
         "gru": torch.nn.GRU}


def rel_err(a, b) -> float:
    a, b = np.asarray(a), b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def grads(module) -> dict:
    return {name: p.grad.copy() for name, p in module.named_parameters()}


class TorchChain(torch.nn.Sequential):
    """torch.nn.Sequential that passes a recurrent layer's output (not its state) on, as ours does."""

    def forward(self, x):
        for module in self:
            x = module(x)
            if isinstance(x, tuple):
                x = x[0]
        return x


def language_model(batch_first=True, cell="lstm", rng=0):
    return Sequential(Embedding(11, 5, dtype=np.float64, rng=rng),
                      SCRATCH[cell](input_size=5, hidden_size=6, num_layers=2, batch_first=batch_first,
                                    dtype=np.float64, rng=rng + 1),
                      Linear(6, 11, dtype=np.float64, rng=rng + 2))


# ------------------------------------------------------------------------------------------------ Sequential

@pytest.mark.parametrize("batch_first", [True, False])
def test_sequential_equals_the_layers_chained_by_hand(batch_first):
    model, tokens = language_model(batch_first), np.random.default_rng(0).integers(0, 11, (3, 4))
    if not batch_first:
        tokens = tokens.T                                         # (time, batch)
    d_logits = np.random.default_rng(1).standard_normal((*tokens.shape, 11))
    logits = model(tokens)
    model.backward(d_logits)
    via_sequential = grads(model)

    embedding, rnn, decoder = model
    model.zero_grad()
    out, (h_n, c_n) = rnn(embedding(tokens))
    assert np.array_equal(decoder(out), logits)
    d_out = decoder.backward(d_logits)
    d_x, _ = rnn.backward(d_out)
    assert embedding.backward(d_x) is None
    by_hand = grads(model)
    assert via_sequential.keys() == by_hand.keys() and len(by_hand) == 1 + 8 + 2
    for name in by_hand:
        assert np.array_equal(via_sequential[name], by_hand[name]), name
        assert np.abs(by_hand[name]).max() > 0, name
    assert np.array_equal(model.states[1][0], h_n) and model.states[0] is None


@pytest.mark.parametrize("cell", list(SCRATCH))
@pytest.mark.parametrize("batch_first", [True, False])
def test_sequential_equals_torch_with_copied_weights(cell, batch_first):
    model = language_model(batch_first, cell)
    ref = TorchChain(torch.nn.Embedding(11, 5), TORCH[cell](input_size=5, hidden_size=6, num_layers=2,
                                                            batch_first=batch_first), torch.nn.Linear(6, 11)).double()
    assert list(ref.state_dict()) == list(model.state_dict())       # "0.weight", "1.weight_ih_l0", ...
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 11, (4, 3) if batch_first else (3, 4))
    d_logits = rng.standard_normal((4, 3, 11) if batch_first else (3, 4, 11))

    logits = model(tokens)
    model.backward(d_logits)
    logits_t = ref(torch.from_numpy(tokens))
    (logits_t * torch.from_numpy(d_logits)).sum().backward()
    assert rel_err(logits, logits_t) < TOL
    torch_grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert rel_err(p.grad, torch_grads[name].grad) < TOL, name


def test_sequential_classifier_passes_lengths_to_the_layers_that_take_them():
    """Embedding → GRU → mean pooling → Linear, with lengths: equal to the hand-chained layers."""
    model = Sequential(Embedding(9, 4, padding_idx=0, dtype=np.float64, rng=0),
                       GRU(4, 5, bidirectional=True, dtype=np.float64, rng=1), MeanPool(),
                       Linear(10, 3, dtype=np.float64, rng=2))
    tokens = np.array([[3, 4, 5, 0], [6, 7, 0, 0], [8, 0, 0, 0]])
    lengths = np.array([3, 2, 1])
    d_logits = np.random.default_rng(3).standard_normal((3, 3))
    logits = model(tokens, lengths=lengths)
    model.backward(d_logits)
    via_sequential = grads(model)

    embedding, gru, pool, linear = model
    model.zero_grad()
    out, _ = gru(embedding(tokens), lengths=lengths)
    assert np.array_equal(linear(pool(out, lengths)), logits)
    d_out, _ = gru.backward(pool.backward(linear.backward(d_logits)))
    embedding.backward(d_out)
    for name, grad in grads(model).items():
        assert np.array_equal(via_sequential[name], grad), name
    padded = model(np.where(tokens == 0, 5, tokens), lengths=lengths)   # what lies past a length is not read
    assert np.allclose(padded, logits, rtol=1e-12, atol=0)


def test_sequential_is_a_module():
    model = Sequential(Linear(3, 4, rng=0), Dropout(0.5, rng=0), Linear(4, 2, rng=1))
    assert len(model) == 3 and isinstance(model[2], Linear) and len(model[:2]) == 2
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2
    model.eval()
    assert not model[1].training
    x = np.ones((2, 3), dtype=np.float32)
    assert np.array_equal(model(x), model[2](model[0](x)))                 # eval: dropout is the identity
    with pytest.raises(TypeError, match="argument 1 is a int"):
        Sequential(Linear(2, 2), 5)


# ------------------------------------------------------------------------------------------------ batch_first=False

@pytest.mark.parametrize("cell", list(SCRATCH))
@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(batch=st.integers(1, 3), time=st.integers(1, 4), layers=st.integers(1, 2), bidirectional=st.booleans(),
       use_lengths=st.booleans(), data=st.data())
def test_time_major_layers_equal_torchs_default_layout(cell, batch, time, layers, bidirectional, use_lengths,
                                                        data):
    """x, output and d_output (time, batch, ·) as torch.nn's batch_first=False: outputs, states, d_x,
    d_h0 and every parameter gradient within 1e-9, with and without lengths."""
    D = 2 if bidirectional else 1
    kw = dict(input_size=3, hidden_size=4, num_layers=layers, bidirectional=bidirectional)
    layer = SCRATCH[cell](batch_first=False, dtype=np.float64, rng=0, **kw)
    ref = TORCH[cell](batch_first=False, **kw).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(batch * 10 + time)
    x = rng.standard_normal((time, batch, 3))
    h0 = rng.standard_normal((layers * D, batch, 4))
    d_out = rng.standard_normal((time, batch, D * 4))
    d_hn = rng.standard_normal((layers * D, batch, 4))
    lengths = None
    if use_lengths:
        lengths = np.array(data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)))
        d_out *= (np.arange(time)[:, None] < lengths[None, :])[..., None]    # the padding has no gradient

    is_lstm = cell == "lstm"
    out, state = layer(x, (h0, h0) if is_lstm else h0, lengths=lengths)
    h_n = state[0] if is_lstm else state
    d_x, d_state = layer.backward(d_out, d_hn)
    d_h0 = d_state[0] if is_lstm else d_state

    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(h0, requires_grad=True)
    inputs = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=False, enforce_sorted=False)
    out_t, state_t = ref(inputs, (h0t, c0t) if is_lstm else h0t)
    if lengths is not None:
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=False, total_length=time)
    h_t = state_t[0] if is_lstm else state_t
    ((out_t * torch.tensor(d_out)).sum() + (h_t * torch.tensor(d_hn)).sum()).backward()

    assert out.shape == (time, batch, D * 4) and d_x.shape == (time, batch, 3)
    for name, (a, b) in {"output": (out, out_t), "h_n": (h_n, h_t), "d_x": (d_x, xt.grad),
                         "d_h0": (d_h0, h0t.grad)}.items():
        assert rel_err(a, b) < TOL, name
    torch_params = dict(ref.named_parameters())
    for name, p in layer.named_parameters():
        assert rel_err(p.grad, torch_params[name].grad) < TOL, name


def test_time_major_layer_looks_up_embedded_tokens_as_a_batch_first_one_does():
    """Locked weights in eval mode: (time, batch) tokens given as Embedded take the folded first layer and
    equal the looked-up vectors' forward, as the batch-first layer's do."""
    embedding = Embedding(20, 4, dtype=np.float64, rng=0)
    layer = LSTM(4, 5, num_layers=2, batch_first=False, dtype=np.float64, rng=1).eval()
    tokens, lengths = np.random.default_rng(0).integers(0, 20, (6, 3)), [6, 2, 4]
    plain, (h_n, _) = layer(embedding(tokens), lengths=lengths)
    with layer.locked_weights():
        folded, (h_folded, _) = layer(Embedded(tokens, embedding.weight.data), lengths=lengths)
        assert layer._cache["folded"]
    assert folded.shape == (6, 3, 5)
    np.testing.assert_allclose(folded, plain, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_folded, h_n, rtol=1e-12, atol=1e-15)


def test_time_major_errors_name_the_layout():
    layer = LSTM(3, 4, batch_first=False)
    with pytest.raises(ValueError, match=r"input must be \(time, batch, features\)"):
        layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"d_output must have shape \(5, 2, 4\)"):
        layer(np.zeros((5, 2, 3)))
        layer.backward(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match=r"empty batch or time axis: shape \(5, 0, 3\)"):
        layer(np.zeros((5, 0, 3)))


# ------------------------------------------------------------------------------------------------ repr

@pytest.mark.parametrize("scratch, reference", [
    (lambda: LSTM(64, 128, num_layers=2), lambda: torch.nn.LSTM(64, 128, num_layers=2, batch_first=True)),
    (lambda: GRU(8, 16, num_layers=2, bias=False, batch_first=False, dropout=0.25, bidirectional=True),
     lambda: torch.nn.GRU(8, 16, num_layers=2, bias=False, dropout=0.25, bidirectional=True)),
    (lambda: RNN(3, 5, batch_first=False), lambda: torch.nn.RNN(3, 5)),
    (lambda: Linear(4, 2, bias=False), lambda: torch.nn.Linear(4, 2, bias=False)),
    (lambda: Embedding(100, 16, padding_idx=-1), lambda: torch.nn.Embedding(100, 16, padding_idx=-1)),
    (lambda: Dropout(0.3), lambda: torch.nn.Dropout(0.3)),
    (lambda: Sequential(Embedding(1000, 64), LSTM(64, 128, num_layers=2), Dropout(0.5), Linear(128, 1000)),
     lambda: torch.nn.Sequential(torch.nn.Embedding(1000, 64), torch.nn.LSTM(64, 128, num_layers=2, batch_first=True),
                                 torch.nn.Dropout(0.5), torch.nn.Linear(128, 1000))),
])
def test_repr_reads_as_torchs(scratch, reference):
    assert repr(scratch()) == repr(reference())


def test_repr_of_nested_modules_and_what_torch_leaves_out():
    inner = Sequential(Linear(2, 3), Sequential(RNN(3, 3, nonlinearity="relu", dtype=np.float64)))
    assert repr(inner) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): RNN(3, 3, nonlinearity='relu', batch_first=True, dtype=float64)\n"
        "  )\n"
        ")")
    assert repr(MeanPool()) == "MeanPool()"
