"""benchmarks/sentiment.py's settings: the main job's preset, and --set overrides."""
import importlib.util
from pathlib import Path

import pytest

from rnnkit.tasks.presets import AIRLINE_TWEETS

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "sentiment.py"
spec = importlib.util.spec_from_file_location("bench_sentiment", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_settings_are_the_main_jobs_but_the_cell():
    assert bench.SETTINGS == {k: v for k, v in AIRLINE_TWEETS.items() if k not in ("cell", "bidirectional")}
    assert bench.MODELS["bigru"] == ("gru", True) and bench.MODELS["bilstm"] == ("lstm", True)


def test_overrides_are_json_or_strings():
    got = bench.parse_overrides(["hidden=256", "lr=2e-3", "schedule=cosine", "patience=null", "word-dropout=0.1",
                                 "max_steps=40"])
    assert got == {"hidden": 256, "lr": 0.002, "schedule": "cosine", "patience": None, "word_dropout": 0.1,
                   "max_steps": 40}
    with pytest.raises(ValueError, match="unknown setting 'hiden'"):
        bench.parse_overrides(["hiden=3"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_overrides(["hidden"])
