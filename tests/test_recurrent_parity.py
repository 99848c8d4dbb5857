"""The scratch RNN / LSTM / GRU layers against torch.nn's, weights copied, in float64.

Outputs, final states, the input gradient, the initial-state gradients and every parameter gradient must
agree to a relative error below 1e-9, for 1-3 layers, one or two directions, with and without lengths and
initial states, on shapes drawn by hypothesis. Every test runs on both LSTM paths: the NumPy steps and the
compiled kernels (rnnkit.scratch.fast.kernels; that run is skipped where numba is not installed).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from rnnkit.scratch.fast import kernels  # noqa: E402
from rnnkit.scratch.recurrent import GRU, LSTM, RNN  # noqa: E402

KINDS = {
    "rnn_tanh": (lambda **kw: RNN(nonlinearity="tanh", **kw), lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw)),
    "rnn_relu": (lambda **kw: RNN(nonlinearity="relu", **kw), lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw)),
    "lstm": (LSTM, torch.nn.LSTM),
    "gru": (GRU, torch.nn.GRU),
}
TOL = 1e-9


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def lstm_path(request, monkeypatch):
    """Run the test with the LSTM on the NumPy steps, then on the numba kernels."""
    if request.param == "numba" and not kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(kernels, "ENABLED", request.param == "numba")
    return request.param


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def run_both(kind, batch, time, inputs, hidden, layers, bidirectional, lengths, with_state, bias=True, seed=0):
    """Run both engines on the same data; return dict name → (scratch value, torch value)."""
    make_scratch, make_torch = KINDS[kind]
    scratch = make_scratch(input_size=inputs, hidden_size=hidden, num_layers=layers, bias=bias,
                           bidirectional=bidirectional, dtype=np.float64, rng=seed)
    ref = make_torch(input_size=inputs, hidden_size=hidden, num_layers=layers, bias=bias,
                     bidirectional=bidirectional, batch_first=True).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in scratch.state_dict().items()})

    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((batch, time, inputs))
    h0 = rng.standard_normal((layers * D, batch, hidden)) if with_state else None
    c0 = rng.standard_normal((layers * D, batch, hidden)) if with_state else None
    d_out = rng.standard_normal((batch, time, D * hidden))
    d_hn = rng.standard_normal((layers * D, batch, hidden))
    d_cn = rng.standard_normal((layers * D, batch, hidden))
    if lengths is not None:  # the loss must not see the padding: its outputs are zero on both sides
        d_out *= (np.arange(time)[None, :] < np.asarray(lengths)[:, None])[..., None]
    is_lstm = kind == "lstm"

    state = ((h0, c0) if is_lstm else h0) if with_state else None
    out, s_n = scratch.forward(x, state, lengths=lengths)
    if is_lstm:
        d_x, (d_h0, d_c0) = scratch.backward(d_out, d_hn, d_cn)
        h_n, c_n = s_n
    else:
        d_x, d_h0 = scratch.backward(d_out, d_hn)
        h_n, c_n, d_c0 = s_n, None, None

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0 if with_state else np.zeros((layers * D, batch, hidden)), requires_grad=True)
    c0t = torch.tensor(c0 if with_state else np.zeros((layers * D, batch, hidden)), requires_grad=True)
    packed = xt
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
    out_t, s_t = ref(packed, (h0t, c0t) if is_lstm else h0t)
    if lengths is not None:
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=True, total_length=time)
    h_t, c_t = s_t if is_lstm else (s_t, None)
    loss = (out_t * torch.tensor(d_out)).sum() + (h_t * torch.tensor(d_hn)).sum()
    if is_lstm:
        loss = loss + (c_t * torch.tensor(d_cn)).sum()
    loss.backward()

    pairs = {"output": (out, out_t), "h_n": (h_n, h_t), "d_x": (d_x, xt.grad), "d_h0": (d_h0, h0t.grad)}
    if is_lstm:
        pairs.update(c_n=(c_n, c_t), d_c0=(d_c0, c0t.grad))
    torch_params = dict(ref.named_parameters())
    assert set(torch_params) == {name for name, _ in scratch.named_parameters()}
    for name, p in scratch.named_parameters():
        pairs["grad " + name] = (p.grad, torch_params[name].grad)
    return {k: (np.asarray(a), b.detach().numpy()) for k, (a, b) in pairs.items()}


def assert_parity(pairs):
    errors = {k: rel_err(a, b) for k, (a, b) in pairs.items()}
    bad = {k: v for k, v in errors.items() if not v < TOL}
    assert not bad, f"relative errors above {TOL}: {bad}"


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_parity_fixed_shapes(kind, bidirectional, use_lengths):
    lengths = [7, 3, 1, 7, 5] if use_lengths else None
    pairs = run_both(kind, batch=5, time=7, inputs=4, hidden=6, layers=2, bidirectional=bidirectional,
                     lengths=lengths, with_state=True)
    assert_parity(pairs)
    if use_lengths:  # outputs past each sequence's end are exactly zero
        out = pairs["output"][0]
        for b, n in enumerate(lengths):
            assert np.all(out[b, n:] == 0)
            assert np.any(out[b, n - 1] != 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_without_bias(kind):
    assert_parity(run_both(kind, batch=3, time=4, inputs=2, hidden=3, layers=2, bidirectional=True,
                           lengths=[4, 2, 3], with_state=False, bias=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(list(KINDS)),
    batch=st.integers(1, 8),  # both sides of fast.SMALL_BATCH (the whole-loop and the gate-major LSTM)
    time=st.integers(1, 6),
    inputs=st.integers(1, 5),
    hidden=st.integers(1, 6),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    with_state=st.booleans(),
    data=st.data(),
)
def test_parity_random_shapes(kind, batch, time, inputs, hidden, layers, bidirectional, with_state, data):
    use_lengths = data.draw(st.booleans(), label="use_lengths")
    lengths = None
    if use_lengths:
        lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch), label="lengths")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    assert_parity(run_both(kind, batch, time, inputs, hidden, layers, bidirectional, lengths, with_state,
                           seed=seed))


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_round_trip_through_torch(kind):
    make_scratch, make_torch = KINDS[kind]
    scratch = make_scratch(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, rng=5)
    ref = make_torch(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, batch_first=True)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in scratch.state_dict().items()})  # strict
    back = make_scratch(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, rng=6)
    back.load_state_dict(ref.state_dict())
    for name, value in scratch.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(back.state_dict()[name], value)
    assert list(scratch.state_dict()) == list(ref.state_dict())  # same names in the same order


@pytest.mark.parametrize("kind", list(KINDS))
def test_initialisation_is_pytorchs_uniform(kind):
    layer = KINDS[kind][0](input_size=7, hidden_size=50, num_layers=2, rng=0)
    bound = 1 / np.sqrt(50)
    values = np.concatenate([p.data.ravel() for p in layer.parameters()])
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.95 * bound  # fills the interval
    assert abs(values.mean()) < 0.05 * bound


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_matches_torch_to_float32_rounding(kind):
    make_scratch, make_torch = KINDS[kind]
    scratch = make_scratch(input_size=8, hidden_size=16, num_layers=2, rng=1)
    ref = make_torch(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in scratch.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 20, 8)).astype(np.float32)
    out, _ = scratch.forward(x)
    assert out.dtype == np.float32
    out_t, _ = ref(torch.from_numpy(x))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=0, atol=2e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_truncated_bptt_carries_the_state(kind):
    """Two windows with the state carried equal one long run; backward of the second stops at its h0."""
    layer = KINDS[kind][0](input_size=3, hidden_size=4, num_layers=2, dtype=np.float64, rng=2)
    x = np.random.default_rng(1).standard_normal((2, 10, 3))
    full, _ = layer.forward(x)
    first, state = layer.forward(x[:, :6])
    second, _ = layer.forward(x[:, 6:], state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, rtol=0, atol=1e-12)
    layer.zero_grad()
    out = layer.backward(np.ones_like(second))
    d_x = out[0]
    assert d_x.shape == (2, 4, 3)
    assert all(np.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_when_backward_works_in_many_time_blocks(kind, monkeypatch):
    from rnnkit.scratch.fast import numpy_path

    monkeypatch.setattr(numpy_path, "BLOCK_ELEMENTS", 7)  # every step its own block
    assert_parity(run_both(kind, batch=3, time=5, inputs=2, hidden=4, layers=2, bidirectional=True,
                           lengths=[5, 2, 4], with_state=True))
