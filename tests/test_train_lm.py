"""The training loop and the language model end to end: learning, generation, exact resume, bad runs."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main
from rnnkit.tasks import lm
from rnnkit.train import TrainConfig, TrainingError, learning_rate

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * 30)
    return path


def test_a_small_corpus_is_learned_and_reproduced(corpus, tmp_path):
    result = lm.train_lm(data=str(corpus), level="char", hidden=48, layers=1, dropout=0.0, batch_size=4,
                         bptt=24, epochs=25, lr=1e-2, out=str(tmp_path / "run"), progress=False, seed=0)
    assert result.state.best_loss < 0.15  # nats per character; an untrained model starts near ln(18) = 2.9
    history = [h["val_loss"] for h in result.state.history]
    assert history[0] > 1.0 and history[-1] < 0.2
    model = lm.load_lm(result.best)
    text = lm.generate(model, prompt="the dog", length=len(" sat on the log.\nthe cat sat"), temperature=0)
    assert text == "the dog sat on the log.\nthe cat sat"
    metrics = lm.evaluate_lm(result.best, data=str(corpus))
    assert metrics["bits_per_char"] < 0.5 and metrics["tokens"] == len(VERSE) * 30


def test_word_level_model_on_a_file(corpus, tmp_path):
    result = lm.train_lm(data=str(corpus), level="word", hidden=32, layers=1, dropout=0.0, batch_size=2,
                         bptt=8, epochs=15, lr=1e-2, out=str(tmp_path / "run"), progress=False)
    model = lm.load_lm(result.best)
    assert "<eos>" in model.vocab and "cat" in model.vocab
    assert result.state.best_loss < 0.6
    text = lm.generate(model, prompt="the dog sat on", length=2, temperature=0)
    assert text == "the dog sat on the log"


def test_sampling_filters():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    draws = [lm.sample_token(logits, rng, top_k=2) for _ in range(400)]
    assert set(draws) == {0, 1}
    draws = [lm.sample_token(logits, rng, top_p=0.79) for _ in range(400)]
    assert set(draws) == {0, 1}  # 0.5 + 0.3 reaches 0.79
    draws = [lm.sample_token(logits, rng, top_p=0.81) for _ in range(400)]
    assert set(draws) == {0, 1, 2}
    assert lm.sample_token(logits, rng, temperature=0) == 0
    cold = [lm.sample_token(logits, rng, temperature=0.05) for _ in range(200)]
    assert cold.count(0) == 200


def test_learning_rate_schedules():
    c = TrainConfig(lr=1.0, schedule="cosine", warmup_steps=4)
    assert [round(learning_rate(c, s, 14), 3) for s in (0, 3)] == [0.2, 0.8]
    assert learning_rate(c, 4, 14) == 1.0 and abs(learning_rate(c, 14, 14)) < 1e-12
    assert learning_rate(TrainConfig(lr=1.0, schedule="linear"), 5, 10) == 0.5
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="exotic")


def run_cli(args):
    """`rnnkit ARGS` as a separate process; its stderr goes to a file beside the run (read on failure)."""
    with open(Path(args[args.index("--out") + 1]).with_suffix(".log"), "a") as log:  # the child keeps its copy
        return subprocess.Popen([sys.executable, "-m", "rnnkit.cli", *args], stdout=subprocess.DEVNULL, stderr=log)


def log_of(run: Path) -> str:
    return run.with_suffix(".log").read_text()


def saved_step(run: Path) -> int:
    try:
        return json.loads((run / "last" / "trainer.json").read_text())["trainer"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_resume_after_sigkill_is_bit_identical(corpus, tmp_path):
    """A run killed with SIGKILL and resumed ends with exactly the weights of a run that never stopped."""
    args = ["train", "lm", "--data", str(corpus), "--hidden", "32", "--layers", "2", "--dropout", "0.3",
            "--batch-size", "4", "--bptt", "16", "--epochs", "6", "--lr", "3e-3", "--schedule", "cosine",
            "--checkpoint-every", "3", "--eval-every", "7", "--seed", "3", "--no-progress", "--no-plot"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_cli([*args, "--out", str(straight)])
    assert done.wait(timeout=120) == 0, log_of(straight)

    proc = run_cli([*args, "--out", str(killed)])
    deadline = time.time() + 60
    while saved_step(killed) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    at_kill = json.loads((killed / "last" / "trainer.json").read_text())["trainer"]
    total = json.loads((straight / "last" / "trainer.json").read_text())["trainer"]["step"]
    assert 6 <= at_kill["step"] < total and not at_kill["finished"]

    resumed = run_cli([*args, "--out", str(killed), "--resume"])
    assert resumed.wait(timeout=120) == 0, log_of(killed)
    a = load_checkpoint(straight / "last", load_optimizer=True)
    b = load_checkpoint(killed / "last", load_optimizer=True)
    assert a.trainer_state["step"] == b.trainer_state["step"] == total
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name], err_msg=name)
    np.testing.assert_array_equal(load_checkpoint(straight / "best").weights["decoder.weight"],
                                  load_checkpoint(killed / "best").weights["decoder.weight"])
    # the metrics log has each step once
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    from rnnkit.scratch.engine import ScratchEngine

    real_step, calls = ScratchEngine.train_step, []

    def poisoned(self, batch, carry=None):  # the fifth step's loss is NaN (the engine then skips the update)
        calls.append(1)
        return (float("nan"), 0.0, carry) if len(calls) == 5 else real_step(self, batch, carry)

    monkeypatch.setattr(ScratchEngine, "train_step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss became nan .* at step 5.*last good checkpoint .*\(step 4;"):
        lm.train_lm(data=str(corpus), hidden=16, layers=1, batch_size=4, bptt=16, epochs=2,
                    checkpoint_every=2, out=str(run), progress=False)
    assert load_checkpoint(run / "last", load_optimizer=True).trainer_state["step"] == 4


def test_weights_that_overflow_are_never_saved(corpus, tmp_path, monkeypatch):
    """A finite loss and gradient whose update still leaves a weight infinite: last/ keeps the step before."""
    from rnnkit.scratch.engine import ScratchEngine

    real_step, calls = ScratchEngine.train_step, []

    def overflowing(self, batch, carry=None):
        out = real_step(self, batch, carry)
        calls.append(1)
        if len(calls) == 3:
            self.model.decoder.bias.data[0] = np.inf  # as a huge update would leave it
        return out

    monkeypatch.setattr(ScratchEngine, "train_step", overflowing)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"weights became non-finite after the update of step 3 "
                                            r"\(in decoder.bias\).*\(step 2;"):
        lm.train_lm(data=str(corpus), hidden=16, layers=1, batch_size=4, bptt=16, epochs=2,
                    checkpoint_every=1, out=str(run), progress=False)
    last = load_checkpoint(run / "last", load_optimizer=True)
    assert last.trainer_state["step"] == 2 and np.isfinite(last.weights["decoder.bias"]).all()


def test_cli_errors_are_clear(corpus, tmp_path, capsys):
    assert main(["generate", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "lm", "--data", str(empty), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["train", "lm", "--data", str(corpus), "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "lm", "--data", str(corpus), "--hidden", "8", "--embedding", "4", "--tie",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "tie_weights" in capsys.readouterr().err


def test_generate_and_evaluate_commands(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "lm", "--data", str(corpus), "--hidden", "16", "--layers", "1", "--epochs", "1",
                 "--batch-size", "4", "--bptt", "16", "--out", str(out), "--no-progress"]) == 0
    assert "best checkpoint" in capsys.readouterr().out
    assert main(["generate", str(out / "best"), "--prompt", "the", "--length", "20", "--seed", "4"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", str(out / "best"), "--prompt", "the", "--length", "20", "--seed", "4"]) == 0
    assert capsys.readouterr().out == first and first.startswith("the")
    # tokens the model does not know are read as its unknown token, and the command says so
    assert main(["generate", str(out / "best"), "--prompt", "ЖЖthe", "--length", "5", "--seed", "1"]) == 0
    said = capsys.readouterr()
    assert said.out.startswith("ЖЖthe") and said.err == ("note: 2 token(s) of the prompt are unknown to the model's "
                                                         "vocabulary (e.g. 'Ж') and are read as its unknown token\n")
    # a length held in memory past reason: an error, not hours of work
    assert main(["generate", str(out / "best"), "--length", "1000001"]) == 2
    assert "length must be 0..1,000,000 tokens" in capsys.readouterr().err
    assert main(["evaluate", str(out / "best"), "--data", str(corpus), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"loss", "perplexity", "bits_per_char"}
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]))


@pytest.mark.parametrize("trained_on, generated_on", [("scratch", "torch"), ("torch", "scratch")])
def test_a_checkpoint_generates_the_same_text_on_both_engines(corpus, tmp_path, trained_on, generated_on):
    pytest.importorskip("torch")
    result = lm.train_lm(data=str(corpus), hidden=24, layers=2, cell="gru", batch_size=4, bptt=16, epochs=2,
                         engine=trained_on, device="cpu", dtype="float64", out=str(tmp_path / "run"),
                         progress=False)
    texts = {}
    for engine in ("scratch", "torch"):
        model = lm.load_lm(result.best, engine=engine, device="cpu")
        texts[engine] = lm.generate(model, prompt="the ", length=80, temperature=1.0, top_k=10, top_p=0.95,
                                    seed=7)
    assert texts[trained_on] == texts[generated_on]
    assert len(texts["torch"]) == 84
    scratch_eval = lm.evaluate_lm(result.best, data=str(corpus), engine="scratch")
    torch_eval = lm.evaluate_lm(result.best, data=str(corpus), engine="torch", device="cpu")
    assert scratch_eval["loss"] == pytest.approx(torch_eval["loss"], rel=1e-9)


def test_torch_engine_trains_and_resumes_through_the_cli(corpus, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    args = ["train", "lm", "--data", str(corpus), "--engine", "torch", "--device", "cpu", "--hidden", "16",
            "--layers", "1", "--batch-size", "4", "--bptt", "16", "--out", str(out), "--no-progress"]
    assert main([*args, "--epochs", "1"]) == 0
    first = load_checkpoint(out / "last", load_optimizer=True).trainer_state["step"]
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert load_checkpoint(out / "last", load_optimizer=True).trainer_state["step"] == 2 * first
    assert main([*args, "--epochs", "3", "--engine", "scratch", "--resume"]) == 2
    assert "--engine scratch differs from the run's engine = torch" in capsys.readouterr().err


def test_validation_every_n_steps_and_early_stopping(corpus, tmp_path, monkeypatch):
    """Evaluations every 3 steps; the loss stops improving after the second, so with patience 2 the run
    stops at the fourth (step 12, within the first epoch) and best/ holds the weights of step 6."""
    scripted = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(lm.LMTask, "evaluate", lambda self, engine: {"loss": next(scripted)})
    common = dict(data=str(corpus), hidden=16, layers=1, dropout=0.3, batch_size=4, bptt=16, epochs=5,
                  eval_every=3, seed=2, progress=False)
    run = lm.train_lm(**common, patience=2, out=str(tmp_path / "run"))
    assert len(lm.LMTask(lm.load_corpus(data=str(corpus)), {}, 4, 16, {}).batches_train) > 12  # one epoch
    assert run.state.step == 12 and run.state.finished
    assert (run.state.best_step, run.state.best_loss, run.state.bad_evals) == (6, 2.0, 2)
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if "val_loss" in line]
    assert [(e["step"], e["val_loss"]) for e in evals] == [(3, 3.0), (6, 2.0), (9, 2.5), (12, 2.6)]
    assert all(0 <= e["eval_seconds"] < 5 for e in evals)  # how long each evaluation took

    scripted = iter([3.0, 2.0])
    six = lm.train_lm(**common, max_steps=6, out=str(tmp_path / "six"))  # the same run, stopped at step 6
    best, at_six = load_checkpoint(run.best).weights, load_checkpoint(six.last).weights
    for name in at_six:
        np.testing.assert_array_equal(best[name], at_six[name], err_msg=name)


def test_progress_bar_shows_loss_speed_and_eta(corpus, tmp_path, capsys):
    lm.train_lm(data=str(corpus), hidden=8, layers=1, batch_size=4, bptt=16, epochs=1, log_every=2,
                out=str(tmp_path / "run"), progress=True)
    err = capsys.readouterr().err
    bar = [line for line in err.replace("\r", "\n").splitlines() if "step/s" in line or "s/step" in line][-1]
    assert re.search(r"100%.* (\d+)/\1 ", bar) and "loss=" in bar and "tok_s=" in bar, bar
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", bar), bar  # elapsed < remaining (the ETA)
    assert "validation loss" in err


def test_tied_weights_train_and_move_between_engines(corpus, tmp_path):
    pytest.importorskip("torch")
    result = lm.train_lm(data=str(corpus), hidden=16, layers=1, tie_weights=True, batch_size=4, bptt=16,
                         epochs=1, engine="torch", device="cpu", dtype="float64", out=str(tmp_path / "run"),
                         progress=False)
    weights = load_checkpoint(result.best).weights
    np.testing.assert_array_equal(weights["embedding.weight"], weights["decoder.weight"])
    scratch, torch_lm = (lm.load_lm(result.best, engine=e, device="cpu") for e in ("scratch", "torch"))
    model = scratch.engine.model
    assert model.decoder.weight is model.embedding.weight  # still one parameter after loading
    assert lm.generate(scratch, "the ", 40, 1.0, seed=3) == lm.generate(torch_lm, "the ", 40, 1.0, seed=3)


def test_tokens_per_second_leaves_out_evaluations_and_saves(corpus, tmp_path, monkeypatch):
    """On a fake clock where each update takes 1 s and each evaluation 100 s, every speed readout is
    exactly the tokens of its updates (4 x 16 each) per second of updates."""
    import rnnkit.train as train_module
    from rnnkit.scratch.engine import ScratchEngine

    now = [0.0]
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: now[0])
    real_step, real_eval = ScratchEngine.train_step, lm.LMTask.evaluate

    def step(self, batch, carry=None):
        now[0] += 1.0
        return real_step(self, batch, carry)

    def evaluate(self, engine):
        now[0] += 100.0
        return real_eval(self, engine)

    monkeypatch.setattr(ScratchEngine, "train_step", step)
    monkeypatch.setattr(lm.LMTask, "evaluate", evaluate)
    lm.train_lm(data=str(corpus), hidden=8, layers=1, batch_size=4, bptt=16, epochs=2, eval_every=3,
                log_every=2, out=str(tmp_path / "run"), progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    # 21 windows per epoch, the last one short (12 tokens); readouts at step 1 and every 2 steps: those at
    # steps 22 and 42 cover a short window and a full one, (12 + 64) / 2 s
    assert speeds == [64.0] * 11 + [38.0] + [64.0] * 9 + [38.0]
    assert {r["eval_seconds"] for r in records if "val_loss" in r} == {100.0}
