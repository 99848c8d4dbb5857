"""The forecaster learns on the scratch engine: a noisy sine wave, a few hundred steps, forecasts of held-out
windows better than the seasonal-naive forecast, and an 80% quantile interval that covers about 80%."""
import numpy as np
import pytest

from rnnkit.engines import build_engine

PERIOD, WINDOW, HORIZON, NOISE = 12, 24, 12, 0.1


def windows(series, starts):
    """x (len(starts), WINDOW, 1) and y (len(starts), HORIZON, 1) cut from the series at each start."""
    x = np.stack([series[s:s + WINDOW] for s in starts])[..., None]
    y = np.stack([series[s + WINDOW:s + WINDOW + HORIZON] for s in starts])[..., None]
    return {"x": x, "y": y}


def noisy_sine(seed):
    t = np.arange(600)
    return np.sin(2 * np.pi * t / PERIOD) + NOISE * np.random.default_rng(seed).normal(size=t.size)


@pytest.mark.parametrize("decoder, loss, steps", [("direct", "quantile", 200), ("autoregressive", "mse", 200)])
def test_forecaster_beats_seasonal_naive_on_a_noisy_sine(decoder, loss, steps):
    series, train_end = noisy_sine(0), 480
    test = windows(series, np.arange(train_end - WINDOW, len(series) - WINDOW - HORIZON + 1, 3))  # unseen targets
    seasonal_naive = np.tile(test["x"][:, -PERIOD:], (1, HORIZON // PERIOD, 1))
    naive_mae = np.abs(seasonal_naive - test["y"]).mean()            # ≈ E|e1 - e2| = 2 NOISE / sqrt(pi) ≈ 0.11
    engine = build_engine("scratch", "Forecaster", dict(input_size=1, horizon=HORIZON, hidden_size=16, cell="gru",
                                                        decoder=decoder, loss=loss, quantiles=(0.1, 0.5, 0.9)),
                          lr=0.02, seed=0)
    point = engine.model.point

    def forecast_mae():
        out = engine.predict(test["x"])
        return np.abs(out[..., point] - test["y"]).mean(), out

    start, _ = forecast_mae()
    rng = np.random.default_rng(1)
    for step in range(steps):
        engine.lr = 0.02 * (1 - 0.9 * step / steps)      # linear decay to a tenth
        engine.train_step(windows(series, rng.integers(0, train_end - WINDOW - HORIZON + 1, 32)))
    mae, out = forecast_mae()
    assert start > 0.4                                   # an untrained model is far off (the wave's MAE is 0.64)
    # the noise floor is E|e| = NOISE sqrt(2/pi) ≈ 0.08, 0.71 of naive_mae; with data and model seeds 1-4
    # the ratio came out 0.77-0.89 (both decoders) and the interval's coverage 0.67-0.85
    assert mae < 0.95 * naive_mae
    if loss == "quantile":
        inside = (out[..., 0] <= test["y"]) & (test["y"] <= out[..., 2])
        assert 0.6 <= inside.mean() <= 0.95              # the 10%-90% interval
        assert np.mean(out[..., 0] <= out[..., 2]) > 0.99
