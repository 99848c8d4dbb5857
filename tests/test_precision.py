"""--precision fp32|bf16|fp16 on the torch engine (autocast, fp16's gradient scaler, float32 master weights and
checkpoints), and the refusals: the scratch engine, float64 weights. On the CPU (bf16 and fp16 autocast both
run there in torch 2.13; the GPU runs are benchmarks/gpu_lm.py's)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnkit.checkpoint import load_checkpoint  # noqa: E402
from rnnkit.cli import main  # noqa: E402
from rnnkit.engines import build_engine  # noqa: E402
from rnnkit.tasks import lm  # noqa: E402
from rnnkit.train import TrainConfig  # noqa: E402

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"
TINY = dict(level="char", hidden=24, layers=2, dropout=0.0, batch_size=4, bptt=12, lr=1e-2, progress=False,
            plot=False, verbose=False, engine="torch", device="cpu", seed=3, log_every=1)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * 12)
    return path


def _logged(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def test_the_scratch_engine_refuses_mixed_precision_in_one_line(corpus, tmp_path, capsys):
    with pytest.raises(ValueError, match="scratch engine computes in --dtype"):
        TrainConfig(engine="scratch", precision="bf16")
    with pytest.raises(ValueError, match="needs --dtype float32, got float64"):
        TrainConfig(engine="torch", precision="fp16", dtype="float64")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        TrainConfig(engine="torch", precision="fp8")
    with pytest.raises(ValueError, match="scratch engine"):
        build_engine("scratch", "LanguageModel", {"vocab_size": 5}, precision="fp16")
    code = main(["train", "lm", "--data", str(corpus), "--engine", "scratch", "--precision", "bf16",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --precision bf16 is the torch engine's") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_a_bf16_run_saves_float32_weights_that_serve_on_numpy_alone(corpus, tmp_path):
    """Trained in bf16 on the CPU for a few steps; the checkpoint holds float32 weights, and the scratch engine
    (NumPy) predicts what the torch engine predicts in fp32 from it, to float32 rounding."""
    result = lm.train_lm(data=str(corpus), out=str(tmp_path / "bf16"), precision="bf16", max_steps=6, **TINY)
    ckpt = load_checkpoint(result.last)
    assert ckpt.config["training"]["precision"] == "bf16" and ckpt.config["dtype"] == "float32"
    assert {w.dtype for w in ckpt.weights.values()} == {np.dtype(np.float32)}
    fp32 = lm.train_lm(data=str(corpus), out=str(tmp_path / "fp32"), precision="fp32", max_steps=6, **TINY)
    bf16_losses = [r["loss"] for r in _logged(result.run_dir)]
    fp32_losses = [r["loss"] for r in _logged(fp32.run_dir)]
    # the same start, computed in bfloat16: close to fp32's loss, not equal to it (autocast was on)
    assert bf16_losses[0] != fp32_losses[0] and abs(bf16_losses[0] - fp32_losses[0]) < 0.05
    assert bf16_losses[-1] < bf16_losses[0] - 0.1  # and it learned
    scratch = lm.load_lm(result.last, engine="scratch")
    torch_fp32 = lm.load_lm(result.last, engine="torch", device="cpu")
    tokens = np.array([[1, 4, 2, 7, 3, 5, 6, 2, 1, 0]])
    s_logits, _ = scratch.engine.predict(tokens)
    t_logits, _ = torch_fp32.engine.predict(tokens)
    assert s_logits.dtype == np.float32
    np.testing.assert_allclose(s_logits, t_logits, rtol=1e-4, atol=1e-5)  # float32 rounding over 2 layers


def test_fp16_scales_the_loss_and_skips_an_overflowed_step_without_stopping():
    """GradScaler on the CPU: the first step at scale 2^16; a step whose scaled gradients overflow is skipped
    (weights and Adam's step count as they were), the scale halves, and it is not a fatal step."""
    engine = build_engine("torch", "LanguageModel", dict(vocab_size=11, embedding_dim=8, hidden_size=8,
                                                          num_layers=1), precision="fp16", device="cpu", seed=0)
    assert engine.scaler is not None and engine.scaler.get_scale() == 2.0 ** 16
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, 11, (3, 5)), "targets": rng.integers(0, 11, (3, 5))}
    loss, norm, _ = engine.train_step(batch)
    assert np.isfinite(loss) and np.isfinite(norm) and engine.settle() is None
    assert {w.dtype for w in engine.weights().values()} == {np.dtype(np.float32)}
    before = engine.weights()
    engine.scaler.update(new_scale=3e38)           # the scaled loss overflows float16 (and float32): inf grads
    loss, norm, _ = engine.train_step(batch)
    assert np.isfinite(loss) and not np.isfinite(norm)
    assert engine.settle() is None                 # not fatal: the scaler's business
    for name, w in engine.weights().items():
        np.testing.assert_array_equal(w, before[name])
    assert engine.scaler.get_scale() == pytest.approx(1.5e38)
    assert int(engine.optimizer.state_dict()["state"][0]["step"]) == 1


def test_fp16_trains_through_the_trainer_on_the_cpu(corpus, tmp_path):
    result = lm.train_lm(data=str(corpus), out=str(tmp_path / "fp16"), precision="fp16", max_steps=8, **TINY)
    losses = [r["loss"] for r in _logged(result.run_dir)]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.1
    assert {w.dtype for w in load_checkpoint(result.last).weights.values()} == {np.dtype(np.float32)}


def _fp16_engine():
    engine = build_engine("torch", "LanguageModel", dict(vocab_size=11, embedding_dim=8, hidden_size=8, num_layers=2,
                                                         dropout=0.2), precision="fp16", device="cpu", seed=0)
    engine.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)  # doubles after 3 good steps
    return engine


def test_an_fp16_run_resumes_exactly_with_its_gradient_scale():
    """The scaler's scale and its count of good steps go into the optimizer state: 4 steps equal 2 + save + load
    + 2, the scale doubling at step 3 in both."""
    rng = np.random.default_rng(1)
    batches = [{"inputs": rng.integers(0, 11, (3, 5)), "targets": rng.integers(0, 11, (3, 5))} for _ in range(4)]
    straight = _fp16_engine()
    carry = None
    for batch in batches:
        _, _, carry = straight.train_step(batch, carry)
    first = _fp16_engine()
    carry = None
    for batch in batches[:2]:
        _, _, carry = first.train_step(batch, carry)
    saved = (first.weights(), first.optimizer_state(), first.rng_state(), first.to_numpy(carry))
    assert saved[1]["grad_scaler"]["scale"] == 1024.0 and saved[1]["grad_scaler"]["_growth_tracker"] == 2
    second = _fp16_engine()
    second.scaler = torch.amp.GradScaler("cpu", growth_interval=3)  # a fresh scaler starts at 2^16
    second.load_weights(saved[0])
    second.load_optimizer_state(saved[1])
    second.set_rng_state(saved[2])
    assert second.scaler.get_scale() == 1024.0
    carry = second.from_numpy(saved[3])
    for batch in batches[2:]:
        _, _, carry = second.train_step(batch, carry)
    for name, w in straight.weights().items():
        np.testing.assert_array_equal(second.weights()[name], w)
    assert second.scaler.state_dict() == straight.scaler.state_dict()
    assert straight.scaler.get_scale() == 2048.0


def test_a_low_precision_carry_is_saved_as_float32():
    engine = _fp16_engine()
    h = torch.tensor([[0.1, -2.5, 3.0]], dtype=torch.bfloat16)
    out = engine.to_numpy((h, h.half()))
    assert [a.dtype for a in out] == [np.dtype(np.float32)] * 2
    np.testing.assert_array_equal(out[0], h.float().numpy())


def test_a_bf16_run_resumes_in_fp32(corpus, tmp_path):
    """The precision may change on resume (a GPU's bf16 run continued on a CPU in fp32): the weights are float32."""
    run = tmp_path / "run"
    lm.train_lm(data=str(corpus), out=str(run), precision="bf16", max_steps=3, **TINY)
    result = lm.train_lm(data=str(corpus), out=str(run), resume=True, precision="fp32", max_steps=5,
                         **{k: v for k, v in TINY.items() if k not in ("level", "hidden", "layers", "dropout", "bptt",
                                                                       "batch_size")})
    assert result.state.step == 5 and [r["step"] for r in _logged(run)] == [1, 2, 3, 4, 5]
    assert json.loads((run / "run.json").read_text())["settings"]["training"]["precision"] == "fp32"


# ------------------------------------------------------------------------------------------------ on a GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_gpu_run_in_mixed_precision_serves_on_numpy_alone(precision, corpus, tmp_path):
    """Trained on the GPU under autocast (the carry in last/ computed in bf16/fp16 there); the scratch engine
    predicts from the checkpoint what the torch engine predicts in fp32 on the CPU."""
    result = lm.train_lm(data=str(corpus), out=str(tmp_path / "run"), precision=precision, max_steps=6,
                         **dict(TINY, device="cuda"))
    losses = [r["loss"] for r in _logged(result.run_dir)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    ckpt = load_checkpoint(result.last, load_optimizer=True)
    assert {w.dtype for w in ckpt.weights.values()} == {np.dtype(np.float32)}
    assert {np.asarray(c).dtype for c in ckpt.optimizer_state["carry"].values()} == {np.dtype(np.float32)}
    tokens = np.array([[1, 4, 2, 7, 3, 5, 6, 2, 1, 0]])
    s_logits, _ = lm.load_lm(result.last, engine="scratch").engine.predict(tokens)
    t_logits, _ = lm.load_lm(result.last, engine="torch", device="cpu").engine.predict(tokens)
    np.testing.assert_allclose(s_logits, t_logits, rtol=1e-4, atol=1e-5)


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_no_training_step_synchronises_with_the_gpu(precision):
    engine = build_engine("torch", "LanguageModel", dict(vocab_size=50, embedding_dim=32, hidden_size=32,
                                                          num_layers=2, dropout=0.2), optimizer="sgd", lr=0.5,
                          clip=0.25, precision=precision, device="cuda")
    rng = np.random.default_rng(0)
    batches = [{"inputs": rng.integers(0, 50, (4, 9)), "targets": rng.integers(0, 50, (4, 9))} for _ in range(8)]
    carry = None
    for batch in batches[:2]:  # warm-up: cuDNN, the pinned-memory pool
        _, _, carry = engine.train_step(batch, carry)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[2:]:
            loss, norm, carry = engine.train_step(batch, carry)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.is_cuda and engine.settle() is None and np.isfinite(float(loss))
