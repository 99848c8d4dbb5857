"""Conformal calibration of a forecaster's intervals on forecasts it did not train on.

A quantile (or Gaussian) forecaster learns its intervals on its training windows, where it fits best, so held
out they are too narrow. Conformalised quantile regression (Romano, Patterson and Candès, 2019), step by step
of the horizon: each calibration forecast's interval (lower_h, upper_h) and the truth y_h give the score

    s_h = max(lower_h - y_h, y_h - upper_h)      (> 0: y_h outside by that much; < 0: inside)

taken in the model's own scale: log(y + offset) for a model of the log (a ratio of y), y otherwise. At level L
(a fraction) with n calibration forecasts the margin is

    E_h = the ceil((n + 1) L)-th smallest of the n scores s_h

and the calibrated interval is [lower_h - E_h, upper_h + E_h]: if the new forecast's score is exchangeable with
the calibration forecasts', it covers y_h with probability >= L. With fewer than L / (1 - L) forecasts (19 for
95 %) that rank passes n: the margin is then the largest score and the guarantee is void ("guaranteed" false).

A `Calibration` is saved as `calibration.json` in the folder the forecaster was loaded from, with a fingerprint
of the members' weights, and is refused by a forecaster with other weights.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint.atomic import write_json

FILE = "calibration.json"
FORMAT = "rnnkit-forecast-calibration"
MAX_BYTES = 16 * 2**20


def scores(truth, lower, upper, offset: float | None) -> np.ndarray:
    """s = max(lower - y, upper's excess) for arrays (n, horizon, outputs); offset: None for the scale of y,
    else the scores of log(y + offset)."""
    t, lo, hi = (np.asarray(a, dtype=np.float64) for a in (truth, lower, upper))
    if offset is not None:
        if np.any(t + offset <= 0) or np.any(lo + offset <= 0):
            raise ValueError(f"a log model's calibration needs y + {offset:g} > 0 in the truth and the intervals")
        t, lo, hi = np.log(t + offset), np.log(lo + offset), np.log(hi + offset)
    return np.maximum(lo - t, t - hi)


def margin(s: np.ndarray, level: float) -> tuple[np.ndarray, bool]:
    """(E (horizon, outputs), guaranteed): the conformal margin at `level` percent of scores s (n, horizon,
    outputs)."""
    n = s.shape[0]
    if n < 1:
        raise ValueError("a calibration needs at least one forecast")
    rank = math.ceil((n + 1) * level / 100)
    return np.sort(s, axis=0)[min(rank, n) - 1], rank <= n


def widen(lower, upper, e, offset: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The interval [lower - e, upper + e] (in log(y + offset) when offset is not None); a negative margin may
    narrow it, never past its middle."""
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if offset is not None:
        lo, hi = np.log(np.maximum(lo + offset, 1e-300)), np.log(np.maximum(hi + offset, 1e-300))
    lo, hi = lo - e, hi + e
    mid = (lo + hi) / 2
    lo, hi = np.minimum(lo, mid), np.maximum(hi, mid)
    if offset is not None:
        lo, hi = np.exp(lo) - offset, np.exp(hi) - offset
    return lo, hi


def fingerprint(weights: list[dict]) -> str:
    """SHA-256 of the members' weights (names, dtypes, shapes and bytes), in member order."""
    h = hashlib.sha256()
    for member in weights:
        for name in sorted(member):
            a = np.ascontiguousarray(member[name])
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Calibration:
    """Margins per level (percent) of a forecaster, each (horizon, outputs), from `origins` forecasts."""

    margins: dict[float, np.ndarray]
    guaranteed: dict[float, bool]
    offset: float | None  # the scale: None for y, else log(y + offset)
    origins: list[str]    # the first date of each calibration forecast
    retrain: int          # a model trained anew before every retrain-th forecast
    fingerprint: str
    coverage: dict[float, float] = field(default_factory=dict)  # the uncalibrated intervals' on these forecasts

    @classmethod
    def fit(cls, truth, intervals: dict, offset: float | None, origins, retrain: int, fp: str) -> "Calibration":
        """From the calibration forecasts: truth (n, horizon, outputs) and {level: (lower, upper)} alike."""
        margins, guaranteed, cover = {}, {}, {}
        for level, (lo, hi) in intervals.items():
            s = scores(truth, lo, hi, offset)
            margins[level], guaranteed[level] = margin(s, level)
            cover[level] = float(np.mean(s <= 0))
        return cls(margins, guaranteed, offset, list(origins), int(retrain), fp, cover)

    @property
    def horizon(self) -> int:
        return next(iter(self.margins.values())).shape[0]

    def apply(self, level: float, lower, upper) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated interval of a forecast's (lower, upper), each (steps <= horizon, outputs)."""
        if level not in self.margins:
            raise ValueError(f"the intervals were calibrated at the levels {sorted(self.margins)}, not {level:g}; "
                             f"calibrate again at these levels, or ask for uncalibrated intervals")
        steps = np.shape(lower)[0]
        if steps > self.horizon:
            raise ValueError(f"the calibration covers {self.horizon} steps, the forecast {steps}")
        return widen(lower, upper, self.margins[level][:steps], self.offset)

    def summary(self) -> dict:
        return {"forecasts": len(self.origins), "first": self.origins[0], "last": self.origins[-1],
                "retrain": self.retrain, "guaranteed": {f"{k:g}": v for k, v in self.guaranteed.items()},
                "coverage_before": {f"{k:g}": v for k, v in self.coverage.items()}}

    # ----------------------------------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1, "fingerprint": self.fingerprint, "offset": self.offset,
                "origins": self.origins, "retrain": self.retrain,
                "levels": {f"{k:g}": {"margin": v.tolist(), "guaranteed": self.guaranteed[k],
                                      "coverage_before": self.coverage.get(k)} for k, v in self.margins.items()}}

    def save(self, folder, overwrite: bool = False) -> Path:
        path = Path(folder) / FILE
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; give --overwrite to replace it")
        return write_json(path, self.to_json())

    @classmethod
    def from_json(cls, obj, where: str) -> "Calibration":
        """Checks every field of a calibration file (which may be hostile) before using it."""
        def bad(why):
            return ValueError(f"{where}: not a valid forecaster calibration ({why})")
        if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("version") != 1:
            raise bad("format")
        fp, offset, origins, retrain = obj.get("fingerprint"), obj.get("offset"), obj.get("origins"), obj.get("retrain")
        levels = obj.get("levels")
        if not (isinstance(fp, str) and len(fp) == 64 and isinstance(origins, list) and origins
                and all(isinstance(o, str) for o in origins) and type(retrain) is int and retrain >= 1
                and (offset is None or (type(offset) in (int, float) and math.isfinite(offset) and offset >= 0))
                and isinstance(levels, dict) and levels):
            raise bad("fields")
        margins, guaranteed, cover, shape = {}, {}, {}, None
        for key, v in levels.items():
            try:
                level = float(key)
                m = np.array(v["margin"], dtype=np.float64)
            except (TypeError, ValueError, KeyError):
                raise bad(f"level {key!r}") from None
            if not 0 < level < 100 or m.ndim != 2 or 0 in m.shape or not np.all(np.isfinite(m)) \
                    or (shape is not None and m.shape != shape) or not isinstance(v.get("guaranteed"), bool):
                raise bad(f"level {key!r}")
            shape, margins[level], guaranteed[level] = m.shape, m, v["guaranteed"]
            if isinstance(v.get("coverage_before"), (int, float)):
                cover[level] = float(v["coverage_before"])
        return cls(margins, guaranteed, None if offset is None else float(offset), origins, retrain, fp, cover)

    @classmethod
    def load(cls, folder) -> "Calibration | None":
        """The calibration saved in `folder`, or None when there is none."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, over the {MAX_BYTES} a calibration may have")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ValueError(f"{path}: not a valid forecaster calibration (not JSON: {e})") from None
        return cls.from_json(obj, str(path))
