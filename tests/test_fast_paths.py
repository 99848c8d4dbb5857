"""Every path of the scratch engine against the reference path (the textbook cells, rnnkit/scratch/cells/).

RNNKIT_PATH forces a path (fast/selector.py); each layer reports the path it ran on (`last_paths`). On shapes
drawn by hypothesis — batch 1-64 on both sides of the selector's thresholds, hidden sizes that split over
threads or not, ragged lengths, 1-2 layers, one or two directions, float64 and float32 — every path's
outputs, final states and gradients (input, initial states, every parameter) equal the reference's to
float rounding.
"""
import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.scratch import fast
from rnnkit.scratch.fast import kernels, threads
from rnnkit.scratch.recurrent import GRU, LSTM, RNN

MAKERS = {
    "rnn_tanh": lambda **kw: RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: RNN(nonlinearity="relu", **kw),
    "lstm": LSTM,
    "gru": GRU,
}
FAST = ["numpy"] + (["numba", "threaded"] if kernels.AVAILABLE else [])
# What each cell runs on when a path is forced: the path itself where the cell has it, else the next below
# (the RNN has a numba loop for small batches only).
def expected(path, kind, batch):
    if path in ("numpy", "threaded") or kind == "lstm":
        return path
    if kind == "gru":
        return "numba"
    return "numba" if batch <= fast.SMALL_BATCH else "numpy"


TOL = {np.float64: 1e-9, np.float32: 2e-4}
ONE_PART_WORK = fast.thresholds.ONE_PART_WORK  # (the fixture below sets it to 0)


@contextlib.contextmanager
def path_forced(path):
    before = os.environ.get(fast.selector.ENVIRONMENT)
    os.environ[fast.selector.ENVIRONMENT] = path
    try:
        yield
    finally:
        if before is None:
            del os.environ[fast.selector.ENVIRONMENT]
        else:
            os.environ[fast.selector.ENVIRONMENT] = before


def run(path, kind, dtype, batch, time, features, hidden, layers, bidirectional, lengths, seed=0):
    """Forward and backward on `path`: {name: array} of outputs and gradients, and the paths the layers took."""
    layer = MAKERS[kind](input_size=features, hidden_size=hidden, num_layers=layers, bidirectional=bidirectional,
                         dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((batch, time, features)).astype(dtype)
    h0 = rng.standard_normal((layers * D, batch, hidden)).astype(dtype)
    c0 = rng.standard_normal((layers * D, batch, hidden)).astype(dtype)
    d_out = rng.standard_normal((batch, time, D * hidden)).astype(dtype)
    d_hn = rng.standard_normal((layers * D, batch, hidden)).astype(dtype)
    d_cn = rng.standard_normal((layers * D, batch, hidden)).astype(dtype)
    with path_forced(path):
        if kind == "lstm":
            out, (h_n, c_n) = layer.forward(x, (h0, c0), lengths=lengths)
            d_x, (d_h0, d_c0) = layer.backward(d_out, d_hn, d_cn)
            values = {"c_n": c_n, "d_c0": d_c0}
        else:
            out, h_n = layer.forward(x, h0, lengths=lengths)
            d_x, d_h0 = layer.backward(d_out, d_hn)
            values = {}
    values.update(out=out, h_n=h_n, d_x=d_x, d_h0=d_h0)
    values.update({f"grad {name}": p.grad for name, p in layer.named_parameters()})
    return values, layer.last_paths


@pytest.fixture(autouse=True)
def two_threads(monkeypatch):
    """Two threads, so that a threaded LSTM of 64 or more hidden units splits (the suite runs on one), even
    where its step is small enough for one part (thresholds.ONE_PART_WORK)."""
    threads.set_count(2)
    monkeypatch.setattr(fast.thresholds, "ONE_PART_WORK", 0)
    yield
    threads.set_count(None)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(MAKERS)), path=st.sampled_from(FAST), dtype=st.sampled_from([np.float64, np.float32]),
       batch=st.integers(1, 64), time=st.integers(1, 5), features=st.integers(1, 6),
       hidden=st.sampled_from([1, 3, 8, 33, 64, 70]), layers=st.integers(1, 2), bidirectional=st.booleans(),
       ragged=st.booleans(), data=st.data())
def test_every_path_equals_the_reference(kind, path, dtype, batch, time, features, hidden, layers, bidirectional,
                                         ragged, data):
    lengths = None
    if ragged:
        lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch))
    shape = dict(kind=kind, dtype=dtype, batch=batch, time=time, features=features, hidden=hidden, layers=layers,
                 bidirectional=bidirectional, lengths=lengths)
    reference, ran = run("reference", **shape)
    assert ran == ("reference",) * layers
    got, ran = run(path, **shape)
    assert ran == (expected(path, kind, batch),) * layers
    for name, value in reference.items():
        assert got[name].dtype == dtype, name
        scale = max(float(np.abs(value).max()), 1.0)
        assert np.abs(got[name] - value).max() <= TOL[dtype] * scale, (name, path)


def test_the_reference_path_matches_torch():
    """The reference path itself against torch.nn.LSTM (the cells are checked one step at a time elsewhere)."""
    torch = pytest.importorskip("torch")
    layer = LSTM(3, 5, num_layers=2, bidirectional=True, dtype=np.float64, rng=0)
    ref = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((4, 6, 3))
    with path_forced("reference"):
        out, (h_n, c_n) = layer.forward(x, lengths=[6, 2, 5, 1])
        layer.backward(np.ones_like(out))
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), [6, 2, 5, 1], batch_first=True,
                                                     enforce_sorted=False)
    ref_out, (ref_h, ref_c) = ref(packed)
    ref_out = torch.nn.utils.rnn.pad_packed_sequence(ref_out, batch_first=True, total_length=6)[0]
    ref_out.sum().backward()
    np.testing.assert_allclose(out, ref_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_n, ref_h.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c_n, ref_c.detach().numpy(), rtol=1e-9, atol=1e-12)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, name).grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 64])
def test_the_default_choice(batch, monkeypatch):
    monkeypatch.delenv(fast.selector.ENVIRONMENT, raising=False)
    monkeypatch.setattr(kernels, "ENABLED", kernels.AVAILABLE)
    lstm = fast.select("lstm", batch, 128, np.float32).path
    if kernels.AVAILABLE:
        assert lstm == ("numba" if batch * 128 <= fast.thresholds.LOOP_WORK else "threaded")
        assert fast.select("lstm", 1, fast.thresholds.LOOP_HIDDEN, np.float32).path == "threaded"  # a big W_hh
        assert fast.select("lstm", 2, 8, np.float32).path == "numba"  # too little work to share (LOOP_WORK)
        assert fast.select("lstm", batch, 128, np.float32, folded=True).path == "numba"
        threaded = fast.thresholds.threaded_forward(batch, 128)  # training: the default
        assert fast.select("gru", batch, 128, np.float64).path == ("threaded" if threaded else "numba")
        infer = batch * 128 > fast.thresholds.THREADED_INFERENCE_WORK
        assert fast.select("gru", batch, 128, np.float64, training=False).path == ("threaded" if infer else "numba")
        # a smaller step goes threaded in inference than in training (measured: no backward follows)
        assert fast.select("gru", 3, 64, np.float32, training=False).path == "threaded"
        assert fast.select("gru", 3, 64, np.float32).path == "numba"
        assert fast.select("gru", batch, 128, np.float32, folded=True).path == "numba"
        assert fast.select("rnn_tanh", batch, 128, np.float32, folded=True).path == (
            "numba" if batch <= fast.SMALL_BATCH else "numpy")
    else:
        assert lstm == "numpy"
        threaded = False
    rnn = "numba" if kernels.AVAILABLE and batch <= fast.SMALL_BATCH else "numpy"
    assert fast.select("rnn_tanh", batch, 128, np.float32).path == ("threaded" if threaded else rnn)
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert {fast.select(cell, batch, 128, np.float32).path for cell in MAKERS} == {"numpy"}


def test_a_forced_path_is_a_cap(monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", kernels.AVAILABLE)
    for path in fast.PATHS:
        monkeypatch.setenv(fast.selector.ENVIRONMENT, path.upper())
        chosen = {cell: fast.select(cell, 32, 64, np.float32).path for cell in MAKERS}
        assert all(fast.PATHS.index(p) <= fast.PATHS.index(path) for p in chosen.values())
        # no numba RNN at batch 32; a threaded one where numba is there
        assert chosen["rnn_tanh"] == {"reference": "reference", "threaded": "threaded" if kernels.AVAILABLE
                                      else "numpy"}.get(path, "numpy")
    monkeypatch.setenv(fast.selector.ENVIRONMENT, "reference")
    assert not fast.select("lstm", 32, 64, np.float32, folded=True).folds  # the layer then does not fold


def test_an_unknown_path_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(fast.selector.ENVIRONMENT, "fastest")
    with pytest.raises(ValueError, match="RNNKIT_PATH='fastest' is not a path; choose one of reference, numpy"):
        LSTM(2, 3).forward(np.zeros((1, 2, 2)))


def test_describe_names_a_path_per_cell(monkeypatch):
    monkeypatch.delenv(fast.selector.ENVIRONMENT, raising=False)
    report = fast.describe()
    assert set(report) == set(MAKERS)
    assert report["rnn_tanh"] == ("numba, threaded from batch 2" if kernels.ENABLED else "numpy")
    if kernels.ENABLED:
        assert report["gru"] == "numba, threaded from batch 2"
        assert fast.describe(hidden=64)["rnn_relu"] == "numba, threaded from batch 7"
        assert fast.describe(hidden=512)["gru"] == "threaded"
        # inference goes threaded from a smaller step (measured; thresholds.threaded_forward)
        assert fast.describe(training=False)["gru"] == "threaded"
        assert fast.describe(hidden=64, training=False)["rnn_relu"] == "numba, threaded from batch 3"
        assert fast.describe(hidden=128, training=False)["rnn_tanh"] == "numba, threaded from batch 2"
        assert report["lstm"] == "threaded"
        assert fast.describe(hidden=8)["lstm"] == "numba, threaded from batch 3"  # thresholds.LOOP_WORK 16
        assert fast.describe(hidden=64)["lstm"] == "threaded"
        assert fast.describe(hidden=128)["lstm"] == "threaded"


def assert_threaded_equals_reference_on_1_to_3_threads(shape: dict, states: tuple | None, check=None) -> None:
    """The threaded path on 1, 2 and 3 threads equals the reference cells (outputs, states, every gradient)
    within TOL, and its `states` (None: all of them, gradients too) are bit-identical on every thread count;
    check(count), where given, runs once the thread count is set."""
    reference, _ = run("reference", **shape)
    outputs = []
    for count in (1, 2, 3):
        threads.set_count(count)
        if check is not None:
            check(count)
        got, ran = run("threaded", **shape)
        assert ran == ("threaded",) * shape["layers"]
        for name, value in reference.items():
            scale = max(float(np.abs(value).max()), 1.0)
            assert np.abs(got[name] - value).max() <= TOL[shape["dtype"]] * scale, (name, count)
        outputs.append(got)
    for got in outputs[1:]:
        for name in outputs[0] if states is None else states:
            np.testing.assert_array_equal(got[name], outputs[0][name], err_msg=name)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("hidden, batch, time, backward", [(300, 2, 5, "split_gradients"), (130, 3, 16, "gradients"),
                                                           (96, 64, 5, "split_gradients")])
def test_the_threaded_lstm_backward_reads_its_forwards_weights(monkeypatch, hidden, batch, time, backward):
    """The threaded LSTM keeps no copy of W_hh or W_ih for its backward: its training forward makes what the
    backward reads of them itself (W_hh^T's panels; on one part the forward's own W_ih panels, else W_ih's padded
    copy). Weights changed in place between forward and backward (all of them) leave every gradient's bits as
    they are:
    units split over two parts, one part and its helper thread (a small step), and column groups (hidden 96
    × batch 64)."""
    monkeypatch.setattr(fast.thresholds, "ONE_PART_WORK", ONE_PART_WORK)  # the small step as it runs
    rng = np.random.default_rng(8)
    x = rng.standard_normal((batch, time, 3)).astype(np.float32)
    d_out = rng.standard_normal((batch, time, hidden)).astype(np.float32)
    run = fast.select("lstm", batch, hidden, np.float32, training=True, time=time, inputs=3)
    assert run.path == "threaded" and run.gradients.__name__ == backward and run.keeps_w_hh
    assert run.keeps_w_ih
    assert_changes_after_the_forward_leave_the_gradients(
        lambda: LSTM(input_size=3, hidden_size=hidden, dtype=np.float32, rng=1), x, d_out)


def assert_changes_after_the_forward_leave_the_gradients(make, x, d_out, after_forward=lambda: None):
    """A layer of make() run forward, its weights doubled in place or not, then backward on the threaded path:
    every gradient's bits the same either way (after_forward() called after each forward)."""
    grads = []
    for change in (False, True):
        layer = make()
        layer.forward(x)
        after_forward()
        if change:
            for p in layer.parameters():
                p.data *= 2.0
        d_x, _ = layer.backward(d_out)
        assert layer.last_paths == ("threaded",)
        grads.append([d_x] + [p.grad for p in layer.parameters()])
    for before, after in zip(*grads):
        np.testing.assert_array_equal(before, after)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("kind, hidden, batch, rows", [("rnn_tanh", 37, 5, False), ("gru", 37, 5, False),
                                                       ("gru", 70, 2, False), ("lstm", 70, 3, False),
                                                       ("gru", 37, 6, True), ("gru", 70, 3, True)])
def test_weight_gradients_added_where_they_accumulate_equal_the_reference(monkeypatch, kind, hidden, batch, rows):
    """The threaded paths' weight gradients on gemm.py's kernels added straight into the parameters' gradients
    in PyTorch's gate order (threads.add_products, wherever those kernels run the products: patched on here,
    whatever this machine's OpenBLAS), from gradients that hold a first backward's already: every gradient
    equals the reference path's after the same two backwards, to float32 rounding. With `rows`, the GRU's
    backward split by rows (forced here), whose gradients come from numba_path.gru_gradients (its input side's
    rows in the order n, z, r)."""
    calls = []
    real = threads.add_products
    monkeypatch.setattr(threads, "add_products", lambda *args: calls.append(1) or real(*args))
    monkeypatch.setattr(threads, "own_kernels", lambda dtype: np.dtype(dtype) == np.float32)
    monkeypatch.setattr(threads, "own_products", lambda a, b: a.dtype == b.dtype == np.float32)
    if rows:
        monkeypatch.setattr(fast.thresholds, "SPLIT_BACKWARD_BATCH", 2)
        monkeypatch.setattr(fast.thresholds, "SPLIT_BACKWARD_WORK", 0)
        from rnnkit.scratch.fast import numba_path
        given = []
        real_gradients = numba_path.gru_gradients
        monkeypatch.setattr(numba_path, "gru_gradients",
                            lambda *args, **into: given.append("into" in into) or real_gradients(*args, **into))
    results = {}
    for path in ("reference", "threaded"):
        layer = MAKERS[kind](input_size=5, hidden_size=hidden, dtype=np.float32, rng=3)
        rng = np.random.default_rng(4)
        with path_forced(path):
            for _ in range(2):
                x = rng.standard_normal((batch, 4, 5)).astype(np.float32)
                out = layer.forward(x)[0]
                layer.backward(rng.standard_normal(out.shape).astype(np.float32))
        assert layer.last_paths == (path,)
        results[path] = {name: p.grad for name, p in layer.named_parameters()}
    assert calls
    if rows:
        assert given == [True, True]
    for name, want in results["reference"].items():
        np.testing.assert_allclose(results["threaded"][name], want, rtol=2e-4, atol=2e-4 * np.abs(want).max(),
                                   err_msg=name)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
def test_a_gradient_added_in_place_splits_by_its_entries_as_well_as_its_work(monkeypatch):
    """threads.add_products runs on both threads where the gradient's entries plus its multiply-adds over
    ADD_PRODUCTS_MULTIPLY_ADDS_PER_ENTRY reach ADD_PRODUCTS_SPLIT_SIZE, though its multiply-adds are fewer than
    SPLIT_PRODUCT_WORK (the LSTM 220 x 2, T 5, 462 inputs: 4 M of them, 600 K entries, ran on one thread), on
    the calling thread below; the split's sums are the one thread's to the bit, and a @ b + into's to rounding."""
    assert fast.thresholds.ADD_PRODUCTS_SPLIT_SIZE == 2**18
    parts = []
    real_run = threads.run_shared
    monkeypatch.setattr(threads, "run_shared",
                        lambda function, jobs, **how: parts.append(len(jobs)) or real_run(function, jobs, **how))
    rng = np.random.default_rng(0)

    def added(rows, depth, widths, size):
        monkeypatch.setattr(fast.thresholds, "ADD_PRODUCTS_SPLIT_SIZE", size)
        a = rng.standard_normal((rows, depth)).astype(np.float32)
        bs = [rng.standard_normal((depth, n)).astype(np.float32) for n in widths]
        into = [rng.standard_normal((rows, n)).astype(np.float32) for n in widths]
        want = [out + a @ b for out, b in zip(into, bs)]
        threads.add_products(a, bs, into, [0, 1, 2, 3])
        for got, expected in zip(into, want):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
        return into

    threads.set_count(2)
    try:
        assert 880 * 10 * 462 < fast.thresholds.SPLIT_PRODUCT_WORK
        seed = rng.bit_generator.state
        split = added(880, 10, (220, 462), 2**18)  # 600 K entries + 6 M / 8: both threads
        rng.bit_generator.state = seed
        alone = added(880, 10, (220, 462), 10**12)
        assert parts == [2, 1]
        for a, b in zip(split, alone):
            np.testing.assert_array_equal(a, b)
        added(256, 8, (64, 64), 2**18)  # 33 K entries + 33 K: one thread
        added(4 * 128, 3, (128, 128), 2**18)  # 131 K entries + 49 K: one thread
        added(4 * 150, 2, (300, 300), 2**18)  # 360 K entries: both
        assert parts == [2, 1, 1, 1, 2]
    finally:
        threads.set_count(None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("dtype, hidden, features", [(np.float32, 70, 5), (np.float32, 64, 33),
                                                      (np.float64, 37, 130)])
def test_the_one_part_lstms_weight_gradients_added_into_the_parameters_equal_the_reference(monkeypatch, dtype,
                                                                                            hidden, features):
    """A small step's backward (one part and its helper thread) adds its weight gradients straight into the
    parameters' (PyTorch's gate order; panels across a gate block's end through side panels): from gradients
    that hold a first backward's already, every gradient equals the reference path's after the same two
    backwards."""
    from rnnkit.scratch.fast import threaded_lstm

    monkeypatch.setattr(fast.thresholds, "ONE_PART_WORK", ONE_PART_WORK)  # the small step as it runs
    given = []
    real = threaded_lstm.gradients
    monkeypatch.setattr(threaded_lstm, "gradients", lambda *a, **kw: given.append("into" in kw) or real(*a, **kw))
    results = {}
    for path in ("reference", "threaded"):
        layer = LSTM(input_size=features, hidden_size=hidden, dtype=dtype, rng=3)
        rng = np.random.default_rng(4)
        with path_forced(path):
            for _ in range(2):
                x = rng.standard_normal((2, 5, features)).astype(dtype)
                out = layer.forward(x)[0]
                layer.backward(rng.standard_normal(out.shape).astype(dtype))
        assert layer.last_paths == (path,)
        results[path] = {name: p.grad for name, p in layer.named_parameters()}
    assert given == [True, True]
    for name, want in results["reference"].items():
        scale = TOL[dtype] * np.abs(want).max()
        np.testing.assert_allclose(results["threaded"][name], want, rtol=TOL[dtype], atol=scale, err_msg=name)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm"])
def test_a_gradient_array_its_caller_replaced_is_added_into_as_before(monkeypatch, kind):
    """A weight's gradient replaced by a caller's array that is not C-contiguous (a Fortran-ordered one) is
    not written through the direct add (its kernels need C order): the products go through a buffer as before,
    and the gradients equal the reference path's."""
    monkeypatch.setattr(threads, "own_kernels", lambda dtype: np.dtype(dtype) == np.float32)
    monkeypatch.setattr(threads, "own_products", lambda a, b: a.dtype == b.dtype == np.float32)
    monkeypatch.setattr(threads, "add_products", lambda *args: pytest.fail("added into a Fortran-ordered array"))
    results = {}
    for path in ("reference", "threaded"):
        layer = MAKERS[kind](input_size=5, hidden_size=70, dtype=np.float32, rng=3)
        for p in layer.parameters():
            p.grad = np.asfortranarray(np.ones_like(p.data))
        x = np.random.default_rng(4).standard_normal((3, 4, 5)).astype(np.float32)
        with path_forced(path):
            out = layer.forward(x)[0]
            layer.backward(np.ones_like(out))
        assert layer.last_paths == (path,)
        results[path] = [p.grad for p in layer.parameters()]
    for got, want in zip(results["threaded"], results["reference"]):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["gru", "rnn_tanh", "rnn_relu"]), dtype=st.sampled_from([np.float64, np.float32]),
       batch=st.integers(1, 64), hidden=st.sampled_from([35, 101, 263]), time=st.integers(1, 3),
       ragged=st.booleans(), data=st.data())
def test_threaded_rnn_and_gru_equal_the_reference_on_any_thread_count(kind, dtype, batch, hidden, time, ragged,
                                                                       data):
    """The threaded GRU and RNN (threaded_gru.py, threaded_rnn.py) against the reference cells, on 1-3 threads
    (hidden sizes neither multiples of the vector width nor of the thread count: one part or 2-3 uneven
    slices of at least thresholds.MIN_ROWS_PER_PART gate rows, or MIN_ROWS_PER_PART_WIDE from WIDE_STEP_BATCH
    columns on, the GRU at 263 in 3 on 3 threads; batch sizes
    on both sides of the row kernel's threshold). Forward and backward both; and the forward's bits are the
    same on every thread count (each element's sum runs in one fixed order)."""
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)) if ragged else None
    shape = dict(kind=kind, dtype=dtype, batch=batch, time=time, features=5, hidden=hidden, layers=1,
                 bidirectional=False, lengths=lengths)
    assert_threaded_equals_reference_on_1_to_3_threads(shape, ("out", "h_n"))


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("kind, hidden", [("gru", 101), ("rnn_tanh", 263), ("rnn_relu", 263)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch, features, lengths", [(1, 5, None), (2, 80, None), (2, 80, [4, 2])])
def test_the_threaded_rnn_and_gru_with_their_inputs_projected_ahead_equal_the_reference(kind, hidden, dtype, batch,
                                                                                       features, lengths):
    """threaded_rnn.split_input: at one column, or two where the inputs are a fifth of the step's operand, the
    inputs of every step are projected before the loop (their units split in two on 2-3 threads); forward
    and backward equal the reference cells on 1-3 threads, the forward's bits the same on each."""
    from rnnkit.scratch.fast import threaded_rnn

    assert threaded_rnn.split_input(batch, hidden, features, dtype)
    assert not threaded_rnn.split_input(2, hidden, 5, dtype) and not threaded_rnn.split_input(3, hidden, 80, dtype)
    shape = dict(kind=kind, dtype=dtype, batch=batch, time=4, features=features, hidden=hidden, layers=1,
                 bidirectional=False, lengths=lengths)
    assert_threaded_equals_reference_on_1_to_3_threads(shape, ("out", "h_n"))


def test_the_rnn_runs_its_columns_in_groups_where_its_units_stay_in_one_part():
    """threaded_rnn.column_groups: groups of at least 16 columns, one a thread, where the step's units would
    not be split (an RNN of fewer than 150 units ran 0.58-0.79 of one part's time there), or down to 8
    columns where a group's step still has RNN_COLUMN_GROUPS_MIN_WORK (1024) entries, columns × units, and
    the call RNN_COLUMN_GROUPS_NARROW_CALL_WORK multiply-adds (16-31 columns at 100-149 units ran on one
    thread: 0.6-0.8 of its inference time in groups on long calls, up to 1.7 on calls of 2-4 steps); and
    none on a call of fewer than RNN_COLUMN_GROUPS_CALL_WORK multiply-adds (1.1-1.6 of one thread's time)."""
    from rnnkit.scratch.fast import threaded_rnn

    assert fast.thresholds.RNN_COLUMN_GROUPS_MIN_WORK == 1024
    big = fast.thresholds.RNN_COLUMN_GROUPS_NARROW_CALL_WORK
    threads.set_count(2)
    try:
        assert threaded_rnn.column_groups(48, 31, call_work=big) == [(0, 31)]
        assert threaded_rnn.column_groups(48, 32) == [(0, 16), (16, 32)]
        assert threaded_rnn.column_groups(48, 63) == [(0, 31), (31, 63)]
        assert threaded_rnn.column_groups(128, 16, call_work=big) == [(0, 8), (8, 16)]  # 8 × 128: enough
        assert threaded_rnn.column_groups(128, 16, call_work=big - 1) == [(0, 16)]  # too short a call
        assert threaded_rnn.column_groups(127, 16, call_work=big) == [(0, 16)]  # 8 × 127 = 1016: 9 columns
        assert threaded_rnn.column_groups(127, 18, call_work=big) == [(0, 9), (9, 18)]
        assert threaded_rnn.column_groups(131, 29, call_work=big) == [(0, 14), (14, 29)]
        assert threaded_rnn.column_groups(100, 21, call_work=big) == [(0, 21)]  # 11 columns a group at 100
        assert threaded_rnn.column_groups(100, 22, call_work=big) == [(0, 11), (11, 22)]
        assert threaded_rnn.column_groups(200, 15, call_work=big) == [(0, 15)]  # below 8 columns a group: never
        short = fast.thresholds.RNN_COLUMN_GROUPS_CALL_WORK
        assert threaded_rnn.column_groups(48, 64, call_work=short) == [(0, 32), (32, 64)]
        assert threaded_rnn.column_groups(48, 64, call_work=short - 1) == [(0, 64)]  # a short call: one thread
        threads.set_count(3)
        assert threaded_rnn.column_groups(64, 40) == [(0, 20), (20, 40)]  # 16 columns a group at least
        assert threaded_rnn.column_groups(64, 48) == [(0, 16), (16, 32), (32, 48)]
        threads.set_count(1)
        assert threaded_rnn.column_groups(64, 64) == [(0, 64)]
    finally:
        threads.set_count(None)


def test_the_rnn_runs_its_columns_in_groups_instead_of_splitting_its_units_while_its_weights_fit_a_cache(
        monkeypatch):
    """Where two parts would split the units (150 units and more), groups of at least 8 columns, while the
    weights (H·(H+1+I) entries) fit thresholds.RNN_SPLIT_GROUPS_BYTES (0.84-0.97 of the split's time at hidden
    256-512, batch 16-128, on the Xeon with 2 MB of L2 a core)."""
    from rnnkit.scratch.fast import threaded_rnn

    monkeypatch.setattr(fast.thresholds, "RNN_SPLIT_GROUPS_BYTES", 2**20)
    threads.set_count(2)
    try:
        assert threaded_rnn.parts_for(256, 16) == 2
        assert threaded_rnn.column_groups(256, 16, 2**20) == [(0, 8), (8, 16)]
        assert threaded_rnn.column_groups(512, 100, 2**20) == [(0, 50), (50, 100)]
        assert threaded_rnn.column_groups(256, 15, 2**20) == [(0, 15)]  # groups of 7: the units split
        assert threaded_rnn.column_groups(512, 64, 2**20 + 1) == [(0, 64)]  # the weights beyond the cache
        threads.set_count(4)
        assert threaded_rnn.column_groups(256, 32, 1000) == [(0, 8), (8, 16), (16, 24), (24, 32)]
        threads.set_count(2)  # the GRU's three gates: its rows 3H
        assert threaded_rnn.column_groups(3 * 128, 64, 1000) == [(0, 32), (32, 64)]
    finally:
        threads.set_count(None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("training", [True, False])
def test_the_gru_runs_its_columns_in_groups_where_its_units_stay_in_one_part(training, monkeypatch):
    """The GRU's forward takes the RNN's column groups where its units stay in one part (fewer than 50 units
    from 16 columns), from RNN_COLUMN_GROUPS_CALL_WORK multiply-adds a call: groups from 32 columns, down to 9
    columns at 40 units (3 × 40 gate rows) from RNN_COLUMN_GROUPS_NARROW_CALL_WORK, the whole batch on one
    thread on a shorter call (before, one thread at every batch: the drawn GRU 33 × 115, input 282, T 13 at
    1.04 of PyTorch's inference; 0.56-0.87 of that time in groups)."""
    from rnnkit.scratch.fast import threaded_gru

    used = []

    def spied(*args, **kwargs):
        used.append(threaded_rnn_groups(*args, **kwargs))
        return used[-1]

    threaded_rnn_groups = threaded_gru.column_groups
    monkeypatch.setattr(threaded_gru, "column_groups", spied)
    def steps(batch, work):  # the fewest steps of a call of `work` multiply-adds
        return -(-work // (batch * 120 * (40 + 1 + 64)))

    wide, narrow = fast.thresholds.RNN_COLUMN_GROUPS_CALL_WORK, fast.thresholds.RNN_COLUMN_GROUPS_NARROW_CALL_WORK
    threads.set_count(2)
    try:
        for batch, time, groups in [(64, steps(64, wide), [(0, 32), (32, 64)]), (64, steps(64, wide) - 1, [(0, 64)]),
                                    (18, steps(18, narrow), [(0, 9), (9, 18)]), (18, steps(18, narrow) - 1, [(0, 18)])]:
            layer = GRU(64, 40, dtype=np.float32, rng=0)
            x = np.random.default_rng(1).standard_normal((batch, time, 64)).astype(np.float32)
            used.clear()
            if training:
                layer.train()
                layer.forward(x)
            else:
                layer.eval()
                with layer.locked_weights():
                    layer.forward(x)
            assert used == [groups], (batch, time)
    finally:
        threads.set_count(None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@pytest.mark.parametrize("kind, hidden, batch, setting", [("gru", 263, 19, "RNN_SPLIT_GROUPS_BYTES"),
                                                          ("gru", 40, 18, "RNN_COLUMN_GROUPS_NARROW_CALL_WORK"),
                                                          ("rnn_tanh", 263, 19, "RNN_SPLIT_GROUPS_BYTES"),
                                                          ("rnn_tanh", 130, 17, "RNN_COLUMN_GROUPS_NARROW_CALL_WORK"),
                                                          ("rnn_relu", 130, 17, "RNN_COLUMN_GROUPS_NARROW_CALL_WORK")])
def test_the_column_groups_equal_the_reference(kind, hidden, batch, setting, monkeypatch):
    """The GRU's and the RNN's column groups where their units would split (263 units, 19 ragged columns;
    whatever the machine's cache), and their narrow groups of one part (RNN 130 units, 17 ragged columns: 8
    and 9 a group, 1040 entries a group's step; GRU 40 units, 18 columns, 9 a group, 1080 entries; whatever
    the call's length), against the reference cells, forward and backward, the forward's bits the same on 1-3
    threads."""
    from rnnkit.scratch.fast import threaded_rnn

    monkeypatch.setattr(fast.thresholds, setting, 2**40 if setting == "RNN_SPLIT_GROUPS_BYTES" else 0)
    threads.set_count(2)
    try:
        assert len(threaded_rnn.column_groups((3 if kind == "gru" else 1) * hidden, batch, 2**30)) == 2
    finally:
        threads.set_count(None)
    lengths = [1 + k % 3 for k in range(batch)]
    shape = dict(kind=kind, dtype=np.float64, batch=batch, time=3, features=5, hidden=hidden, layers=1,
                 bidirectional=False, lengths=lengths)
    assert_threaded_equals_reference_on_1_to_3_threads(shape, ("out", "h_n"))


def test_the_rnn_and_gru_split_their_units_sooner_on_a_wide_step():
    """parts_for: 128 gate rows a part, or 75 from 16 columns on (an RNN of 150-255 units, a GRU of 50-85,
    ran 0.6-0.9 of one part's time in inference on two parts from batch 16, and lost at batch 8)."""
    from rnnkit.scratch.fast import threaded_rnn

    threads.set_count(2)
    try:
        assert [threaded_rnn.parts_for(200, b) for b in (1, 8, 15, 16, 64)] == [1, 1, 1, 2, 2]
        assert [threaded_rnn.parts_for(rows, 16) for rows in (149, 150, 255, 256)] == [1, 2, 2, 2]
        assert [threaded_rnn.parts_for(rows, 8) for rows in (150, 255, 256)] == [1, 1, 2]
        threads.set_count(4)
        assert threaded_rnn.parts_for(3 * 100, 32) == 4 and threaded_rnn.parts_for(3 * 100, 4) == 2
    finally:
        threads.set_count(None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@settings(max_examples=14, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from([np.float64, np.float32]), batch=st.integers(1, 64),
       hidden=st.sampled_from([35, 70, 101, 263]), time=st.integers(1, 3), ragged=st.booleans(),
       one_part=st.booleans(), data=st.data())
def test_threaded_lstm_equals_the_reference_on_any_thread_count(dtype, batch, hidden, time, ragged, one_part, data,
                                                                 monkeypatch):
    """The threaded LSTM (threaded_lstm.py) against the reference cells on 1-3 threads, outputs, final states
    and every gradient: batch 1-64 over all of its kernels (the tall row kernel, gemm_rows's one to four
    column blocks of near-equal width, the column kernel on padded vectors), with and without the input
    split off, hidden sizes neither multiples of the vector width nor of the thread count (uneven parts),
    the small step on one part (thresholds.ONE_PART_WORK as shipped) or split; and the forward's bits are
    the same on every thread count."""
    monkeypatch.setattr(fast.thresholds, "ONE_PART_WORK", 131072 if one_part else 0)  # set for every example
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)) if ragged else None
    shape = dict(kind="lstm", dtype=dtype, batch=batch, time=time, features=5, hidden=hidden, layers=1,
                 bidirectional=False, lengths=lengths)
    assert_threaded_equals_reference_on_1_to_3_threads(shape, ("out", "h_n", "c_n"))


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@settings(max_examples=14, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from([np.float64, np.float32]), batch=st.integers(1, 64),
       hidden=st.sampled_from([7, 35, 70, 101]), time=st.integers(1, 20), ragged=st.booleans(),
       layers=st.integers(1, 2), bidirectional=st.booleans(), data=st.data())
def test_one_part_lstm_with_its_helper_thread_equals_the_reference_to_the_same_bits_on_any_thread_count(
        dtype, batch, hidden, time, ragged, layers, bidirectional, data, monkeypatch):
    """The one-part threaded LSTM (threaded_lstm.py: a helper thread projects the inputs ahead of the steps,
    from step OWN_STEPS on, and sums the weight gradients a chunk of steps behind them; the steps' part
    makes dx): outputs, final states and every gradient equal the reference cells', and are the same bits
    on 1, 2 and 3 threads (on one thread the helper's work runs after, not beside, the steps'). Sequences
    longer than OWN_STEPS and than several gradient chunks, batch sizes over all kernels, hidden sizes not
    multiples of the vector width, ragged lengths, two layers, both directions."""
    monkeypatch.setattr(fast.thresholds, "ONE_PART_WORK", 10**9)  # one part at every batch size
    monkeypatch.setattr(fast.thresholds, "ONE_PART_HELPER_WORK", 10**12)  # and every input size
    monkeypatch.setattr(fast.thresholds, "SPLIT_INPUT_BATCH", 10**9)  # (the inputs projected apart: the helper's)
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)) if ragged else None
    shape = dict(kind="lstm", dtype=dtype, batch=batch, time=time, features=5, hidden=hidden, layers=layers,
                 bidirectional=bidirectional, lengths=lengths)

    def one_part(count):
        with path_forced("threaded"):
            assert fast.select("lstm", batch, hidden, dtype).gradients is not None
    assert_threaded_equals_reference_on_1_to_3_threads(shape, None, one_part)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from([np.float64, np.float32]), batch=st.integers(1, 3),
       hidden=st.sampled_from([128, 150, 201]), time=st.integers(1, 9), features=st.sampled_from([1, 17, 70]),
       ragged=st.booleans(), data=st.data())
def test_a_small_step_whose_forward_splits_its_units_reads_one_set_of_input_panels_to_the_same_bits(
        dtype, batch, hidden, time, features, ragged, data, monkeypatch):
    """A small training step (one part and a helper in the backward) whose forward splits its units over the
    threads as inference does (hidden 128 on): its [W_ih | b] panels are one set of all 4H rows, each forward
    part projects the panels that hold its rows into an xw of its own (forward_step's producer -2), and the
    backward's input gradient reads those panels transposed (forward_input_gradient). Outputs, final states
    and every gradient equal the reference cells', and are the same bits on 1, 2 and 3 threads."""
    from rnnkit.scratch.fast import threaded_lstm
    monkeypatch.setattr(fast.thresholds, "ONE_PART_WORK", 10**9)
    monkeypatch.setattr(fast.thresholds, "ONE_PART_HELPER_WORK", 10**12)
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)) if ragged else None
    shape = dict(kind="lstm", dtype=dtype, batch=batch, time=time, features=features, hidden=hidden, layers=1,
                 bidirectional=False, lengths=lengths)

    def split_forward(count):
        assert threaded_lstm.small_step(hidden, batch, inputs=features)
        assert threaded_lstm.parts_for(hidden, batch, False, features) == min(count, hidden // 32)
        with path_forced("threaded"):
            assert fast.select("lstm", batch, hidden, dtype, time=time, inputs=features).gradients.__name__ == (
                "gradients")
    assert_threaded_equals_reference_on_1_to_3_threads(shape, None, split_forward)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded paths need numba")
@pytest.mark.parametrize("cell, batch, hidden", [("rnn_tanh", 1, 256), ("gru", 4, 128), ("lstm", 8, 64),
                                                  ("rnn_relu", 8, 256)])
def test_a_short_call_leaves_the_threads_asleep(cell, batch, hidden):
    """A threaded path's start costs ~35 us of Python a call: a call with too few steps for it
    (thresholds.enough_steps) takes the path after it, in both modes; the same layer at T 64 threads."""
    for training in (True, False):
        long = fast.select(cell, batch, hidden, np.float32, training=training, time=64, inputs=64).path
        short = fast.select(cell, batch, hidden, np.float32, training=training, time=1, inputs=64).path
        assert long == "threaded" or (training and cell != "lstm" and long == "numba")
        assert short != "threaded"
    layer = MAKERS[cell](input_size=64, hidden_size=hidden, dtype=np.float32, rng=0)
    x = np.random.default_rng(0).standard_normal((batch, 64, 64)).astype(np.float32)
    layer.eval()
    with layer.locked_weights(), path_forced(""):
        layer.forward(x)
        assert layer.last_paths == ("threaded",)
        layer.forward(x[:, :1])
        assert layer.last_paths != ("threaded",)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded paths need numba")
@pytest.mark.parametrize("cell, batch, hidden", [("rnn_tanh", 1, 512), ("lstm", 2, 64), ("gru", 2, 256)])
def test_a_short_training_call_threads_where_w_hh_is_big_but_not_the_grus(cell, batch, hidden, monkeypatch):
    """A call with too few steps for the threads' start (thresholds.THREADED_CALL_WORK) still takes the threaded
    path in the RNN's and the LSTM's training where W_hh has THREADED_CALL_WEIGHT_BYTES (here set to this
    layer's), not one byte less, and never in inference or the GRU's training; the threaded training call gives
    the reference's outputs and gradients."""
    weight = {"lstm": 4, "gru": 3}.get(cell, 1) * hidden * hidden * 4
    threads_it = cell != "gru"

    def path(training, time=1):
        return fast.select(cell, batch, hidden, np.float32, training=training, time=time, inputs=3).path

    monkeypatch.setattr(fast.thresholds, "THREADED_CALL_WEIGHT_BYTES", weight + 1)
    assert path(True) != "threaded" and path(False) != "threaded" and path(True, 64) == "threaded"
    monkeypatch.setattr(fast.thresholds, "THREADED_CALL_WEIGHT_BYTES", weight)
    assert (path(True) == "threaded") == threads_it and path(False) != "threaded"
    shape = dict(kind=cell, dtype=np.float64, batch=batch, time=1, features=3, hidden=hidden, layers=1,
                 bidirectional=False, lengths=None)
    reference, _ = run("reference", **shape)
    got, ran = run("", **{**shape, "dtype": np.float32})
    assert (ran == ("threaded",)) == threads_it
    for name, value in reference.items():
        np.testing.assert_allclose(got[name], value, rtol=2e-4, atol=2e-4, err_msg=name)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or threads._SCHED_GETCPU is None, reason="needs 2 CPUs and sched_getcpu")
def test_run_apart_keeps_the_workers_off_the_callers_cpu_and_then_lets_them_go(monkeypatch):
    """threads.run_apart (the threaded RNN and GRU): a worker woken on the CPU the caller was on is moved off
    it while its part runs (one woken elsewhere is left where it is); afterwards its affinity is what it was,
    and the caller's is never touched."""
    allowed = os.sched_getaffinity(0)
    seen = {}

    def part(k):
        seen[k] = os.sched_getaffinity(0)

    threads.run_apart(part, [(0,), (1,)])
    assert seen[0] == allowed == os.sched_getaffinity(0)
    assert seen[1] in (allowed, allowed - {min(allowed)}, allowed - {max(allowed)})
    threads.run(part, [(0,), (1,)])
    assert seen[1] == allowed
    # a part told it is on the caller's CPU: moved off it, then let go; told it is elsewhere: left alone
    caller = min(allowed)
    monkeypatch.setattr(threads, "_SCHED_GETCPU", lambda: caller)
    threads._part_apart(caller, part, (2,))
    assert seen[2] == allowed - {caller} and os.sched_getaffinity(0) == allowed
    threads._part_apart(max(allowed), part, (3,))
    assert seen[3] == allowed


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["gru", "rnn_tanh", "rnn_relu"]), batch=st.integers(1, 64),
       hidden=st.sampled_from([7, 64, 100, 129, 300]), ragged=st.booleans(), data=st.data())
def test_training_and_inference_take_their_own_paths_and_equal_the_reference(kind, batch, hidden, ragged, data):
    """The default choice for the GRU and the RNN depends on whether a backward follows
    (thresholds.threaded_forward's `training`): a training forward runs where training is fastest and gives
    the reference's outputs and gradients; an inference forward (eval mode, locked weights) runs where
    inference is fastest, gives the reference's outputs, and a backward after it is a clear error where its
    path kept no trace (the threaded GRU). A short call's threaded path needs enough work in all its steps
    (thresholds.enough_steps)."""
    time = 2
    lengths = data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)) if ragged else None
    shape = dict(kind=kind, dtype=np.float64, batch=batch, time=time, features=3, hidden=hidden, layers=1,
                 bidirectional=False, lengths=lengths)
    reference, _ = run("reference", **shape)
    got, ran = run("", **shape)  # "": the default choice
    small = batch <= fast.SMALL_BATCH
    below = "numba" if kind == "gru" or small else "numpy"
    def threaded(training):  # a big enough step, and enough of them (or, in training, a big enough W_hh)
        return (fast.thresholds.threaded_forward(batch, hidden, training)
                and fast.thresholds.enough_steps(kind, time, batch, hidden, 3, training, 8))

    assert ran == ("threaded" if threaded(True) else below,)
    for name, value in reference.items():
        assert np.abs(got[name] - value).max() <= TOL[np.float64] * max(float(np.abs(value).max()), 1.0), name

    layer = MAKERS[kind](input_size=3, hidden_size=hidden, dtype=np.float64, rng=0)
    rng = np.random.default_rng(0)  # run()'s x and h0: the same draws
    x, h0 = rng.standard_normal((batch, time, 3)), rng.standard_normal((1, batch, hidden))
    layer.eval()
    with layer.locked_weights(), path_forced(""):
        out, _ = layer.forward(x, h0, lengths=lengths)
        assert layer.last_paths == ("threaded" if threaded(False) else below,)
        if threaded(False) and kind == "gru":
            with pytest.raises(ValueError, match="backward\\(\\) after an inference forward"):
                layer.backward(np.ones_like(out))
    np.testing.assert_allclose(out, reference["out"], rtol=1e-9, atol=1e-9)


def _numpy_backward(kind, dtype, batch, hidden, time, ragged, seed):
    """A layer's packed weights, a NumPy-path forward's trace on random inputs (ragged: sorted random lengths),
    random output and state gradients, and the NumPy path's backward of them."""
    from rnnkit.scratch.fast import numpy_path

    layer = MAKERS[kind](input_size=5, hidden_size=hidden, dtype=dtype, rng=seed)
    layer.train()
    p = layer._packed(0, 0)
    rng = np.random.default_rng(seed)
    x, h0 = rng.standard_normal((time, batch, 5)).astype(dtype), rng.standard_normal((batch, hidden)).astype(dtype)
    d_out, dh_n = (rng.standard_normal(s).astype(dtype) for s in ((time, batch, hidden), (batch, hidden)))
    active = sorted(rng.integers(1, batch + 1, time).tolist(), reverse=True) if ragged else [batch] * time
    active[0] = batch
    cell = "gru" if kind == "gru" else "rnn_tanh"
    trace = numpy_path.FORWARD[cell](p, x, h0, None, active)
    return p, trace, d_out, dh_n, active, numpy_path.BACKWARD[cell](p, trace, d_out, dh_n, None, active)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["gru", "rnn_tanh", "rnn_relu"]), dtype=st.sampled_from([np.float32, np.float64]),
       batch=st.integers(1, 40), hidden=st.integers(1, 70), time=st.integers(1, 7), ragged=st.booleans(),
       seed=st.integers(0, 2**16))
def test_compiled_gru_and_rnn_backward_give_the_numpy_paths_bits(kind, dtype, batch, hidden, time, ragged, seed):
    """numba_path's GRU and RNN backward (one compiled step and one BLAS product per step) equal
    numpy_path's gradients bit for bit, ragged batches included (rows past their end stay zero); the RNN's
    whatever the layout of the output gradient (time-major, the view of a batch-major array, which it reads
    without a copy, or a slice of a wider one)."""
    from rnnkit.scratch.fast import numba_path

    p, trace, d_out, dh_n, active, want = _numpy_backward(kind, dtype, batch, hidden, time, ragged, seed)
    layouts = [d_out]
    if kind != "gru":
        batch_major = np.ascontiguousarray(d_out.transpose(1, 0, 2)).transpose(1, 0, 2)
        wider = np.zeros((time, batch, hidden + 3), dtype=dtype)
        wider[..., 1:hidden + 1] = d_out
        layouts += [batch_major, wider[..., 1:hidden + 1]]
        assert np.shares_memory(numba_path.rows_of(batch_major)[0], batch_major)  # read in place
    for gradient in layouts:
        got = getattr(numba_path, "gru_backward" if kind == "gru" else "rnn_backward")(p, trace, gradient, dh_n,
                                                                                        None, active)
        for w, g in zip(want[:3], got[:3]):
            np.testing.assert_array_equal(g, w)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["rnn_tanh", "rnn_relu", "gru"]), dtype=st.sampled_from([np.float32, np.float64]),
       batch=st.integers(0, 37), hidden=st.integers(1, 70), time=st.integers(1, 7), ragged=st.booleans(),
       units=st.booleans(), seed=st.integers(0, 2**16))
def test_the_threaded_rnn_and_gru_backward_give_the_numpy_paths_gradients_with_the_same_bits_on_any_thread_count(
        kind, dtype, batch, hidden, time, ragged, units, seed):
    """threaded_rnn.backward and threaded_gru.backward over 1-3 threads, their rows split (no meeting) or,
    with `units`, their units (a meeting per step; forced here from 16 units a part), against numpy_path's
    gradients, ragged batches included, batches (from threaded_rnn.threaded_backward_batch, below which they
    hand over to numba_path's) and hidden sizes not multiples of the row panels' height or the vector width
    (row panels read past the last step's rows: spare steps); their gradients bit-identical on every thread
    count, split and layout of the output gradient."""
    from rnnkit.scratch.fast import threaded_gru, threaded_rnn, thresholds

    batch += threaded_rnn.threaded_backward_batch("gru" if kind == "gru" else "rnn")
    p, trace, d_out, dh_n, active, want = _numpy_backward(kind, dtype, batch, hidden, time, ragged, seed)
    backward = (threaded_gru if kind == "gru" else threaded_rnn).backward
    batch_major = np.ascontiguousarray(d_out.transpose(1, 0, 2)).transpose(1, 0, 2)
    results = []
    for count, gradient in ((1, d_out), (2, d_out), (3, batch_major)):
        threads.set_count(count)
        with pytest.MonkeyPatch.context() as patch:
            if units:
                patch.setattr(thresholds, "RNN_BACKWARD_ROWS_BYTES", 0)
                patch.setattr(thresholds, "MIN_ROWS_PER_PART", 16)
                patch.setattr(thresholds, "MIN_ROWS_PER_PART_WIDE", 16)
            got = backward(p, trace, gradient, dh_n, None, active)
        for w, g in zip(want[:3], got[:3]):
            np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype])
        results.append(got)
    for got in results[1:]:
        for g, first in zip(got[:3], results[0][:3]):
            np.testing.assert_array_equal(g, first)


@pytest.mark.parametrize("mode, gates", [("gru", 3), ("rnn_tanh", 1)])
def test_the_threaded_backward_reads_w_hh_as_packed_with_room_past_its_last_row(mode, gates):
    """threaded_rnn.recurrent_weights is Packed.w_hh itself (no copy padded with zero columns to whole vectors,
    which cost 0.1-0.4 ms a training call at hidden 500), allocated with packing.ROW_SLACK values past its end
    for the product's whole vectors of the last row (hidden sizes off whole vectors against the reference:
    the hypothesis test above)."""
    from rnnkit.scratch.fast import packing, threaded_rnn

    rng = np.random.default_rng(0)
    w_ih = rng.standard_normal((gates * 37, 5)).astype(np.float32)
    w_hh = rng.standard_normal((gates * 37, 37)).astype(np.float32)
    p = packing.pack(mode, w_ih, w_hh)
    w = threaded_rnn.recurrent_weights(p)
    assert w is p.w_hh and w.flags.c_contiguous and w.shape == (gates * 37, 37)
    assert w.base.size - w.size >= packing.ROW_SLACK >= 16 - 1
    np.testing.assert_array_equal(w, w_hh[packing.row_index(mode, 37)])


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("kind", ["rnn_tanh", "gru"])
def test_the_threaded_backward_hands_few_rows_and_the_grus_many_rows_to_numba_path(kind, monkeypatch):
    """Below threaded_rnn.threaded_backward_batch rows (and for the GRU from numba_path's row split on), the
    threaded backward is numba_path's, to the bit; from it, its own. Which one ran is watched, not told from
    the bits: on some CPUs (a Zen 4 with OpenBLAS's Haswell kernels) the two give the same bits at a small
    shape."""
    from rnnkit.scratch.fast import numba_path, threaded_gru, threaded_rnn, thresholds

    gru = kind == "gru"
    module, name = (numba_path, "gru_backward") if gru else (threaded_rnn, "rnn_backward")
    compiled = getattr(module, name)
    handed = []

    def watched(*arguments):
        handed.append(True)
        return compiled(*arguments)

    monkeypatch.setattr(module, name, watched)
    threaded = threaded_gru.backward if gru else threaded_rnn.backward
    least = threaded_rnn.threaded_backward_batch("gru" if gru else "rnn")
    shapes = [(least - 1, 40, False), (least, 40, True)] + ([(thresholds.SPLIT_BACKWARD_BATCH, 200, False)] if gru
                                                          else [])
    for batch, hidden, own in shapes:
        p, trace, d_out, dh_n, active, want = _numpy_backward(kind, np.float32, batch, hidden, 3, False, 1)
        handed.clear()
        got = threaded(p, trace, d_out, dh_n, None, active)
        assert bool(handed) != own, (batch, hidden)
        for g, w in zip(got[:3], want[:3]):
            np.testing.assert_allclose(g, w, rtol=TOL[np.float32], atol=TOL[np.float32])
        if not own:
            handed_over = compiled(p, trace, d_out, dh_n, None, active)
            for g, w in zip(got[:3], handed_over[:3]):
                np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("core, rnn, gru", [("skylakex", 3, 6), ("sapphirerapids", 3, 6), ("haswell", 2, 2),
                                             ("zen", 2, 2), ("", 2, 2)])
def test_the_threaded_backward_takes_two_rows_on_where_openblas_runs_narrow_kernels(core, rnn, gru, monkeypatch):
    """The RNN's and the GRU's threaded backward hand fewer rows to numba_path's (OpenBLAS's product per step)
    where OpenBLAS runs its 512-bit kernels (the Xeons', measured fast at a few rows) than elsewhere (Haswell's
    on a Zen 4: its product of two rows packs all of W_hh at every step)."""
    from rnnkit.scratch.fast import threaded_rnn

    monkeypatch.setattr(threads._OPENBLAS, "core", core)
    assert (threaded_rnn.threaded_backward_batch("rnn"), threaded_rnn.threaded_backward_batch("gru")) == (rnn, gru)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
def test_the_rnn_backward_splits_its_rows_evenly_in_blocks_while_w_hh_is_small_else_its_units(monkeypatch):
    """threaded_rnn.backward_split: the rows evenly in blocks of gemm.ROW_MAJOR_TAIL (the last part takes the
    rest) from more than one row panel on, while W_hh is at most thresholds.RNN_BACKWARD_ROWS_BYTES; else
    the units in whole vectors as the forward splits them, or one part. (In whole row panels, 128 rows were
    60 and 68, the second part's 6 panels computing 72.)"""
    from rnnkit.scratch.fast import gemm, threaded_rnn, thresholds

    monkeypatch.setattr(thresholds, "RNN_BACKWARD_ROWS_BYTES", 384 * 384 * 4)
    mr = gemm.MR
    assert gemm.ROW_MAJOR_TAIL == 4
    for batch, cut in ((128, 64), (100, 48), (32, 16), (4 * mr + 1, 24), (mr + 1, 8)):
        rows, columns = threaded_rnn.backward_split(batch, 384, 16, 4)
        assert rows == [(0, cut), (cut, batch)] and columns == [(0, 384)] * 2, batch
    assert threaded_rnn.backward_split(mr, 100, 16, 4) == ([(0, mr)], [(0, 112)])  # one panel, few units
    rows, columns = threaded_rnn.backward_split(mr, 384, 16, 4)  # one panel: the units, as the forward's
    assert rows == [(0, mr)] * 2 and columns == [(0, 192), (192, 384)]
    rows, columns = threaded_rnn.backward_split(64, 512, 16, 4)  # W_hh too big: the units
    assert rows == [(0, 64)] * 2 and columns == [(0, 256), (256, 512)]
    rows, columns = threaded_rnn.backward_split(64, 300, 16, 8)  # float64: 300 units > the bytes too
    assert rows == [(0, 64)] * 2 and columns == [(0, 144), (144, 304)]
    threads.set_count(1)
    assert threaded_rnn.backward_split(64, 100, 16, 4) == ([(0, 64)], [(0, 112)])


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 40), vectors=st.integers(1, 5), depth=st.integers(1, 1100), double=st.booleans(),
       seed=st.integers(0, 2**16))
def test_the_row_major_products_tail_blocks_and_packed_pairs_give_the_whole_panels_bits(rows, vectors, depth,
                                                                                       double, seed):
    """gemm.gemm_row_major: the rows past the last whole panel in blocks of ROW_MAJOR_TAIL give each row the
    bits whole panels of MR give it (one chain of fused multiply-adds over k, K in blocks), and the product;
    the rows past `rows` rounded up to ROW_MAJOR_TAIL are not written. gemm.gemm_row_major_pairs, Z packed
    in pairs of vector columns (gemm.pack_column_pairs) and K in its own blocks, gives the same bits, an odd
    count of vectors included (the last pair half zeros, its block one vector)."""
    from rnnkit.scratch.fast import gemm

    dtype = np.float64 if double else np.float32
    lanes = gemm.VECTOR_BYTES // np.dtype(dtype).itemsize
    columns, panel_rows = vectors * lanes, -(-rows // gemm.MR) * gemm.MR
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((panel_rows, depth)).astype(dtype)
    z = rng.standard_normal((depth, columns)).astype(dtype)
    tail = np.full((panel_rows, columns), np.nan, dtype=dtype)
    gemm.gemm_row_major(a.reshape(-1), 0, depth, rows, z.reshape(-1), 0, columns, columns, depth, tail.reshape(-1),
                        0, columns)
    panels = np.full_like(tail, np.nan)
    gemm.gemm_row_major(a.reshape(-1), 0, depth, panel_rows, z.reshape(-1), 0, columns, columns, depth,
                        panels.reshape(-1), 0, columns)
    written = -(-rows // gemm.ROW_MAJOR_TAIL) * gemm.ROW_MAJOR_TAIL
    np.testing.assert_array_equal(tail[:written], panels[:written])
    assert np.isnan(tail[written:]).all()
    np.testing.assert_allclose(tail[:rows], a[:rows].astype(np.float64) @ z, rtol=TOL[dtype], atol=TOL[dtype] * depth)
    packed = gemm.pack_column_pairs(z)
    assert packed.shape == (-(-vectors // 2), depth, 2 * lanes)
    paired = np.full_like(tail, np.nan)
    gemm.gemm_row_major_pairs(a.reshape(-1), 0, depth, rows, packed.reshape(-1), depth, columns, paired.reshape(-1), 0,
                              columns)
    np.testing.assert_array_equal(paired, tail)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
def test_the_row_major_product_runs_its_rows_in_blocks_that_add_up_and_never_a_lone_4_after_a_panel():
    """gemm._row_major_height: blocks of MR, 8 and 4 rows that cover any multiple of ROW_MAJOR_TAIL exactly;
    with MR 12, 16 rows left are 8 + 8 (not 12 + 4: a 4-row block runs at half the FMA rate)."""
    from rnnkit.scratch.fast import gemm

    for rows in range(gemm.ROW_MAJOR_TAIL, 400, gemm.ROW_MAJOR_TAIL):
        heights, left = [], rows
        while left > 0:
            heights.append(gemm._row_major_height(left))
            left -= heights[-1]
        assert left == 0 and set(heights) <= {gemm.MR, 8, 4}, (rows, heights)
        if gemm.MR == 12 and rows > 4:
            assert 4 not in heights, (rows, heights)


@settings(max_examples=40, deadline=None)
@given(time=st.integers(1, 6), batch=st.integers(1, 6), width=st.integers(1, 9), batch_first=st.booleans(),
       reverse=st.booleans(), columns=st.integers(0, 3))
def test_a_time_major_views_rows_are_found_in_its_flat_view(time, batch, width, batch_first, reverse, columns):
    """threaded_rnn.flat_view: for a (T, B, N) view of a batch-first or time-major array, a column slice of it
    (one direction's columns), in reversed time or not: view[t, b, j] = flat[at + t·step + b·row + j], and a
    write through flat lands in the view."""
    from rnnkit.scratch.fast import threaded_rnn

    whole = np.arange(time * batch * (width + columns), dtype=np.float32)
    whole = whole.reshape((batch, time, -1) if batch_first else (time, batch, -1))
    view = whole.transpose(1, 0, 2) if batch_first else whole
    view = view[:, :, columns:]
    view = view[::-1] if reverse else view
    flat, at, step, row = threaded_rnn.flat_view(view)
    for t in range(time):
        for b in range(batch):
            np.testing.assert_array_equal(flat[at + t * step + b * row:][:width], view[t, b])
    flat[at + (time - 1) * step + (batch - 1) * row + width - 1] = -1
    assert view[time - 1, batch - 1, width - 1] == -1


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
def test_the_rnns_inference_runs_batch_major_from_256_units_and_groups_of_64_rows_without_lengths(monkeypatch):
    """threaded_rnn.inference_forward: batch-major from RNN_ROWS_FORWARD_MIN_HIDDEN units, while the weights
    fit RNN_ROWS_FORWARD_BYTES, where the column groups have at least RNN_ROWS_FORWARD_MIN_ROWS rows each, the
    states go into the caller's output and no sequence ends early; else the column path (`forward`)."""
    from rnnkit.scratch.fast import packing, threaded_rnn

    assert (fast.thresholds.RNN_ROWS_FORWARD_MIN_HIDDEN, fast.thresholds.RNN_ROWS_FORWARD_MIN_ROWS) == (256, 64)
    chosen = []
    monkeypatch.setattr(threaded_rnn, "rows_forward", lambda *args: chosen.append("rows"))
    monkeypatch.setattr(threaded_rnn, "forward", lambda *args, **kwargs: chosen.append("columns"))
    rng = np.random.default_rng(0)
    p = packing.pack("rnn_tanh", *(rng.standard_normal(shape).astype(np.float32)
                                   for shape in [(100, 3), (100, 100), (100,), (100,)]))  # 100·104 weights

    def choice(batch, lengths=False, into=True, hidden=100, rows=56, weights=100 * 104 * 4):
        monkeypatch.setattr(fast.thresholds, "RNN_ROWS_FORWARD_MIN_HIDDEN", hidden)
        monkeypatch.setattr(fast.thresholds, "RNN_ROWS_FORWARD_MIN_ROWS", rows)
        monkeypatch.setattr(fast.thresholds, "RNN_ROWS_FORWARD_BYTES", weights)
        active = [batch] * 4 if not lengths else [batch] * 3 + [batch - 1]
        threaded_rnn.inference_forward(p, np.zeros((4, batch, 3), np.float32), np.zeros((batch, 100), np.float32),
                                       None, active, None, np.zeros((4, batch, 100), np.float32) if into else None)
        return chosen.pop()

    threads.set_count(2)
    try:
        assert choice(112) == "rows"  # two groups of 56
        assert choice(111) == "columns"  # 55 and 56
        assert choice(112, lengths=True) == choice(112, into=False) == "columns"
        assert choice(112, hidden=101) == choice(112, weights=100 * 104 * 4 - 1) == "columns"
    finally:
        threads.set_count(None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded path needs numba")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["rnn_tanh", "rnn_relu"]), dtype=st.sampled_from([np.float64, np.float32]),
       batch=st.integers(32, 90), hidden=st.integers(1, 70), time=st.integers(1, 5), batch_first=st.booleans(),
       bidirectional=st.booleans())
def test_the_rnns_inference_in_groups_of_rows_gives_the_training_forwards_bits(kind, dtype, batch, hidden, time,
                                                                               batch_first, bidirectional):
    """Where its batch runs in groups (of at least RNN_ROWS_FORWARD_MIN_ROWS, from RNN_ROWS_FORWARD_MIN_HIDDEN
    units, on calls of RNN_COLUMN_GROUPS_CALL_WORK: all three lowered here to reach small shapes), the RNN's inference forward runs batch-major
    (threaded_rnn.rows_forward: the states' rows times packed pairs of weight columns), and its outputs and
    final states are the training forward's bits (the same chain of fused multiply-adds for each entry)."""
    from rnnkit.scratch.fast import threaded_rnn


    layer = MAKERS[kind](input_size=7, hidden_size=hidden, num_layers=2, batch_first=batch_first,
                         bidirectional=bidirectional, dtype=dtype, rng=hidden)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, time, 7) if batch_first else (time, batch, 7)).astype(dtype)
    h0 = rng.standard_normal((2 * (2 if bidirectional else 1), batch, hidden)).astype(dtype)
    calls = []
    real = threaded_rnn.rows_forward
    bounds = ("RNN_ROWS_FORWARD_MIN_ROWS", "RNN_ROWS_FORWARD_MIN_HIDDEN", "RNN_COLUMN_GROUPS_CALL_WORK")
    least = [getattr(fast.thresholds, name) for name in bounds]
    threads.set_count(2)
    for name, value in zip(bounds, (16, 1, 0)):
        setattr(fast.thresholds, name, value)
    try:
        with path_forced("threaded"):
            want, want_h = layer.train().forward(x, h0)
            threaded_rnn.rows_forward = lambda *args: calls.append(args) or real(*args)
            with layer.eval().locked_weights():
                got, got_h = layer.forward(x, h0)
    finally:
        threaded_rnn.rows_forward = real
        for name, value in zip(bounds, least):
            setattr(fast.thresholds, name, value)
        threads.set_count(None)
    assert len(calls) == (2 if bidirectional else 1)  # the last layer's directions: into the output's rows
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_h, want_h)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), batch=st.integers(2, 40), hidden=st.integers(1, 70),
       time=st.integers(1, 7), ragged=st.booleans(), seed=st.integers(0, 2**16))
def test_the_gru_backward_split_over_the_batchs_rows_gives_the_numpy_paths_gradients(dtype, batch, hidden, time,
                                                                                     ragged, seed):
    """With its rows split over two threads (numba_path.backward_steps, forced here at any size), the GRU's
    backward gives the NumPy path's gradients to float rounding, ragged batches included, and the same bits
    on every call."""
    from rnnkit.scratch.fast import numba_path, thresholds

    p, trace, d_out, dh_n, active, want = _numpy_backward("gru", dtype, batch, hidden, time, ragged, seed)
    saved = thresholds.SPLIT_BACKWARD_BATCH, thresholds.SPLIT_BACKWARD_WORK
    threads.set_count(2)
    try:
        thresholds.SPLIT_BACKWARD_BATCH, thresholds.SPLIT_BACKWARD_WORK = 2, 0
        assert numba_path.gru_backward_parts(batch, hidden) == 2
        got, again = (numba_path.gru_backward(p, trace, d_out, dh_n, None, active) for _ in range(2))
    finally:
        thresholds.SPLIT_BACKWARD_BATCH, thresholds.SPLIT_BACKWARD_WORK = saved
        threads.set_count(None)
    for w, g, a in zip(want[:3], got[:3], again[:3]):
        np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_array_equal(a, g)


def test_the_gru_backward_splits_its_rows_only_where_that_pays():
    """The split's rule (thresholds.SPLIT_BACKWARD_BATCH, SPLIT_BACKWARD_WORK): never on one thread, not for
    few rows or a narrow layer, on every thread for a wide step."""
    from rnnkit.scratch.fast import numba_path

    threads.set_count(2)
    try:
        assert numba_path.gru_backward_parts(64, 256) == 2
        assert numba_path.gru_backward_parts(32, 128) == 2
        assert numba_path.gru_backward_parts(16, 512) == 1  # each core would stream all of W_hh for 8 rows
        assert numba_path.gru_backward_parts(32, 64) == 1  # each part's step too small for its call overhead
        threads.set_count(1)
        assert numba_path.gru_backward_parts(64, 256) == 1
    finally:
        threads.set_count(None)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("kind, hidden, dtype", [("gru", 420, np.float32), ("rnn_tanh", 740, np.float32),
                                                 ("gru", 300, np.float64)])
def test_compiled_backward_with_a_big_w_hh_takes_a_product_per_row(kind, hidden, dtype):
    """With W_hh over thresholds.GEMV_BYTES and few rows running, h's gradient is one matrix-vector product
    per row on W_hh^T (numba_path.h_gradient_product): the NumPy path's gradients to float rounding, ragged
    steps (3, 2 and 1 rows, then 7, over GEMV_ROWS) included."""
    from rnnkit.scratch.fast import numba_path, numpy_path, thresholds

    layer = MAKERS[kind](input_size=5, hidden_size=hidden, dtype=dtype, rng=0)
    layer.train()
    p = layer._packed(0, 0)
    assert p.w_hh.nbytes >= thresholds.GEMV_BYTES and thresholds.GEMV_ROWS < 7
    rng = np.random.default_rng(0)
    for active in ([3, 3, 2, 1], [7, 7, 7]):
        batch, time = active[0], len(active)
        x = rng.standard_normal((time, batch, 5)).astype(dtype)
        h0, dh_n = (rng.standard_normal((batch, hidden)).astype(dtype) for _ in range(2))
        d_out = rng.standard_normal((time, batch, hidden)).astype(dtype)
        cell = "gru" if kind == "gru" else "rnn_tanh"
        trace = numpy_path.FORWARD[cell](p, x, h0, None, active)
        want = numpy_path.BACKWARD[cell](p, trace, d_out, dh_n, None, active)
        got = getattr(numba_path, "gru_backward" if kind == "gru" else "rnn_backward")(p, trace, d_out, dh_n,
                                                                                         None, active)
        for w, g in zip(want[:3], got[:3]):
            np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype])
    assert numba_path.per_row_products(p, [3, 3, 2, 1]) and "w_hh_unhalved_t" in vars(p)
    # a short call's few rows do not pay for transposing W_hh (thresholds.GEMV_PRODUCTS_PER_MB): one product
    short = layer._packed(0, 0)
    assert not numba_path.per_row_products(short, [1, 1, 1, 1])
    x, h0, dh_n = (rng.standard_normal(shape).astype(dtype) for shape in ((4, 1, 5), (1, hidden), (1, hidden)))
    d_out = rng.standard_normal((4, 1, hidden)).astype(dtype)
    trace = numpy_path.FORWARD[cell](short, x, h0, None, [1] * 4)
    want = numpy_path.BACKWARD[cell](short, trace, d_out, dh_n, None, [1] * 4)
    got = getattr(numba_path, "gru_backward" if kind == "gru" else "rnn_backward")(short, trace, d_out, dh_n, None,
                                                                                     [1] * 4)
    for w, g in zip(want[:3], got[:3]):
        np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype])
    assert "w_hh_unhalved_t" not in vars(short)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from([np.float32, np.float64]), batch=st.integers(2, 40), hidden=st.integers(1, 70),
       time=st.integers(1, 6), layers=st.integers(1, 2), bidirectional=st.booleans(), bias=st.booleans(),
       ragged=st.booleans(), seed=st.integers(0, 2**16))
def test_the_grus_gradients_made_at_once_equal_the_reference(monkeypatch, dtype, batch, hidden, time, layers,
                                                             bidirectional, bias, ragged, seed):
    """Where the GRU's backward splits its rows (forced here at any size), the layer takes every gradient
    from numba_path.gru_gradients (each pre-activation gradient written once, the bias gradients summed by the
    steps): the reference path's outputs and gradients, biases or none, ragged batches and both directions
    included, and the same bits on a second run."""
    from rnnkit.scratch.fast import numba_path

    monkeypatch.setattr(fast.thresholds, "SPLIT_BACKWARD_BATCH", 2)
    monkeypatch.setattr(fast.thresholds, "SPLIT_BACKWARD_WORK", 0)
    calls = []
    real = numba_path.gru_gradients
    monkeypatch.setattr(numba_path, "gru_gradients", lambda *args, **into: calls.append(1) or real(*args, **into))
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((batch, time, 3)).astype(dtype)
    h0 = rng.standard_normal((layers * D, batch, hidden)).astype(dtype)
    d_out = rng.standard_normal((batch, time, D * hidden)).astype(dtype)
    d_hn = rng.standard_normal((layers * D, batch, hidden)).astype(dtype)
    lengths = rng.integers(1, time + 1, batch).tolist() if ragged else None
    results = []
    for path in ("reference", "threaded", "threaded"):
        layer = GRU(3, hidden, num_layers=layers, bidirectional=bidirectional, bias=bias, dtype=dtype, rng=seed)
        with path_forced(path):
            out, h_n = layer.forward(x, h0, lengths=lengths)
            d_x, d_h0 = layer.backward(d_out, d_hn)
        results.append({"out": out, "h_n": h_n, "d_x": d_x, "d_h0": d_h0,
                        **{name: p.grad.copy() for name, p in layer.named_parameters()}})
    assert len(calls) == 2 * layers * D  # two threaded runs, every layer direction
    reference, got, again = results
    for name, value in reference.items():
        scale = max(float(np.abs(value).max()), 1.0)
        assert np.abs(got[name] - value).max() <= TOL[dtype] * scale, name
        np.testing.assert_array_equal(again[name], got[name])


def _from_no_state(kind, dtype, batch, time, features, hidden, lengths, path="threaded"):
    """Forward (no h_0: a zero start) and backward on `path`: {name: array}, and the paths the layer took."""
    layer = MAKERS[kind](input_size=features, hidden_size=hidden, dtype=dtype, rng=3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, time, features)).astype(dtype)
    d_out = rng.standard_normal((batch, time, hidden)).astype(dtype)
    with path_forced(path):
        out, state = layer.forward(x, lengths=lengths)
        d_x, d_state = layer.backward(d_out)
        layer.eval()
        with layer.locked_weights():
            inferred, _ = layer.forward(x, lengths=lengths)
    values = {"out": out, "inferred": inferred, "d_x": d_x}
    values.update({f"state {k}": v for k, v in enumerate(state if kind == "lstm" else (state,))})
    values.update({f"d_state {k}": v for k, v in enumerate(d_state if kind == "lstm" else (d_state,))})
    values.update({f"grad {name}": p.grad for name, p in layer.named_parameters()})
    return values, layer.last_paths


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded paths need numba")
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
@pytest.mark.parametrize("batch, hidden, features, time", [(1, 96, 7, 2), (2, 130, 40, 3), (5, 70, 3, 1),
                                                           (17, 263, 5, 3), (40, 64, 9, 4)])
def test_a_layer_started_from_no_state_leaves_w_hh_out_of_its_first_step_with_the_same_bits(
        kind, batch, hidden, features, time, monkeypatch):
    """h_0 = 0 (no state given): the threaded paths' first step multiplies by [b | W_ih] only (zero_start), and
    outputs, states, the inference forward and every gradient keep the bits of the whole product (each chain
    of multiply-adds stays at +0 over W_hh's terms), on every kernel (one or two columns with the input split
    off, the row kernels, padded vector columns, column groups, ragged lengths); the values are the
    reference's. A start with a state is never cut short (zero_start sees one nonzero entry)."""
    from rnnkit.scratch.fast import threaded_gru, threaded_lstm, threaded_rnn

    lengths = [time - k % time for k in range(batch)] if batch > 2 else None
    shape = dict(kind=kind, dtype=np.float32, batch=batch, time=time, features=features, hidden=hidden,
                 lengths=lengths)
    skipped, zero_start = [], threaded_lstm.zero_start

    def spy(z, hidden, batch):
        skipped.append(zero_start(z, hidden, batch))
        return skipped[-1]

    for module in (threaded_rnn, threaded_gru, threaded_lstm):
        monkeypatch.setattr(module, "zero_start", spy)
    got, ran = _from_no_state(**shape)
    assert ran == ("threaded",) and skipped and set(skipped) == {hidden}
    for module in (threaded_rnn, threaded_gru, threaded_lstm):
        monkeypatch.setattr(module, "zero_start", lambda z, hidden, batch: 0)
    whole, _ = _from_no_state(**shape)
    for name, value in whole.items():
        assert np.array_equal(got[name], value), name

    monkeypatch.undo()
    threads.set_count(2)
    shape["dtype"] = np.float64
    got, _ = _from_no_state(**shape)
    reference, _ = _from_no_state(**shape, path="reference")
    for name, value in reference.items():
        assert np.abs(got[name] - value).max() <= TOL[np.float64] * max(float(np.abs(value).max()), 1.0), name

    z = np.zeros((3, hidden + 4, 8), dtype=np.float32)
    z[0, :hidden, 5:] = 1.0  # padding columns past the batch's 5: not read as the state
    assert zero_start(z, hidden, 5) == hidden
    z[0, hidden - 1, 4] = 1e-30
    assert zero_start(z, hidden, 5) == 0


@pytest.mark.skipif(not kernels.AVAILABLE, reason="the threaded paths need numba")
@pytest.mark.parametrize("kind, hidden, batch, time", [("rnn_tanh", 300, 2, 3), ("rnn_relu", 263, 19, 2),
                                                       ("rnn_tanh", 130, 17, 4), ("gru", 300, 1, 2),
                                                       ("gru", 200, 4, 3), ("gru", 263, 19, 2), ("gru", 96, 64, 2)])
@pytest.mark.parametrize("on_threads", [True, False])
def test_the_threaded_rnn_and_gru_forward_copy_the_weights_for_their_backward_in_their_own_packing(
        kind, hidden, batch, time, on_threads, monkeypatch):
    """A training forward of the threaded RNN and GRU makes the backward's W_hh and W_ih (Packed.w_hh, w_ih) in
    the meeting that packs its own panels (Implementation.keeps_w_hh, keeps_w_ih: the layer makes no copy on one
    thread before it), from thresholds.BACKWARD_COPY_SPLIT_SIZE entries of the two on (here set to 0, or past
    them: then it copies them on its own thread after the packing):
    units split over two parts, the input split off, column groups, the GRU's backward on numba_path (few
    rows) and its rows split (gru_gradients). Weights changed in place between forward and backward leave
    every gradient's bits as they are, and the backward's gradients are the reference's."""
    from rnnkit.scratch.fast import packing

    monkeypatch.setattr(fast.thresholds, "BACKWARD_COPY_SPLIT_SIZE", 0 if on_threads else 2**40)

    made_after = []
    copy = packing.Packed.copy_for_backward

    def watched(self, hidden=True, inputs=True):
        made_after.append((hidden, inputs))
        return copy(self, hidden, inputs)

    monkeypatch.setattr(packing.Packed, "copy_for_backward", watched)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((batch, time, 3)).astype(np.float32)
    d_out = rng.standard_normal((batch, time, hidden)).astype(np.float32)
    cell = "gru" if kind == "gru" else kind
    chosen = fast.select(cell, batch, hidden, np.float32, training=True, time=time, inputs=3)
    assert chosen.keeps_w_hh and chosen.keeps_w_ih or chosen.path != "threaded"

    def nothing_left_to_copy():  # the layer's own call; without the threads' copies, the forward's after it
        assert made_after == [(False, False)] + ([] if on_threads else [(True, True)])
        made_after.clear()

    with path_forced("threaded"):
        assert_changes_after_the_forward_leave_the_gradients(
            lambda: MAKERS[kind](input_size=3, hidden_size=hidden, dtype=np.float32, rng=1), x, d_out,
            nothing_left_to_copy)

    shape = dict(kind=kind, dtype=np.float32, batch=batch, time=time, features=3, hidden=hidden, layers=1,
                 bidirectional=False, lengths=None)
    reference, _ = run("reference", **shape)
    got, _ = run("threaded", **shape)
    for name, value in reference.items():
        assert np.abs(got[name] - value).max() <= TOL[np.float32] * max(float(np.abs(value).max()), 1.0), name
