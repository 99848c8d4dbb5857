"""The HTTP API of a trained model: `create_app(checkpoint, engine="scratch", settings=None) -> FastAPI`.

    GET  /health     liveness: {"status": "ok"} (never needs the API key)
    GET  /ready      200 once the model is loaded, 503 while shutting down
    GET  /model      task, labels, sizes, engine, limits, rnnkit version
    POST /predict    classifiers: {"texts": [...]} -> {"predictions": [{"label", "probabilities"}, ...]}
    POST /generate   language models: {"prompt", "length", "temperature", "top_k", "top_p", "seed"} -> {"text"}
    POST /forecast   forecasters: {"history", "horizon", "levels"} -> {"dates", "forecast", "intervals"} (forecast.py)
    POST /translate  translation models: {"texts", "beam", "n_best", "length_penalty", "max_length"} (translate.py)
    GET  /docs, /openapi.json

The endpoints of the other tasks answer 404 with a message. Bad input never gets a 5xx: the request
models carry the limits (so /openapi.json states them) and every error is JSON, {"detail": "what is wrong"}
(422 also lists {"field", "message", "type"} per problem; 413 for a body over the size limit, 401 for a
missing or wrong API key). /predict requests go through the dynamic batcher (batching.py); all model work
runs on its one worker thread.
"""
import gc
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from .. import __version__
from . import translate
from .batching import Batcher
from .fast_predict import FastPredict, prediction_rows, token_ids
from .guards import BearerAuth, BodyLimit
from .last_resort import LastResort, internal_error
from .settings import ServeSettings

log = logging.getLogger("uvicorn.error")     # uvicorn sets it up: our lines land in its log
# A text must hold a character that is not white space in Python's sense (str.isspace, which the tokenizer
# uses), spelled out so that any regex engine reading /openapi.json agrees.
NOT_ONLY_SPACE = (r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
                  r"\u205f\u3000]")
# A prompt is empty, or holds such a character (one pattern, ending in $ as JSON Schema tools expect).
EMPTY_OR_NOT_ONLY_SPACE = rf"^(?:[\s\S]*{NOT_ONLY_SPACE}[\s\S]*)?$"
GREEDY_BELOW = 1e-6     # temperatures under this sample greedily (their limit), as logits / T would overflow
ENDPOINTS = {"classify": "/predict", "lm": "/generate", "seq2seq": "/translate"}
TASK_NAMES = {"classify": "a text classifier", "lm": "a language model", "seq2seq": "a translation model"}


# ------------------------------------------------------------------------------------------------ models

class ErrorItem(BaseModel):
    field: str = Field(description="where in the request, e.g. texts[2] (or body)")
    message: str
    type: str = Field(description="a machine-readable kind, e.g. string_too_long, missing, json_invalid")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong, in one sentence")
    errors: list[ErrorItem] | None = Field(None, description="422 only: each problem found")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    task: Literal["classify", "lm", "seq2seq"]


class Limits(BaseModel):
    max_texts: int
    max_chars: int
    max_tokens: int
    max_body_bytes: int


class Batching(BaseModel):
    enabled: bool
    max_batch_texts: int
    max_batch_tokens: int
    max_wait_ms: float
    size_priority_ms: float = Field(description="queue delay per text beyond a request's first")
    batches: int = Field(description="model calls made by /predict so far (this worker)")
    texts: int = Field(description="texts predicted so far (this worker)")


class ModelInfo(BaseModel):
    task: Literal["classify", "lm", "seq2seq"]
    labels: list[str] | None = Field(description="classifiers: the classes, in the order of the probabilities")
    vocab_size: int = Field(description="translation models: the target side's")
    parameters: int
    architecture: dict[str, Any] = Field(description="the model's settings from the checkpoint")
    engine: Literal["scratch", "torch"]
    dtype: str
    rnnkit_version: str
    checkpoint_rnnkit_version: str
    limits: Limits
    batching: Batching
    translation: translate.TranslationInfo | None = Field(None, description="translation models: sides, limits, search")


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="one per text, in the order of the texts")


class GenerateResponse(BaseModel):
    text: str = Field(description="the prompt followed by the generated tokens")


def _valid_text(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank_text", "is empty or only white space")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_unicode", "is not valid Unicode (it holds a lone surrogate)") from None
    return text


def _valid_prompt(text: str) -> str:
    return _valid_text(text) if text else text


def _whole_number(value):
    """JSON Schema's integer: 3 and 3.0, not true, "3" or 3.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "must be a whole number")
    return value


def integer(**bounds):
    """An integer field type with bounds (ge=, le=) that also takes 3.0 (set before the validator, so that
    the bounds show in the JSON schema)."""
    return Annotated[int, Field(**bounds), BeforeValidator(_whole_number)]


def request_models(s: ServeSettings):
    """The request bodies, with this server's limits in their schemas."""
    Text = Annotated[str, Field(min_length=1, max_length=s.max_chars, json_schema_extra={"pattern": NOT_ONLY_SPACE}),
                     AfterValidator(_valid_text)]
    strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(**strict, json_schema_extra={"examples": [
            {"texts": ["@united thanks for the upgrade!", "3 hours on the tarmac, bag lost"]}]})
        texts: list[Text] = Field(min_length=1, max_length=s.max_texts,
                                  description=f"1 to {s.max_texts} texts of at most {s.max_chars} characters")

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(**strict, json_schema_extra={"examples": [
            {"prompt": "ROMEO:", "length": 100, "temperature": 0.8, "top_k": 20, "seed": 1}]})
        prompt: Annotated[str, Field(max_length=s.max_chars, json_schema_extra={"pattern": EMPTY_OR_NOT_ONLY_SPACE}),
                          AfterValidator(_valid_prompt)] = Field(
            "", description="text to continue (empty: start from a new line)")
        length: integer(ge=1, le=s.max_tokens) = Field(min(200, s.max_tokens), description="tokens to generate")
        temperature: float = Field(1.0, ge=0, le=100, description=f"0 (or under {GREEDY_BELOW}): greedy")
        top_k: integer(ge=1) | None = Field(None, description="sample among the k most likely tokens only")
        top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(
            None, description="nucleus sampling: among the most likely tokens whose probabilities add up to p")
        seed: integer(ge=0, le=2**53 - 1) | None = Field(None, description="the same seed gives the same text")

    return PredictRequest, GenerateRequest, translate.request_model(s, Text, integer)


# ------------------------------------------------------------------------------------------------ errors

def _field(loc) -> str:
    """("body", "texts", 2) -> "texts[2]"."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def describe_errors(errors, content_type: str | None) -> tuple[str, list[dict]]:
    """pydantic/FastAPI validation errors -> (one clear sentence, [{"field", "message", "type"}])."""
    items = []
    for e in errors:
        kind, loc = e.get("type", "invalid"), tuple(e.get("loc", ()))
        message = str(e.get("msg", "is not valid"))
        if kind == "json_invalid":
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            error = (e.get("ctx") or {}).get("error", "")
            items.append({"field": "body", "message": f"is not valid JSON ({error}{where})", "type": kind})
            continue
        if loc == ("body",) and kind in ("missing", "model_attributes_type", "model_type", "dict_type"):
            json_type = content_type and content_type.split(";")[0].strip().lower().endswith("json")
            if kind == "missing":
                message = "is missing: send a JSON object"
            elif not json_type:
                message = ("must be JSON sent with the header 'Content-Type: application/json' (got "
                           f"{content_type or 'no Content-Type'})")
            else:
                message = "must be a JSON object"
        ctx = e.get("ctx") or {}
        if kind == "too_short" and "min_length" in ctx:
            message = f"needs at least {ctx['min_length']} item(s), got {ctx.get('actual_length', 'fewer')}"
        elif kind == "too_long" and "max_length" in ctx:
            message = f"allows at most {ctx['max_length']} items per request, got {ctx.get('actual_length', 'more')}"
        elif kind == "string_too_long" and "max_length" in ctx:
            message = f"is longer than the limit of {ctx['max_length']} characters"
        items.append({"field": _field(loc), "message": message, "type": kind})
    detail = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    if len(items) > 5:
        detail += f"; and {len(items) - 5} more"
    return detail or "the request is not valid", items


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        detail, items = describe_errors(exc.errors(), request.headers.get("content-type"))
        return JSONResponse({"detail": detail, "errors": items}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        detail = str(exc.detail)
        if isinstance(exc.__cause__, UnicodeDecodeError):      # FastAPI's 400 when it cannot parse the body
            detail = f"the body is not valid UTF-8 (byte {exc.__cause__.start})"
        elif isinstance(exc.__cause__, RecursionError):
            detail = "the body's JSON is nested too deeply"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):   # a bug: logged here, with the request id
        return internal_error(request.scope, exc)


def _errors(*codes: int) -> dict:
    what = {400: "the body cannot be parsed", 401: "missing or wrong API key", 404: "not found",
            413: "the request body is too large", 422: "the request is not valid", 503: "not ready"}
    return {code: {"model": ErrorResponse, "description": what[code]} for code in codes}


def _wrong_task(path: str, needs: str, holds: str):
    async def wrong_task():
        raise HTTPException(404, f"{path} needs {TASK_NAMES[needs]}; this server holds {TASK_NAMES[holds]} "
                                 f"(task {holds!r}): see GET /model")
    return wrong_task


# ------------------------------------------------------------------------------------------------ the model

class Served:
    """The loaded model behind the app: the task's model, its metadata, and the batcher."""

    def __init__(self, checkpoint, settings: ServeSettings):
        from ..tasks import classify, lm, seq2seq
        from ..tasks.pretrained import open_checkpoint

        ckpt = open_checkpoint(checkpoint)   # a run folder given for a checkpoint: "give RUN/best"
        self.task = ckpt.config.get("task")
        if self.task not in TASK_NAMES:
            raise ValueError(f"{checkpoint}: cannot serve a model of task {self.task!r} (only classify, lm and "
                             "seq2seq)")
        load = {"classify": classify.load_classifier, "lm": lm.load_lm, "seq2seq": seq2seq.load_seq2seq}
        self.model = load[self.task](checkpoint, settings.engine, settings.device)
        self.model.engine.lock_weights()    # served weights never change: pack them once
        self.config, self.settings = ckpt.config, settings
        self.checkpoint_version = ckpt.rnnkit_version
        self.parameters = int(sum(np.size(w) for w in self.model.engine.weights().values()))
        self.labels = list(self.model.labels) if self.task == "classify" else None
        run = (translate.run_jobs(self.model, settings.max_batch_texts) if self.task == "seq2seq"
               else self._probabilities)
        self.batcher = Batcher(run, settings.max_batch_texts, settings.max_wait_ms / 1000,
                               enabled=settings.batching, max_padded=settings.max_batch_tokens,
                               size_delay=settings.size_priority_ms / 1000)
        self.closing = False

    def _probabilities(self, ids: list) -> list:
        """Token id arrays -> one row of class probabilities each: one padded batch (model thread)."""
        from ..tasks.classify import pad

        inputs, lengths = pad(ids)
        return list(self.model.engine.predict(inputs, lengths))

    def warm_up(self) -> None:
        """One small call, so that the first request does not pay for first-use allocations."""
        if self.task == "classify":
            self._probabilities([np.array([1], dtype=np.int64)])
        elif self.task == "seq2seq":
            translate.warm_up(self.model)
        else:
            from ..tasks import lm

            lm.generate(self.model, "", 1, seed=0)

    def info(self) -> dict:
        s, b = self.settings, self.batcher
        sizes = self.config["model"]
        return {"task": self.task, "labels": self.labels,
                "vocab_size": int(sizes.get("vocab_size", sizes.get("target_vocab"))),
                "parameters": self.parameters, "architecture": self.config["model"], "engine": s.engine,
                "dtype": str(self.config.get("dtype", "float32")), "rnnkit_version": __version__,
                "checkpoint_rnnkit_version": self.checkpoint_version,
                "limits": {"max_texts": s.max_texts, "max_chars": s.max_chars, "max_tokens": s.max_tokens,
                           "max_body_bytes": s.max_body_bytes},
                "batching": {"enabled": s.batching, "max_batch_texts": s.max_batch_texts,
                             "max_batch_tokens": s.max_batch_tokens,
                             "max_wait_ms": s.max_wait_ms, "size_priority_ms": s.size_priority_ms,
                             "batches": b.batches, "texts": b.items},
                "translation": translate.info(self.model) if self.task == "seq2seq" else None}


# ------------------------------------------------------------------------------------------------ the app

def create_app(checkpoint, engine: str | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving the checkpoint (loaded now: a bad checkpoint fails here, not on a request).

    `engine` overrides `settings.engine`. Run it with uvicorn (`rnnkit serve` does), or test it with
    `fastapi.testclient.TestClient`.
    """
    settings = settings or ServeSettings()
    if engine is not None and engine != settings.engine:
        settings = ServeSettings(**{**settings.__dict__, "engine": engine})
    from .forecast import create_forecast_app, is_forecaster

    if is_forecaster(checkpoint):
        return create_forecast_app(checkpoint, settings)
    served = Served(checkpoint, settings)
    served.warm_up()
    PredictRequest, GenerateRequest, TranslateRequest = request_models(settings)

    @asynccontextmanager
    async def lifespan(app):
        log.info("serving the %s model %s on the %s engine (%s)", served.task, checkpoint, settings.engine,
                 f"batching up to {settings.max_batch_texts} texts and {settings.max_batch_tokens} padded tokens "
                 f"within {settings.max_wait_ms} ms"
                 if settings.batching else "no batching")
        gc.collect()
        gc.freeze()     # the model and the app live for good: later collections need not walk them
        yield
        served.closing = True
        served.batcher.close()

    app, auth = new_app(checkpoint, TASK_NAMES[served.task][2:], lifespan, served, settings)

    @app.get("/ready", response_model=Ready, responses={**auth, **_errors(503)}, summary="Is the model loaded?")
    async def ready():
        if served.closing:
            raise HTTPException(503, "the server is shutting down")
        return {"ready": True, "task": served.task}

    @app.get("/model", response_model=ModelInfo, responses=auth, summary="What is served, and the limits")
    async def model_info():
        return served.info()

    if served.task == "classify":
        @app.post("/predict", response_model=PredictResponse, responses={**auth, **_errors(400, 413, 422)},
                  summary="Label texts")
        async def predict(body: PredictRequest):    # valid requests mostly take fast_predict.py's path
            ids, missing = token_ids(served.model.encoder, body.texts)
            if missing is not None:
                raise RequestValidationError([{"type": "no_tokens", "loc": ("body", "texts", missing),
                                               "msg": "has no tokens (nothing but white space after "
                                                      "decoding HTML entities)"}])
            rows = await served.batcher.submit(ids)
            # A Response goes out as it is; FastAPI would otherwise validate it against PredictResponse
            # (the schema it documents) and serialise it a second time.
            return JSONResponse(prediction_rows(served.labels, rows))
    elif served.task == "lm":
        @app.post("/generate", response_model=GenerateResponse, responses={**auth, **_errors(400, 413, 422)},
                  summary="Continue a prompt")
        async def generate(body: GenerateRequest):
            from ..tasks import lm

            try:
                temperature = body.temperature if body.temperature >= GREEDY_BELOW else 0.0
                text = await served.batcher.call(lm.generate, served.model, body.prompt, body.length,
                                                 temperature, body.top_k, body.top_p, body.seed)
            except ValueError as e:     # generate's own argument checks
                raise HTTPException(422, f"cannot generate: {e}") from None
            return {"text": text}
    else:
        def invalid(index, kind, message):
            raise RequestValidationError([{"type": kind, "loc": ("body", "texts", index), "msg": message}])

        translate.add_route(app, served, TranslateRequest, {**auth, **_errors(400, 413, 422)}, invalid)

    for task, path in ENDPOINTS.items():
        if task != served.task:
            app.add_api_route(path, _wrong_task(path, task, served.task), methods=["POST"],
                              include_in_schema=False)

    # In front of FastAPI's own middleware, outermost first: auth, the body limit (an unauthorised client
    # cannot make us read a body), then the /predict fast path
    front = app.behind_front
    if served.task == "classify" and settings.fast_path:
        front = FastPredict(front, served=served, request_model=PredictRequest)
    front = BodyLimit(front, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        front = BearerAuth(front, key=settings.api_key)
    app.front = LastResort(front)     # outermost: any exception becomes a JSON 500 with a request id
    return app


def new_app(checkpoint, what: str, lifespan, served, settings: ServeSettings) -> tuple[FastAPI, dict]:
    """The app of every task before its own routes: titled after the checkpoint, `served` in its state, JSON
    errors, GET /health. Returns it and the 401 answer its routes document when an API key is set."""
    app = ServeApp(title=f"rnnkit: {Path(str(checkpoint)).name}", version=__version__, lifespan=lifespan,
                   description=f"A trained rnnkit {what} served over HTTP. Errors are JSON: "
                               "{\"detail\": \"what is wrong\"}.")
    app.state.served = served
    _install_error_handlers(app)

    @app.get("/health", response_model=Health, summary="Liveness (no API key needed)")
    async def health():
        return {"status": "ok"}

    return app, (_errors(401) if settings.api_key else {})


class ServeApp(FastAPI):
    """FastAPI with plain ASGI callables in front of its whole middleware stack (`front`, set by create_app).

    HTTP requests meet the guards (auth, body limit) and the /predict fast path first; whatever they pass
    on reaches FastAPI as usual (`behind_front`). FastAPI's own layers (its error, telemetry and body-limit
    middleware, Starlette's routing) then cost nothing on the fast path, which answers its own errors (a JSON
    500 included). Lifespan events go straight to FastAPI.
    """

    front = None

    async def __call__(self, scope, receive, send):
        if self.front is not None and scope["type"] == "http":
            return await self.front(scope, receive, send)
        await super().__call__(scope, receive, send)

    async def behind_front(self, scope, receive, send):
        await super().__call__(scope, receive, send)
