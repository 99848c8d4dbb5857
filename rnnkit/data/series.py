"""Time series from user files and arrays: dates on a regular grid, target and covariate columns, checked.

`read_series(path, date_column="date", target=None, covariates=(), fill="none", freq=None)` reads a CSV/TSV
with a header row or a JSONL file (format chosen as in rnnkit.data.tables) and returns a `Series`;
`make_series(dates, values, ...)` does the same for arrays. Both run the same checks:

- Dates are ISO 8601: "1949", "1949-01", "1949-01-31", "2024-03-01 13:00[:00]", "2024-03-01T13:00:00[Z|+01:00]"
  (a time zone is converted to UTC). Rows may come in any order; they are sorted by date.
- The frequency is inferred from the smallest step between dates: minutely, hourly, daily, weekly (fixed
  steps of 60 s, 1 h, 1 d, 7 d), business-daily (Monday to Friday, pandas' "B": steps of a day where every
  date is a weekday at the same time of day and some step skips a weekend; holidays are missing dates) or
  monthly, quarterly, yearly (1, 3, 12 calendar months, every date on the same day of its month, or every
  date on the last day of its month). Every other step must be a whole number of base steps; `freq=` states
  the frequency instead of inferring it, and is checked.
- A duplicated date, a step that is not a whole number of base steps (irregular spacing), and an inf value
  raise ValueError. Missing dates (a step of several base steps) and missing values (NaN, an empty cell,
  JSON null, "NA") raise ValueError with `fill="none"` (the default); `fill="ffill"` carries the last
  value forward into them, `fill="interpolate"` interpolates linearly along the grid. Neither can invent a
  value before the first observed one (nor, for interpolate, after the last): those raise too.

`calendar_features(dates, freq, encoding)` gives the known-future covariates of a date: month of year,
quarter, day of week, hour of day (per frequency, see CALENDAR), each as a (sin, cos) pair ("cyclic") or
as one-hot columns ("onehot"). `check_lengths(n, window, horizon)` says whether a series is long enough.
NumPy and the standard library only.
"""

from __future__ import annotations

import calendar
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .tables import DELIMITERS, JSONL, jsonl_objects, sniff_delimiter
from .text import decode_utf8

# frequency -> (unit, step): "s" a fixed number of seconds, "B" business days (Monday to Friday), "M" a
# number of calendar months
FREQUENCIES = {"minutely": ("s", 60), "hourly": ("s", 3600), "daily": ("s", 86400), "weekly": ("s", 604800),
               "business-daily": ("B", 1), "monthly": ("M", 1), "quarterly": ("M", 3), "yearly": ("M", 12)}
# pandas' (and so darts') aliases, accepted for --freq
FREQUENCY_ALIASES = {"T": "minutely", "min": "minutely", "H": "hourly", "h": "hourly", "D": "daily", "W": "weekly",
                     "B": "business-daily", "M": "monthly", "MS": "monthly", "ME": "monthly", "Q": "quarterly",
                     "QS": "quarterly", "QE": "quarterly", "Y": "yearly", "YS": "yearly", "YE": "yearly",
                     "A": "yearly", "AS": "yearly"}
# the usual seasonal period m of each frequency (seasonal naive, MASE, seasonal differencing)
SEASONAL_PERIOD = {"minutely": 60, "hourly": 24, "daily": 7, "weekly": 52, "business-daily": 5, "monthly": 12,
                   "quarterly": 4, "yearly": 1}
# the calendar features of each frequency: name -> number of classes
CALENDAR = {"minutely": {"hour": 24, "weekday": 7}, "hourly": {"hour": 24, "weekday": 7},
            "daily": {"weekday": 7, "month": 12}, "weekly": {"month": 12},
            "business-daily": {"weekday": 5, "month": 12}, "monthly": {"month": 12},
            "quarterly": {"quarter": 4}, "yearly": {}}
FILLS = ("none", "ffill", "interpolate")
ENCODINGS = ("cyclic", "onehot")
MAX_HORIZON = 1000  # the longest forecast a task accepts
MISSING = {"", "na", "nan", "null", "none"}  # cells read as a missing value (case-insensitive)


@dataclass(frozen=True)
class Series:
    """A regular time series: `dates` (time,) datetime64[s] on a grid of frequency `freq`, and `values`
    (time, columns) float64, the target columns first, then the covariates, all finite."""

    dates: np.ndarray
    values: np.ndarray
    target: tuple[str, ...]
    covariates: tuple[str, ...] = ()
    freq: str = "daily"
    name: str = ""

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.target + self.covariates

    @property
    def y(self) -> np.ndarray:
        """The target columns (time, len(target))."""
        return self.values[:, :len(self.target)]

    @property
    def x(self) -> np.ndarray:
        """The covariate columns (time, len(covariates))."""
        return self.values[:, len(self.target):]

    @property
    def season(self) -> int:
        """The usual seasonal period of the frequency (12 for monthly data)."""
        return SEASONAL_PERIOD[self.freq]

    def slice(self, start: int | None = None, stop: int | None = None) -> "Series":
        """Rows [start, stop) as a Series (Python slice semantics)."""
        s = slice(start, stop)
        return Series(self.dates[s], self.values[s], self.target, self.covariates, self.freq, self.name)

    def split(self, n_test: int) -> tuple["Series", "Series"]:
        """(everything but the last n_test rows, the last n_test rows)."""
        if not 0 < n_test < len(self):
            raise ValueError(f"cannot hold out {n_test} of {len(self)} rows; choose 1..{len(self) - 1}")
        return self.slice(None, -n_test), self.slice(-n_test, None)

    def index_of(self, date) -> int:
        """The row of `date` (a string as in the files, or a datetime64); ValueError if it is not a row."""
        when = parse_date(date) if isinstance(date, str) else np.datetime64(date, "s")
        hits = np.flatnonzero(self.dates == when)
        if len(hits) == 0:
            raise ValueError(f"{date} is not a date of the series ({format_date(self.dates[0], self.freq)} .. "
                             f"{format_date(self.dates[-1], self.freq)}, {self.freq})")
        return int(hits[0])

    def future_dates(self, horizon: int) -> np.ndarray:
        """The `horizon` dates after the last one, on the series' grid: (horizon,) datetime64[s]."""
        return grid_dates(self.dates, self.freq, np.arange(len(self), len(self) + horizon))


# ------------------------------------------------------------------------------------------------ dates


_YEAR, _MONTH = re.compile(r"^\d{4}$"), re.compile(r"^\d{4}-\d{2}$")


def parse_date(text: str) -> np.datetime64:
    """An ISO 8601 date or date-time (see the module docstring) as datetime64[s] (UTC if it has a zone)."""
    s = str(text).strip()
    if _YEAR.match(s):
        s += "-01-01"
    elif _MONTH.match(s):
        s += "-01"
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date (e.g. 1949-01, 1949-01-31, 2024-03-01 13:00)") from None
    if d.tzinfo is not None:
        d = d.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(d.replace(microsecond=0), "s")


def format_date(date, freq: str = "") -> str:
    """A date as the user would write it: "1949-01" (monthly or quarterly, first of the month), "1949" (yearly,
    1 January), "2024-03-01" (midnight), else "2024-03-01 13:00:00"."""
    d = np.datetime64(date, "s")
    for unit, freqs in (("Y", ("yearly",)), ("M", ("monthly", "quarterly")), ("D", tuple(FREQUENCIES) + ("",))):
        if freq in freqs and d == d.astype(f"datetime64[{unit}]").astype("datetime64[s]"):
            return str(d.astype(f"datetime64[{unit}]"))
    return str(d).replace("T", " ")


def _months(dates: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each date (int64)."""
    return dates.astype("datetime64[M]").astype(np.int64)


def _month_offset(dates: np.ndarray) -> np.ndarray:
    """Seconds since the start of each date's month."""
    return (dates - dates.astype("datetime64[M]").astype("datetime64[s]")).astype(np.int64)


def _is_month_end(dates: np.ndarray) -> np.ndarray:
    days = dates.astype("datetime64[D]")
    return (days + 1).astype("datetime64[M]") != days.astype("datetime64[M]")


def _days(dates: np.ndarray) -> np.ndarray:
    """Each date's day (datetime64[D])."""
    return dates.astype("datetime64[D]")


def _business_days(dates: np.ndarray) -> bool:
    """Whether sorted dates a day or more apart are all weekdays at one time of day, some step skipping a
    weekend (a series of weekdays alone, such as a stock's closing prices)."""
    days = _days(dates)
    times = (dates - days.astype("datetime64[s]")).astype(np.int64)
    skips = np.diff(days).astype(np.int64) > np.diff(np.busday_count(days[0], days))
    return bool(np.all(np.is_busday(days)) and np.all(times == times[0]) and np.any(skips))


def infer_frequency(dates: np.ndarray) -> str:
    """The frequency of sorted, distinct datetime64[s] dates, from their smallest step (module docstring)."""
    if len(dates) < 2:
        raise ValueError("a series needs at least 2 dates to infer its frequency")
    step = int(np.diff(dates).astype(np.int64).min())
    if step == 86400 and _business_days(dates):
        return "business-daily"
    for name, (unit, size) in FREQUENCIES.items():
        if unit == "s" and step == size:
            return name
    days = step / 86400
    for name, low, high in (("monthly", 28, 31), ("quarterly", 89, 92), ("yearly", 365, 366)):
        if low <= days <= high:
            return name
    raise ValueError(f"cannot infer the frequency: the smallest step between dates is {step} s "
                     f"({days:g} days); supported: {', '.join(FREQUENCIES)}")


def grid_positions(dates: np.ndarray, freq: str) -> np.ndarray:
    """The position of each sorted, distinct date on the grid of `freq` that starts at dates[0] (int64).

    ValueError if a date is off the grid (irregular spacing)."""
    if freq not in FREQUENCIES:
        raise ValueError(f"unknown frequency {freq!r}; choose one of {', '.join(FREQUENCIES)}")
    unit, size = FREQUENCIES[freq]
    if unit == "s":
        offset = (dates - dates[0]).astype(np.int64)
        bad = np.flatnonzero(offset % size)
        pos = offset // size
    elif unit == "B":
        days = _days(dates)
        bad = np.flatnonzero(~np.is_busday(days) | (dates - days.astype("datetime64[s]") != dates[0] - days[0]))
        pos = np.busday_count(days[0], days).astype(np.int64)
    else:
        anchor_ok = np.all(_month_offset(dates) == _month_offset(dates[:1])) or np.all(_is_month_end(dates))
        months = _months(dates) - _months(dates[:1])
        bad = np.flatnonzero(months % size) if anchor_ok else np.flatnonzero(
            _month_offset(dates) != _month_offset(dates[:1]))
        pos = months // size
    if len(bad):
        i = int(bad[0])
        where = (f"the first date, {format_date(dates[0], '')}, is not a weekday" if unit == "B" and i == 0 else
                 f"{format_date(dates[i], '')} is not on the {freq} grid of {format_date(dates[0], '')} "
                 f"(previous date {format_date(dates[i - 1], '')})")
        raise ValueError(f"irregular spacing: {where}")
    return pos


def grid_dates(dates: np.ndarray, freq: str, positions) -> np.ndarray:
    """The dates at `positions` of the grid of `freq` that `dates` (sorted, on the grid) lie on."""
    unit, size = FREQUENCIES[freq]
    positions = np.asarray(positions, dtype=np.int64)
    if unit == "s":
        return dates[0] + (positions * size).astype("timedelta64[s]")
    if unit == "B":
        first = _days(dates[:1])
        if not np.is_busday(first[0]):
            raise ValueError(f"{format_date(dates[0], '')} is not a weekday: a business-daily series has "
                             f"weekdays only")
        return np.busday_offset(first, positions).astype("datetime64[s]") + (dates[0] - first[0])
    month = (dates[:1].astype("datetime64[M]") + (positions * size).astype("timedelta64[M]"))
    if len(dates) > 1 and np.all(_is_month_end(dates)):  # month ends stay month ends
        day = (month + 1).astype("datetime64[D]") - 1
        return day.astype("datetime64[s]") + (dates[0] - dates[0].astype("datetime64[D]"))
    return month.astype("datetime64[s]") + _month_offset(dates[:1])


# ---------------------------------------------------------------------------------------------- checks


def check_lengths(n: int, window: int, horizon: int, max_horizon: int = MAX_HORIZON, what: str = "") -> None:
    """ValueError unless a series of n steps can give at least one (window, horizon) sample; `what` says
    what the n steps are (e.g. "to train on (400 less 390 for --test)")."""
    if window < 1:
        raise ValueError(f"the input window must be >= 1 step, got {window}")
    if not 1 <= horizon <= max_horizon:
        raise ValueError(f"the horizon must lie in 1..{max_horizon} steps, got {horizon}")
    if n < window + horizon:
        raise ValueError(f"the series has {n} steps{' ' + what if what else ''}, fewer than the input window plus "
                         f"the horizon ({window} + {horizon} = {window + horizon}); use a shorter window or horizon")


def _fill(values: np.ndarray, fill: str, dates: np.ndarray, columns, freq: str) -> np.ndarray:
    """Replace the NaN cells of `values` (time, columns) by `fill`; ValueError where that is impossible."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    t, c = map(int, np.argwhere(missing)[0])
    where = f"{format_date(dates[t], freq)}, column {columns[c]!r}"
    if fill == "none":
        raise ValueError(f"{int(missing.sum())} missing values (the first at {where}); remove them or pass "
                         f"fill='ffill' or fill='interpolate' (--fill)")
    out = values.copy()
    grid = np.arange(len(values))
    for j in range(values.shape[1]):
        known = ~missing[:, j]
        if not known.any():
            raise ValueError(f"column {columns[j]!r} has no values")
        first, last = int(np.argmax(known)), len(known) - 1 - int(np.argmax(known[::-1]))
        if first > 0:
            raise ValueError(f"column {columns[j]!r} is missing its first value ({format_date(dates[0], freq)});"
                             f" fill={fill!r} cannot invent values before the first observation")
        if fill == "ffill":
            last_seen = np.maximum.accumulate(np.where(known, grid, 0))
            out[:, j] = values[last_seen, j]
        else:
            if last < len(known) - 1:
                raise ValueError(f"column {columns[j]!r} is missing its last value "
                                 f"({format_date(dates[-1], freq)}); fill='interpolate' cannot extrapolate")
            out[:, j] = np.interp(grid, grid[known], values[known, j])  # linear along the grid
    return out


def from_pandas(obj, target=None, covariates=(), freq: str | None = None, name: str = "") -> Series:
    """A checked Series from a pandas Series or DataFrame indexed by dates (a DatetimeIndex, time-zoned ones
    taken in UTC, or a PeriodIndex): a Series is one target (named `target`, else by its own name, else
    "value"); a
    DataFrame's columns are the `covariates` and the `target` (default: every other column). pandas is not
    imported here: any object shaped so works."""
    index = obj.index
    if hasattr(index, "to_timestamp"):  # a PeriodIndex: each period's start
        index = index.to_timestamp()
    if getattr(index, "tz", None) is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    dates = np.asarray(index.to_numpy())
    if not np.issubdtype(dates.dtype, np.datetime64):
        raise TypeError(f"the {type(obj).__name__} must be indexed by dates (a DatetimeIndex or PeriodIndex), "
                        f"got an index of {dates.dtype}")
    if getattr(obj, "ndim", 2) == 1:
        target = _names(target)
        if len(target) > 1 or _names(covariates):
            raise ValueError(f"a pandas Series is one column; the model reads {list(target + _names(covariates))}:"
                             f" give a DataFrame")
        label = target[0] if target else obj.name if obj.name is not None else "value"
        return make_series(dates, obj.to_numpy(dtype=np.float64), str(label), (), freq, name=name)
    columns = [str(c) for c in obj.columns]
    covariates = _names(covariates)
    target = _names(target) or tuple(c for c in columns if c not in covariates)
    missing = [c for c in target + covariates if c not in columns]
    if missing:
        raise ValueError(f"no column {' or '.join(map(repr, missing))}; the DataFrame has the columns {columns}")
    frame = obj.set_axis(columns, axis=1)
    return make_series(dates, frame[list(target + covariates)].to_numpy(dtype=np.float64), target, covariates,
                       freq, name=name)


def make_series(dates, values, target, covariates=(), freq: str | None = None, fill: str = "none",
                name: str = "", rows=None) -> Series:
    """A checked Series from dates (strings or datetime64) and values (time, len(target) + len(covariates)).

    `rows` (optional) names each input row for error messages (e.g. its line in a file)."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    target, covariates = _names(target), _names(covariates)
    columns = target + covariates
    if not target:
        raise ValueError("no target column")
    if len(set(columns)) != len(columns):
        raise ValueError(f"a column is both a target and a covariate, or named twice: {list(columns)}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise ValueError(f"values have shape {values.shape}; expected (time, {len(columns)}) for {list(columns)}")
    dates = np.array([parse_date(d) if isinstance(d, str) else np.datetime64(d, "s") for d in dates],
                     dtype="datetime64[s]")
    if len(dates) != len(values):
        raise ValueError(f"{len(dates)} dates for {len(values)} rows of values")
    rows = list(rows) if rows is not None else [f"row {i + 1}" for i in range(len(dates))]
    if np.isinf(values).any():
        t, c = map(int, np.argwhere(np.isinf(values))[0])
        raise ValueError(f"{rows[t]}: column {columns[c]!r} is {values[t, c]}; values must be finite")
    order = np.argsort(dates, kind="stable")
    dates, values, rows = dates[order], values[order], [rows[i] for i in order]
    same = np.flatnonzero(np.diff(dates) == np.timedelta64(0, "s"))
    if len(same):
        i = int(same[0])
        raise ValueError(f"duplicated date {format_date(dates[i], freq or '')} ({rows[i]} and {rows[i + 1]}); "
                         f"each date must occur once")
    if len(dates) < 2:
        raise ValueError(f"a series needs at least 2 dates, got {len(dates)}")
    freq = FREQUENCY_ALIASES.get(freq, freq) if freq else infer_frequency(dates)
    if freq not in FREQUENCIES:
        raise ValueError(f"unknown frequency {freq!r}; choose one of {', '.join(FREQUENCIES)} (or pandas' "
                         f"{', '.join(FREQUENCY_ALIASES)})")
    pos = grid_positions(dates, freq)
    if pos[-1] + 1 != len(dates):
        gaps = np.flatnonzero(np.diff(pos) > 1)
        i = int(gaps[0])
        n_missing = int(pos[-1] + 1 - len(dates))
        if fill == "none":
            raise ValueError(f"{n_missing} missing dates in the {freq} series: the first after "
                             f"{format_date(dates[i], freq)} (the next date is {format_date(dates[i + 1], freq)});"
                             f" add them or pass fill='ffill' or fill='interpolate' (--fill)")
        full = np.full((int(pos[-1]) + 1, values.shape[1]), np.nan)
        full[pos] = values
        dates, values = grid_dates(dates, freq, np.arange(len(full))), full
    values = _fill(values, fill, dates, columns, freq)
    return Series(dates, values, target, covariates, freq, name)


def _names(names) -> tuple[str, ...]:
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else tuple(str(n) for n in names)


# ---------------------------------------------------------------------------------------------- files


def _number(cell, column: str, where: str) -> float:
    if cell is None or (isinstance(cell, str) and cell.strip().lower() in MISSING):
        return math.nan
    if isinstance(cell, bool) or not isinstance(cell, (int, float, str)):
        raise ValueError(f"{where}: column {column!r} holds {json.dumps(cell)}; expected a number")
    try:
        return float(cell)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} holds {cell!r}; expected a number") from None


def _records(path: Path, delimiter: str | None) -> tuple[list[str], list[tuple[int, dict]]]:
    """(column names, [(line, {column: cell})]) of a CSV/TSV with a header, or a JSONL file."""
    import csv
    import io

    text = decode_utf8(path.read_bytes(), str(path))
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    suffix = path.suffix.lower()
    records = []
    if delimiter is None and (suffix in JSONL or (suffix not in DELIMITERS and text.lstrip().startswith("{"))):
        names: dict = {}
        for line, obj in jsonl_objects(text, path):
            names.update(dict.fromkeys(obj))
            records.append((line, obj))
        return list(names), records
    delimiter = delimiter or DELIMITERS.get(suffix) or sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = None
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in row]
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                                 f"{len(header)}")
            records.append((reader.line_num, dict(zip(header, row))))
    except csv.Error as e:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from None
    return header or [], records


def read_series(path: str | os.PathLike, date_column: str = "date", target=None, covariates=(),
                fill: str = "none", freq: str | None = None, delimiter: str | None = None) -> Series:
    """A Series from a CSV/TSV/JSONL file (module docstring). `target`: a column name or names; default
    every column but the date and the covariates."""
    path = Path(path)
    header, records = _records(path, delimiter)
    covariates = _names(covariates)
    target = _names(target) or tuple(c for c in header if c != date_column and c not in covariates)
    missing = [c for c in (date_column,) + target + covariates if c not in header]
    if missing:
        raise ValueError(f"{path}: no column {' or '.join(map(repr, missing))}; the file has the columns {header}")
    if not target:
        raise ValueError(f"{path}: no value column besides {date_column!r}")
    if len(records) < 2:
        raise ValueError(f"{path}: {len(records)} rows; a series needs at least 2")
    columns = target + covariates
    dates, values, rows = [], np.empty((len(records), len(columns))), []
    for i, (line, rec) in enumerate(records):
        where = f"{path}, line {line}"
        try:
            dates.append(parse_date(rec.get(date_column)))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        values[i] = [_number(rec.get(c), c, where) for c in columns]
        rows.append(f"line {line}")
    try:
        return make_series(dates, values, target, covariates, freq, fill, path.stem, rows)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------- calendar features


def calendar_features(dates, freq: str, encoding: str = "cyclic") -> tuple[np.ndarray, list[str]]:
    """Known-future covariates of each date: (time, features) float64 and the feature names.

    For each calendar field of the frequency (CALENDAR: month of year 0..11, quarter 0..3, day of week
    0..6 with Monday 0, 0..4 for business days; hour 0..23) with k classes and value v: "cyclic" gives
    sin(2 pi v / k) and cos(2 pi v / k); "onehot" gives k columns, 1 at v. Yearly data has none: shape
    (time, 0)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown calendar encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    if freq not in CALENDAR:
        raise ValueError(f"unknown frequency {freq!r}; choose one of {', '.join(FREQUENCIES)}")
    dates = np.asarray(dates, dtype="datetime64[s]")
    fields = {
        "month": lambda: _months(dates) % 12,
        "quarter": lambda: (_months(dates) % 12) // 3,
        "weekday": lambda: (dates.astype("datetime64[D]").astype(np.int64) + 3) % 7,  # 1970-01-01 a Thursday
        "hour": lambda: (dates - dates.astype("datetime64[D]")).astype(np.int64) // 3600,
    }
    columns, names = [], []
    for field, k in CALENDAR[freq].items():
        v = fields[field]().astype(np.float64)
        if encoding == "cyclic":
            angle = 2 * np.pi * v / k
            columns += [np.sin(angle), np.cos(angle)]
            names += [f"{field}_sin", f"{field}_cos"]
        else:
            labels = (list(calendar.month_abbr[1:]) if field == "month" else list(calendar.day_abbr)
                      if field == "weekday" else [str(i) for i in range(k)])
            columns += [(v == i).astype(np.float64) for i in range(k)]
            names += [f"{field}_{lab.lower()}" for lab in labels[:k]]
    return (np.stack(columns, axis=1) if columns else np.zeros((len(dates), 0))), names
