"""The HTTP service (rnnkit/serve/): real uvicorn processes on 127.0.0.1 and the in-process app.

Live servers are started with `python -m rnnkit.cli serve` on a free loopback port, waited for on /ready,
and always terminated. Everything is bounded: timeouts on every request, a 50-request burst, and a
schemathesis run of at most 50 examples per operation.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from rnnkit.cli import main as cli_main  # noqa: E402
from rnnkit.serve import ServeSettings, create_app  # noqa: E402
from rnnkit.serve.batching import Batcher  # noqa: E402
from rnnkit.tasks import classify, lm  # noqa: E402

import serving  # noqa: E402  (tests/serving.py)

TEXTS = ["great flight, thanks!", "lost my bag again", "@united the crew was wonderful 👍",
         "delayed three hours", "&amp; what now?", "love it"]
KEY = "s3cret-key"


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """A tiny classifier and a tiny character language model, trained in well under a second."""
    return serving.train_tiny_checkpoints(tmp_path_factory.mktemp("serve"))


@contextlib.contextmanager
def live_server(checkpoint, *args, env=None, key=None, timeout=60.0):
    """`rnnkit serve` as a real process on 127.0.0.1 (tests/serving.py); yields its base URL; always stopped."""
    with serving.live_server(checkpoint, *args, env=env, key=key, timeout=timeout) as live:
        yield live.base


@pytest.fixture(scope="module")
def clf_server(checkpoints):
    with live_server(checkpoints["classify"]) as base:
        yield base


@pytest.fixture(scope="module")
def lm_server(checkpoints):
    with live_server(checkpoints["lm"]) as base:
        yield base


SMALL = ServeSettings(max_texts=4, max_chars=50, max_tokens=20, max_body_bytes=2000)


@pytest.fixture(scope="module")
def client(checkpoints):
    with TestClient(create_app(checkpoints["classify"], settings=SMALL)) as c:
        yield c


@pytest.fixture(scope="module")
def lm_client(checkpoints):
    with TestClient(create_app(checkpoints["lm"], settings=SMALL)) as c:
        yield c


# ------------------------------------------------------------------------------------------------ live server

def test_live_predict_equals_python_api_and_cli(clf_server, checkpoints, capsys):
    r = httpx.post(f"{clf_server}/predict", json={"texts": TEXTS}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    served = r.json()["predictions"]
    assert served == classify.load_classifier(checkpoints["classify"]).predict(TEXTS)
    assert cli_main(["predict", "--json", checkpoints["classify"], *TEXTS]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{k: v for k, v in c.items() if k != "text"} for c in cli] == served


def test_live_health_ready_model(clf_server):
    assert httpx.get(f"{clf_server}/health", timeout=5).json() == {"status": "ok"}
    assert httpx.get(f"{clf_server}/ready", timeout=5).json() == {"ready": True, "task": "classify"}
    info = httpx.get(f"{clf_server}/model", timeout=5).json()
    assert info["task"] == "classify" and info["labels"] == ["negative", "positive"]
    assert info["engine"] == "scratch" and info["parameters"] > 0 and info["batching"]["enabled"]
    assert httpx.get(f"{clf_server}/openapi.json", timeout=5).json()["paths"].keys() >= {"/predict", "/health"}
    assert httpx.get(f"{clf_server}/docs", timeout=5).status_code == 200


def test_live_generate_is_reproducible_and_equals_lm_generate(lm_server, checkpoints):
    body = {"prompt": "to be", "length": 30, "temperature": 0.9, "top_k": 5, "top_p": 0.95, "seed": 7}
    first = httpx.post(f"{lm_server}/generate", json=body, timeout=10).json()["text"]
    assert httpx.post(f"{lm_server}/generate", json=body, timeout=10).json()["text"] == first
    model = lm.load_lm(checkpoints["lm"])
    assert first == lm.generate(model, "to be", 30, 0.9, 5, 0.95, 7)
    assert first.startswith("to be")


def test_live_wrong_task_is_404(clf_server, lm_server):
    r = httpx.post(f"{clf_server}/generate", json={"prompt": "x"}, timeout=5)
    assert r.status_code == 404 and "language model" in r.json()["detail"]
    r = httpx.post(f"{lm_server}/predict", json={"texts": ["x"]}, timeout=5)
    assert r.status_code == 404 and "classifier" in r.json()["detail"]


def test_live_bad_requests_leave_the_server_up(clf_server):
    url = f"{clf_server}/predict"
    json_type = {"content-type": "application/json"}
    bad = [
        (dict(content=b"{not json", headers=json_type), 422),
        (dict(content=b'{"texts": ["a"]}'), 422),                               # no Content-Type
        (dict(json={"texts": "one text"}), 422),
        (dict(json={"texts": []}), 422),
        (dict(json={"texts": ["   "]}), 422),
        (dict(json={"texts": [1, 2]}), 422),
        (dict(json=[1, 2]), 422),
        (dict(content=b"[" * 50000 + b"]" * 50000, headers=json_type), 400),    # nesting too deep to parse
        (dict(content=b'{"texts": ["' + b"x" * 2_000_000 + b'"]}', headers=json_type), 413),
        (dict(content=iter([b'{"texts": ["', b"x" * 1_500_000, b'"]}']), headers=json_type), 413),  # chunked
    ]
    for kwargs, status in bad:
        r = httpx.post(url, timeout=10, **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert httpx.get(f"{clf_server}/health", timeout=5).status_code == 200
    assert httpx.post(url, json={"texts": ["still here"]}, timeout=5).status_code == 200


def test_live_concurrent_burst_is_batched_and_routed(clf_server, checkpoints):
    """50 concurrent requests of different sizes: each gets its own texts' predictions back."""
    model = classify.load_classifier(checkpoints["classify"])
    rng = np.random.default_rng(0)
    requests = [[TEXTS[j] for j in rng.integers(0, len(TEXTS), rng.integers(1, 9))] for _ in range(50)]

    async def burst():
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=clf_server, timeout=30, limits=limits) as c:
            return await asyncio.gather(*(c.post("/predict", json={"texts": t}) for t in requests))

    before = httpx.get(f"{clf_server}/model", timeout=5).json()["batching"]
    responses = asyncio.run(burst())
    after = httpx.get(f"{clf_server}/model", timeout=5).json()["batching"]
    for texts, r in zip(requests, responses):
        assert r.status_code == 200
        got, want = r.json()["predictions"], model.predict(texts)
        assert [p["label"] for p in got] == [p["label"] for p in want]
        for g, w in zip(got, want):   # another batch's padding may change the last float32 bits
            np.testing.assert_allclose(list(g["probabilities"].values()), list(w["probabilities"].values()),
                                       rtol=1e-5, atol=1e-6)
    assert after["texts"] - before["texts"] == sum(map(len, requests))
    assert after["batches"] - before["batches"] < len(requests)       # some requests shared a model call
    assert httpx.get(f"{clf_server}/health", timeout=5).status_code == 200


def test_live_auth(checkpoints):
    with live_server(checkpoints["classify"], env={"RNNKIT_API_KEY": KEY}, key=KEY) as base:
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        for path in ("/ready", "/model", "/openapi.json", "/docs"):
            r = httpx.get(f"{base}{path}", timeout=5)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert "API key" in r.json()["detail"]
        body = {"texts": ["hello"]}
        assert httpx.post(f"{base}/predict", json=body, timeout=5).status_code == 401
        wrong = {"Authorization": f"Bearer {KEY}x"}
        assert httpx.post(f"{base}/predict", json=body, headers=wrong, timeout=5).status_code == 401
        right = {"Authorization": f"Bearer {KEY}"}
        assert httpx.post(f"{base}/predict", json=body, headers=right, timeout=5).status_code == 200
        assert httpx.get(f"{base}/ready", headers=right, timeout=5).status_code == 200


def test_live_several_workers_and_no_batching(checkpoints):
    with live_server(checkpoints["classify"], "--workers", "2", "--no-batching") as base:
        r = httpx.post(f"{base}/predict", json={"texts": TEXTS}, timeout=10)
        assert r.json()["predictions"] == classify.load_classifier(checkpoints["classify"]).predict(TEXTS)
        assert httpx.get(f"{base}/model", timeout=5).json()["batching"]["enabled"] is False


def test_serve_refuses_a_bad_checkpoint(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rnnkit.cli", "serve", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------ in-process

@pytest.mark.parametrize("body, field, words", [
    ({"texts": []}, "texts", "at least 1"),
    ({"texts": ["a"] * 5}, "texts", "at most 4 items"),
    ({"texts": ["x" * 51]}, "texts[0]", "50 characters"),
    ({"texts": ["ok", " \t\n"]}, "texts[1]", "white space"),
    ({"texts": ["&nbsp;"]}, "texts[0]", "no tokens"),
    ({"texts": ["ok", 3]}, "texts[1]", "valid string"),
    ({"texts": "ok"}, "texts", "valid list"),
    ({"texts": None}, "texts", "valid list"),
    ({}, "texts", "required"),
    ({"texts": ["ok"], "extra": 1}, "extra", "not permitted"),
])
def test_predict_validation_errors(client, body, field, words):
    r = client.post("/predict", json=body)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), r.json()
    assert field in r.json()["detail"]


@pytest.mark.parametrize("content, headers, status, words", [
    (b"{oops", {"content-type": "application/json"}, 422, "not valid JSON"),
    (b"", {"content-type": "application/json"}, 422, "missing"),
    (b'{"texts": ["ok"]}', {}, 422, "Content-Type: application/json"),
    (b'{"texts": ["ok"]}', {"content-type": "text/plain"}, 422, "Content-Type: application/json"),
    (b'"just a string"', {"content-type": "application/json"}, 422, "JSON object"),
    (b'{"texts": ["' + b"x" * 3000 + b'"]}', {"content-type": "application/json"}, 413, "too large"),
    (b'{"texts": ["ok"]}', {"content-type": "application/json", "content-length": "abc"}, 400, "Content-Length"),
])
def test_predict_body_errors(client, content, headers, status, words):
    r = client.post("/predict", content=content, headers=headers)
    assert r.status_code == status and words in r.json()["detail"], r.text


def test_predict_in_process(client, checkpoints):
    r = client.post("/predict", json={"texts": TEXTS[:4]})
    assert r.json()["predictions"] == classify.load_classifier(checkpoints["classify"]).predict(TEXTS[:4])


SLOW = ServeSettings(**{**SMALL.__dict__, "fast_path": False})
SAME_ANSWERS = [  # (body, headers): valid requests, and every kind of bad one
    (json.dumps({"texts": TEXTS[:4]}).encode(), {"content-type": "application/json"}),
    (b'{"texts": ["great"]}\n', {"content-type": "Application/JSON; charset=utf-8"}),
    (b'{"texts": ["a"], "texts": ["great flight"]}', {"content-type": "application/json"}),
    (b'\xef\xbb\xbf{"texts": ["ok"]}', {"content-type": "application/json"}),      # a BOM: json takes it
    (b'{"texts": ["\\ud800"]}', {"content-type": "application/json"}),             # a lone surrogate
    (b'{"texts": ["\xff"]}', {"content-type": "application/json"}),                # not UTF-8
    (b'{"texts": ["&nbsp;"]}', {"content-type": "application/json"}),              # no tokens
    (b'{"texts": ["ok", " "]}', {"content-type": "application/json"}),
    (b'{"texts": ["ok"], "x": 1}', {"content-type": "application/json"}),
    (b'{"texts": ["a", "b", "c", "d", "e"]}', {"content-type": "application/json"}),
    (b'{"texts": ["ok"]}', {}),
    (b'{"texts": ["ok"]}', {"content-type": "text/plain"}),
    (b'{"texts": ["ok"]}', {"content-type": "application/vnd.api+json"}),
    (b"{oops", {"content-type": "application/json"}),
    (b"", {"content-type": "application/json"}),
]


@pytest.fixture(scope="module")
def slow_client(checkpoints):
    with TestClient(create_app(checkpoints["classify"], settings=SLOW)) as c:
        yield c


@pytest.mark.parametrize("content, headers", SAME_ANSWERS)
def test_fast_path_answers_exactly_as_fastapi_does(client, slow_client, content, headers):
    fast, slow = (c.post("/predict", content=content, headers=headers) for c in (client, slow_client))
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"


def test_fast_path_takes_valid_requests_only(client):
    from rnnkit.serve.fast_predict import FastPredict

    stack = client.app.front  # auth, body limit, then the fast path, in front of FastAPI's own stack
    while not isinstance(stack, FastPredict):
        stack = stack.app
    assert stack.served is client.app.state.served
    before = stack.answered
    assert client.post("/predict", json={"texts": ["great flight"]}).status_code == 200
    assert client.post("/predict", json={"texts": ["&nbsp;"]}).status_code == 422
    assert client.get("/predict").status_code == 405
    assert stack.answered == before + 1


def test_fast_path_model_failure_is_a_json_500(checkpoints, monkeypatch):
    with TestClient(create_app(checkpoints["classify"], settings=SMALL), raise_server_exceptions=False) as c:
        async def broken(ids):
            raise RuntimeError("the model broke")

        monkeypatch.setattr(c.app.state.served.batcher, "submit", broken)
        r = c.post("/predict", json={"texts": ["great flight"]})
        assert r.status_code == 500 and r.json() == {"detail": "internal server error",
                                                     "request_id": r.headers["x-request-id"]}
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize("body, field, words", [
    ({"length": 21}, "length", "less than or equal to 20"),
    ({"length": 0}, "length", "greater than or equal to 1"),
    ({"length": "5"}, "length", "whole number"),
    ({"length": 2.5}, "length", "whole number"),
    ({"length": True}, "length", "whole number"),
    ({"temperature": -1}, "temperature", "greater than or equal to 0"),
    ({"top_k": 0}, "top_k", "greater than or equal to 1"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"prompt": "x" * 51}, "prompt", "50 characters"),
    ({"prompt": "   "}, "prompt", "white space"),
    ({"prompt": 5}, "prompt", "valid string"),
    ({"promt": "typo"}, "promt", "not permitted"),
])
def test_generate_validation_errors(lm_client, body, field, words):
    r = lm_client.post("/generate", json=body)
    assert r.status_code == 422
    assert any(e["field"] == field and words in e["message"] for e in r.json()["errors"]), r.json()


def test_generate_in_process(lm_client, checkpoints):
    r = lm_client.post("/generate", json={"prompt": "to", "length": 20, "temperature": 0, "seed": 1})
    assert r.json() == {"text": lm.generate(lm.load_lm(checkpoints["lm"]), "to", 20, 0, seed=1)}
    assert lm_client.post("/generate", json={}).status_code == 200     # every field has a default
    tiny = lm_client.post("/generate", json={"prompt": "to", "length": 20.0, "temperature": 1e-300})
    assert tiny.json() == r.json()                                   # the limit T -> 0 is greedy


def test_wrong_task_and_unknown_paths(client, lm_client):
    for c, path in ((client, "/generate"), (lm_client, "/predict")):
        r = c.post(path, json={})
        assert r.status_code == 404 and "GET /model" in r.json()["detail"]
    assert client.get("/nowhere").status_code == 404 and client.get("/nowhere").json() == {"detail": "Not Found"}
    assert client.get("/predict").status_code == 405
    assert "/generate" not in client.get("/openapi.json").json()["paths"]


def test_openapi_states_the_limits(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    texts = schemas["PredictRequest"]["properties"]["texts"]
    assert texts["minItems"] == 1 and texts["maxItems"] == 4 and texts["items"]["maxLength"] == 50


def test_auth_in_process(checkpoints):
    app = create_app(checkpoints["classify"], settings=ServeSettings(api_key=KEY))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/model").status_code == 401
        for header in (f"Bearer {KEY}", f"bearer {KEY}", f"Bearer  {KEY} "):
            assert c.get("/model", headers={"Authorization": header}).status_code == 200, header
        for header in (KEY, f"Basic {KEY}", f"Bearer {KEY[:-1]}", "Bearer", ""):
            assert c.get("/model", headers={"Authorization": header}).status_code == 401, header


def test_settings_round_trip_through_the_environment():
    s = ServeSettings(engine="scratch", api_key="k", max_texts=7, batching=False, max_wait_ms=0.5,
                      size_priority_ms=0.0)
    checkpoint, back = ServeSettings.from_env(s.to_env("some/ckpt"))
    assert checkpoint == "some/ckpt" and back == s
    with pytest.raises(ValueError, match="max_texts"):
        ServeSettings(max_texts=0)
    with pytest.raises(ValueError, match="size_priority_ms"):
        ServeSettings(size_priority_ms=-1)
    with pytest.raises(ValueError, match="RNNKIT_SERVE_MAX_TEXTS"):
        ServeSettings.from_env({"RNNKIT_SERVE_CHECKPOINT": "x", "RNNKIT_SERVE_MAX_TEXTS": "many"})


# ------------------------------------------------------------------------------------------------ the batcher

def run_batcher(batcher: Batcher, requests: list, stagger: float = 0.0) -> list:
    async def go():
        async def one(i, items):
            await asyncio.sleep(stagger * i)
            return await batcher.submit(items)
        try:
            return await asyncio.wait_for(asyncio.gather(*(one(i, r) for i, r in enumerate(requests))), 10)
        finally:
            batcher.close()
    return asyncio.run(go())


def test_batcher_merges_concurrent_requests_and_routes_results():
    calls = []

    def run(items):
        calls.append(len(items))
        time.sleep(0.01)
        return [x * 10 for x in items]

    requests = [list(range(i, i + 1 + i % 3)) for i in range(20)]
    results = run_batcher(Batcher(run, max_items=16, max_wait=0.005), requests)
    assert results == [[x * 10 for x in r] for r in requests]
    assert len(calls) < len(requests) and max(calls) <= 16 and sum(calls) == sum(map(len, requests))


@pytest.mark.parametrize("size_delay, expected", [
    (0.0, [["blocker"], ["big"] * 5, ["small"] * 3]),      # arrival order: the big request came first
    (10.0, [["blocker"], ["small"] * 3, ["big"] * 5]),     # it counts as 40 s late: the small ones go first
    (0.001, [["blocker"], ["big"] * 5, ["small"] * 3]),    # 4 ms late: the small ones came after that
])
def test_batcher_queues_small_requests_ahead_by_size_delay(size_delay, expected):
    calls, release = [], threading.Event()

    def run(items):
        calls.append(list(items))
        release.wait(5)  # the first call holds the model while the others queue up
        return items

    batcher = Batcher(run, max_items=4, max_wait=0.0, size_delay=size_delay)

    async def go():
        first = asyncio.ensure_future(batcher.submit(["blocker"]))
        while not calls:
            await asyncio.sleep(0.001)
        big = asyncio.ensure_future(batcher.submit(["big"] * 5))
        await asyncio.sleep(0.05)
        smalls = [asyncio.ensure_future(batcher.submit(["small"])) for _ in range(3)]
        await asyncio.sleep(0.01)
        release.set()
        try:
            return await asyncio.wait_for(asyncio.gather(first, big, *smalls), 10)
        finally:
            batcher.close()

    assert asyncio.run(go()) == [["blocker"], ["big"] * 5, ["small"], ["small"], ["small"]]
    assert calls == expected


def test_batcher_rejects_bad_bounds():
    for bad in (dict(max_items=0), dict(max_wait=-1), dict(max_padded=0), dict(size_delay=-0.1)):
        with pytest.raises(ValueError, match="need max_items"):
            Batcher(lambda items: items, **bad)


def test_batcher_off_runs_one_request_per_call():
    calls = []
    requests = [[1, 2], [3], [4, 5, 6]]
    batcher = Batcher(lambda items: calls.append(list(items)) or items, max_items=16, enabled=False)
    assert run_batcher(batcher, requests) == requests and calls == requests


def test_batcher_runs_an_oversize_request_alone_and_waits_at_most_max_wait():
    calls = []
    batcher = Batcher(lambda items: calls.append(len(items)) or items, max_items=4, max_wait=0.001)
    assert run_batcher(batcher, [[1] * 9, [2]]) == [[1] * 9, [2]]
    assert calls == [9, 1]
    calls.clear()

    async def lone(max_wait):   # a lone request waits max_wait for others to join it, and no longer
        batcher = Batcher(lambda items: calls.append(len(items)) or items, max_items=64, max_wait=max_wait)
        try:
            start = time.perf_counter()
            await batcher.submit([1])
            return time.perf_counter() - start
        finally:
            batcher.close()

    waited = asyncio.run(lone(0.25))
    assert 0.24 <= waited < 0.5 and calls == [1]


def test_batcher_bounds_the_padded_size():
    """One long sequence must not drag a full batch: items × longest stays within max_padded."""
    calls = []
    batcher = Batcher(lambda items: calls.append([len(i) for i in items]) or items, max_items=8, max_wait=0.05,
                      max_padded=40, length=len)
    requests = [["ab"], ["abc", "a"], ["x" * 20], ["b"], ["c" * 50]]
    assert run_batcher(batcher, requests) == requests
    assert calls == [[2, 3, 1], [20, 1], [50]]   # 4 x 20 > 40 ends the first; the 50 runs alone


def test_batcher_errors_reach_every_request_of_the_batch_and_it_goes_on():
    def run(items):
        if 0 in items:
            raise ValueError("boom")
        return items

    batcher = Batcher(run, max_items=8, max_wait=0.05)

    async def go():
        try:
            first = await asyncio.gather(batcher.submit([0]), batcher.submit([1]), return_exceptions=True)
            return first, await batcher.submit([2])
        finally:
            batcher.close()
    first, second = asyncio.run(go())
    assert all(isinstance(e, ValueError) for e in first) and second == [2]


# ------------------------------------------------------------------------------------------------ schemathesis

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_schemathesis_finds_no_server_errors(task, checkpoints):
    """Requests generated from /openapi.json, fitting the schema and not: no 5xx, and every response
    (status, content type, body) matches the schema. At most 50 examples per operation and mode."""
    with live_server(checkpoints[task], "--max-tokens", "50") as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 4
        for operation in operations:
            modes = list(GenerationMode) if operation.method.upper() == "POST" else [GenerationMode.POSITIVE]
            for mode in modes:   # (nothing can be wrong in a request without parameters or body)
                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=50, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    case.call_and_validate(timeout=10)

                check()
