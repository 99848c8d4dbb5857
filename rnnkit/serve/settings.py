"""The server's settings: one frozen dataclass, which also travels through environment variables.

`rnnkit serve --workers N` starts N uvicorn worker processes, each of which builds its own app; they learn
the checkpoint and the settings from `RNNKIT_SERVE_*` variables (`to_env` / `from_env`). The API key is
read from `RNNKIT_API_KEY`, which is also how a user should pass it (a --api-key on the command line shows
in `ps`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ..settings import options_of, setting

ENV_PREFIX = "RNNKIT_SERVE_"
ENV_CHECKPOINT = ENV_PREFIX + "CHECKPOINT"
ENV_API_KEY = "RNNKIT_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """How the server loads its model, what it accepts, how it batches, and how long it waits for clients.

    Each field holds its default and its help text (rnnkit/settings.py's `setting`): `rnnkit serve` has one
    option per field (but engine, device and api_key, which it takes as the other commands do).
    Batching merges concurrent /predict requests into one padded batch. The connection limits work below
    HTTP (connection.py): a client that is slow or hostile is cut off before it holds memory or a slot.
    """

    engine: str = setting("scratch", "the engine")
    device: str = setting("auto", "for the torch engine")
    api_key: str | None = setting(None, "require 'Authorization: Bearer KEY'")
    # what a request may hold
    max_texts: int = setting(64, "texts per /predict or /translate request", group="request")
    max_chars: int = setting(1000, "characters per text or prompt", group="request")
    max_tokens: int = setting(500, "tokens per /generate request, or per translation of /translate", group="request")
    max_body_bytes: int = setting(1 << 20, "request body size (413 above)", group="request")
    max_history: int = setting(10000, "steps of history per /forecast request", group="request")
    # batching
    batching: bool = setting(True, "merge concurrent /predict or /translate requests into one model call "
                             "(--no-batching: run them one at a time)", group="batching")
    max_batch_texts: int = setting(64, "texts per model call when batching concurrent requests", group="batching")
    max_batch_tokens: int = setting(2048, "padded tokens per model call (texts x the longest text's tokens)",
                                    group="batching")
    max_wait_ms: float = setting(2.0, "longest a request waits for others to join its batch", group="batching")
    size_priority_ms: float = setting(50.0, "queue a request of n texts as if it came (n-1) x this many ms later, "
                                      "so that small requests are not stuck behind large ones (0: arrival order)",
                                      group="batching")
    fast_path: bool = setting(True, "answer valid /predict requests in front of FastAPI (the same answers, "
                              "less CPU; --no-fast-path: through FastAPI)", group="batching")
    # connections, per worker process (connection.py)
    idle_timeout: float = setting(5.0, "seconds a connection may stay open without sending a request, before "
                                  "its first one and between requests (then it is closed)", group="connection")
    header_timeout: float = setting(10.0, "seconds from a request's first byte to the end of its headers (then "
                                    "408, and the connection is closed: a client dripping its request is cut off)",
                                    group="connection")
    body_timeout: float = setting(30.0, "seconds from the end of a request's headers to the end of its body "
                                  "(then 408, and the connection is closed)", group="connection")
    max_header_bytes: int = setting(16384, "bytes of a request's line and headers (431 above)", group="connection")
    max_connections: int = setting(512, "open connections per worker: one more is answered 503 and closed",
                                   group="connection")
    limit_concurrency: int | None = setting(None, "answer 503 to a request while this many connections or "
                                            "requests are open (uvicorn's limit; default: none)", group="connection")

    def __post_init__(self):
        from ..engines import check_engine

        check_engine(self.engine)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("max_texts", "max_chars", "max_tokens", "max_body_bytes", "max_history", "max_batch_texts",
                     "max_batch_tokens", "max_connections", "limit_concurrency"):
            value = getattr(self, name)
            if (value is not None or name != "limit_concurrency") and (type(value) is not int or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if type(self.max_header_bytes) is not int or not 1024 <= self.max_header_bytes <= 1 << 24:
            raise ValueError(f"max_header_bytes must be an integer from 1024 to {1 << 24}, got "
                             f"{self.max_header_bytes!r}")
        for name in ("idle_timeout", "header_timeout", "body_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= 86400):
                raise ValueError(f"{name} must be a number of seconds above 0 and at most 86400, got {value!r}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be between 0 and 1000, got {self.max_wait_ms!r}")
        if not 0 <= self.size_priority_ms <= 1000:
            raise ValueError(f"size_priority_ms must be between 0 and 1000, got {self.size_priority_ms!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty")

    def to_env(self, checkpoint) -> dict[str, str]:
        """Environment variables from which `from_env` rebuilds (checkpoint, settings)."""
        env = {ENV_CHECKPOINT: str(checkpoint)}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue                                # unset: the default (None) on the other side too
            if f.name == "api_key":
                env[ENV_API_KEY] = value
            else:
                env[ENV_PREFIX + f.name.upper()] = str(int(value) if isinstance(value, bool) else value)
        return env

    @classmethod
    def from_env(cls, environ=None) -> tuple[str, ServeSettings]:
        """(checkpoint, settings) from `RNNKIT_SERVE_*` and `RNNKIT_API_KEY`; unset fields keep defaults."""
        environ = os.environ if environ is None else environ
        if ENV_CHECKPOINT not in environ:
            raise ValueError(f"set {ENV_CHECKPOINT} to the checkpoint folder to serve")
        kwargs = {}
        for f in options_of(cls).values():
            raw = environ.get(ENV_API_KEY if f.name == "api_key" else ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                if f.kind is bool:
                    kwargs[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    kwargs[f.name] = f.kind(raw)
            except ValueError:
                raise ValueError(f"{ENV_PREFIX + f.name.upper()}={raw!r} is not a valid {f.name}") from None
        return environ[ENV_CHECKPOINT], cls(**kwargs)
