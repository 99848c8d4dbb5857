"""Loading pretrained word vectors for a vocabulary."""

import gzip

import numpy as np
import pytest

from rnnkit.data.embeddings import load_embeddings
from rnnkit.data.vocab import Vocabulary

VOCAB = Vocabulary(["<pad>", "<unk>", "the", "cat", "ünï", "dog"], specials=["<pad>", "<unk>"])
VECS = {"the": [0.5, -1.0, 2.0], "cat": [1e-3, 4.0, -0.25], "ünï": [1.0, 2.0, 3.0], "bird": [9.0, 9.0, 9.0]}


def glove(vecs=VECS, header=False, sep=" ", tail=""):
    lines = [f"{len(vecs)} {len(next(iter(vecs.values())))}"] if header else []
    lines += [sep.join([w] + [repr(x) for x in v]) + tail for w, v in vecs.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path, text, name="vec.txt", gz=False):
    path = tmp_path / name
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("header, gz, name, tail", [(False, False, "v.txt", ""), (True, False, "v.vec", " "),
                                                    (False, True, "v.txt.gz", ""), (True, True, "v.bin", "")])
def test_load(tmp_path, header, gz, name, tail):
    path = write(tmp_path, glove(header=header, tail=tail), name, gz)
    m, cov = load_embeddings(path, VOCAB)
    assert m.shape == (6, 3) and m.dtype == np.float32
    for w in ("the", "cat", "ünï"):
        np.testing.assert_array_equal(m[VOCAB.stoi[w]], np.float32(VECS[w]))
    assert not m[0].any()  # <pad>
    assert cov == {"found": 3, "total": 5, "fraction": 0.6, "missing": ["<unk>", "dog"]}


def test_missing_rows_are_seeded_and_small(tmp_path):
    path = write(tmp_path, glove())
    a, _ = load_embeddings(path, VOCAB, seed=1)
    b, _ = load_embeddings(path, VOCAB, seed=1)
    c, _ = load_embeddings(path, VOCAB, seed=2)
    unk, dog = VOCAB.stoi["<unk>"], VOCAB.stoi["dog"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[dog], c[dog]) and not np.array_equal(a[unk], a[dog])
    found = np.float32([VECS[w] for w in ("the", "cat", "ünï")])
    assert np.abs(a[[unk, dog]]).max() < 5 * found.std()


def test_no_pad_and_nothing_found(tmp_path):
    vocab = Vocabulary(["x", "y"])
    m, cov = load_embeddings(write(tmp_path, glove()), vocab, dim=3)
    assert m.shape == (2, 3) and m.any() and np.abs(m).max() < 1  # scale 0.1 when nothing was found
    assert cov == {"found": 0, "total": 2, "fraction": 0.0, "missing": ["x", "y"]}


def test_first_of_repeated_word_wins_and_word_with_spaces(tmp_path):
    text = "the 1 2\nat name@x.com 3 4\nthe 5 6\nfoo\t7  8\n"
    vocab = Vocabulary(["the", "at name@x.com", "foo"])
    m, cov = load_embeddings(write(tmp_path, text), vocab)
    np.testing.assert_array_equal(m, np.float32([[1, 2], [3, 4], [7, 8]]))
    assert cov["fraction"] == 1.0


@pytest.mark.parametrize("text, match", [
    ("", "no word vectors"),
    ("\n\n", "no word vectors"),
    ("3 2\n", r"no word vectors in the file \(only a header\)"),
    ("the 1 2 3\ncat 1 2\n", r"line 2: this line has 2 dimensions, expected 3"),
    ("the 1 2\ncat 1 2 3\n", r"line 2: this line has 3 dimensions, expected 2"),
    ("the 1 2\ncat\n", r"line 2: this line has 0 dimensions, expected 2"),
    ("2 3\nthe 1 2\n", r"line 2: this line has 2 dimensions, expected 3"),
    ("the\n", r"line 1: a word without a vector"),
    ("the 1 2\ncat 1 x\n", r"line 2: could not convert string to float"),
    ("the 1 nan\n", r"line 1: a value is not finite"),
    ("3 2\nthe 1 2\ncat 3 4\n", "header announces 3 vectors but the file holds 2"),
])
def test_errors(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_embeddings(write(tmp_path, text), VOCAB)


def test_dim_argument(tmp_path):
    path = write(tmp_path, glove())
    assert load_embeddings(path, VOCAB, dim=3)[0].shape == (6, 3)
    with pytest.raises(ValueError, match="line 1: this line has 3 dimensions, expected 4"):
        load_embeddings(path, VOCAB, dim=4)
    with pytest.raises(ValueError, match="line 1: the header says 3 dimensions, expected 5"):
        load_embeddings(write(tmp_path, glove(header=True)), VOCAB, dim=5)


def test_bad_values_outside_the_vocabulary_are_not_parsed(tmp_path):
    m, cov = load_embeddings(write(tmp_path, "the 1 2\nzzz a b\n"), VOCAB)
    assert cov["found"] == 1


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "nope.txt", VOCAB)
