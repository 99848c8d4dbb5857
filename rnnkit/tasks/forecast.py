"""Time-series forecasting: read a series, transform it, train an RNN forecaster (or an ensemble), forecast with
intervals, backtest and evaluate beside the baselines.

    from rnnkit.tasks.forecast import Forecaster
    f = Forecaster(dataset="air-passengers", horizon=36, window=36, log=True, epochs=200).fit()
    f.predict(36)                               # {"dates": [...], "forecast": (36, 1)}
    f.predict_interval(36, levels=(80, 95))     # + {"intervals": {80.0: (lower, upper), 95.0: ...}}
    f.predict_quantiles(36)                     # + {"quantiles": [0.025, ...], "values": (5, 36, 1)}
    f.historical_forecasts("1959-01", 6)        # {"starts", "dates", "forecasts": (19, 6, 1), "intervals"}
    f.backtest(start="1959-01", horizon=6, stride=1)   # those forecasts scored, the baselines beside them
    f.calibrate(19).save("runs/forecast")       # conformal intervals: 19 forecasts, each by a model trained
                                                # before it (needs window + horizon + 18 steps before the
                                                # last horizon that ends at the test part)
    f.evaluate()                                # the held-out end, with naive / seasonal naive / drift beside
    Forecaster.from_pretrained("runs/forecast")

The model (rnnkit/scratch/forecaster.py; the same on the torch engine) reads, for each of the last `window`
steps, x = [the targets, transformed; the covariates, scaled; the calendar features of that step] and, for
the steps ahead, future = their calendar features. The targets go through rnnkit.data.transforms (log,
differences, scaling), fitted on the training part only, and every forecast is inverted back. The training
part is the series minus its last `test` steps (held out for `evaluate`) and minus the `valid` steps before
them (whose forecasts choose the best checkpoint; with valid = 0, the training windows' loss does). With
`local_level` each window's targets are made relative to the window's mean of the transformed target
(rnnkit.data.windows.relative_to_level), in training and in every forecast, which adds the mean back.

The intervals of a differenced series come from sample paths (Forecaster._paths, sample_steps).
`ensemble` N trains N members with seeds seed, seed + 1, ... into `out`/member-k (one member: into `out`);
a forecast is the median over the members of each quantile path. Each checkpoint's config records the
settings, the fitted transforms and the tail of the series (what `predict` continues by default).
"""
from __future__ import annotations

import math
import numbers
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .. import metrics as M
from ..checkpoint import CheckpointError, load_checkpoint
from ..data import datasets
from ..data.series import (SEASONAL_PERIOD, Series, calendar_features, check_lengths, format_date, from_pandas,
                           grid_positions, make_series, parse_date, read_series)
from ..data.transforms import SeriesTransform
from ..data.windows import batches, n_windows, relative_inputs, relative_to_level, sliding_windows
from ..engines import build_engine, check_engine
from ..runs import clear, is_run
from ..train import train
from . import forecast_baselines as B
from .backtest import historical_forecasts, start_index
from .checkpoints import load_checked_engine
from .conformal import FILE as CALIBRATION_FILE, Calibration, fingerprint
from .settings import ForecastSettings, parse_levels, settings_of


def interval_quantiles(levels) -> list[float]:
    """The quantiles of each level's lower and upper bound, in that order: (80, 95) -> 0.1, 0.9, 0.025, 0.975."""
    return [q for lv in levels for q in ((1 - lv / 100) / 2, 1 - (1 - lv / 100) / 2)]


def quantiles_for(levels) -> tuple[float, ...]:
    """The quantiles an interval at each level (percent) needs, and the median, sorted: 80 -> 0.1, 0.5, 0.9."""
    return tuple(sorted({0.5} | {round(q, 10) for q in interval_quantiles(parse_levels(levels))}))


def interval_scores(truth, point, intervals: dict) -> dict:
    """The scores of a forecast's intervals: coverage_L of each level L, and "pinball", the mean pinball loss
    (metrics.pinball) over the quantiles they stand for, the point forecast as the median (0.5) and each
    interval's bounds as its (1 -+ L/100)/2 quantiles. truth, point and every bound (horizon, outputs)."""
    out = {f"coverage_{lv:g}": M.coverage(truth, lo, hi) for lv, (lo, hi) in intervals.items()}
    bounds = [b for lo_hi in intervals.values() for b in lo_hi]
    out["pinball"] = M.pinball(truth, np.stack([point] + bounds, axis=-1), [0.5] + interval_quantiles(intervals))
    return out


MAX_QUANTILES = 99  # quantiles one predict_quantiles call gives (each a (horizon, outputs) array)
SAMPLES = 2000  # sample paths behind the intervals of a differenced series
# the farthest a history's model input (targets and covariates after their transforms: standard scores of
# the training part) may lie from 0; farther, the network only saturates and its forecast means nothing
MAX_STANDARD_SCORE = 1e4
MAX_SAMPLE_BYTES = 2 << 30  # the training windows a run may hold in memory


def sample_steps(out: np.ndarray, loss: str, quantiles, n: int, rng) -> np.ndarray:
    """n draws (n, horizon, outputs) of each step's z from a forecast out (horizon, outputs, K), the steps
    independent of each other: the Gaussian's mean + scale * N(0, 1), or a quantile model's inverse CDF,
    linear between its quantiles (u ~ U(0, 1); below the lowest or above the highest quantile: that one)."""
    if loss == "gaussian":
        return out[..., 0] + out[..., 1] * rng.standard_normal((n,) + out.shape[:-1])
    u = rng.random((n,) + out.shape[:-1])
    draws = np.empty_like(u)
    for idx in np.ndindex(*out.shape[:-1]):
        draws[(slice(None),) + idx] = np.interp(u[(slice(None),) + idx], quantiles, out[idx])
    return draws


def _names(text) -> tuple[str, ...]:
    if text is None:
        return ()
    return tuple(t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip())


def load_series(data) -> Series:
    """The series of ForecastData-like settings: a registered dataset or a user file."""
    if data.dataset is not None:
        series = datasets.load_series(data.dataset)
        if _names(data.target) or _names(data.covariates):
            raise ValueError("--target and --covariates choose columns of --data files; a dataset has its own")
        return series
    return read_series(data.data, data.date_column, _names(data.target) or None, _names(data.covariates),
                       data.fill, data.freq)


# ------------------------------------------------------------------------------------------------ features

@dataclass
class Features:
    """A series -> the model's arrays: the targets' and covariates' transforms and the calendar features."""

    target: SeriesTransform
    covariates: SeriesTransform | None
    freq: str
    calendar: str  # cyclic | onehot | none
    origin: str | None = None  # the first training date: position 0 of the target's trend

    @classmethod
    def fit(cls, train: Series, log: bool, diff: int, seasonal_diff: bool, calendar: str,
            log_offset: float = 0.0, trend: bool = False, trend_steps: int = 0,
            trend_damping: float = 1.0) -> "Features":
        season = SEASONAL_PERIOD[train.freq] if seasonal_diff else 0
        if seasonal_diff and season < 2:
            raise ValueError(f"{train.freq} data has no season to difference")
        target = SeriesTransform(log=log, offset=log_offset if log else 0.0, diff=diff, season=season,
                                 trend=trend, trend_steps=trend_steps, damping=trend_damping).fit(train.y)
        cov = SeriesTransform().fit(train.x) if train.covariates else None
        return cls(target, cov, train.freq, calendar, format_date(train.dates[0], train.freq))

    def position(self, series: Series) -> int:
        """The position of the series' first date on the grid, 0 at the first training date (the trend's t)."""
        if self.origin is None:
            return 0
        return int(grid_positions(np.array([parse_date(self.origin), series.dates[0]]), self.freq)[1])

    def inverse(self, z, history: Series) -> np.ndarray:
        """Forecasts z (..., horizon, outputs) continuing `history`, in the original scale."""
        return self.target.inverse(z, history.y, self.position(history))

    def calendar_of(self, dates) -> np.ndarray:
        if self.calendar == "none":
            return np.zeros((len(dates), 0))
        return calendar_features(dates, self.freq, self.calendar)[0]

    def arrays(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """(inputs (time - lost, input_size), target z (time - lost, outputs)) for rows lost .. time - 1."""
        lost = self.target.lost
        z = self.target.transform(series.y, self.position(series))
        parts = [z]
        if self.covariates is not None:
            parts.append(self.covariates.transform(series.x)[lost:])
        parts.append(self.calendar_of(series.dates[lost:]))
        return np.concatenate(parts, axis=1), z

    def to_config(self) -> dict:
        return {"target": self.target.to_dict(), "covariates": self.covariates and self.covariates.to_dict(),
                "freq": self.freq, "calendar": self.calendar, "origin": self.origin}

    @classmethod
    def from_config(cls, c: dict) -> "Features":
        cov = SeriesTransform.from_dict(c["covariates"]) if c.get("covariates") else None
        return cls(SeriesTransform.from_dict(c["target"]), cov, c["freq"], c["calendar"], c.get("origin"))


def _history_config(series: Series, rows: int) -> dict:
    tail = series.slice(-rows, None)
    return {"dates": [str(d) for d in tail.dates], "values": tail.values.tolist(), "target": list(series.target),
            "covariates": list(series.covariates), "freq": series.freq, "name": series.name}


def _series(series, name: str, target=None, covariates=()) -> Series:
    """`series` if it is a Series; a pandas Series or DataFrame indexed by dates as one (`from_pandas`, its
    columns `target` and `covariates`); else a TypeError saying how to make one."""
    if isinstance(series, Series):
        return series
    if hasattr(series, "index") and hasattr(series, "to_numpy"):
        return from_pandas(series, target, covariates)
    raise TypeError(f"{name} must be a Series (rnnkit.data.series.read_series(path) or make_series(dates, values, "
                    f"target)) or a pandas Series or DataFrame indexed by dates, got {type(series).__name__}")


def _whole(value, name: str) -> int:
    """`value` as an int if it is a whole number (not a bool, not 2.5), else a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _history_from_config(c: dict) -> Series:
    return make_series(c["dates"], np.array(c["values"]), c["target"], c["covariates"], c["freq"], name=c["name"])


# ------------------------------------------------------------------------------------------------ training

class ForecastTask:
    """The trainer's view (rnnkit/train.py): shuffled windows, reshuffled each epoch from (seed, epoch)."""

    carries = False

    def __init__(self, samples: dict, valid: dict, batch_size: int, seed: int, config: dict):
        self.samples, self.valid, self.batch_size, self.seed, self.config = samples, valid, batch_size, seed, config
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        """Train on rank `rank`'s share of each of `world` processes' batches (torchrun; batching.rank_rows)."""
        self.rank, self.world = rank, world

    def num_batches(self) -> int:
        return math.ceil(len(self.samples["x"]) / (self.batch_size * self.world))

    def batches(self, epoch: int, start: int):
        for k, batch in enumerate(batches(self.samples, self.batch_size, self.seed, epoch, rank=self.rank,
                                          world=self.world)):
            if k >= start:
                yield batch

    @staticmethod
    def batch_tokens(batch) -> int:
        return len(batch["x"])

    def evaluate(self, engine) -> dict:
        total, count = 0.0, 0
        with engine.locked_weights():
            for batch in batches(self.valid, 256, shuffle=False):
                loss, n, _ = engine.eval_loss(batch)
                total, count = total + loss, count + n
        return {"loss": total / count}

    def checkpoint_config(self) -> dict:
        return self.config


def _cut(samples: dict, keep: np.ndarray) -> dict:
    return {k: v[keep] for k, v in samples.items()}


def prepare(s: ForecastSettings, series: Series):
    """(features, training samples, validation samples, model kwargs, the training part, held-out steps)."""
    data, model = s.data, s.model
    test = model.horizon if data.test is None else data.test
    n_fit = len(series) - test - data.valid
    held = " and ".join(f"{v} for {k}" for k, v in (("--test", test), ("--valid", data.valid)) if v)
    check_lengths(max(n_fit, 0), model.window, model.horizon,
                  what=f"to train on ({len(series)} less {held})" if held else "")
    train_part = series.slice(None, n_fit)
    features = Features.fit(train_part, model.log, model.diff, model.seasonal_diff, model.calendar, model.log_offset,
                             model.trend, model.trend_steps, model.trend_damping)
    lost = features.target.lost
    check_lengths(n_fit - lost, model.window, model.horizon)
    known = series.slice(None, len(series) - test)            # training + validation parts
    inputs, z = features.arrays(known)
    future = features.calendar_of(known.dates[lost:])
    count = n_windows(len(z), model.window, model.horizon)
    size = 8 * count * (model.window * inputs.shape[1] + model.horizon * (2 * z.shape[1] + future.shape[1]))
    if size > MAX_SAMPLE_BYTES:
        raise ValueError(f"{count} windows of {model.window} + {model.horizon} steps would take {size / 2**30:.1f} "
                         f"GiB (limit {MAX_SAMPLE_BYTES / 2**30:.0f} GiB); use a shorter --window or less data")
    samples = sliding_windows(inputs, z, model.window, model.horizon, future if future.shape[1] else None)
    if model.local_level:
        samples = relative_to_level(samples, z.shape[1])
    ends = np.arange(len(samples["x"])) + model.window + model.horizon + lost  # one past each sample's last row
    train_samples = _cut(samples, ends <= n_fit)
    valid_samples = _cut(samples, ends > n_fit) if data.valid else train_samples
    if len(valid_samples["x"]) == 0:
        raise ValueError(f"--valid {data.valid} leaves no validation window; use --valid >= 1")
    quantiles = quantiles_for(model.levels) if model.loss == "quantile" else ()
    kwargs = dict(input_size=inputs.shape[1], output_size=z.shape[1], horizon=model.horizon,
                  future_size=future.shape[1], hidden_size=model.hidden, num_layers=model.layers, cell=model.cell,
                  dropout=model.dropout, decoder=model.decoder, loss=model.loss, quantiles=list(quantiles),
                  teacher_forcing=model.teacher_forcing)
    return features, train_samples, valid_samples, kwargs, train_part, test


def train_forecaster(settings: ForecastSettings | None = None, *, series: Series | None = None, log=print,
                     **options) -> list:
    """Train a forecaster (or `ensemble` of them) on `settings`; returns the members' TrainResults.

    series: train on this Series instead of the settings' dataset or file (the settings must still name a
    source; it is recorded, e.g. data="given")."""
    s = settings_of("forecast", settings, None, options)
    series = load_series(s.data) if series is None else _series(series, "series", _names(s.data.target),
                                                                  _names(s.data.covariates))
    features, samples, valid, kwargs, train_part, test = prepare(s, series)
    t = s.training
    log(f"{series.name or 'series'}: {len(series)} {series.freq} steps, {len(train_part)} to train on "
        f"({len(samples['x'])} windows), {s.data.valid} to validate, {test} held out; "
        f"{kwargs['input_size']} inputs, {kwargs['future_size']} known-future features")
    config = {"task": "forecast", "model": kwargs, "features": features.to_config(),
              "history": _history_config(series, min(len(series), max(s.model.window + features.target.lost + 1,
                                                                    3 * s.model.horizon))),
              "settings": s.to_dict(), "training": asdict(t), "dtype": t.dtype}
    results = []
    for k in range(s.model.ensemble):
        member = replace(t, seed=t.seed + k, out=t.out if s.model.ensemble == 1 else str(Path(t.out) / f"member-{k}"))
        if t.resume and s.model.ensemble > 1 and not (Path(member.out) / "last" / "config.json").exists():
            # an ensemble stopped part way: the members it never reached (or stopped before their first save,
            # their folder holding only what this run wrote) start now
            member = replace(member, resume=False, overwrite=True)
        eng = build_engine(member.engine, "Forecaster", kwargs, **member.engine_options())
        if k == 0:  # once the data and the model are known to be good
            _make_room(Path(t.out), s.model.ensemble, t.overwrite, t.resume)
        task = ForecastTask(samples, valid, member.batch_size, member.seed, dict(config, member=k))
        results.append(train(task, eng, member, member.out, resume=member.resume))
    return results


def _make_room(out: Path, members: int, overwrite: bool, resume: bool) -> None:
    """`out` ready for a model of `members` (1: a single run in `out`, else runs out/member-k): the model
    already there, a single run or an ensemble's member-* runs and its calibration, is replaced whole with
    `overwrite` (no stale member, best/ or calibration is then loaded beside the new model; nothing else is
    touched), and refused without it (a new member-0 beside an old single run's best/ was silently ignored)."""
    if resume or not out.is_dir():
        return
    old = ([out] if is_run(out) else []) + sorted(p for p in out.glob("member-*") if p.is_dir() and is_run(p))
    if old and not overwrite:
        raise ValueError(f"{out} already holds a forecaster ({'an ensemble' if old[0] != out else 'a run'}): "
                         f"continue it with --resume, replace it with --overwrite, or name another --out")
    others = [p.name for p in out.iterdir() if p not in old and p.name != CALIBRATION_FILE]
    if members == 1 and old and out not in old and others:  # the run would go into a folder of other files
        raise ValueError(f"{out} holds other files beside its ensemble ({', '.join(sorted(others)[:3])}): name a "
                         f"new or empty --out for a single model")
    for run in old:
        clear(run)
        if run != out and not any(run.iterdir()):
            run.rmdir()
    if old:
        (out / CALIBRATION_FILE).unlink(missing_ok=True)  # made for the weights replaced


# ------------------------------------------------------------------------------------------------ use

def checkpoint_paths(path) -> list[Path]:
    """The checkpoints a forecaster is: a checkpoint folder, a run folder (its best/), or an ensemble folder
    (every member-*/best/)."""
    path = Path(path)
    if (path / "config.json").exists():
        return [path]
    if (path / "best" / "config.json").exists():
        return [path / "best"]
    members = sorted(p.parent for p in path.glob("member-*/best/config.json"))
    if not members:
        raise FileNotFoundError(f"{path}: no forecaster checkpoint (config.json, best/ or member-*/best/) there")
    return members


class Forecaster:
    """Train, forecast, backtest and evaluate (see the module docstring).

    Forecaster(settings or settings by name) -> .fit(series=None) trains; Forecaster.from_pretrained(path)
    loads a trained one (on `engine`)."""

    def __init__(self, settings: ForecastSettings | None = None, **options):
        self.settings = settings_of("forecast", settings, None, options) if (settings or options) else None
        self.engines, self.features, self.config, self.history = [], None, {}, None
        self.calibration: Calibration | None = None

    def fit(self, series: Series | None = None, log=print) -> "Forecaster":
        if self.settings is None:
            raise ValueError("a Forecaster needs settings to fit (Forecaster(dataset=..., horizon=...))")
        results = train_forecaster(self.settings, series=series, log=log)
        out = Path(self.settings.training.out)
        self._load([r.best for r in results], self.settings.training.engine, self.settings.training.device)
        self.run_dir = out
        return self

    @classmethod
    def from_pretrained(cls, path, engine: str = "scratch", device: str = "auto") -> "Forecaster":
        f = cls()
        f._load(checkpoint_paths(path), engine, device)
        f.use_calibration(Calibration.load(path), str(Path(path) / CALIBRATION_FILE))
        return f

    def _load(self, paths, engine: str, device: str) -> None:
        check_engine(engine)
        self.engines, self.engine_name, self.device, self.calibration = [], engine, device, None
        weights = []
        for p in paths:
            ckpt = load_checkpoint(p)
            if ckpt.config.get("task") != "forecast":
                raise ValueError(f"{p} holds a {ckpt.config.get('task')!r} model, not a forecaster")
            eng = load_checked_engine(engine, "Forecaster", ckpt.config.get("model"), ckpt.weights,
                                      ckpt.config.get("dtype", "float32"), Path(p) / "config.json", device)
            weights.append(ckpt.weights)
            self.engines.append(eng)
            if self.engines[1:] and ckpt.config.get("settings") != self.config.get("settings"):
                raise ValueError(f"{p} was trained with other settings than {paths[0]}: not one ensemble")
            self.config = ckpt.config
        try:  # the rest of config.json: as untrusted as the model's settings
            self.settings = ForecastSettings.from_flat(flat_settings(self.config["settings"]))
            self.features = Features.from_config(self.config["features"])
            self.history = _history_from_config(self.config["history"])
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{Path(paths[-1]) / 'config.json'}: its settings, features or history are not "
                                  f"valid ({type(e).__name__}: {e})") from None
        ensemble = self.settings.model.ensemble
        if len(paths) > 1 and len(paths) != ensemble:
            raise ValueError(f"{len(paths)} members found ({paths[0].parent.parent} ...) for an ensemble of {ensemble}"
                             f"; remove the stale member-* folders")
        self.fingerprint = fingerprint(weights)

    # -------------------------------------------------------------------------------------- forecasts
    @property
    def horizon(self) -> int:
        return int(self.config["model"]["horizon"])

    @property
    def window(self) -> int:
        return self.settings.model.window

    def _as_series(self, series, name: str) -> Series:
        """`series` as a Series of this model's columns (`_series`: a pandas one converted)."""
        c = self.config.get("history", {})
        return _series(series, name, c.get("target"), c.get("covariates", ()))

    def _check_history(self, history: Series | None, horizon: int | None) -> tuple[Series, int]:
        if not self.engines:
            raise ValueError("the forecaster is not trained: call fit() or from_pretrained()")
        history = self.history if history is None else self._as_series(history, "history")
        horizon = self.horizon if horizon is None else _whole(horizon, "horizon")
        if not 1 <= horizon <= self.horizon:
            raise ValueError(f"this model forecasts 1..{self.horizon} steps, got a horizon of {horizon}")
        want = (tuple(self.config["history"]["target"]), tuple(self.config["history"]["covariates"]))
        if (history.target, history.covariates) != want or history.freq != self.features.freq:
            raise ValueError(f"the history has targets {list(history.target)}, covariates {list(history.covariates)}"
                             f" ({history.freq}); the model was trained on {list(want[0])}, {list(want[1])} "
                             f"({self.features.freq})")
        need = self.window + self.features.target.lost
        if len(history) < need:
            raise ValueError(f"the history has {len(history)} steps; the model needs the last {need}")
        return history, horizon

    def _paths(self, history: Series, horizon: int, qs) -> np.ndarray:
        """Forecast paths (len(qs), horizon, outputs) in the original scale, the median over the members: the
        point forecast for q = None, else the quantile q of each step.

        Without differences the transform is monotone, so a quantile of z maps to the same quantile of y.
        With differences a level is a sum of steps, and a sum of quantiles is no quantile of the sum: the
        quantiles then come from SAMPLES paths, each step drawn on its own from the model's distribution
        (the inverse CDF through its quantiles, or the Gaussian), inverted, and counted per step."""
        inputs, _ = self.features.arrays(history)
        x = inputs[-self.window:][None]
        far = np.abs(x) > MAX_STANDARD_SCORE
        if far.any() or not np.isfinite(x).all():
            step = int(np.argwhere(far | ~np.isfinite(x))[0, 1]) + len(inputs) - self.window
            raise ValueError(f"the history's values lie too far from the series the model was trained on (at "
                             f"{format_date(history.dates[step + self.features.target.lost], history.freq)}, "
                             f"more than {MAX_STANDARD_SCORE:g} standard deviations of the training part "
                             f"after the model's transforms): its forecast would mean nothing")
        future = self.features.calendar_of(history.future_dates(self.horizon))
        future = future[None] if future.shape[1] else None
        model = self.config["model"]
        loss, quantiles = model["loss"], [round(q, 10) for q in model["quantiles"]]
        level = None
        if self.settings.model.local_level:  # relative to the window's level, as in training (`prepare`)
            x, levels = relative_inputs(x, model["output_size"])
            level = levels[0, 0]  # (outputs,)
        wanted = [q for q in qs if q is not None]
        if wanted and loss not in ("quantile", "gaussian"):
            raise ValueError(f"this model was trained with the {loss} loss: it gives point forecasts only; "
                             f"train with --loss quantile or gaussian for intervals")
        inverse = self.features.inverse
        paths = []
        for eng in self.engines:
            with eng.locked_weights():
                out = np.asarray(eng.predict(x, future), dtype=np.float64)[0, :horizon]  # (horizon, outputs, K)
            if loss == "quantile":
                out = np.sort(out, axis=-1)  # uncrossed: the sorted values are closer to the true quantiles
            if level is not None and loss == "gaussian":  # the level back: a shift of the mean (the scale stays)
                out[..., 0] += level
            elif level is not None:  # or of every quantile (the point forecast's one value)
                out = out + level[:, None]
            point = out[..., quantiles.index(0.5)] if loss == "quantile" else out[..., 0]
            if self.features.target.lost and wanted:
                ys = inverse(sample_steps(out, loss, quantiles, SAMPLES, np.random.default_rng(0)), history)
                at = dict(zip(wanted, np.quantile(ys, wanted, axis=0)))
                paths.append(np.stack([inverse(point, history) if q is None else at[q] for q in qs]))
                continue
            z = [point if q is None else out[..., 0] + out[..., 1] * NormalDist().inv_cdf(q) if loss == "gaussian"
                 else out[..., quantiles.index(round(q, 10))] for q in qs]
            paths.append(inverse(np.stack(z), history))
        return np.median(np.stack(paths), axis=0)

    def predict(self, horizon: int | None = None, history: Series | None = None) -> dict:
        """The point forecast after `history` (default: the end of the series the model was trained on):
        {"dates": (horizon,) datetime64, "forecast": (horizon, outputs)}."""
        history, horizon = self._check_history(history, horizon)
        return {"dates": history.future_dates(horizon), "forecast": self._paths(history, horizon, [None])[0],
                "target": list(history.target)}

    def levels(self) -> tuple[float, ...]:
        return parse_levels(self.settings.model.levels)

    def _check_levels(self, levels) -> tuple[float, ...]:
        """The interval levels asked for (None: the model's), each one this model can give."""
        levels = self.levels() if levels is None else parse_levels(levels)
        if self.config["model"]["loss"] == "quantile":
            have = set(round(q, 10) for q in self.config["model"]["quantiles"])
            missing = [lv for lv in levels if not set(quantiles_for([lv])) <= have]
            if missing:
                raise ValueError(f"this model was trained for the levels {list(self.levels())}; {missing} need "
                                 f"other quantiles (train with --levels)")
        return levels

    def _bands(self, history: Series, horizon: int, levels) -> tuple[np.ndarray, dict]:
        """(the point forecast (horizon, outputs), {level: (lower, upper)}): the model's own intervals."""
        paths = self._paths(history, horizon, [None] + interval_quantiles(levels))
        lower, upper = np.minimum(paths[1::2], paths[2::2]), np.maximum(paths[1::2], paths[2::2])
        return paths[0], {lv: (lower[i], upper[i]) for i, lv in enumerate(levels)}

    def predict_interval(self, horizon: int | None = None, levels=None, history: Series | None = None,
                         calibrated: bool = True) -> dict:
        """predict()'s dict with "intervals": {level: (lower, upper)}, each (horizon, outputs). levels in
        percent; a quantile model knows the levels it was trained for (--levels), a Gaussian one any.
        With a calibration (`calibrate`, or calibration.json beside the checkpoint) and `calibrated`, the
        intervals are its conformal ones, and "calibrated" tells from how many forecasts."""
        history, horizon = self._check_history(history, horizon)
        levels = self._check_levels(levels)
        point, intervals = self._bands(history, horizon, levels)
        out = {"dates": history.future_dates(horizon), "forecast": point, "target": list(history.target)}
        if calibrated and self.calibration is not None:
            intervals = {lv: self.calibration.apply(lv, lo, hi) for lv, (lo, hi) in intervals.items()}
            for inner, outer in zip(levels, levels[1:]):  # margins of few forecasts may cross: keep them nested
                (lo, hi), (olo, ohi) = intervals[inner], intervals[outer]
                intervals[outer] = (np.minimum(lo, olo), np.maximum(hi, ohi))
            out["calibrated"] = self.calibration.summary()
        return out | {"intervals": intervals}

    def predict_quantiles(self, horizon: int | None = None, quantiles=None, history: Series | None = None) -> dict:
        """predict()'s dict with "quantiles", the levels q asked for, and "values" (len(quantiles), horizon,
        outputs), the quantile q of each step (sktime's predict_quantiles): the model's own, as a calibration
        widens intervals, not quantiles. A quantile model gives the quantiles it was trained for (default: all
        of them), a Gaussian one any q in (0, 1) (default: 0.1, 0.5, 0.9)."""
        history, horizon = self._check_history(history, horizon)
        model = self.config["model"]
        if not self._has_intervals():
            raise ValueError(f"this model was trained with the {model['loss']} loss: it gives point forecasts "
                             f"only; train with --loss quantile or gaussian for quantiles")
        trained = [round(q, 10) for q in model["quantiles"]]
        if quantiles is None:
            quantiles = trained if model["loss"] == "quantile" else [0.1, 0.5, 0.9]
        if isinstance(quantiles, numbers.Real):
            quantiles = [quantiles]
        try:
            items = quantiles.split(",") if isinstance(quantiles, str) else list(quantiles)
        except TypeError:
            raise ValueError(f"quantiles must be numbers in (0, 1), e.g. 0.1,0.5,0.9; got {quantiles!r}") from None
        qs = [q for q in items if str(q).strip()]
        try:
            qs = [round(float(q), 10) for q in qs]
        except (TypeError, ValueError):
            raise ValueError(f"quantiles must be numbers in (0, 1), e.g. 0.1,0.5,0.9; got {quantiles!r}") from None
        if not qs or not all(0 < q < 1 for q in qs):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {quantiles!r}")
        if len(qs) > MAX_QUANTILES:
            raise ValueError(f"at most {MAX_QUANTILES} quantiles a forecast, got {len(qs)}")
        if model["loss"] == "quantile" and not set(qs) <= set(trained):
            raise ValueError(f"this model was trained for the quantiles {trained}; "
                             f"{sorted(set(qs) - set(trained))} are not among them (train with --levels)")
        values = self._paths(history, horizon, [None] + qs)
        return {"dates": history.future_dates(horizon), "forecast": values[0], "target": list(history.target),
                "quantiles": qs, "values": values[1:]}

    # -------------------------------------------------------------------------------------- calibration
    def _scale(self) -> float | None:
        """The scale of the conformal scores: None for y, else the log model's offset (log(y + offset))."""
        return self.features.target.offset if self.features.target.log else None

    def calibrate(self, forecasts: int = 12, stride: int = 1, series: Series | None = None, retrain: int = 1,
                  levels=None, log=lambda line: None) -> Calibration:
        """Calibrate the intervals (rnnkit.tasks.conformal) on `forecasts` forecasts of the whole horizon made
        every `stride` steps, the last ending where the held-out test part begins (the series' end with test
        = 0): each from a model with these settings and seeds trained anew on the history before it (before
        every `retrain`-th forecast; the later ones feed that model the longer history), so no forecast is
        scored on steps its model trained on. Sets and returns self.calibration (save it with .save(folder))."""
        if not self._has_intervals():
            raise ValueError("this model gives point forecasts only (--loss mse/mae): nothing to calibrate")
        if forecasts < 1 or stride < 1 or retrain < 1:
            raise ValueError(f"forecasts, stride and retrain must be >= 1, got {forecasts}, {stride}, {retrain}")
        series = self.series() if series is None else self._as_series(series, "series")
        d, horizon = self.settings.data, self.horizon
        test = horizon if d.test is None else d.test
        last = len(series) - test - horizon
        first = last - stride * (forecasts - 1)
        need = self.window + self.features.target.lost + horizon + d.valid  # one training window, the valid part
        if first < need:
            most = max(0, (last - need) // stride + 1)
            raise ValueError(f"{forecasts} forecasts every {stride} steps would start at row {first}, but a model "
                             f"needs {need} steps of history to train: at most {most} fit in this series of "
                             f"{len(series)} steps with {test} held out")
        levels = self.levels() if levels is None else parse_levels(levels)
        starts = list(range(first, last + 1, stride))
        truth, bounds = [], {lv: ([], []) for lv in levels}
        with tempfile.TemporaryDirectory(prefix="rnnkit-calibrate-") as scratch:
            for i, t in enumerate(starts):
                history = series.slice(None, t)
                if i % retrain == 0:
                    log(f"training on the {t} steps before {format_date(series.dates[t], series.freq)} "
                        f"({i // retrain + 1} of {(len(starts) - 1) // retrain + 1})")
                    model = self.refit(history, Path(scratch) / "refit")
                r = model.predict_interval(horizon, levels, history, calibrated=False)
                truth.append(series.y[t:t + horizon])
                for lv, (lo, hi) in r["intervals"].items():
                    bounds[lv][0].append(lo)
                    bounds[lv][1].append(hi)
        intervals = {lv: (np.stack(lo), np.stack(hi)) for lv, (lo, hi) in bounds.items()}
        origins = [format_date(series.dates[t], series.freq) for t in starts]
        self.calibration = Calibration.fit(np.stack(truth), intervals, self._scale(), origins, retrain,
                                           self.fingerprint)
        return self.calibration

    def use_calibration(self, calibration: Calibration | None, where: str = "the calibration") -> None:
        """Apply `calibration` (None: none) to the intervals, after checking that it belongs to this model."""
        if calibration is not None:
            if calibration.fingerprint != self.fingerprint:
                raise ValueError(f"{where} was computed for a model with other weights: calibrate this one "
                                 f"again (rnnkit calibrate) or remove the file")
            outputs = len(self.config["history"]["target"])
            shape = next(iter(calibration.margins.values())).shape
            if shape != (self.horizon, outputs) or calibration.offset != self._scale():
                raise ValueError(f"{where} does not fit this model: margins {shape} in the scale "
                                 f"{calibration.offset}, the model forecasts {(self.horizon, outputs)} in "
                                 f"{self._scale()}")
        self.calibration = calibration

    # -------------------------------------------------------------------------------------- evaluation
    def series(self) -> Series:
        """The series the model was trained on, read again from its dataset or file."""
        return load_series(self.settings.data)

    def historical_forecasts(self, start, horizon: int | None = None, stride: int = 1, series: Series | None = None,
                             retrain: bool | int = False, levels=(), log=lambda line: None) -> dict:
        """The forecasts a backtest scores (darts' historical_forecasts): from `start` (a row, a fraction, or a
        date as in the file) every `stride` steps while the horizon fits, each from the history before it:
        {"starts": (n,) rows, "dates": (n,) first dates, "forecasts": (n, horizon, outputs), "intervals":
        [{level: (lower, upper)}, ...] one a forecast (the model's own at `levels`; () none)}.

        retrain: False: this model forecasts every time, fed the longer history (darts' retrain=False);
        True: a model with this one's settings and seeds is trained anew on the history before each forecast
        (an expanding window: it sees nothing after it; its last `valid` steps choose the checkpoint); an int
        k: anew before every k-th forecast (`refit`)."""
        series = self.series() if series is None else self._as_series(series, "series")
        horizon = self.horizon if horizon is None else _whole(horizon, "horizon")
        if not 1 <= horizon <= self.horizon:
            raise ValueError(f"this model forecasts 1..{self.horizon} steps, got a horizon of {horizon}")
        levels = self._check_levels(levels) if _asks_for_levels(levels) else ()
        first = series.index_of(start) if isinstance(start, str) else start
        first = max(start_index(len(series), first, horizon), self.window + self.features.target.lost)
        bands = []  # each forecast's intervals
        with tempfile.TemporaryDirectory(prefix="rnnkit-backtest-") as scratch:
            def fit_fn(history):
                if not retrain:
                    return self
                log(f"retraining on the {len(history)} steps before "
                    f"{format_date(series.dates[len(history)], series.freq)}")
                return self.refit(series.slice(None, len(history)), Path(scratch) / f"refit-{len(history)}")

            def predict_fn(model, history, h):
                point, intervals = model._bands(series.slice(None, len(history)), h, levels)
                bands.append(intervals)
                return point

            starts, forecasts = historical_forecasts(series.y, first, horizon, stride, fit_fn, predict_fn, retrain)
        return {"starts": starts, "dates": series.dates[starts], "forecasts": forecasts, "intervals": bands}

    def backtest(self, start, horizon: int | None = None, stride: int = 1, series: Series | None = None,
                 m: int | None = None, retrain: bool | int = False, last_points_only: bool = False,
                 levels=None, baselines=B.NUMPY_BASELINES, log=lambda line: None) -> dict:
        """`historical_forecasts` scored (rnnkit.tasks.backtest): {"starts": [dates], "per_forecast": {metric:
        [...]}, metric: mean over the forecasts, "baselines": {name: {metric: mean}}}, the `baselines`
        forecasting from the same histories and scored alike.

        last_points_only: score the series made of each forecast's last point as one forecast (darts'
        historical_forecasts default) instead of the mean. levels: the intervals scored beside the point
        forecasts, coverage_L and "pinball" (`interval_scores`; None: the model's levels, () none; a point
        model has none): the model's own intervals, never a calibration's, whose forecasts may overlap the
        backtest's; the baselines' own at the same levels. "forecasts": every forecast, (n, horizon, outputs)
        as nested lists, in the series' scale."""
        series = self.series() if series is None else self._as_series(series, "series")
        levels = levels if self._has_intervals() else ()
        h = self.historical_forecasts(start, horizon, stride, series, retrain, levels, log)
        starts, forecasts, levels = h["starts"], h["forecasts"], list(h["intervals"][0]) if h["intervals"] else []
        horizon, m = forecasts.shape[1], series.season if m is None else m
        out = {"starts": [format_date(d, series.freq) for d in h["dates"]], "horizon": horizon, "stride": stride,
               "retrain": retrain, "last_points_only": last_points_only, "levels": levels,
               "forecasts": forecasts.tolist()}
        out |= _score_forecasts(series.y, starts, forecasts, h["intervals"], levels, m, last_points_only)
        out["baselines"] = {}
        for name in baselines:
            try:
                runs = [_baseline_forecast(name, m, series.y[:t], horizon, levels) for t in starts]
            except ValueError:  # a history too short for it (seasonal naive before a whole season)
                continue
            scores = _score_forecasts(series.y, starts, np.stack([f for f, _ in runs]), [b for _, b in runs],
                                      levels if all(b for _, b in runs) else (), m, last_points_only)
            out["baselines"][name] = {k: v for k, v in scores.items() if k != "per_forecast"}
        return out

    def refit(self, series: Series, out) -> "Forecaster":
        """A forecaster with this one's settings (and seeds, on its engine) trained anew on the whole of
        `series` (nothing held out), into the run folder `out` (replaced)."""
        s = self.settings.replace(test=0, out=str(out), overwrite=True, verbose=False, progress=False, plot=False,
                                  resume=False, engine=self.engine_name, device=self.device)
        return Forecaster(s).fit(series, log=lambda *a: None)

    def evaluate(self, series: Series | None = None, test: int | None = None, baselines=B.NUMPY_BASELINES,
                 plot: str | None = None) -> dict:
        """The forecast of the held-out last `test` steps (default: the run's) from the history before them,
        scored beside the baselines on the same history: {"model": {metric: v}, "baselines": {name: {...}}};
        with intervals, the baselines' own (forecast_baselines.baseline_intervals) are scored at the same levels;
        `plot`: a PNG path for the figure (history, forecast, intervals, the held-out truth)."""
        series = self.series() if series is None else self._as_series(series, "series")
        if test is None:
            test = self.settings.data.test if self.settings.data.test is not None else self.horizon
        if _whole(test, "test") == 0:
            raise ValueError("nothing is held out (test = 0): give --test N")
        history, truth = series.split(test)
        result = self.predict_interval(test, history=history) if self._has_intervals() else self.predict(test, history)
        m = series.season if len(history) > series.season else 1
        report = {"held_out": test, "first": format_date(truth.dates[0], series.freq), "m": m,
                  "model": _scores(truth.y, result["forecast"], history.y, m), "baselines": {}}
        if "intervals" in result:
            report["model"] |= interval_scores(truth.y, result["forecast"], result["intervals"])
        if "calibrated" in result:
            raw = self.predict_interval(test, history=history, calibrated=False)
            own = interval_scores(truth.y, raw["forecast"], raw["intervals"])
            report["model"] |= {f"{k}_uncalibrated": v for k, v in own.items()}
            report["calibrated"] = result["calibrated"]
        levels = list(result.get("intervals", ()))
        for name in baselines:  # with the baseline's own intervals at the model's levels, scored alike
            point, intervals = _baseline_forecast(name, m, history.y, test, levels)
            report["baselines"][name] = _scores(truth.y, point, history.y, m) | (
                interval_scores(truth.y, point, intervals) if intervals else {})
        report["forecast"] = result["forecast"].tolist()
        if plot:
            report["plot"] = str(plot_forecast(result, history, plot, truth.y))
        return report

    def _has_intervals(self) -> bool:
        return self.config["model"]["loss"] in ("quantile", "gaussian")


def flat_settings(sections: dict) -> dict:
    """Settings.to_dict()'s sections -> the flat mapping Settings.from_flat takes."""
    return {k: v for section in sections.values() for k, v in section.items()}


def _asks_for_levels(levels) -> bool:
    """Whether `levels` asks for intervals: None (the model's), a number or text, or a non-empty list."""
    return not isinstance(levels, (list, tuple)) or len(levels) > 0


def _baseline_forecast(name: str, m: int, history: np.ndarray, horizon: int, levels) -> tuple[np.ndarray, dict]:
    """(the baseline's forecast, its own intervals at `levels`; {} where its history is too short for them)."""
    if levels:
        try:
            return B.baseline_intervals(name, m)(history, horizon, levels)
        except ValueError:
            pass
    return B.baseline(name, m)(history, horizon), {}


def _score_forecasts(y: np.ndarray, starts, forecasts: np.ndarray, bands: list, levels, m: int,
                     last_points_only: bool) -> dict:
    """A backtest's scores: per forecast ("per_forecast") and their means, or with `last_points_only` the
    series of each forecast's last point as one forecast (MASE scaled by the history before the first);
    with `levels`, each forecast's intervals (bands, {level: (lower, upper)} a forecast) scored too."""
    if last_points_only:
        ends = np.asarray(starts) + forecasts.shape[1] - 1
        last = {lv: tuple(np.stack([b[lv][k][-1] for b in bands]) for k in (0, 1)) for lv in levels}
        return _scores(y[ends], forecasts[:, -1], y[:starts[0]], m) | (
            interval_scores(y[ends], forecasts[:, -1], last) if levels else {})
    horizon = forecasts.shape[1]
    per = [_scores(y[t:t + horizon], f, y[:t], m) | (interval_scores(y[t:t + horizon], f, b) if levels else {})
           for t, f, b in zip(starts, forecasts, bands)]
    out = {"per_forecast": {k: [p[k] for p in per] for k in per[0]}}
    return out | {k: (None if None in v else float(np.mean(v))) for k, v in out["per_forecast"].items()}


def _scores(truth, forecast, history, m: int) -> dict:
    """MAE, RMSE, MAPE, sMAPE, MASE of one forecast; None where a metric is undefined (MAPE with zeros)."""
    out = {}
    for name in ("mae", "rmse", "mape", "smape", "mase"):
        try:
            out[name] = M.mase(truth, forecast, history, m) if name == "mase" else getattr(M, name)(truth, forecast)
        except ValueError:
            out[name] = None
    return out


def plot_forecast(result: dict, history: Series, path, truth=None, steps: int | None = None) -> Path:
    """The figure of a forecast dict (rnnkit.plots.plot_forecast), a panel per target: the last `steps` of
    the history (default: 3 horizons), the forecast, its intervals and the truth (horizon, targets) if given."""
    from ..plots import plot_forecast as draw

    tail = history.slice(-(steps or 3 * len(result["dates"])), None)
    return draw(tail.dates, tail.y, result["dates"], result["forecast"], path, result.get("intervals", {}), truth,
                title=f"{history.name or 'forecast'}", label=list(history.target))


def plot_backtest(series: Series, report: dict, path) -> Path:
    """The figure of a backtest report (Forecaster.backtest on `series`; rnnkit.plots.plot_backtest): the
    series from a window before the first forecast, and every forecast (or the series of their last points)."""
    from ..plots import plot_backtest as draw

    starts = np.array([series.index_of(d) for d in report["starts"]])
    horizon = report["horizon"]
    tail = series.slice(max(0, starts[0] - 3 * horizon), None)
    when = series.dates[starts[:, None] + np.arange(horizon)]
    title = f"{series.name or 'backtest'}: {len(starts)} forecasts of {horizon} steps"
    return draw(tail.dates, tail.y, when, report["forecasts"], path, title, list(series.target),
                report["last_points_only"])


def format_forecast(result: dict, freq: str) -> str:
    """A forecast dict as a table: date, forecast and interval bounds (or quantiles) per target."""
    head = ["date"]
    for t in result["target"]:
        head.append(t)
        for lv in result.get("intervals", {}):
            head += [f"lo{lv:g}", f"hi{lv:g}"]
        head += [f"q{q:g}" for q in result.get("quantiles", ())]
    lines = ["\t".join(head)]
    for i, d in enumerate(result["dates"]):
        row = [format_date(d, freq)]
        for j in range(len(result["target"])):
            row.append(f"{result['forecast'][i, j]:.4g}")
            for lo, hi in result.get("intervals", {}).values():
                row += [f"{lo[i, j]:.4g}", f"{hi[i, j]:.4g}"]
            row += [f"{v:.4g}" for v in result["values"][:, i, j]] if "quantiles" in result else []
        lines.append("\t".join(row))
    return "\n".join(lines)


def to_json(result: dict, freq: str) -> dict:
    """A forecast dict as JSON-ready lists (quantiles as {"0.1": (horizon, outputs) lists, ...})."""
    out = {"dates": [format_date(d, freq) for d in result["dates"]], "target": result["target"],
           "forecast": np.asarray(result["forecast"]).tolist()}
    if "intervals" in result:
        out["intervals"] = {f"{lv:g}": {"lower": lo.tolist(), "upper": hi.tolist()}
                            for lv, (lo, hi) in result["intervals"].items()}
    if "quantiles" in result:
        out["quantiles"] = {f"{q:g}": v.tolist() for q, v in zip(result["quantiles"], result["values"])}
    if "calibrated" in result:
        out["calibrated"] = result["calibrated"]
    return out
