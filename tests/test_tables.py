"""Reading labelled examples from CSV/TSV/JSONL files."""

import json

import pytest

from rnnkit.data.tables import read_labelled, sniff_delimiter


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_csv(tmp_path):
    path = write(tmp_path, "a.csv", 'id,text,label\r\n1,"Hello, world",pos\r\n\r\n2,"two\nlines ""q""", neg \r\n'
                                    '3,Ünïcode ✈️ ok,neutral\r\n')
    assert read_labelled(path) == [("Hello, world", "pos"), ('two\nlines "q"', "neg"),
                                   ("Ünïcode ✈️ ok", "neutral")]


def test_tsv_and_columns(tmp_path):
    path = write(tmp_path, "a.tsv", "sentiment\ttweet\n1\tgreat, thanks\n0\tnot, good\n")
    assert read_labelled(path, text_column="tweet", label_column="sentiment") == [
        ("great, thanks", "1"), ("not, good", "0")]


def test_bom_is_dropped(tmp_path):
    path = write(tmp_path, "a.csv", "\ufefftext,label\nhi,x\n".encode("utf-8"))
    assert read_labelled(path) == [("hi", "x")]


@pytest.mark.parametrize("sep", [",", "\t", ";", "|"])
def test_sniffed_delimiter(tmp_path, sep):
    path = write(tmp_path, "data.txt", f"label{sep}text\nspam{sep}buy now\nham{sep}see you\n")
    assert sniff_delimiter(path.read_text()) == sep
    assert read_labelled(path) == [("buy now", "spam"), ("see you", "ham")]
    assert read_labelled(path, delimiter=sep) == [("buy now", "spam"), ("see you", "ham")]


def test_jsonl(tmp_path):
    rows = [{"text": "a\u2028b", "label": 3, "extra": [1]}, {"label": "neg", "text": "Ünï ✈️"}]
    path = write(tmp_path, "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    assert read_labelled(path) == [("a\u2028b", "3"), ("Ünï ✈️", "neg")]
    sniffed = write(tmp_path, "a.data", path.read_bytes())
    assert read_labelled(sniffed) == read_labelled(path)


def test_undecodable(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\nok,x\ncaf\xe9,y\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"a\.csv: not valid UTF-8 at byte offset 19 \(line 3"):
        read_labelled(path)


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(tmp_path, content):
    with pytest.raises(ValueError, match="the file is empty"):
        read_labelled(write(tmp_path, "a.csv", content))


def test_header_only(tmp_path):
    with pytest.raises(ValueError, match="no examples after the header"):
        read_labelled(write(tmp_path, "a.csv", "text,label\n"))


def test_missing_column(tmp_path):
    path = write(tmp_path, "a.csv", "review,stars\ngood,5\n")
    with pytest.raises(ValueError, match=r"no column 'text' or 'label'; .* columns \['review', 'stars'\]"):
        read_labelled(path)
    with pytest.raises(ValueError, match=r"no column 'label'; .*\['review', 'stars'\]"):
        read_labelled(path, text_column="review")
    path = write(tmp_path, "a.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "y": 1}\n')
    with pytest.raises(ValueError, match=r"line 2: no field 'label'; this line has the fields \['text', 'y'\]"):
        read_labelled(path)


@pytest.mark.parametrize("content, line, what", [
    ('text,label\na,x\n"multi\nline",\n', 3, "label column 'label' is empty"),
    ("text,label\na,x\n  ,y\n", 3, "text column 'text' is empty"),
    ("text,label\na,x\n\nb\n", 4, "1 fields, but the header has 2"),
    ("text,label\na,x,extra\n", 2, "3 fields"),
    ("text,label\n,\n", 2, "text column 'text' is empty"),
])
def test_bad_csv_rows(tmp_path, content, line, what):
    with pytest.raises(ValueError, match=rf"a\.csv, line {line}: .*{what}"):
        read_labelled(write(tmp_path, "a.csv", content))


@pytest.mark.parametrize("row, what", [
    ('{"text": "a", "label": ""}', "label column 'label' is empty"),
    ('{"text": null, "label": "x"}', "text column 'text' holds null"),
    ('{"text": 5, "label": "x"}', "holds 5; expected a string"),
    ('{"text": "a", "label": true}', "holds true"),
    ('["a", "x"]', "expected a JSON object, got list"),
    ('{"text": "a", "label": "x"', "not valid JSON"),
])
def test_bad_jsonl_rows(tmp_path, row, what):
    path = write(tmp_path, "a.jsonl", '{"text": "ok", "label": "y"}\n\n' + row + "\n")
    with pytest.raises(ValueError, match=rf"a\.jsonl, line 3: .*{what}"):
        read_labelled(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_labelled(tmp_path / "nope.csv")
