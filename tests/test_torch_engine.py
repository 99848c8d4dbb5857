"""The torch engine against the scratch engine: the same weights give the same losses, gradients and
updates (float64, relative error < 1e-9); weights, optimizer state, RNG state and carries survive a round
trip; errors are clear."""
import importlib
import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnkit.checkpoint import flatten_state, unflatten_state  # noqa: E402
from rnnkit.engines import carry_arrays, carry_from_arrays  # noqa: E402
from rnnkit.scratch.engine import ScratchEngine  # noqa: E402
from rnnkit.scratch.models import LanguageModel as ScratchLM  # noqa: E402
from rnnkit.torch import LanguageModel, TorchEngine, select_device  # noqa: E402

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
TOL = 1e-9
VOCAB, DIM, BATCH, TIME, LAYERS = 11, 6, 3, 5, 2


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    return {"inputs": rng.integers(0, VOCAB, (BATCH, TIME)), "targets": rng.integers(0, VOCAB, (BATCH, TIME))}


def make_carry(cell, seed=1):
    rng = np.random.default_rng(seed)
    h = rng.uniform(-0.5, 0.5, (LAYERS, BATCH, DIM))
    return (h, rng.uniform(-0.5, 0.5, (LAYERS, BATCH, DIM))) if cell == "lstm" else h


def make_pair(cell="lstm", tie=False, dropout=0.0, dtype=np.float64, seed=0):
    """A scratch model and a torch model on the CPU holding the scratch model's weights."""
    scratch = ScratchLM(VOCAB, DIM, DIM, LAYERS, cell, dropout, tie, dtype=dtype, rng=seed)
    model = LanguageModel(VOCAB, DIM, DIM, LAYERS, cell, dropout, tie, seed=seed)
    model = model.double() if dtype == np.float64 else model
    TorchEngine(model, device="cpu").load_weights(scratch.state_dict())
    return scratch, model


def flat(carry):
    return carry if isinstance(carry, tuple) else (carry,)


@pytest.mark.parametrize("with_carry", [False, True])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_loss_and_gradients_match_scratch(cell, tie, with_carry):
    scratch, model = make_pair(cell, tie)
    batch, carry = make_batch(), make_carry(cell) if with_carry else None

    sd, td = scratch.state_dict(), TorchEngine(model, device="cpu").weights()
    assert list(sd) == list(td)
    assert all(sd[k].shape == td[k].shape and sd[k].dtype == td[k].dtype for k in sd)

    scratch.zero_grad()
    s_loss, s_state = scratch.loss(batch, carry)
    loss, state = model.loss(batch, carry)
    loss.backward()
    assert rel_err(loss.item(), s_loss) < TOL
    for a, b in zip(flat(state), flat(s_state), strict=True):
        assert not a.requires_grad
        assert rel_err(a.numpy(), b) < TOL
    s_params = dict(scratch.named_parameters(remove_duplicate=False))
    t_params = dict(model.named_parameters(remove_duplicate=False))
    assert list(s_params) == list(t_params)
    for name, p in t_params.items():
        assert rel_err(p.grad.numpy(), s_params[name].grad) < TOL, name

    s_sum, s_count, _ = ScratchEngine(scratch).eval_loss(batch, carry)
    t_sum, t_count, t_state = TorchEngine(model, device="cpu").eval_loss(batch, carry)
    assert t_count == s_count == BATCH * TIME and rel_err(t_sum, s_sum) < TOL
    assert not model.training


def test_float32_matches_scratch_loosely():
    scratch, model = make_pair("lstm", dtype=np.float32)
    batch = make_batch()
    scratch.zero_grad()
    s_loss, _ = scratch.loss(batch)
    loss, _ = model.loss(batch)
    loss.backward()
    assert loss.dtype == torch.float32 and rel_err(loss.item(), s_loss) < 1e-5
    s_params = dict(scratch.named_parameters())
    for name, p in model.named_parameters():
        assert rel_err(p.grad.numpy(), s_params[name].grad) < 1e-4, name


@pytest.mark.parametrize("cell, optimizer, kwargs", [
    ("lstm", "adam", {}),
    ("gru", "adam", {}),
    ("rnn_tanh", "adamw", {"weight_decay": 0.1}),
    ("lstm", "sgd", {"momentum": 0.9, "weight_decay": 0.01}),
])
def test_training_matches_scratch(cell, optimizer, kwargs):
    scratch, model = make_pair(cell, tie=True)
    # clip=0.1 rather than 1.0: this small model's gradient norms are about 0.2, so clipping is in play
    s_engine = ScratchEngine(scratch, optimizer, lr=0.05, clip=0.1, **kwargs)
    t_engine = TorchEngine(model, optimizer, lr=0.05, clip=0.1, device="cpu", **kwargs)
    s_carry = t_carry = None
    norms = []
    for step in range(5):
        batch = make_batch(step)
        s_loss, s_norm, s_carry = s_engine.train_step(batch, s_carry)
        t_loss, t_norm, t_carry = t_engine.train_step(batch, t_carry)
        assert isinstance(t_loss, float) and isinstance(t_norm, float)
        assert rel_err(t_loss, s_loss) < TOL and rel_err(t_norm, s_norm) < TOL
        norms.append(s_norm)
    assert min(norms) > 0.1
    for a, b in zip(flat(t_engine.to_numpy(t_carry)), flat(s_carry), strict=True):
        assert rel_err(a, b) < TOL
    s_weights, t_weights = s_engine.weights(), t_engine.weights()
    for name in s_weights:
        assert rel_err(t_weights[name], s_weights[name]) < TOL, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_round_trip_is_bit_identical(dtype):
    scratch, model = make_pair("gru", tie=True, dtype=dtype)
    engine = TorchEngine(model, device="cpu")
    weights = engine.weights()
    back = ScratchLM(VOCAB, DIM, DIM, LAYERS, "gru", 0.0, True, dtype=dtype, rng=99)
    back.load_state_dict(weights)
    for name, value in scratch.state_dict().items():
        assert weights[name].dtype == value.dtype and weights[name].flags.c_contiguous
        np.testing.assert_array_equal(back.state_dict()[name], value)
    weights["decoder.bias"][:] = 7.0  # a copy, not a view of the model
    assert not (model.decoder.bias == 7.0).any()


def test_load_weights_errors():
    scratch, model = make_pair("lstm")
    engine = TorchEngine(model, device="cpu")
    weights = scratch.state_dict()
    with pytest.raises(ValueError, match=r"missing \['rnn.bias_hh_l1'\]"):
        engine.load_weights({k: v for k, v in weights.items() if k != "rnn.bias_hh_l1"})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        engine.load_weights({**weights, "extra": np.zeros(3)})
    with pytest.raises(ValueError, match=r"decoder.bias: \(5,\) != \(11,\)"):
        engine.load_weights({**weights, "decoder.bias": np.zeros(5)})


def test_tied_weights_must_agree():
    """A checkpoint that gives the two names of a tied matrix different values is refused by both engines."""
    scratch, model = make_pair("gru", tie=True)
    weights = scratch.state_dict()
    forged = {**weights, "decoder.weight": weights["embedding.weight"] + 1}
    with pytest.raises(ValueError, match="embedding.weight and decoder.weight are one tied parameter"):
        TorchEngine(model, device="cpu").load_weights(forged)
    with pytest.raises(ValueError, match="embedding.weight and decoder.weight are one tied parameter"):
        scratch.load_state_dict(forged)
    np.testing.assert_array_equal(scratch.state_dict()["decoder.weight"], weights["decoder.weight"])
    TorchEngine(model, device="cpu").load_weights(weights)  # agreeing values load


def walk(obj):
    yield obj
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for v in obj:
            yield from walk(v)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_continues_identically(optimizer):
    """2 steps, save everything through the checkpoint's flattening and JSON, load into a fresh engine,
    2 more steps == 4 steps straight (bit for bit), dropout on."""
    def engine(seed):
        return TorchEngine(LanguageModel(VOCAB, DIM, DIM, LAYERS, "lstm", dropout=0.3, seed=seed).double(),
                           optimizer, lr=0.05, clip=1.0, momentum=0.9, device="cpu")

    torch.manual_seed(1)
    straight, carry = engine(0), None
    for step in range(4):
        _, _, carry = straight.train_step(make_batch(step), carry)

    torch.manual_seed(1)
    first, carry = engine(0), None
    for step in range(2):
        _, _, carry = first.train_step(make_batch(step), carry)
    saved = {"optimizer": first.optimizer_state(), "rng": first.rng_state(),
             "carry": carry_arrays(first.to_numpy(carry))}
    assert not any(isinstance(x, torch.Tensor) for x in walk(saved))
    arrays, skeleton = flatten_state(saved)
    saved = unflatten_state(arrays, json.loads(json.dumps(skeleton)))
    weights = first.weights()
    torch.manual_seed(123)  # disturb the global generator: set_rng_state must restore it

    resumed = engine(5)
    resumed.load_weights(weights)
    resumed.load_optimizer_state(saved["optimizer"])
    resumed.set_rng_state(saved["rng"])
    carry = resumed.from_numpy(carry_from_arrays(saved["carry"]))
    for step in range(2, 4):
        _, _, carry = resumed.train_step(make_batch(step), carry)
    for name, value in straight.weights().items():
        np.testing.assert_array_equal(resumed.weights()[name], value, err_msg=name)
    np.testing.assert_array_equal(
        state_arrays(resumed.optimizer_state()), state_arrays(straight.optimizer_state()))


def state_arrays(state):
    """The optimizer state's arrays concatenated, to compare two states in one go."""
    return np.concatenate([np.ravel(x).astype(np.float64) for x in walk(state) if isinstance(x, np.ndarray)])


def test_rng_state_repeats_dropout_masks():
    engine = TorchEngine(LanguageModel(VOCAB, DIM, DIM, 1, "gru", dropout=0.5, seed=0), device="cpu")
    tokens = torch.as_tensor(make_batch()["inputs"])
    engine.model.train()
    state = engine.rng_state()
    assert state["torch"].dtype == np.uint8
    first = engine.model(tokens)[0]
    second = engine.model(tokens)[0]
    engine.set_rng_state(state)
    again = engine.model(tokens)[0]
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_seed_makes_weights_and_leaves_global_generator():
    before = torch.get_rng_state()
    a, b = LanguageModel(VOCAB, 4, 4, seed=3), LanguageModel(VOCAB, 4, 4, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert a.embedding.weight.abs().max() <= 0.1 and not a.decoder.bias.any()
    assert a.rnn.weight_hh_l0.abs().max() <= 0.5  # 1/sqrt(4)


def test_non_finite_loss_skips_the_update():
    scratch, model = make_pair("lstm")
    engine = TorchEngine(model, lr=0.1, device="cpu")
    weights = scratch.state_dict()
    weights["decoder.bias"][0] = np.nan
    engine.load_weights(weights)
    loss, norm, _ = engine.train_step(make_batch())
    assert np.isnan(loss) and np.isnan(norm)
    for name, value in engine.weights().items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)


def test_lr_and_carry_conversion():
    scratch, model = make_pair("lstm")
    engine = TorchEngine(model, "sgd", lr=0.1, device="cpu")
    engine.lr = 0.25
    assert engine.lr == 0.25 and all(g["lr"] == 0.25 for g in engine.optimizer.param_groups)
    carry = make_carry("lstm")
    tensors = engine.from_numpy(carry)
    assert isinstance(tensors, tuple) and tensors[0].dtype == torch.float64
    back = engine.to_numpy(tensors)
    assert all(np.array_equal(a, b) for a, b in zip(back, carry))
    assert engine.to_numpy(None) is None and engine.from_numpy(None) is None


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            select_device("cuda")


def test_unknown_cell_and_optimizer():
    with pytest.raises(ValueError, match="unknown cell"):
        LanguageModel(VOCAB, cell="transformer")
    with pytest.raises(ValueError, match="tie_weights"):
        LanguageModel(VOCAB, 4, 8, tie_weights=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        TorchEngine(LanguageModel(VOCAB, 4, 4), "lion", device="cpu")


def test_import_without_torch_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "rnnkit.torch" or m.startswith("rnnkit.torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"rnnkit\[torch\]"):
        importlib.import_module("rnnkit.torch")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_scratch_and_resumes():
    scratch, model = make_pair("lstm", tie=True)
    s_engine = ScratchEngine(scratch, "adam", lr=0.05, clip=1.0)
    t_engine = TorchEngine(model, "adam", lr=0.05, clip=1.0, device="cuda")
    assert next(model.parameters()).is_cuda and t_engine.deferred  # the loss stays on the GPU until read
    s_carry = t_carry = None
    for step in range(3):
        s_loss, _, s_carry = s_engine.train_step(make_batch(step), s_carry)
        t_loss, _, t_carry = t_engine.train_step(make_batch(step), t_carry)
        assert rel_err(float(t_loss), s_loss) < 1e-7
    assert t_engine.settle() is None
    for name, value in s_engine.weights().items():
        assert rel_err(t_engine.weights()[name], value) < 1e-7, name
    s_sum, _, _ = s_engine.eval_loss(make_batch(9), s_carry)
    t_sum, _, _ = t_engine.eval_loss(make_batch(9), t_engine.from_numpy(t_engine.to_numpy(t_carry)))
    assert rel_err(t_sum, s_sum) < 1e-7

    dropout = TorchEngine(LanguageModel(VOCAB, DIM, DIM, LAYERS, "lstm", dropout=0.5, seed=0), device="cuda")
    state = dropout.rng_state()
    assert "cuda" in state
    tokens = torch.as_tensor(make_batch()["inputs"], device="cuda")
    dropout.model.train()
    first = dropout.model(tokens)[0]
    dropout.set_rng_state(state)
    assert torch.equal(first, dropout.model(tokens)[0])
    opt = t_engine.optimizer_state()
    t_engine.load_optimizer_state(opt)
    assert t_engine.optimizer.state[next(model.parameters())]["exp_avg"].is_cuda


def test_one_step_predictions_run_without_onednn_and_agree(monkeypatch):
    """Generation's one-token calls skip oneDNN (which reorders the LSTM weights on every call); the
    numbers are the scratch engine's either way, and the flag is put back."""
    scratch, model = make_pair("lstm", dtype=np.float32)
    engine = TorchEngine(model, device="cpu")
    seen = []
    real = model.predict
    monkeypatch.setattr(model, "predict", lambda *a: seen.append(torch.backends.mkldnn.enabled) or real(*a))
    assert torch.backends.mkldnn.enabled
    tokens = np.array([[3], [5], [7]])
    logits, state = engine.predict(tokens, None)
    engine.predict(make_batch()["inputs"], None)             # five steps: oneDNN as usual
    assert seen == [False, True] and torch.backends.mkldnn.enabled
    expected, _ = scratch.predict(tokens, None)
    assert rel_err(logits, expected) < 1e-5
    step, _ = engine.predict(tokens, state)                  # a carried state, as in generation
    assert step.shape == (3, 1, VOCAB)
