"""POST /translate of `rnnkit serve` on a translation checkpoint (rnnkit/serve/translate.py), in process.

A tiny character-level reversal model is trained for two steps: what it translates is nonsense, but the
server must give exactly what `load_seq2seq(...).translate` gives for the same search, and turn away bad
input with a JSON 4xx naming the text and the reason. A bounded schemathesis run (in process, at most 30
examples per operation and mode) finds no 5xx and no response off the schema.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from rnnkit.serve import ServeSettings, create_app  # noqa: E402
from rnnkit.serve.translate import Job, run_jobs  # noqa: E402
from rnnkit.tasks import seq2seq  # noqa: E402
from rnnkit.tasks.settings import Decoding  # noqa: E402

SMALL = ServeSettings(max_texts=4, max_chars=50, max_tokens=20, max_body_bytes=2000)
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("s2s-serve") / "run"
    return str(seq2seq.train_seq2seq(dataset="reverse", examples=200, sequence_length=5, hidden=8, embedding=8,
                                     epochs=1, max_steps=2, eval_translations=0, progress=False, out=str(out),
                                     log=lambda *a: None).best)


@pytest.fixture(scope="module")
def model(checkpoint):
    return seq2seq.load_seq2seq(checkpoint)


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(checkpoint, settings=SMALL)) as c:
        yield c


def expected(model, texts, **search):
    """What the Python API answers, in the server's shape."""
    return [{"source": r["source"], "source_tokens": r["source_tokens"],
             "translations": [{k: c[k] for k in ("text", "tokens", "score", "log_prob", "finished")}
                              for c in r["translations"]]}
            for r in model.translate(texts, **search)]


def same(got, want) -> bool:
    """Equal, but scores to float32 rounding (texts batched with others are padded, which moves the last bits)."""
    def key(rows, scores):
        return [(r["source"], r["source_tokens"], [(c["text"], c["tokens"], c["finished"]) for c in r["translations"]])
                for r in rows] if not scores else [c[k] for r in rows for c in r["translations"]
                                                    for k in ("score", "log_prob")]
    return key(got, False) == key(want, False) and np.allclose(key(got, True), key(want, True), rtol=1e-5, atol=0)


# ------------------------------------------------------------------------------------------------ answers

def test_translate_gives_what_the_python_api_gives(client, model):
    r = client.post("/translate", json={"texts": ["abc", "hello"]})
    assert r.status_code == 200, r.text
    assert r.json()["translations"] == expected(model, ["abc", "hello"])
    body = {"texts": ["abc", "hello", "dcba"], "beam": 3, "n_best": 2, "length_penalty": 0.6}
    got = client.post("/translate", json=body).json()["translations"]
    assert got == expected(model, body["texts"], beam=3, n_best=2, length_penalty=0.6)
    assert [len(t["translations"]) for t in got] == [2, 2, 2]
    assert all(t["translations"][0]["score"] >= t["translations"][1]["score"] for t in got)
    assert got[1]["source_tokens"] == list("hello")


def test_max_length_caps_every_translation(client, model):
    got = client.post("/translate", json={"texts": ["abcde"], "max_length": 2, "beam": 2}).json()["translations"]
    assert got == expected(model, ["abcde"], beam=2, max_ratio=0.0, max_offset=2.0)
    assert all(len(c["tokens"]) <= 2 for c in got[0]["translations"])


def test_model_describes_the_translation_model(client, model):
    info = client.get("/model").json()
    assert info["task"] == "seq2seq" and info["labels"] is None
    t = info["translation"]
    assert t["source_vocab_size"] == len(model.source_vocab) and info["vocab_size"] == len(model.target_vocab)
    assert t["level"] == "char" and t["dataset"] == "reverse" and t["attention"] == "bahdanau"
    assert t["max_source_tokens"] == model.max_source_length == 32       # max(32, 4 x 5)
    assert t["decoding_defaults"]["beam"] == 1 and info["limits"]["max_texts"] == 4
    assert client.get("/ready").json() == {"ready": True, "task": "seq2seq"}


def test_openapi_documents_translate_with_examples_and_limits(client):
    spec = client.get("/openapi.json").json()
    assert "/translate" in spec["paths"] and "/predict" not in spec["paths"] and "/generate" not in spec["paths"]
    request = spec["components"]["schemas"]["TranslateRequest"]
    assert request["properties"]["texts"]["maxItems"] == 4
    assert request["properties"]["beam"]["maximum"] == 16 and request["properties"]["max_length"]
    assert request["examples"][0] == {"texts": ["123+45"]}
    assert {"422", "413", "200"} <= set(spec["paths"]["/translate"]["post"]["responses"])


def test_the_other_tasks_endpoints_answer_404(client):
    for path in ("/predict", "/generate"):
        r = client.post(path, json={"texts": ["abc"]})
        assert r.status_code == 404 and "translation model" in r.json()["detail"]


def test_mixed_searches_in_one_batch_are_decoded_apart(model):
    """The batcher may hand the model thread jobs of several requests with different searches."""
    run = run_jobs(model, batch_size=2)
    greedy, beam = Decoding(), Decoding(beam=3, n_best=2)
    texts = ["abc", "hello", "ab", "edcba"]
    jobs = [Job(model.source_ids(t), d) for t, d in zip(texts, [greedy, beam, beam, greedy])]
    assert len(jobs[1]) == 5 * 3
    found = run(jobs)
    for t, d, hyps in zip(texts, [greedy, beam, beam, greedy], found):
        alone = model.translate([t], d)[0]["translations"]
        assert [model.target_vocab.decode(h.tokens) for h in hyps] == [c["tokens"] for c in alone]
        # float32: another batch (other padding) rounds differently in the last bits
        assert np.allclose([h.score for h in hyps], [c["score"] for c in alone], rtol=1e-5, atol=0)


def test_concurrent_requests_share_model_calls(checkpoint, model):
    import httpx

    app = create_app(checkpoint, settings=ServeSettings(max_wait_ms=200))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            bodies = [{"texts": ["abc"]}, {"texts": ["hello", "ab"]}, {"texts": ["abc"], "beam": 2}]
            answers = await asyncio.gather(*(c.post("/translate", json=b) for b in bodies))
            return [a.json()["translations"] for a in answers], (await c.get("/model")).json()["batching"]
    answers, batching = asyncio.run(go())
    app.state.served.batcher.close()
    assert same(answers[0], expected(model, ["abc"])) and same(answers[1], expected(model, ["hello", "ab"]))
    assert same(answers[2], expected(model, ["abc"], beam=2))
    assert batching["texts"] == 4 and batching["batches"] == 1      # three requests, one model call


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("body, field, kind, words", [
    ({"texts": [""]}, "texts[0]", "string_too_short", "at least 1 character"),
    ({"texts": ["abc", " \t "]}, "texts[1]", "blank_text", "empty or only white space"),
    ({"texts": ["a" * 40]}, "texts[0]", "too_many_tokens", "has 40 tokens; this model takes at most 32"),
    ({"texts": ["abc", "ZZZ 123"]}, "texts[1]", "all_tokens_unknown", "every token of 'ZZZ 123' is unknown"),
    ({"texts": ["a" * 51]}, "texts[0]", "string_too_long", "longer than the limit of 50 characters"),
    ({"texts": ["a"] * 5}, "texts", "too_long", "at most 4 items per request, got 5"),
    ({"texts": []}, "texts", "too_short", "at least 1 item"),
    ({"texts": "abc"}, "texts", "list_type", "valid list"),
    ({"texts": [3]}, "texts[0]", "string_type", "valid string"),
    ({"texts": ["abc"], "beam": "5"}, "beam", "int_type", "whole number"),
    ({"texts": ["abc"], "beam": 2.5}, "beam", "int_type", "whole number"),
    ({"texts": ["abc"], "beam": 17}, "beam", "less_than_equal", "16"),
    ({"texts": ["abc"], "beam": 2, "n_best": 3}, "body", "n_best_over_beam", "n_best (3) must be at most beam (2)"),
    ({"texts": ["abc"], "max_length": 21}, "max_length", "less_than_equal", "20"),
    ({"texts": ["abc"], "length_penalty": -1}, "length_penalty", "greater_than_equal", "0"),
    ({"texts": ["abc"], "temperature": 1}, "temperature", "extra_forbidden", "not permitted"),
])
def test_bad_requests_get_a_422_naming_the_field(client, body, field, kind, words):
    r = client.post("/translate", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert (error["field"], error["type"]) == (field, kind)
    assert words in error["message"] and words in r.json()["detail"]


def test_unparseable_and_oversized_bodies(client):
    r = client.post("/translate", content=b'{"texts": ["abc"', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/translate", content=b'{"texts": ["\xff"]}', headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/json"
    r = client.post("/translate", json={"texts": ["ab " * 700]})
    assert r.status_code == 413 and "limit is 2000 bytes" in r.json()["detail"]


def test_translate_needs_the_api_key(checkpoint, model):
    settings = ServeSettings(api_key=KEY, max_texts=4, max_chars=50, max_tokens=20, max_body_bytes=2000)
    with TestClient(create_app(checkpoint, settings=settings)) as c:
        r = c.post("/translate", json={"texts": ["abc"]})
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        wrong = c.post("/translate", json={"texts": ["abc"]}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert c.get("/model").status_code == 401 and c.get("/health").status_code == 200
        ok = c.post("/translate", json={"texts": ["abc"]}, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["translations"] == expected(model, ["abc"])


# ------------------------------------------------------------------------------------------------ schemathesis

def test_schemathesis_finds_no_server_errors(checkpoint):
    """Requests generated from /openapi.json, fitting the schema and not: no 5xx, every response (status,
    content type, body) matches the schema, and requests off the schema are refused. At most 30 examples per
    operation and mode, in process.

    One check is left out, positive_data_acceptance: a request can fit the schema and still be refused with
    a documented 422, since what the model can read is not a JSON Schema matter (a text whose every token
    is unknown, e.g. {"texts": ["0"]} to this letters-only model; more source tokens than the model takes;
    n_best over beam). Those 422s are tested above."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import positive_data_acceptance

    app = create_app(checkpoint, settings=SMALL)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.path for op in operations) == ["/health", "/model", "/ready", "/translate"]
    for operation in operations:
        modes = list(GenerationMode) if operation.method.upper() == "POST" else [GenerationMode.POSITIVE]
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                case.call_and_validate(excluded_checks=[positive_data_acceptance])

            check()
    app.state.served.batcher.close()
