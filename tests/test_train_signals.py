"""Ctrl-C (SIGINT) or SIGTERM in the middle of an epoch, before any evaluation: the run saves last/ and exits
130 or 143, and resuming it ends with exactly the weights of a run that never stopped. Timed saves of last/."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.tasks import lm

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"
# about 420 windows in the one epoch, the run ends at step 80, its only evaluation: the signal comes long before
ARGS = ["--level", "char", "--hidden", "32", "--layers", "1", "--dropout", "0.3", "--batch-size", "4", "--bptt",
        "16", "--epochs", "1", "--max-steps", "80", "--eval-every", "0", "--log-every", "1", "--seed", "4",
        "--no-progress", "--no-plot"]


def start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RNNKIT_NO_NUMBA": "1"}  # the NumPy path: no kernels to compile in each process
    with open(out.with_suffix(".log"), "a") as log:
        return subprocess.Popen([sys.executable, "-m", "rnnkit", "train", "lm", "--data", str(data), *ARGS,
                                 "--out", str(out), *extra], stdout=subprocess.DEVNULL, stderr=log, env=env)


def logged_steps(out: Path) -> list:
    try:
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.endswith("}")]
    except (OSError, ValueError):
        return []


SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory):
    """A straight run, and two runs of the same settings stopped by SIGINT and SIGTERM after their third step
    (all three at once), then resumed (both at once). Returns (folders by name, what each stopped run had
    saved when it stopped, the stopped runs' stderr)."""
    root = tmp_path_factory.mktemp("signals")
    data = root / "verse.txt"
    data.write_text(VERSE * 600)
    outs = {name: root / name for name in ("straight", *SIGNALS)}
    procs = {name: start(data, out) for name, out in outs.items()}
    # each run is signalled as soon as it has logged its third step, watched side by side: waiting for one run
    # first let the other, on a quiet machine, finish its 80 steps before its signal came
    waiting = dict(SIGNALS)
    deadline = time.time() + 600  # a loaded machine may take minutes to start three processes
    while waiting and time.time() < deadline and all(procs[name].poll() is None for name in waiting):
        for name in [name for name in waiting if len(logged_steps(outs[name])) >= 3]:
            procs[name].send_signal(waiting.pop(name)[0])
        time.sleep(0.001)
    for name in waiting:  # a signal before training, or after it ended, would test nothing
        pytest.fail(f"{name}: not signalled after a third step (exit code {procs[name].poll()}, 600 s at most):\n"
                    + outs[name].with_suffix(".log").read_text())
    saved, errs = {}, {}
    for name, proc in procs.items():
        expected = SIGNALS[name][1] if name in SIGNALS else 0
        assert proc.wait(timeout=120) == expected, outs[name].with_suffix(".log").read_text()
    for name in SIGNALS:
        errs[name] = outs[name].with_suffix(".log").read_text()
        saved[name] = load_checkpoint(outs[name] / "last", load_optimizer=True).trainer_state
        saved[name]["best_exists"] = (outs[name] / "best").exists()
        procs[name] = start(data, outs[name], "--resume")
    for name in SIGNALS:
        assert procs[name].wait(timeout=120) == 0, outs[name].with_suffix(".log").read_text()
    return outs, saved, errs


@pytest.mark.parametrize("name", list(SIGNALS))
def test_a_signal_mid_epoch_saves_last_and_resume_ends_as_a_straight_run(stopped_runs, name):
    outs, saved, errs = stopped_runs
    assert f"{name}: saving last/ after this step" in errs[name]
    assert "interrupted: stopped by" in errs[name] and "last good checkpoint" in errs[name]
    at_stop = saved[name]
    assert 3 <= at_stop["step"] < 80 and not at_stop["finished"]
    assert at_stop["history"] == [] and not at_stop["best_exists"]  # before the first evaluation
    a = load_checkpoint(outs["straight"] / "last", load_optimizer=True)
    b = load_checkpoint(outs[name] / "last", load_optimizer=True)
    assert a.trainer_state["step"] == b.trainer_state["step"] == 80
    for weight in a.weights:
        np.testing.assert_array_equal(a.weights[weight], b.weights[weight], err_msg=weight)
    steps = [r["step"] for r in logged_steps(outs[name]) if "loss" in r]
    assert steps == list(range(1, 81))  # each step logged once, the resumed part included
    walls = [r["wall_s"] for r in logged_steps(outs[name])]
    assert walls == sorted(walls)  # wall time goes on from where the stopped run left it


def test_last_is_saved_every_few_minutes_of_training(tmp_path, monkeypatch):
    """--checkpoint-minutes (10 by default): a save of last/ whenever that much training time has passed since
    the last one, so a long epoch is resumable; 0: none but those at evaluations and at the end."""
    import rnnkit.train as train_module

    saves = []
    real_save = train_module._save
    monkeypatch.setattr(train_module, "_save", lambda path, task, engine, state, *a, **k: (
        saves.append((path.name, state.step)), real_save(path, task, engine, state, *a, **k))[1])
    data = tmp_path / "verse.txt"
    data.write_text(VERSE * 60)
    common = dict(data=str(data), hidden=8, layers=1, batch_size=4, bptt=16, max_steps=6, eval_every=0,
                  progress=False, plot=False, log=lambda *a: None)
    assert train_module.TrainConfig().checkpoint_minutes == 10
    lm.train_lm(**common, out=str(tmp_path / "a"), checkpoint_minutes=1e-9)  # due after every step
    assert [s for name, s in saves if name == "last"] == [1, 2, 3, 4, 5, 6]
    saves.clear()
    lm.train_lm(**common, out=str(tmp_path / "b"), checkpoint_minutes=0)
    assert [s for name, s in saves if name == "last"] == [6]


def test_a_signal_while_the_last_step_saves_still_stops_the_caller(tmp_path, monkeypatch):
    """SIGTERM noted during the final save of last/ (after the loop's last look at the signals): the run is
    whole, and train still raises TrainingInterrupted, so an ensemble's next member does not start (one
    ensemble of 10^6 members went on training for minutes after `timeout` had sent its SIGTERM)."""
    import rnnkit.train as train_module

    real_save = train_module._save

    def save_then_signal(path, task, engine, state, *a, **k):
        real_save(path, task, engine, state, *a, **k)
        if path.name == "last" and state.step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_module, "_save", save_then_signal)
    data = tmp_path / "verse.txt"
    data.write_text(VERSE * 60)
    with pytest.raises(train_module.TrainingInterrupted, match="SIGTERM at the end of the run") as stopped:
        lm.train_lm(data=str(data), hidden=8, layers=1, batch_size=4, bptt=16, max_steps=6, eval_every=0,
                    progress=False, plot=False, log=lambda *a: None, out=str(tmp_path / "run"))
    assert stopped.value.exit_code == 143
    assert load_checkpoint(tmp_path / "run" / "last", load_optimizer=True).trainer_state["step"] == 6
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is given back
