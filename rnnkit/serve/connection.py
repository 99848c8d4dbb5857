"""Slow and hostile clients, handled below HTTP: uvicorn's httptools protocol with deadlines and caps.

What uvicorn (0.55) does not do, and this protocol adds (`GuardedHttpProtocol`, given to uvicorn as its
`http=` factory by runner.py):

- A connection that sends nothing is closed after `idle_timeout`. (uvicorn arms its keep-alive timer only
  after a response, so a connection that never sends a request stays open for good.)
- A request's line and headers must arrive within `header_timeout` of its first byte, and its body within
  `body_timeout` of the end of its headers: else 408 and the connection is closed. (uvicorn's keep-alive
  timer is cancelled by every byte received, so a client dripping a byte a second holds the connection,
  and a partial request in memory, for ever; ASGI middleware cannot help, as it first runs when the headers
  are complete.)
- The line and headers are at most `max_header_bytes`: 431 as soon as more has arrived. (httptools has
  no limit: a 50 MB header is buffered whole, joined piece by piece.)
- At most `max_connections` connections per worker: one more is answered 503 and closed at once.

So each connection holds at most max_header_bytes of a request head (plus the body limit's bytes, read
by guards.BodyLimit), for a bounded time. A refusal is written with `Connection: close`, then the
connection is half-closed and what the client still sends is read and dropped for up to LINGER_S seconds,
so that a client still sending its request reads the answer instead of a reset.
"""
from __future__ import annotations

import http
import json
from dataclasses import dataclass, fields
from functools import partial

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LINGER_S = 2.0     # after a refusal, drop what the client still sends for this long, then close
IDLE, HEAD, BODY, REFUSED = "idle", "head", "body", "refused"     # where a connection is in its request


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection settings of a ServeSettings (seconds and bytes; see its help texts)."""

    idle_timeout: float
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_connections: int

    @classmethod
    def of(cls, settings) -> ConnectionLimits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


def protocol_factory(limits: ConnectionLimits):
    """uvicorn's `http=` argument: the guarded protocol with these limits (picklable, so it reaches the
    worker processes with uvicorn's config)."""
    return partial(GuardedHttpProtocol, limits=limits)


def error_response(status: int, detail: str, default_headers=()) -> bytes:
    """A whole HTTP/1.1 response with the app's JSON error body, {"detail": ...}, that closes the connection."""
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in default_headers]
    head += [b"content-type: application/json", b"content-length: " + str(len(body)).encode(),
             b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and caps of `limits` (see the module's docstring).

    A connection is idle (before a request: the idle timer runs), reading a request's head (line and
    headers: the header deadline runs and the bytes are counted), reading its body (the body deadline runs),
    or refused (lingering). While a response is being computed no deadline runs.

    The deadlines cost no timer per request: each is a time, `due`, and one watchdog timer per connection
    checks it when it fires (at the earliest due it was set for), then sleeps until the current one.
    So on a keep-alive connection it fires about once per header_timeout, not twice per request.
    """

    def __init__(self, config, server_state, app_state, _loop=None, *, limits: ConnectionLimits):
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.timeout_keep_alive = limits.idle_timeout
        self.phase = IDLE
        self.head_bytes = 0
        self.due = None             # the loop time by which the head or body being read must be complete
        self.watchdog = None        # the TimerHandle that checks `due`, and when it fires
        self.watchdog_at = 0.0
        self.linger = None          # after a refusal: the TimerHandle that closes the connection

    # ---------------------------------------------------------------------------------------------- connection

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.logger.warning("refused a connection: %d are open, the limit (--max-connections)",
                                self.limits.max_connections)
            return self.refuse(503, f"the server holds its limit of {self.limits.max_connections} open "
                                    "connections; try again later")
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc) -> None:
        for timer in (self.watchdog, self.linger):
            if timer is not None:
                timer.cancel()
        self.watchdog = self.linger = None
        self._unset_keepalive_if_required()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.phase == REFUSED:
            return                          # lingering: drop it
        if self.phase == IDLE:
            self._begin_head()              # any byte starts the header deadline (even blank lines)
        super().data_received(data)
        if self.phase == HEAD:              # the head is still incomplete: all of `data` belongs to it
            self.head_bytes += len(data)    # (but for a pipelined request's start: counted a little high)
            if self.head_bytes > self.limits.max_header_bytes:
                self._refuse_large_head(f"more than {self.limits.max_header_bytes} bytes")

    # ---------------------------------------------------------------------------------------------- parser

    def on_message_begin(self) -> None:
        if self.phase == REFUSED:
            return
        if self.phase != HEAD:              # a pipelined request, begun in the bytes of the one before
            self._begin_head()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self.phase == REFUSED:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)  # "name: value\r\n"
        if size > self.limits.max_header_bytes:
            return self._refuse_large_head(f"{size} bytes")
        self.phase = BODY
        self._set_due(self.limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.phase != REFUSED:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.phase == REFUSED:
            return
        self.phase, self.due = IDLE, None   # uvicorn arms the idle (keep-alive) timer after the response
        super().on_message_complete()

    # ---------------------------------------------------------------------------------------------- limits

    def _begin_head(self) -> None:
        self.phase, self.head_bytes = HEAD, 0
        self._set_due(self.limits.header_timeout)

    def _set_due(self, seconds: float) -> None:
        """The head or body being read must be complete `seconds` from now."""
        self.due = self.loop.time() + seconds
        if self.watchdog is None or self.watchdog_at > self.due:
            if self.watchdog is not None:
                self.watchdog.cancel()
            self.watchdog, self.watchdog_at = self.loop.call_at(self.due, self._watch), self.due

    def _watch(self) -> None:
        self.watchdog = None
        if self.due is None or self.phase not in (HEAD, BODY):
            return                          # nothing being read: sleep until the next request sets a due
        if self.loop.time() < self.due:
            self.watchdog, self.watchdog_at = self.loop.call_at(self.due, self._watch), self.due
            return
        part, seconds = ("line and headers", self.limits.header_timeout) if self.phase == HEAD else \
            ("body", self.limits.body_timeout)
        self.logger.warning("closed a connection whose request %s took over %g s", part, seconds)
        self.refuse(408, f"the request's {part} did not arrive within {seconds:g} s")

    def _refuse_large_head(self, what: str) -> None:
        self.logger.warning("refused a request whose line and headers hold %s", what)
        self.refuse(431, f"the request line and headers hold {what}; the limit is {self.limits.max_header_bytes}")

    def refuse(self, status: int, detail: str) -> None:
        """Answer `status` (unless a response has begun), stop reading requests, and close: at once, or
        after lingering while the client still sends."""
        self.phase, self.due = REFUSED, None
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True       # the app's request (if any) ends: receive() says http.disconnect
            cycle.message_event.set()
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(error_response(status, detail, self.server_state.default_headers))
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
