"""Serve a trained model over HTTP (FastAPI + uvicorn; `pip install "rnnkit[serve]"`).

    rnnkit serve runs/sentiment/best                      # http://127.0.0.1:8000/docs

    from rnnkit.serve import ServeSettings, create_app
    app = create_app("runs/sentiment/best", settings=ServeSettings(max_texts=32, max_wait_ms=2))

| module | what it holds |
|---|---|
| `app.py` | `create_app`: the endpoints, request/response models with the limits, JSON errors |
| `fast_predict.py` | valid `/predict` requests answered in front of FastAPI (same answers) |
| `batching.py` | `Batcher`: concurrent requests merged into one padded batch, run on one model thread |
| `guards.py` | ASGI middleware: bearer-token auth, request body size limit |
| `settings.py` | `ServeSettings`, and its round trip through `RNNKIT_SERVE_*` variables |
| `connection.py` | below HTTP: idle, header and body timeouts, header size cap (431), connection cap (503) |
| `runner.py` | `run`: uvicorn, one process or several workers; BLAS thread limits |
"""
from .settings import ServeSettings


def create_app(checkpoint, engine: str | None = None, settings: ServeSettings | None = None):
    """The FastAPI app serving `checkpoint` (see rnnkit/serve/app.py)."""
    from .app import create_app as create

    return create(checkpoint, engine, settings)


__all__ = ["ServeSettings", "create_app"]
