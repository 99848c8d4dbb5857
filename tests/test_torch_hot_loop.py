"""The torch engine's training loop as a GPU wants it, checked on the CPU: no host read of the loss per step
(StepGuard, deferred), the trainer's logged values unchanged, pinned non-blocking batch copies, cuDNN's
modules and kernel flags."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnkit.engines import build_engine  # noqa: E402
from rnnkit.tasks import lm  # noqa: E402
from rnnkit.torch import models  # noqa: E402
from rnnkit.torch.device import batch_to_device, cuda_kernels  # noqa: E402
from rnnkit.torch.engine import TorchEngine  # noqa: E402
from rnnkit.train import TrainConfig, TrainingError, _read_steps, train  # noqa: E402

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"
KWARGS = dict(embedding_dim=16, hidden_size=16, num_layers=2, cell="lstm", dropout=0.1, tie_weights=False)
STEPS, LOG_EVERY, CLIP, LR = 12, 4, 0.5, 1e-2


@pytest.fixture
def lm_task(tmp_path):
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * 30)
    corpus = lm.load_corpus(data=str(path), level="char")
    kwargs = dict(KWARGS, vocab_size=len(corpus.vocab))
    return lm.LMTask(corpus, kwargs, 4, 10, {}), kwargs


def _config():
    return TrainConfig(engine="torch", device="cpu", max_steps=STEPS, log_every=LOG_EVERY, clip=CLIP, lr=LR,
                       epochs=5, progress=False, verbose=False, plot=False)


def _logged(run):
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def _replay(task, kwargs, fused: bool):
    """The steps as a plain torch loop reads them (.item() every step): what the trainer logged before."""
    engine = build_engine("torch", "LanguageModel", kwargs, lr=LR, clip=CLIP, seed=1, device="cpu")
    model = engine.model
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **({"fused": True} if fused else {}))
    carry, out = None, []
    for _, batch in zip(range(STEPS), task.batches(0, 0)):
        optimizer.zero_grad()
        loss, carry = model.loss(batch, carry)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), CLIP)
        optimizer.step()
        out.append((loss.item(), norm.item()))
    return out


def test_logged_values_at_fp32_are_those_of_a_plain_loop(lm_task, tmp_path):
    """On the CPU the engine reads each step (not deferred): metrics.jsonl's loss and grad_norm at the log
    steps are exactly the plain loop's, as before the step guard, autocast and pinned copies came in."""
    task, kwargs = lm_task
    engine = build_engine("torch", "LanguageModel", kwargs, lr=LR, clip=CLIP, seed=1, device="cpu")
    assert engine.deferred is False
    train(task, engine, _config(), tmp_path / "run")
    plain = _replay(task, kwargs, fused=False)
    logged = _logged(tmp_path / "run")
    assert [r["step"] for r in logged] == [1, 4, 8, 12]
    assert [(r["loss"], r["grad_norm"]) for r in logged] == [plain[r["step"] - 1] for r in logged]


# every way a tensor's value reaches Python
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy")


def _refuse(*args, **kwargs):
    raise AssertionError("a host read of a tensor in the hot loop")


def test_deferred_steps_are_read_only_at_the_log_steps(lm_task, tmp_path, monkeypatch):
    """The GPU's way, on the CPU (deferred=True, fused Adam): no train_step reads the device; the trainer
    settles at the log steps only, and logs exactly what a plain loop with the fused optimizer computes."""
    task, kwargs = lm_task
    torch.manual_seed(1)
    model = models.LanguageModel(**kwargs, seed=None)
    engine = TorchEngine(model, "adam", lr=LR, clip=CLIP, device="cpu", deferred=True)
    steps, settled = [], []
    real_step, real_settle = engine.train_step, engine.settle

    def guarded_step(batch, carry=None):
        with monkeypatch.context() as m:
            for name in HOST_READS:
                m.setattr(torch.Tensor, name, _refuse)
            out = real_step(batch, carry)
        steps.append(out)
        assert isinstance(out[0], torch.Tensor) and isinstance(out[1], torch.Tensor)
        return out

    def counted_settle():
        settled.append(len(steps))
        return real_settle()

    engine.train_step, engine.settle = guarded_step, counted_settle
    train(task, engine, _config(), tmp_path / "run")
    assert settled == [1, 4, 8, 12]
    plain = _replay(task, kwargs, fused=True)
    logged = _logged(tmp_path / "run")
    assert [(r["loss"], r["grad_norm"]) for r in logged] == [plain[r["step"] - 1] for r in logged]
    unfused = _replay(task, kwargs, fused=False)   # the same maths, rounded in another order
    np.testing.assert_allclose(np.array(plain), np.array(unfused), rtol=1e-4)


class Toy(torch.nn.Module):
    """loss = Σ w ⊙ x: a batch holding inf makes the loss and the gradient infinite."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def loss(self, batch, carry=None):
        return (self.w * torch.as_tensor(batch["x"], dtype=torch.float32)).sum(), None


@pytest.mark.parametrize("deferred", [False, True])
def test_a_non_finite_step_halts_the_updates_until_it_is_read(deferred, monkeypatch):
    engine = TorchEngine(Toy(), "adam", lr=0.1, device="cpu", deferred=deferred)
    xs = [[1.0, 2.0, 3.0], [1.0, -1.0, 0.5], [1.0, np.inf, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    weights = []
    for x in xs:
        with monkeypatch.context() as m:
            if deferred:
                for name in HOST_READS:
                    m.setattr(torch.Tensor, name, _refuse)
            engine.train_step({"x": np.array(x)})
        weights.append(engine.weights()["w"])
    assert not np.array_equal(weights[0], weights[1])            # the good steps updated
    for later in weights[2:]:
        np.testing.assert_array_equal(later, weights[1])          # the bad one and those after it did not
    assert int(engine.optimizer.state_dict()["state"][0]["step"]) == 2
    bad = engine.settle()
    assert bad["steps_ago"] == 2 and bad["loss"] == np.inf and bad["norm"] == np.inf
    assert engine.settle() is None
    engine.train_step({"x": np.array([1.0, 1.0, 1.0])})           # read: the updates go on
    assert not np.array_equal(engine.weights()["w"], weights[1]) and engine.settle() is None


def test_the_trainer_names_the_first_bad_step_of_those_read_together(tmp_path):
    class Engine:
        def settle(self):
            return {"steps_ago": 2, "loss": float("nan"), "norm": 3.0}

    closed = []
    with pytest.raises(TrainingError, match=r"the loss became nan \(gradient norm 3.0\) at step 8; the update "
                                            r"\(nor those of the 2 steps after it\) was not applied"):
        _read_steps(Engine(), None, None, 10, tmp_path, lambda: closed.append(1))
    assert closed == [1]
    with pytest.raises(TrainingError, match="at step 10; the update was not applied"):
        _read_steps(object(), float("inf"), 1.0, 10, tmp_path, lambda: None)
    assert _read_steps(object(), 2.5, 1.0, 10, tmp_path, lambda: None) == (2.5, 1.0)


def test_batches_go_up_pinned_and_non_blocking_only_on_cuda(monkeypatch):
    ids = np.arange(6, dtype=np.uint16).reshape(2, 3)
    ids.flags.writeable = False  # as a memory-mapped corpus gives them
    batch = {"inputs": ids, "targets": np.arange(6).reshape(2, 3) + 1, "lengths": np.array([3, 2])}
    assert batch_to_device(batch, torch.device("cpu"), ("inputs", "targets")) is batch  # the CPU: untouched
    pinned, copies = [], []
    real_to = torch.Tensor.to

    def pin_memory(self):
        pinned.append(self.shape)
        return self

    def to(self, *args, **kwargs):
        copies.append(kwargs.get("non_blocking"))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    moved = batch_to_device(batch, torch.device("cpu"), ("inputs", "targets"), pin=True)  # as on CUDA
    assert pinned == [(2, 3), (2, 3)] and copies == [True, True]
    assert isinstance(moved["inputs"], torch.Tensor) and moved["lengths"] is batch["lengths"]
    assert moved["inputs"].dtype == torch.long and moved["inputs"].tolist() == [[0, 1, 2], [3, 4, 5]]
    np.testing.assert_array_equal(moved["targets"].numpy(), batch["targets"])
    assert models.LanguageModel.device_inputs == ("inputs", "targets")
    assert models.TextClassifier.device_inputs == ("inputs", "labels")  # lengths stay on the host for packing


def test_every_model_runs_torch_nn_recurrent_layers_flattened_for_cudnn(monkeypatch):
    built = [models.LanguageModel(vocab_size=7, embedding_dim=4, hidden_size=4, num_layers=2),
             models.TextClassifier(vocab_size=7, num_classes=2, embedding_dim=4, hidden_size=4),
             models.Seq2Seq(source_vocab=7, target_vocab=7, embedding_dim=4, hidden_size=4),
             models.Forecaster(input_size=2, hidden_size=4, decoder="autoregressive")]
    for model in built:
        layers = [m for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
        assert layers and not [m for m in model.modules() if isinstance(m, torch.nn.modules.rnn.RNNCellBase)]
    flattened = []
    monkeypatch.setattr(torch.nn.RNNBase, "flatten_parameters", lambda self: flattened.append(type(self).__name__))
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: self)  # a move that flattens nothing
    TorchEngine(built[2], device="cpu")
    assert flattened == ["LSTM", "LSTM"]  # the engine flattens the encoder and the decoder itself


def test_cuda_kernel_flags_follow_the_determinism_setting(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    was, warn_only = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        assert cuda_kernels(True) == {"cudnn.benchmark": False, "cudnn.deterministic": True,
                                      "deterministic_algorithms": True}
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        cuda_kernels(False)
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
