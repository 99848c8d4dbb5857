"""The hot path of POST /predict as plain ASGI, in front of FastAPI's whole middleware stack.

A valid single-text request spends about a third of the server's CPU in the web stack, and FastAPI's
part of it (routing, dependency solving, parsing the body with the json module, validating the Python
objects, the exception middlewares) is the largest piece. `FastPredict` answers the requests it can take
whole without that: a POST to exactly /predict whose Content-Type is application/json, whose body
pydantic parses and validates straight from the bytes (`PredictRequest.model_validate_json`), and whose
texts all have tokens. Anything else, every error included, goes on to FastAPI with the body replayed, so
the answer is byte for byte the one FastAPI gives (the same 422 details, 404, 405, ...). Its answers are
FastAPI's too: the same `prediction_rows` and the same JSONResponse.

It sits behind the auth and body-limit guards (guards.py), so it never sees an unauthorised request or an
oversized body; `app.ServeApp` puts all three in front of FastAPI.
"""
from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from .guards import replay
from .last_resort import internal_error


def token_ids(encoder, texts: list[str]) -> tuple[list, int | None]:
    """(token id arrays, None), or (those before it, the index of the first text without tokens)."""
    ids = []
    for i, text in enumerate(texts):
        try:
            ids.append(encoder.token_ids(text))
        except ValueError:
            return ids, i
    return ids, None


def prediction_rows(labels: list[str], rows) -> dict:
    """Class probability rows → the /predict answer: per text its label and its probabilities."""
    return {"predictions": [{"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist()))}
                            for p in rows]}


def _json_content(headers) -> bool:
    """Exactly one Content-Type header, and it is application/json (parameters allowed)."""
    values = [v for k, v in headers if k == b"content-type"]
    return len(values) == 1 and values[0].split(b";")[0].strip().lower() == b"application/json"


class FastPredict:
    """ASGI middleware: valid /predict requests are answered here, everything else by `app`."""

    def __init__(self, app, served, request_model):
        self.app, self.served, self.request_model = app, served, request_model
        self.answered = 0      # requests answered on the fast path (for tests)

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict"
                or not _json_content(scope["headers"])):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return                                  # the client left before sending its body
        ids = self._accepted(body)
        if ids is None:
            return await self.app(scope, replay(body, receive), send)
        try:
            rows = await self.served.batcher.submit(ids)
            response = JSONResponse(prediction_rows(self.served.labels, rows))
        except Exception as exc:  # a bug or a shutdown: what FastAPI's handler answers, the traceback logged
            response = internal_error(scope, exc)
        self.answered += 1
        await response(scope, receive, send)

    def _accepted(self, body: bytes):
        """The requests' token ids if the fast path can answer it, else None."""
        try:
            request = self.request_model.model_validate_json(body)
        except ValidationError:
            return None
        ids, missing = token_ids(self.served.model.encoder, request.texts)
        return ids if missing is None else None


async def _read_body(receive) -> bytes | None:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)
