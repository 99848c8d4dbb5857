"""`rnnkit export CKPT --format onnx`: every task model through onnxruntime equals the scratch engine (float32,
≤ 1e-5) on two batch sizes × two lengths other than the export's example; the language model's step carries
its state over several steps, the translation model decodes several steps from its encoding; clear errors.
The models have dropout, which the export must leave out (eval mode)."""
import json
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.checkpoint import save_checkpoint
from rnnkit.cli import main
from rnnkit.engines import build_engine
from rnnkit.tasks.export import export_checkpoint

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
SHAPES = [(1, 2), (1, 9), (4, 2), (4, 9)]  # (batch, time): the export traced 3 × 5 and checked 2 × 7


@pytest.fixture(scope="module", autouse=True)
def numpy_path():
    """The scratch engine on its NumPy path: the reference here, without the numba kernels' compile time."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNKIT_PATH", "numpy")
        yield


def exported(tmp_path_factory, task, model, kwargs, seed=0):
    """(scratch engine, {graph: onnxruntime session}) for a fresh model saved as a checkpoint and exported."""
    folder = tmp_path_factory.mktemp(task)
    engine = build_engine("scratch", model, kwargs, dtype="float32", seed=seed)
    save_checkpoint(folder / "ckpt", engine.weights(), {"task": task, "model": kwargs, "dtype": "float32"})
    graphs = export_checkpoint(folder / "ckpt", folder / "model.onnx")
    engine.model.eval()
    return engine, {g["graph"]: session(g["path"]) for g in graphs}


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(sess, **inputs):
    """The session's outputs by name, fed the inputs its graph takes."""
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {i.name: inputs[i.name] for i in sess.get_inputs()})))


def close(got, want, what=""):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.abs(got - want).max() <= TOL, (what, np.abs(got - want).max())


def padded_tokens(rng, vocab, batch, time):
    lengths = rng.integers(1, time + 1, batch)
    lengths[0] = time
    tokens = rng.integers(1, vocab, (batch, time)) * (np.arange(time)[None] < lengths[:, None])
    return tokens.astype(np.int64), lengths.astype(np.int64)


# ------------------------------------------------------------------------------------------- language model

@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return exported(tmp_path_factory, "lm", "LanguageModel",
                    dict(vocab_size=17, embedding_dim=6, hidden_size=8, num_layers=2, cell="lstm", dropout=0.5))


@pytest.mark.parametrize("batch, time", SHAPES)
def test_lm_step_matches_the_engine(lm, batch, time):
    engine, sessions = lm
    rng = np.random.default_rng(batch * 10 + time)
    tokens = rng.integers(0, 17, (batch, time)).astype(np.int64)
    h, c = (rng.standard_normal((2, batch, 8)).astype(np.float32) * 0.5 for _ in range(2))
    logits, state = engine.predict(tokens, (h, c))
    out = run(sessions["step"], tokens=tokens, h=h, c=c)
    close(out["logits"], logits, "logits")
    close(out["h_out"], state[0], "h")
    close(out["c_out"], state[1], "c")


def test_lm_step_carries_its_state_over_steps_as_generation_does(lm):
    engine, sessions = lm
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, 17, (3, 4)).astype(np.int64)
    zeros = np.zeros((2, 3, 8), np.float32)
    logits, state = engine.predict(prompt, None)
    out = run(sessions["step"], tokens=prompt, h=zeros, c=zeros)
    close(out["logits"], logits)
    for _ in range(5):  # greedy steps, each fed the previous step's state
        token = out["logits"][:, -1].argmax(axis=-1)[:, None].astype(np.int64)
        assert np.array_equal(token[:, 0], logits[:, -1].argmax(axis=-1))
        logits, state = engine.predict(token, state)
        out = run(sessions["step"], tokens=token, h=out["h_out"], c=out["c_out"])
        close(out["logits"], logits, "logits")
        close(out["h_out"], state[0], "h")


def test_the_file_carries_the_checkpoint_config(lm):
    _, sessions = lm
    meta = sessions["step"].get_modelmeta().custom_metadata_map
    assert meta["rnnkit.task"] == "lm" and meta["rnnkit.graph"] == "step"
    assert json.loads(meta["rnnkit.config"])["model"]["hidden_size"] == 8


# ------------------------------------------------------------------------------------------- classifier

CLASSIFIERS = {
    "lstm-bidirectional-last": dict(cell="lstm", num_layers=2, bidirectional=True, pooling="last"),
    "gru-bidirectional-attention": dict(cell="gru", num_layers=1, bidirectional=True, pooling="attention",
                                        attention_size=5),
}


@pytest.fixture(scope="module", params=list(CLASSIFIERS))
def classifier(request, tmp_path_factory):
    kwargs = dict(vocab_size=23, num_classes=3, embedding_dim=6, hidden_size=7, dropout=0.5,
                  **CLASSIFIERS[request.param])
    return exported(tmp_path_factory, "classify", "TextClassifier", kwargs)


@pytest.mark.parametrize("batch, time", SHAPES)
def test_classifier_matches_the_engine_on_padded_batches(classifier, batch, time):
    """Packed by length in the engine; ONNX's recurrent operators take the lengths as sequence_lens."""
    engine, sessions = classifier
    tokens, lengths = padded_tokens(np.random.default_rng(batch * 10 + time), 23, batch, time)
    out = run(sessions["classify"], tokens=tokens, lengths=lengths)
    close(out["probabilities"], engine.predict(tokens, lengths))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(0, 3))
def test_classifier_matches_the_engine_on_any_lengths(classifier, lengths, extra_padding):
    """Any lengths, in any order, the longest possibly shorter than the padded time axis."""
    engine, sessions = classifier
    lengths = np.array(lengths, np.int64)
    time = int(lengths.max()) + extra_padding
    rng = np.random.default_rng(int(lengths.sum()))
    tokens = (rng.integers(1, 23, (len(lengths), time)) * (np.arange(time)[None] < lengths[:, None])).astype(np.int64)
    out = run(sessions["classify"], tokens=tokens, lengths=lengths)
    close(out["probabilities"], engine.predict(tokens, lengths))


# ------------------------------------------------------------------------------------------- translation

TRANSLATORS = {
    "lstm-bidirectional-bahdanau": dict(cell="lstm", num_layers=2, bidirectional=True, attention="bahdanau"),
    "gru-luong-general": dict(cell="gru", attention="luong-general"),
}


@pytest.fixture(scope="module", params=list(TRANSLATORS))
def translator(request, tmp_path_factory):
    kwargs = dict(source_vocab=13, target_vocab=11, embedding_dim=6, hidden_size=8, dropout=0.5,
                  **TRANSLATORS[request.param])
    return exported(tmp_path_factory, "seq2seq", "Seq2Seq", kwargs)


@pytest.mark.parametrize("batch, time", SHAPES)
def test_translation_encode_and_decode_steps_match_the_engine(translator, batch, time):
    engine, sessions = translator
    source, lengths = padded_tokens(np.random.default_rng(batch * 10 + time), 13, batch, time)
    state, memory = engine.call("encode", source, lengths)
    out = run(sessions["encode"], source=source, source_lengths=lengths)
    for name, value in {**state, **memory}.items():
        close(out[name], value, name)
    onnx_state = {name: out[name] for name in state}
    prev = np.full(batch, 2, np.int64)
    for _ in range(3):
        log_probs, state, attention = engine.call("decode_step", prev, state, memory)
        step = run(sessions["decode_step"], prev_tokens=prev, **onnx_state, **memory)
        close(step["log_probs"], log_probs, "log_probs")
        close(step["attention"], attention, "attention")
        onnx_state = {name: step[f"{name}_out"] for name in state}
        for name in state:
            close(onnx_state[name], state[name], name)
        prev = log_probs.argmax(axis=-1).astype(np.int64)


# ------------------------------------------------------------------------------------------- forecaster

FORECASTERS = {
    "direct-quantile-future": dict(decoder="direct", loss="quantile", future_size=2),
    "autoregressive-gaussian": dict(decoder="autoregressive", loss="gaussian", cell="gru"),
}


@pytest.fixture(scope="module", params=list(FORECASTERS))
def forecaster(request, tmp_path_factory):
    kwargs = dict(input_size=3, output_size=2, horizon=4, hidden_size=8, dropout=0.5, **FORECASTERS[request.param])
    return exported(tmp_path_factory, "forecast", "Forecaster", kwargs)


@pytest.mark.parametrize("batch, window", SHAPES)
def test_forecaster_matches_the_engine(forecaster, batch, window):
    engine, sessions = forecaster
    rng = np.random.default_rng(batch * 10 + window)
    x = rng.standard_normal((batch, window, 3)).astype(np.float32)
    future = rng.standard_normal((batch, 4, 2)).astype(np.float32) if engine.model.future_size else None
    out = run(sessions["forecast"], x=x, future=future)
    want = engine.predict(x, future)
    assert want.shape[:3] == (batch, 4, 2)
    close(out["forecasts"], want)


# ------------------------------------------------------------------------------------------- the command

def small_lm_checkpoint(folder, task="lm"):
    kwargs = dict(vocab_size=9, embedding_dim=4, hidden_size=5, cell="gru")
    engine = build_engine("scratch", "LanguageModel", kwargs, dtype="float32")
    return save_checkpoint(folder, engine.weights(), {"task": task, "model": kwargs, "dtype": "float32"})


def test_the_command_writes_the_file_and_refuses_to_overwrite_it(tmp_path, capsys):
    ckpt = small_lm_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "lm.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: step (tokens, h -> logits, h_out)") and "batch, time" in printed
    written = out.read_bytes()
    onnx.checker.check_model(onnx.load(str(out)))

    assert main(["export", str(ckpt), "--out", str(out)]) == 2
    assert "already exists (--overwrite to replace)" in capsys.readouterr().err
    assert out.read_bytes() == written
    assert main(["export", str(ckpt), "--out", str(out), "--overwrite"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["lm.onnx"]  # no temporary files left


def test_a_checkpoint_of_an_unknown_task_is_refused(tmp_path, capsys):
    ckpt = small_lm_checkpoint(tmp_path / "ckpt", task="poetry")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'poetry' model" in err and "lm, classify, seq2seq, forecast" in err
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnxruntime_is_named(tmp_path, capsys, monkeypatch):
    ckpt = small_lm_checkpoint(tmp_path / "ckpt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "needs onnxruntime: pip install 'rnnkit[torch,onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_an_export_that_fails_its_check_writes_nothing(tmp_path, capsys, monkeypatch):
    from rnnkit.torch import export

    ckpt = small_lm_checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference passes
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "error: the exported 'step' graph differs from the model by" in capsys.readouterr().err
    assert not list(tmp_path.glob("*x.onnx*"))
