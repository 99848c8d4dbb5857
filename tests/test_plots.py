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


def text_outside_the_canvas(fig) -> list:
    """What of a drawn figure is not wholly inside its canvas (a clipped label): each axes' drawn extent (its
    titles, labels, tick labels within the view, legend, annotations) and every other visible text."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    ticks = {id(t) for ax in fig.get_axes() for axis in (ax.xaxis, ax.yaxis)
             for t in axis.get_ticklabels(which="both")}
    boxes = [(ax.get_title() or "axes", ax.get_tightbbox(renderer)) for ax in fig.get_axes()]
    boxes += [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
              if t.get_visible() and t.get_text().strip() and id(t) not in ticks]
    return [(name, box.bounds) for name, box in boxes
            if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5]


def write_run(run, evaluations=((25, 1.9), (50, 1.2), (75, 0.9))):
    """A run's metrics.jsonl as the trainer writes it, its best validation loss at the last evaluation (the
    spot whose label used to be cut at the right edge)."""
    run.mkdir()
    lines, wall = [], 0.0
    for step in range(1, 76):
        wall += 0.5
        lines.append({"step": step, "epoch": 0, "loss": 2.5 - step / 50, "grad_norm": 100.0 / step ** 2,
                      "lr": 2e-3 * (1 - step / 80), "tokens_per_s": 1000.0, "time": "2026-12-03T15:00:00+00:00", "wall_s": wall})
        for at, loss in evaluations:
            if at == step:
                lines.append({"step": step, "epoch": 0, "val_loss": loss, "val_accuracy": 0.5 + step / 200,
                              "val_macro_f1": 0.4 + step / 200, "eval_seconds": 1.0, "wall_s": wall + 0.1})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


@needs_matplotlib
@pytest.mark.parametrize("x", ["step", "time"])
def test_the_curves_of_a_run_have_no_clipped_labels(tmp_path, x):
    run = write_run(tmp_path / "run")
    fig = plots.run_figure(run, x)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "validation metrics", "learning rate", "gradient norm"]
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["training loss", "validation loss", "best 0.9 (step 75)"]
    assert sorted(t.get_text() for t in axes[1].get_legend().get_texts()) == ["accuracy", "macro_f1"]
    assert axes[3].get_yscale() == "log"  # the gradient norm spans 100 to 0.018: a log scale
    assert text_outside_the_canvas(fig) == []
    if x == "time":
        assert axes[2].get_xlabel() == "wall time (minutes)"
        line = axes[0].get_lines()[1]  # validation loss: evaluations at 12.6, 25.1, 37.6 s of wall time
        np.testing.assert_allclose(line.get_xdata(), np.array([12.6, 25.1, 37.6]) / 60)
    assert text_outside_the_canvas(plots.history_figure(run / "metrics.jsonl")) == []


@needs_matplotlib
def test_the_plot_command_writes_png_and_svg(tmp_path, capsys):
    from rnnkit.cli import main

    run = write_run(tmp_path / "run")
    assert main(["plot", str(run), "--svg"]) == 0
    assert capsys.readouterr().out.split() == [str(run / "curves.png"), str(run / "curves.svg")]
    width, height, size = png_size(run / "curves.png")
    assert (width, height) == (1200, 792) and size > 20_000
    svg = (run / "curves.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "gradient norm" in svg
    assert main(["plot", str(tmp_path)]) == 2
    assert "holds no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    write_metrics(tmp_path / "old" / "metrics.jsonl")  # no wall_s: logged before rnnkit wrote it
    assert main(["plot", str(tmp_path / "old"), "--x", "time"]) == 2
    assert "has no wall times" in capsys.readouterr().err


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
    with pytest.raises(ValueError, match="history and forecast matching their dates"):
        plots.plot_forecast(hist_dates, history[:3], dates, forecast, tmp_path / "c.png")


@needs_matplotlib
def test_plot_forecast_draws_a_panel_per_target(tmp_path, monkeypatch):
    """Two targets: two panels, each with its own history, forecast and bands (the figure grows by a panel)."""
    hist_dates = np.arange("2024-03-01T00", "2024-03-03T00", dtype="datetime64[h]").astype("datetime64[s]")
    dates = np.arange("2024-03-03T00", "2024-03-03T06", dtype="datetime64[h]").astype("datetime64[s]")
    history = np.stack([np.sin(np.arange(48) / 4), 10 + np.cos(np.arange(48) / 4)], axis=1)
    forecast = np.stack([np.zeros(6), np.full(6, 10.0)], axis=1)
    bands = {80: (forecast - 1, forecast + 1)}
    from matplotlib.axes import Axes

    drawn = []

    real_plot = Axes.plot

    def spy(self, x, y, *args, **kwargs):
        drawn.append((id(self), np.asarray(x), np.asarray(y)))
        return real_plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    two = plots.plot_forecast(hist_dates, history, dates, forecast, tmp_path / "two.png", bands,
                              truth=forecast + 0.5, label=["load", "price"])
    monkeypatch.setattr(Axes, "plot", real_plot)
    one = plots.plot_forecast(hist_dates, history[:, 0], dates, forecast[:, 0], tmp_path / "one.png",
                              {80: (bands[80][0][:, 0], bands[80][1][:, 0])})
    assert png_size(two)[1] > 1.6 * png_size(one)[1]
    assert len({axes for axes, _, _ in drawn}) == 2 and len(drawn) == 6  # history, forecast, truth per panel
    np.testing.assert_array_equal(drawn[3][2], history[:, 1])          # the second panel: the second target
    with pytest.raises(ValueError, match="1 labels for 2 targets"):
        plots.plot_forecast(hist_dates, history, dates, forecast, tmp_path / "c.png", label="load")
    with pytest.raises(ValueError, match="every interval must have the forecast's shape"):
        plots.plot_forecast(hist_dates, history, dates, forecast, tmp_path / "c.png", {80: (forecast[:, 0],
                                                                                           forecast[:, 0])})


@needs_matplotlib
def test_plot_learning_curve(tmp_path):
    curves = {"greedy": [(1, 20.5), (2, 25.0), (3, 27.5)], "beam 5": [(1, 22.0), (2, 26.5), (3, 29.0)]}
    fig = plots.learning_curve_figure(curves, "epoch", "test BLEU", target=30)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["beam 5"].get_xdata()) == [1, 2, 3] and list(lines["beam 5"].get_ydata()) == [22.0, 26.5, 29.0]
    assert list(lines["target 30"].get_ydata()) == [30, 30] and ax.get_ylabel() == "test BLEU"
    width, height, size = png_size(plots.plot_learning_curve(curves, tmp_path / "curve.png", "epoch", "BLEU"))
    assert 400 <= width <= 2000 and 250 <= height <= 2000 and size > 10_000
    with pytest.raises(ValueError, match="at least one"):
        plots.learning_curve_figure({"greedy": []}, "epoch", "BLEU")


def test_the_forecast_figure_gets_every_target_and_the_hours(tmp_path, monkeypatch):
    """rnnkit.tasks.forecast.plot_forecast hands the figure every target, its bands and truth, and the dates as
    they are: an hourly series' hours (cut to days they stacked 24 points on one x)."""
    from rnnkit.data.series import make_series
    from rnnkit.tasks import forecast

    dates = np.arange("2024-03-01T00", "2024-03-04T00", dtype="datetime64[h]")
    history = make_series(dates, np.stack([np.arange(72.0), np.arange(72.0) + 100], axis=1), ["a", "b"])
    future = history.future_dates(6)
    result = {"dates": future, "forecast": np.ones((6, 2)), "target": ["a", "b"],
              "intervals": {80.0: (np.zeros((6, 2)), np.full((6, 2), 2.0))}}
    seen = {}
    monkeypatch.setattr(plots, "plot_forecast", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    forecast.plot_forecast(result, history, tmp_path / "f.png", truth=np.zeros((6, 2)))
    hist_dates, values, fdates, fc, _, bands, truth = seen["args"]
    assert len(np.unique(hist_dates)) == 18 and len(np.unique(fdates)) == 6      # the last 3 horizons, hourly
    np.testing.assert_array_equal(values, history.y[-18:])
    assert fc.shape == truth.shape == bands[80.0][1].shape == (6, 2) and seen["kwargs"]["label"] == ["a", "b"]


@needs_matplotlib
def test_a_figure_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Drawn in memory, then renamed into place: a draw that fails halfway leaves the file that was there as
    it was (savefig straight into the path left a truncated PNG), and no temporary file beside it."""
    from matplotlib.figure import Figure

    path = tmp_path / "forecast.png"
    own = b"\x89PNG\r\n\x1a\n the user's own figure"
    path.write_bytes(own)
    dates = np.arange("1961-01", "1961-07", dtype="datetime64[M]")

    def fail_halfway(self, target, **kwargs):
        target.write(b"\x89PNG half a figure")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", fail_halfway)
    with pytest.raises(OSError, match="No space left"):
        plots.plot_forecast(dates, np.ones(6), dates + 6, np.ones(6), path)
    assert path.read_bytes() == own and sorted(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    assert png_size(plots.plot_forecast(dates, np.ones(6), dates + 6, np.ones(6), path))[2] > 1000


def test_plot_backtest_draws_every_forecast_or_the_last_points(tmp_path):
    dates = np.arange("1958-01", "1961-01", dtype="datetime64[M]")
    series = 300 + 10 * np.arange(36.0)
    starts = np.array([12, 18, 24])
    when = dates[starts[:, None] + np.arange(6)]
    forecasts = series[starts[:, None] + np.arange(6)] + 5.0  # (3, 6)
    for last in (False, True):
        path = plots.plot_backtest(dates, series, when, forecasts, tmp_path / f"b{last}.png", last_points_only=last)
        assert png_size(path)[2] > 1000
    with pytest.raises(ValueError, match=r"forecasts \(n, horizon, 1\) and their dates \(n, horizon\)"):
        plots.plot_backtest(dates, series, when[:, :5], forecasts, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="2 labels for 1 targets"):
        plots.plot_backtest(dates, series, when, forecasts, tmp_path / "bad.png", label=["a", "b"])
