"""Conformal calibration of a forecaster's intervals (rnnkit/tasks/conformal.py, Forecaster.calibrate,
`rnnkit calibrate`): the margins' ranks, their coverage on exchangeable data, the honest origins (no model
sees the steps it is scored on), the saved file (refused for other weights or when tampered with)."""
import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.cli import main
from rnnkit.data.series import read_series
from rnnkit.tasks import conformal as C
from rnnkit.tasks.forecast import Forecaster, train_forecaster
from rnnkit.tasks.settings import resolve

N = 60
TINY = dict(horizon=4, window=8, hidden=6, epochs=2, batch_size=8, log_every=1)


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    t = np.arange(N)
    values = 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(0).normal(size=N)
    path = tmp_path_factory.mktemp("series") / "toy.csv"
    path.write_text("month,sales\n" + "\n".join(f"{2000 + i // 12}-{i % 12 + 1:02d},{v:.6f}"
                                                  for i, v in enumerate(values)) + "\n")
    return path


@pytest.fixture(scope="module")
def run(csv_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fc"
    s = resolve("forecast", dict(data=str(csv_file), date_column="month", ensemble=2, log=True, out=str(out),
                                 **TINY))
    train_forecaster(s, log=lambda *a: None)
    return out


def test_the_margin_is_the_conformal_rank_and_void_when_too_few():
    s = np.arange(9.0)[::-1].reshape(9, 1, 1)  # scores 8, 7, ..., 0
    e, ok = C.margin(s, 80)  # rank ceil(10 * 0.8) = 8: the 8th smallest, 7
    assert ok and e.tolist() == [[7.0]]
    e, ok = C.margin(s, 95)  # rank ceil(9.5) = 10 > 9: the largest, no guarantee
    assert not ok and e.tolist() == [[8.0]]
    assert C.margin(np.zeros((19, 2, 1)), 95)[1]  # 19 forecasts suffice at 95 %


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 3.0), st.floats(-2.0, 2.0), st.floats(-3, 3), st.sampled_from([None, 0.0, 0.5]))
def test_widen_moves_each_bound_by_the_margin_in_the_models_scale(half, centre, e, offset):
    lo, hi = np.array([[centre - half]]), np.array([[centre + half]])
    if offset is not None:  # a log model's bounds: positive after the offset
        lo, hi = np.exp(lo) - offset, np.exp(hi) - offset
    wlo, whi = C.widen(lo, hi, np.array([[e]]), offset)
    f = (lambda a: a) if offset is None else (lambda a: np.log(a + offset))
    if e >= -half:  # widened, or narrowed short of the middle: each bound moves by e
        np.testing.assert_allclose(f(wlo), f(lo) - e, atol=1e-9)
        np.testing.assert_allclose(f(whi), f(hi) + e, atol=1e-9)
    else:  # narrowed past the middle: both at the middle
        np.testing.assert_allclose(f(wlo), centre, atol=1e-9)
        np.testing.assert_allclose(f(whi), centre, atol=1e-9)
    # the score of a truth on the calibrated bound is the margin's distance from it: 0 on the bound
    if e >= -half:
        assert C.scores(whi, lo, hi, offset) == pytest.approx(e, abs=1e-9)


def test_calibrated_intervals_cover_exchangeable_data_at_their_level():
    """Intervals far too narrow (y ~ N(0, 1), the interval +-0.5 covers 38 %), calibrated on 99 draws, cover
    80 % and 95 % of fresh draws (in expectation exactly 80 / 100 and 95 / 100 of them; 1000 repetitions,
    so a margin one rank off, 79 / 100 or 81 / 100, fails)."""
    rng = np.random.default_rng(1)
    lo, hi = -0.5 * np.ones((1, 1)), 0.5 * np.ones((1, 1))
    cover = {80.0: [], 95.0: []}
    for _ in range(1000):
        truth, fresh = rng.normal(size=(99, 1, 1)), rng.normal(size=1000)
        cal = C.Calibration.fit(truth, {lv: (np.broadcast_to(lo, truth.shape), np.broadcast_to(hi, truth.shape))
                                        for lv in cover}, None, ["x"] * 99, 1, "0" * 64)
        for lv in cover:
            a, b = cal.apply(lv, lo, hi)
            cover[lv].append(np.mean((a[0, 0] <= fresh) & (fresh <= b[0, 0])))
        assert cal.coverage[80.0] == pytest.approx(np.mean(np.abs(truth) <= 0.5))
    assert np.mean(cover[80.0]) == pytest.approx(0.80, abs=0.004)
    assert np.mean(cover[95.0]) == pytest.approx(0.95, abs=0.004)


def test_forecaster_calibrates_on_models_trained_before_each_forecast(run, csv_file, tmp_path, monkeypatch):
    seen = []
    refit = Forecaster.refit

    def spy(self, series, out):
        seen.append(len(series))
        return refit(self, series, out)
    monkeypatch.setattr(Forecaster, "refit", spy)
    model = Forecaster.from_pretrained(run)
    series = read_series(csv_file, "month")
    raw = model.predict_interval(4)
    cal = model.calibrate(forecasts=3, stride=2, retrain=2, series=series)
    # 60 steps, 4 held out: the last forecast covers rows 52..55; a model trained on rows < 48 and < 52
    assert cal.origins == ["2004-01", "2004-03", "2004-05"] and seen == [48, 52]
    assert cal.offset == 0.0 and cal.horizon == 4 and set(cal.margins) == {80.0, 95.0}
    assert not cal.guaranteed[80.0]  # 3 forecasts: rank ceil(4 * 0.8) = 4 > 3
    p = model.predict_interval(4)
    assert p["calibrated"]["forecasts"] == 3 and p["calibrated"]["first"] == "2004-01"
    np.testing.assert_array_equal(p["forecast"], raw["forecast"])
    for lv in (80.0, 95.0):
        want = C.widen(*raw["intervals"][lv], cal.margins[lv], 0.0)
        if lv == 95.0:  # kept around the 80 % interval
            want = (np.minimum(want[0], p["intervals"][80.0][0]), np.maximum(want[1], p["intervals"][80.0][1]))
        np.testing.assert_allclose(p["intervals"][lv], want, rtol=1e-12)
    np.testing.assert_array_equal(model.predict_interval(4, calibrated=False)["intervals"][80.0],
                                  raw["intervals"][80.0])
    with pytest.raises(ValueError, match="calibrated at the levels \\[80.0, 95.0\\], not 50"):
        cal.apply(50.0, *raw["intervals"][80.0])
    # saved beside the checkpoint, it is picked up on loading
    folder = tmp_path / "fc"
    shutil.copytree(run, folder)
    cal.save(folder)
    with pytest.raises(FileExistsError, match="--overwrite"):
        cal.save(folder)
    again = Forecaster.from_pretrained(folder)
    for lv in (80.0, 95.0):
        np.testing.assert_array_equal(again.predict_interval(4)["intervals"][lv], p["intervals"][lv])
    report = again.evaluate(series)
    assert {"coverage_80", "coverage_80_uncalibrated"} <= set(report["model"]) and report["calibrated"]
    repeat = Forecaster.from_pretrained(run).calibrate(forecasts=3, stride=2, retrain=2, series=series)
    for lv in (80.0, 95.0):  # the same seeds train the same models: the same margins, bit for bit
        np.testing.assert_array_equal(repeat.margins[lv], cal.margins[lv])
    with pytest.raises(ValueError, match="at most 11 fit"):
        model.calibrate(forecasts=12, stride=4, series=series)


def test_a_calibration_for_other_weights_or_tampered_with_is_refused(run, tmp_path):
    folder = tmp_path / "fc"
    shutil.copytree(run, folder)
    model = Forecaster.from_pretrained(folder)
    margins = {lv: np.full((4, 1), 0.1) for lv in (80.0, 95.0)}
    good = C.Calibration(margins, {80.0: True, 95.0: False}, 0.0, ["2004-05"], 1, model.fingerprint)
    other = C.Calibration(margins, good.guaranteed, 0.0, ["2004-05"], 1, "f" * 64)
    other.save(folder)
    with pytest.raises(ValueError, match="other weights: calibrate this one again"):
        Forecaster.from_pretrained(folder)
    path = folder / C.FILE
    for broken in ("{", "[]", json.dumps(good.to_json() | {"version": 2}),
                   json.dumps(good.to_json() | {"levels": {"80": {"margin": [[float("nan")]] * 4,
                                                                  "guaranteed": True}}}),
                   json.dumps(good.to_json() | {"levels": {"180": {"margin": [[0.1]] * 4, "guaranteed": True}}}),
                   "[" * 100000 + "]" * 100000):
        path.write_text(broken)
        with pytest.raises(ValueError, match="not a valid forecaster calibration"):
            Forecaster.from_pretrained(folder)
    short = C.Calibration({lv: m[:2] for lv, m in margins.items()}, good.guaranteed, 0.0, ["x"], 1, model.fingerprint)
    short.save(folder, overwrite=True)
    with pytest.raises(ValueError, match="does not fit this model"):
        Forecaster.from_pretrained(folder)
    good.save(folder, overwrite=True)
    assert Forecaster.from_pretrained(folder).calibration.margins[80.0].tolist() == [[0.1]] * 4


def test_point_models_have_nothing_to_calibrate(csv_file, tmp_path):
    f = Forecaster(data=str(csv_file), date_column="month", loss="mse", out=str(tmp_path / "p"), **TINY).fit(
        log=lambda *a: None)
    with pytest.raises(ValueError, match="point forecasts only"):
        f.calibrate(2)


def test_cli_calibrate_then_forecast(run, tmp_path, capsys):
    folder = tmp_path / "fc"
    shutil.copytree(run, folder)
    assert main(["calibrate", str(folder), "--forecasts", "2", "--stride", "3"]) == 0
    out = capsys.readouterr().out
    assert "calibrated on 2 forecasts of 4 steps from 2004-02 to 2004-05" in out and "coverage before" in out
    assert main(["calibrate", str(folder), "--forecasts", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["forecast", str(folder), "--json"]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["calibrated"]["forecasts"] == 2
    assert main(["forecast", str(folder), "--json", "--uncalibrated"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert "calibrated" not in raw and raw["forecast"] == calibrated["forecast"]
    assert raw["intervals"]["80"] != calibrated["intervals"]["80"]


def test_served_forecasts_use_the_calibration(run, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from rnnkit.serve import ServeSettings, create_app

    folder = tmp_path / "fc"
    shutil.copytree(run, folder)
    model = Forecaster.from_pretrained(folder)
    model.calibrate(forecasts=2, stride=3).save(folder)
    want = Forecaster.from_pretrained(folder).predict_interval(4)
    with TestClient(create_app(folder, settings=ServeSettings())) as client:
        info = client.get("/model").json()
        assert info["calibrated"]["forecasts"] == 2 and info["calibrated"]["first"] == "2004-02"
        body = client.post("/forecast", json={}).json()
        assert body["calibrated"] == info["calibrated"]
        np.testing.assert_allclose(body["intervals"]["95"]["upper"], want["intervals"][95.0][1], rtol=1e-12)
        r = client.post("/forecast", json={"levels": [50]})
        assert r.status_code in (400, 422) and "levels" in r.text
