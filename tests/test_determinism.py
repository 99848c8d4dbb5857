"""Same seed, same thread count ⇒ same bits, on more than one thread: two training runs, and a run killed
with SIGKILL and resumed, end with identical weights.

conftest.py gives the suite one BLAS thread; these runs are `rnnkit` processes with the thread variables set
to 2 (the default on a 2-CPU machine) and RNNKIT_NUM_THREADS unset, so the scratch engine runs on 2 threads:
the LSTM on its threaded path (batch 24 × hidden 64: two parts of 32 units, see fast/thresholds.py) with its
backward's products split over the threads (fast/threads.matmul), the GRU's forward on its threaded path too
(batch·hidden > 384), its backward's products split over the threads too. All the runs
start at once: a busy machine is where a timing-dependent reduction shows (before the fix in
threads.matmul, a part of a product now and then ran on 2 OpenBLAS threads instead of 1, which rounds
differently, and same-seed LSTM runs ended a few ulps apart).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit.checkpoint import flatten_state, load_checkpoint

THREADS = "2"
STEPS = 36
MODEL = ["--level", "char", "--layers", "2", "--hidden", "64", "--batch-size", "24", "--bptt", "16",
         "--dropout", "0.2", "--lr", "3e-3", "--max-steps", str(STEPS), "--eval-every", "12",
         "--checkpoint-every", "4", "--seed", "5", "--no-progress"]


def two_thread_environment() -> dict:
    env = {name: value for name, value in os.environ.items() if name != "RNNKIT_NUM_THREADS"}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = THREADS
    return env


def start(data: Path, out: Path, cell: str, *extra: str) -> subprocess.Popen:
    """`rnnkit train lm` on 2 threads, in the background; its stderr goes to OUT.log."""
    args = [sys.executable, "-m", "rnnkit.cli", "train", "lm", "--data", str(data), "--cell", cell, *MODEL,
            "--out", str(out), *extra]
    with open(out.with_suffix(".log"), "a") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(args, env=two_thread_environment(), stdout=subprocess.DEVNULL, stderr=log)


def finish(proc: subprocess.Popen, out: Path) -> None:
    assert proc.wait(timeout=180) == 0, out.with_suffix(".log").read_text()


def saved_step(out: Path) -> int:
    try:
        return json.loads((out / "last" / "trainer.json").read_text())["trainer"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


def assert_same_bits(a: Path, b: Path, optimizer: bool = False) -> None:
    x, y = (load_checkpoint(path / "last", load_optimizer=optimizer) for path in (a, b))
    assert sorted(x.weights) == sorted(y.weights)
    for name in x.weights:
        np.testing.assert_array_equal(x.weights[name], y.weights[name], err_msg=f"{name}: {a.name} vs {b.name}")
    if optimizer:
        assert x.trainer_state["step"] == y.trainer_state["step"] == STEPS
        (xs, x_rest), (ys, y_rest) = flatten_state(x.optimizer_state), flatten_state(y.optimizer_state)
        assert x_rest == y_rest and sorted(xs) == sorted(ys)
        for name in xs:
            np.testing.assert_array_equal(xs[name], ys[name], err_msg=f"optimizer {name}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Same-seed runs, all started at once: LSTM three times (one killed at a checkpoint and resumed), GRU
    twice. Returns {name: output folder}."""
    root = tmp_path_factory.mktemp("determinism")
    data = root / "text.txt"
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "log", "ran", "far", "big", "red"]
    data.write_text(" ".join(rng.choice(words, 3000)) + "\n")
    names = {"lstm-a": "lstm", "lstm-b": "lstm", "lstm-killed": "lstm", "gru-a": "gru", "gru-b": "gru"}
    outs = {name: root / name for name in names}
    procs = {name: start(data, outs[name], cell) for name, cell in names.items()}

    killed, proc = outs["lstm-killed"], procs.pop("lstm-killed")
    deadline = time.time() + 120
    while saved_step(killed) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, killed.with_suffix(".log").read_text()
    at_kill = json.loads((killed / "last" / "trainer.json").read_text())["trainer"]
    assert 8 <= at_kill["step"] < STEPS and not at_kill["finished"]
    procs["lstm-killed"] = start(data, killed, "lstm", "--resume")

    for name, proc in procs.items():
        finish(proc, outs[name])
    return outs


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_same_seed_runs_on_two_threads_are_bit_identical(runs, cell):
    assert_same_bits(runs[f"{cell}-a"], runs[f"{cell}-b"])


def test_sigkill_and_resume_on_two_threads_is_bit_identical(runs):
    assert_same_bits(runs["lstm-a"], runs["lstm-killed"], optimizer=True)
    steps = [json.loads(line)["step"] for line in (runs["lstm-killed"] / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps))  # each logged step once, the resumed part included


def test_matmul_leaves_openblas_thread_count_as_it_found_it():
    """threads.matmul runs its parts on one OpenBLAS thread each by setting OpenBLAS's count, which is
    process-wide: set once before the parts start, put back once after they all end, to the caller's value
    (before, each part reset it on its way out: to all of OpenBLAS's threads, even under a threadpoolctl limit)."""
    pytest.importorskip("threadpoolctl")
    code = """
import numpy as np
from threadpoolctl import threadpool_limits
from rnnkit.scratch.fast import threads
if threads._OPENBLAS.local_threads is None:
    print("no OpenBLAS controls")
else:
    threads.set_count(2)
    a = np.ones((64, 64), dtype=np.float32)
    seen = [threads._OPENBLAS.get_threads()]
    threads.matmul(a, a)
    seen.append(threads._OPENBLAS.get_threads())
    with threadpool_limits(1):
        threads.matmul(a, a)
        seen.append(threads._OPENBLAS.get_threads())
    print(*seen)
"""
    done = subprocess.run([sys.executable, "-c", code], env=two_thread_environment(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "no OpenBLAS controls":
        pytest.skip("NumPy's BLAS is not an OpenBLAS with thread controls")
    if done.stdout.split()[0] != "2":
        pytest.skip("OpenBLAS runs on fewer than 2 threads here (it takes no more than the CPUs)")
    assert done.stdout.split() == ["2", "2", "1"]
