"""The threaded paths leave OpenBLAS's own threads asleep: a training step's products run on the scratch
engine's threads (fast/threads.matmul), each on one BLAS thread; so do a Linear layer's (a language model's
output layer over its vocabulary).

Why it matters. After each multi-threaded call OpenBLAS's threads spin for about 80 ms before they sleep
(unless rnnkit.runtime.tune_process() ran before NumPy loaded); one spinning on a core where a part of the
next forward runs makes every step's meeting wait for the scheduler. Measured in a process that imported
NumPy first (Xeon, 2 cores, T 64, input 64, fwd+bwd, ms): RNN hidden 256 batch 8 12.0 before, 1.6 now; GRU
hidden 128 batch 48 12.0 → 7.4, hidden 256 batch 8 16.0 → 4.7; a language model's training step (embedding
128, hidden 256, vocabulary 96, batch 32, T 64): LSTM 54.5 → 23.0, RNN 28.4 → 10.2 (19-26 and 9-11 tuned).

How it is seen: the CPU time of the process's threads that Python did not start (OpenBLAS's workers), read
from /proc, over calls of a layer in a subprocess whose OpenBLAS has 2 threads and its default timeout.
"""
import os
import subprocess
import sys

import pytest

CODE = """
import os, threading, time
import numpy as np
from rnnkit.scratch.recurrent import GRU, LSTM, RNN
from rnnkit.scratch.fast import threads

def foreign_seconds():
    ours = {thread.native_id for thread in threading.enumerate()}
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) not in ours:
            with open(f"/proc/self/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")

cell, hidden, batch = SHAPE
rng = np.random.default_rng(0)
if cell == "lm":  # embedding, LSTM, and a Linear layer over a vocabulary of 96
    from rnnkit.scratch.models import LanguageModel
    model = LanguageModel(96, 32, hidden, cell="lstm", rng=0)
    layer = model.rnn
    data = {"inputs": rng.integers(0, 96, (batch, 16)), "targets": rng.integers(0, 96, (batch, 16))}
    def step():
        model.loss(data)
else:
    layer = {"rnn": RNN, "gru": GRU, "lstm": LSTM}[cell](32, hidden, dtype=np.float32, rng=0)
    x = rng.standard_normal((batch, 16, 32)).astype(np.float32)
    d = rng.standard_normal((batch, 16, hidden)).astype(np.float32)
    def step():
        layer.forward(x)
        layer.backward(d)
step()
time.sleep(0.5)  # OpenBLAS's threads spin for a while after they start, then sleep
before = foreign_seconds()
for _ in range(40):
    step()
print(threads.count(), layer.last_paths[0], foreign_seconds() - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the threads' CPU time from Linux's /proc")
@pytest.mark.parametrize("cell, hidden, batch", [("rnn", 128, 16), ("gru", 128, 16), ("gru", 128, 48),
                                                  ("lstm", 128, 16), ("lm", 128, 16)])
def test_a_threaded_training_step_wakes_no_openblas_thread(cell, hidden, batch):
    pytest.importorskip("numba")
    env = {name: value for name, value in os.environ.items()
           if name not in ("RNNKIT_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")}
    env.update(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", CODE.replace("SHAPE", repr((cell, hidden, batch)))], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, path, seconds = done.stdout.split()
    if count != "2" or path != "threaded":
        pytest.skip(f"the layer ran on {count} thread(s), path {path}: no threaded path here")
    # 40 calls that each woke them would keep OpenBLAS's threads spinning for most of the loop (seconds)
    assert float(seconds) <= 0.05, f"OpenBLAS's own threads ran {seconds} s during the calls"
