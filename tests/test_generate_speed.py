"""benchmarks/generate_speed.py: each side generates the same text from the same checkpoint and seed."""
import importlib.util
from pathlib import Path

import pytest

from rnnkit.tasks import lm

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "generate_speed.py"
spec = importlib.util.spec_from_file_location("generate_speed", PATH)
generate_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate_speed)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    corpus = folder / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20, encoding="utf-8")
    result = lm.train_lm(data=str(corpus), level="word", hidden=16, layers=2, dropout=0.0, batch_size=2,
                         bptt=8, epochs=1, out=str(folder / "run"), progress=False, seed=0)
    return str(result.best)


def test_every_side_generates_the_same_text(checkpoint):
    pytest.importorskip("torch")
    runs = [generate_speed.measure(checkpoint, side, tokens=12, threads=1) for side in generate_speed.SIDES]
    assert len({r["text_head"] for r in runs}) == 1
    assert all(r["seconds_per_token"] > 0 and r["tokens"] == 12 for r in runs)


def test_repacking_side_really_repacks(checkpoint, monkeypatch):
    from rnnkit.scratch.fast import packing

    calls = []
    real = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a: calls.append(a[0]) or real(*a))
    generate_speed.measure(checkpoint, "scratch", tokens=10, threads=1)
    locked = len(calls)
    calls.clear()
    generate_speed.measure(checkpoint, "scratch-repacking", tokens=10, threads=1)
    assert locked == 2 * 2          # two generations (warm-up and timed), packed once each for 2 layers
    assert len(calls) == (20 + 1 + 10 + 1) * 2   # every call (prompt + one per token) packs both layers
