"""The examples in examples/ run and compute what they print: checked against NumPy done independently."""
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"test_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# ---------------------------------------------------------------------------------------------- 1

def test_simple_rnn_hello(capsys):
    r = load("simple_rnn_hello").main()
    out = capsys.readouterr().out
    assert r["vocab"] == ["H", "E", "L", "O"]
    assert r["inputs"].shape == (5, 4) and r["log_probs"].shape == (5, 4) and r["hiddens"].shape == (5, 3)
    assert np.array_equal(r["inputs"].argmax(axis=1), [0, 1, 2, 2, 3]) and np.all(r["inputs"].sum(axis=1) == 1)
    assert np.allclose(np.exp(r["log_probs"]).sum(axis=1), 1.0, atol=1e-12)
    assert np.all(r["log_probs"] < 0)

    # the recurrence done directly from the weights: h = W_ih [x, h] + b, log p = log_softmax(W_io [x, h] + b)
    w = r["weights"]
    assert w["i2h.weight"].shape == (3, 7) and w["i2o.weight"].shape == (4, 7)
    h = np.zeros(3)
    for t, x in enumerate(r["inputs"]):
        combined = np.concatenate([x, h])
        logp = np_log_softmax(w["i2o.weight"] @ combined + w["i2o.bias"])
        h = w["i2h.weight"] @ combined + w["i2h.bias"]
        assert np.allclose(r["hiddens"][t], h, atol=1e-12)
        assert np.allclose(r["log_probs"][t], logp, atol=1e-12)
    assert np.allclose(r["hidden"], h, atol=1e-12)
    assert "final hidden state h_5 = [" + " ".join(f"{v:+.3f}" for v in h) + "]" in out


def test_simple_rnn_hello_is_deterministic(capsys):
    a, b = load("simple_rnn_hello").main(), load("simple_rnn_hello").main()
    assert np.array_equal(a["log_probs"], b["log_probs"]) and np.array_equal(a["hidden"], b["hidden"])


# ---------------------------------------------------------------------------------------------- 2

def test_worked_step_matches_the_hand_calculation(capsys):
    r = load("worked_step").main()
    out = capsys.readouterr().out
    s1, s2 = r["steps"]
    # step 1, 'H' = column 0 of W_xh = (0.5, -0.3), h_0 = 0, b_h = (0.1, 0.2)
    assert np.allclose(s1["W_xh_x"], [0.5, -0.3]) and np.allclose(s1["W_hh_h"], [0.0, 0.0])
    assert np.allclose(s1["pre"], [0.6, -0.1])
    h1 = np.array([math.tanh(0.6), math.tanh(-0.1)])
    assert np.allclose(s1["h"], h1, atol=1e-15)
    # y_1 = W_hy h_1 + b_y, W_hy rows (1, -1), (0.5, 0.5), (-0.5, 1), (0.2, -0.3), b_y = (0.1, 0, -0.1, 0)
    y1 = [h1[0] - h1[1] + 0.1, 0.5 * h1[0] + 0.5 * h1[1], -0.5 * h1[0] + h1[1] - 0.1, 0.2 * h1[0] - 0.3 * h1[1]]
    assert np.allclose(s1["y"], y1, atol=1e-15)
    assert np.allclose(s1["p"], np.exp(y1) / np.exp(y1).sum(), atol=1e-15)
    # step 2, 'E' = column 1 = (-0.2, 0.4), W_hh rows (0.6, -0.4), (0.2, 0.5)
    rec = [0.6 * h1[0] - 0.4 * h1[1], 0.2 * h1[0] + 0.5 * h1[1]]
    assert np.allclose(s2["W_hh_h"], rec, atol=1e-15)
    h2 = np.tanh(np.array([-0.2 + rec[0] + 0.1, 0.4 + rec[1] + 0.2]))
    assert np.allclose(s2["h"], h2, atol=1e-15)
    # rnnkit's RNN with the same weights gives the same states
    assert np.allclose(r["rnn_output"], [h1, h2], atol=1e-12)
    assert np.allclose(r["rnn_h_n"], h2, atol=1e-12) and r["max_diff"] < 1e-12
    assert "h_1 = tanh(sum)        = [+0.5370 -0.0997]" in out
    assert "sum                    = [+0.6000 -0.1000]" in out


# ---------------------------------------------------------------------------------------------- 3

def test_next_digit_windows_cover_the_cycle():
    m = load("next_digit")
    x, y = m.make_windows(m.PERIOD * 3, 2)
    assert len(x) == 10 and all(int(b) == (int(a[1]) + 1) % 4 for a, b in zip(x, y))
    assert {(tuple(a.tolist()), int(b)) for a, b in zip(x, y)} == {((0, 1), 2), ((1, 2), 3), ((2, 3), 0), ((3, 0), 1)}
    # a single period (the notebook's list) holds only two windows and never [2, 3]
    x1, y1 = m.make_windows(m.PERIOD, 2)
    assert x1.tolist() == [[0, 1], [1, 2]] and y1.tolist() == [2, 3]


def test_next_digit_learns_every_window(capsys):
    r = load("next_digit").main()
    out = capsys.readouterr().out
    assert r["windows"] == [[0, 1], [1, 2], [2, 3], [3, 0]]
    assert r["targets"] == [2, 3, 0, 1]
    assert r["predictions"] == [2, 3, 0, 1] and r["correct"] == 4
    assert r["final_loss"] < 0.01
    assert r["losses"][0] > 1.0 and r["losses"][-1] < r["losses"][0] / 100
    assert "[2, 3] -> predicts 0" in out and "4/4 windows right" in out


# ---------------------------------------------------------------------------------------------- 4

def test_hello_memory_rnn_needs_its_memory(capsys):
    r = load("hello_memory").main()
    assert r["contexts"] == ["H", "HE", "HEL", "HELL"]
    assert r["answers"] == ["E", "L", "L", "O"]
    assert r["rnn"] == ["E", "L", "L", "O"]
    assert r["rnn_loss"] < 0.01
    # without W_hh the two L steps get the same answer, so at most one of HEL->L and HELL->O is right
    flat = r["memoryless"]
    assert flat[2] == flat[3]
    assert not (flat[2] == "L" and flat[3] == "O")
    assert np.allclose(r["memoryless_probs"][2], r["memoryless_probs"][3], atol=1e-6)
    assert r["memoryless_loss"] >= 2 * math.log(2) / 4 - 1e-6


# ---------------------------------------------------------------------------------------------- run_all

def test_run_all_runs_every_example_with_a_heading():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "run_all.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    names = ["simple_rnn_hello", "worked_step", "next_digit", "hello_memory"]
    positions = [out.index(f"[examples/{n}.py]") for n in names]
    assert positions == sorted(positions)
    assert "4/4 windows right" in out and "all 4 examples ran in" in out


@pytest.mark.parametrize("name", ["simple_rnn_hello", "worked_step", "next_digit", "hello_memory"])
def test_every_example_has_main_and_a_docstring(name):
    m = load(name)
    assert callable(m.main) and m.__doc__ and "Run: python examples/" in m.__doc__


# ---------------------------------------------------------------------------------------------- forecast

@pytest.mark.network
def test_forecast_air_passengers_quick(tmp_path, capsys):
    """The example's table: its MAPEs recomputed here from the forecast and from the baselines done by hand."""
    from rnnkit.data import datasets

    report = load("forecast_air_passengers").main(["--quick", "--out", str(tmp_path / "air")])
    out = capsys.readouterr().out
    y = datasets.load_series("air-passengers").y[:, 0]
    history, truth = y[:-36], y[-36:]

    def mape(forecast):
        return 100 * np.mean(np.abs((truth - forecast) / truth))

    seasonal = np.tile(history[-12:], 3)
    drift = history[-1] + (history[-1] - history[0]) / (len(history) - 1) * np.arange(1, 37)
    assert report["held_out"] == 36 and report["first"] == "1958-01"
    assert round(mape(seasonal), 2) == 13.19 == round(report["baselines"]["seasonal-naive"]["mape"], 2)
    assert math.isclose(report["baselines"]["naive"]["mape"], mape(np.full(36, history[-1])), rel_tol=1e-12)
    assert math.isclose(report["baselines"]["drift"]["mape"], mape(drift), rel_tol=1e-12)
    model_mape = mape(np.array(report["forecast"])[:, 0])
    assert math.isclose(report["model"]["mape"], model_mape, rel_tol=1e-12)
    assert f"GRU (ours)      {model_mape:8.2f}" in out and "seasonal-naive     13.19" in out
    assert (tmp_path / "air" / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- translate

def test_translate_quick_reports_what_the_model_translates(tmp_path, capsys):
    """examples/translate.py --quick (a tiny model, a few steps): its scores and translations are the
    checkpoint's, checked here by translating the test split again and scoring it by hand."""
    from rnnkit.data import generators
    from rnnkit.tasks import seq2seq
    from rnnkit.tasks.settings import Seq2SeqData

    m = load("translate")
    assert "Run: python examples/translate.py" in m.__doc__
    r = m.main(quick=True, out=str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert r["settings"]["dataset"] == "reverse" and r["settings"]["max_steps"] == 5
    model = seq2seq.load_seq2seq(r["checkpoint"])
    test = generators.splits("reverse", 300, valid=0.1, test=0.1, seed=0, max_length=6)[0]["test"]
    assert test == seq2seq.pair_splits(Seq2SeqData(dataset="reverse", examples=300, sequence_length=6))[0]["test"]
    assert all(s[::-1] == t for s, t in test) and len(test) == r["reports"][1]["sources"] == 30
    for beam in (1, 5):
        got = [t["translations"][0]["text"] for t in model.translate([s for s, _ in test], beam=beam)]
        exact = np.mean([g == t for g, (_, t) in zip(got, test)])
        assert r["reports"][beam]["exact_match"] == exact and r["reports"][beam]["beam"] == beam
    again = model.translate(m.NEW_WORDS, beam=5, n_best=3)
    assert [[c["text"] for c in t["translations"]] for t in r["translations"]] == \
        [[c["text"] for c in t["translations"]] for t in again]
    assert all(len(t["translations"]) == 3 for t in r["translations"])
    attention = r["translations"][2]["attention"]
    assert attention.shape[1] == len("python") and np.allclose(attention.sum(axis=1), 1.0, atol=1e-5)
    assert "attention while writing 'python' backwards" in out and "the test split: 30 sources" in out
