"""ASGI middleware that turns requests away before FastAPI parses them: bearer-token auth, body size.

Both are plain ASGI callables (no BaseHTTPMiddleware: it costs a task per request) and answer with the
same JSON error body as the app: {"detail": "..."}.
"""
from __future__ import annotations

import hmac
import json

NO_AUTH_PATHS = frozenset({"/health"})


async def send_error(send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """401 unless the request has `Authorization: Bearer <key>` (compared in constant time); /health is
    open so that liveness probes need no secret."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in NO_AUTH_PATHS or self._authorized(scope):
            return await self.app(scope, receive, send)
        await send_error(send, 401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                         [(b"www-authenticate", b"Bearer")])

    def _authorized(self, scope) -> bool:
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, token = values[0].strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)


class BodyLimit:
    """413 for a request body over `max_bytes`: at once from its Content-Length, else (chunked upload)
    as soon as the bytes read pass the limit. The body is read here and handed on in one piece."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lengths = [v for k, v in scope["headers"] if k == b"content-length"]
        if lengths:
            try:
                length = int(lengths[0])
            except ValueError:
                return await send_error(send, 400, "the Content-Length header is not a number")
            if length > self.max_bytes:
                return await self._too_large(send, f"{length} bytes")
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return                                  # the client left; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(send, f"more than {self.max_bytes} bytes")
            body.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replay(b"".join(body), receive), send)

    async def _too_large(self, send, what: str) -> None:
        await send_error(send, 413, f"the request body is too large ({what}); the limit is {self.max_bytes} "
                         "bytes", [(b"connection", b"close")])


def replay(body: bytes, receive):
    """A `receive` that hands out `body` in one message, then defers to the real one (for disconnects)."""
    sent = False

    async def receive_body():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_body
