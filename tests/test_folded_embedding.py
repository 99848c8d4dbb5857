"""The folded first layer: with locked weights in eval mode, a layer fed by an embedding looks each token's
input projection up from a table, and gives what the looked-up vectors give."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.scratch.fast import kernels
from rnnkit.scratch import recurrent as R
from rnnkit.scratch.fast import packing
from rnnkit.scratch.models import TextClassifier
from rnnkit.scratch.recurrent import GRU, LSTM, RNN, Embedded

VOCAB, FEATURES = 11, 5
MAKERS = {"rnn_tanh": RNN, "lstm": LSTM, "gru": GRU}


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def step_path(request, monkeypatch):
    """Run each test with the LSTM and GRU steps on NumPy, then on the numba kernels."""
    if request.param == "numba" and not kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(kernels, "ENABLED", request.param == "numba")


def make(kind, dtype=np.float64, seed=1):
    return MAKERS[kind](FEATURES, 6, num_layers=2, bidirectional=True, dtype=dtype, rng=seed)


def batch_of(batch, time=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (batch, time))
    lengths = rng.integers(1, time + 1, batch)
    weight = rng.standard_normal((VOCAB, FEATURES)).astype(dtype)
    return tokens, lengths, weight


def results(layer, x, lengths):
    out, state = layer(x, lengths=lengths)
    return [out] + (list(state) if isinstance(state, tuple) else [state])


# batch 1 and 3 take the LSTM's small-batch loop; at batch 7 the numba LSTM runs gate-major unfolded, and
# folded a BLAS product and a compiled call per step
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("batch", [1, 3, 7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_table_gives_what_the_vectors_give(kind, batch, dtype):
    tokens, lengths, weight = batch_of(batch, dtype=dtype)
    layer = make(kind, dtype).eval().lock_weights()
    expected = results(layer, weight[tokens], lengths)
    assert not layer._cache["folded"]
    got = results(layer, Embedded(tokens, weight), lengths)
    assert layer._cache["folded"]
    for g, e in zip(got, expected):
        # float32 to rounding: the table's rows come from another GEMM than the looked-up vectors' product
        np.testing.assert_allclose(g, e, rtol=1e-12 if dtype == np.float64 else 1e-5, atol=1e-7)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(MAKERS)), layers=st.integers(1, 3), bidirectional=st.booleans(),
       batch=st.integers(1, 9), time=st.integers(1, 6), vocab=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_folded_layers_agree_on_any_shape(kind, layers, bidirectional, batch, time, vocab, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (batch, time))
    lengths = rng.integers(1, time + 1, batch)
    weight = rng.standard_normal((vocab, FEATURES))
    layer = MAKERS[kind](FEATURES, 4, num_layers=layers, bidirectional=bidirectional, dtype=np.float64, rng=seed)
    layer.eval().lock_weights()
    expected = results(layer, weight[tokens], lengths)
    got = results(layer, Embedded(tokens, weight), lengths)
    assert layer._cache["folded"]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_the_table_is_made_once_per_direction(monkeypatch):
    tokens, lengths, weight = batch_of(3)
    layer = make("gru").eval().lock_weights()
    made = []
    real = packing.Packed.token_table

    def counting(self, embedding):
        table = real(self, embedding)
        made.append(id(table))
        return table
    monkeypatch.setattr(packing.Packed, "token_table", counting)
    for _ in range(3):
        layer(Embedded(tokens, weight), lengths=lengths)
    assert len(made) == 6 and len(set(made)) == 2     # two directions, the same two tables every call
    other = weight + 1.0                               # another embedding array gets its own table
    np.testing.assert_allclose(layer(Embedded(tokens, other), lengths=lengths)[0],
                               layer(other[tokens], lengths=lengths)[0], rtol=1e-12)


def test_unlocked_training_or_oversized_never_folds(monkeypatch):
    tokens, lengths, weight = batch_of(3)
    layer = make("lstm").eval()
    layer(Embedded(tokens, weight), lengths=lengths)
    assert not layer._cache["folded"]                  # unlocked
    layer.lock_weights().train()
    layer(Embedded(tokens, weight), lengths=lengths)
    assert not layer._cache["folded"]                  # training (which unlocked, too)
    layer.eval().lock_weights()
    monkeypatch.setattr(R, "FOLD_MAX_BYTES", VOCAB * 4 * 6 * 8 - 1)   # one byte short of the table
    layer(Embedded(tokens, weight), lengths=lengths)
    assert not layer._cache["folded"]
    monkeypatch.setattr(R, "FOLD_MAX_BYTES", VOCAB * 4 * 6 * 8)
    layer(Embedded(tokens, weight), lengths=lengths)
    assert layer._cache["folded"]


def test_backward_after_a_folded_forward_is_a_clear_error():
    tokens, lengths, weight = batch_of(3)
    layer = make("rnn_tanh").eval().lock_weights()
    out, _ = layer(Embedded(tokens, weight), lengths=lengths)
    with pytest.raises(ValueError, match="looked its input projection up"):
        layer.backward(np.ones_like(out))


def test_bad_embedding_is_a_clear_error():
    tokens, lengths, weight = batch_of(3)
    layer = make("gru").eval().lock_weights()
    with pytest.raises(ValueError, match="expects"):
        layer(Embedded(tokens, weight[:, :3]), lengths=lengths)
    with pytest.raises(ValueError, match="float32"):
        layer(Embedded(tokens, weight.astype(np.float32)), lengths=lengths)
    with pytest.raises(ValueError, match="empty"):
        layer(Embedded(tokens[:0], weight), lengths=lengths[:0])


def classifier(seed, cell="gru"):
    return TextClassifier(VOCAB, 3, embedding_dim=FEATURES, hidden_size=6, cell=cell, bidirectional=True,
                          pooling="max", dtype=np.float64, rng=seed)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn_tanh"])
def test_a_locked_classifier_predicts_as_an_unlocked_one(cell):
    tokens, lengths, _ = batch_of(4, time=6)
    model = classifier(1, cell).eval()
    expected = model.predict(tokens, lengths)
    model.lock_weights()
    for _ in range(2):
        np.testing.assert_allclose(model.predict(tokens, lengths), expected, rtol=1e-12)
    assert model.rnn._cache["folded"]
    model.load_state_dict(classifier(2, cell).state_dict())     # new embedding and weights: new tables
    np.testing.assert_allclose(model.predict(tokens, lengths),
                               classifier(2, cell).eval().predict(tokens, lengths), rtol=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        model.predict(tokens + VOCAB, lengths)


def test_a_classifier_trains_after_it_was_locked():
    tokens, lengths, _ = batch_of(4, time=6)
    model = classifier(1).eval().lock_weights()
    model.predict(tokens, lengths)
    model.train()
    loss, _ = model.loss({"inputs": tokens, "lengths": lengths, "labels": np.array([0, 1, 2, 0])})
    assert np.isfinite(loss) and np.abs(model.embedding.weight.grad).sum() > 0
