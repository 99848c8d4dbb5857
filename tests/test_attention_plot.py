"""The attention heat map: a valid PNG whose size follows the tokens, and clear errors."""

import numpy as np
import pytest

from rnnkit import plots

matplotlib = pytest.importorskip("matplotlib")


def png_size(path):
    import struct

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def test_plot_attention(tmp_path):
    rng = np.random.default_rng(0)
    src, tgt = ["¿", "qué", "hora", "es", "?", "<eos>"], ["what", "time", "is", "it", "?", "<eos>"]
    w = rng.random((6, 6))
    w /= w.sum(axis=1, keepdims=True)
    small = png_size(plots.plot_attention(w, src, tgt, tmp_path / "a.png"))
    wide = png_size(plots.plot_attention(np.tile(w, (1, 4)) / 4, src * 4, tgt, tmp_path / "b.png"))
    assert wide[0] > small[0] + 200 and wide[1] == small[1]  # one column per source token


def test_plot_attention_errors(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(2, 3\) for 2 target and 2 source tokens"):
        plots.plot_attention(np.full((2, 3), 1 / 3), ["a", "b"], ["x", "y"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="lie in"):
        plots.plot_attention(np.array([[1.5]]), ["a"], ["x"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_attention(np.zeros((0, 0)), [], [], tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()
