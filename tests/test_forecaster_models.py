"""The forecaster on both engines: with the same weights in float64 the scratch engine's outputs, loss and every
parameter's gradient equal torch's (relative error < 1e-9) for each decoder × loss × cell, with and without
known-future covariates, 1-2 layers, on shapes drawn by hypothesis; finite differences; teacher forcing;
predict's shapes; clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.engines import build_engine
from rnnkit.scratch.forecaster import Forecaster
from gradcheck import numeric_grad

torch = pytest.importorskip("torch")
from rnnkit.torch.forecaster import Forecaster as TorchForecaster  # noqa: E402

TOL = 1e-9
DECODERS = ("direct", "autoregressive")
LOSSES = ("mse", "mae", "quantile", "gaussian")
CELLS = ("rnn_tanh", "lstm", "gru")
QUANTILES = (0.1, 0.5, 0.9)


def rel_err(a, b, floor=1e-300) -> float:
    """max |a - b| over max |b| (or `floor`, for sums that cancel to about 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor))


def make_pair(seed=0, **kwargs):
    """A float64 scratch forecaster and a torch one holding its weights."""
    scratch = Forecaster(**kwargs, dtype=np.float64, rng=seed)
    model = TorchForecaster(**kwargs).double()
    names = [n for n, _ in model.named_parameters()]
    assert names == [n for n, _ in scratch.named_parameters()]
    model.load_state_dict({k: torch.from_numpy(v) for k, v in scratch.state_dict().items()})
    return scratch, model


def make_batch(rng, kw, batch, window, with_y_prev=True):
    out = {"x": rng.normal(size=(batch, window, kw["input_size"])),
           "y": rng.normal(size=(batch, kw["horizon"], kw["output_size"]))}
    if kw.get("future_size"):
        out["future"] = rng.normal(size=(batch, kw["horizon"], kw["future_size"]))
    if with_y_prev:
        out["y_prev"] = np.concatenate([out["x"][:, -1:, :kw["output_size"]], out["y"][:, :-1]], axis=1)
    return out


shapes = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "window": st.integers(1, 4), "horizon": st.integers(1, 3),
    "output_size": st.integers(1, 2), "covariates": st.integers(0, 2), "future_size": st.sampled_from([0, 2]),
    "hidden_size": st.integers(1, 4), "num_layers": st.integers(1, 2), "seed": st.integers(0, 2**16)})


def kwargs_of(s, cell, decoder, loss, **extra):
    return dict(input_size=s["output_size"] + s["covariates"], output_size=s["output_size"], horizon=s["horizon"],
                future_size=s["future_size"], hidden_size=s["hidden_size"], num_layers=s["num_layers"], cell=cell,
                decoder=decoder, loss=loss, quantiles=QUANTILES, **extra)


def check_parity(scratch, model, batch):
    """Training loss and every gradient, eval loss and predict agree between the engines."""
    scratch.train().zero_grad()
    model.train().zero_grad()
    s_loss, _ = scratch.loss(batch)
    t_loss, _ = model.loss(batch)
    t_loss.backward()
    assert rel_err(t_loss.item(), s_loss) < TOL
    grads = dict(scratch.named_parameters())
    for name, p in model.named_parameters():   # mae, quantile: sums of ±1/n may cancel to 0 in one, 1e-17 in the other
        assert rel_err(grads[name].grad, p.grad.numpy(), floor=1e-6) < TOL, name
    assert max(np.abs(g.grad).max() for g in grads.values()) > 1e-3
    scratch.eval()
    model.eval()
    with torch.no_grad():
        t_sum, t_count, _ = model.eval_loss(batch)
        t_pred = model.predict(batch["x"], batch.get("future"))
    s_sum, s_count, _ = scratch.eval_loss(batch)
    assert s_count == t_count and rel_err(s_sum, t_sum) < TOL
    s_pred = scratch.predict(batch["x"], batch.get("future"))
    assert rel_err(s_pred, t_pred) < TOL
    return s_loss, s_pred


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("decoder", DECODERS)
@settings(max_examples=3, deadline=None)
@given(s=shapes)
def test_scratch_equals_torch(decoder, loss, cell, s):
    kw = kwargs_of(s, cell, decoder, loss)
    scratch, model = make_pair(s["seed"], **kw)
    batch = make_batch(np.random.default_rng(s["seed"]), kw, s["batch"], s["window"])
    _, pred = check_parity(scratch, model, batch)
    k = {"quantile": len(QUANTILES), "gaussian": 2}.get(loss, 1)
    assert pred.shape == (s["batch"], s["horizon"], s["output_size"], k)
    if loss == "gaussian":
        assert np.all(pred[..., 1] > 0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", ("mse", "quantile", "gaussian"))
@settings(max_examples=3, deadline=None)
@given(s=shapes, teacher_forcing=st.sampled_from([0.0, 0.5]))
def test_partial_teacher_forcing_equals_torch(loss, cell, s, teacher_forcing):
    """Fed-back forecasts: the same rows and steps on both engines (the mask is shared), no gradient through
    them on either (torch detaches them; the scratch backward never reaches them)."""
    kw = kwargs_of(s, cell, "autoregressive", loss, teacher_forcing=teacher_forcing)
    scratch, model = make_pair(s["seed"], **kw)
    rng = np.random.default_rng(s["seed"])
    batch = make_batch(rng, kw, s["batch"], s["window"], with_y_prev=False)   # y_prev built from x and y
    mask = rng.random((s["batch"], s["horizon"])) < teacher_forcing
    mask[:, 0] = True
    scratch.teacher_mask = lambda n: mask
    model.teacher_mask = lambda n: torch.from_numpy(mask)
    check_parity(scratch, model, batch)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("decoder", DECODERS)
def test_gradients_by_finite_differences(decoder, loss):
    """The scratch backward against central differences of the (teacher-forced) training loss; with partial
    teacher forcing the fed-back forecasts are held at their values (they are constants for the gradient)."""
    kw = dict(input_size=3, output_size=2, horizon=3, future_size=1, hidden_size=2, num_layers=2, cell="gru",
              decoder=decoder, loss=loss, quantiles=QUANTILES, teacher_forcing=0.5)
    model = Forecaster(**kw, dtype=np.float64, rng=4)
    rng = np.random.default_rng(5)
    batch = make_batch(rng, kw, 2, 4, with_y_prev=False)
    mask = np.array([[True, False, True], [True, False, False]])
    model.teacher_mask = lambda n: mask
    model.zero_grad()
    model.loss(batch)
    x, future = batch["x"], batch["future"]
    fed = model._teacher_inputs(batch, x, future) if decoder == "autoregressive" else None
    if fed is not None:   # the recursion fed its own forecasts where the mask is False
        truth = np.concatenate([x[:, -1:, :2], batch["y"][:, :-1]], axis=1)
        assert np.array_equal(fed[mask], truth[mask]) and not np.allclose(fed[~mask], truth[~mask])

    def loss():
        return model.loss_terms(model.forward(x, future, fed), batch["y"])[0]

    for name, p in model.named_parameters():
        numeric = numeric_grad(loss, p.data)
        np.testing.assert_allclose(p.grad, numeric, rtol=1e-6, atol=1e-9, err_msg=name)  # atol: rounding / eps
    assert max(np.abs(p.grad).max() for p in model.parameters()) > 1e-2


@pytest.mark.parametrize("loss", LOSSES)
def test_no_teacher_forcing_trains_on_the_forecast(loss):
    """teacher_forcing=0 (no dropout): the training forward is predict's recursion, step for step."""
    kw = dict(input_size=2, output_size=1, horizon=4, future_size=0, hidden_size=3, cell="lstm",
              decoder="autoregressive", loss=loss, quantiles=QUANTILES, teacher_forcing=0.0)
    model = Forecaster(**kw, dtype=np.float64, rng=0)
    batch = make_batch(np.random.default_rng(1), kw, 3, 5, with_y_prev=False)
    train_loss, _ = model.loss(batch)
    pred = model.eval().forward(batch["x"])
    assert train_loss == pytest.approx(model.loss_terms(pred, batch["y"])[0], rel=1e-12)
    total, count, _ = model.eval_loss(batch)
    assert total / count == pytest.approx(train_loss, rel=1e-12)
    assert count == 3 * 4 * (len(QUANTILES) if loss == "quantile" else 1)


def test_eval_loss_differs_from_teacher_forced_loss():
    """eval_loss scores the free-running forecast, not the teacher-forced one."""
    kw = dict(input_size=1, output_size=1, horizon=5, hidden_size=4, cell="gru", decoder="autoregressive")
    model = Forecaster(**kw, dtype=np.float64, rng=0)
    batch = make_batch(np.random.default_rng(2), kw, 4, 6)
    forced, _ = model.loss(batch)
    total, count, _ = model.eval().eval_loss(batch)
    assert count == 20 and abs(total / count - forced) > 1e-6


def test_state_dicts_move_between_engines_through_build_engine():
    kw = dict(input_size=3, output_size=1, horizon=6, future_size=2, hidden_size=8, num_layers=2, cell="lstm",
              decoder="autoregressive", loss="gaussian")
    scratch = build_engine("scratch", "Forecaster", kw, dtype="float64", seed=3)
    other = build_engine("torch", "Forecaster", kw, dtype="float64", seed=3, device="cpu")
    assert list(scratch.weights()) == list(other.weights())
    other.load_weights(scratch.weights())
    batch = make_batch(np.random.default_rng(0), kw, 5, 7)
    a, b = scratch.predict(batch["x"], batch["future"]), other.predict(batch["x"], batch["future"])
    assert a.shape == (5, 6, 1, 2) and rel_err(a, b) < TOL
    for engine in (scratch, other):      # float32 by default, and a step runs
        loss, norm, carry = build_engine(engine.name, "Forecaster", kw, seed=1).train_step(batch)
        assert np.isfinite(loss) and norm > 0 and carry is None


def test_dropout_only_in_training():
    kw = dict(input_size=2, output_size=1, horizon=3, hidden_size=16, num_layers=2, dropout=0.5, cell="gru")
    model = Forecaster(**kw, dtype=np.float64, rng=0)
    batch = make_batch(np.random.default_rng(0), kw, 4, 5)
    a, b = model.loss(batch)[0], model.loss(batch)[0]
    assert a != b                                               # fresh masks each step
    model.eval()
    np.testing.assert_array_equal(model.predict(batch["x"]), model.predict(batch["x"]))


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_bad_settings_and_batches_are_clear_errors(engine):
    def build(**kw):
        return build_engine(engine, "Forecaster", {"input_size": 2, "horizon": 3, **kw}, device="cpu")

    with pytest.raises(ValueError, match="unknown decoder"):
        build(decoder="seq2seq")
    with pytest.raises(ValueError, match="unknown forecast loss"):
        build(loss="huber")
    with pytest.raises(ValueError, match="strictly increasing"):
        build(loss="quantile", quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="strictly increasing"):
        build(loss="quantile", quantiles=(0.0, 0.5))
    with pytest.raises(ValueError, match="teacher_forcing"):
        build(teacher_forcing=1.5)
    with pytest.raises(ValueError, match="teacher_forcing"):
        build(teacher_forcing=None)
    with pytest.raises(ValueError, match="quantiles must be a list"):
        build(loss="quantile", quantiles="0.5")
    with pytest.raises(ValueError, match="cannot be smaller than output_size"):
        build(output_size=3)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        build(horizon=0)
    rng = np.random.default_rng(0)
    good = {"x": rng.normal(size=(2, 4, 2)), "y": rng.normal(size=(2, 3, 1))}
    e = build()
    with pytest.raises(ValueError, match=r"x must be \(batch, window, input_size=2\)"):
        e.train_step({**good, "x": good["x"][..., :1]})
    with pytest.raises(ValueError, match=r"y must be \(batch, horizon, 1\)"):
        e.train_step({**good, "y": good["y"][:, :2]})
    with pytest.raises(ValueError, match="needs 'y'"):
        e.eval_loss({"x": good["x"]})
    with pytest.raises(ValueError, match="no known-future covariates"):
        e.predict(good["x"], rng.normal(size=(2, 3, 1)))
    with pytest.raises(ValueError, match="needs 'future'"):
        build(future_size=1).predict(good["x"])
