"""Checkpoints are untrusted input: config.json is checked against the weights before any model is built.

Each hostile or inconsistent file is made the way an attacker or a careless user would: a checkpoint saved by
`save_checkpoint` (so sizes and SHA-256 sums agree) whose config says something its tensors do not. Every
loader -- load_lm, load_classifier, predict, evaluate, generate, serve -- must refuse it in one line naming
the field, and the oversized ones must be refused under a 1.5 GB address-space limit, fast, with no traceback.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit
from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.checkpoint.models import parameter_shapes
from rnnkit.cli import main as cli_main
from rnnkit.data.posts import PostTokenizer
from rnnkit.data.vocab import PAD, UNK, Vocabulary
from rnnkit.engines import build_engine
from rnnkit.tasks import classify, lm

WORDS = ["good", "bad", "flight", "bag", "crew", "late", "great", "lost"]
CHARS = list("abcdefgh ")
LIMIT_BYTES = 1536 << 20     # RLIMIT_AS for the children: 1.5 GiB
ENV = {**os.environ, "PYTHONPATH": str(Path(rnnkit.__file__).resolve().parents[1])}   # this rnnkit


# ------------------------------------------------------------------------------------------- checkpoints

def classifier_config(**model) -> dict:
    vocab = Vocabulary([PAD, UNK, *WORDS], specials=(PAD, UNK))
    kwargs = dict(vocab_size=len(vocab), num_classes=2, embedding_dim=4, hidden_size=5, num_layers=1, cell="lstm",
                  bidirectional=False, dropout=0.0, pooling="last", attention_size=3, padding_idx=0,
                  embedding_init_std=1.0) | model
    return {"task": "classify", "model": kwargs, "labels": ["negative", "positive"], "vocab": vocab.to_dict(),
            "data": {"tokenizer": PostTokenizer().config(), "max_length": 64, "source": {"data": "x.csv"}},
            "class_weights": None, "training": {}, "dtype": "float32", "word_dropout": 0.0}


def lm_config(**model) -> dict:
    vocab = Vocabulary([UNK, *CHARS], specials=(UNK,))
    kwargs = dict(vocab_size=len(vocab), embedding_dim=4, hidden_size=5, num_layers=1, cell="gru", dropout=0.0,
                  tie_weights=False) | model
    return {"task": "lm", "model": kwargs, "vocab": vocab.to_dict(),
            "data": {"tokenizer": {"level": "char"}, "source": {"data": "x.txt"}, "batch_size": 2, "bptt": 8},
            "training": {}, "dtype": "float32"}


def save(path, config, weights=None):
    """A checkpoint of `config`, with the weights its model builds (or `weights`); returns the path as str."""
    if weights is None:
        name = "TextClassifier" if config["task"] == "classify" else "LanguageModel"
        weights = build_engine("scratch", name, config["model"]).weights()
    save_checkpoint(path, weights, config)
    return str(path)


def tampered(path, source: dict, edit) -> str:
    """`source` ({"config", "weights"}) changed by `edit(config, weights)`, saved consistently at `path`."""
    config = json.loads(json.dumps(source["config"]))
    weights = {k: v.copy() for k, v in source["weights"].items()}
    edit(config, weights)
    save_checkpoint(path, weights, config)
    return str(path)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    out = {}
    for task, config in (("classify", classifier_config()), ("lm", lm_config())):
        path = save(tmp / task, config)
        out[task] = {"path": path, "config": config, "weights": load_checkpoint(path).weights}
    return out


def test_good_checkpoints_load(good):
    assert classify.load_classifier(good["classify"]["path"]).labels == ["negative", "positive"]
    assert len(lm.load_lm(good["lm"]["path"]).vocab) == 10


@settings(max_examples=6, deadline=None)
@given(cell=st.sampled_from(["lstm", "gru", "rnn_tanh"]), layers=st.integers(1, 3), bidirectional=st.booleans(),
       pooling=st.sampled_from(["last", "attention", "mean"]), tie=st.booleans())
def test_parameter_shapes_are_those_of_both_engines(cell, layers, bidirectional, pooling, tie):
    clf = classifier_config(cell=cell, num_layers=layers, bidirectional=bidirectional, pooling=pooling)["model"]
    lang = lm_config(cell=cell, num_layers=layers, tie_weights=tie, embedding_dim=5)["model"]
    for name, kwargs in (("TextClassifier", clf), ("LanguageModel", lang)):
        for engine in ("scratch", "torch"):
            built = {k: v.shape for k, v in build_engine(engine, name, kwargs).weights().items()}
            assert built == parameter_shapes(name, kwargs), (name, engine)


# ------------------------------------------------------------------------------- sizes from a hostile config

HOSTILE = {   # name -> (model settings, the field the error must name)
    "layers": ({"num_layers": 10**6}, "model.num_layers"),
    "hidden": ({"hidden_size": 10**9}, "model.hidden_size"),
    "hidden30k": ({"hidden_size": 30000}, "model.hidden_size"),
    "vocab": ({"vocab_size": 10**9}, "model.vocab_size"),
}


def _set_model(**changes):
    def edit(config, weights):
        config["model"].update(changes)
    return edit


CHILD = textwrap.dedent("""
    import io, json, resource, sys, time
    from contextlib import redirect_stderr
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import uvicorn
    def started(*args, **kwargs):
        raise SystemExit("the server started on a hostile checkpoint")
    uvicorn.run = started
    from rnnkit.cli import main
    from rnnkit.tasks import classify, lm
    from rnnkit.serve import create_app
    results = []
    for argv in json.loads(sys.argv[1]):
        err, start = io.StringIO(), time.perf_counter()
        with redirect_stderr(err):
            code = main(argv)
        results.append({{"argv": argv, "code": code, "stderr": err.getvalue(), "s": time.perf_counter() - start}})
    for task, path in json.loads(sys.argv[2]):
        for load in ([classify.load_classifier] if task == "classify" else [lm.load_lm]) + [create_app]:
            try:
                load(path)
                results.append({{"load": load.__name__, "path": path, "error": None}})
            except Exception as e:
                results.append({{"load": load.__name__, "path": path, "error": type(e).__name__ + ": " + str(e)}})
    print(json.dumps(results))
""")


def limited():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def test_hostile_sizes_are_refused_before_any_allocation(good, tmp_path):
    """Under a 1.5 GiB address-space limit: predict, evaluate, generate, serve and the Python loaders each
    refuse every oversized config with exit 2 (or a CheckpointError) naming the field, within seconds."""
    pytest.importorskip("fastapi")
    (tmp_path / "t.txt").write_text("abc abc\n")
    (tmp_path / "t.csv").write_text("text,label\ngood flight,positive\nbag lost,negative\n")
    argvs, loads, fields = [], [], {}
    for name, (changes, field) in HOSTILE.items():
        for task in ("classify", "lm"):
            path = tampered(tmp_path / f"{task}-{name}", good[task], _set_model(**changes))
            fields[path] = field
            loads.append((task, path))
            commands = ([["predict", path, "good flight"], ["evaluate", path, "--data", str(tmp_path / "t.csv")]]
                        if task == "classify" else
                        [["generate", path, "--length", "3"], ["evaluate", path, "--data", str(tmp_path / "t.txt")]])
            argvs += commands + [["serve", path, "--port", "0"]]
    child = subprocess.run([sys.executable, "-c", CHILD.format(limit=LIMIT_BYTES), json.dumps(argvs),
                            json.dumps(loads)], capture_output=True, text=True, timeout=120,
                           env=ENV)
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(results) == len(argvs) + 2 * len(loads)
    for r in results:
        if "argv" in r:
            path = r["argv"][1]
            assert r["code"] == 2, r
            assert r["stderr"].startswith("error: ") and r["stderr"].count("\n") == 1, r
            assert fields[path] in r["stderr"] and "Traceback" not in r["stderr"], r
            assert r["s"] < 5, r
        else:
            assert r["error"] is not None and r["error"].startswith("CheckpointError: "), r
            assert fields[r["path"]] in r["error"] and "\n" not in r["error"], r


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_the_command_exits_2_without_a_traceback_under_a_memory_limit(good, tmp_path, command):
    path = tampered(tmp_path / "c", good["classify"], _set_model(hidden_size=10**9))
    argv = [path, "x"] if command == "predict" else [path, "--port", "0"]
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "rnnkit", command, *argv], capture_output=True, text=True,
                           timeout=60, preexec_fn=limited, env=ENV)
    assert child.returncode == 2, child.stderr
    assert child.stderr.startswith("error: ") and child.stderr.count("\n") == 1, child.stderr
    assert "model.hidden_size is 1000000000, but the weights have 5" in child.stderr
    assert time.perf_counter() - start < 30


# ------------------------------------------------------------------------------- inconsistent checkpoints

def _poison(value):
    def edit(config, weights):
        weights["rnn.weight_hh_l0"][1, 2] = value
    return edit


def _set(*keys, value):
    def edit(config, weights):
        node = config
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return edit


def _cast(dtype):
    def edit(config, weights):
        weights.update({k: v.astype(dtype) for k, v in weights.items()})
    return edit


def _longer_vocab(config, weights):
    config["vocab"]["tokens"].append("extra")


INCONSISTENT = {   # name -> (task, edit, words the one-line error must hold)
    "nan": ("classify", _poison(np.nan), ["non-finite", "rnn.weight_hh_l0"]),
    "inf": ("lm", _poison(np.inf), ["non-finite", "rnn.weight_hh_l0"]),
    "fewer labels": ("classify", _set("labels", value=["negative"]), ["labels has 1 entries", "num_classes is 2"]),
    "duplicate labels": ("classify", _set("labels", value=["pos", "pos"]), ["labels repeats ['pos']"]),
    "labels string": ("classify", _set("labels", value="ab"), ["labels must be an array of strings"]),
    "vocab longer": ("classify", _longer_vocab, ["vocab.tokens has 11 tokens", "model.vocab_size"]),
    "lm vocab longer": ("lm", _longer_vocab, ["vocab.tokens has 11 tokens", "model.vocab_size"]),
    "max_length string": ("classify", _set("data", "max_length", value="64"), ["data.max_length", "'64'"]),
    "max_length 0": ("classify", _set("data", "max_length", value=0), ["data.max_length", "got 0"]),
    "max_length negative": ("classify", _set("data", "max_length", value=-5), ["data.max_length"]),
    "int weights": ("classify", _cast(np.int64), ["dtype is 'float32'", "int64"]),
    "float64 weights": ("lm", _cast(np.float64), ["dtype is 'float32'", "float64"]),
    "vocab duplicates": ("lm", _set("vocab", "tokens", value=[UNK, *"abcdefga "]), ["vocab", "duplicate"]),
    "no unk": ("lm", _set("vocab", "specials", value=[]), ["vocab.specials", UNK]),
    "bad bptt": ("lm", _set("data", "bptt", value=0), ["data.bptt"]),
    "bad dtype": ("lm", _set("dtype", value="float16"), ["dtype must be one of"]),
    "wrong cell": ("lm", _set("model", "cell", value="lstm"), ["model.cell is 'lstm'"]),
    "not bidirectional": ("classify", _set("model", "bidirectional", value=True), ["rnn.weight_ih_l0_reverse"]),
    "classes": ("classify", _set("model", "num_classes", value=3), ["model.num_classes is 3"]),
    "embedding": ("lm", _set("model", "embedding_dim", value=6), ["model.embedding_dim is 6"]),
    "tie mismatch": ("lm", _set("model", "tie_weights", value=True), ["tie_weights"]),
    "wrong task": ("lm", _set("task", value="classify"), ["task is 'classify'"]),
}


@pytest.mark.parametrize("name", INCONSISTENT)
def test_inconsistent_checkpoints_are_refused_at_load_naming_the_field(good, tmp_path, name):
    task, edit, words = INCONSISTENT[name]
    path = tampered(tmp_path / "c", good[task], edit)
    load = classify.load_classifier if task == "classify" else lm.load_lm
    with pytest.raises(CheckpointError) as e:
        load(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "c")), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name", ["nan", "labels string", "max_length string", "int weights", "vocab longer"])
def test_the_server_refuses_to_start_on_an_inconsistent_checkpoint(good, tmp_path, name, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")

    def started(*args, **kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", started)
    task, edit, words = INCONSISTENT[name]
    path = tampered(tmp_path / "c", good[task], edit)
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli_main(["serve", path, "--port", "0"])
    assert code == 2
    assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
    assert all(word in err.getvalue() for word in words), err.getvalue()


# ------------------------------------------------------------------------------- the sections' keys

def _drop(*keys):
    def edit(config, weights):
        node = config
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return edit


SCHEMA = {   # name -> (task, edit, the one-line error's words)
    "model lacks hidden_size": ("classify", _drop("model", "hidden_size"), ["model lacks the key(s) hidden_size"]),
    "model lacks vocab_size": ("lm", _drop("model", "vocab_size"), ["model lacks the key(s) vocab_size"]),
    "model extra key": ("lm", _set("model", "hiden_size", value=5), ["model has unknown key(s) 'hiden_size'"]),
    "model not an object": ("lm", _set("model", value=[1, 2]), ["model must be an object, got an array"]),
    "model hidden string": ("classify", _set("model", "hidden_size", value="5"), ["model.hidden_size", "'5'"]),
    "model layers bool": ("lm", _set("model", "num_layers", value=True), ["model.num_layers", "True"]),
    "model dropout 1": ("lm", _set("model", "dropout", value=1.0), ["model.dropout", "got 1.0"]),
    "no data": ("classify", _drop("data"), ["data must be an object, got null"]),
    "data lacks max_length": ("classify", _drop("data", "max_length"), ["data lacks the key(s) max_length"]),
    "data extra key": ("lm", _set("data", "windows", value=3), ["data has unknown key(s) 'windows'"]),
    "tokenizer extra key": ("classify", _set("data", "tokenizer", "emoji", value=True),
                            ["data.tokenizer has unknown key(s) 'emoji'"]),
    "tokenizer level": ("lm", _set("data", "tokenizer", "level", value="byte"), ["data.tokenizer.level", "'byte'"]),
    "vocab lacks tokens": ("lm", _drop("vocab", "tokens"), ["vocab lacks the key(s) tokens"]),
    "vocab extra key": ("classify", _set("vocab", "counts", value={}), ["vocab has unknown key(s) 'counts'"]),
    "vocab tokens numbers": ("lm", _set("vocab", "tokens", value=list(range(10))), ["vocab.tokens must be an array"]),
}


@pytest.mark.parametrize("name", SCHEMA)
def test_missing_or_unknown_keys_are_refused_in_one_line(good, tmp_path, name):
    task, edit, words = SCHEMA[name]
    path = tampered(tmp_path / "c", good[task], edit)
    load = classify.load_classifier if task == "classify" else lm.load_lm
    with pytest.raises(CheckpointError) as e:
        load(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "c" / "config.json")), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name", ["model lacks hidden_size", "data lacks max_length", "vocab lacks tokens"])
def test_the_cli_answers_a_schema_error_with_exit_2(good, tmp_path, name):
    task, edit, words = SCHEMA[name]
    path = tampered(tmp_path / "c", good[task], edit)
    argv = ["predict", path, "good"] if task == "classify" else ["generate", path, "--length", "2"]
    err = io.StringIO()
    with redirect_stderr(err):
        assert cli_main(argv) == 2
    assert err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
    assert all(word in err.getvalue() for word in words), err.getvalue()
