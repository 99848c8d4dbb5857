"""Word vectors by counting (rnnkit/data/count_vectors.py): PPMI + SVD, GloVe's text format, errors."""
import numpy as np
import pytest

from rnnkit.data.count_vectors import count_vectors, nearest, write_vectors
from rnnkit.data.embeddings import load_embeddings
from rnnkit.data.vocab import PAD, UNK, Vocabulary


def corpus(n=400, seed=0):
    """good/great share their contexts, bad/awful theirs: counted vectors must put each pair together."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        if rng.random() < 0.5:
            texts.append(["the", "flight", "was", str(rng.choice(["good", "great"])), "thanks", "crew"])
        else:
            texts.append(["the", "delay", "was", str(rng.choice(["bad", "awful"])), "never", "again"])
    return texts


def test_words_in_the_same_contexts_get_close_vectors():
    words, vectors = count_vectors(corpus(), dim=4, window=2)
    assert vectors.shape == (len(words), 4) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert nearest(words, vectors, "good", 1)[0][0] == "great"
    assert nearest(words, vectors, "awful", 1)[0][0] == "bad"
    cos = dict(nearest(words, vectors, "good", len(words)))
    assert cos["great"] > 0.9 and cos["great"] > cos["bad"] + 0.5


def test_seeded_and_reproducible():
    a = count_vectors(corpus(), dim=3, seed=1)[1]
    b = count_vectors(corpus(), dim=3, seed=1)[1]
    np.testing.assert_array_equal(a, b)


def test_written_file_loads_as_embeddings(tmp_path):
    words, vectors = count_vectors(corpus(), dim=3)
    write_vectors(tmp_path / "v.txt", words, vectors)
    vocab = Vocabulary([PAD, UNK, "good", "bad", "unseen"], specials=(PAD, UNK))
    matrix, coverage = load_embeddings(tmp_path / "v.txt", vocab)
    assert coverage["found"] == 2 and matrix.shape == (5, 3)
    np.testing.assert_allclose(matrix[vocab.encode(["good"])[0]], vectors[words.index("good")], rtol=1e-5)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="too few"):
        count_vectors([["a", "b", "a", "b"]], dim=5)
    with pytest.raises(ValueError, match="max_words"):
        count_vectors(corpus(), max_words=0)
    with pytest.raises(ValueError, match="white space"):
        write_vectors(tmp_path / "v.txt", ["a b"], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="no vector"):
        nearest(["a"], np.ones((1, 2)), "b")
