"""`rnnkit serve` of a forecaster (rnnkit/serve/forecast.py), in process, on a tiny forecaster trained here:
POST /forecast answers what Forecaster.predict_interval computes, bad input gets a JSON 4xx with the reason,
the API key guards it, and a bounded schemathesis run finds no 5xx and no answer off the schema."""
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from rnnkit.data.series import make_series  # noqa: E402
from rnnkit.serve import ServeSettings, create_app  # noqa: E402
from rnnkit.tasks.forecast import Forecaster  # noqa: E402

N, WINDOW, HORIZON = 60, 8, 4
KEY = "s3cret-key"
MONTHS = [f"{2000 + i // 12}-{i % 12 + 1:02d}" for i in range(N)]
VALUES = 10 + 0.05 * np.arange(N) + 2 * np.sin(2 * np.pi * np.arange(N) / 12)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A quantile GRU forecaster of a monthly series (levels 80 and 95), trained in a few seconds."""
    out = tmp_path_factory.mktemp("forecaster") / "run"
    series = make_series(MONTHS, VALUES, "sales", name="toy")
    Forecaster(data="given", horizon=HORIZON, window=WINDOW, hidden=6, epochs=2, batch_size=8, progress=False,
               out=str(out)).fit(series, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(run, settings=ServeSettings(max_history=50, max_body_bytes=20000))) as c:
        yield c


def expected(run, horizon, levels, start=None, values=None):
    """Forecaster.predict_interval in Python, as /forecast spells it."""
    f = Forecaster.from_pretrained(run)
    history = None if values is None else make_series(
        [f"{int(start[:4]) + (int(start[5:]) - 1 + i) // 12}-{(int(start[5:]) - 1 + i) % 12 + 1:02d}"
         for i in range(len(values))], np.array(values), "sales")
    return f.predict_interval(horizon, levels, history)


def test_model_describes_the_forecaster(client):
    info = client.get("/model").json()
    assert info["task"] == "forecast" and info["target"] == ["sales"] and info["covariates"] == []
    assert (info["freq"], info["window"], info["horizon"], info["loss"]) == ("monthly", WINDOW, HORIZON, "quantile")
    assert info["levels"] == [80.0, 95.0] and info["last_date"] == "2004-12" and info["parameters"] > 0
    assert info["limits"] == {"max_horizon": HORIZON, "min_history": WINDOW, "max_history": 50, "max_levels": 10,
                              "max_quantiles": 20, "max_body_bytes": 20000}
    assert client.get("/ready").json() == {"ready": True, "task": "forecast"}


def test_forecast_of_the_stored_history_equals_predict_interval(client, run):
    r = client.post("/forecast", json={})
    assert r.status_code == 200, r.text
    body, want = r.json(), expected(run, HORIZON, (80, 95))
    assert body["dates"] == ["2005-01", "2005-02", "2005-03", "2005-04"]
    assert body["target"] == ["sales"] and body["freq"] == "monthly"
    np.testing.assert_allclose(body["forecast"], want["forecast"], rtol=1e-12)
    assert set(body["intervals"]) == {"80", "95"}
    for level in (80, 95):
        lower, upper = want["intervals"][float(level)]
        np.testing.assert_allclose(body["intervals"][str(level)]["lower"], lower, rtol=1e-12)
        np.testing.assert_allclose(body["intervals"][str(level)]["upper"], upper, rtol=1e-12)
        assert np.all(np.array(body["intervals"][str(level)]["lower"]) <= body["forecast"])


def test_forecast_of_a_given_history_by_start_or_by_dates(client, run):
    values = VALUES[12:30].tolist()
    want = expected(run, 3, (80,), "2001-01", values)
    by_start = client.post("/forecast", json={"history": {"start": "2001-01", "values": values}, "horizon": 3,
                                              "levels": [80]}).json()
    by_dates = client.post("/forecast", json={"history": {"dates": MONTHS[12:30], "values": values}, "horizon": 3,
                                              "levels": [80]}).json()
    # the answer's forecast is rows (horizon, targets): rows of one number are taken as a history too
    by_rows = client.post("/forecast", json={"history": {"start": "2001-01", "values": [[v] for v in values]},
                                             "horizon": 3, "levels": [80]}).json()
    assert by_start == by_dates == by_rows
    assert by_start["dates"] == ["2002-07", "2002-08", "2002-09"] and list(by_start["intervals"]) == ["80"]
    np.testing.assert_allclose(by_start["forecast"], want["forecast"], rtol=1e-12)
    np.testing.assert_allclose(by_start["intervals"]["80"]["upper"], want["intervals"][80.0][1], rtol=1e-12)
    # another history gives another forecast; no levels: the point forecast alone
    point = client.post("/forecast", json={"history": {"start": "2001-01", "values": [v + 5 for v in values]},
                                           "horizon": 3, "levels": []}).json()
    assert "intervals" not in point or point["intervals"] == {}
    assert not np.allclose(point["forecast"], by_start["forecast"])


def test_forecast_gives_the_quantiles_asked_for(client, run):
    body = client.post("/forecast", json={"horizon": 3, "quantiles": [0.9, 0.1]}).json()
    want = Forecaster.from_pretrained(run).predict_quantiles(3, (0.9, 0.1))["values"]
    assert list(body["quantiles"]) == ["0.9", "0.1"]
    np.testing.assert_allclose(body["quantiles"]["0.9"], want[0], rtol=1e-12)
    np.testing.assert_allclose(body["quantiles"]["0.1"], want[1], rtol=1e-12)
    assert set(body["intervals"]) == {"80", "95"}  # beside the intervals, as asked or by default
    assert "quantiles" not in client.post("/forecast", json={}).json() or \
        client.post("/forecast", json={}).json()["quantiles"] == {}


@pytest.mark.parametrize("body, status, says", [
    ({"quantiles": [0.3]}, 422, "trained for the quantiles [0.025, 0.1, 0.5, 0.9, 0.975]; [0.3] are not"),
    ({"quantiles": [1.0]}, 422, "quantiles[0]"),
    ({"quantiles": [0.5] * 21}, 422, "at most 20 items"),
    ({"horizon": HORIZON + 1}, 422, "horizon: Input should be less than or equal to 4"),
    ({"horizon": 0}, 422, "horizon"),
    ({"history": {"start": "2001-01", "values": [1.0] * (WINDOW - 1)}}, 422, "needs at least 8 item(s), got 7"),
    ({"history": {"start": "2001-01", "values": [1.0] * 51}}, 422, "allows at most 50 items"),
    ({"history": {"values": [1.0] * 10}}, 422, "give either start"),
    ({"history": {"start": "2001-01", "dates": MONTHS[:10], "values": [1.0] * 10}}, 422, "give either start"),
    ({"history": {"dates": MONTHS[:9] + ["2000-09"], "values": [1.0] * 10}}, 422, "duplicated date 2000-09"),
    ({"history": {"dates": MONTHS[1:10][::-1], "values": [1.0] * 9}}, 422, "in order, oldest first"),
    ({"history": {"dates": MONTHS[:9] + ["2000-12-15"], "values": [1.0] * 10}}, 422, "irregular spacing"),
    ({"history": {"dates": MONTHS[:5] + MONTHS[6:11], "values": [1.0] * 10}}, 422, "missing dates"),
    ({"history": {"dates": MONTHS[:9], "values": [1.0] * 10}}, 422, "9 dates for 10 values"),
    ({"history": {"start": "soon", "values": [1.0] * 10}}, 422, "not an ISO 8601 date"),
    ({"history": {"start": "2001-01", "values": [[1.0, 2.0]] * 10}}, 422, "history.values[0]"),
    ({"history": {"start": "2001-01", "values": [[1.0]] * 9 + [1.0]}}, 422, "history.values[0]"),
    ({"history": {"start": "2001-01", "values": [[1.0]] * 9 + [[]]}}, 422, "history.values[0]"),
    ({"levels": [50]}, 422, "trained for the levels [80.0, 95.0]"),
    ({"levels": [100]}, 422, "levels[0]"),
    ({"extra": 1}, 422, "extra"),
])
def test_bad_requests_get_a_clear_4xx(client, body, status, says):
    r = client.post("/forecast", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and says in r.json()["detail"], r.json()


@pytest.mark.parametrize("raw, says", [
    (b'{"history": {"start": "2001-01", "values": [NaN, 1, 2, 3, 4, 5, 6, 7, 8]}}', "finite number"),
    (b'{"history": {"start": "2001-01", "values": [Infinity, 1, 2, 3, 4, 5, 6, 7, 8]}}', "finite number"),
    (b'{"horizon": ', "is not valid JSON"),
    (b'{"horizon": 2' + b' ' * 30000 + b'}', "too large"),
])
def test_nan_broken_json_and_big_bodies_get_4xx(client, raw, says):
    r = client.post("/forecast", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and says in r.json()["detail"], r.text


def test_the_other_tasks_endpoints_point_to_forecast(client):
    r = client.post("/predict", json={"texts": ["hi"]})
    assert r.status_code == 404 and "POST /forecast" in r.json()["detail"]


def test_api_key_and_serving_the_best_checkpoint(run):
    with TestClient(create_app(run / "best", settings=ServeSettings(api_key=KEY))) as c:
        assert c.post("/forecast", json={}).status_code == 401
        assert c.post("/forecast", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/model").status_code == 401 and c.get("/health").status_code == 200
        r = c.post("/forecast", json={"horizon": 2}, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and len(r.json()["forecast"]) == 2
        np.testing.assert_allclose(r.json()["forecast"], expected(run, 2, (80, 95))["forecast"], rtol=1e-12)


def test_openapi_documents_forecast_with_a_working_example(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/health", "/ready", "/model", "/forecast"}
    request = spec["components"]["schemas"]["ForecastRequest"]
    example = request["examples"][0]
    assert len(example["history"]["values"]) == WINDOW and example["levels"] == [80.0, 95.0]
    r = client.post("/forecast", json=example)
    assert r.status_code == 200 and len(r.json()["forecast"]) == HORIZON
    assert spec["components"]["schemas"]["History"]["properties"]["values"]["maxItems"] == 50


schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402


def test_schemathesis_finds_no_server_errors(run):
    """Requests generated from /openapi.json, fitting the schema and not: no 5xx, every answer on the schema.
    (A body can fit the schema and still be refused, 422: dates off the model's grid, levels it was not
    trained for; so the check that schema-valid bodies are accepted is left out.)"""
    app = create_app(run, settings=ServeSettings(max_history=30))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 4
    for operation in operations:
        modes = list(GenerationMode) if operation.method.upper() == "POST" else [GenerationMode.POSITIVE]
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(excluded_checks=[positive_data_acceptance])

            check()
