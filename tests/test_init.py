"""Initial weights (rnnkit.initialization): each scheme's defining property, the same bits on both engines,
and --init / --forget-bias through `rnnkit train`."""
import json

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main
from rnnkit.engines import build_engine
from rnnkit.initialization import initialize, initialize_engine

H, I = 6, 4


def _weights(cell, layers=2):
    kwargs = dict(vocab_size=9, embedding_dim=I, hidden_size=H, num_layers=layers, cell=cell)
    return build_engine("scratch", "LanguageModel", kwargs, dtype="float64", seed=0).weights()


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3), ("rnn_tanh", 1)])
def test_orthogonal_blocks_and_xavier_bounds(cell, gates):
    before = _weights(cell)
    after = initialize(before, cell, "orthogonal", rng=5)
    for layer in range(2):
        blocks = np.split(after[f"rnn.weight_hh_l{layer}"], gates)
        for block in blocks:
            np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-12)   # WᵀW = I per gate block
        assert not np.allclose(blocks[0], np.eye(H))
        w_ih = after[f"rnn.weight_ih_l{layer}"]
        fan_in = I if layer == 0 else H
        bound = np.sqrt(6 / (fan_in + H))
        assert np.abs(w_ih).max() <= bound and np.abs(w_ih).max() > 0.8 * bound   # U(-a, a), a = √(6/(in+out))
        assert np.all(after[f"rnn.bias_ih_l{layer}"] == 0) and np.all(after[f"rnn.bias_hh_l{layer}"] == 0)
    for name in ("embedding.weight", "decoder.weight", "decoder.bias"):
        np.testing.assert_array_equal(after[name], before[name])                 # only the recurrent layers
    xavier = initialize(before, cell, "xavier", rng=5)["rnn.weight_hh_l1"]
    assert np.abs(xavier).max() <= np.sqrt(6 / (2 * H)) and np.std(xavier) > 0.3 * np.sqrt(2 / (2 * H))


def test_identity_is_the_irnn_and_pytorch_changes_nothing():
    before = _weights("rnn_relu", layers=1)
    irnn = initialize(before, "rnn_relu", "identity", rng=1)
    np.testing.assert_array_equal(irnn["rnn.weight_hh_l0"], np.eye(H))
    assert np.all(irnn["rnn.bias_ih_l0"] == 0) and np.all(irnn["rnn.bias_hh_l0"] == 0)
    np.testing.assert_array_equal(irnn["rnn.weight_ih_l0"], before["rnn.weight_ih_l0"])
    same = initialize(before, "rnn_relu", "pytorch", rng=1)
    for name in before:
        np.testing.assert_array_equal(same[name], before[name])


def test_forget_bias_sets_the_forget_gate_only():
    after = initialize(_weights("lstm"), "lstm", "xavier", forget_bias=1.5, rng=2)
    for layer in range(2):
        b_ih, b_hh = after[f"rnn.bias_ih_l{layer}"], after[f"rnn.bias_hh_l{layer}"]
        np.testing.assert_array_equal(b_ih[H:2 * H], np.full(H, 1.5))           # i, f, g, o: rows H..2H
        assert np.all(b_hh == 0) and np.all(b_ih[:H] == 0) and np.all(b_ih[2 * H:] == 0)
    with pytest.raises(ValueError, match="no forget gate"):
        initialize(_weights("gru"), "gru", "pytorch", forget_bias=1.0)
    with pytest.raises(ValueError, match="unknown init"):
        initialize(_weights("gru"), "gru", "he")


def test_both_engines_start_from_the_same_bits():
    pytest.importorskip("torch")
    kwargs = dict(vocab_size=9, embedding_dim=I, hidden_size=H, num_layers=2, cell="lstm")
    runs = []
    for engine in ("scratch", "torch", "scratch"):
        eng = build_engine(engine, "LanguageModel", kwargs, dtype="float32", seed=0)
        if runs:
            eng.load_weights(runs[0][1])          # the same non-recurrent start, as a checkpoint would give
        initialize_engine(eng, "lstm", "orthogonal", forget_bias=1.0, seed=7)
        runs.append((engine, eng.weights()))
    (_, a), (_, b), (_, c) = runs
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])
    assert a["rnn.weight_hh_l0"].dtype == np.float32


def test_init_options_and_the_clipped_norm_through_the_cli(tmp_path):
    corpus = tmp_path / "verse.txt"
    corpus.write_text("the cat sat on the mat.\n" * 20)
    out = tmp_path / "run"
    assert main(["train", "lm", "--data", str(corpus), "--cell", "rnn_relu", "--init", "identity", "--hidden", "8",
                 "--layers", "1", "--epochs", "1", "--batch-size", "4", "--bptt", "8", "--optimizer", "sgd",
                 "--lr", "1e-9", "--clip", "0.5", "--log-every", "1", "--out", str(out), "--no-progress"]) == 0
    weights = load_checkpoint(out / "last").weights
    np.testing.assert_allclose(weights["rnn.weight_hh_l0"], np.eye(8), atol=1e-6)   # lr 1e-9: still the start
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "grad_norm" in s]
    assert steps and all(s["grad_norm_clipped"] == min(s["grad_norm"], 0.5) for s in steps)
    assert any(s["grad_norm"] > 0.5 for s in steps)
    assert main(["train", "lm", "--data", str(corpus), "--cell", "gru", "--forget-bias", "1",
                 "--out", str(out), "--no-progress"]) == 2
