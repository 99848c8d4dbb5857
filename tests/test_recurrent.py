"""Whole-layer finite-difference checks, dropout, and the errors bad input gets."""
import numpy as np
import pytest
from gradcheck import numeric_grad

from rnnkit.scratch.fast import kernels
from rnnkit.scratch.recurrent import GRU, LSTM, RNN

EPS = 1e-6
MAKERS = {
    "rnn_tanh": lambda **kw: RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: LSTM(**kw),
    "gru": lambda **kw: GRU(**kw),
}


def scalar_loss(layer, x, state, lengths, r_out, r_h):
    out, s = layer.forward(x, state, lengths=lengths)
    h = s[0] if isinstance(layer, LSTM) else s
    return float((out * r_out).sum() + (h * r_h).sum())


@pytest.mark.parametrize("kind, path", [(kind, "numpy") for kind in MAKERS] + [("lstm", "numba")])
def test_layer_gradients_by_finite_differences(kind, path, monkeypatch):
    if path == "numba" and not kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(kernels, "ENABLED", path == "numba")
    rng = np.random.default_rng(0)
    layer = MAKERS[kind](input_size=2, hidden_size=3, num_layers=2, bidirectional=True, dtype=np.float64, rng=1)
    x = rng.standard_normal((3, 4, 2))
    lengths = np.array([4, 2, 3])
    h0 = rng.standard_normal((4, 3, 3))
    state = (h0, rng.standard_normal((4, 3, 3))) if kind == "lstm" else h0
    r_out, r_h = rng.standard_normal((3, 4, 6)), rng.standard_normal((4, 3, 3))

    def loss():
        return scalar_loss(layer, x, state, lengths, r_out, r_h)

    loss()
    layer.zero_grad()
    grads = layer.backward(r_out, r_h)
    d_x, d_h0 = grads[0], (grads[1][0] if kind == "lstm" else grads[1])

    def check(analytic, array):
        num = numeric_grad(loss, array, EPS)
        assert np.abs(analytic - num).max() <= 1e-7 * max(1.0, np.abs(num).max())

    check(d_x, x)
    check(d_h0, h0)
    for _, p in layer.named_parameters():
        check(p.grad, p.data)


def test_relu_rnn_is_relu():
    layer = RNN(1, 1, nonlinearity="relu", bias=False, dtype=np.float64, rng=0)
    layer.weight_ih_l0.data[:] = 1.0
    layer.weight_hh_l0.data[:] = 0.5
    out, h = layer.forward(np.array([[[1.0], [-3.0], [2.0]]]))
    np.testing.assert_allclose(out[0, :, 0], [1.0, 0.0, 2.0])  # max(0, x_t + 0.5 h_{t-1})
    np.testing.assert_allclose(h, [[[2.0]]])


@pytest.mark.parametrize("kind", list(MAKERS))
def test_padding_never_changes_the_real_steps(kind):
    """A sequence padded with garbage and given its length gives the same outputs and state as alone."""
    rng = np.random.default_rng(3)
    layer = MAKERS[kind](input_size=3, hidden_size=4, num_layers=2, bidirectional=True, dtype=np.float64, rng=4)
    short = rng.standard_normal((1, 3, 3))
    padded = np.concatenate([short, 1e3 * rng.standard_normal((1, 4, 3))], axis=1)
    out_short, s_short = layer.forward(short)
    out_pad, s_pad = layer.forward(padded, lengths=[3])
    np.testing.assert_allclose(out_pad[:, :3], out_short, rtol=1e-13, atol=1e-14)
    assert np.all(out_pad[:, 3:] == 0)
    h_short = s_short[0] if kind == "lstm" else s_short
    h_pad = s_pad[0] if kind == "lstm" else s_pad
    np.testing.assert_allclose(h_pad, h_short, rtol=1e-13, atol=1e-14)


def test_dropout_between_layers_only_in_training():
    layer = LSTM(4, 8, num_layers=2, dropout=0.5, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    a, _ = layer.forward(x)
    b, _ = layer.forward(x)
    assert not np.allclose(a, b)  # different masks in training
    layer.eval()
    c, _ = layer.forward(x)
    d, _ = layer.forward(x)
    np.testing.assert_array_equal(c, d)
    # one layer: dropout has nothing to act on (as in PyTorch, it applies between layers)
    single = GRU(4, 8, num_layers=1, dropout=0.5, dtype=np.float64, rng=0)
    np.testing.assert_array_equal(single.forward(x)[0], single.forward(x)[0])


def test_dropout_gradient_uses_the_forward_mask():
    """With the mask fixed by re-seeding, finite differences agree with backward through dropout."""
    x = np.random.default_rng(1).standard_normal((2, 3, 2))
    r = np.random.default_rng(2).standard_normal((2, 3, 3))

    def loss(xv):
        layer = RNN(2, 3, num_layers=2, dropout=0.4, dtype=np.float64, rng=7)  # same weights and masks
        out, _ = layer.forward(xv)
        return float((out * r).sum()), layer

    _, layer = loss(x)
    d_x, _ = layer.backward(r)
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += EPS
        xm[idx] -= EPS
        num[idx] = (loss(xp)[0] - loss(xm)[0]) / (2 * EPS)
    np.testing.assert_allclose(d_x, num, rtol=1e-6, atol=1e-9)


def test_seed_makes_layers_repeatable():
    a, b = LSTM(3, 5, rng=42), LSTM(3, 5, rng=42)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(pa.data, pb.data)


# ----------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def lstm():
    return LSTM(3, 4, num_layers=2, check_finite=True, rng=0)


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 3)), "rank 2"),
    (np.zeros((2, 5, 4)), "4 features"),
    (np.zeros((2, 0, 3)), "empty"),
    (np.zeros((0, 4, 3)), "empty"),
    (np.array([[["a", "b", "c"]]]), "real numbers"),
])
def test_bad_input_shapes(lstm, x, message):
    with pytest.raises(ValueError, match=message):
        lstm.forward(x)


@pytest.mark.parametrize("lengths, message", [
    ([3, 0], r"in \[1, 4\]"),
    ([5, 1], r"in \[1, 4\]"),
    ([-1, 2], r"in \[1, 4\]"),
    ([1, 2, 3], r"shape \(batch,\)"),
    ([1.5, 2], "integers"),
])
def test_bad_lengths(lstm, lengths, message):
    with pytest.raises(ValueError, match=message):
        lstm.forward(np.zeros((2, 4, 3)), lengths=lengths)


def test_bad_initial_state(lstm):
    x = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=r"h0 must have shape .*\(2, 2, 4\)"):
        lstm.forward(x, (np.zeros((1, 2, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(ValueError, match="c0 must have shape"):
        lstm.forward(x, (np.zeros((2, 2, 4)), np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match="pair"):
        lstm.forward(x, np.zeros((2, 2, 4)))
    gru = GRU(3, 4)
    with pytest.raises(ValueError, match="h0 must have shape"):
        gru.forward(x, np.zeros((2, 2, 4)))


def test_non_finite_values_when_asked(lstm):
    x = np.zeros((1, 2, 3))
    x[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lstm.forward(x)
    h0 = np.zeros((2, 1, 4))
    h0[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="h0 contains"):
        lstm.forward(np.zeros((1, 2, 3)), (h0, np.zeros_like(h0)))
    quiet = LSTM(3, 4)  # without the flag the check is skipped, and NaN flows through
    assert np.isnan(quiet.forward(x)[0]).any()


def test_bad_backward_calls():
    layer = GRU(3, 4)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 4)))
    layer.forward(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"d_output must have shape \(1, 2, 4\)"):
        layer.backward(np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match="d_h_n must have shape"):
        layer.backward(None, np.zeros((2, 1, 4)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_size=0, hidden_size=3), "input_size"),
    (dict(input_size=2, hidden_size=-1), "hidden_size"),
    (dict(input_size=2, hidden_size=3, num_layers=0), "num_layers"),
    (dict(input_size=2, hidden_size=3, dropout=1.0), "dropout"),
    (dict(input_size=2, hidden_size=3, dtype=np.int32), "dtype"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTM(**kwargs)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(2, 3, nonlinearity="sigmoid")


def test_load_state_dict_checks_names_and_shapes():
    layer = LSTM(3, 4)
    state = layer.state_dict()
    with pytest.raises(ValueError, match="missing"):
        layer.load_state_dict({k: v for k, v in state.items() if k != "bias_hh_l0"})
    state["weight_hh_l0"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"weight_hh_l0: shape \(4, 4\)"):
        layer.load_state_dict(state)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_backward_uses_the_weights_of_its_forward(kind):
    """Weights changed in place between forward and backward do not leak into the gradients."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 2))
    grads = []
    for change in (False, True):
        layer = MAKERS[kind](input_size=2, hidden_size=3, dtype=np.float64, rng=1)
        out, _ = layer.forward(x)
        if change:
            for p in layer.parameters():
                p.data += 1.0
        d_x, _ = layer.backward(np.ones_like(out))
        grads.append([d_x] + [p.grad.copy() for p in layer.parameters()])
    for before, after in zip(*grads):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("batch_first", [True, False])
def test_the_output_a_backward_reads_again_is_read_only(kind, batch_first):
    """Where a backward may follow, the output is the layer's own states (no transposing copy, as PyTorch's
    batch-first output is a view): read-only, so an in-place change cannot silently change the gradients;
    its values are the states; in eval mode with locked weights it is the caller's to change."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 7, 3)).astype(np.float32)  # (batch, time, ·) or (time, batch, ·)
    layer = MAKERS[kind](input_size=3, hidden_size=6, batch_first=batch_first, rng=2)
    out, state = layer.forward(x)
    h_n = state[0] if isinstance(layer, LSTM) else state
    assert not out.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        out[0, 0, 0] = 1.0
    last = out[:, -1] if batch_first else out[-1]
    np.testing.assert_array_equal(last, h_n[0])
    d_x, _ = layer.backward(np.ones_like(out))
    assert d_x.shape == x.shape
    layer.eval()
    with layer.locked_weights():
        inferred, _ = layer.forward(x)
    assert inferred.flags.writeable and inferred.flags.c_contiguous
    np.testing.assert_allclose(inferred, out, rtol=1e-5, atol=1e-6)
