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
