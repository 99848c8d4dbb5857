"""rnnkit data prepare and train lm --prepared: memory-mapped corpora (rnnkit/data/prepared.py)."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.prepared import open_prepared, token_dtype
from rnnkit.tasks import lm

TEXT = "Ünïcode café, naïve — ok?\nTo be or not to be: that is the question.\n\nWhether 'tis nobler!\n" * 40


@pytest.mark.parametrize("level,lower,min_freq,max_vocab", [("char", False, 1, None), ("word", True, 2, None),
                                                            ("word", False, 1, 12)])
@pytest.mark.parametrize("chunk_bytes", [5, 1 << 18])  # 5: chunks cut inside characters and lines
def test_prepared_ids_equal_the_in_memory_tokenisation(tmp_path, level, lower, min_freq, max_vocab, chunk_bytes):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())  # a byte-order mark, dropped by both
    valid.write_text("to be, café? unseen words\n" * 3)
    lm.prepare_corpus(train, tmp_path / "p", level, lower, min_freq, max_vocab, valid, chunk_bytes=chunk_bytes)
    memory = lm.load_corpus(data=str(train), valid=str(valid), level=level, lower=lower, min_freq=min_freq,
                            max_vocab=max_vocab)
    prepared = lm.load_prepared(tmp_path / "p")
    assert isinstance(prepared.train, np.memmap) and prepared.train.dtype == np.uint16
    assert prepared.vocab == memory.vocab and prepared.tokenizer == memory.tokenizer
    assert np.array_equal(prepared.train, memory.train) and np.array_equal(prepared.valid, memory.valid)
    if max_vocab:
        assert len(prepared.vocab) == max_vocab and (prepared.valid == prepared.vocab.unk_id).any()


def test_training_from_the_prepared_folder_gives_the_same_losses_bit_for_bit(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(TEXT)
    valid.write_text(TEXT[:500])
    assert main(["data", "prepare", str(train), "--out", str(tmp_path / "p"), "--valid", str(valid)]) == 0
    common = dict(hidden=8, embedding=8, layers=1, batch_size=3, bptt=7, max_steps=12, eval_every=4, log_every=1,
                  seed=3, progress=False, plot=False, log=lambda *a: None)
    lm.train_lm(data=str(train), valid=str(valid), out=str(tmp_path / "memory"), **common)
    lm.train_lm(prepared=str(tmp_path / "p"), out=str(tmp_path / "mapped"), **common)

    def losses(run):
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in records]

    memory = losses("memory")
    assert len([r for r in memory if r[1] is not None]) == 12 and len([r for r in memory if r[2]]) == 3
    assert losses("mapped") == memory


def test_without_a_prepared_valid_file_the_last_tenth_validates(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    lm.prepare_corpus(tmp_path / "t.txt", tmp_path / "p")
    whole = open_prepared(tmp_path / "p").train
    corpus = lm.load_prepared(tmp_path / "p")
    cut = int(len(whole) * 0.9)
    assert len(corpus.train) == cut and np.array_equal(corpus.valid, whole[cut:])
    assert isinstance(corpus.train, np.memmap) and isinstance(corpus.valid, np.memmap)  # views, not copies


def test_uint16_up_to_65536_tokens_then_uint32(tmp_path):
    assert token_dtype(2) == token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    words = [f"w{i}" for i in range(70000)]
    (tmp_path / "t.txt").write_text(" ".join(words) + "\n")
    m = lm.prepare_corpus(tmp_path / "t.txt", tmp_path / "p", level="word")
    corpus = lm.load_prepared(tmp_path / "p")
    whole = open_prepared(tmp_path / "p").train
    assert m["vocab_size"] == 70002 and whole.dtype == np.uint32 and len(whole) == 70001
    assert corpus.vocab.decode(whole[[0, 69999, 70000]]) == ["w0", "w69999", "<eos>"]
    m = lm.prepare_corpus(tmp_path / "t.txt", tmp_path / "q", level="word", max_vocab=65536)
    assert m["files"]["train"]["dtype"] == "uint16" and open_prepared(tmp_path / "q").train.max() == 65535


def test_bad_files_and_a_tampered_manifest_give_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text(" \n\n ")
    bad.write_bytes(b"fine line\n" * 30000 + b"caf\xe9\n")  # latin-1, past the first chunk
    cases = {"missing.txt": "No such file", "empty.txt": "the file is empty",
             "blank.txt": "holds only whitespace", "bad.txt": "not valid UTF-8 at byte offset 300003 (line 30001"}
    for name, message in cases.items():
        assert main(["data", "prepare", str(tmp_path / name), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    (tmp_path / "t.txt").write_text(TEXT)
    main(["data", "prepare", str(tmp_path / "t.txt"), "--out", str(tmp_path / "p")])
    manifest = tmp_path / "p" / "manifest.json"
    good = json.loads(manifest.read_text())
    for change, message in [(lambda m: m["files"]["train"].update(count=5), "the manifest says 5 uint16 tokens"),
                            (lambda m: m["files"]["train"].update(dtype="uint32"), "is not the one a vocabulary"),
                            (lambda m: m.update(vocab_size=3), "the manifest says 3 tokens"),
                            (lambda m: m.update(format="x"), "not a rnnkit.prepared manifest")]:
        m = json.loads(json.dumps(good))
        change(m)
        manifest.write_text(json.dumps(m))
        assert main(["train", "lm", "--prepared", str(tmp_path / "p"), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
    manifest.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        open_prepared(tmp_path / "p")
    with pytest.raises(ValueError, match="--prepared is the whole data source"):
        lm.train_lm(prepared=str(tmp_path / "p"), data=str(tmp_path / "t.txt"), out=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="already tokenised"):
        lm.train_lm(prepared=str(tmp_path / "p"), level="word", out=str(tmp_path / "r"))


CHILD = textwrap.dedent("""
    import resource, sys
    from rnnkit.cli import main
    from rnnkit.tasks import lm
    corpus, valid, tmp = sys.argv[1:]
    common = dict(hidden=8, embedding=8, layers=1, batch_size=4, bptt=16, max_steps=3, eval_every=3,
                  progress=False, plot=False, log=lambda *a: None)
    lm.train_lm(data=valid, out=tmp + "/warm", **common)   # imports and compiled kernels: the baseline
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["data", "prepare", corpus, "--valid", valid, "--out", tmp + "/prep"]) == 0
    lm.train_lm(prepared=tmp + "/prep", out=tmp + "/run", **common)
    print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_a_corpus_several_times_larger_than_the_memory_allowed_prepares_and_trains_in_flat_memory(tmp_path):
    """24 MB of text, prepared and trained on in a subprocess: its peak resident memory grows by less than a
    quarter of the corpus over the baseline (the same process after a small in-memory run); measured: ~3 MiB."""
    block = "".join(f"line {i} of a corpus larger than the memory we allow it\n" for i in range(20000)).encode()
    corpus = tmp_path / "big.txt"
    with open(corpus, "wb") as f:
        for _ in range(24_000_000 // len(block) + 1):
            f.write(block)
    (tmp_path / "valid.txt").write_text("line 7 of a corpus larger than the memory we allow it\n" * 30)
    out = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(tmp_path / "valid.txt"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    base_kib, peak_kib = map(int, out.stdout.split()[-2:])
    size = corpus.stat().st_size
    print(f"peak RSS {base_kib / 1024:.1f} MiB -> {peak_kib / 1024:.1f} MiB for a {size / 2**20:.1f} MiB corpus")
    assert size >= 24_000_000 and (peak_kib - base_kib) * 1024 < size / 4, (base_kib, peak_kib, size)
    assert open_prepared(tmp_path / "prep").train.shape == (size,)  # ASCII characters: one id per byte


def test_a_resumed_prepared_run_ends_where_a_straight_one_does(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    lm.prepare_corpus(tmp_path / "t.txt", tmp_path / "p")
    common = dict(prepared=str(tmp_path / "p"), hidden=8, embedding=8, layers=1, batch_size=2, bptt=8,
                  eval_every=4, log_every=1, seed=0, progress=False, plot=False, log=lambda *a: None)
    lm.train_lm(**common, max_steps=8, out=str(tmp_path / "straight"))
    lm.train_lm(**common, max_steps=4, out=str(tmp_path / "resumed"))
    lm.train_lm(**common, max_steps=8, out=str(tmp_path / "resumed"), resume=True)
    weights = [(tmp_path / run / "last" / "model.safetensors").read_bytes() for run in ("straight", "resumed")]
    assert weights[0] == weights[1]
