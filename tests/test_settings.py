"""One source of every training setting (rnnkit/tasks/settings.py): the `rnnkit train` options built from the
fields, presets, config files, their precedence, and `rnnkit info`."""
import argparse
import dataclasses
import json
import sys

import pytest

from rnnkit.checkpoint import load_checkpoint
from rnnkit.cli import build_parser, main
from rnnkit.tasks import lm, presets
from rnnkit.tasks.presets import AIRLINE_TWEETS
from rnnkit.tasks.settings import TASKS, ClassifySettings, LMData, LMModel, LMSettings, LMTraining, resolve
from rnnkit.train import TrainConfig

VERSE = "the cat sat on the mat.\nthe dog sat on the log.\n"
TINY = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--bptt", "16", "--max-steps", "3", "--no-progress"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "verse.txt"
    path.write_text(VERSE * 30)
    return path


def train_parsers():
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = next(a for a in top.choices["train"]._actions if isinstance(a, argparse._SubParsersAction))
    return train.choices


def dry_run(argv, capsys) -> dict:
    """The settings `rnnkit train ... --dry-run` resolves, flat."""
    assert main([*argv, "--dry-run"]) == 0
    sections = json.loads(capsys.readouterr().out)
    return {k: v for section in sections.values() for k, v in section.items()}


# ------------------------------------------------------------------------------------------------ the options

def test_every_train_command_has_every_training_setting():
    parsers = train_parsers()
    assert set(parsers) == set(TASKS) == {"lm", "classify", "seq2seq", "forecast", "memory"}
    for task, parser in parsers.items():
        dests = {a.dest for a in parser._actions}
        assert {f.name for f in dataclasses.fields(TrainConfig)} <= dests, task
        assert set(TASKS[task].options()) <= dests, task  # and every data and model setting
    options = {s for a in parsers["classify"]._actions for s in a.option_strings}
    assert {"--warmup-steps", "--momentum", "--log-every"} <= options  # once missing from `train classify`


def test_every_setting_has_help_and_shows_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    for task, settings in TASKS.items():
        assert main(["train", task, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        for option in settings.options().values():
            assert option.meta["help"], option.name
            if option.default is not None and option.kind is not bool:
                assert f"(default: {option.default})" in out, (task, option.name)


def test_the_old_flags_still_parse():
    parsers = train_parsers()
    args = parsers["lm"].parse_args(["--data", "x", "--tie", "--no-progress", "--clip", "0", "--patience", "3"])
    assert (args.tie_weights, args.progress, args.clip, args.patience) == (True, False, 0.0, 3)
    args = parsers["classify"].parse_args(["--dataset", "d", "--unidirectional", "--freeze-embeddings",
                                           "--max-steps", "none"])
    assert (args.bidirectional, args.freeze_embeddings, args.max_steps) == (False, True, None)
    assert not hasattr(args, "hidden")  # only what was given: the top layer
    with pytest.raises(SystemExit):
        parsers["classify"].parse_args(["--dataset", "d", "--data", "x"])  # mutually exclusive


def test_clip_zero_means_no_clipping(corpus, capsys):
    assert dry_run(["train", "lm", "--data", str(corpus), "--clip", "0"], capsys)["clip"] is None
    assert TrainConfig(clip=0).clip is None and TrainConfig(clip=None).clip is None
    with pytest.raises(ValueError, match="clip"):
        TrainConfig(clip=-1.0)


def test_a_missing_or_double_source_is_a_clear_error(corpus, tmp_path, capsys):
    assert main(["train", "lm", "--out", str(tmp_path / "r")]) == 2
    assert "--dataset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not both"):
        LMData(dataset="shakespeare", data=str(corpus))


# ------------------------------------------------------------------------------------------------ presets

def test_the_airline_tweets_preset_is_exactly_the_tuned_settings(capsys):
    for argv in (["--dataset", "airline-tweets"],                                   # the dataset's default
                 ["--data", "posts.csv", "--preset", "airline-tweets"]):             # asked for by name
        got = dry_run(["train", "classify", *argv], capsys)
        assert {k: got[k] for k in AIRLINE_TWEETS} == AIRLINE_TWEETS, argv
    plain = dry_run(["train", "classify", "--dataset", "airline-tweets", "--preset", "none"], capsys)
    defaults = ClassifySettings.from_flat({"dataset": "airline-tweets"}).flat()
    assert plain == defaults and plain["cell"] == "lstm" and plain["epochs"] == 8
    settings = resolve("classify", {"dataset": "airline-tweets"}, preset="airline-tweets")
    assert {k: settings.flat()[k] for k in AIRLINE_TWEETS} == AIRLINE_TWEETS


def test_an_unknown_preset_is_refused(capsys):
    assert main(["train", "classify", "--data", "x.csv", "--preset", "nope", "--dry-run"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown preset 'airline-tweets' for `rnnkit train lm`"):
        resolve("lm", {"data": "x"}, preset="airline-tweets")


# ------------------------------------------------------------------------------------------------ precedence

def test_precedence_defaults_preset_config_flags(tmp_path, capsys):
    base = ["train", "classify", "--data", "posts.csv"]
    assert dry_run(base, capsys)["lr"] == 2e-3                                   # the field's default
    with_preset = dry_run([*base, "--preset", "airline-tweets"], capsys)
    assert (with_preset["lr"], with_preset["hidden"], with_preset["cell"]) == (1e-3, 128, "gru")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"lr": 5e-4, "model": {"hidden": 64}, "training": {"epochs": 2}}))
    with_config = dry_run([*base, "--preset", "airline-tweets", "--config", str(config)], capsys)
    assert (with_config["lr"], with_config["hidden"], with_config["cell"], with_config["epochs"]) == \
        (5e-4, 64, "gru", 2)                                                    # over the preset
    with_flags = dry_run([*base, "--preset", "airline-tweets", "--config", str(config), "--lr", "0.1",
                          "--cell", "lstm"], capsys)
    assert (with_flags["lr"], with_flags["hidden"], with_flags["cell"], with_flags["epochs"]) == \
        (0.1, 64, "lstm", 2)                                                    # over the config


def test_a_config_file_names_the_data_and_the_preset(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"data": {"dataset": "airline-tweets"}, "epochs": 3}))
    got = dry_run(["train", "classify", "--config", str(config)], capsys)
    assert got["dataset"] == "airline-tweets" and got["cell"] == "gru" and got["epochs"] == 3  # its preset
    got = dry_run(["train", "classify", "--config", str(config), "--data", "posts.csv"], capsys)
    assert (got["dataset"], got["data"], got["cell"]) == (None, "posts.csv", "lstm")  # --data replaces it
    config.write_text(json.dumps({"preset": "airline-tweets", "data": "posts.csv", "hidden": 32}))
    got = dry_run(["train", "classify", "--config", str(config)], capsys)
    assert (got["cell"], got["hidden"]) == ("gru", 32)


def test_dry_run_output_is_a_config_file(tmp_path, capsys):
    argv = ["train", "classify", "--data", "posts.csv", "--preset", "airline-tweets", "--hidden", "48"]
    assert main([*argv, "--dry-run"]) == 0
    config = tmp_path / "run.json"
    config.write_text(capsys.readouterr().out)
    assert dry_run(["train", "classify", "--config", str(config)], capsys) == dry_run(argv, capsys)


def test_unknown_or_ill_typed_config_keys_exit_2(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"data": "x.csv", "hiden": 3, "model": {"lr": 0.1}, "colour": "red"}))
    assert main(["train", "classify", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting(s) hiden, model.lr, colour" in err and str(config) in err
    for bad, message in [({"data": "x.csv", "hidden": "128"}, "hidden takes an integer"),
                         ({"data": "x.csv", "cell": "transformer"}, "cell must be one of"),
                         ({"data": "x.csv", "epochs": None}, "epochs cannot be null"),
                         ([1, 2], "mapping")]:
        config.write_text(json.dumps(bad))
        assert main(["train", "classify", "--config", str(config)]) == 2
        assert message in capsys.readouterr().err, bad
    config.write_text("{not json")
    assert main(["train", "classify", "--config", str(config)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["train", "classify", "--config", str(tmp_path / "run.toml")]) == 2
    assert ".json, .yaml or .yml" in capsys.readouterr().err


def test_a_yaml_config_and_a_clear_error_without_pyyaml(tmp_path, capsys, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  data: posts.csv\nmodel:\n  hidden: 40\nlr: 1e-3\n")  # YAML reads 1e-3 as a string
    if _has_yaml():
        got = dry_run(["train", "classify", "--config", str(config)], capsys)
        assert (got["data"], got["hidden"], got["lr"]) == ("posts.csv", 40, 1e-3)
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    assert main(["train", "classify", "--config", str(config)]) == 2
    assert "PyYAML" in capsys.readouterr().err


def _has_yaml() -> bool:
    import importlib.util

    return importlib.util.find_spec("yaml") is not None


# ------------------------------------------------------------------------------------------------ same run

def test_a_config_file_trains_the_same_weights_as_the_flags(corpus, tmp_path):
    flags = ["train", "lm", "--data", str(corpus), "--cell", "gru", "--lr", "0.01", "--seed", "3", *TINY]
    assert main([*flags, "--out", str(tmp_path / "flags")]) == 0
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"data": {"data": str(corpus), "bptt": 16},
                                  "model": {"cell": "gru", "hidden": 8, "layers": 1},
                                  "training": {"lr": 0.01, "seed": 3, "batch_size": 4, "max_steps": 3,
                                               "progress": False}}))
    assert main(["train", "lm", "--config", str(config), "--out", str(tmp_path / "file")]) == 0
    for which in ("best", "last"):
        a = (tmp_path / "flags" / which / "model.safetensors").read_bytes()
        b = (tmp_path / "file" / which / "model.safetensors").read_bytes()
        assert a == b, which
    assert load_checkpoint(tmp_path / "file" / "last").config["training"]["max_steps"] == 3


def test_settings_objects_and_keywords_train_the_same(corpus, tmp_path):
    settings = LMSettings(LMData(data=str(corpus), bptt=16), LMModel(hidden=8, layers=1),
                          LMTraining(batch_size=4, max_steps=2, progress=False, out=str(tmp_path / "objects")))
    lm.train_lm(settings)
    lm.train_lm(data=str(corpus), bptt=16, hidden=8, layers=1, batch_size=4, max_steps=2, progress=False,
                out=str(tmp_path / "keywords"))
    a, b = (load_checkpoint(tmp_path / run / "last").weights for run in ("objects", "keywords"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert settings.replace(dataset="shakespeare").data.data is None  # one source replaces the other
    with pytest.raises(TypeError, match="hiden"):
        lm.train_lm(data=str(corpus), hiden=8)


# ------------------------------------------------------------------------------------------------ info

def test_info_prints_the_environment(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    found = dict(line.split(": ", 1) for line in lines)
    assert {"rnnkit", "python", "numpy"} <= set(found)
    assert main(["info", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert {k: str(v) for k, v in as_json.items()} == found


def test_presets_name_known_settings():
    for name, preset in presets.PRESETS.items():
        assert preset.task in TASKS
        assert set(preset.settings) <= set(TASKS[preset.task].options()), name
