"""Generated translation tasks: every answer right, dates readable back, held-out formats held out."""

import datetime as dt
import re

import pytest

from rnnkit.data import generators as g

# strptime patterns of DATE_FORMATS (ordinal suffixes are removed first; %y is mapped to 1950..2049 below)
STRPTIME = {
    "d MMMM yyyy": "%d %B %Y", "dd MMM yyyy": "%d %b %Y", "MMMM d, yyyy": "%B %d, %Y",
    "EEEE, MMMM do yyyy": "%A, %B %d %Y", "EEE, d MMM yyyy": "%a, %d %b %Y", "do of MMMM yyyy": "%d of %B %Y",
    "MM/dd/yy": "%m/%d/%y", "M/d/yyyy": "%m/%d/%Y", "yyyy.M.d": "%Y.%m.%d", "yyyy-MM-dd": "%Y-%m-%d",
    "yyyyMMdd": "%Y%m%d", "dd.MM.yyyy": "%d.%m.%Y", "MMMM d yyyy, upper case": "%B %d %Y",
    "EEEE d MMMM yyyy, lower case": "%A %d %B %Y", "d-MMM-yyyy": "%d-%b-%Y", "MMM d, yyyy": "%b %d, %Y",
    "EEEE d MMMM yyyy": "%A %d %B %Y", "d-M-yyyy": "%d-%m-%Y", "yyyy-MMM-dd": "%Y-%b-%d", "MMM dd yyyy": "%b %d %Y",
    "EEE MMM dd yyyy": "%a %b %d %Y",
}
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")


def parse(text: str, name: str) -> dt.date:
    d = dt.datetime.strptime(_ORDINAL.sub(r"\1", text), STRPTIME[name]).date()
    if "%y" in STRPTIME[name] and d.year >= 2050:  # strptime's pivot is 1969; ours 1950
        d = d.replace(year=d.year - 100)
    return d


def test_every_format_has_a_parser_and_the_example():
    assert set(STRPTIME) == set(g.DATE_FORMATS)
    assert set(g.HELD_OUT_FORMATS) < set(g.DATE_FORMATS) and not set(g.HELD_OUT_FORMATS) & set(g.TRAIN_FORMATS)
    d = dt.date(1998, 3, 3)
    assert g.format_date(d, "EEEE, MMMM do yyyy") == "Tuesday, March 3rd 1998"
    assert g.format_date(d, "MM/dd/yy") == "03/03/98" and g.format_date(d, "yyyy.M.d") == "1998.3.3"
    assert g.format_date(d, "d MMMM yyyy") == "3 March 1998"
    assert g.format_date(dt.date(2011, 12, 22), "do of MMMM yyyy") == "22nd of December 2011"
    assert [g.ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 30, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "30th", "31st"]
    with pytest.raises(ValueError, match="unknown date format 'x'"):
        g.format_date(d, "x")


def test_dates_parse_back_and_name_the_right_weekday():
    pairs = g.dates(3000, formats=list(g.DATE_FORMATS), seed=5)
    seen_formats = set()
    for source, target in pairs:
        iso = dt.date.fromisoformat(target)
        assert g.FIRST_DATE <= iso <= g.LAST_DATE
        names = [f for f in g.DATE_FORMATS if g.format_date(iso, f) == source]  # "May" is 2 formats' month
        assert names
        weekday = iso.strftime("%A")  # Python's C-locale name, independent of the generator's table
        for name in names:
            assert parse(source, name) == iso
            if "EEEE" in name:
                assert weekday.lower() in source.lower()
            elif "EEE" in name:
                assert source[:4] in (weekday[:3] + ",", weekday[:3] + " ")
        seen_formats.update(names)
    assert seen_formats == set(g.DATE_FORMATS)


def test_no_string_is_two_dates():
    """Days 1..12 (those that could swap with a month) of every month of 1950..2049, and the 13th..31st of
    January, in every format: no source is written for two different dates."""
    seen = {}
    days = [dt.date(y, m, d) for y in range(1950, 2050) for m in range(1, 13) for d in range(1, 13)]
    days += [dt.date(y, 1, d) for y in range(1950, 2050) for d in range(13, 32)]
    for day in days:
        for name in g.DATE_FORMATS:
            text = g.format_date(day, name)
            assert seen.setdefault(text, day) == day, (text, seen[text], day)
    assert len(seen) > 200_000


def test_held_out_formats_never_in_train():
    splits, report = g.splits("dates", 2000, valid=0.1, test=0.1, seed=3)
    assert report.sizes == {"train": 1600, "valid": 200, "test": 200} and report.moved == 0
    def formats_of(pair):  # every format that writes this date as this source
        return {f for f in g.DATE_FORMATS if g.format_date(dt.date.fromisoformat(pair[1]), f) == pair[0]}
    test = [formats_of(p) for p in splits["test"]]
    assert all(fs and fs <= set(g.HELD_OUT_FORMATS) for fs in test)  # no training format writes them so
    assert set().union(*test) == set(g.HELD_OUT_FORMATS)
    assert all(formats_of(p) & set(g.TRAIN_FORMATS) for s in ("train", "valid") for p in splits[s])
    sources = [p[0] for s in splits.values() for p in s]
    assert len(sources) == len(set(sources))


def test_held_out_formats_combine_pieces_of_training_formats():
    """Each piece of a held-out format is written, at the same place, by some training format (1998-03-03 and
    2001-11-22); and the held-out test split is the one the first benchmark scored (the training formats only
    filter it)."""
    def written(d, names):
        return [g.format_date(d, f) for f in names]
    for d in (dt.date(1998, 3, 3), dt.date(2001, 11, 22)):
        day, mon = str(d.day), d.strftime("%b")
        train = written(d, g.TRAIN_FORMATS)
        assert any(t.startswith(f"{day}-") for t in train)                       # "3-" of 3-Mar-1998
        assert any(f"-{mon}-" in t for t in train)                               # "-Mar-"
        assert any(t.startswith(f"{mon} ") for t in train)                       # "Mar " of Mar 3, 1998
        assert any(t.endswith(f" {day}, {d.year}") for t in train)               # "3, 1998"
        assert any(t.startswith(d.strftime("%A") + ",") for t in train)          # "Tuesday" capitalised
        assert any(t.startswith(d.strftime("%A ").lower() + day + " ") for t in train)  # "tuesday 3 "
        assert not set(written(d, g.HELD_OUT_FORMATS)) & set(train)
    test = g.splits("dates", 50_000, seed=0)[0]["test"]
    assert len(test) == 5000 and [s for s, _ in test[:3]] == ["Sunday 27 April 1997", "8-Mar-2001",
                                                              "Tuesday 8 July 2025"]


def test_addition_answers_are_right():
    pairs = g.addition(5000, digits=3, seed=1)
    assert len({s for s, _ in pairs}) == 5000
    lengths = set()
    for source, target in pairs:
        a, b = source.split("+")
        assert re.fullmatch(r"0|[1-9]\d{0,2}", a) and re.fullmatch(r"0|[1-9]\d{0,2}", b)
        assert int(target) == int(a) + int(b) and target == str(int(a) + int(b))
        lengths.update((len(a), len(b)))
    assert lengths == {1, 2, 3}
    assert g.addition(50, digits=5, seed=9) == g.addition(50, digits=5, seed=9)  # seeded
    assert g.addition(50, seed=1) != g.addition(50, seed=2)
    assert sorted(g.addition(100, digits=1)) == sorted((f"{a}+{b}", str(a + b)) for a in range(10) for b in range(10))
    with pytest.raises(ValueError, match="only 100 distinct sums"):
        g.addition(101, digits=1)
    with pytest.raises(ValueError, match="digits must be in 1..18"):
        g.addition(5, digits=0)


def test_reverse_and_copy():
    rev = g.reverse(300, min_length=2, max_length=6, alphabet="abc", seed=4)
    assert all(t == s[::-1] and 2 <= len(s) <= 6 and set(s) <= set("abc") for s, t in rev)
    assert len({s for s, _ in rev}) == 300
    cp = g.copy(20, seed=4)
    assert all(s == t for s, t in cp) and cp == g.copy(20, seed=4)
    assert len(g.copy(14, min_length=1, max_length=3, alphabet="01")) == 14  # all 2 + 4 + 8 strings
    with pytest.raises(ValueError, match="only 14 distinct strings"):
        g.copy(15, max_length=3, alphabet="01")
    with pytest.raises(ValueError, match="min_length <= max_length"):
        g.reverse(5, min_length=4, max_length=3)
    with pytest.raises(ValueError, match=">= 1"):
        g.reverse(0)


def test_splits_of_every_generator():
    for name in g.GENERATORS:
        splits, report = g.splits(name, 200, seed=2)
        assert sum(report.sizes.values()) == 200 and all(splits[s] for s in ("train", "valid", "test"))
    with pytest.raises(ValueError, match="unknown generator 'sums'"):
        g.splits("sums", 10)
    splits, _ = g.splits("addition", 100, digits=2, seed=2)
    assert all(len(p[0].split("+")[0]) <= 2 for s in splits.values() for p in s)
