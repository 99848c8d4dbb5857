"""Tokenizers, vocabulary, text reading and language-model batching (fast, no network)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data.batching import LMBatcher, batchify, lm_batches
from rnnkit.data.text import read_text
from rnnkit.data.tokenizers import CharTokenizer, WordTokenizer
from rnnkit.data.vocab import Vocabulary

# ------------------------------------------------------------------------------------------ tokenizers


def test_char_round_trip():
    text = "Hi, you!\n  Ünïcode — ok\n"
    tok = CharTokenizer()
    assert tok.tokenize(text) == list(text)
    assert tok.detokenize(tok.tokenize(text)) == text


def test_word_punct():
    tok = WordTokenizer()
    assert tok.tokenize("Hi, you! Don't go (now).") == ["Hi", ",", "you", "!", "Don't", "go", "(", "now", ")", "."]
    assert tok.tokenize("a <unk> b well-known") == ["a", "<unk>", "b", "well-known"]
    assert tok.detokenize(["Hi", ",", "you", "!", "(", "now", ")", "."]) == "Hi, you! (now)."


def test_word_lower_and_whitespace():
    assert WordTokenizer(lower=True).tokenize("The CAT.") == ["the", "cat", "."]
    tok = WordTokenizer(split="whitespace")
    assert tok.tokenize(" 1 @,@ 000 , said <unk> . ") == ["1", "@,@", "000", ",", "said", "<unk>", "."]
    with pytest.raises(ValueError, match="split"):
        WordTokenizer(split="bpe")


def test_word_eos_per_line():
    tok = WordTokenizer(split="whitespace", eos="<eos>")
    assert tok.tokenize(" a b \n \n c \n") == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]
    assert tok.tokenize("a\nb") == ["a", "<eos>", "b", "<eos>"]  # a last line without newline still ends
    assert tok.detokenize(["a", "b", "<eos>", "<eos>", "c", "<eos>"]) == "a b\n\nc\n"


# ------------------------------------------------------------------------------------------ vocabulary


def test_vocab_order_and_specials():
    v = Vocabulary.build("b a c a b a d".split())
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]  # frequency, then lexical
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, None, None)
    assert len(v) == 6 and "a" in v and "z" not in v
    # the order of the corpus does not matter
    assert Vocabulary.build("d c b b a a a".split()) == v


def test_vocab_texts_min_freq_max_size():
    texts = [["x", "y", "y"], ["y", "z", "x"], "w"]
    v = Vocabulary.build(texts, min_freq=2, specials=("<unk>", "<eos>"))
    assert v.itos == ["<unk>", "<eos>", "y", "x"]
    v = Vocabulary.build(texts, max_size=3, specials=("<unk>",))
    assert v.itos == ["<unk>", "y", "x"]
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary.build(texts, max_size=1)
    with pytest.raises(ValueError, match="min_freq"):
        Vocabulary.build(texts, min_freq=0)


def test_vocab_special_in_corpus_counted_once():
    v = Vocabulary.build(["<unk>", "a", "<unk>"], specials=("<unk>",))
    assert v.itos == ["<unk>", "a"]


def test_encode_decode_unknown():
    v = Vocabulary.build("a b b".split())
    ids = v.encode(["b", "a", "zzz"])
    assert ids.dtype == np.int64 and ids.tolist() == [2, 3, 1]
    assert v.decode(ids) == ["b", "a", "<unk>"]
    assert v.decode(np.array([[2, 3]])) == ["b", "a"]
    assert v.encode([]).shape == (0,)
    with pytest.raises(ValueError, match="out of range"):
        v.decode([7])
    with pytest.raises(ValueError, match="out of range"):
        v.decode([-1])
    strict = Vocabulary.build("a b".split(), specials=("<pad>",))
    with pytest.raises(ValueError, match="no <unk>.*'zzz'"):
        strict.encode(iter(["a", "zzz"]))


def test_vocab_json_round_trip(tmp_path):
    v = Vocabulary.build("ä b b <x> \"q\"".split(), specials=("<pad>", "<unk>", "<bos>", "<eos>"))
    assert Vocabulary.from_json(v.to_json()) == v
    assert json.loads(json.dumps(v.to_dict())) == v.to_dict()
    path = tmp_path / "vocab.json"
    v.save(path)
    w = Vocabulary.load(path)
    assert w == v and w.specials == v.specials and w.eos_id == 3
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp files left


def test_vocab_bad_json(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        Vocabulary.from_json("{")
    with pytest.raises(ValueError, match="not a vocabulary"):
        Vocabulary.from_json("[1, 2]")
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary.from_dict({"format": "rnnkit.vocabulary", "version": 1, "tokens": ["a", "a"]})
    p = tmp_path / "v.json"
    p.write_text('{"format": "rnnkit.vocabulary", "version": 2, "tokens": []}')
    with pytest.raises(ValueError, match="v.json.*version"):
        Vocabulary.load(p)


# ------------------------------------------------------------------------------------------------ text


def test_read_text(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("\ufeffhello ä\n".encode("utf-8"))
    assert read_text(p) == "hello ä\n"


def test_read_text_errors(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"ok\nab\xffcd")
    with pytest.raises(ValueError, match=r"bad\.txt.*byte offset 5 \(line 2"):
        read_text(p)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "blank.txt").write_bytes(b" \n\t\n")
    with pytest.raises(ValueError, match="only whitespace"):
        read_text(tmp_path / "blank.txt")
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "missing.txt")


# -------------------------------------------------------------------------------------------- batching


def test_batchify_streams():
    data = batchify(np.arange(23), 4)
    assert data.shape == (4, 5) and data.dtype == np.int64
    assert data[1].tolist() == [5, 6, 7, 8, 9]  # contiguous streams, the tail (20, 21, 22) dropped


def test_windows_shapes_and_shift():
    b = LMBatcher(np.arange(42), batch_size=4, bptt=3)  # streams of 10: windows of 3, 3, 3 steps
    windows = list(b)
    assert len(b) == len(windows) == 3
    assert [x.shape for x, _ in windows] == [(4, 3)] * 3
    for x, y in windows:
        assert y.dtype == np.int64 and np.array_equal(y, x + 1)
    b = LMBatcher(np.arange(44), batch_size=4, bptt=3)  # streams of 11: the last window has 1 step
    assert [x.shape[1] for x, _ in b] == [3, 3, 3, 1]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), batch=st.integers(1, 8), bptt=st.integers(1, 40))
def test_windows_reproduce_streams(n, batch, bptt):
    ids = np.random.default_rng(n).integers(0, 50, size=n * batch + n % batch)  # plus a dropped tail
    b = LMBatcher(ids, batch, bptt)
    xs, ys = zip(*b)
    x, y = np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)
    assert np.array_equal(np.concatenate([x, y[:, -1:]], axis=1), b.data)  # every stream, in order
    assert np.array_equal(y[:, :-1], x[:, 1:])
    assert np.array_equal(b.data.reshape(-1), ids[: n * batch])


def test_resume_from_window():
    b = LMBatcher(np.arange(100), batch_size=2, bptt=7)
    full = list(b)
    rest = list(b.iter_from(3))
    assert len(rest) == len(full) - 3
    for (x1, y1), (x2, y2) in zip(full[3:], rest):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert list(b.iter_from(len(b))) == []
    assert np.array_equal(b[-1][0], full[-1][0])
    with pytest.raises(ValueError, match="start"):
        next(b.iter_from(len(b) + 1))
    with pytest.raises(IndexError):
        b[len(b)]


def test_lm_batches_function():
    x, y = next(lm_batches(np.arange(20), 2, 4))
    assert x.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]] and y.tolist() == [[1, 2, 3, 4], [11, 12, 13, 14]]


def test_batching_errors():
    with pytest.raises(ValueError, match="too short for batch_size=8.*batch_size <= 3"):
        lm_batches(np.arange(7), batch_size=8, bptt=4)
    with pytest.raises(ValueError, match="too short"):
        LMBatcher(np.arange(7), batch_size=4, bptt=4)
    with pytest.raises(ValueError, match="1-D integer"):
        LMBatcher(np.zeros((2, 5), dtype=np.int64), 1, 2)
    with pytest.raises(ValueError, match="1-D integer"):
        LMBatcher(np.zeros(10), 1, 2)
    with pytest.raises(ValueError, match="bptt"):
        LMBatcher(np.arange(10), 1, 0)
    with pytest.raises(ValueError, match="batch_size"):
        LMBatcher(np.arange(10), 0, 2)
