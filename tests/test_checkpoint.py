"""Checkpoints: exact round trips, crash safety, and refusal of corrupt or hostile files."""
import contextlib
import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

from rnnkit.checkpoint import atomic as ck
from rnnkit.checkpoint import (CheckpointError, flatten_state, load_checkpoint, save_checkpoint,
                               unflatten_state)
from rnnkit.checkpoint.checks import DTYPES


def make_weights(seed=0, fill=None):
    """Arrays of every kind a checkpoint must keep bit-identical."""
    rng = np.random.default_rng(seed)
    w = {
        "weight_ih_l0": rng.standard_normal((12, 3)).astype(np.float32),
        "weight_hh_l0": rng.standard_normal((12, 4)),                       # float64
        "bias_ih_l0": np.array([np.nan, -0.0, np.inf, 5e-324]),              # odd float64 values
        "steps": np.array([np.iinfo(np.int64).min, -1, np.iinfo(np.int64).max]),
        "int32": np.arange(-3, 3, dtype=np.int32),
        "scalar64": np.array(np.pi),                                        # 0-d
        "scalar_int": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), np.float32),
        "mask": np.array([[True, False], [False, True]]),
        "bytes": np.arange(256, dtype=np.uint8),
        "transposed": rng.standard_normal((3, 5)).T,                        # not C-contiguous
    }
    if fill is not None:
        w = {k: np.full_like(v, fill) if v.dtype.kind in "fi" else v for k, v in w.items()}
    return w


CONFIG = {"task": "lm", "model": {"kind": "lstm", "hidden": [64, 32], "dropout": 0.1},
          "data": {"path": "données.txt", "seq_len": 35},
          "vocab": ["<pad>", "a", "é", "漢"], "training": {"lr": 1e-3, "best": float("inf"), "tiny": 1e-310}}


def same(a, b):
    """True when two arrays are bit-identical, with the same dtype and shape."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_weights(loaded, original):
    assert sorted(loaded) == sorted(original)
    for k in original:
        assert same(loaded[k], np.asarray(original[k], order="C")), k


def deep_equal(a, b):
    """Structural equality that also compares types and array bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return same(a, b)
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return list(a) == list(b) and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return np.isnan(b)
    return a == b


# --------------------------------------------------------------------------------------------- round trips

def test_round_trip_is_bit_identical(tmp_path):
    w = make_weights()
    assert save_checkpoint(tmp_path / "ck", w, CONFIG) == tmp_path / "ck"
    got = load_checkpoint(tmp_path / "ck")
    assert_weights(got.weights, w)
    assert got.weights["scalar64"].shape == () and got.weights["empty"].shape == (0, 3)
    assert got.config == CONFIG
    assert got.optimizer_state is None and got.trainer_state is None
    assert got.rnnkit_version and got.path == tmp_path / "ck"
    assert all(a.flags.writeable for a in got.weights.values())


def test_weights_load_in_the_order_they_were_saved(tmp_path):
    """The order of config.json's tensor list, the model's: safetensors' own comes from a hash map and changed
    from one load to the next (and so did a message that named the first tensor of a wrong dtype)."""
    names = [f"layer{i}.weight" for i in (3, 1, 4, 0, 5, 9, 2, 6)]  # neither sorted nor in any hash's order
    save_checkpoint(tmp_path / "ck", {n: np.full(2, i, np.float32) for i, n in enumerate(names)}, CONFIG)
    for _ in range(5):
        assert list(load_checkpoint(tmp_path / "ck").weights) == names


def test_config_json_records_format_tensors_and_hashes(tmp_path):
    save_checkpoint(tmp_path / "ck", make_weights(), CONFIG)
    meta = json.loads((tmp_path / "ck" / "config.json").read_text("utf-8"))
    assert meta["format"] == "rnnkit-checkpoint" and meta["format_version"] == 1
    assert meta["config"] == CONFIG
    assert meta["tensors"]["weight_ih_l0"] == {"dtype": "float32", "shape": [12, 3]}
    assert meta["tensors"]["scalar64"] == {"dtype": "float64", "shape": []}
    model = (tmp_path / "ck" / "model.safetensors").read_bytes()
    assert meta["files"]["model.safetensors"] == {"sha256": hashlib.sha256(model).hexdigest(), "bytes": len(model)}
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model.safetensors"]


def adam_like_state():
    """A nested optimizer state shaped like torch.optim.Adam's state_dict, in NumPy."""
    return {
        "state": {0: {"step": np.array(3.0, np.float32), "exp_avg": np.ones((2, 3)),
                      "exp_avg_sq": np.full(3, 0.5, np.float32)},
                  1: {"step": np.array(3.0, np.float32), "exp_avg": np.zeros(0), "exp_avg_sq": np.zeros(0)}},
        "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "amsgrad": False,
                          "foreach": None, "params": [0, 1], "name": "all"}],
        "$odd key": {"count": np.int64(5), "scale": np.float64(0.1), "flag": np.bool_(True),
                     "ints": np.array(2**62, np.int64), "big": 10**30, "nested": [[1, (2, 3)], {}]},
    }


def test_flatten_round_trip_is_exact_through_json():
    state = adam_like_state()
    arrays, skeleton = flatten_state(state)
    assert "state.0.exp_avg" in arrays and "$odd key.count" in arrays
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    back = unflatten_state(arrays, json.loads(json.dumps(skeleton)))
    assert deep_equal(back, state)
    assert deep_equal({"x": (1,)}, {"x": [1]}) is False       # the comparison can fail


def test_flatten_refuses_collisions_and_odd_values():
    with pytest.raises(ValueError, match="same key 'a.b'"):
        flatten_state({"a.b": np.zeros(1), "a": {"b": np.zeros(1)}})
    with pytest.raises(TypeError, match="float16"):
        flatten_state({"x": np.zeros(1, np.float16)})
    with pytest.raises(TypeError, match="set"):
        flatten_state({"x": {1, 2}})


def test_unflatten_refuses_a_skeleton_that_does_not_match():
    arrays, skeleton = flatten_state({"a": np.zeros(2), "b": np.ones(1)})
    with pytest.raises(ValueError, match="not referenced"):
        unflatten_state({**arrays, "extra": np.zeros(1)}, skeleton)
    with pytest.raises(ValueError, match="not there"):
        unflatten_state({"a": arrays["a"]}, skeleton)
    with pytest.raises(ValueError, match="tag"):
        unflatten_state({}, {"$eval": "x"})


def test_resume_state_round_trip(tmp_path):
    rng_state = np.random.default_rng(42).bit_generator.state
    trainer = {"step": 1200, "epoch": 3, "rng": rng_state, "best_loss": float("inf"), "history": [1.5, 1.25]}
    save_checkpoint(tmp_path / "ck", make_weights(), CONFIG, adam_like_state(), trainer)
    got = load_checkpoint(tmp_path / "ck", load_optimizer=True)
    assert deep_equal(got.optimizer_state, adam_like_state())
    assert got.trainer_state == trainer
    restored = np.random.default_rng()
    restored.bit_generator.state = got.trainer_state["rng"]
    assert restored.integers(1 << 60) == np.random.default_rng(42).integers(1 << 60)
    plain = load_checkpoint(tmp_path / "ck")
    assert plain.optimizer_state is None and plain.trainer_state is None


def test_trainer_state_alone_and_missing_resume_state(tmp_path):
    save_checkpoint(tmp_path / "a", make_weights(), CONFIG, trainer_state={"step": 5})
    got = load_checkpoint(tmp_path / "a", load_optimizer=True)
    assert got.trainer_state == {"step": 5} and got.optimizer_state is None
    save_checkpoint(tmp_path / "b", make_weights(), CONFIG)
    with pytest.raises(CheckpointError, match="without optimizer"):
        load_checkpoint(tmp_path / "b", load_optimizer=True)


def test_torch_lstm_state_dict_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    sd = {k: v.detach().numpy() for k, v in lstm.state_dict().items()}
    save_checkpoint(tmp_path / "ck", sd, {"model": {"kind": "lstm", "input": 5, "hidden": 7}})

    fresh = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    expected = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in fresh.state_dict().items()}
    got = load_checkpoint(tmp_path / "ck", expected=expected)
    assert "weight_hh_l1_reverse" in got.weights
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in got.weights.items()})
    for k, v in lstm.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    x = torch.randn(2, 4, 5)
    assert torch.equal(fresh(x)[0], lstm(x)[0])


def test_torch_adam_state_resumes(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.GRU(3, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 2, 3))[0].sum().backward()
    opt.step()
    to_np = lambda x: (x.numpy() if isinstance(x, torch.Tensor) else
                       {k: to_np(v) for k, v in x.items()} if isinstance(x, dict) else
                       type(x)(to_np(v) for v in x) if isinstance(x, (list, tuple)) else x)
    to_torch = lambda x: (torch.from_numpy(x) if isinstance(x, np.ndarray) else
                          {k: to_torch(v) for k, v in x.items()} if isinstance(x, dict) else
                          type(x)(to_torch(v) for v in x) if isinstance(x, (list, tuple)) else x)
    saved = to_np(opt.state_dict())
    save_checkpoint(tmp_path / "ck", {k: v.detach().numpy() for k, v in model.state_dict().items()}, {},
                    optimizer_state=saved)
    got = load_checkpoint(tmp_path / "ck", load_optimizer=True).optimizer_state
    assert deep_equal(got, saved)
    opt2 = torch.optim.Adam(model.parameters(), lr=0.5)
    opt2.load_state_dict(to_torch(got))
    assert opt2.param_groups[0]["lr"] == 0.01
    assert torch.equal(opt2.state[model.weight_hh_l0]["exp_avg"], opt.state[model.weight_hh_l0]["exp_avg"])


def test_overwrite_replaces_and_leaves_no_debris(tmp_path):
    save_checkpoint(tmp_path / "ck", make_weights(0), {"v": 1}, trainer_state={"step": 1})
    save_checkpoint(tmp_path / "ck", make_weights(1), {"v": 2})
    got = load_checkpoint(tmp_path / "ck")
    assert_weights(got.weights, make_weights(1))
    assert got.config == {"v": 2}
    assert os.listdir(tmp_path) == ["ck"]
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model.safetensors"]


def test_save_refuses_bad_input_and_foreign_folders(tmp_path):
    with pytest.raises(TypeError, match="float16"):
        save_checkpoint(tmp_path / "ck", {"w": np.zeros(2, np.float16)}, {})
    with pytest.raises(TypeError, match="not a NumPy array"):
        save_checkpoint(tmp_path / "ck", {"w": [1.0, 2.0]}, {})
    with pytest.raises(TypeError, match="not a string"):
        save_checkpoint(tmp_path / "ck", {"w": np.zeros(2)}, {"vocab": {0: "a"}})
    with pytest.raises(TypeError, match="int64"):
        save_checkpoint(tmp_path / "ck", {"w": np.zeros(2)}, {}, trainer_state={"step": np.int64(3)})
    assert not (tmp_path / "ck").exists() and os.listdir(tmp_path) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a checkpoint"):
        save_checkpoint(tmp_path / "mine", {"w": np.zeros(2)}, {})
    (tmp_path / "file").write_text("precious")
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path / "file", {"w": np.zeros(2)}, {})
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_missing_safetensors_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"rnnkit\[train\]"):
        save_checkpoint(tmp_path / "ck", {"w": np.zeros(2)}, {})


# ------------------------------------------------------------------------------------------- crash safety

class Crash(BaseException):
    """A simulated crash: not an Exception, so nothing on the way is supposed to handle it."""


OLD, NEW = make_weights(0, fill=1), make_weights(0, fill=2)


@contextlib.contextmanager
def allow_fallback_warning(path):
    """Allow the RuntimeWarning of the ``.old`` fallback (only when ``path`` is missing) and no other warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if not path.exists():
            warnings.filterwarnings("ignore", message="no checkpoint at", category=RuntimeWarning)
        yield


def assert_old_or_new(path):
    """Whatever loads at ``path`` (or its ``.old`` fallback) is one complete checkpoint, never a mix."""
    with allow_fallback_warning(path):
        got = load_checkpoint(path)
    version = got.config["version"]
    assert_weights(got.weights, {1: OLD, 2: NEW}[version])
    return version


def count_calls(monkeypatch, obj, name, crash_at=None, check=None):
    """Wrap ``obj.name`` to count calls, run ``check()`` before each, and raise Crash at call ``crash_at``."""
    real, calls = getattr(obj, name), []

    def wrapper(*args, **kwargs):
        calls.append(args)
        if check is not None:
            check()
        if len(calls) == crash_at:
            raise Crash
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def test_every_step_of_a_save_leaves_a_complete_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1})
    seen = []
    check = lambda: seen.append(assert_old_or_new(path))
    writes = count_calls(monkeypatch, ck, "_write_file", check=check)
    renames = count_calls(monkeypatch, ck.os, "replace", check=check)
    deletes = count_calls(monkeypatch, ck.shutil, "rmtree", check=check)
    save_checkpoint(path, NEW, {"version": 2})
    monkeypatch.undo()
    assert len(writes) == 2 and len(renames) == 2 and len(deletes) == 1
    assert seen == [1, 1, 1, 1, 2]
    assert assert_old_or_new(path) == 2


def test_files_and_folders_are_fsynced_before_the_swap(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1})
    events = []
    for name in ("fsync", "replace"):
        real = getattr(ck.os, name)
        monkeypatch.setattr(ck.os, name, lambda *a, _n=name, _r=real: (events.append(_n), _r(*a))[1])
    save_checkpoint(path, NEW, {"version": 2}, {"m": np.zeros(2)}, {"step": 2})
    # 4 files and the temporary folder, then each rename followed by an fsync of the parent
    assert events == ["fsync"] * 5 + ["replace", "fsync", "replace", "fsync"]


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch, crash_at):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1}, trainer_state={"step": 1})
    count_calls(monkeypatch, ck, "_write_file", crash_at=crash_at)
    with pytest.raises(Crash):
        save_checkpoint(path, NEW, {"version": 2}, trainer_state={"step": 2})
    monkeypatch.undo()
    assert assert_old_or_new(path) == 1
    assert load_checkpoint(path, load_optimizer=True).trainer_state == {"step": 1}
    assert os.listdir(tmp_path) == ["ck"]               # the failed write removed its temporary folder


def test_crash_before_the_first_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1})
    count_calls(monkeypatch, ck.os, "replace", crash_at=1)
    with pytest.raises(Crash):
        save_checkpoint(path, NEW, {"version": 2})
    monkeypatch.undo()
    assert assert_old_or_new(path) == 1
    save_checkpoint(path, NEW, {"version": 2})          # the next save cleans the stale temporary folder
    assert assert_old_or_new(path) == 2 and os.listdir(tmp_path) == ["ck"]


def test_crash_between_the_renames_is_recovered(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1})
    count_calls(monkeypatch, ck.os, "replace", crash_at=2)
    with pytest.raises(Crash):
        save_checkpoint(path, NEW, {"version": 2})
    monkeypatch.undo()
    assert not path.exists() and (tmp_path / "ck.old").is_dir()
    with pytest.warns(RuntimeWarning, match="ck.old"):
        got = load_checkpoint(path)
    assert got.path == tmp_path / "ck.old" and got.config == {"version": 1}
    assert_weights(got.weights, OLD)
    save_checkpoint(path, NEW, {"version": 2})
    assert assert_old_or_new(path) == 2 and os.listdir(tmp_path) == ["ck"]


def test_crash_while_deleting_the_old_copy(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1})
    count_calls(monkeypatch, ck.shutil, "rmtree", crash_at=1)
    with pytest.raises(Crash):
        save_checkpoint(path, NEW, {"version": 2})
    monkeypatch.undo()
    assert (tmp_path / "ck.old").is_dir()
    assert assert_old_or_new(path) == 2                  # path wins over the leftover, without a warning
    save_checkpoint(path, OLD, {"version": 1})
    assert os.listdir(tmp_path) == ["ck"]


def test_stale_temporary_folder_is_ignored_then_removed(tmp_path):
    path = tmp_path / "ck"
    save_checkpoint(path, OLD, {"version": 1})
    stale = tmp_path / ".ck.tmp-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert assert_old_or_new(path) == 1
    (tmp_path / ".other.tmp-1").mkdir()                 # another checkpoint's temp is left alone
    save_checkpoint(path, NEW, {"version": 2})
    assert sorted(os.listdir(tmp_path)) == [".other.tmp-1", "ck"]


def test_first_save_crash_leaves_nothing_loadable(tmp_path, monkeypatch):
    count_calls(monkeypatch, ck.os, "replace", crash_at=1)
    with pytest.raises(Crash):
        save_checkpoint(tmp_path / "ck", NEW, {"version": 2})
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "ck")


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from rnnkit.checkpoint import save_checkpoint
    i = 0
    while True:
        w = {"a": np.full((200, 200), i, np.float64), "b": np.full(5000, i, np.int64)}
        save_checkpoint(sys.argv[1], w, {"i": i}, {"m": np.full(3000, i, np.float32)}, {"step": i})
        if i == 3:
            open(sys.argv[2], "w").close()
        i += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "ck"
    for delay in (0.0, 0.02, 0.05, 0.11):
        ready = tmp_path / f"ready-{delay}"
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(ready)])
        try:
            deadline = time.monotonic() + 20
            while not ready.exists():
                assert proc.poll() is None and time.monotonic() < deadline, "the saver did not get going"
                time.sleep(0.005)
            time.sleep(delay)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        with allow_fallback_warning(path):
            got = load_checkpoint(path, load_optimizer=True)
        i = got.config["i"]
        assert i > 2 and got.trainer_state == {"step": i}
        assert (got.weights["a"] == i).all() and (got.weights["b"] == i).all()
        assert (got.optimizer_state["m"] == i).all()
    save_checkpoint(path, OLD, {"version": 1})
    assert sorted(p for p in os.listdir(tmp_path) if not p.startswith("ready")) == ["ck"]


def test_a_file_vanishing_mid_load_is_retried(saved, monkeypatch):
    real, calls = ck._Folder.read, []

    def flaky(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise ck._Vanished(f"{name}: missing")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(ck._Folder, "read", flaky)
    assert load_checkpoint(saved).config == {"task": "lm"}
    assert calls == ["config.json", "model.safetensors", "config.json", "model.safetensors"]


def test_reader_beside_a_writer_never_sees_a_mix(tmp_path):
    path, ready = tmp_path / "ck", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(ready)])
    loads, errors = [], []
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the saver did not get going"
            time.sleep(0.005)
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)     # the .old fallback mid-swap
                    got = load_checkpoint(path, load_optimizer=True)
            except CheckpointError as e:                              # only a file vanishing, thrice
                errors.append(str(e))
                continue
            i = got.config["i"]
            assert (got.weights["a"] == i).all() and (got.optimizer_state["m"] == i).all()
            assert got.trainer_state == {"step": i}
            loads.append(i)
    finally:
        proc.kill()
        proc.wait()
    assert len(loads) > 10 and loads == sorted(loads) and loads[-1] > loads[0]
    assert all("missing" in e or "vanished" in e for e in errors), errors


# ----------------------------------------------------------------------------------- corrupt and hostile

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ck"
    save_checkpoint(path, {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3)}, {"task": "lm"},
                    optimizer_state={"m": np.ones(3)}, trainer_state={"step": 1})
    return path


def plant(path, name, data):
    """Put ``data`` at ``path/name`` and make config.json vouch for it, so that the parser is what is tested."""
    (path / name).write_bytes(data)
    meta = json.loads((path / "config.json").read_text())
    meta["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    header = _header(data)
    if name == "model.safetensors" and isinstance(header, dict):   # its tensor list too (compared first)
        numpy_name = {v: k for k, v in DTYPES.items()}
        meta["tensors"] = {k: {"dtype": numpy_name.get(v.get("dtype")), "shape": v.get("shape")}
                           for k, v in header.items() if isinstance(v, dict)}
    (path / "config.json").write_text(json.dumps(meta))


def _header(data: bytes):
    """A safetensors file's header, or None where it has none."""
    try:
        return json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
    except (ValueError, struct.error):
        return None


def safetensors_file(header, payload=b""):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


class _Touch:
    """Unpickling this creates a marker folder (what a malicious pickle could do, harmlessly)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_payload_is_never_unpickled(saved, tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Touch(probe)))
    assert probe.exists()                                # the payload is live when unpickled ...
    marker = tmp_path / "pwned"
    plant(saved, "model.safetensors", pickle.dumps({"w": _Touch(marker)}))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(saved)
    assert not marker.exists()                           # ... and loading never unpickled it


def test_torch_zip_file_is_refused(saved, tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2, 3)}, tmp_path / "weights.pt")
    plant(saved, "model.safetensors", (tmp_path / "weights.pt").read_bytes())
    with pytest.raises(CheckpointError, match="header length"):
        load_checkpoint(saved)


W_HEADER = {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}

HOSTILE = {
    "random bytes": (np.random.default_rng(0).bytes(1000), "header length"),
    "too short": (b"\x01\x02", "too short"),
    "empty": (b"", "too short"),
    "huge header length": (struct.pack("<Q", 2**40) + b"{}", "header length 1099511627776"),
    "header length past the end": (struct.pack("<Q", 100) + b'{"w": 1}', "does not fit"),
    "malformed header json": (struct.pack("<Q", 10) + b'{"w": {"dt', "not valid JSON"),
    "header not utf-8": (struct.pack("<Q", 4) + b"\xff\xfe\x00{", "not valid JSON"),
    "header not an object": (safetensors_file([1, 2]), "not a JSON object"),
    "offsets out of range": (safetensors_file(W_HEADER, b"\0" * 8), "not a valid safetensors"),
    "offsets overlap": (safetensors_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                         b"\0" * 12), "not a valid safetensors"),
    "size does not match shape": (safetensors_file({"w": {"dtype": "F32", "shape": [2, 3],
                                                          "data_offsets": [0, 8]}}, b"\0" * 8),
                                  "not a valid safetensors"),
    "gigantic shape": (safetensors_file({"w": {"dtype": "F32", "shape": [2**40, 2**40],
                                               "data_offsets": [0, 4]}}, b"\0" * 4), "not a valid safetensors"),
    "float16": (safetensors_file({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
                "dtype 'F16'"),
    "object dtype": (safetensors_file({"w": {"dtype": "O", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8),
                     "dtype 'O'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_model_file_is_refused(saved, case):
    data, message = HOSTILE[case]
    plant(saved, "model.safetensors", data)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(saved)
    assert "model.safetensors" in str(err.value)


def test_truncated_file(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[:-5])
    with pytest.raises(CheckpointError, match="truncated or changed"):
        load_checkpoint(saved)
    plant(saved, "model.safetensors", data[:-5])         # even when config.json is made to agree
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(saved)


def test_tampered_byte_is_detected(saved):
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-1] ^= 0x40
    (saved / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: SHA-256 does not match"):
        load_checkpoint(saved)


def test_tampered_optimizer_file_is_detected_only_when_loaded(saved):
    data = bytearray((saved / "optimizer.safetensors").read_bytes())
    data[-1] ^= 1
    (saved / "optimizer.safetensors").write_bytes(bytes(data))
    assert load_checkpoint(saved).config == {"task": "lm"}
    with pytest.raises(CheckpointError, match="optimizer.safetensors: SHA-256"):
        load_checkpoint(saved, load_optimizer=True)


def test_tampered_trainer_state_is_detected(saved):
    """trainer.json is checked like the safetensors files: an edit of the same size by its SHA-256, any
    other by its size (a resumed run must never start from a step or RNG state someone changed)."""
    original = (saved / "trainer.json").read_text()
    assert '"step": 1' in original
    (saved / "trainer.json").write_text(original.replace('"step": 1', '"step": 7'))    # the same size
    with pytest.raises(CheckpointError, match="trainer.json: SHA-256 does not match"):
        load_checkpoint(saved, load_optimizer=True)
    (saved / "trainer.json").write_text(original.replace('"step": 1', '"step": 100'))
    with pytest.raises(CheckpointError, match="trainer.json: .* bytes, but config.json records"):
        load_checkpoint(saved, load_optimizer=True)
    (saved / "trainer.json").write_text(original)
    assert load_checkpoint(saved, load_optimizer=True).trainer_state == {"step": 1}


def test_tensor_list_must_match_config(saved):
    meta = json.loads((saved / "config.json").read_text())
    meta["tensors"]["w"]["shape"] = [3, 2]
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="differ from the list"):
        load_checkpoint(saved)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_in_place_of_a_file_does_not_block(saved):
    os.remove(saved / "model.safetensors")
    os.mkfifo(saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(saved)


def edit_config(path, text):
    (path / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "format 'list'"),
    (json.dumps({"format": "keras", "format_version": 1}), "format 'keras' is not 'rnnkit-checkpoint'"),
    (json.dumps({"format": "rnnkit-checkpoint", "format_version": 9}), "version 9.*upgrade"),
    (json.dumps({"format": "rnnkit-checkpoint", "format_version": 1, "config": {}, "tensors": {}}), "'files'"),
    (json.dumps({"format": "rnnkit-checkpoint", "format_version": 1, "config": {}, "tensors": {}, "files": {}}),
     "no valid 'files' entry for model.safetensors"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
])
def test_bad_config_json_is_refused(saved, text, message):
    edit_config(saved, text)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(saved)
    assert "config.json" in str(err.value)


def test_missing_pieces(saved, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_checkpoint(tmp_path / "afile")
    os.remove(saved / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(saved)
    os.remove(saved / "config.json")
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_checkpoint(saved)


def test_expected_lists_every_mismatch_at_once(saved):
    assert load_checkpoint(saved, expected={"w": ((2, 3), np.float32), "b": ((3,), None)}).weights["w"][1, 2] == 5
    expected = {"w": ((3, 2), "float32"), "b": ((3,), "float32"), "bias_hh_l0": ((4,), "float32")}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved, expected=expected)
    message = str(err.value)
    for part in ("model.safetensors", "missing bias_hh_l0", "w has shape (2, 3), expected (3, 2)",
                 "b has dtype float64, expected float32"):
        assert part in message
    with pytest.raises(CheckpointError, match="unexpected b"):
        load_checkpoint(saved, expected={"w": ((2, 3), np.float32)})


def test_check_finite(tmp_path):
    save_checkpoint(tmp_path / "ck", {"ok": np.ones(2), "bad": np.array([1.0, np.nan], np.float32)}, {},
                    optimizer_state={"m": np.array([np.inf])})
    assert np.isnan(load_checkpoint(tmp_path / "ck").weights["bad"][1])
    with pytest.raises(CheckpointError, match="non-finite values in bad"):
        load_checkpoint(tmp_path / "ck", check_finite=True)
    save_checkpoint(tmp_path / "ck", {"ok": np.ones(2)}, {}, optimizer_state={"m": np.array([np.inf])})
    assert load_checkpoint(tmp_path / "ck", check_finite=True).weights["ok"].sum() == 2
    with pytest.raises(CheckpointError, match="optimizer.safetensors: non-finite values in m"):
        load_checkpoint(tmp_path / "ck", check_finite=True, load_optimizer=True)


def test_optimizer_skeleton_mismatch_is_refused(saved):
    resume = json.loads((saved / "trainer.json").read_text())
    resume["optimizer"] = {"m": {"$array": "elsewhere"}}
    plant(saved, "trainer.json", json.dumps(resume).encode())
    with pytest.raises(CheckpointError, match="trainer.json: the optimizer skeleton"):
        load_checkpoint(saved, load_optimizer=True)


def test_update_json_merges_into_what_the_file_holds(tmp_path):
    """update_json keeps the keys it is not given, replaces those it is, and starts afresh from a missing,
    unreadable or non-object file."""
    import json

    from rnnkit.checkpoint.atomic import update_json

    path = tmp_path / "results.json"
    update_json(path, {"a": 1, "b": 2})
    update_json(path, {"b": 3, "c": [4]})
    assert json.loads(path.read_text()) == {"a": 1, "b": 3, "c": [4]}
    for stale in ("{not json", "[1, 2]"):
        path.write_text(stale)
        update_json(path, {"d": 5})
        assert json.loads(path.read_text()) == {"d": 5}


def test_a_saved_checkpoint_folder_keeps_the_permissions_it_had(tmp_path):
    """A checkpoint saved again keeps its folder's mode (a user's chmod 700 is not undone by the next save);
    a new one gets 0777 less the umask, as mkdir gives."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    old_umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "ck", make_weights(), CONFIG)
        assert path.stat().st_mode & 0o777 == 0o755
        os.chmod(path, 0o700)
        save_checkpoint(path, make_weights(), CONFIG)
        assert path.stat().st_mode & 0o777 == 0o700
        assert (path / "config.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old_umask)
