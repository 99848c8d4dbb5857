"""The translation task: its data settings and splits, training, translating and evaluating through the CLI."""

import pytest

from rnnkit.data import datasets, generators
from rnnkit.tasks import seq2seq
from rnnkit.tasks.settings import SEQ2SEQ_SOURCES, Seq2SeqData

SPA = "".join(f"Sentence {i // 2}.\tFrase {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i} (a) & #{i} (b)\n"
              for i in range(60))


def test_sources_are_the_generators_and_the_translation_datasets():
    registered = [d.name for d in datasets.list_datasets() if d.languages]
    assert list(SEQ2SEQ_SOURCES) == [*generators.GENERATORS, *registered]


def test_data_settings_check_their_values():
    with pytest.raises(ValueError, match="give a dataset name"):
        Seq2SeqData()
    with pytest.raises(ValueError, match="unknown dataset 'sums'"):
        Seq2SeqData(dataset="sums")
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        Seq2SeqData(dataset="copy", max_length=0)


def test_pair_splits_of_a_generator_are_reproducible():
    data = Seq2SeqData(dataset="addition", examples=500, digits=2, split_seed=4)
    splits, report = seq2seq.pair_splits(data)
    assert report.sizes == {"train": 400, "valid": 50, "test": 50}
    assert seq2seq.pair_splits(data)[0] == splits
    assert all(int(t) == eval(s) for part in splits.values() for s, t in part)  # noqa: S307 (digits and +)
    assert seq2seq.tokenizer_for(data).level == "char"


def test_pair_splits_of_a_file_and_of_tatoeba(tmp_path, monkeypatch):
    path = tmp_path / "pairs.tsv"
    path.write_text("en\tes\n" + "".join(f"s{i // 3}\tt{i}\n" for i in range(90)), encoding="utf-8")
    data = Seq2SeqData(data=str(path), source_column="en", target_column="es", split_seed=1)
    splits, report = seq2seq.pair_splits(data)
    assert sum(report.sizes.values()) == 90 and report.groups == 30
    assert not {s for s, _ in splits["train"]} & {s for s, _ in splits["test"]}
    assert seq2seq.tokenizer_for(data).level == "word"

    folder = tmp_path / "tatoeba"
    folder.mkdir()
    (folder / "spa.tsv").write_text(SPA, encoding="utf-8")
    monkeypatch.setattr(datasets, "fetch", lambda name, home_dir=None, verbose=False: folder)
    en_es, report = seq2seq.pair_splits(Seq2SeqData(dataset="tatoeba-en-es"))
    assert report.groups == 30 and all(p[0].startswith("Sentence") and len(p) == 3 for p in en_es["train"])
    es_en, report = seq2seq.pair_splits(Seq2SeqData(dataset="tatoeba-en-es", source_language="es"))
    assert report.groups == 60 and all(p[0].startswith("Frase") for p in es_en["train"])


def test_load_prepared_reports(capsys):
    prepared, report = seq2seq.load_prepared(Seq2SeqData(dataset="reverse", examples=300, sequence_length=6,
                                                         max_length=4))
    out = capsys.readouterr().out
    assert f"kept {len(prepared.ids['train']):,} pairs, dropped" in out and "with more than 4 tokens" in out
    assert all(len(s) <= 4 and (s[::-1] == t).all() for s, t in prepared.ids["train"])
    assert prepared.report["train"].too_long > 0


# ------------------------------------------------------------------------------------------------ end to end

TINY = ["--examples", "300", "--hidden", "16", "--embedding", "8", "--batch-size", "32", "--epochs", "1",
        "--max-steps", "6", "--eval-translations", "20", "--no-progress", "--log-every", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny copy model trained a few steps through the CLI."""
    from rnnkit.cli import main

    out = tmp_path_factory.mktemp("s2s") / "run"
    code = main(["train", "seq2seq", "--dataset", "copy", "--sequence-length", "5", *TINY, "--out", str(out)])
    assert code == 0
    return out


def test_train_writes_a_checkpoint_with_the_vocabularies(trained):
    import json

    config = json.loads((trained / "best" / "config.json").read_text())["config"]
    assert config["task"] == "seq2seq" and config["model"]["attention"] == "bahdanau"
    assert config["source_vocab"]["tokens"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert set(config["target_vocab"]["tokens"][4:]) == set("abcdefghijklmnopqrstuvwxyz")
    assert config["tokenizer"]["level"] == "char" and config["data"]["dataset"] == "copy"
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_loss" in r]
    assert evals and {"val_exact_match", "val_bleu", "val_chrf", "val_perplexity"} <= set(evals[-1])


def test_translate_texts_stdin_json_and_nbest(trained, capsys, monkeypatch, tmp_path):
    import io
    import json

    from rnnkit.cli import main

    best = str(trained / "best")
    assert main(["translate", best, "abc", "hello"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(set(line) <= set("abcdefghijklmnopqrstuvwxyz") for line in lines)
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\n\nhello\n"))
    assert main(["translate", best, "--json", "--beam", "3", "--n-best", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in rows] == ["abc", "hello"]
    assert all(len(r["translations"]) == 2 and r["translations"][0]["score"] >= r["translations"][1]["score"]
               for r in rows)
    png = tmp_path / "att.png"
    assert main(["translate", best, "abcd", "--attention-png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_greedy_equals_beam_one_and_engines_agree(trained):
    pytest.importorskip("torch")
    from rnnkit.tasks.settings import Decoding

    texts = ["abc", "zyx", "hello"]
    scratch = seq2seq.load_seq2seq(trained / "best")
    torch_model = seq2seq.load_seq2seq(trained / "best", engine="torch", device="cpu")
    a = [r["translations"][0]["tokens"] for r in scratch.translate(texts)]
    b = [r["translations"][0]["tokens"] for r in torch_model.translate(texts)]
    assert a == b
    beam = scratch.translate(texts, Decoding(beam=4, n_best=4))
    assert all(len(r["translations"]) <= 4 for r in beam)
    by_name = scratch.translate(texts, beam=4, n_best=4)  # the same search, its settings by name
    assert [[t["tokens"] for t in r["translations"]] for r in by_name] == \
        [[t["tokens"] for t in r["translations"]] for r in beam]
    with pytest.raises(TypeError, match="not both"):
        scratch.translate(texts, Decoding(), beam=2)


def test_evaluate_on_the_held_out_split_and_a_file(trained, capsys, tmp_path):
    import json

    from rnnkit.cli import main

    assert main(["evaluate", str(trained / "best"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sources"] == 30 and report["split"] == "the test split"
    assert 0 <= report["exact_match"] <= 1 and 0 <= report["chrf"] <= 1 and len(report["examples"]) == 5
    path = tmp_path / "pairs.jsonl"
    long = "a" * 40  # over the model's limit: 32 tokens (4 x the longest training source, at least 32)
    path.write_text('{"source": "abc", "target": "abc"}\n{"source": "abc", "target": "abd"}\n'
                    f'{{"source": "{long}", "target": "{long}"}}\n', encoding="utf-8")
    assert main(["evaluate", str(trained / "best"), "--data", str(path), "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 sources (2 pairs), beam 2" in out and "exact match" in out and "chrF" in out
    assert "(1 pairs with an empty side or over the length limit were left out)" in out


def test_translate_bad_input_is_a_clear_error(trained, capsys, tmp_path):
    from rnnkit.cli import main

    best = str(trained / "best")
    for args, message in [([" "], "has no tokens"), (["ABC"], "every token of 'ABC' is unknown"),
                          (["a" * 100], "has 100 tokens; this model takes at most 32"),
                          (["abc", "--beam", "2", "--n-best", "3"], "n_best <= beam")]:
        assert main(["translate", best, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    assert main(["translate", best, "--file", str(bad)]) == 2
    assert "not valid UTF-8 at byte offset 3" in capsys.readouterr().err
    assert main(["evaluate", best, "--dataset", "shakespeare"]) == 2
    assert "own data (--split) or on a file" in capsys.readouterr().err


def test_resume_is_exact(tmp_path):
    """Stopped after 2 updates and resumed to 4, a run ends with the weights of one that never stopped."""
    import numpy as np

    from rnnkit.checkpoint import load_checkpoint
    from rnnkit.cli import main

    args = ["train", "seq2seq", "--dataset", "reverse", "--examples", "200", "--sequence-length", "4",
            "--hidden", "8", "--embedding", "4", "--batch-size", "16", "--eval-translations", "0", "--no-progress",
            "--eval-every", "2", "--dropout", "0.3"]
    assert main([*args, "--max-steps", "4", "--out", str(tmp_path / "straight")]) == 0
    assert main([*args, "--max-steps", "2", "--out", str(tmp_path / "resumed")]) == 0
    assert main([*args, "--max-steps", "4", "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "last").weights
    b = load_checkpoint(tmp_path / "resumed" / "last").weights
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 10**8}, "build too large a model: a parameter of shape"),
    ({"num_layers": 2}, "do not fit the weights"),
    ({"attention": "luong_general"}, "do not fit the weights"),
    ({"cell": "gru"}, "the weights do not fit the model settings: unexpected bridge.c.0.bias, bridge.c.0.weight;"),
])
def test_a_translation_checkpoint_whose_settings_do_not_fit_its_weights_is_refused(trained, tmp_path, change,
                                                                                 message):
    """Settings checked against the stored tensors before the model is built (a larger model refused without
    allocating it), on either engine's load."""
    import json
    import shutil

    from rnnkit.checkpoint import CheckpointError

    folder = tmp_path / "best"
    shutil.copytree(trained / "best", folder)
    document = json.loads((folder / "config.json").read_text())
    document["config"]["model"].update(change)
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=message):
        seq2seq.load_seq2seq(folder)
