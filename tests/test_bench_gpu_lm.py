"""benchmarks/gpu_lm.py with --quick (on the CPU, or on the GPU where there is one): the speed table, a failed DDP launch as a row, the run to a
target; and that without a GPU (and without --quick/--cpu) it measures nothing."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_lm.py"
spec = importlib.util.spec_from_file_location("bench_gpu_lm", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _run(tmp_path, *argv):
    out = tmp_path / "out.json"
    assert bench.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(out), *argv]) == 0
    return json.loads(out.read_text())


def test_quick_speed_table(tmp_path):
    import torch

    results = _run(tmp_path, "--rounds", "1", "--steps", "8", "--batch-sizes", "6", "--skip-ddp")
    rows = results["speed"]
    assert [(r["precision"], r["batch_size"]) for r in rows] == [("fp32", 6), ("bf16", 6)]
    for r in rows:
        assert r["rnnkit_tokens_per_s"] > 0 and r["raw_tokens_per_s"] > 0
        assert r["rnnkit_share_of_raw"] == pytest.approx(r["rnnkit_tokens_per_s"] / r["raw_tokens_per_s"])
        assert r["meets_target"] == (r["rnnkit_share_of_raw"] >= 0.8) and len(r["rounds"]["raw"]) == 1
    assert results["machine"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert results["quick"] is True
    assert results["sizes"]["steps"] == 8 and "data" in results["source"]
    assert not (tmp_path / "work" / "speed").exists()  # the speed runs' checkpoints are not kept


def test_a_ddp_launch_that_fails_is_a_row_and_the_rest_goes_on(tmp_path):
    results = _run(tmp_path, "--skip-speed", "--ddp-procs", "1,2", "--launcher", str(tmp_path / "no-torchrun"))
    rows = results["ddp"]
    assert [r["procs"] for r in rows] == [1, 2]
    for r in rows:
        assert "FileNotFoundError" in r["error"] and r["logged_tokens_per_s"] is None and r["speedup"] is None


def test_the_ddp_command_is_torchrun_over_rnnkit_train_lm(tmp_path):
    cmd = bench.ddp_command(["torchrun"], 4, {"dataset": "wikitext-2"}, bench.FULL, 20, "bf16", "cuda", 300, tmp_path)
    assert cmd[:8] == ["torchrun", "--standalone", "--nproc_per_node", "4", "-m", "rnnkit", "train", "lm"]
    joined = " ".join(cmd)
    for part in ("--dataset wikitext-2", "--hidden 650", "--layers 2", "--bptt 35", "--batch-size 20",
                 "--precision bf16", "--device cuda", "--max-steps 300", "--optimizer sgd", "--lr 20.0"):
        assert part in joined
    assert bench._world_size(tmp_path) is None  # no run there
    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "trainer.json").write_text(json.dumps({"trainer": {"step": 3}}))
    assert bench._world_size(tmp_path) == 1     # a trainer without DDP


def test_train_to_target_quick(tmp_path):
    results = _run(tmp_path, "--train-to-target", "--target-epochs", "1")
    t = results["train_to_target"]
    assert t["settings"]["tie_weights"] and t["settings"]["schedule"] == "cosine" and t["updates"] > 0
    assert math.isfinite(t["test_perplexity"]) and t["test_perplexity"] < 25  # a vocabulary of 21 words
    assert t["reached_target"] and t["valid_target_at"]["epoch"] == 1 and t["median_tokens_per_s"] > 0


def test_readout_seconds_cover_the_steps_after_the_warm_up():
    log = [{"step": 1, "tokens_per_s": 10.0}, {"step": 4, "tokens_per_s": 30.0}, {"step": 8, "tokens_per_s": 40.0},
           {"step": 8, "val_loss": 1.0}, {"step": 12, "tokens_per_s": 20.0}]
    assert bench.readout_seconds(log, 10, after=4) == pytest.approx(4 * 10 / 40 + 4 * 10 / 20)
    assert bench.readout_seconds(log, 10) == pytest.approx(1 + 3 * 10 / 30 + 1 + 2)


def test_without_a_gpu_nothing_is_measured_unless_asked(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.json"
    assert bench.main(["--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("no GPU: PyTorch sees no CUDA device")
    assert not out.exists() and not (tmp_path / "work").exists()


def test_the_sync_check_needs_a_gpu():
    import torch

    assert bench.sync_check(None, bench.QUICK, 4, "bf16", torch.device("cpu")) == \
        {"precision": "bf16", "ok": None, "error": "not on a GPU"}
