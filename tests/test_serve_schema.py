"""/openapi.json and the request validation agree: a body the schema accepts is answered 200, one it refuses
gets 422 (issue 20, item 5: `{"prompt": "\\u001e"}` fit the schema and was refused).

The request schemas are checked with jsonschema_rs (schemathesis's validator: JSON Schema's own regex
semantics, where `$` is the end of the string), against the in-process app.
"""
from __future__ import annotations

import sys

import pytest

pytest.importorskip("fastapi")
jsonschema_rs = pytest.importorskip("jsonschema_rs")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from serving import train_tiny_checkpoints  # noqa: E402

from rnnkit.serve import ServeSettings, create_app  # noqa: E402

SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]       # str.isspace: what strip() drops
SMALL = ServeSettings(max_texts=4, max_chars=50, max_tokens=20, max_body_bytes=2000)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    checkpoints = train_tiny_checkpoints(tmp_path_factory.mktemp("schema"))
    with TestClient(create_app(checkpoints["classify"], settings=SMALL)) as clf, \
            TestClient(create_app(checkpoints["lm"], settings=SMALL)) as lm:
        yield {"classify": clf, "lm": lm}


def request_schema(client, name):
    return jsonschema_rs.validator_for(client.get("/openapi.json").json()["components"]["schemas"][name])


def agree(client, schema, path, body):
    """The schema's verdict on `body` and the server's (200 or 422) are the same."""
    r = client.post(path, json=body)
    assert r.status_code in (200, 422), r.text
    assert schema.is_valid(body) == (r.status_code == 200), (body, r.json())
    return r.status_code


def test_the_issue_prompt_is_refused_by_the_schema_and_the_server(apps):
    schema = request_schema(apps["lm"], "GenerateRequest")
    body = {"prompt": "\u001e", "length": 1}
    assert not schema.is_valid(body)
    r = apps["lm"].post("/generate", json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "prompt"


def test_every_white_space_character_alone_is_refused_by_both(apps):
    assert len(SPACES) == 29 and "\u001e" in SPACES and "\u200b" not in SPACES
    generate = request_schema(apps["lm"], "GenerateRequest")
    predict = request_schema(apps["classify"], "PredictRequest")
    for space in SPACES:
        assert agree(apps["lm"], generate, "/generate", {"prompt": space * 2, "length": 1}) == 422
        assert agree(apps["classify"], predict, "/predict", {"texts": ["ok", space]}) == 422
    for prompt in ("", "a", " a\n", "\u200b", "\u001e\u001ex", "\n\n."):
        assert agree(apps["lm"], generate, "/generate", {"prompt": prompt, "length": 1}) == 200, repr(prompt)


@given(prompt=st.text(st.sampled_from([*SPACES[:8], "\u001e", "\u3000", "a", "\u00e9", "\u200b", "\x00"]),
                      max_size=6))
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
def test_schema_and_validation_agree_on_prompts_and_texts(apps, prompt):
    agree(apps["lm"], request_schema(apps["lm"], "GenerateRequest"), "/generate", {"prompt": prompt, "length": 1})
    if prompt:
        agree(apps["classify"], request_schema(apps["classify"], "PredictRequest"), "/predict", {"texts": [prompt]})
