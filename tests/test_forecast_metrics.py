"""Forecasting metrics (rnnkit.metrics): MAPE, sMAPE, MASE, interval coverage, pinball loss, by hand."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnnkit import metrics as M

TRUE = [100.0, 200.0, 400.0]
PRED = [110.0, 180.0, 400.0]


def test_mape_by_hand():
    # |errors| / |y| = 10/100, 20/200, 0/400 -> mean 0.0667 -> 6.667 %
    assert M.mape(TRUE, PRED) == pytest.approx(100 * (0.1 + 0.1 + 0.0) / 3)
    with pytest.raises(ValueError, match="y_true holds zeros"):
        M.mape([0.0, 1.0], [1.0, 1.0])


def test_smape_by_hand():
    # 200/n * sum |e| / (|y| + |yhat|) = 200/3 * (10/210 + 20/380 + 0)
    assert M.smape(TRUE, PRED) == pytest.approx(200 / 3 * (10 / 210 + 20 / 380))
    assert M.smape([1.0], [-1.0]) == pytest.approx(200.0)  # the upper bound
    with pytest.raises(ValueError, match="both 0"):
        M.smape([0.0, 1.0], [0.0, 1.0])


def test_mase_by_hand():
    insample = [1.0, 3.0, 2.0, 5.0, 4.0]
    # m = 1: naive errors |3-1|, |2-3|, |5-2|, |4-5| = 2, 1, 3, 1 -> scale 1.75; MAE of the forecast = 1
    assert M.mase([6.0, 7.0], [5.0, 8.0], insample) == pytest.approx(1 / 1.75)
    # m = 2: |2-1|, |5-3|, |4-2| = 1, 2, 2 -> scale 5/3
    assert M.mase([6.0, 7.0], [5.0, 8.0], insample, m=2) == pytest.approx(1 / (5 / 3))
    with pytest.raises(ValueError, match="repeats with period 2"):
        M.mase([1.0], [2.0], [1.0, 2.0, 1.0, 2.0], m=2)
    with pytest.raises(ValueError, match="more than m = 5 in-sample steps"):
        M.mase([1.0], [2.0], insample, m=5)


def test_mase_matches_sktime_definition_multioutput():
    # sktime: MAE over all test points / mean over t > s of |y_t - y_{t-s}| over the training points (uniform
    # over outputs when the scale is pooled); with equal per-column scales both conventions agree
    insample = np.array([[1.0, 10.0], [2.0, 11.0], [4.0, 13.0]])  # scale 1.5 in both columns
    t, p = np.array([[5.0, 14.0]]), np.array([[6.0, 12.0]])
    assert M.mase(t, p, insample) == pytest.approx(1.5 / 1.5)


def test_coverage():
    assert M.coverage([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 3.5, 0.0], [1.0, 2.5, 4.0, 3.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lower > upper"):
        M.coverage([1.0], [2.0], [0.0])


def test_pinball_by_hand():
    # y = 10; q 0.1 predicts 8 (under: 0.1 * 2 = 0.2), q 0.9 predicts 8 (0.9 * 2 = 1.8), q 0.5 predicts 12
    # (over: 0.5 * 2 = 1.0) -> mean 1.0
    assert M.pinball([10.0], [[8.0, 12.0, 8.0]], [0.1, 0.5, 0.9]) == pytest.approx((0.2 + 1.0 + 1.8) / 3)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        M.pinball([1.0], [[1.0]], [1.0])
    with pytest.raises(ValueError, match=r"y_true has shape \(2,\) but y_quantiles has \(3, 1\)"):
        M.pinball([1.0, 2.0], [[1.0], [2.0], [3.0]], [0.5])


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_pinball_matches_sklearn_and_median_is_half_mae(n, seed):
    from sklearn.metrics import mean_pinball_loss

    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    qs = np.array([0.1, 0.5, 0.975])
    preds = rng.normal(size=(n, 3))
    want = np.mean([mean_pinball_loss(y, preds[:, k], alpha=q) for k, q in enumerate(qs)])
    assert M.pinball(y, preds, qs) == pytest.approx(want, rel=1e-12)
    assert M.pinball(y, preds[:, 1:2], [0.5]) == pytest.approx(M.mae(y, preds[:, 1]) / 2, rel=1e-12)
