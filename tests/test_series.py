"""Time series: reading and checking (rnnkit.data.series), transforms, windows, and the registry's series."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnnkit.data import datasets
from rnnkit.data.series import (calendar_features, check_lengths, format_date, grid_dates, grid_positions,
                                infer_frequency, make_series, parse_date, read_series)
from rnnkit.data.transforms import SeriesTransform
from rnnkit.data.windows import batches, n_windows, sliding_windows


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def months(start_year, n, day="01"):
    return [f"{start_year + i // 12}-{i % 12 + 1:02d}-{day}" for i in range(n)]


# ------------------------------------------------------------------------------------------ reading


def test_read_csv_target_and_covariates(tmp_path):
    path = write(tmp_path, "s.csv", "date,sales,price,promo\n2024-01-03,10,1.5,0\n2024-01-01,8,1.0,1\n"
                                    "2024-01-02,9,1.25,0\n")
    s = read_series(path, target="sales", covariates=["price"])
    assert s.freq == "daily" and s.target == ("sales",) and s.covariates == ("price",)
    assert s.dates.astype(str).tolist() == ["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"]
    np.testing.assert_array_equal(s.values, [[8, 1.0], [9, 1.25], [10, 1.5]])  # sorted by date
    np.testing.assert_array_equal(s.y[:, 0], [8, 9, 10])
    everything = read_series(path)  # default target: every column but the date
    assert everything.target == ("sales", "price", "promo") and everything.values.shape == (3, 3)


def test_read_tsv_and_jsonl_agree(tmp_path):
    tsv = write(tmp_path, "s.tsv", "month\tvalue\n1949-01\t112\n1949-02\t118\n1949-03\t132\n")
    jsonl = write(tmp_path, "s.jsonl", "".join(json.dumps({"month": m, "value": v}) + "\n"
                                               for m, v in [("1949-01", 112), ("1949-02", 118), ("1949-03", 132)]))
    a, b = read_series(tsv, date_column="month"), read_series(jsonl, date_column="month")
    assert a.freq == b.freq == "monthly"
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.dates, b.dates)
    assert a.future_dates(2).astype("datetime64[M]").astype(str).tolist() == ["1949-04", "1949-05"]


@pytest.mark.parametrize("dates, freq", [
    (["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00"], "hourly"),
    (["2024-01-01", "2024-01-08", "2024-01-15"], "weekly"),
    (["2023-01-31", "2023-02-28", "2023-03-31", "2023-04-30"], "monthly"),  # month ends
    (["2020-01", "2020-04", "2020-07"], "quarterly"),
    (["1990", "1991", "1992"], "yearly"),
    (["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"], "minutely"),
])
def test_frequency_inferred(dates, freq):
    s = make_series(dates, np.arange(len(dates)), "y")
    assert s.freq == freq


def test_business_days_inferred_continued_and_checked():
    """Weekdays only, some step skipping a weekend: business-daily (pandas' "B"); the grid counts weekdays, the
    forecast's dates skip weekends, a missing weekday (a holiday) is a missing date, a weekend date is off the
    grid, and the calendar's day of week has 5 classes."""
    dates = ["2024-01-04 16:00", "2024-01-05 16:00", "2024-01-08 16:00", "2024-01-09 16:00"]  # Thu Fri Mon Tue
    s = make_series(dates, [1, 2, 3, 4], "y")
    assert s.freq == "business-daily" and s.season == 5
    assert [format_date(d) for d in s.future_dates(4)] == ["2024-01-10 16:00:00", "2024-01-11 16:00:00",
                                                           "2024-01-12 16:00:00", "2024-01-15 16:00:00"]
    np.testing.assert_array_equal(grid_positions(s.dates, s.freq), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="1 missing dates in the business-daily series: the first after "
                                         "2024-01-05 16:00:00"):
        make_series(dates[:2] + dates[3:], [1, 2, 4], "y")
    filled = make_series(dates[:2] + dates[3:], [1, 2, 4], "y", fill="interpolate")
    np.testing.assert_array_equal(filled.y[:, 0], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="irregular spacing: 2024-01-06 16:00:00 is not on the business-daily"):
        make_series(dates[:2] + ["2024-01-06 16:00"], [1, 2, 3], "y", freq="business-daily")
    with pytest.raises(ValueError, match="irregular spacing: 2024-01-08 17:00:00"):
        make_series(dates[:2] + ["2024-01-08 17:00"], [1, 2, 3], "y", freq="business-daily")
    with pytest.raises(ValueError, match="the first date, 2024-01-06, is not a weekday"):
        make_series(["2024-01-06", "2024-01-08"], [1, 2], "y", freq="business-daily")
    with pytest.raises(ValueError, match="2024-01-07 is not a weekday"):
        grid_dates(np.array(["2024-01-07"], dtype="datetime64[s]"), "business-daily", [0, 1])
    week = make_series(["2024-01-01", "2024-01-02", "2024-01-03"], [1, 2, 3], "y")  # no weekend skipped
    assert week.freq == "daily"
    features, names = calendar_features(s.future_dates(4), s.freq, "onehot")
    assert names[:5] == ["weekday_mon", "weekday_tue", "weekday_wed", "weekday_thu", "weekday_fri"]
    np.testing.assert_array_equal(features[:, :5].argmax(1), [2, 3, 4, 0])
    assert features.shape == (4, 5 + 12)


def test_month_ends_continue_as_month_ends():
    s = make_series(["2023-11-30", "2023-12-31", "2024-01-31"], [1, 2, 3], "y")
    assert s.future_dates(2).astype("datetime64[D]").astype(str).tolist() == ["2024-02-29", "2024-03-31"]


def test_time_zone_becomes_utc():
    assert parse_date("2024-03-01T13:00:00+01:00") == np.datetime64("2024-03-01T12:00:00")


@pytest.mark.parametrize("dates, values, message", [
    (["2024-01-01", "2024-01-02", "2024-01-02"], [1, 2, 3], r"duplicated date 2024-01-02 \(row 2 and row 3\)"),
    (["2024-01-01", "2024-01-02", "2024-01-04"], [1, 2, 3], r"1 missing dates in the daily series: the first "
                                                             r"after 2024-01-02 \(the next date is 2024-01-04\)"),
    (["2024-01-01", "2024-01-02", "2024-01-03 12:00"], [1, 2, 3], "irregular spacing: 2024-01-03 12:00:00"),
    (["2024-01-15", "2024-02-15", "2024-03-20"], [1, 2, 3], "irregular spacing: 2024-03-20"),
    (["2024-01-01", "2024-01-03", "2024-01-05"], [1, 2, 3], "cannot infer the frequency"),
    (["2024-01-01", "2024-01-02", "2024-01-03"], [1, np.inf, 3], "row 2: column 'y' is inf"),
    (["2024-01-01", "2024-01-02", "2024-01-03"], [1, np.nan, 3], "1 missing values .*2024-01-02.*fill="),
    (["01/02/2024", "2024-01-02"], [1, 2], "'01/02/2024' is not an ISO 8601 date"),
])
def test_bad_series_raise_clear_errors(dates, values, message):
    with pytest.raises(ValueError, match=message):
        make_series(dates, values, "y")


def test_stated_frequency_is_checked():
    s = make_series(["2024-01-01", "2024-01-03", "2024-01-05"], [1, 2, 3], "y", freq="daily", fill="ffill")
    np.testing.assert_array_equal(s.y[:, 0], [1, 1, 2, 2, 3])
    with pytest.raises(ValueError, match="irregular spacing"):
        make_series(["2024-01-01", "2024-01-02", "2024-01-03"], [1, 2, 3], "y", freq="weekly")
    for alias, name in (("D", "daily"), ("MS", "monthly"), ("Q", "quarterly"), ("h", "hourly")):  # pandas'
        assert make_series(["2024-01-01", "2024-07-01"], [1, 2], "y", freq=alias, fill="ffill").freq == name
    with pytest.raises(ValueError, match=r"unknown frequency 'fortnightly'; choose one of minutely, .* \(or pandas'"):
        make_series(["2024-01-01", "2024-01-15"], [1, 2], "y", freq="fortnightly")


def test_fill_missing_dates_and_values():
    dates = ["2024-01", "2024-02", "2024-04", "2024-05"]  # March missing
    values = [[1.0, 10.0], [np.nan, 20.0], [4.0, np.nan], [5.0, 50.0]]
    ff = make_series(dates, values, "a", ["b"], fill="ffill")
    np.testing.assert_array_equal(ff.values, [[1, 10], [1, 20], [1, 20], [4, 20], [5, 50]])
    lin = make_series(dates, values, "a", ["b"], fill="interpolate")
    np.testing.assert_allclose(lin.values, [[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]])
    assert lin.dates[2] == np.datetime64("2024-03-01")
    with pytest.raises(ValueError, match="missing its first value"):
        make_series(["2024-01", "2024-02"], [np.nan, 1], "y", fill="ffill")
    with pytest.raises(ValueError, match="cannot extrapolate"):
        make_series(["2024-01", "2024-02"], [1, np.nan], "y", fill="interpolate")
    with pytest.raises(ValueError, match="unknown fill 'mean'"):
        make_series(["2024-01", "2024-02"], [1, 2], "y", fill="mean")


def test_file_errors_name_the_line(tmp_path):
    bad = write(tmp_path, "bad.csv", "date,y\n2024-01-01,1\n2024-01-02,abc\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: column 'y' holds 'abc'; expected a number"):
        read_series(bad)
    dup = write(tmp_path, "dup.csv", "date,y\n2024-01-01,1\n2024-01-02,2\n2024-01-01,3\n")
    with pytest.raises(ValueError, match=r"dup.csv: duplicated date 2024-01-01 \(line 2 and line 4\)"):
        read_series(dup)
    with pytest.raises(ValueError, match=r"no column 'sales'; the file has the columns \['date', 'y'\]"):
        read_series(dup, target="sales")
    empty = write(tmp_path, "na.csv", "date,y\n2024-01-01,1\n2024-01-02,\n2024-01-03,NA\n2024-01-04,4\n")
    np.testing.assert_allclose(read_series(empty, fill="interpolate").y[:, 0], [1, 2, 3, 4])


def test_check_lengths():
    check_lengths(10, 6, 4)
    with pytest.raises(ValueError, match=r"10 steps, fewer than the input window plus the horizon \(8 \+ 4 = 12\)"):
        check_lengths(10, 8, 4)
    with pytest.raises(ValueError, match=r"horizon must lie in 1..1000 steps, got 1001"):
        check_lengths(5000, 8, 1001)


def test_infer_frequency_needs_two_dates():
    with pytest.raises(ValueError, match="at least 2 dates"):
        infer_frequency(np.array(["2024-01-01"], dtype="datetime64[s]"))


def test_calendar_features():
    dates = np.array(["2024-01-01", "2024-04-01", "2024-07-01", "2024-10-01"], dtype="datetime64[s]")
    cyc, names = calendar_features(dates, "monthly")
    assert names == ["month_sin", "month_cos"]
    np.testing.assert_allclose(cyc, [[0, 1], [1, 0], [0, -1], [-1, 0]], atol=1e-12)  # months 0, 3, 6, 9 of 12
    hot, names = calendar_features(dates, "monthly", "onehot")
    assert names[:3] == ["month_jan", "month_feb", "month_mar"] and hot.shape == (4, 12)
    np.testing.assert_array_equal(hot.argmax(1), [0, 3, 6, 9])
    days = np.array(["2024-06-03", "2024-06-09"], dtype="datetime64[s]")  # a Monday and a Sunday
    hot, names = calendar_features(days, "daily", "onehot")
    assert names[:7] == ["weekday_mon", "weekday_tue", "weekday_wed", "weekday_thu", "weekday_fri",
                         "weekday_sat", "weekday_sun"]
    np.testing.assert_array_equal(hot[:, :7].argmax(1), [0, 6])
    np.testing.assert_array_equal(hot[:, 7:].argmax(1), [5, 5])  # June
    hours = np.array(["2024-06-03T05:00"], dtype="datetime64[s]")
    cyc, names = calendar_features(hours, "hourly")
    np.testing.assert_allclose(cyc[0, :2], [np.sin(2 * np.pi * 5 / 24), np.cos(2 * np.pi * 5 / 24)])
    assert calendar_features(dates, "yearly")[0].shape == (4, 0)


# ---------------------------------------------------------------------------------------- transforms


def test_transform_by_hand():
    y = np.array([[1.0], [3.0], [6.0], [10.0], [15.0]])
    t = SeriesTransform(diff=1).fit(y)  # differences 2, 3, 4, 5: mean 3.5, std sqrt(1.25)
    assert t.lost == 1 and t.mean == [3.5] and t.std == [pytest.approx(np.sqrt(1.25))]
    np.testing.assert_allclose(t.transform(y)[:, 0], (np.array([2, 3, 4, 5]) - 3.5) / np.sqrt(1.25))
    z = (np.array([[6.0], [7.0]]) - 3.5) / np.sqrt(1.25)  # the next differences 6 and 7
    np.testing.assert_allclose(t.inverse(z, y), [[21.0], [28.0]])


@settings(max_examples=20, deadline=None)
@given(log=st.sampled_from([None, 0.0, 1.0]), diff=st.sampled_from([0, 1, 2]), season=st.sampled_from([0, 3, 4]),
       scale=st.booleans(), k=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_inverse_undoes_transform_exactly(log, diff, season, scale, k, seed):
    """log: None (no log) or the offset of log(y + offset)."""
    rng = np.random.default_rng(seed)
    y = np.exp(rng.normal(size=(30, 2)).cumsum(0) * 0.1) + 0.5
    t = SeriesTransform(log=log is not None, offset=log or 0.0, diff=diff, season=season, scale=scale).fit(y[:20])
    z = t.transform(y)
    assert z.shape == (30 - t.lost, 2)
    future = y[k + t.lost:]
    np.testing.assert_allclose(t.inverse(z[k:], y[:k + t.lost]), future, rtol=1e-10)
    # leading axes (batch, quantiles) broadcast: the same path twice gives the same answer twice
    both = t.inverse(np.stack([z[k:], z[k:]]), y[:k + t.lost])
    np.testing.assert_allclose(both, np.stack([future, future]), rtol=1e-10)


def test_transform_errors_and_round_trip():
    with pytest.raises(ValueError, match="log transform needs values above 0; column 0 holds 0 at step 1"):
        SeriesTransform(log=True).fit(np.array([[1.0], [0.0], [2.0]]))
    with pytest.raises(ValueError, match="not fitted"):
        SeriesTransform().transform(np.ones((4, 1)))
    with pytest.raises(ValueError, match="seasonal differencing lag"):
        SeriesTransform(season=1)
    t = SeriesTransform(log=True, diff=1, season=12).fit(np.arange(1.0, 40.0)[:, None])
    back = SeriesTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t


def test_log_offset_is_log1p_and_keeps_zeros():
    y = np.array([[0.0], [3.0], [8.0], [0.0], [15.0]])
    t = SeriesTransform(log=True, offset=1.0, scale=False).fit(y)
    np.testing.assert_allclose(t.transform(y), np.log1p(y))
    np.testing.assert_allclose(t.inverse(np.log1p([[0.0], [24.0]]), y), [[0.0], [24.0]], atol=1e-12)
    back = SeriesTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t and SeriesTransform.from_dict({"log": True}).offset == 0.0  # checkpoints from before it
    with pytest.raises(ValueError, match="needs values above -1; column 0 holds -2 at step 1"):
        SeriesTransform(log=True, offset=1.0).fit(np.array([[1.0], [-2.0], [2.0]]))
    with pytest.raises(ValueError, match="needs log=True"):
        SeriesTransform(offset=1.0)


def test_trend_by_hand():
    """y = exp(1 + 0.5 t + season), a season of +-0.1: the line of log y by least squares; what is left is
    log y minus it, and a forecast of what is left continues the line."""
    season = np.array([0.1, -0.1] * 3)
    y = np.exp(1 + 0.5 * np.arange(6.0) + season)[:, None]
    t = SeriesTransform(log=True, trend=True, scale=False).fit(y)
    # least squares by hand: b = 0.5 + sum((t - 2.5) season) / sum((t - 2.5)^2) = 0.5 - 0.3 / 17.5
    b = 0.5 + (np.arange(6.0) - 2.5) @ season / 17.5
    assert b == pytest.approx(0.5 - 0.3 / 17.5)
    a = np.log(y[:, 0]).mean() - b * 2.5
    assert t.slope == [pytest.approx(b, rel=1e-12)] and t.intercept == [pytest.approx(a, rel=1e-12)]
    np.testing.assert_allclose(t.transform(y)[:, 0], np.log(y[:, 0]) - a - b * np.arange(6.0), atol=1e-12)
    # two steps after the history's last one (positions 6 and 7), the detrended values 0.2 and -0.2
    np.testing.assert_allclose(t.inverse(np.array([[0.2], [-0.2]]), y)[:, 0], np.exp(a + b * np.array([6, 7]) +
                                                                                   np.array([0.2, -0.2])))
    # a history that starts at position 2 ends at the same place: the same forecast
    np.testing.assert_allclose(t.inverse(np.array([[0.2], [-0.2]]), y[2:], start=2),
                               t.inverse(np.array([[0.2], [-0.2]]), y))
    np.testing.assert_allclose(t.transform(y[3:], start=3), t.transform(y)[3:], atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(log=st.booleans(), scale=st.booleans(), k=st.integers(0, 6), start=st.integers(0, 5),
       seed=st.integers(0, 2**16))
def test_trend_inverse_undoes_transform_exactly(log, scale, k, start, seed):
    rng = np.random.default_rng(seed)
    y = np.exp(rng.normal(size=(30, 2)).cumsum(0) * 0.1 + 0.02 * np.arange(30)[:, None]) + 0.5
    t = SeriesTransform(log=log, trend=True, scale=scale).fit(y[:20])
    z = t.transform(y[start:], start)
    np.testing.assert_allclose(t.inverse(z[k:], y[start:start + k], start), y[start + k:], rtol=1e-10)


@settings(max_examples=15, deadline=None)
@given(log=st.booleans(), steps=st.sampled_from([0, 2, 7, 20]), damping=st.sampled_from([1.0, 0.9, 0.5]),
       k=st.integers(0, 6), start=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_recent_and_damped_trend_inverse_undoes_transform_exactly(log, steps, damping, k, start, seed):
    """A line fitted on the last steps only, damped after the training part: the round trip still holds,
    inside the training part and after it (y[20:] lies past the fitted end)."""
    rng = np.random.default_rng(seed)
    y = np.exp(rng.normal(size=(30, 2)).cumsum(0) * 0.1 + 0.02 * np.arange(30)[:, None]) + 0.5
    t = SeriesTransform(log=log, trend=True, trend_steps=steps, damping=damping).fit(y[:20])
    z = t.transform(y[start:], start)
    np.testing.assert_allclose(t.inverse(z[k:], y[start:start + k], start), y[start + k:], rtol=1e-10)
    back = SeriesTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    np.testing.assert_allclose(back.transform(y[start:], start), z, rtol=1e-12)


def test_recent_and_damped_trend_by_hand():
    """u = 2 t + 1 for t < 4 and 3 t - 3 after: the line of the last 3 training steps (t = 4, 5, 6) is
    3 t - 3 exactly; damped by 0.5 after the fitted end e = 7, the line at 7, 8, 9 is 15 + 3 (0.5, 0.75, 0.875)."""
    u = np.where(np.arange(10) < 4, 2 * np.arange(10) + 1.0, 3 * np.arange(10) - 3.0)[:, None]
    t = SeriesTransform(trend=True, trend_steps=3, scale=False).fit(u[:7])
    assert t.end == 7 and t.slope == [pytest.approx(3.0)] and t.intercept == [pytest.approx(-3.0)]
    np.testing.assert_allclose(t.transform(u[:7])[4:, 0], 0.0, atol=1e-12)   # the last 3 steps lie on it
    np.testing.assert_allclose(t.transform(u[:7])[:4, 0], 4.0 - np.arange(4), atol=1e-12)
    np.testing.assert_allclose(t.inverse(np.zeros((3, 1)), u[:7])[:, 0], [18.0, 21.0, 24.0])  # straight on
    d = SeriesTransform(trend=True, trend_steps=3, damping=0.5, scale=False).fit(u[:7])
    np.testing.assert_allclose(d.transform(u[:7]), t.transform(u[:7]), atol=1e-12)  # the same inside
    np.testing.assert_allclose(d.inverse(np.zeros((3, 1)), u[:7])[:, 0], 15.0 + 3 * np.array([0.5, 0.75, 0.875]))
    np.testing.assert_allclose(d.inverse(np.ones((2, 1)), u[2:7], start=2)[:, 0],
                               16.0 + 3 * np.array([0.5, 0.75]))  # a history that starts later, the same line
    with pytest.raises(ValueError, match="last 8 steps; the training part has 7"):
        SeriesTransform(trend=True, trend_steps=8).fit(u[:7])
    with pytest.raises(ValueError, match=r"damping must lie in \(0, 1\]"):
        SeriesTransform(trend=True, damping=1.5)
    with pytest.raises(ValueError, match="they need trend=True"):
        SeriesTransform(trend_steps=3)


def test_trend_errors_and_round_trip():
    with pytest.raises(ValueError, match="a trend and differences exclude each other"):
        SeriesTransform(trend=True, diff=1)
    with pytest.raises(ValueError, match="a trend and differences exclude each other"):
        SeriesTransform(trend=True, season=12)
    with pytest.raises(ValueError, match="not fitted"):
        SeriesTransform(trend=True).transform(np.ones((4, 1)))
    t = SeriesTransform(log=True, trend=True).fit(np.arange(1.0, 40.0).reshape(13, 3))
    back = SeriesTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t and len(t.slope) == 3 and SeriesTransform.from_dict({"log": True}).trend is False


# ------------------------------------------------------------------------------------------- windows


def test_sliding_windows_by_hand():
    target = np.arange(10.0)[:, None]
    inputs = np.stack([np.arange(10.0), -np.arange(10.0)], 1)
    future = 100 + np.arange(10.0)[:, None]
    w = sliding_windows(inputs, target, window=3, horizon=2, future=future, stride=2)
    assert n_windows(10, 3, 2, 2) == 3 == len(w["x"])
    assert w["x"].shape == (3, 3, 2) and w["y"].shape == (3, 2, 1) and w["future"].shape == (3, 2, 1)
    np.testing.assert_array_equal(w["x"][1], [[2, -2], [3, -3], [4, -4]])
    np.testing.assert_array_equal(w["y"][1, :, 0], [5, 6])
    np.testing.assert_array_equal(w["y_prev"][1, :, 0], [4, 5])
    np.testing.assert_array_equal(w["future"][1, :, 0], [105, 106])
    np.testing.assert_array_equal(w["y"][-1, :, 0], [7, 8])
    assert "future" not in sliding_windows(inputs, target, 3, 2)
    with pytest.raises(ValueError, match=r"10 steps, fewer than the input window plus the horizon \(8 \+ 3"):
        sliding_windows(inputs, target, 8, 3)


@settings(max_examples=15, deadline=None)
@given(time=st.integers(2, 40), window=st.integers(1, 10), horizon=st.integers(1, 10), stride=st.integers(1, 5))
def test_windows_cover_every_start(time, window, horizon, stride):
    target = np.arange(float(time))[:, None]
    n = n_windows(time, window, horizon, stride)
    assert n == len(range(0, time - window - horizon + 1, stride))
    if n:
        w = sliding_windows(target, target, window, horizon, stride=stride)
        np.testing.assert_array_equal(w["x"][:, 0, 0], np.arange(n) * stride)
        np.testing.assert_array_equal(w["y"][:, 0, 0] - w["x"][:, -1, 0], 1)


def test_batches_seeded_and_complete():
    samples = {"x": np.arange(10)[:, None], "y": np.arange(10) * 2}
    a = [b["x"][:, 0].tolist() for b in batches(samples, 4, seed=3, epoch=1)]
    assert a == [b["x"][:, 0].tolist() for b in batches(samples, 4, seed=3, epoch=1)]  # same seed, same order
    assert a != [b["x"][:, 0].tolist() for b in batches(samples, 4, seed=3, epoch=2)]
    assert [len(x) for x in a] == [4, 4, 2] and sorted(sum(a, [])) == list(range(10))
    for b in batches(samples, 4, seed=3):
        np.testing.assert_array_equal(b["y"], b["x"][:, 0] * 2)  # rows stay together
    assert [b["x"][:, 0].tolist() for b in batches(samples, 5, shuffle=False)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


# ------------------------------------------------------------------------------------------ registry


def test_registry_entries_for_series():
    for name, n in (("air-passengers", 144), ("sunspots", 2820)):
        ds = datasets.get(name)
        assert ds.frequency == "monthly" and ds.package == "pmdarima" and ds.version == "2.1.1"
        assert ds.wheel_tags == ("311", "cp311", "manylinux_2_17_x86_64") and len(ds.wheel_sha256) == 64
    with pytest.raises(datasets.DatasetError, match="is a time series; read it with load_series"):
        datasets.load("air-passengers")
    with pytest.raises(datasets.DatasetError, match="is not a time series; known series: air-passengers, sunspots"):
        datasets.load_series("shakespeare")


def test_pip_download_pins_the_platform(tmp_path, monkeypatch):
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        (tmp_path / "pmdarima-2.1.1-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"")
        return datasets.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(datasets.subprocess, "run", fake_run)
    datasets._pip_download("pmdarima", "2.1.1", tmp_path, datasets.PMDARIMA_WHEEL)
    cmd = seen[0]
    assert cmd[cmd.index("--platform") + 1] == "manylinux_2_17_x86_64" and cmd[cmd.index("--abi") + 1] == "cp311"
    assert cmd[cmd.index("--python-version") + 1] == "311" and cmd[cmd.index("--implementation") + 1] == "cp"


def test_read_air_passengers_source():
    source = "x = 1\n    rslt = np.array([\n" + ",\n".join(["112, 118"] * 72) + "\n    ]).astype(dtype)\n"
    assert datasets.read_air_passengers(source)[:3] == [112, 118, 112]
    with pytest.raises(datasets.DatasetError, match="expected 144 monthly values, found 2"):
        datasets.read_air_passengers("rslt = np.array([1, 2])")


@pytest.mark.network
def test_fetch_air_passengers_and_sunspots(tmp_path_factory):
    home = tmp_path_factory.mktemp("rnnkit_home")
    air = datasets.load_series("air-passengers", home)
    assert len(air) == 144 and air.freq == "monthly" and air.target == ("passengers",)
    assert air.y[:3, 0].tolist() == [112, 118, 132] and air.y[-1, 0] == 432 and air.y.sum() == 40363
    assert str(air.dates[0])[:7] == "1949-01" and str(air.dates[-1])[:7] == "1960-12"
    sun = datasets.load_series("sunspots", home)
    assert len(sun) == 2820 and str(sun.dates[-1])[:7] == "1983-12"
    assert sun.y[:3, 0].tolist() == [58.0, 62.6, 70.0] and sun.y[-3:, 0].tolist() == [55.8, 33.3, 33.4]


def test_from_pandas_series_and_dataframes():
    pd = pytest.importorskip("pandas")
    from rnnkit.data.series import from_pandas

    months = pd.period_range("1949-01", periods=4, freq="M")
    s = from_pandas(pd.Series([1.0, 2.0, 3.0, 4.0], index=months, name="passengers"))
    assert s.target == ("passengers",) and s.freq == "monthly" and s.y[:, 0].tolist() == [1, 2, 3, 4]
    assert str(s.dates[0])[:10] == "1949-01-01"
    assert from_pandas(pd.Series([1.0, 2.0], index=months[:2])).target == ("value",)
    assert from_pandas(pd.Series([1.0, 2.0], index=months[:2], name="x"), target=["sales"]).target == ("sales",)
    days = pd.date_range("2024-03-20", periods=3, freq="D", tz="Europe/Paris")
    frame = pd.DataFrame({"sales": [1.0, 2.0, 3.0], "price": [5.0, 6.0, 7.0]}, index=days)
    d = from_pandas(frame, covariates=["price"])
    assert (d.target, d.covariates) == (("sales",), ("price",)) and d.x[:, 0].tolist() == [5, 6, 7]
    assert str(d.dates[0]) == "2024-03-19T23:00:00"  # in UTC, as read_series takes time-zoned dates
    with pytest.raises(ValueError, match=r"no column 'cost'; the DataFrame has the columns \['sales', 'price'\]"):
        from_pandas(frame, covariates=["cost"])
    with pytest.raises(TypeError, match="must be indexed by dates"):
        from_pandas(pd.Series([1.0, 2.0]))
    with pytest.raises(ValueError, match="a pandas Series is one column"):
        from_pandas(pd.Series([1.0, 2.0], index=months[:2]), target=["a", "b"])
    with pytest.raises(ValueError, match="missing"):
        from_pandas(pd.Series([1.0, float("nan"), 3.0], index=months[:3]))
