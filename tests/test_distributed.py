"""Distributed data parallel training (torchrun): the same steps as one process, rank 0 alone writes, exact resume.

Two CPU processes on gloo, each set up exactly as torchrun sets up its workers (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT), forked from this process (torch is imported once; spawned where torch is a CUDA build) and
running `rnnkit.cli.main`; one test starts the real launcher (`python -m torch.distributed.run ... -m rnnkit
train ...`). Float64, tiny models.
"""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import cli
from rnnkit.checkpoint import load_checkpoint
from rnnkit.data.batching import LMBatcher, PairBatcher, batchify, rank_rows

ROOT = Path(__file__).resolve().parent.parent
WRITES = ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp",
          "os.truncate", "os.symlink", "os.link", "shutil.copyfile", "shutil.move")


# ------------------------------------------------------------------------------------------------ the shards

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4))
def test_rank_rows_split_a_global_batch_evenly_and_whole(n, world):
    rows = np.arange(100, 100 + n)
    parts = [rank_rows(rows, r, world) for r in range(world)]
    assert len({len(p) for p in parts}) == 1                     # every rank as many rows
    assert sorted(set(np.concatenate(parts))) == list(rows)       # together: every row of the batch
    assert sum(map(len, parts)) - n == -n % world                 # topped up by the fewest rows
    if n % world == 0:
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), rows)  # no row twice
    np.testing.assert_array_equal(rank_rows(rows, 0, 1), rows)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 300), st.integers(1, 3), st.integers(1, 4), st.integers(1, 7))
def test_lm_shards_are_the_rows_of_the_world_streams(n, batch, world, bptt):
    ids = np.arange(n) % 97
    if n // (batch * world) < 2:
        return
    whole = batchify(ids, batch * world)
    parts = [LMBatcher(ids, batch, bptt, rank=r, world=world) for r in range(world)]
    np.testing.assert_array_equal(np.concatenate([p.data for p in parts]), whole)  # contiguous, in rank order
    assert {len(p) for p in parts} == {len(LMBatcher(ids, batch * world, bptt))}   # the same windows
    one = LMBatcher(ids, batch * world, bptt)
    for k in range(len(parts[0])):
        np.testing.assert_array_equal(np.concatenate([p[k][0] for p in parts]), one[k][0])


def test_lm_shard_of_a_memory_mapped_corpus_stays_a_view_of_its_file(tmp_path):
    path = tmp_path / "train.bin"
    np.arange(1000, dtype="<u2").tofile(path)
    ids = np.memmap(path, dtype="<u2", mode="r", shape=(1000,))
    shard = LMBatcher(ids, 4, 10, rank=1, world=2)
    assert np.shares_memory(shard.data, ids) and shard.data.shape == (4, 125)  # nothing read or copied
    np.testing.assert_array_equal(shard.data[0, :3], [500, 501, 502])  # rank 1: the second half, contiguous


def test_pair_batches_of_two_ranks_are_one_world_batch_split():
    pairs = [(np.arange(1 + i % 5), np.arange(1 + i % 3)) for i in range(37)]
    whole = PairBatcher(pairs, 8, seed=3)
    ranks = [PairBatcher(pairs, 4, seed=3, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(whole) == 5
    for b0, b1, b in zip(ranks[0].batches(1), ranks[1].batches(1), whole.batches(1)):
        assert set(b0["index"]) | set(b1["index"]) == set(b["index"])
        assert len(b0["index"]) == len(b1["index"])


# ------------------------------------------------------------------------------------------------ launches

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, argv: list, root: str, record: Path, hook) -> None:
    """One rank, as torchrun starts it; records every file it creates, changes or removes under `root`."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    writes = []

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        else:
            path, writing = (args[0] if args else ""), event in WRITES
        if writing and isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(root):
            writes.append(f"{event} {os.fsdecode(path)}")

    sys.addaudithook(audit)
    if hook is not None:
        hook(rank)
    code = cli.main(argv)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    (record / f"writes-{rank}.json").write_text(json.dumps(writes))
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)


def start_method() -> str:
    """"fork" (fast: torch is imported once), but "spawn" with a CUDA build of torch: once this process has
    run a backward pass, such a build refuses autograd in a forked child ("Unable to handle autograd's
    threading in combination with fork-based multiprocessing"). RNNKIT_TEST_START_METHOD overrides it."""
    import torch

    return os.environ.get("RNNKIT_TEST_START_METHOD") or ("fork" if torch.version.cuda is None else "spawn")


def launch(argv: list, out: Path, record: Path, world: int = 2, hook=None) -> list[int]:
    """Train `argv` on `world` ranks, forked (or spawned, see start_method); their exit codes."""
    import rnnkit.tasks.classify  # noqa: F401  (imported once, here: the forked ranks share the modules)
    import rnnkit.tasks.forecast  # noqa: F401
    import rnnkit.tasks.lm  # noqa: F401
    import rnnkit.torch.distributed  # noqa: F401

    record.mkdir(parents=True, exist_ok=True)
    context, port = multiprocessing.get_context(start_method()), free_port()
    ranks = [context.Process(target=_worker, args=(r, world, port, argv, str(out), record, hook)) for r in range(world)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(120)
    for p in ranks:
        if p.is_alive():
            p.kill()
            pytest.fail("a rank hung")
    return [p.exitcode for p in ranks]


def writes(record: Path, rank: int) -> list[str]:
    return json.loads((record / f"writes-{rank}.json").read_text())


def weights(path) -> dict:
    return load_checkpoint(path).weights


def assert_close(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-10, atol=1e-13, err_msg=name)


TORCH64 = ["--engine", "torch", "--device", "cpu", "--dtype", "float64", "--no-progress", "--no-plot",
           "--log-every", "1"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    (folder / "text.txt").write_text("".join(rng.choice(list("abcdefgh \n"), 6000)))
    good, bad = "good great love fine happy nice".split(), "bad awful hate poor sad late".split()
    rows = ["text,label"]
    for i in range(300):
        label = "pos" if rng.random() < 0.5 else "neg"
        words = rng.choice(good if label == "pos" else bad, rng.integers(2, 9))
        rows.append(f"{' '.join(words)} w{i},{label}")
    (folder / "posts.csv").write_text("\n".join(rows) + "\n")
    return folder


def lm_args(texts: Path, out: Path, batch: int, steps: int = 8) -> list:
    return ["train", "lm", "--data", str(texts / "text.txt"), "--hidden", "8", "--layers", "2", "--dropout", "0",
            "--bptt", "6", "--batch-size", str(batch), "--max-steps", str(steps), "--out", str(out), *TORCH64]


@pytest.fixture(scope="module")
def lm_runs(texts, tmp_path_factory):
    """A language model trained 8 steps by 2 ranks of batch 3, and by one process of batch 6."""
    root = tmp_path_factory.mktemp("lm")
    assert cli.main(lm_args(texts, root / "one", 6)) == 0
    assert launch(lm_args(texts, root / "ddp", 3), root, root / "record") == [0, 0]
    return root


@pytest.mark.slow
@needs_torch
def test_two_ranks_train_a_language_model_as_one_process_with_their_streams(lm_runs):
    assert_close(weights(lm_runs / "ddp" / "last"), weights(lm_runs / "one" / "last"))
    ddp = load_checkpoint(lm_runs / "ddp" / "last", load_optimizer=True)
    one = load_checkpoint(lm_runs / "one" / "last", load_optimizer=True)
    for part in ("h", "c"):  # the carry of the world's 6 streams, in the order one process has them
        assert ddp.optimizer_state["carry"][part].shape == (2, 6, 8)
        np.testing.assert_allclose(ddp.optimizer_state["carry"][part], one.optimizer_state["carry"][part], atol=1e-13)
    logged = [json.loads(line) for line in (lm_runs / "ddp" / "metrics.jsonl").read_text().splitlines()]
    alone = [json.loads(line) for line in (lm_runs / "one" / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in logged if "loss" in r]
    assert len(losses) == 8 and np.allclose([l for _, l in losses], [r["loss"] for r in alone if "loss" in r],
                                            rtol=1e-12)  # the ranks' mean loss: the world batch's
    assert ddp.trainer_state["world_size"] == 2


@pytest.mark.slow
@needs_torch
def test_only_rank_0_writes_the_run(lm_runs):
    assert writes(lm_runs / "record", 1) == []
    written = writes(lm_runs / "record", 0)
    for name in ("metrics.jsonl", "run.json", "last", "best"):
        assert any(name in w for w in written), name
    assert sorted(p.name for p in (lm_runs / "ddp").iterdir()) == ["best", "last", "metrics.jsonl", "run.json"]


@pytest.mark.slow
@needs_torch
def test_a_run_on_two_ranks_is_not_resumed_on_one(lm_runs, texts, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(lm_runs / "ddp", copy)
    before = (copy / "metrics.jsonl").read_text()
    assert cli.main(lm_args(texts, copy, 3, 12) + ["--resume"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "trained by 2 process(es)" in error and "this run has 1" in error
    assert (copy / "metrics.jsonl").read_text() == before


class StopRank1At:
    """A hook: rank 1 gets SIGTERM (as torchrun forwards it) during its step number `step`; rank 0 does not.
    A class, not a closure, so that a spawned rank can unpickle it."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, rank: int) -> None:
        from rnnkit.torch import distributed

        agree, calls, step = distributed.TorchWorld.agree, [0], self.step

        def stopped(world, *args):
            calls[0] += 1
            if rank == 1 and calls[0] == step:
                os.kill(os.getpid(), signal.SIGTERM)
            return agree(world, *args)

        distributed.TorchWorld.agree = stopped


@pytest.mark.slow
@needs_torch
def test_a_stopped_and_resumed_run_ends_as_the_run_that_never_stopped(lm_runs, texts, tmp_path):
    out = tmp_path / "run"
    assert launch(lm_args(texts, out, 3), tmp_path, tmp_path / "a", hook=StopRank1At(3)) == [143, 143]
    saved = load_checkpoint(out / "last", load_optimizer=True)
    # rank 1 was signalled in step 3's exchange, after giving its flags: both ranks stop after step 4
    assert saved.trainer_state["step"] == 4
    assert launch(lm_args(texts, out, 3) + ["--resume"], tmp_path, tmp_path / "b") == [0, 0]
    assert load_checkpoint(out / "last", load_optimizer=True).trainer_state["step"] == 8
    assert_close(weights(out / "last"), weights(lm_runs / "ddp" / "last"), exact=True)
    assert writes(tmp_path / "a", 1) == writes(tmp_path / "b", 1) == []


@pytest.mark.slow
@needs_torch
def test_two_ranks_train_a_classifier_as_one_process_with_the_world_batch(texts, tmp_path):
    def args(out, batch):
        return ["train", "classify", "--data", str(texts / "posts.csv"), "--embedding", "6", "--hidden", "5",
                "--dropout", "0", "--batch-size", str(batch), "--max-steps", "5", "--out", str(out), *TORCH64]

    assert launch(args(tmp_path / "ddp", 4), tmp_path, tmp_path / "record") == [0, 0]
    assert cli.main(args(tmp_path / "one", 8)) == 0
    assert_close(weights(tmp_path / "ddp" / "last"), weights(tmp_path / "one" / "last"))
    assert writes(tmp_path / "record", 1) == []
    assert (tmp_path / "ddp" / "test_report.json").is_file()  # rank 0 scored the held-out part


@pytest.mark.slow
@needs_torch
def test_torchrun_refuses_the_scratch_engine(texts, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "rnnkit", "train", "lm", "--data", str(texts / "text.txt"), "--engine", "scratch",
                           "--hidden", "8", "--max-steps", "2", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors  # from the first rank to fail (torchrun then stops the other)
    assert all("scratch engine does not train in parallel" in e and "--engine torch" in e for e in errors)
    assert not out.exists()


@pytest.mark.slow
@needs_torch
def test_two_ranks_stream_their_parts_of_a_memory_mapped_corpus(texts, tmp_path):
    prepared = tmp_path / "prepared"
    assert cli.main(["data", "prepare", str(texts / "text.txt"), "--out", str(prepared)]) == 0

    def args(out, batch):
        return ["train", "lm", "--prepared", str(prepared), "--hidden", "6", "--layers", "1", "--dropout", "0",
                "--bptt", "5", "--batch-size", str(batch), "--max-steps", "4", "--out", str(out), *TORCH64]

    assert launch(args(tmp_path / "ddp", 2), tmp_path, tmp_path / "record") == [0, 0]
    assert cli.main(args(tmp_path / "one", 4)) == 0
    assert_close(weights(tmp_path / "ddp" / "last"), weights(tmp_path / "one" / "last"))
    assert writes(tmp_path / "record", 1) == []


@pytest.mark.slow
@needs_torch
def test_two_ranks_train_a_forecaster_as_one_process_with_the_world_batch(tmp_path):
    days = np.arange("2020-01-01", "2020-06-01", dtype="datetime64[D]")
    values = 10 + np.sin(np.arange(len(days)) / 5)
    (tmp_path / "series.csv").write_text("date,value\n" + "".join(f"{d},{v:.6f}\n" for d, v in zip(days, values)))

    def args(out, batch):
        return ["train", "forecast", "--data", str(tmp_path / "series.csv"), "--window", "8", "--horizon", "2",
                "--loss", "mse", "--hidden", "6", "--batch-size", str(batch), "--max-steps", "4", "--out", str(out),
                "--engine", "torch", "--device", "cpu", "--dtype", "float64", "--no-plot"]

    assert launch(args(tmp_path / "ddp", 5), tmp_path / "ddp", tmp_path / "record") == [0, 0]
    assert cli.main(args(tmp_path / "one", 10)) == 0
    assert_close(weights(tmp_path / "ddp" / "last"), weights(tmp_path / "one" / "last"))
    assert writes(tmp_path / "record", 1) == [] and writes(tmp_path / "record", 0)
