"""Translation pairs: files, tokenising, length filter, split by source, vocabularies, batches, Tatoeba."""

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data import datasets
from rnnkit.data.batching import PairBatcher, pad, pair_batch
from rnnkit.data.datasets import DatasetError
from rnnkit.data.pairs import (SentenceTokenizer, build_vocabularies, filter_by_length, prepare_pairs, read_pairs,
                               split_by_source, tokenize_pairs)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ------------------------------------------------------------------------------------------------ files


def test_read_pairs_tsv_csv_jsonl(tmp_path):
    want = [("Go.", "Ve."), ("Hi, Tom.", '¡Hola, "Tom"!')]
    tsv = write(tmp_path, "a.tsv", 'id\ten\tes\n1\tGo.\tVe.\n\n2\tHi, Tom.\t"¡Hola, ""Tom""!"\n')
    assert read_pairs(tsv, "en", "es") == want
    csv = write(tmp_path, "a.csv", 'en,es\nGo.,Ve.\n"Hi, Tom.","¡Hola, ""Tom""!"\n')
    assert read_pairs(csv, "en", "es") == want
    rows = [{"source": s, "target": t, "x": 1} for s, t in want]
    jsonl = write(tmp_path, "a.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    assert read_pairs(jsonl) == want


def test_read_pairs_errors(tmp_path):
    path = write(tmp_path, "a.tsv", "en\tfr\nGo.\tVa.\n")
    with pytest.raises(ValueError, match=r"a\.tsv: no column 'es'; the header .* has the columns \['en', 'fr'\]"):
        read_pairs(path, "en", "es")
    with pytest.raises(ValueError, match="both 'en'"):
        read_pairs(path, "en", "en")
    with pytest.raises(ValueError, match=r"a\.tsv, line 3: the target column 'fr' is empty"):
        read_pairs(write(tmp_path, "a.tsv", "en\tfr\nGo.\tVa.\nHi.\t \n"), "en", "fr")
    with pytest.raises(ValueError, match=r"e\.tsv: the file is empty"):
        read_pairs(write(tmp_path, "e.tsv", ""))
    latin = write(tmp_path, "l.tsv", "source\ttarget\nok\tbien\ncaf\xe9\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"l\.tsv: not valid UTF-8 at byte offset 25 \(line 3, byte 0xe9"):
        read_pairs(latin)
    with pytest.raises(ValueError, match=r"j\.jsonl, line 1: no field 'target'"):
        read_pairs(write(tmp_path, "j.jsonl", '{"source": "a", "tgt": "b"}\n'))
    with pytest.raises(FileNotFoundError):
        read_pairs(tmp_path / "missing.tsv")


# ------------------------------------------------------------------------------------------------ tokens


def test_sentence_tokenizer():
    word = SentenceTokenizer("word", lower=True)
    assert word.tokenize("  ¿Qué   HORA es?\t") == ["¿", "qué", "hora", "es", "?"]
    assert word.detokenize(["¿", "qué", "hora", "es", "?"]) == "¿qué hora es?"
    assert word.tokenize("I don't know, Tom.") == ["i", "don't", "know", ",", "tom", "."]
    # NFKC folds the ligature and full-width digits; NFC composes e + combining acute into é only
    assert SentenceTokenizer("word").tokenize("ﬁne １２ cafe\u0301") == ["fine", "12", "café"]
    assert SentenceTokenizer("word", normalization="NFC").tokenize("ﬁne cafe\u0301") == ["ﬁne", "café"]
    # without normalisation a decomposed accent is a mark of its own: the reason to normalise
    assert SentenceTokenizer("word", normalization="none").tokenize("cafe\u0301") == ["cafe", "\u0301"]
    char = SentenceTokenizer("char")
    assert char.tokenize(" 12 +  3 ") == ["1", "2", " ", "+", " ", "3"]
    assert char.detokenize(char.tokenize("123+45")) == "123+45"
    assert SentenceTokenizer.from_config(word.config()) == word
    with pytest.raises(ValueError, match="level must be"):
        SentenceTokenizer("byte")
    with pytest.raises(ValueError, match="normalization must be"):
        SentenceTokenizer(normalization="NFD")
    with pytest.raises(ValueError, match="must be a string"):
        word.tokenize(None)


def test_filter_by_length_reports_drops():
    toks = tokenize_pairs([("a b c", "x"), ("a", "x y z w"), ("a b", "x y"), ("  ", "x"), ("a", "")],
                          SentenceTokenizer(), SentenceTokenizer())
    keep, report = filter_by_length(toks, 3)
    assert keep == [0, 2] and (report.kept, report.too_long, report.empty, report.dropped) == (2, 1, 2, 3)
    assert str(report) == "kept 2 pairs, dropped 3 (1 with more than 3 tokens on a side, 2 with an empty side)"
    keep, report = filter_by_length(toks, None)
    assert keep == [0, 1, 2] and report.dropped == 2
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        filter_by_length(toks, 0)


def test_vocabularies_per_side():
    toks = [(["a", "b", "a"], ["x"]), (["a", "c"], ["x", "y"])]
    src, tgt = build_vocabularies(toks)
    assert src.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c"]
    assert tgt.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "x", "y"]
    assert (src.pad_id, src.unk_id, src.bos_id, src.eos_id) == (0, 1, 2, 3)
    src, tgt = build_vocabularies(toks, min_freq=2)
    assert src.itos[4:] == ["a"] and tgt.itos[4:] == ["x"]
    src, _ = build_vocabularies(toks, max_vocab=5)
    assert src.itos[4:] == ["a"]


def test_prepare_pairs():
    splits = {"train": [("Go now.", "Ve ya."), ("Go!", "¡Ve!"), ("A very long one here", "x")],
              "valid": [("Go home.", "Ve a casa."), ("", "x")], "test": []}
    tok = SentenceTokenizer("word", lower=True)
    data = prepare_pairs(splits, tok, tok, max_length=4)
    assert [len(data.ids[s]) for s in ("train", "valid", "test")] == [2, 1, 0]
    assert (data.report["train"].too_long, data.report["valid"].empty) == (1, 1)
    assert data.pairs["valid"] == [("Go home.", "Ve a casa.")]
    src, tgt = data.ids["valid"][0]
    assert data.source_vocab.decode(src) == ["go", "<unk>", "."] and src.dtype == np.int64
    assert data.target_vocab.decode(tgt) == ["ve", "<unk>", "<unk>", "."]
    assert data.unknown_rate("valid") == pytest.approx((1 / 3, 2 / 4))
    with pytest.raises(ValueError, match="no training pairs left"):
        prepare_pairs({"train": [("a b c", "x")]}, tok, tok, max_length=2)


# ------------------------------------------------------------------------------------------------ split

# 16 sources, 80 targets: sources repeat, and a few targets link sources (connected groups for group="both")
pair_lists = st.lists(st.tuples(st.sampled_from("abcdefghijklmnop"), st.integers(0, 79).map(str)), min_size=10,
                      max_size=80)


@settings(max_examples=25, deadline=None)
@given(pairs=pair_lists, seed=st.integers(0, 2**32 - 1), group=st.sampled_from(["source", "both"]))
def test_split_by_source_invariants(pairs, seed, group):
    try:
        splits, report = split_by_source(pairs, 0.2, 0.2, seed, group=group)
    except ValueError as e:  # too few groups for three non-empty splits
        assert "split is empty" in str(e)
        return
    names = ("train", "valid", "test")
    assert Counter(p for s in names for p in splits[s]) == Counter(pairs)  # every pair once
    assert all(splits[s] for s in names)
    for a in names:  # no source (and with group="both" no target) in two splits
        for b in names:
            if a < b:
                assert not {p[0] for p in splits[a]} & {p[0] for p in splits[b]}
                if group == "both":
                    assert not {p[1] for p in splits[a]} & {p[1] for p in splits[b]}
    for s in names:  # each split keeps the input order
        positions = [i for i, p in enumerate(pairs) if p in set(splits[s])]
        assert [pairs[i] for i in positions] == splits[s]
    assert report.sizes == {s: len(splits[s]) for s in names}
    # moved: the pairs not where the plain cut of the same shuffle put them
    n = len(pairs)
    n_valid, n_test = round(n * 0.2), round(n * 0.2)
    order = np.random.default_rng(seed).permutation(n)
    plain = np.empty(n, dtype=int)
    plain[order] = [0] * (n - n_valid - n_test) + [1] * n_valid + [2] * n_test
    where = {}
    for s, name in enumerate(names):
        for p in splits[name]:
            where[p[0]] = s
    assert report.moved == sum(where[p[0]] != plain[i] for i, p in enumerate(pairs))
    assert split_by_source(pairs, 0.2, 0.2, seed, group=group) == (splits, report)  # seeded


def test_split_by_source_moves_repeated_sources():
    pairs = [(f"s{i // 4}", f"t{i}") for i in range(400)]  # each source with 4 translations
    splits, report = split_by_source(pairs, 0.1, 0.1, seed=3)
    assert report.moved > 0 and report.groups == 100
    assert sum(report.sizes.values()) == 400 and all(v % 4 == 0 for v in report.sizes.values())
    assert "pairs moved to keep each source in one split" in str(report)
    unique = [(f"s{i}", "t") for i in range(100)]
    assert split_by_source(unique, 0.1, 0.1)[1].moved == 0
    assert split_by_source(unique, 0.1, 0.1, seed=1)[0] != split_by_source(unique, 0.1, 0.1, seed=2)[0]
    with pytest.raises(ValueError, match="too few"):
        split_by_source(unique[:3], 0.1, 0.1)
    with pytest.raises(ValueError, match="fractions"):
        split_by_source(unique, 0.5, 0.5)
    with pytest.raises(ValueError, match="test split is empty"):
        split_by_source([("a", "x")] * 20 + [("b", "y")], 0.0, 0.2)


def test_split_keeps_extra_items():
    triples = [(f"s{i}", f"t{i}", f"#{i}") for i in range(30)]
    splits, _ = split_by_source(triples, 0.1, 0.1)
    assert all(len(p) == 3 and p[2] == "#" + p[0][1:] for s in splits.values() for p in s)


# ------------------------------------------------------------------------------------------------ batches


def test_pair_batch_layout():
    batch = pair_batch([np.array([5, 6, 7]), np.array([8])], [np.array([9]), np.array([10, 11])])
    np.testing.assert_array_equal(batch["source"], [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(batch["source_lengths"], [3, 1])
    np.testing.assert_array_equal(batch["target_in"], [[2, 9, 0], [2, 10, 11]])
    np.testing.assert_array_equal(batch["target_out"], [[9, 3, 0], [10, 11, 3]])
    np.testing.assert_array_equal(batch["target_lengths"], [2, 3])
    assert all(v.dtype == np.int64 for v in batch.values())
    ids, lengths = pad([np.array([1, 2]), np.array([3])], pad_id=9)
    np.testing.assert_array_equal(ids, [[1, 2], [3, 9]])
    with pytest.raises(ValueError, match="as many targets as sources"):
        pair_batch([np.array([1])], [])


def random_pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(4, 50, size=rng.integers(1, 30)), rng.integers(4, 50, size=rng.integers(1, 30)))
            for _ in range(n)]


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 120), batch_size=st.integers(1, 40), seed=st.integers(0, 1000), bucket=st.booleans())
def test_pair_batcher_covers_every_pair_once(n, batch_size, seed, bucket):
    pairs = random_pairs(n, seed)
    batcher = PairBatcher(pairs, batch_size, seed=seed, bucket=bucket, pool=3)
    batches = list(batcher.batches(epoch=1))
    assert len(batches) == len(batcher) == -(-n // batch_size)
    index = np.concatenate([b["index"] for b in batches])
    assert sorted(index.tolist()) == list(range(n))
    for b in batches:
        for row, i in enumerate(b["index"]):
            src, tgt = pairs[i]
            assert b["source_lengths"][row] == len(src) and b["target_lengths"][row] == len(tgt) + 1
            np.testing.assert_array_equal(b["source"][row, :len(src)], src)
            np.testing.assert_array_equal(b["target_out"][row, :len(tgt)], tgt)
            assert not b["source"][row, len(src):].any()
    # resuming at batch k gives the same batches as running through
    k = len(batches) // 2
    resumed = list(batcher.batches(epoch=1, start=k))
    assert all(np.array_equal(a["index"], b["index"]) for a, b in zip(resumed, batches[k:]))


def test_pair_batcher_order():
    pairs = random_pairs(500)
    a = PairBatcher(pairs, 20, seed=1)
    first = [b["index"].tolist() for b in a.batches(0)]
    assert first == [b["index"].tolist() for b in PairBatcher(pairs, 20, seed=1).batches(0)]  # seeded
    assert first != [b["index"].tolist() for b in a.batches(1)]  # a new order each epoch
    assert first != [b["index"].tolist() for b in PairBatcher(pairs, 20, seed=2).batches(0)]
    plain = PairBatcher(pairs, 20, shuffle=False)
    assert np.concatenate([b["index"] for b in plain]).tolist() == list(range(500))
    # bucketing by length cuts the padding
    def padded(batcher):
        return sum(b["source"].size + b["target_in"].size for b in batcher.batches(0))
    assert padded(PairBatcher(pairs, 20, seed=1, bucket=True)) < 0.8 * padded(a)
    with pytest.raises(ValueError, match="no pairs"):
        PairBatcher([], 4)
    with pytest.raises(ValueError, match="start must be in"):
        list(a.batches(0, start=26))


# ------------------------------------------------------------------------------------------------ tatoeba

SPA = ("Go.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #4986655 (cueyayotl)\n"
       "Go.\tVete.\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #4986656 (cueyayotl)\n"
       'He said "no".\tDijo "no".\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)\n')


def test_read_tatoeba():
    triples = datasets.read_tatoeba(SPA.encode())
    assert triples[0] == ("Go.", "Ve.", "CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & "
                                        "#4986655 (cueyayotl)")
    assert triples[2][:2] == ('He said "no".', 'Dijo "no".')  # quotes are text, not CSV quoting
    with pytest.raises(DatasetError, match=r"spa\.tsv, line 2: expected 3 non-empty tab-separated fields"):
        datasets.read_tatoeba(b"a\tb\tc\na\tb\n")
    with pytest.raises(DatasetError, match=r"not valid UTF-8 at byte offset 6"):
        datasets.read_tatoeba(b"a\tb\tc\n\xff")


@pytest.fixture
def fake_tatoeba(monkeypatch, tmp_path):
    folder = tmp_path / "datasets" / "tatoeba-en-es"
    folder.mkdir(parents=True)
    (folder / "spa.tsv").write_text(SPA, encoding="utf-8")
    monkeypatch.setattr(datasets, "fetch", lambda name, home_dir=None, verbose=False: folder)


def test_load_pairs_both_directions(fake_tatoeba):
    en_es = datasets.load_pairs("tatoeba-en-es")
    assert en_es[1][:2] == ("Go.", "Vete.") and en_es[1][2].startswith("CC-BY 2.0")
    assert datasets.load_pairs("tatoeba-en-es", source="en", target="es") == en_es
    es_en = datasets.load_pairs("tatoeba-en-es", source="es")
    assert es_en == [(b, a, att) for a, b, att in en_es]
    assert datasets.load_pairs("tatoeba-en-es", target="en") == es_en
    with pytest.raises(DatasetError, match="choose --source en --target es or the reverse, not fr -> es"):
        datasets.load_pairs("tatoeba-en-es", source="fr")
    with pytest.raises(DatasetError, match="not a translation dataset"):
        datasets.load_pairs("shakespeare")
    with pytest.raises(DatasetError, match="translation dataset; read it with load_pairs"):
        datasets.load("tatoeba-en-es")


def test_tatoeba_in_data_list(capsys):
    from rnnkit.cli import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "tatoeba-en-es" in out and "140,868 pairs" in out and "per-row attribution" in out


@pytest.mark.network
def test_tatoeba_en_es(tmp_path_factory):
    home = tmp_path_factory.mktemp("rnnkit_home")
    path = datasets.fetch("tatoeba-en-es", home)
    assert datasets._verify(datasets.get("tatoeba-en-es"), path) is None
    pairs = datasets.load_pairs("tatoeba-en-es", home_dir=home)
    assert len(pairs) == 140_868
    assert pairs[0] == ("Go.", "Ve.", "CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #4986655 "
                                      "(cueyayotl)")
    assert all(att.startswith("CC-BY 2.0 (France) Attribution: tatoeba.org #") for _, _, att in pairs)
    assert (len({p[0] for p in pairs}), len({p[1] for p in pairs})) == (119_342, 132_384)
    splits, report = split_by_source(pairs, 0.1, 0.1, seed=0)
    assert sum(report.sizes.values()) == 140_868 and report.moved > 0 and report.groups == 119_342
    assert not {p[0] for p in splits["train"]} & {p[0] for p in splits["test"]}
    es_en = datasets.load_pairs("tatoeba-en-es", source="es", home_dir=home)
    assert es_en[0][:2] == ("Ve.", "Go.")
