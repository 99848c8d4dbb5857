"""The translation model on both engines: float64 parity of the loss and of every gradient, the scratch
backward by finite differences, scheduled sampling, label smoothing, tied embeddings, the inference door."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.engines import build_engine
from rnnkit.scratch.losses import cross_entropy
from rnnkit.scratch.seq2seq import Seq2Seq as ScratchSeq2Seq
from rnnkit.seq2seq_spec import loss_targets

torch = pytest.importorskip("torch")
from rnnkit.torch.engine import TorchEngine  # noqa: E402
from rnnkit.torch.seq2seq import Seq2Seq as TorchSeq2Seq  # noqa: E402

ATTENTION = ("none", "bahdanau", "luong-dot", "luong-general")
CELLS = ("rnn_tanh", "lstm", "gru")
SOURCE_VOCAB, TARGET_VOCAB = 9, 8


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def make_batch(rng, source_lengths, target_lengths):
    """A padded batch (ids >= 4 except the specials' places: <bos> 2 first in target_in, <eos> 3 last in target_out)."""
    source_lengths, target_lengths = np.array(source_lengths), np.array(target_lengths)
    batch, S, T = len(source_lengths), source_lengths.max(), target_lengths.max()
    source = rng.integers(4, SOURCE_VOCAB, (batch, S)) * (np.arange(S)[None] < source_lengths[:, None])
    words = rng.integers(4, TARGET_VOCAB, (batch, T))
    target_in = np.concatenate([np.full((batch, 1), 2), words[:, :-1]], axis=1)
    target_out = words.copy()
    target_out[np.arange(batch), target_lengths - 1] = 3
    real = np.arange(T)[None] < target_lengths[:, None]
    return dict(source=source, source_lengths=source_lengths, target_in=target_in * real,
                target_out=target_out * real, target_lengths=target_lengths)


def make_pair(**kwargs):
    """A float64 scratch model and a torch model holding its weights."""
    options = dict(source_vocab=SOURCE_VOCAB, target_vocab=TARGET_VOCAB, embedding_dim=5, hidden_size=4)
    options.update(kwargs)
    scratch = ScratchSeq2Seq(**options, dtype=np.float64, rng=1)
    model = TorchSeq2Seq(**options).double()
    TorchEngine(model, device="cpu").load_weights(scratch.state_dict())
    return scratch, model


def compare_loss_and_grads(scratch, model, batch):
    scratch.zero_grad()
    loss, _ = scratch.loss(batch)
    torch_loss, _ = model.loss(batch)
    torch_loss.backward()
    assert rel_err(loss, torch_loss.item()) < 1e-9
    grads = dict(model.named_parameters())
    assert [n for n, _ in scratch.named_parameters()] == list(grads)
    for name, p in scratch.named_parameters():
        assert rel_err(p.grad, grads[name].grad.numpy()) < 1e-9, name
    return loss


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ATTENTION)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_loss_and_every_gradient_match_torch(attention, cell, data):
    bidirectional = attention != "luong-dot" and data.draw(st.booleans(), "bidirectional")
    layers = data.draw(st.integers(1, 2), "layers")
    batch = data.draw(st.integers(1, 3), "batch")
    source_lengths = data.draw(st.lists(st.integers(1, 5), min_size=batch, max_size=batch), "source_lengths")
    target_lengths = data.draw(st.lists(st.integers(1, 4), min_size=batch, max_size=batch), "target_lengths")
    smoothing = data.draw(st.sampled_from([0.0, 0.1]), "label_smoothing")
    tie = data.draw(st.booleans(), "tie_embeddings")
    scratch, model = make_pair(num_layers=layers, cell=cell, bidirectional=bidirectional, attention=attention,
                               label_smoothing=smoothing, tie_embeddings=tie, embedding_dim=4 if tie else 5)
    rng = np.random.default_rng(data.draw(st.integers(0, 999), "seed"))
    compare_loss_and_grads(scratch, model, make_batch(rng, source_lengths, target_lengths))
    assert np.all(scratch.encoder.embedding.weight.grad[0] == 0)       # the padding row learns nothing


def test_state_dicts_move_between_engines_unchanged():
    scratch, model = make_pair(cell="lstm", bidirectional=True, attention="bahdanau", num_layers=2)
    ours, theirs = scratch.state_dict(), {k: v.numpy() for k, v in model.state_dict().items()}
    assert list(ours) == list(theirs)
    assert "encoder.rnn.weight_ih_l0_reverse" in ours and "bridge.c.1.weight" in ours
    assert "decoder.attention.query.weight" in ours and ours["bridge.h.0.weight"].shape == (4, 8)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])
    fresh = ScratchSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, 5, 4, 2, "lstm", True, "bahdanau", dtype=np.float64, rng=7)
    fresh.load_state_dict(theirs)
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, ours[name])


@pytest.mark.parametrize("attention, cell", [("luong-general", "lstm"), ("bahdanau", "gru"),
                                             ("none", "rnn_relu"), ("luong-dot", "rnn_tanh")])
def test_scratch_backward_matches_finite_differences(attention, cell):
    """Independently of torch: two entries of every parameter, central differences of the smoothed loss."""
    model = ScratchSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, 3, 3, 2, cell, attention != "luong-dot", attention,
                           label_smoothing=0.1, dtype=np.float64, rng=3)
    batch = make_batch(np.random.default_rng(4), [3, 1, 2], [3, 2, 1])
    model.zero_grad()
    model.loss(batch)

    def loss():
        logits = model.forward(batch["source"], batch["source_lengths"], batch["target_in"])
        return cross_entropy(logits, loss_targets(batch), label_smoothing=0.1)[0]

    rng = np.random.default_rng(5)
    for name, p in model.named_parameters():
        for flat in rng.choice(p.data.size, size=min(2, p.data.size), replace=False):
            idx = np.unravel_index(flat, p.data.shape)
            old = p.data[idx]
            p.data[idx] = old + 1e-6
            plus = loss()
            p.data[idx] = old - 1e-6
            minus = loss()
            p.data[idx] = old
            numeric = (plus - minus) / 2e-6
            assert abs(p.grad[idx] - numeric) < 1e-6 * max(1.0, abs(numeric)), (name, idx, p.grad[idx], numeric)


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_scheduled_sampling_ratio_zero_feeds_the_argmax(engine):
    """teacher_forcing=0: each input after <bos> is the previous step's argmax; the loss equals the one
    computed step by step through decode_step, feeding the argmax by hand."""
    scratch, model = make_pair(cell="gru", attention="luong-general", teacher_forcing=0.0, num_layers=2)
    batch = make_batch(np.random.default_rng(6), [4, 2, 3], [4, 3, 2])
    if engine == "scratch":
        loss, _ = scratch.train().loss(batch)
    else:
        loss = model.train().loss(batch)[0].item()
    state, memory = scratch.encode(batch["source"], batch["source_lengths"])
    prev, total, fed = batch["target_in"][:, 0], 0.0, []
    for t in range(batch["target_in"].shape[1]):
        log_probs, state, _ = scratch.decode_step(prev, state, memory)
        real = t < batch["target_lengths"]
        total -= log_probs[np.arange(3), batch["target_out"][:, t]][real].sum()
        prev = log_probs.argmax(axis=1)
        fed.append(prev)
    assert rel_err(loss, total / batch["target_lengths"].sum()) < 1e-9
    assert np.any(np.stack(fed[:-1], axis=1) != batch["target_in"][:, 1:])   # it did feed something else
    teacher_forced, _ = make_pair(cell="gru", attention="luong-general", num_layers=2)[0].loss(batch)
    assert abs(teacher_forced - loss) > 1e-6


def test_scheduled_sampling_is_seeded():
    def run(seed):
        model = ScratchSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, 5, 4, attention="bahdanau", teacher_forcing=0.5,
                               dropout=0.2, dtype=np.float64, rng=seed)
        return [model.loss(make_batch(np.random.default_rng(i), [4, 3], [4, 4]))[0] for i in range(3)]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_label_smoothing_equals_torch_cross_entropy():
    scratch = ScratchSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, 5, 4, attention="bahdanau", label_smoothing=0.2,
                             dtype=np.float64, rng=0)
    batch = make_batch(np.random.default_rng(1), [4, 2], [3, 2])
    loss, _ = scratch.loss(batch)
    logits = torch.from_numpy(scratch.forward(batch["source"], batch["source_lengths"], batch["target_in"]))
    targets = torch.from_numpy(batch["target_out"]).masked_fill(torch.from_numpy(
        np.arange(3)[None] >= batch["target_lengths"][:, None]), -100)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, TARGET_VOCAB), targets.reshape(-1),
                                                 label_smoothing=0.2)
    assert rel_err(loss, expected.item()) < 1e-12
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, TARGET_VOCAB), targets.reshape(-1))
    assert abs(loss - plain.item()) > 1e-3                # the smoothing did something
    summed, count, _ = scratch.eval_loss(batch)           # evaluation: the plain NLL
    assert count == 5 and rel_err(summed / count, plain.item()) < 1e-12


def test_tied_embeddings_share_one_matrix_and_need_matching_sizes():
    for cls in (ScratchSeq2Seq, TorchSeq2Seq):
        with pytest.raises(ValueError, match="tie_embeddings needs embedding_dim == hidden_size"):
            cls(SOURCE_VOCAB, TARGET_VOCAB, 5, 4, tie_embeddings=True)
        with pytest.raises(ValueError, match="luong-dot"):
            cls(SOURCE_VOCAB, TARGET_VOCAB, 4, 4, bidirectional=True, attention="luong-dot")
        with pytest.raises(ValueError, match="unknown attention"):
            cls(SOURCE_VOCAB, TARGET_VOCAB, 4, 4, attention="luong")
    model = ScratchSeq2Seq(SOURCE_VOCAB, TARGET_VOCAB, 4, 4, tie_embeddings=True, rng=0)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    state = model.state_dict()
    np.testing.assert_array_equal(state["decoder.output.weight"], state["decoder.embedding.weight"])


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_bad_batches_are_clear_errors(engine):
    built = build_engine(engine, "Seq2Seq", dict(source_vocab=SOURCE_VOCAB, target_vocab=TARGET_VOCAB,
                                                 embedding_dim=4, hidden_size=4), device="cpu")
    good = make_batch(np.random.default_rng(0), [3, 2], [2, 2])
    for key, value, message in [("source_lengths", np.array([0, 2]), "source_lengths must be in"),
                                ("target_lengths", np.array([3, 2]), "target_lengths must be in"),
                                ("target_in", good["target_in"][:, :1], "must both be"),
                                ("source", good["source"].astype(float), "integer array")]:
        with pytest.raises(ValueError, match=message):
            built.train_step({**good, key: value})
    with pytest.raises(ValueError, match="needs 'target_out'"):
        built.eval_loss({k: v for k, v in good.items() if k != "target_out"})


@pytest.mark.parametrize("attention", ATTENTION)
def test_engine_call_runs_the_same_inference_on_both_engines(attention):
    kwargs = dict(source_vocab=SOURCE_VOCAB, target_vocab=TARGET_VOCAB, embedding_dim=5, hidden_size=4,
                  num_layers=2, cell="lstm", bidirectional=attention != "luong-dot", attention=attention)
    scratch = build_engine("scratch", "Seq2Seq", kwargs, dtype="float64", seed=0)
    other = build_engine("torch", "Seq2Seq", kwargs, dtype="float64", device="cpu")
    other.load_weights(scratch.weights())
    source, lengths = np.array([[5, 6, 7, 0], [4, 8, 6, 5]]), np.array([3, 4])
    results = []
    for engine in (scratch, other):
        state, memory = engine.call("encode", source, lengths)
        prev, steps = np.array([2, 2]), []
        for token in (5, 6):
            log_probs, state, weights = engine.call("decode_step", prev, state, memory)
            steps.append((log_probs, weights, state))
            prev = np.array([token, token])
        results.append(steps)
    for (lp_a, w_a, s_a), (lp_b, w_b, s_b) in zip(*results):
        assert isinstance(lp_b, np.ndarray) and lp_b.shape == (2, TARGET_VOCAB) and w_b.shape == (2, 4)
        assert rel_err(lp_a, lp_b) < 1e-9 and np.abs(w_a - w_b).max() < 1e-12
        assert set(s_a) == set(s_b) and all(rel_err(s_a[k], s_b[k]) < 1e-9 for k in s_a)
        np.testing.assert_allclose(np.exp(lp_a).sum(axis=1), 1.0)
        assert w_a[0, 3] == 0.0                        # the padding
        if attention != "none":
            np.testing.assert_allclose(w_a.sum(axis=1), 1.0)
    for engine in (scratch, other):
        with pytest.raises(ValueError, match="no inference method 'loss'"):
            engine.call("loss", {})


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_bad_decode_steps_are_clear_errors(engine):
    built = build_engine(engine, "Seq2Seq", dict(source_vocab=SOURCE_VOCAB, target_vocab=TARGET_VOCAB,
                                                 embedding_dim=4, hidden_size=4, cell="lstm"), device="cpu")
    state, memory = built.call("encode", np.array([[4, 5], [6, 0]]), np.array([2, 1]))
    with pytest.raises(ValueError, match="3 prev_tokens but batch sizes"):
        built.call("decode_step", np.array([2, 2, 2]), state, memory)
    with pytest.raises(ValueError, match="out of range|must be in"):
        built.call("decode_step", np.array([2, TARGET_VOCAB]), state, memory)
    with pytest.raises(ValueError, match=r"needs state\['h'\]"):
        built.call("decode_step", np.array([2, 2]), {}, memory)
    with pytest.raises(ValueError, match="source_lengths must be in"):
        built.call("encode", np.array([[4, 5]]), np.array([3]))
    log_probs, state, weights = built.call("decode_step", np.array([2, 2]), state, memory)
    assert log_probs.shape == (2, TARGET_VOCAB) and state["c"].shape == (2, 1, 4) and weights[1, 1] == 0.0


def test_float32_engines_agree_loosely_and_train():
    kwargs = dict(source_vocab=SOURCE_VOCAB, target_vocab=TARGET_VOCAB, embedding_dim=6, hidden_size=5,
                  num_layers=2, cell="lstm", bidirectional=True, attention="luong-general")
    scratch = build_engine("scratch", "Seq2Seq", kwargs, seed=0, lr=0.01)
    other = build_engine("torch", "Seq2Seq", kwargs, device="cpu", lr=0.01)
    other.load_weights(scratch.weights())
    batch = make_batch(np.random.default_rng(2), [5, 3, 4], [4, 2, 3])
    for _ in range(3):
        a, b = scratch.train_step(batch), other.train_step(batch)
        assert rel_err(a[0], b[0]) < 1e-5 and rel_err(a[1], b[1]) < 1e-4
    assert all(w.dtype == np.float32 for w in scratch.weights().values())
    for name, value in scratch.weights().items():
        assert rel_err(value, other.weights()[name]) < 1e-4, name


@pytest.mark.parametrize("engine", ["scratch", "torch"])
def test_dropout_acts_in_training_only(engine):
    kwargs = dict(source_vocab=SOURCE_VOCAB, target_vocab=TARGET_VOCAB, embedding_dim=6, hidden_size=5,
                  num_layers=2, cell="gru", attention="bahdanau")
    dropped = build_engine(engine, "Seq2Seq", {**kwargs, "dropout": 0.5}, dtype="float64", seed=0, device="cpu",
                           lr=0.0)
    plain = build_engine(engine, "Seq2Seq", kwargs, dtype="float64", seed=0, device="cpu", lr=0.0)
    plain.load_weights(dropped.weights())
    batch = make_batch(np.random.default_rng(3), [5, 3], [4, 4])
    assert dropped.eval_loss(batch)[0] == plain.eval_loss(batch)[0]
    losses = {dropped.train_step(batch)[0] for _ in range(3)}
    assert len(losses) == 3 and plain.train_step(batch)[0] not in losses
