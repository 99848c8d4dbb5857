"""`rnnkit explain`: the report's page, its figures and its numbers (the tests' --tiny scale)."""
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from rnnkit.cli import main  # noqa: E402
from rnnkit.tasks import explain  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    found = explain.explain(out, "tiny")
    return out, found


FIGURES = ["gradient_through_time_T100.png", "gradient_after_training_T100.png", "long_sequences.png",
           "gates_lstm.png", "exploding.png", "initialisations.png", "bptt.png", "embeddings.png"]


def _links(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text)


def test_page_and_markdown_link_existing_figures(report):
    out, _ = report
    page, md = (out / "index.html").read_text(), (out / "index.md").read_text()
    html_links = _links(page, r'<img src="([^"]+)"')
    md_links = _links(md, r"!\[[^\]]*\]\(([^)]+)\)")
    assert sorted(html_links) == sorted(md_links) == sorted(FIGURES)
    for link in html_links:
        assert not Path(link).is_absolute() and "/" not in link
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count("<h2>") == 6 and md.count("\n## ") == 6


def test_page_states_the_measured_gradient_ratios(report):
    out, found = report
    r = found.ratios
    assert r["rnn_tanh"] < r["lstm"] / 1e3          # the vanilla RNN's gradient vanishes far faster at T = 100
    norms = found.gradient_norms[100]["rnn_tanh"]
    assert norms.shape == (100,) and np.all(norms > 0) and r["rnn_tanh"] == norms[0] / norms[-1]
    for text in ((out / "index.html").read_text(), (out / "index.md").read_text()):
        for cell in ("rnn_tanh", "lstm", "gru"):
            assert f"{r[cell]:.2g}" in text
        assert f"{r['lstm'] / r['rnn_tanh']:.2g} times smaller" in text
        for cell, norms in explain.after_training(found).items():
            assert f"{norms[0] / norms[-1]:.2g} for the {explain.CELL_NAMES[cell]}" in text


def test_page_states_the_measured_training_results(report):
    out, found = report
    md = (out / "index.md").read_text()
    assert set(found.long) == {"adding", "copy"}
    for problem, cells in found.long.items():
        for cell, by_length in cells.items():
            rows = [line for line in md.splitlines()
                    if line.startswith(f"| {explain.PROBLEM_NAMES[problem]} | {explain.CELL_NAMES[cell]} |")]
            entries = rows[0].strip("| ").split(" | ")[2:]
            assert len(entries) == len(found.scale.lengths)
            for t, entry in zip(found.scale.lengths, entries):
                if t not in by_length:
                    assert entry == "—"            # not tried: the cell failed at a shorter T
                    continue
                assert float(entry.split(" ")[0]) == round(by_length[t], 3)
                updates = found.updates[problem][cell][t]
                assert (updates is None) == (by_length[t] >= found.scale.success_fraction)
                assert ("✓" in entry) == (updates is not None)
            tried = sorted(by_length)
            assert tried == list(found.scale.lengths[:len(tried)])
            assert all(found.updates[problem][cell][t] is not None for t in tried[:-1])  # stops at a failure
    clipped, unclipped = found.exploding["clipped"], found.exploding["unclipped"]
    assert np.all(np.isfinite(clipped["loss"])) and f"validation MSE {clipped['valid']:.3g}" in md
    step = explain._diverged(unclipped)      # spectral radius 1.6 and SGD at lr 0.1 diverge without clipping
    assert step is not None and f"non-finite at update {step}" in md
    for run in found.inits.values():
        assert f"validation MSE {run['valid']:.3g}" in md
    for problem, units in (("adding", found.scale.hidden), ("copy", found.scale.copy_hidden)):   # long_settings
        assert all(d.hidden[0].shape[1] == units for d in found.trained[problem]["lstm"].values())
    assert ("copy task: hidden 12, at most 150 updates of 32 new sequences, lr 0.01, forget bias 3 for the LSTM, "
            "embedding U(-1, 1)") in md
    forget = found.trained["adding"]["lstm"][explain.gates_length(found, "lstm")].gates[0]["forget"]
    assert 0 < forget["mean"] < 1 and f"forget gate mean {forget['mean']:.2f}" in md


def test_cli_explain_tiny(tmp_path, capsys):
    assert main(["explain", "--tiny", "--out", str(tmp_path / "r")]) == 0
    assert "index.html" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"index.html", "index.md", *FIGURES}


def test_page_states_bptt_and_embeddings(report):
    out, found = report
    md = (out / "index.md").read_text()
    assert sorted(found.bptt) == [5, 25]
    for k, run in found.bptt.items():
        assert np.isfinite(run["loss"]) and run["loss"] > 0 and f"k = {k}: {run['loss']:.3f}" in md
    assert found.bptt[5]["updates"] == 5 * found.bptt[25]["updates"]   # the same characters in windows of 5 / 25
    arms = found.embeddings
    assert set(arms) == {"one-hot", "learned", "pretrained"}
    vocab = arms["one-hot"]["dimensions"]
    assert arms["learned"]["dimensions"] == arms["pretrained"]["dimensions"] == found.scale.vector_dim < vocab
    assert arms["one-hot"]["parameters"] != arms["learned"]["parameters"]
    for name, run in arms.items():
        assert 0 < run["macro_f1"] <= 1 and 0 < run["accuracy"] <= 1
        assert f"| {explain.ARMS[name]} | {run['accuracy']:.3f} | {run['macro_f1']:.3f} | {run['parameters']:,} |" in md


def test_unknown_scale_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scale"):
        explain.run_experiments("huge")


def test_out_that_is_a_file_fails_before_any_experiment(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(["explain", "--tiny", "--out", str(taken)]) == 2
    assert capsys.readouterr().err.startswith("error: ") and taken.read_text() == "not a folder"


def test_bad_embeddings_file_or_workers_fail_before_any_experiment(tmp_path, capsys):
    assert main(["explain", "--tiny", "--out", str(tmp_path / "r"), "--embeddings", str(tmp_path / "none.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["explain", "--tiny", "--out", str(tmp_path / "r"), "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
