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


def test_a_written_file_has_the_permissions_a_plain_write_would_give(tmp_path):
    """0666 less the umask for a new file, the old file's mode for a replaced one (mkstemp's 0600 made figures
    and reports unreadable to everyone but their owner)."""
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    old_umask = os.umask(0o022)
    try:
        fresh = files.write_bytes_atomic(tmp_path / "figure.png", b"\x89PNG")
        assert fresh.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert files.write_json(tmp_path / "private.json", {}).stat().st_mode & 0o777 == 0o600
        os.umask(0o022)
        os.chmod(fresh, 0o640)  # the user's choice for this file, kept when it is written again
        assert files.write_bytes_atomic(fresh, b"new").stat().st_mode & 0o777 == 0o640
        assert fresh.read_bytes() == b"new"
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "private.json"]
