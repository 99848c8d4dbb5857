"""The server's settings: one frozen dataclass, which also travels through environment variables.

`rnnkit serve --workers N` starts N uvicorn worker processes, each of which builds its own app; they learn
the checkpoint and the settings from `RNNKIT_SERVE_*` variables (`to_env` / `from_env`). The API key is
read from `RNNKIT_API_KEY`, which is also how a user should pass it (a --api-key on the command line shows
in `ps`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

ENV_PREFIX = "RNNKIT_SERVE_"
ENV_CHECKPOINT = ENV_PREFIX + "CHECKPOINT"
ENV_API_KEY = "RNNKIT_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """How the server loads its model, what it accepts, and how it batches.

    max_texts: texts per /predict request; max_chars: characters per text and per /generate prompt;
    max_tokens: tokens per /generate request; max_body_bytes: request body size (413 above it).
    batching: merge concurrent /predict requests into one padded batch of at most max_batch_texts texts
    and max_batch_tokens padded tokens (texts × the longest text's tokens), waiting at most max_wait_ms
    after the first one arrives (off: one request at a time). size_priority_ms: in the queue, a request of n
    texts counts as arriving (n - 1) × this late, so that small requests are not stuck behind large ones
    (0: arrival order).
    fast_path: answer valid /predict requests in front of FastAPI (fast_predict.py; the answers are
    the same, errors still come from FastAPI).
    """

    engine: str = "scratch"
    device: str = "auto"
    api_key: str | None = None
    max_texts: int = 64
    max_chars: int = 1000
    max_tokens: int = 500
    max_body_bytes: int = 1 << 20
    batching: bool = True
    max_batch_texts: int = 64
    max_batch_tokens: int = 2048
    max_wait_ms: float = 2.0
    size_priority_ms: float = 50.0
    fast_path: bool = True

    def __post_init__(self):
        from ..engines import check_engine

        check_engine(self.engine)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        for name in ("max_texts", "max_chars", "max_tokens", "max_body_bytes", "max_batch_texts",
                     "max_batch_tokens"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
            if f.name == "api_key":
                if value is not None:
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
        for f in fields(cls):
            raw = environ.get(ENV_API_KEY if f.name == "api_key" else ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            default = getattr(cls, f.name)
            try:
                if isinstance(default, bool):
                    kwargs[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                elif isinstance(default, (int, float)):
                    kwargs[f.name] = type(default)(raw)
                else:
                    kwargs[f.name] = raw
            except ValueError:
                raise ValueError(f"{ENV_PREFIX + f.name.upper()}={raw!r} is not a valid {f.name}") from None
        return environ[ENV_CHECKPOINT], cls(**kwargs)
