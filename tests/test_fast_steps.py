"""Finite-difference checks of each functional step (forward and hand-written backward)."""
import numpy as np
import pytest
from gradcheck import numeric_grad

from rnnkit.scratch.fast import packing, steps

B, I, H = 3, 4, 5


def assert_close(analytic, numeric, tol=1e-7):
    scale = max(np.abs(numeric).max(), 1e-3)
    assert np.abs(analytic - numeric).max() / scale < tol


def packed_weights(mode, rng):
    g = packing.GATES[mode]
    return packing.pack(mode, rng.standard_normal((g * H, I)), rng.standard_normal((g * H, H)) * 0.5,
                  rng.standard_normal(g * H), rng.standard_normal(g * H))


def sigmoid_scale(mode):
    """The step takes pre-activations with the sigmoid blocks halved (see functional.pack)."""
    scale = np.ones(packing.GATES[mode] * H)
    scale[: {"lstm": 3, "gru": 2}.get(mode, 0) * H] = 0.5
    return scale


@pytest.mark.parametrize("relu", [False, True])
def test_rnn_step(relu):
    rng = np.random.default_rng(0)
    mode = "rnn_relu" if relu else "rnn_tanh"
    p = packed_weights(mode, rng)
    pre, h_prev, r = rng.standard_normal((B, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    h = np.empty((B, H))

    def loss():
        steps.rnn_step(pre, h_prev, p.w_hh_t, h, relu)
        return float((h * r).sum())

    loss()
    d_pre, dh_prev = np.empty((B, H)), np.empty((B, H))
    steps.rnn_step_backward(r, steps.rnn_factors(h, relu), p.w_hh, d_pre, dh_prev)
    assert_close(d_pre, numeric_grad(loss, pre))
    assert_close(dh_prev, numeric_grad(loss, h_prev))


def test_lstm_step():
    rng = np.random.default_rng(1)
    p = packed_weights("lstm", rng)
    pre = rng.standard_normal((B, 4 * H))  # true pre-activations of the input side
    h_prev, c_prev = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    rh, rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    gates, c, tanh_c, h = (np.empty((B, 4 * H)), np.empty((B, H)), np.empty((B, H)), np.empty((B, H)))
    scale = sigmoid_scale("lstm")

    def loss():
        steps.lstm_step(pre * scale, h_prev, c_prev, p.w_hh_t, gates, c, tanh_c, h)
        return float((h * rh).sum() + (c * rc).sum())

    loss()
    k, factors = steps.lstm_factors(gates, c_prev, tanh_c)
    d_pre, dh_prev, dc_prev = np.empty((B, 4 * H)), np.empty((B, H)), rc.copy()
    steps.lstm_step_backward(rh, dc_prev, k, factors, gates[:, H:2 * H], p.w_hh, d_pre, dh_prev, dc_prev)
    assert_close(d_pre, numeric_grad(loss, pre))
    assert_close(dh_prev, numeric_grad(loss, h_prev))
    assert_close(dc_prev, numeric_grad(loss, c_prev))


def test_lstm_gates_are_pytorchs():
    """With zero weights on h, i, f, o = σ(pre) and g = tanh(pre) in packed order (i, f, o, g)."""
    pre = np.random.default_rng(2).standard_normal((B, 4 * H))
    gates, c, tanh_c, h = (np.empty((B, 4 * H)), np.empty((B, H)), np.empty((B, H)), np.empty((B, H)))
    c_prev = np.ones((B, H))
    steps.lstm_step(pre * sigmoid_scale("lstm"), np.zeros((B, H)), c_prev, np.zeros((H, 4 * H)), gates, c, tanh_c, h)
    sig = 1 / (1 + np.exp(-pre))
    np.testing.assert_allclose(gates[:, :3 * H], sig[:, :3 * H], rtol=1e-14)
    np.testing.assert_allclose(gates[:, 3 * H:], np.tanh(pre[:, 3 * H:]), rtol=1e-14)
    i, f, o, g = sig[:, :H], sig[:, H:2 * H], sig[:, 2 * H:3 * H], np.tanh(pre[:, 3 * H:])
    np.testing.assert_allclose(c, f * c_prev + i * g, rtol=1e-14)
    np.testing.assert_allclose(h, o * np.tanh(f * c_prev + i * g), rtol=1e-14)


def test_gru_step():
    rng = np.random.default_rng(3)
    p = packed_weights("gru", rng)
    pre = rng.standard_normal((B, 3 * H))
    h_prev, r = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    hn, gates, h, scratch = np.empty((B, H)), np.empty((B, 3 * H)), np.empty((B, H)), np.empty((B, 3 * H))
    scale = sigmoid_scale("gru")

    def loss():
        steps.gru_step(pre * scale, h_prev, p.w_hh_t, p.b_hn, hn, gates, h, scratch)
        return float((h * r).sum())

    loss()
    a, b = steps.gru_factors(gates, h_prev, hn)
    d_gh, d_n, dh_prev = np.empty((B, 3 * H)), np.empty((B, H)), np.empty((B, H))
    steps.gru_step_backward(r, a, b, gates[:, :H], p.w_hh, d_gh, d_n, dh_prev, np.empty((B, H)))
    d_pre = np.concatenate([d_gh[:, :2 * H], d_n], axis=1)  # input side: dz, dr, dn
    assert_close(d_pre, numeric_grad(loss, pre))
    assert_close(dh_prev, numeric_grad(loss, h_prev))
    # the hidden side of n: d/d(hn) where hn = W_hn h + b_hn, checked through b_hn
    assert_close(d_gh[:, 2 * H:].sum(axis=0), numeric_grad(loss, p.b_hn))


def test_pack_and_add_unpacked_are_inverse_row_orders():
    rng = np.random.default_rng(4)
    for mode in packing.GATES:
        rows = rng.standard_normal((packing.GATES[mode] * H, 2))
        p = packing.pack(mode, rows, rng.standard_normal((packing.GATES[mode] * H, H)))
        into = np.ones_like(rows)
        packing.add_unpacked(mode, into, p.w_ih)          # adds, in PyTorch's row order
        np.testing.assert_array_equal(into, rows + 1)
