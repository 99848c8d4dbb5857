"""Settings that would build a model too large for the machine are refused before the allocation (a typo
such as --hidden 100000000 asked numpy for 213 PiB, and --layers 1000000 built layers for minutes)."""
import numpy as np
import pytest

from rnnkit.engines import build_engine, parameter_limit, scratch_model
from rnnkit.spec import MAX_LAYERS

FORECASTER = dict(input_size=3, output_size=1, horizon=6, future_size=2, hidden_size=16, cell="gru")


def engines():
    try:
        import torch  # noqa: F401
    except ImportError:
        return ["scratch"]
    return ["scratch", "torch"]


@pytest.mark.parametrize("engine", engines())
def test_a_model_past_the_machines_memory_is_refused_before_it_is_allocated(engine):
    with pytest.raises(ValueError, match=r"Forecaster too large for this machine: .* shape \[300000000, \d+\]"):
        build_engine(engine, "Forecaster", dict(FORECASTER, hidden_size=10**8))
    with pytest.raises(ValueError, match=r"LanguageModel too large for this machine"):
        build_engine(engine, "LanguageModel", dict(vocab_size=10**7, embedding_dim=10**5, hidden_size=8))


@pytest.mark.parametrize("engine", engines())
def test_at_most_max_layers_are_stacked(engine):
    build_engine(engine, "Forecaster", dict(FORECASTER, num_layers=3))
    with pytest.raises(ValueError, match=f"num_layers must be at most {MAX_LAYERS}, got {MAX_LAYERS + 1}"):
        build_engine(engine, "Forecaster", dict(FORECASTER, num_layers=MAX_LAYERS + 1))


def test_the_budget_counts_every_parameter_before_it_is_made():
    """A budget of exactly the model's values builds it; one value less is refused, naming the parameter that
    crossed it; the limit is the memory over 4 copies of the dtype (weights, gradients, two moments)."""
    net = scratch_model("Forecaster", FORECASTER)
    values = sum(int(np.size(a)) for a in net.state_dict().values())
    assert values == 3 * 16 * (3 + 16 + 2) + 6 * (16 + 6 * 2 + 1)  # a GRU, and the head of 6 steps (MSE)
    rebuilt = scratch_model("Forecaster", FORECASTER, values=values)
    assert all((a == b).all() for a, b in zip(rebuilt.state_dict().values(), net.state_dict().values()))
    with pytest.raises(ValueError, match=r"Forecaster settings build too large a model: a parameter of shape \[6\] "
                                         r"takes the model past"):
        scratch_model("Forecaster", FORECASTER, values=values - 1)
    limit = parameter_limit("float64")
    assert limit is None or limit * 2 == pytest.approx(parameter_limit("float32"), abs=2)


def test_where_the_system_does_not_say_its_memory_nothing_is_refused(monkeypatch):
    import rnnkit.engines as engines

    monkeypatch.setattr(engines, "_memory_bytes", lambda: None)
    assert engines.parameter_limit() is None
    assert engines.scratch_model("Forecaster", FORECASTER).state_dict()["head.bias"].shape == (6,)


def test_a_recurrent_layer_past_the_budget_allocates_none_of_its_weights():
    """Every weight of a layer is counted before any is drawn: W_ih fits the budget, W_hh crosses it, and the
    refusal comes with (next to) nothing allocated (W_ih alone would be 24 MB)."""
    import tracemalloc

    from rnnkit.scratch.module import ModelTooLarge, parameter_budget
    from rnnkit.scratch.recurrent import GRU

    tracemalloc.start()
    try:
        with parameter_budget(3 * 1000 * 1000 + 1, "GRU"), pytest.raises(ModelTooLarge, match=r"shape \[3000, 1000\]"):
            GRU(1000, 1000, dtype=np.float64, rng=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20
