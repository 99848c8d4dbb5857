"""The last resort: any unexpected exception becomes a JSON 500 with a request id, logged once with that id.

    {"detail": "internal server error", "request_id": "3f2a..."}      (also in the X-Request-ID header)

`LastResort` wraps the whole app, guards and fast path included, so that nothing reaches uvicorn, whose own
answer would be a plain-text 500. FastAPI's exception handler (app.py) and the /predict fast path answer with
`internal_error`, which logs the traceback and the id; Starlette then re-raises to here, where a response
already sent is left alone. The id is made once per request and kept in the ASGI scope, so the log line
and the answer always carry the same one.
"""
from __future__ import annotations

import logging
import uuid

from fastapi.responses import JSONResponse

log = logging.getLogger("uvicorn.error")
REQUEST_ID = "rnnkit.request_id"    # the scope key
_LOGGED = "rnnkit.logged_error"


def request_id(scope) -> str:
    """This request's id (made on first use)."""
    rid = scope.get(REQUEST_ID)
    if rid is None:
        rid = scope[REQUEST_ID] = uuid.uuid4().hex
    return rid


def internal_error(scope, exc: BaseException) -> JSONResponse:
    """Log ``exc`` with the request's id and method and path; the JSON 500 to answer with."""
    rid = request_id(scope)
    if scope.get(_LOGGED) is not exc:
        scope[_LOGGED] = exc
        log.error("internal server error, request %s: %s %s", rid, scope.get("method"), scope.get("path"),
                  exc_info=exc)
    return JSONResponse({"detail": "internal server error", "request_id": rid}, status_code=500,
                        headers={"X-Request-ID": rid})


class LastResort:
    """ASGI middleware, outermost: an exception from ``app`` is logged and, unless a response has begun,
    answered with `internal_error`'s JSON 500 (never re-raised to the server)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            response = internal_error(scope, exc)
            if not started:
                await response(scope, receive, send)
