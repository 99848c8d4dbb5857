"""Generated translation tasks: seeded, sized by their arguments, each returning (source, target) string pairs.

    addition(n, digits=3)     "123+45" → "168"      (each operand has 1..digits digits, the length drawn first)
    dates(n)                  "Tuesday, March 3rd 1998", "03/03/98", "1998.3.3", ... → "1998-03-03"
    reverse(n, max_length=10) "hello" → "olleh"
    copy(n, max_length=10)    "hello" → "hello"

Every generator returns n pairs with n DISTINCT sources (so a held-out sum or date is never also a training
example), in a random order fixed by `seed`, and raises ValueError when fewer than n distinct sources exist.
The targets are functions of the sources.

Dates lie in 1950-01-01 .. 2049-12-31, so a two-digit year is unambiguous (50..99 → 19yy, 00..49 → 20yy); the
only day-month order with slashes is the US one (MM/DD/YY), so no string is read two ways. Weekday names are
those of the date. `DATE_FORMATS` holds every format with its example for 1998-03-03; `HELD_OUT_FORMATS` are
kept for the test split only (splits(): train and valid come from the others), so the test measures whether a
model reads a format it has never seen, built from pieces it has: every piece of a held-out format is in some
training format at the same place — "3-Mar-1998": a leading unpadded day before "-" (3-3-1998), "-Mar-"
(1998-Mar-03); "Mar 3, 1998": a leading "Mar " (Mar 03 1998), "3, 1998" (March 3, 1998); "Tuesday 3 March
1998": the lower-case format's pieces, capitalised as in "Tuesday, March 3rd 1998" — so the held-out formats
are new combinations, not new pieces.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday()
FIRST_DATE, LAST_DATE = dt.date(1950, 1, 1), dt.date(2049, 12, 31)


def ordinal(day: int) -> str:
    """1 → "1st", 2 → "2nd", 3 → "3rd", 11 → "11th", 22 → "22nd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _fields(d: dt.date) -> dict:
    month, weekday = MONTHS[d.month - 1], WEEKDAYS[d.weekday()]
    return {"d": d.day, "dd": f"{d.day:02d}", "do": ordinal(d.day), "M": d.month, "MM": f"{d.month:02d}",
            "MMM": month[:3], "MMMM": month, "EEE": weekday[:3], "EEEE": weekday, "yyyy": f"{d.year:04d}",
            "yy": f"{d.year % 100:02d}"}


# name → (str.format pattern over _fields, a case change or None); the names are the patterns in words
DATE_FORMATS = {
    "d MMMM yyyy": ("{d} {MMMM} {yyyy}", None),                          # 3 March 1998
    "dd MMM yyyy": ("{dd} {MMM} {yyyy}", None),                          # 03 Mar 1998
    "MMMM d, yyyy": ("{MMMM} {d}, {yyyy}", None),                        # March 3, 1998
    "EEEE, MMMM do yyyy": ("{EEEE}, {MMMM} {do} {yyyy}", None),          # Tuesday, March 3rd 1998
    "EEE, d MMM yyyy": ("{EEE}, {d} {MMM} {yyyy}", None),                # Tue, 3 Mar 1998
    "do of MMMM yyyy": ("{do} of {MMMM} {yyyy}", None),                  # 3rd of March 1998
    "MM/dd/yy": ("{MM}/{dd}/{yy}", None),                                # 03/03/98
    "M/d/yyyy": ("{M}/{d}/{yyyy}", None),                                # 3/3/1998
    "yyyy.M.d": ("{yyyy}.{M}.{d}", None),                                # 1998.3.3
    "yyyy-MM-dd": ("{yyyy}-{MM}-{dd}", None),                            # 1998-03-03
    "yyyyMMdd": ("{yyyy}{MM}{dd}", None),                                # 19980303
    "dd.MM.yyyy": ("{dd}.{MM}.{yyyy}", None),                            # 03.03.1998
    "MMMM d yyyy, upper case": ("{MMMM} {d} {yyyy}", "upper"),           # MARCH 3 1998
    "EEEE d MMMM yyyy, lower case": ("{EEEE} {d} {MMMM} {yyyy}", "lower"),  # tuesday 3 march 1998
    "d-M-yyyy": ("{d}-{M}-{yyyy}", None),                                # 3-3-1998
    "yyyy-MMM-dd": ("{yyyy}-{MMM}-{dd}", None),                          # 1998-Mar-03
    "MMM dd yyyy": ("{MMM} {dd} {yyyy}", None),                          # Mar 03 1998
    "EEE MMM dd yyyy": ("{EEE} {MMM} {dd} {yyyy}", None),                # Tue Mar 03 1998 (JavaScript's)
    # held out (HELD_OUT_FORMATS): seen only in the test split
    "d-MMM-yyyy": ("{d}-{MMM}-{yyyy}", None),                            # 3-Mar-1998
    "MMM d, yyyy": ("{MMM} {d}, {yyyy}", None),                          # Mar 3, 1998
    "EEEE d MMMM yyyy": ("{EEEE} {d} {MMMM} {yyyy}", None),              # Tuesday 3 March 1998
}
HELD_OUT_FORMATS = ("d-MMM-yyyy", "MMM d, yyyy", "EEEE d MMMM yyyy")
TRAIN_FORMATS = tuple(f for f in DATE_FORMATS if f not in HELD_OUT_FORMATS)


def format_date(d: dt.date, name: str) -> str:
    """`d` written in the format `name` (a key of DATE_FORMATS)."""
    try:
        pattern, case = DATE_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown date format {name!r}; known: {list(DATE_FORMATS)}") from None
    text = pattern.format(**_fields(d))
    return text.upper() if case == "upper" else text.lower() if case == "lower" else text


# ------------------------------------------------------------------------------------------------ sampling


def _distinct(n: int, total: int, draw, what: str, seed: int) -> list[tuple[str, str]]:
    """n pairs with distinct sources from `draw(rng, k) -> k candidate pairs`, out of `total` possible."""
    if n < 1:
        raise ValueError(f"the number of examples must be >= 1, got {n}")
    if n > total:
        raise ValueError(f"only {total:,} distinct {what} exist; asked for {n:,}")
    rng = np.random.default_rng(seed)
    pairs: dict[str, str] = {}
    while len(pairs) < n:
        before = len(pairs)
        for source, target in draw(rng, max(64, 2 * (n - len(pairs)))):
            pairs.setdefault(source, target)
            if len(pairs) == n:
                break
        if len(pairs) == before:  # a whole round found nothing new: (nearly) all there are have been drawn
            raise ValueError(f"could not draw {n:,} distinct {what}; found {len(pairs):,}")
    return list(pairs.items())


def addition(n: int, digits: int = 3, seed: int = 0) -> list[tuple[str, str]]:
    """n sums "a+b" → "a+b evaluated", each operand of 1..`digits` digits (its length uniform, then its value
    uniform among the numbers of that length, as in Keras's addition example), all sources distinct."""
    if not 1 <= digits <= 18:
        raise ValueError(f"digits must be in 1..18, got {digits}")
    low = np.array([0] + [10 ** (k - 1) for k in range(2, digits + 1)], dtype=np.int64)  # by length - 1
    high = np.array([10 ** k for k in range(1, digits + 1)], dtype=np.int64)

    def operand(rng, k):
        length = rng.integers(0, digits, size=k)
        return rng.integers(low[length], high[length])

    def draw(rng, k):
        a, b = operand(rng, k), operand(rng, k)
        return [(f"{x}+{y}", str(x + y)) for x, y in zip(a.tolist(), b.tolist())]

    return _distinct(n, 10 ** (2 * digits), draw, f"sums of two numbers of up to {digits} digits", seed)


def dates(n: int, formats=TRAIN_FORMATS, seed: int = 0, first: dt.date = FIRST_DATE,
          last: dt.date = LAST_DATE, avoid=()) -> list[tuple[str, str]]:
    """n dates, each in one of `formats` (names in DATE_FORMATS; default: all but the held-out ones) →
    ISO "yyyy-mm-dd"; the date uniform in [first, last], the format uniform, all sources distinct.
    avoid: formats whose writing of the same date a source must differ from (a held-out "MMM d, yyyy" writes
    "May 3, 1998" exactly as the training format "MMMM d, yyyy" does: such a source is not held out)."""
    formats, avoid = list(formats), list(avoid)
    for name in formats + avoid:
        format_date(FIRST_DATE, name)  # an unknown name raises here
    if not formats:
        raise ValueError("no date formats given")
    if not FIRST_DATE <= first <= last <= LAST_DATE:
        raise ValueError(f"dates must lie in {FIRST_DATE} .. {LAST_DATE} (two-digit years), first <= last")
    days = last.toordinal() - first.toordinal() + 1

    def draw(rng, k):
        ordinals = rng.integers(0, days, size=k) + first.toordinal()
        which = rng.integers(0, len(formats), size=k)
        out = []
        for o, f in zip(ordinals.tolist(), which.tolist()):
            d = dt.date.fromordinal(o)
            text = format_date(d, formats[f])
            if not any(format_date(d, a) == text for a in avoid):
                out.append((text, d.isoformat()))
        return out

    return _distinct(n, days * len(formats), draw, f"dates in {len(formats)} formats", seed)


def _strings(n: int, min_length: int, max_length: int, alphabet: str, seed: int, target) -> list:
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length} and {max_length}")
    symbols = list(dict.fromkeys(alphabet))
    if not symbols:
        raise ValueError("the alphabet is empty")
    total = sum(len(symbols) ** k for k in range(min_length, max_length + 1))

    def draw(rng, k):
        lengths = rng.integers(min_length, max_length + 1, size=k)
        out = []
        for length in lengths.tolist():
            s = "".join(symbols[i] for i in rng.integers(0, len(symbols), size=length).tolist())
            out.append((s, target(s)))
        return out

    return _distinct(n, total, draw, f"strings of {min_length}..{max_length} symbols of {alphabet!r}", seed)


def reverse(n: int, min_length: int = 1, max_length: int = 10, alphabet: str = "abcdefghijklmnopqrstuvwxyz",
            seed: int = 0) -> list[tuple[str, str]]:
    """n strings (length uniform in min..max, symbols uniform in `alphabet`) → the same string reversed."""
    return _strings(n, min_length, max_length, alphabet, seed, lambda s: s[::-1])


def copy(n: int, min_length: int = 1, max_length: int = 10, alphabet: str = "abcdefghijklmnopqrstuvwxyz",
         seed: int = 0) -> list[tuple[str, str]]:
    """n strings (length uniform in min..max, symbols uniform in `alphabet`) → the same string."""
    return _strings(n, min_length, max_length, alphabet, seed, lambda s: s)


GENERATORS = {"addition": addition, "dates": dates, "reverse": reverse, "copy": copy}


def splits(name: str, n: int, valid: float = 0.1, test: float = 0.1, seed: int = 0, **options):
    """(splits {"train", "valid", "test"}, SplitReport) of n generated pairs in all (rnnkit/data/pairs.py).

    Sources are distinct, so splitting by source moves nothing. For "dates" the test split is
    round(n * test) dates in HELD_OUT_FORMATS, none written as a training format would write it (train and
    valid: the other formats), unless `formats` is given.
    `options` go to the generator (digits=, max_length=, ...).
    """
    from .pairs import SplitReport, split_by_source

    try:
        generate = GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}") from None
    if name == "dates" and "formats" not in options and test > 0:
        n_test = round(n * test)
        if n_test < 1:
            raise ValueError(f"{n} examples are too few for a test split of {test:.0%}")
        rest, report = split_by_source(dates(n - n_test, seed=seed, **options), valid / (1 - test), 0.0, seed)
        held_out = dates(n_test, formats=HELD_OUT_FORMATS, seed=seed + 1, avoid=TRAIN_FORMATS, **options)
        out = {"train": rest["train"], "valid": rest["valid"], "test": held_out}
        return out, SplitReport({k: len(v) for k, v in out.items()}, report.moved, report.groups + n_test)
    return split_by_source(generate(n, seed=seed, **options), valid, test, seed)
