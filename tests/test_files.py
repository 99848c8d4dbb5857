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


def test_an_output_path_given_by_mistake_never_overwrites_a_file_of_another_kind(tmp_path):
    data = tmp_path / "sales.csv"
    data.write_text("month,sales\n2000-01,1\n")
    for kind in ("png", "json", "svg"):
        with pytest.raises(FileExistsError, match=f"sales.csv exists and is not a {kind.upper()} file"):
            files.check_output(data, kind)
    with pytest.raises(FileExistsError, match="is not a file"):
        files.check_output(tmp_path, "png")
    assert files.check_output(tmp_path / "new.png", "png") == tmp_path / "new.png"  # nothing there
    (tmp_path / "empty.png").touch()
    files.check_output(tmp_path / "empty.png", "png")
    files.write_json(tmp_path / "report.json", {"a": 1})
    files.check_output(tmp_path / "report.json", "json")  # a report of before: replaced, as named
    files.write_bytes_atomic(tmp_path / "figure.png", b"\x89PNG\r\n\x1a\n...")
    files.check_output(tmp_path / "figure.png", "png")
    assert data.read_text() == "month,sales\n2000-01,1\n"


def test_the_commands_check_the_files_they_will_write_before_they_run(tmp_path, capsys):
    from rnnkit.cli import main

    data = tmp_path / "sales.csv"
    data.write_text("month,sales\n")
    for argv in (["evaluate", str(tmp_path / "no-checkpoint"), "--report", str(data)],
                 ["forecast", str(tmp_path / "no-checkpoint"), "--plot", str(data)],
                 ["evaluate", str(tmp_path / "no-checkpoint"), "--confusion-png", str(data)]):
        assert main(argv) == 2
        assert "sales.csv exists and is not a" in capsys.readouterr().err  # before the checkpoint is read
    assert data.read_text() == "month,sales\n"


def test_a_figure_is_not_drawn_over_a_file_of_another_kind(tmp_path):
    pytest.importorskip("matplotlib")
    import numpy as np

    from rnnkit import plots

    data = tmp_path / "sales.csv"
    data.write_text("month,sales\n")
    with pytest.raises(FileExistsError, match="not a PNG file"):
        plots.plot_gradient_norms(np.ones((1, 5)), data)
    assert data.read_text() == "month,sales\n"
    path = plots.plot_gradient_norms(np.ones((1, 5)), tmp_path / "g.png")
    assert plots.plot_gradient_norms(np.ones((1, 5)), path) == path  # its own figure: replaced
