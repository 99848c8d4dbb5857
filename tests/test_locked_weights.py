"""Locked weights: eval-mode forwards reuse the packed weights, with the same bits, and never stale ones."""
import numpy as np
import pytest

from rnnkit.scratch.fast import packing
from rnnkit.scratch.fast import kernels, threads
from rnnkit.scratch.engine import ScratchEngine
from rnnkit.scratch.recurrent import GRU, LSTM, RNN

MAKERS = {"rnn_tanh": lambda **kw: RNN(**kw), "lstm": lambda **kw: LSTM(**kw), "gru": lambda **kw: GRU(**kw)}


def make(kind, seed=1):
    return MAKERS[kind](input_size=5, hidden_size=6, num_layers=2, bidirectional=True, dtype=np.float32, rng=seed)


def outputs(layer, x, lengths=None):
    out, state = layer.forward(x, lengths=lengths)
    return [out] + (list(state) if isinstance(state, tuple) else [state])


def count_packs(monkeypatch):
    calls = []
    real = packing.pack

    def counting(*args):
        calls.append(args[0])
        return real(*args)
    monkeypatch.setattr(packing, "pack", counting)
    return calls


# batch 1 and 3 take the LSTM's small-batch loop, batch 7 its gate-major steps (with numba)
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_locked_forward_gives_the_same_bits_and_packs_once(kind, batch, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 4, 5)).astype(np.float32)
    lengths = rng.integers(1, 5, batch) if batch > 1 else None
    layer = make(kind).eval()
    expected = outputs(layer, x, lengths)
    calls = count_packs(monkeypatch)
    layer.lock_weights()
    for _ in range(3):
        for got, want in zip(outputs(layer, x, lengths), expected):
            np.testing.assert_array_equal(got, want)
    assert len(calls) == 4       # 2 layers x 2 directions, packed on the first call only
    layer.unlock_weights()
    outputs(layer, x, lengths)
    assert len(calls) == 8       # unlocked: packed on every call again


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_new_weights_are_never_served_stale(kind):
    x = np.random.default_rng(0).standard_normal((7, 4, 5)).astype(np.float32)
    layer = make(kind, seed=1).eval().lock_weights()
    before = outputs(layer, x)
    other = make(kind, seed=2).eval()
    layer.load_state_dict(other.state_dict())        # stays locked, forgets the old packs
    assert layer.weights_locked
    for got, want in zip(outputs(layer, x), outputs(other, x)):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(outputs(layer, x)[0], before[0])

    layer.train()                                    # training unlocks
    assert not layer.weights_locked
    for p in layer.parameters():
        p.data *= 0.5                                # what an optimiser step does: in place
    layer.eval()
    halved = make(kind, seed=2).eval()
    for p in halved.parameters():
        p.data *= 0.5
    np.testing.assert_array_equal(outputs(layer, x)[0], outputs(halved, x)[0])


def test_training_forward_does_not_use_or_fill_the_packs(monkeypatch):
    layer = make("lstm").lock_weights()              # locked but in training mode: packs every call
    calls = count_packs(monkeypatch)
    x = np.ones((2, 3, 5), dtype=np.float32)
    layer.forward(x)
    layer.forward(x)
    assert len(calls) == 8 and layer._locked_packs == {}


def test_locked_weights_context_restores_the_state():
    layer = make("gru").eval()
    with layer.locked_weights():
        assert layer.weights_locked
    assert not layer.weights_locked
    layer.lock_weights()
    with layer.locked_weights():
        pass
    assert layer.weights_locked                      # locked before: stays locked


def test_engine_locks_the_whole_model():
    model = make("lstm")
    engine = ScratchEngine(model)
    with engine.locked_weights():
        assert all(m.weights_locked for m in model.modules())
    assert not any(m.weights_locked for m in model.modules())
    engine.lock_weights()
    assert model.weights_locked
    model.train()                                    # what train_step does first
    assert not model.weights_locked


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")
def test_gate_major_lstm_reuses_its_step_operand(monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", True)
    layer = make("lstm").eval().lock_weights()
    x = np.ones((8, 3, 5), dtype=np.float32)
    layer.forward(x)
    packed = layer._locked_packs[(0, 0)]
    operand = packed.w_steps
    layer.forward(x)
    assert layer._locked_packs[(0, 0)] is packed and packed.w_steps is operand


@pytest.fixture
def two_threads():
    threads.set_count(2)
    yield
    threads.set_count(None)


# with numba, on 2 threads: the LSTM's one part (batch 2), its units split (hidden 128, batch 4), column groups
# (hidden 32, batch 40); the GRU and the RNN on their own paths. The inference forward reads the caller's
# input through a view (the reverse direction's through a reversed one) and (batch-major, no lengths) writes
# the output's rows itself, each direction its own columns, the reverse one in reversed time.
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("batch, hidden", [(2, 16), (4, 128), (40, 32)])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_locked_forward_reads_and_writes_batch_major_arrays_with_the_training_forwards_bits(
        kind, batch, hidden, ragged, batch_first, bidirectional, two_threads):
    rng = np.random.default_rng(batch + hidden)
    layer = MAKERS[kind](input_size=7, hidden_size=hidden, num_layers=2, batch_first=batch_first,
                         bidirectional=bidirectional, dtype=np.float32, rng=3)
    x = rng.standard_normal((batch, 9, 7) if batch_first else (9, batch, 7)).astype(np.float32)
    lengths = rng.integers(1, 10, batch) if ragged else None
    expected = outputs(layer.train(), x, lengths)
    layer.eval().lock_weights()
    got = outputs(layer, x, lengths)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert got[0].flags.c_contiguous and not np.shares_memory(got[0], x)
    x[:] = 0  # the output is the layer's own array
    np.testing.assert_array_equal(got[0], expected[0])
