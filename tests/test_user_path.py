"""The user's path through the CLI (issue 21 items 5-7, 9-13; issue 20 item 9): argument errors, held-out
test rows scored, labels renamed, checkpoints as folders, scripting switches. Tiny data, few steps."""
import json
import subprocess
import sys

import pytest

from rnnkit.cli import main
from rnnkit.tasks import lm

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    (tmp / "verse.txt").write_text(VERSE * 10)
    result = lm.train_lm(data=str(tmp / "verse.txt"), hidden=8, layers=1, batch_size=2, bptt=8, max_steps=3,
                         out=str(tmp / "run"), progress=False)
    return result


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "nan"], "argument --temperature: must be a finite number >= 0, got 'nan'"),
    (["--temperature", "-1"], "argument --temperature: must be a finite number >= 0, got '-1'"),
    (["--top-k", "0"], "argument --top-k: must be an integer >= 1, got '0'"),
    (["--top-k", "-3"], "argument --top-k: must be an integer >= 1, got '-3'"),
    (["--top-p", "nan"], "argument --top-p: must be a number in (0, 1], got 'nan'"),
    (["--length", "-2"], "argument --length: must be an integer >= 0, got '-2'"),
])
def test_generate_refuses_bad_sampling_arguments(lm_run, flags, message, capsys):
    assert main(["generate", str(lm_run.best), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_generate_checks_its_arguments_in_the_python_api(lm_run):
    model = lm.load_lm(lm_run.best)
    for kwargs, message in [({"temperature": float("nan")}, "temperature must be a finite number"),
                            ({"temperature": float("inf")}, "temperature must be a finite number"),
                            ({"top_k": 0}, "top_k must be >= 1"), ({"top_k": -3}, "top_k must be >= 1")]:
        with pytest.raises(ValueError, match=message):
            lm.generate(model, "the", 5, **kwargs)
    assert len(lm.generate(model, "", 5, top_k=1, seed=0)) > 0


def test_predict_names_an_undecodable_file(tmp_path, lm_run, capsys):
    binary = tmp_path / "binary.dat"
    binary.write_bytes(b"good\n\xff\xfe\x00bad\n")
    assert main(["predict", str(lm_run.best), "--file", str(binary)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {binary}: not valid UTF-8 at byte offset 5 (line 2")


def test_the_scratch_engine_refuses_a_gpu(lm_run, tmp_path, capsys):
    (tmp_path / "verse.txt").write_text(VERSE * 10)
    out = tmp_path / "run"
    assert main(["train", "lm", "--data", str(tmp_path / "verse.txt"), "--engine", "scratch", "--device", "cuda",
                 "--max-steps", "1", "--out", str(out), "--no-progress"]) == 2
    assert "the scratch engine runs on the CPU only" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was trained or written
    assert main(["generate", str(lm_run.best), "--device", "cuda", "--length", "3"]) == 2
    assert "--engine torch --device cuda" in capsys.readouterr().err


def test_loaded_models_are_in_eval_mode_and_round_trip_as_folders(lm_run, tmp_path):
    pytest.importorskip("torch")
    from rnnkit.tasks.lm import LoadedLM

    for engine in ("scratch", "torch"):
        model = LoadedLM.from_pretrained(lm_run.best, engine=engine, device="cpu")
        assert model.engine.model.training is False  # dropout off, as torch users expect of a loaded model
    model = lm.load_lm(lm_run.best)
    assert model.engine.model.training is False
    saved = model.save_pretrained(tmp_path / "exported")
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    again = LoadedLM.from_pretrained(saved, engine="torch", device="cpu")
    assert lm.generate(again, "the", 20, seed=3) == lm.generate(model, "the", 20, seed=3)
    weights, loaded = model.engine.weights(), again.engine.weights()
    assert all((weights[k] == loaded[k]).all() for k in weights)


def test_a_run_folder_given_for_a_checkpoint_points_to_best(lm_run, capsys):
    run = lm_run.run_dir
    assert main(["generate", str(run), "--length", "3"]) == 2
    assert f"error: {run} is a run folder, not a checkpoint: give {run / 'best'}" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--data", str(run / "metrics.jsonl")]) == 2
    assert f"give {run / 'best'}" in capsys.readouterr().err
