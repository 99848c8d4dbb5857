"""Gradients through time, gate statistics and W_hh's spectrum (rnnkit.diagnostics) on both engines."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from rnnkit import diagnostics as dg
from rnnkit.engines import build_engine

torch = pytest.importorskip("torch")


def _pair(model, kwargs):
    scratch = build_engine("scratch", model, kwargs, dtype="float64", seed=3)
    other = build_engine("torch", model, kwargs, dtype="float64", seed=3)
    other.load_weights(scratch.weights())
    return scratch, other


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gradients_through_time_agree_between_engines(cell, layers):
    """The scratch engine's BPTT and torch's unrolled layers with retained grads give the same ∂L/∂h_t."""
    kwargs = dict(vocab_size=11, embedding_dim=5, hidden_size=6, num_layers=layers, cell=cell, dropout=0.5)
    scratch, other = _pair("LanguageModel", kwargs)      # dropout: off while measuring, on both engines
    before = scratch.rng_state()
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, 11, (3, 9)), "targets": rng.integers(0, 11, (3, 9))}
    carry = rng.normal(size=(layers, 3, 6))
    carry = (carry, rng.normal(size=(layers, 3, 6))) if cell == "lstm" else carry
    loss_s, ours = scratch.through_time(batch, carry)
    loss_t, theirs = other.through_time(batch, carry)
    assert loss_s == pytest.approx(loss_t, rel=1e-12)
    assert [r["layer"] for r in ours] == [r["layer"] for r in theirs] == list(range(layers))
    for a, b in zip(ours, theirs):
        assert a["grad_h"].shape == (3, 9, 6)
        assert np.abs(a["grad_h"]).max() > 1e-4          # a real gradient, not zeros on both sides
        np.testing.assert_allclose(a["grad_h"], b["grad_h"], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(a["h"], b["h"], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(a["inputs"], b["inputs"], rtol=1e-9, atol=1e-14)
    # the last step's gradient is the loss's own: the decoder's part only (nothing comes from step T+1)
    np.testing.assert_allclose(dg.gradient_norms(ours), dg.gradient_norms(theirs), rtol=1e-9)
    # the fast paths are back afterwards and the weights untouched
    rnn = scratch.model.rnn
    assert rnn.record_through_time is False and rnn.recorded is None
    assert rnn.dropout == 0.5 and scratch.model.drop_in.p == 0.5 and scratch.rng_state() == before
    for name, w in scratch.weights().items():
        np.testing.assert_array_equal(w, other.weights()[name])


def test_gradients_through_time_with_lengths_agree():
    """Packed sequences (a classifier over texts of different lengths): zero past each text's end."""
    kwargs = dict(vocab_size=11, num_classes=3, embedding_dim=5, hidden_size=6, num_layers=2, cell="lstm")
    scratch, other = _pair("TextClassifier", kwargs)
    rng = np.random.default_rng(1)
    batch = {"inputs": rng.integers(0, 11, (4, 7)), "lengths": np.array([7, 3, 5, 1]), "labels": np.array([0, 1, 2, 1])}
    (_, ours), (_, theirs) = scratch.through_time(batch), other.through_time(batch)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a["grad_h"], b["grad_h"], rtol=1e-9, atol=1e-14)
        assert np.all(a["grad_h"][1, 3:] == 0) and np.all(a["grad_h"][3, 1:] == 0)
        assert np.abs(a["grad_h"][1, :3]).min() > 0


def _tied_maximum(h, lengths, rel=1e-12) -> bool:
    """Whether some sequence's feature (h: (batch, time, hidden)) reaches its maximum over the real steps at
    two steps or more, to `rel` of its size."""
    for row, length in zip(h, lengths):
        steps = row[:length]
        top = steps.max(axis=0)
        if (np.abs(steps - top) <= rel * np.maximum(np.abs(top), 1e-300)).sum(axis=0).max() > 1:
            return True
    return False


@settings(max_examples=12, deadline=None)
@given(cell=st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru"]), layers=st.integers(1, 2),
       lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4), hidden=st.integers(1, 5),
       pooling=st.sampled_from(["last", "mean", "max"]))
def test_gradients_through_time_agree_on_drawn_shapes(cell, layers, lengths, hidden, pooling):
    kwargs = dict(vocab_size=6, num_classes=3, embedding_dim=3, hidden_size=hidden, num_layers=layers, cell=cell,
                  bidirectional=False, pooling=pooling)
    scratch, other = _pair("TextClassifier", kwargs)
    rng = np.random.default_rng(len(lengths))
    time = max(lengths)
    batch = {"inputs": rng.integers(1, 6, (len(lengths), time)), "lengths": np.array(lengths),
             "labels": rng.integers(0, 3, len(lengths))}
    (loss_s, ours), (loss_t, theirs) = scratch.through_time(batch), other.through_time(batch)
    assert loss_s == pytest.approx(loss_t, rel=1e-10)
    # a maximum reached at two steps (ReLU at hidden 1 repeats a state exactly) sends the gradient to
    # either, and the engines may round the two values apart either way: no defined answer to compare
    assume(pooling != "max" or not _tied_maximum(ours[-1]["h"], lengths))
    for a, b in zip(ours, theirs, strict=True):
        assert a["grad_h"].shape == (len(lengths), time, hidden)
        np.testing.assert_allclose(a["grad_h"], b["grad_h"], rtol=1e-9, atol=1e-13)
        past_end = np.arange(time)[None, :] >= np.array(lengths)[:, None]
        assert np.all(a["grad_h"][past_end] == 0)


@settings(max_examples=10, deadline=None)
@given(cell=st.sampled_from(["rnn_tanh", "lstm", "gru"]), layers=st.integers(1, 2),
       attention=st.sampled_from(["none", "bahdanau", "luong-general"]),
       target_lengths=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 99))
def test_decoder_gradients_through_time_agree_between_engines(cell, layers, attention, target_lengths, seed):
    """A translation model's decoder, stepped one token at a time: ∂L/∂s_t per target step and layer from the
    scratch engine's hand BPTT equals torch's retained grads in float64; zero past each target's end; dropout
    and scheduled sampling off while measuring (eval mode) on both."""
    kwargs = dict(source_vocab=9, target_vocab=8, embedding_dim=5, hidden_size=4, num_layers=layers, cell=cell,
                  attention=attention, dropout=0.3, teacher_forcing=0.5)
    scratch, other = _pair("Seq2Seq", kwargs)
    rng = np.random.default_rng(seed)
    lengths, time = np.array(target_lengths), max(target_lengths)
    real = np.arange(time)[None] < lengths[:, None]
    source_lengths = rng.integers(1, 6, len(lengths))
    batch = dict(source=rng.integers(4, 9, (len(lengths), source_lengths.max())), source_lengths=source_lengths,
                 target_in=rng.integers(4, 8, (len(lengths), time)) * real,
                 target_out=rng.integers(3, 8, (len(lengths), time)) * real, target_lengths=lengths)
    (loss_s, ours), (loss_t, theirs) = scratch.through_time(batch), other.through_time(batch)
    assert loss_s == pytest.approx(loss_t, rel=1e-10)
    assert [r.get("part") for r in ours] == [r.get("part") for r in theirs] == [None] * layers + ["decoder"] * layers
    for a, b in zip(ours[layers:], theirs[layers:], strict=True):
        assert a["grad_h"].shape == a["h"].shape == (len(lengths), time, 4)
        for key in ("grad_h", "h", "inputs", "h0"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-9, atol=1e-13)
        assert np.all(a["grad_h"][~real] == 0) and np.abs(a["grad_h"][real]).min() > 0
    found = dg.diagnose(scratch, batch)
    assert found.decoder_gradient_norms.shape == (layers, time) and found.gradient_norms.shape[0] == layers
    np.testing.assert_allclose(found.decoder_gradient_norms, dg.diagnose(other, batch).decoder_gradient_norms,
                               rtol=1e-9)
    assert f"decoder layer {layers - 1}: ‖∂L/∂s_1‖ / ‖∂L/∂s_T‖" in found.summary()
    assert scratch.model.decoder.rnn.recorded is None and scratch.model.decoder.steps_recorded is None


def test_the_decoders_last_gradient_is_its_outputs():
    """Without attention, nothing but step T's output reaches the top state s_T: ∂L/∂s_T = (softmax - onehot)
    W_out / tokens, computed here by hand."""
    kwargs = dict(source_vocab=9, target_vocab=8, embedding_dim=5, hidden_size=4, num_layers=1, cell="lstm",
                  attention="none")
    scratch, _ = _pair("Seq2Seq", kwargs)
    rng = np.random.default_rng(5)
    batch = dict(source=rng.integers(4, 9, (3, 4)), source_lengths=np.array([4, 4, 4]),
                 target_in=rng.integers(4, 8, (3, 5)), target_out=rng.integers(3, 8, (3, 5)),
                 target_lengths=np.array([5, 5, 5]))
    _, records = scratch.through_time(batch)
    decoder = records[-1]
    weights = scratch.weights()
    logits = decoder["h"][:, -1] @ weights["decoder.output.weight"].T + weights["decoder.output.bias"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    probs[np.arange(3), batch["target_out"][:, -1]] -= 1
    np.testing.assert_allclose(decoder["grad_h"][:, -1], probs @ weights["decoder.output.weight"] / 15, rtol=1e-10)


def test_gradient_reaching_h_t_equals_finite_differences():
    """∂L/∂h_t of the scratch engine = (L(h_t + ε e) - L(h_t - ε e)) / 2ε with h_t nudged in torch's unrolled step."""
    kwargs = dict(vocab_size=7, embedding_dim=3, hidden_size=4, num_layers=1, cell="gru")
    scratch, other = _pair("LanguageModel", kwargs)
    rng = np.random.default_rng(2)
    batch = {"inputs": rng.integers(0, 7, (2, 6)), "targets": rng.integers(0, 7, (2, 6))}
    _, (record,) = scratch.through_time(batch)
    from rnnkit.torch import unrolled

    original = unrolled.step
    for t, b, j in [(0, 0, 1), (2, 1, 3), (5, 0, 0)]:
        def loss_with(eps):
            calls = {"n": 0}

            def nudged(*args):
                h, c = original(*args)
                if calls["n"] == t:
                    h = h + torch.nn.functional.one_hot(torch.tensor(b), 2)[:, None] * \
                        torch.nn.functional.one_hot(torch.tensor(j), 4)[None, :] * eps
                calls["n"] += 1
                return h, c
            unrolled.step = nudged
            try:
                with torch.no_grad(), unrolled.recording(other.model):
                    value, _ = other.model.loss(batch)
            finally:
                unrolled.step = original
            return float(value)
        numeric = (loss_with(1e-6) - loss_with(-1e-6)) / 2e-6
        assert record["grad_h"][b, t, j] == pytest.approx(numeric, rel=1e-6, abs=1e-10)


def test_gate_statistics_and_spectrum_of_set_weights():
    """A forget bias of +10 saturates the forget gate; zero weights leave the others at σ(0) = 0.5."""
    hidden, cell = 3, "lstm"
    record = dict(cell=cell, layer=0, inputs=np.ones((2, 5, 4)), h=np.zeros((2, 5, hidden)), h0=np.zeros((2, hidden)),
                  weight_ih=np.zeros((4 * hidden, 4)), weight_hh=np.zeros((4 * hidden, hidden)),
                  bias_ih=np.zeros(4 * hidden), bias_hh=np.zeros(4 * hidden))
    record["bias_hh"][hidden:2 * hidden] = 10.0
    (stats,) = dg.gate_statistics([record])
    assert stats["forget"] == {"mean": pytest.approx(1 / (1 + np.exp(-10))), "saturated": 1.0}
    assert stats["input"] == {"mean": pytest.approx(0.5), "saturated": 0.0}
    assert set(stats) == {"input", "forget", "output"}
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(hidden, hidden)))
    spectrum = dg.singular_values({"rnn.weight_hh_l0": np.vstack([q, 2 * q, 3 * q, np.eye(hidden)])}, "lstm")
    blocks = spectrum["rnn.weight_hh_l0"]
    np.testing.assert_allclose(blocks["forget"], [2, 2, 2])
    np.testing.assert_allclose(blocks["cell"], [3, 3, 3])
    assert list(blocks) == ["input", "forget", "cell", "output"]


def test_memory_horizon_of_a_geometric_decay():
    norms = 0.5 ** np.arange(30)[::-1]          # ‖∂L/∂h_t‖ halves with every step back
    assert dg.memory_horizon(norms) == 10        # 0.5^9 ≈ 2e-3 ≥ 1e-3 > 0.5^10
    assert dg.memory_horizon(np.ones(8)) == 8


def test_diagnose_summarises_a_vanishing_gradient():
    """A tanh RNN with W_hh = 0.1 I read at its last step only: ‖∂L/∂h_t‖ shrinks ≥ 10× per step back."""
    kwargs = dict(vocab_size=5, num_classes=2, embedding_dim=4, hidden_size=8, cell="rnn_tanh", pooling="last")
    engine = build_engine("scratch", "TextClassifier", kwargs, dtype="float64", seed=0)
    weights = engine.weights()
    weights["rnn.weight_hh_l0"] = 0.1 * np.eye(8)
    engine.load_weights(weights)
    time = 40
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, 5, (2, time)), "lengths": np.array([time, time]), "labels": np.array([0, 1])}
    diagnosis = dg.diagnose(engine, batch)
    norms = diagnosis.gradient_norms[0]
    assert norms.shape == (time,)
    assert np.all(norms[:-1] <= 0.1 * norms[1:] + 1e-300)       # |tanh'| ≤ 1: at least 10× per step
    assert dg.memory_horizon(norms) in (3, 4)
    assert f"longer than ~{dg.memory_horizon(norms)} steps" in diagnosis.summary()
    assert diagnosis.hidden[0].shape == (time, 8)
    assert diagnosis.singular_values["weight_hh_l0"]["hidden"] == pytest.approx(np.full(8, 0.1))
    payload = diagnosis.to_json()
    assert payload["gradient_norms"][0][-1] == pytest.approx(norms[-1])


def test_figures_of_a_diagnosis(tmp_path):
    pytest.importorskip("matplotlib")
    from rnnkit import plots

    kwargs = dict(vocab_size=7, embedding_dim=3, hidden_size=5, num_layers=2, cell="lstm")
    engine = build_engine("scratch", "LanguageModel", kwargs, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, 7, (2, 12)), "targets": rng.integers(0, 7, (2, 12))}
    diagnosis = dg.diagnose(engine, batch)
    paths = plots.plot_diagnosis(diagnosis, tmp_path / "figures", name="lm")
    assert [p.name for p in paths] == ["gradient_norms.png", "gates.png", "hidden_l0.png", "hidden_l1.png"]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    fig = plots.gradient_norms_figure({"lstm": diagnosis.gradient_norms, "rnn": np.ones(12)})
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "time step t" and ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lstm layer 0", "lstm layer 1", "rnn"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), diagnosis.gradient_norms[1])
    gates = plots.gates_figure(diagnosis.gate_activations)
    assert len(gates.axes) == 2 and len(gates.axes[0].get_legend().get_texts()) == 3
    with pytest.raises(ValueError, match="no gates"):
        plots.gates_figure([{}])
    heat = plots.hidden_states_figure(diagnosis.hidden[0])
    assert heat.axes[0].images[0].get_array().shape == (5, 12)        # units × time


def test_diagnose_command_on_checkpoints(tmp_path, capsys):
    """`rnnkit diagnose` on a memory-task and a language-model checkpoint: the summary, --json, --plot."""
    import json

    from rnnkit.cli import main

    run = tmp_path / "order"
    assert main(["train", "memory", "--problem", "order", "--length", "10", "--hidden", "8", "--epochs", "1",
                 "--train-size", "128", "--valid-size", "32", "--out", str(run), "--no-progress", "--quiet"]) == 0
    capsys.readouterr()
    args = ["diagnose", str(run / "best"), "--length", "24", "--batch-size", "4"]
    assert main([*args, "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main([*args, "--json", "--engine", "torch"]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert np.shape(ours["gradient_norms"]) == (1, 24) and ours["figures"] == []
    np.testing.assert_allclose(ours["gradient_norms"], theirs["gradient_norms"], rtol=1e-4)   # float32, two engines
    assert set(ours["gates"][0]) == {"input", "forget", "output"}
    assert ours["memory_horizon"] == [dg.memory_horizon(np.array(ours["gradient_norms"][0]))]
    pytest.importorskip("matplotlib")
    assert main([*args, "--plot", str(tmp_path / "figures")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loss ") and "layer 0: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖" in out and "wrote " in out
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["gates.png", "gradient_norms.png",
                                                                        "hidden_l0.png"]
    # a memory checkpoint is untrusted input too: its model class and settings are checked before a build
    config_path = run / "best" / "config.json"
    document = json.loads(config_path.read_text())
    for change, message in (({"model_class": "make_recurrent"}, "model_class must be one of"),
                            ({"model": dict(document["config"]["model"], hidden_size=10**8)},
                             "build too large a model: a parameter of shape")):
        config_path.write_text(json.dumps(dict(document, config={**document["config"], **change})))
        assert main(args) == 2
        assert message in capsys.readouterr().err
    config_path.write_text(json.dumps(document))

    text = tmp_path / "verse.txt"
    text.write_text("the cat sat on the mat.\n" * 20)
    lm_run = tmp_path / "lm"
    assert main(["train", "lm", "--data", str(text), "--cell", "gru", "--hidden", "8", "--layers", "2", "--epochs",
                 "1", "--bptt", "16", "--out", str(lm_run), "--no-progress", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(lm_run / "best"), "--data", str(text), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert np.shape(found["gradient_norms"]) == (2, 16) and set(found["gates"][1]) == {"reset", "update"}
    assert main(["diagnose", str(lm_run / "best")]) == 2
    assert "needs a text file" in capsys.readouterr().err


def test_diagnose_a_bidirectional_classifier(tmp_path, capsys):
    """A classify checkpoint (bidirectional by default): both directions on the scratch engine, labelled with
    the model's own predictions; the torch engine's unrolled layers refuse it clearly."""
    import json

    from rnnkit.cli import main

    data = tmp_path / "posts.csv"
    data.write_text("text,label\n" + "".join(f"good fine day {i},pos\nbad awful day {i},neg\n" for i in range(20)))
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", str(data), "--hidden", "6", "--embedding", "4", "--epochs", "1",
                 "--min-freq", "1", "--out", str(out), "--no-progress", "--quiet"]) == 0
    texts = tmp_path / "texts.txt"
    texts.write_text("good fine day\n\nbad awful day and more\n")
    capsys.readouterr()
    assert main(["diagnose", str(out / "best"), "--data", str(texts), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["layers"] == ["layer 0", "layer 0 reverse"]
    assert set(found["singular_values"]) == {"weight_hh_l0", "weight_hh_l0_reverse"}
    norms = np.array(found["gradient_norms"])
    assert norms.shape == (2, 5) and np.all(norms[:, :3] > 0)      # the longer text has 5 tokens
    assert main(["diagnose", str(out / "best"), "--data", str(texts), "--engine", "torch"]) == 2
    assert "unidirectional" in capsys.readouterr().err


def test_diagnose_seq2seq_and_forecast_checkpoints(tmp_path, capsys):
    """A translation model (encoder and decoder: their gradients through time on the model's own greedy
    translations) and a forecaster (the last windows of its training series, or of a --data file)."""
    import json

    from rnnkit.cli import main

    s2s = tmp_path / "s2s"
    assert main(["train", "seq2seq", "--dataset", "reverse", "--examples", "200", "--sequence-length", "5",
                 "--hidden", "8", "--embedding", "4", "--batch-size", "16", "--eval-translations", "0",
                 "--max-steps", "3", "--cell", "gru", "--unidirectional", "--layers", "2", "--out", str(s2s),
                 "--no-progress", "--quiet"]) == 0
    sources = tmp_path / "sources.txt"
    sources.write_text("abcde\n\nbca\n")
    capsys.readouterr()
    runs = {}
    for engine in ("scratch", "torch"):
        assert main(["diagnose", str(s2s / "best"), "--data", str(sources), "--json", "--engine", engine]) == 0
        runs[engine] = json.loads(capsys.readouterr().out)
    found = runs["scratch"]
    assert found["layers"] == ["layer 0", "layer 1"] and found["cell"] == "gru"   # the encoder's two layers
    norms = np.array(found["gradient_norms"])
    assert norms.shape == (2, 5) and np.all(norms > 0)                            # the longest source: 5 tokens
    np.testing.assert_allclose(norms, runs["torch"]["gradient_norms"], rtol=1e-4)  # float32, two engines
    decoder = np.array(found["decoder_gradient_norms"])                           # the decoder's two layers
    assert decoder.shape[0] == 2 and decoder.shape[1] >= 1 and np.all(decoder[:, 0] > 0)
    np.testing.assert_allclose(decoder, runs["torch"]["decoder_gradient_norms"], rtol=1e-4)
    assert len(found["decoder_memory_horizon"]) == 2
    assert main(["diagnose", str(s2s / "best"), "--data", str(sources), "--plot", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    assert "decoder layer 1: ‖∂L/∂s_1‖ / ‖∂L/∂s_T‖" in printed and "decoder_gradient_norms.png" in printed
    assert (tmp_path / "figs" / "decoder_gradient_norms.png").stat().st_size > 1000
    assert len(found["gates"]) == 4 and all(set(g) == {"reset", "update"} for g in found["gates"])
    assert found["decoder_layers"] == ["decoder layer 0", "decoder layer 1"]
    for a, b in zip(found["gates"], runs["torch"]["gates"]):                      # the decoder's gates too
        for gate in a:
            assert a[gate]["mean"] == pytest.approx(b[gate]["mean"], rel=1e-4)
    assert set(found["singular_values"]) == {"weight_hh_l0", "weight_hh_l1", "decoder.weight_hh_l0",
                                             "decoder.weight_hh_l1"}
    assert "decoder layer 1 gates: reset mean" in printed and "decoder.weight_hh_l0: largest" in printed
    assert (tmp_path / "figs" / "decoder_hidden_l1.png").stat().st_size > 1000
    assert main(["diagnose", str(s2s / "best")]) == 2
    assert "source sentences" in capsys.readouterr().err

    months = [f"{1950 + k // 12}-{k % 12 + 1:02d}" for k in range(60)]
    series = tmp_path / "series.csv"
    series.write_text("month,value\n" + "".join(f"{m},{100 + 10 * np.sin(k / 2) + k:.3f}\n"
                                                for k, m in enumerate(months)))
    fc = tmp_path / "fc"
    assert main(["train", "forecast", "--data", str(series), "--date-column", "month", "--horizon", "3",
                 "--window", "12", "--hidden", "4", "--cell", "lstm", "--epochs", "1", "--out", str(fc)]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(fc / "best"), "--batch-size", "5", "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert np.shape(own["gradient_norms"]) == (1, 12) and np.all(np.array(own["gradient_norms"]) > 0)
    assert set(own["gates"][0]) == {"input", "forget", "output"}
    assert main(["diagnose", str(fc / "best"), "--batch-size", "5", "--json", "--data", str(series)]) == 0
    assert json.loads(capsys.readouterr().out)["gradient_norms"] == own["gradient_norms"]   # the same series


def test_decoder_gates_and_states_are_read_over_the_real_target_steps():
    """diagnose() on a translation model's records: the decoder's gates, spectrum and hidden states are
    measured over each target's real steps (target_lengths), the encoder's over the source (source_lengths);
    a padded step whose gates are saturated must not count."""
    from rnnkit.diagnostics import diagnose, gate_values

    rng = np.random.default_rng(0)
    hidden, features = 3, 2

    def record(part, time, layer=0):
        r = {"cell": "gru", "layer": layer, "direction": 0, "inputs": rng.normal(size=(2, time, features)),
             "h0": np.zeros((2, hidden)), "h": rng.normal(size=(2, time, hidden)) * 0.1,
             "grad_h": rng.normal(size=(2, time, hidden)), "weight_ih": rng.normal(size=(3 * hidden, features)),
             "weight_hh": rng.normal(size=(3 * hidden, hidden)), "bias_ih": None, "bias_hh": None}
        if part:
            r["part"] = part
        return r

    encoder, decoder = record(None, 4), record("decoder", 3)
    decoder["inputs"][1, 2] = 1e3                     # row 1's step 2 is padding: its gates saturate
    batch = {"source_lengths": np.array([4, 2]), "target_lengths": np.array([3, 2])}

    class Records:
        def through_time(self, batch, carry=None):
            return 1.5, [encoder, decoder]

    found = diagnose(Records(), batch)
    assert found.layers == ["layer 0"] and found.decoder_layers == ["decoder layer 0"]
    real_decoder = np.array([[True] * 3, [True, True, False]])
    real_encoder = np.array([[True] * 4, [True, True, False, False]])
    for stats, values, real in ((found.gates[0], gate_values(encoder), real_encoder),
                                (found.gates[1], gate_values(decoder), real_decoder)):
        for gate, value in values.items():
            assert stats[gate]["mean"] == pytest.approx(float(value[real].mean()), rel=1e-12)
    np.testing.assert_array_equal(found.hidden[1], decoder["h"][0])          # row 0: all 3 target steps
    np.testing.assert_allclose(found.singular_values["decoder.weight_hh_l0"]["reset"],
                               np.linalg.svd(decoder["weight_hh"][:hidden], compute_uv=False))
    assert "decoder layer 0 gates: reset mean" in found.summary()
