"""Run folders as a user meets them through `rnnkit train`: never overwritten by accident, never written where
they do not belong, resumed with their own settings, a torn log line or a divergence handled (rnnkit/runs.py,
rnnkit/train.py)."""
import importlib.util
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from rnnkit import runs
from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import main
from rnnkit.tasks import lm

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"
SMALL = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--bptt", "16", "--no-progress", "--no-plot"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * 30)
    return path


def train(corpus, out, *extra):
    return main(["train", "lm", "--data", str(corpus), *SMALL, "--out", str(out), *extra])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_into_a_run_is_refused_unless_resumed_or_overwritten(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--epochs", "2") == 0
    before = (run / "metrics.jsonl").read_text()
    best = load_checkpoint(run / "best").weights["decoder.weight"]
    capsys.readouterr()
    assert train(corpus, run, "--max-steps", "3") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (run / "metrics.jsonl").read_text() == before  # untouched
    np.testing.assert_array_equal(load_checkpoint(run / "best").weights["decoder.weight"], best)

    (run / "notes.txt").write_text("mine")  # a user's file in the run folder
    assert train(corpus, run, "--max-steps", "3", "--overwrite", "--seed", "1") == 0
    records = lines(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 3]  # a fresh log: step 1, then the final evaluation
    assert load_checkpoint(run / "last", load_optimizer=True).trainer_state["step"] == 3
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "run.json").read_text())["settings"]["training"]["seed"] == 1


@pytest.mark.parametrize("out, message", [("/", "is a filesystem root"), ("", "(--out) is empty"),
                                          ("  ", "(--out) is empty")])
def test_a_root_or_empty_out_is_refused(corpus, out, message, capsys):
    before = sorted(p.name for p in Path("/").iterdir())
    assert main(["train", "lm", "--data", str(corpus), *SMALL, "--max-steps", "1", "--out", out]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in Path("/").iterdir()) == before


def test_a_folder_that_is_not_a_run_is_never_written(corpus, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    for extra in ((), ("--overwrite",)):
        assert train(corpus, folder, "--max-steps", "1", *extra) == 2
        assert "holds other files, not an rnnkit run" in capsys.readouterr().err
        assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]
    assert train(corpus, folder / "cat.jpg", "--max-steps", "1") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(corpus, empty, "--max-steps", "1") == 0  # an empty folder is fine


def test_resume_reads_the_runs_settings_and_refuses_a_different_model(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--epochs", "1", "--cell", "gru", "--lr", "5e-3") == 0
    steps = load_checkpoint(run / "last", load_optimizer=True).trainer_state["step"]
    capsys.readouterr()
    # only the budget: the data, the model and the rest come from run.json
    assert main(["train", "lm", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    last = load_checkpoint(run / "last", load_optimizer=True)
    assert last.trainer_state["step"] == 2 * steps and last.config["model"]["cell"] == "gru"
    assert last.config["training"]["lr"] == 5e-3
    capsys.readouterr()
    assert main(["train", "lm", "--out", str(run), "--resume", "--epochs", "3", "--hidden", "16"]) == 2
    err = capsys.readouterr().err
    assert "--hidden 16 differs from the run's hidden = 8" in err and "run.json" in err
    assert main(["train", "lm", "--out", str(run), "--resume", "--epochs", "3", "--cell", "lstm"]) == 2
    assert "--cell lstm differs from the run's cell = gru" in capsys.readouterr().err
    # a finished run says so, and trains nothing
    assert main(["train", "lm", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "had already finished (step 42;" in capsys.readouterr().err
    assert load_checkpoint(run / "last", load_optimizer=True).trainer_state["step"] == 2 * steps
    # `rnnkit resume RUN` with a larger budget
    assert main(["resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    assert load_checkpoint(run / "last", load_optimizer=True).trainer_state["step"] == 3 * steps
    assert main(["resume", str(tmp_path)]) == 2
    assert "holds no run.json" in capsys.readouterr().err


def test_the_python_api_refuses_a_different_model_on_resume(corpus, tmp_path):
    common = dict(data=str(corpus), hidden=8, layers=1, batch_size=4, bptt=16, progress=False, plot=False,
                  out=str(tmp_path / "run"))
    lm.train_lm(**common, max_steps=2, log=lambda *a: None)
    with pytest.raises(ValueError, match="--hidden 12 differs from the run's hidden = 8"):
        lm.train_lm(lm.LMSettings.from_flat({**common, "hidden": 12, "resume": True, "max_steps": 4}),
                    log=lambda *a: None)


def test_a_torn_last_line_of_the_log_does_not_block_resume(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--max-steps", "20", "--checkpoint-every", "10") == 0
    log = run / "metrics.jsonl"
    kept = lines(log)
    with log.open("a") as f:
        f.write('{"step": 21, "epoch": 0, "loss": 2.1, "gra')  # a crash in the middle of an append
    capsys.readouterr()
    assert train(corpus, run, "--max-steps", "25", "--resume") == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "dropped its last line, cut short by a crash" in err
    records = lines(log)  # every line whole again
    assert records[:len(kept)] == kept and records[-1]["step"] == 25
    # a broken line that is not the last is an error naming it
    log.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not valid JSON"):
        runs.read_metrics(log)


def test_an_infinite_lr_is_refused_before_any_warning(corpus, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (overflow) would raise here
        for lr in ("inf", "nan", "-1", "0"):
            assert train(corpus, tmp_path / "run", "--lr", lr, "--max-steps", "2", "--clip", "0") == 2
            assert "lr must be a positive, finite number" in capsys.readouterr().err
        assert train(corpus, tmp_path / "run", "--clip", "inf", "--max-steps", "2") == 2
        assert "clip must be positive and finite" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_huge_lr_without_clipping_stops_as_diverged(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--lr", "1e6", "--clip", "0", "--eval-every", "4", "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert "error: the run diverged: the validation loss was more than 10x the first step's loss" in err
    assert "at 3 evaluations in a row" in err and "Try a lower --lr" in err
    assert not (run / "last").exists()  # nothing diverged is kept as if it were good


def test_divergence_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    """The first evaluation is good; the next three are far above the first step's loss (about 2.8): the run
    stops at the fourth, with best/ and last/ both at the good one (step 3)."""
    from rnnkit.train import TrainingError

    scripted = iter([2.0, 50.0, 80.0, 1e5, 1.0])
    monkeypatch.setattr(lm.LMTask, "evaluate", lambda self, engine: {"loss": next(scripted)})
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"diverged.*\(50 at step 6, 80 at step 9, 1e\+05 at step 12\).*"
                                            r"best/ holds step 3 \(validation loss 2\).*last good checkpoint .*"
                                            r"\(step 3;"):
        lm.train_lm(data=str(corpus), hidden=8, layers=1, batch_size=4, bptt=16, epochs=3, eval_every=3,
                    progress=False, plot=False, out=str(run), log=lambda *a: None)
    assert load_checkpoint(run / "last", load_optimizer=True).trainer_state["step"] == 3
    assert [r["step"] for r in lines(run / "metrics.jsonl") if "val_loss" in r] == [3, 6, 9, 12]


def test_a_run_logs_timestamps_and_draws_its_curves(corpus, tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    assert main(["train", "lm", "--data", str(corpus), *SMALL[:-1], "--max-steps", "12", "--log-every", "5",
                 "--out", str(run)]) == 0
    records = lines(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 5, 10, 12]
    import datetime

    for r in records:
        when = datetime.datetime.fromisoformat(r["time"])
        assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 600
    walls = [r["wall_s"] for r in records]
    assert walls == sorted(walls) and 0 < walls[0] < 600
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_logging(corpus, tmp_path, capsys):
    have = any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX"))
    run = tmp_path / "run"
    code = train(corpus, run, "--max-steps", "4", "--log-every", "2", "--tensorboard")
    if not have:  # a clear error, before any training
        assert code == 2 and "--tensorboard needs the tensorboard package" in capsys.readouterr().err
        assert not run.exists()
        pytest.skip("the tensorboard package is not installed")
    assert code == 0
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100


def test_validation_comes_within_each_long_epoch():
    """Without --eval-every: each epoch, and a long one in equal parts of at most 250 steps; 0: each epoch."""
    from rnnkit.train import eval_interval

    assert [eval_interval(None, n) for n in (21, 250, 251, 405, 1019, 3000)] == [21, 250, 126, 203, 204, 250]
    assert eval_interval(0, 1019) == 1019 and eval_interval(7, 1019) == 7


def test_the_summary_the_estimate_and_a_slow_first_step(tmp_path, monkeypatch, capsys):
    """Before training: parameters, steps per epoch, when it validates; after a few steps: the estimated time
    and when the first validation comes; a first step that takes long is said to be compiling, as it runs."""
    import time as time_module

    from rnnkit.scratch.engine import ScratchEngine
    from rnnkit.train import _Clock

    data = tmp_path / "verse.txt"
    data.write_text(VERSE * 600)  # 25,920 characters: 405 windows of 4 x 16
    monkeypatch.setattr(_Clock, "SLOW_FIRST_STEP", 0.05)
    real_step, calls = ScratchEngine.train_step, []

    def step(self, batch, carry=None):
        calls.append(1)
        if len(calls) == 1:
            time_module.sleep(0.3)  # as numba compiling the kernels
        return real_step(self, batch, carry)

    monkeypatch.setattr(ScratchEngine, "train_step", step)
    evaluated = []
    monkeypatch.setattr(lm.LMTask, "evaluate", lambda self, engine: evaluated.append(1) or {"loss": 2.0})
    result = lm.train_lm(data=str(data), hidden=8, layers=1, batch_size=4, bptt=16, epochs=1, progress=False,
                         plot=False, out=str(tmp_path / "run"))
    out, err = capsys.readouterr()
    assert out.startswith("char-level ") and "25,920 training and 2,880 validation tokens, vocabulary 16" in out
    # embedding 16x8, LSTM 4*8*(8+8) + 2*4*8, decoder 16*8 + 16
    assert "848 parameters; 405 steps per epoch, 405 in all; validation every 203 steps and at the end of each " \
           "epoch" in err
    compiling, done = err.index("first step: compiling kernels (once) ..."), err.index("first step done in ")
    assert compiling < done
    estimate = re.search(r"estimated time: \d+ s for the 399 steps to go at ([\d.e-]+) s/step \(scratch engine: "
                         r"LSTM on \w+\), plus the validations; the next validation in 197 steps, ~\d+ s", err)
    assert estimate and float(estimate[1]) < 0.3, err  # the first step left out
    assert [h["step"] for h in result.state.history] == [203, 405] and len(evaluated) == 2
