"""The HTTP API of a trained forecaster (app.py's `create_app` hands a forecaster checkpoint to this module).

    GET  /health, /ready     as for the other tasks
    GET  /model              target and covariate columns, frequency, window, horizon, levels, limits
    POST /forecast           {"history": {"start" or "dates", "values"}?, "horizon", "levels", "quantiles"}
                             -> {"dates", "target", "freq", "forecast", "intervals", "quantiles"}

Without a history the model continues the series it was trained on (the tail its checkpoint holds). A
history is its values (time,) for a model of one column, else rows (time, targets + covariates), dated by a first date
(`start`, the rest on the model's grid) or by one date per row (`dates`; they must lie on the model's
grid, with none missing or repeated). The answer is `Forecaster.predict_interval`'s, as `rnnkit forecast
--json` prints it. Bad input gets a JSON 4xx, as on the other endpoints: the request model states the
limits (the model's horizon, `max_history` steps) in /openapi.json, and what only the model can check
(a history shorter than its window, dates off its grid, levels it was not trained for, values its
transforms refuse or that overflow) answers 422 with the reason.
"""

import asyncio
import gc
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException

from .. import __version__
from ..checkpoint import load_checkpoint
from .app import _errors, integer, log, new_app
from .guards import BearerAuth, BodyLimit
from .last_resort import LastResort
from .settings import ServeSettings

MAX_LEVELS = 10     # interval levels per request
MAX_QUANTILES = 20  # quantiles per request
DATE_CHARS = 40     # characters of one date


def is_forecaster(checkpoint) -> bool:
    """Whether the checkpoint (a checkpoint, run or ensemble folder) holds a forecaster."""
    from ..tasks.forecast import checkpoint_paths

    try:
        first = checkpoint_paths(checkpoint)[0]
    except FileNotFoundError:
        return False
    return load_checkpoint(first).config.get("task") == "forecast"


# ------------------------------------------------------------------------------------------------ models

class ForecastReady(BaseModel):
    ready: bool
    task: Literal["forecast"]


class ForecastLimits(BaseModel):
    max_horizon: int = Field(description="the model's horizon: the most steps one forecast holds")
    min_history: int = Field(description="the fewest steps a history may hold (the window, plus the steps "
                                         "differencing uses)")
    max_history: int
    max_levels: int
    max_quantiles: int
    max_body_bytes: int


class CalibrationInfo(BaseModel):
    forecasts: int = Field(description="the calibration forecasts (rnnkit calibrate), each by a model trained "
                                       "before it")
    first: str = Field(description="the first calibration forecast's first date")
    last: str
    retrain: int = Field(description="a model was trained anew before every retrain-th forecast")
    guaranteed: dict[str, bool] = Field(description="per level: enough forecasts for the conformal guarantee")
    coverage_before: dict[str, float] = Field(description="per level: the model's own intervals' coverage of "
                                                          "the calibration forecasts")


class ForecasterInfo(BaseModel):
    task: Literal["forecast"]
    target: list[str] = Field(description="the forecast columns, in the order of each forecast row")
    covariates: list[str] = Field(description="past-only columns a history row holds after the targets")
    freq: str = Field(description="the series' frequency: history dates must lie on its grid")
    window: int
    horizon: int
    loss: str
    levels: list[float] = Field(description="the interval levels (percent) a forecast gives by default")
    ensemble: int
    last_date: str = Field(description="the last date of the stored history, which /forecast continues when "
                                       "the request has none")
    parameters: int
    architecture: dict[str, Any]
    engine: Literal["scratch", "torch"]
    dtype: str
    rnnkit_version: str
    checkpoint_rnnkit_version: str
    calibrated: CalibrationInfo | None = Field(None, description="the conformal calibration of the intervals "
                                                                 "(calibration.json), if any")
    limits: ForecastLimits


class Interval(BaseModel):
    lower: list[list[float]] = Field(description="(horizon, targets)")
    upper: list[list[float]] = Field(description="(horizon, targets)")


class ForecastResponse(BaseModel):
    dates: list[str] = Field(description="the dates forecast, one per step")
    target: list[str]
    freq: str
    forecast: list[list[float]] = Field(description="the point forecast (the median), (horizon, targets)")
    intervals: dict[str, Interval] = Field(
        {}, description="per level (percent, e.g. \"80\"): the lower and upper bounds")
    quantiles: dict[str, list[list[float]]] = Field(
        {}, description="per quantile asked for (e.g. \"0.1\"): its value at each step, (horizon, targets)")
    calibrated: CalibrationInfo | None = Field(None, description="present when the intervals are conformal ones")


def unwrap_rows(values):
    """A one-column history given as rows of one number ([[112.0], [118.0], ...], the shape of the answer's
    forecast) -> the numbers; anything else is left to the schema's checks."""
    if isinstance(values, list) and values and all(isinstance(v, list) and len(v) == 1 for v in values):
        return [v[0] for v in values]
    return values


def request_model(s: ServeSettings, max_horizon: int, min_history: int, columns: int, example: dict):
    """The /forecast body, with this model's and this server's limits in its schema."""
    strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    Date = Annotated[str, Field(min_length=4, max_length=DATE_CHARS)]
    Row = Annotated[list[float], Field(min_length=columns, max_length=columns)]

    class History(BaseModel):
        model_config = strict
        start: Date | None = Field(None, description="the first row's date (ISO 8601, e.g. 1958-01); the "
                                                     "others follow on the model's grid. Give start or dates")
        dates: list[Date] | None = Field(None, min_length=min_history, max_length=s.max_history,
                                         description="one date per row, on the model's grid, none missing")
        values: (Annotated[list[float], BeforeValidator(unwrap_rows)] if columns == 1 else list[Row]) = Field(
            min_length=min_history, max_length=s.max_history,
            description=f"{min_history} to {s.max_history} steps, oldest first: " + (
                "numbers (or rows of one number, as the answer's forecast is shaped)" if columns == 1 else
                f"rows of {columns} numbers (the targets, then the covariates; see GET /model)"))

    class ForecastRequest(BaseModel):
        model_config = ConfigDict(**strict, json_schema_extra={"examples": [example]})
        history: History | None = Field(None, description="the series to continue (default: the end of the "
                                                          "series the model was trained on)")
        horizon: integer(ge=1, le=max_horizon) = Field(max_horizon, description="steps to forecast")
        levels: list[Annotated[float, Field(gt=0, lt=100)]] | None = Field(
            None, max_length=MAX_LEVELS, description="interval levels in percent (default: the model's; [] for "
                                                     "the point forecast only)")
        quantiles: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
            None, max_length=MAX_QUANTILES, description="quantiles of each step to give as well, e.g. [0.1, 0.5, "
            "0.9]: the model's own, never calibrated (a quantile model gives those it was trained for)")

    return ForecastRequest


# ------------------------------------------------------------------------------------------------ the model

class ServedForecaster:
    """The loaded forecaster and the one thread its forecasts run on."""

    def __init__(self, checkpoint, settings: ServeSettings):
        from ..tasks.forecast import Forecaster, checkpoint_paths

        self.model = Forecaster.from_pretrained(checkpoint, settings.engine, settings.device)
        self.settings, self.closing = settings, False
        self.checkpoint_version = load_checkpoint(checkpoint_paths(checkpoint)[0]).rnnkit_version
        self.min_history = self.model.window + self.model.features.target.lost
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="rnnkit-forecast")

    @property
    def has_intervals(self) -> bool:
        return self.model.config["model"]["loss"] in ("quantile", "gaussian")

    def history(self, h) -> Any:
        """A request's history -> a checked Series on the model's grid (ValueError: what is wrong)."""
        from ..data.series import grid_dates, make_series, parse_date

        if (h.start is None) == (h.dates is None):
            raise ValueError("give either start (the first date) or dates (one per row), not both or neither")
        freq = self.model.features.freq
        if h.dates is None:
            dates = grid_dates(np.array([parse_date(h.start)]), freq, np.arange(len(h.values)))
        else:
            if len(h.dates) != len(h.values):
                raise ValueError(f"{len(h.dates)} dates for {len(h.values)} values")
            dates = h.dates
            if [parse_date(d) for d in dates] != sorted(parse_date(d) for d in dates):
                raise ValueError("the dates must be in order, oldest first")
        c = self.model.config["history"]
        return make_series(dates, np.array(h.values, dtype=np.float64), c["target"], c["covariates"], freq)

    def forecast(self, body) -> dict:
        """The /forecast answer (on the model thread); ValueError for what the model cannot take."""
        from ..tasks.forecast import to_json

        history = None if body.history is None else self.history(body.history)
        levels = body.levels
        if levels is None:
            levels = list(self.model.levels()) if self.has_intervals else []
        with np.errstate(all="ignore"):
            result = (self.model.predict_interval(body.horizon, levels, history) if levels
                      else self.model.predict(body.horizon, history))
            if body.quantiles:
                q = self.model.predict_quantiles(body.horizon, body.quantiles, history)
                result |= {"quantiles": q["quantiles"], "values": q["values"]}
        arrays = [result["forecast"], result.get("values", np.zeros(0))]
        arrays += [a for pair in result.get("intervals", {}).values() for a in pair]
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("the forecast is not finite: the history's values lie too far from the series the "
                             "model was trained on")
        return {**to_json(result, self.model.features.freq), "freq": self.model.features.freq}

    def info(self) -> dict:
        from ..data.series import format_date

        m, s, config = self.model, self.settings, self.model.config
        return {"task": "forecast", "target": list(config["history"]["target"]),
                "covariates": list(config["history"]["covariates"]), "freq": m.features.freq, "window": m.window,
                "horizon": m.horizon, "loss": config["model"]["loss"],
                "levels": list(m.levels()) if self.has_intervals else [], "ensemble": len(m.engines),
                "last_date": format_date(m.history.dates[-1], m.features.freq),
                "parameters": int(sum(np.size(w) for e in m.engines for w in e.weights().values())),
                "architecture": config["model"], "engine": s.engine, "dtype": str(config.get("dtype", "float32")),
                "rnnkit_version": __version__, "checkpoint_rnnkit_version": self.checkpoint_version,
                "calibrated": m.calibration.summary() if m.calibration is not None else None,
                "limits": {"max_horizon": m.horizon, "min_history": self.min_history, "max_history": s.max_history,
                           "max_levels": MAX_LEVELS, "max_quantiles": MAX_QUANTILES,
                           "max_body_bytes": s.max_body_bytes}}

    def example(self) -> dict:
        """A request that works: the last steps of the stored history, dated by their first date."""
        from ..data.series import format_date

        tail = self.model.history.slice(-self.min_history, None)
        values = (tail.values[:, 0] if tail.values.shape[1] == 1 else tail.values).round(6).tolist()
        levels = list(self.model.levels()) if self.has_intervals else []
        return {"history": {"start": format_date(tail.dates[0], tail.freq), "values": values},
                "horizon": self.model.horizon, "levels": levels}


# ------------------------------------------------------------------------------------------------ the app

def create_forecast_app(checkpoint, settings: ServeSettings) -> FastAPI:
    """A FastAPI app serving a forecaster (see the module docstring); app.py's create_app calls it."""
    served = ServedForecaster(checkpoint, settings)
    columns = len(served.model.config["history"]["target"]) + len(served.model.config["history"]["covariates"])
    ForecastRequest = request_model(settings, served.model.horizon, served.min_history, columns, served.example())
    served.forecast(ForecastRequest.model_validate({"horizon": 1, "levels": []}))     # warm up

    @asynccontextmanager
    async def lifespan(app):
        log.info("serving the forecaster %s on the %s engine", checkpoint, settings.engine)
        gc.collect()
        gc.freeze()
        yield
        served.closing = True
        served.executor.shutdown(wait=False, cancel_futures=True)

    app, auth = new_app(checkpoint, "forecaster", lifespan, served, settings)

    @app.get("/ready", response_model=ForecastReady, responses={**auth, **_errors(503)},
             summary="Is the model loaded?")
    async def ready():
        if served.closing:
            raise HTTPException(503, "the server is shutting down")
        return {"ready": True, "task": "forecast"}

    @app.get("/model", response_model=ForecasterInfo, responses=auth, summary="What is served, and the limits")
    async def model_info():
        return served.info()

    @app.post("/forecast", response_model=ForecastResponse, responses={**auth, **_errors(400, 413, 422)},
              summary="Forecast the steps after a history, with intervals")
    async def forecast(body: ForecastRequest):
        try:
            return await asyncio.get_running_loop().run_in_executor(served.executor, served.forecast, body)
        except (ValueError, OverflowError) as e:
            raise HTTPException(422, f"cannot forecast: {e}") from None

    @app.post("/predict", include_in_schema=False)
    @app.post("/generate", include_in_schema=False)
    async def wrong_task():
        raise HTTPException(404, "this server holds a forecaster (task 'forecast'): POST /forecast; see GET /model")

    front = BodyLimit(app.behind_front, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        front = BearerAuth(front, key=settings.api_key)
    app.front = LastResort(front)
    return app
