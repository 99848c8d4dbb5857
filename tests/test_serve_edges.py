"""The server at its edges, in process: the last resort (an unexpected exception anywhere -- an endpoint, the
/predict fast path, the guards in front of FastAPI -- is a JSON 500 with a request id, logged with that id),
the body limit to the byte, and the API key on every endpoint of both tasks."""
from __future__ import annotations

import logging

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from rnnkit.checkpoint import save_checkpoint  # noqa: E402
from rnnkit.data.posts import PostTokenizer  # noqa: E402
from rnnkit.data.vocab import PAD, UNK, Vocabulary  # noqa: E402
from rnnkit.engines import build_engine  # noqa: E402
from rnnkit.serve import ServeSettings, create_app  # noqa: E402
from rnnkit.serve.fast_predict import FastPredict  # noqa: E402


KEY = "edge-key"


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory):
    """A tiny untrained character language model."""
    vocab = Vocabulary([UNK, *"abc "], specials=(UNK,))
    model = dict(vocab_size=len(vocab), embedding_dim=4, hidden_size=4, num_layers=1, cell="gru", dropout=0.0,
                 tie_weights=False)
    config = {"task": "lm", "model": model, "vocab": vocab.to_dict(), "dtype": "float32",
              "data": {"tokenizer": {"level": "char"}, "bptt": 8}}
    path = tmp_path_factory.mktemp("errors") / "lm"
    save_checkpoint(path, build_engine("scratch", "LanguageModel", model).weights(), config)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained classifier (its predictions do not matter here)."""
    vocab = Vocabulary([PAD, UNK, "good", "bad", "flight"], specials=(PAD, UNK))
    model = dict(vocab_size=len(vocab), num_classes=2, embedding_dim=4, hidden_size=4, num_layers=1, cell="gru",
                 bidirectional=False, dropout=0.0, pooling="last", attention_size=2, padding_idx=0,
                 embedding_init_std=1.0)
    config = {"task": "classify", "model": model, "labels": ["negative", "positive"], "vocab": vocab.to_dict(),
              "data": {"tokenizer": PostTokenizer().config(), "max_length": 16}, "dtype": "float32"}
    path = tmp_path_factory.mktemp("errors") / "clf"
    save_checkpoint(path, build_engine("scratch", "TextClassifier", model).weights(), config)
    return str(path)


def broken(*args, **kwargs):
    raise RuntimeError("a planted bug")


async def broken_async(*args, **kwargs):
    raise RuntimeError("a planted bug")


def assert_json_500(r, caplog):
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    rid = r.headers["x-request-id"]
    assert r.json() == {"detail": "internal server error", "request_id": rid} and len(rid) == 32
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert "a planted bug" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_failing_model_call_is_a_json_500_with_a_logged_request_id(checkpoint, monkeypatch, caplog, fast_path):
    with TestClient(create_app(checkpoint, settings=ServeSettings(fast_path=fast_path))) as c:
        monkeypatch.setattr(c.app.state.served.batcher, "submit", broken_async)
        r = c.post("/predict", json={"texts": ["good flight"]})
        assert_json_500(r, caplog)
        assert c.get("/health").status_code == 200


def test_a_failing_endpoint_is_a_json_500(checkpoint, monkeypatch, caplog):
    with TestClient(create_app(checkpoint)) as c:
        monkeypatch.setattr(c.app.state.served, "info", broken)
        assert_json_500(c.get("/model"), caplog)
        ids = {c.get("/model").headers["x-request-id"] for _ in range(3)}
        assert len(ids) == 3      # one id per request


def test_a_failure_in_front_of_fastapi_is_a_json_500_not_plain_text(checkpoint, monkeypatch, caplog):
    monkeypatch.setattr(FastPredict, "_accepted", broken)
    with TestClient(create_app(checkpoint)) as c:
        assert_json_500(c.post("/predict", json={"texts": ["good flight"]}), caplog)


# ------------------------------------------------------------------------------------------------ body limit

@pytest.mark.parametrize("chunked", [False, True])
def test_the_body_limit_takes_exactly_the_limit_and_refuses_one_byte_more(checkpoint, chunked):
    body = b'{"texts": ["good flight"]}'
    limit = len(body) + 10
    with TestClient(create_app(checkpoint, settings=ServeSettings(max_body_bytes=limit))) as c:
        for size, status in ((limit, 200), (limit + 1, 413)):
            content = body + b" " * (size - len(body))       # trailing white space: still the same JSON
            assert len(content) == size
            sent = iter([content[:7], content[7:]]) if chunked else content
            r = c.post("/predict", content=sent, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (size, r.text)
            if status == 413:
                assert f"the limit is {limit} bytes" in r.json()["detail"]


# ------------------------------------------------------------------------------------------------ the API key

ENDPOINTS = {   # task -> [(method, path, JSON body, the status with the right key)]
    "classify": [("GET", "/ready", None, 200), ("GET", "/model", None, 200), ("GET", "/docs", None, 200),
                 ("GET", "/openapi.json", None, 200), ("POST", "/predict", {"texts": ["good flight"]}, 200),
                 ("POST", "/generate", {"prompt": "a"}, 404), ("GET", "/nowhere", None, 404),
                 ("GET", "/predict", None, 405)],
    "lm": [("GET", "/ready", None, 200), ("GET", "/model", None, 200), ("GET", "/redoc", None, 200),
           ("POST", "/generate", {"prompt": "ab", "length": 3, "seed": 1}, 200),
           ("POST", "/predict", {"texts": ["a"]}, 404)],
}


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_every_endpoint_but_health_needs_the_key(checkpoint, lm_checkpoint, task):
    path = checkpoint if task == "classify" else lm_checkpoint
    with TestClient(create_app(path, settings=ServeSettings(api_key=KEY))) as c:
        assert c.get("/health").status_code == 200
        for method, where, body, status in ENDPOINTS[task]:
            for headers in ({}, {"Authorization": f"Bearer {KEY}x"}, {"Authorization": KEY}):
                r = c.request(method, where, json=body, headers=headers)
                assert r.status_code == 401, (method, where, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["detail"]
            r = c.request(method, where, json=body, headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == status, (method, where, r.text)
