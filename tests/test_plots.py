"""Figures: valid PNG files of a plausible size (skipped without matplotlib)."""

import json
import struct
import sys

import numpy as np
import pytest

from rnnkit import plots

try:
    import matplotlib  # noqa: F401
except ImportError:
    matplotlib = None
needs_matplotlib = pytest.mark.skipif(matplotlib is None, reason="needs matplotlib (pip install 'rnnkit[plots]')")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    width, height = struct.unpack(">II", data[16:24])
    return width, height, len(data)


@needs_matplotlib
def test_plot_confusion(tmp_path):
    m = np.array([[850, 40, 17], [60, 210, 34], [20, 30, 178]])
    path = plots.plot_confusion(m, ["negative", "neutral", "positive"], tmp_path / "confusion.png")
    width, height, size = png_size(path)
    assert 300 <= width <= 2000 and 300 <= height <= 2000 and size > 10_000


@needs_matplotlib
def test_plot_confusion_empty_row_and_errors(tmp_path):
    path = plots.plot_confusion([[3, 1], [0, 0]], ["a", "b"], tmp_path / "c.png", title="tiny")
    assert png_size(path)[2] > 5_000
    with pytest.raises(ValueError, match="2 label names for a 3x3 matrix"):
        plots.plot_confusion(np.eye(3), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "x.png")


def write_metrics(path, with_val=True):
    rng = np.random.default_rng(0)
    lines = []
    for step in range(1, 201):
        lines.append({"step": step, "epoch": step // 50, "loss": 2.0 * np.exp(-step / 60) + 0.3 + 0.05 * rng.random(),
                      "grad_norm": 1.0})
        if with_val and step % 25 == 0:
            lines.append({"step": step, "epoch": step // 50, "val_loss": 2.0 * np.exp(-step / 80) + 0.45,
                          "val_perplexity": 3.0})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@needs_matplotlib
@pytest.mark.parametrize("with_val", [True, False])
def test_plot_history(tmp_path, with_val):
    metrics = write_metrics(tmp_path / "metrics.jsonl", with_val)
    path = plots.plot_history(metrics, tmp_path / "history.png")
    width, height, size = png_size(path)
    assert 400 <= width <= 2000 and 250 <= height <= 2000 and size > 10_000


def test_read_history_and_errors(tmp_path):
    series = plots.read_history(write_metrics(tmp_path / "m.jsonl"))
    assert len(series["loss"]) == 200 and len(series["val_loss"]) == 8 and series["val_loss"][0][0] == 25
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": \n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2: not valid JSON"):
        plots.read_history(bad)
    bad.write_text('{"loss": 1.0}\n')
    with pytest.raises(ValueError, match="line 1: expected a JSON object with a 'step'"):
        plots.read_history(bad)
    bad.write_text('{"step": 1, "accuracy": 0.5}\n')
    with pytest.raises(ValueError, match=r"no 'loss' or 'val_loss' values to plot \(found: \['accuracy'\]\)"):
        plots.plot_history(bad, tmp_path / "x.png")


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes `import matplotlib.figure` fail
    with pytest.raises(ImportError, match=r"pip install 'rnnkit\[plots\]'"):
        plots.plot_confusion(np.eye(2), ["a", "b"], tmp_path / "x.png")


@needs_matplotlib
def test_plot_forecast(tmp_path):
    from matplotlib.image import imread

    hist_dates = np.arange("1958-01", "1961-01", dtype="datetime64[M]")
    dates = np.arange("1961-01", "1961-07", dtype="datetime64[M]")
    history = 400 + 50 * np.sin(np.arange(36) / 2)
    forecast = np.full(6, 420.0)
    bands = {80: (forecast - 20, forecast + 20), 95: (forecast - 40, forecast + 40)}
    with_bands = plots.plot_forecast(hist_dates, history, dates, forecast, tmp_path / "a.png", bands,
                                     truth=forecast + 5, title="Air passengers")
    plain = plots.plot_forecast(hist_dates, history, dates, forecast, tmp_path / "b.png")
    width, height, size = png_size(with_bands)
    assert 500 <= width <= 2000 and 300 <= height <= 1500 and size > 10_000

    def pale_blue(path):  # the shaded intervals: blue well above red, not white
        rgb = imread(path)[..., :3]
        return int(np.sum((rgb[..., 2] - rgb[..., 0] > 0.1) & (rgb[..., 0] > 0.5)))

    assert pale_blue(with_bands) > 10 * max(pale_blue(plain), 100)
    with pytest.raises(ValueError, match="truth has shape"):
        plots.plot_forecast(hist_dates, history, dates, forecast, tmp_path / "c.png", truth=forecast[:2])
    with pytest.raises(ValueError, match="1-D history and forecast"):
        plots.plot_forecast(hist_dates, history[:3], dates, forecast, tmp_path / "c.png")
