"""rnnkit.checkpoint.atomic: atomic writes leave either the whole new file or the old one, and no temporary files."""
import json
import os

import pytest

from rnnkit.checkpoint import atomic as files


def test_write_json_creates_folders_and_writes_the_document(tmp_path):
    path = tmp_path / "a" / "b" / "report.json"
    assert files.write_json(path, {"x": [1, 2.5], "y": "é"}) == path
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": [1, 2.5], "y": "é"}
    assert path.read_text().endswith("}\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = files.write_text_atomic(tmp_path / "log.txt", "old\n")

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        files.write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.txt"]


def test_a_value_json_cannot_hold_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        files.write_json(tmp_path / "r.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []
