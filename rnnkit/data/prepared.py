"""Corpora larger than memory: a text file tokenised once into a memory-mapped token file.

    prepare("corpus.txt", "prepared/", tokenizer, {"level": "char"}, specials=("<unk>",))
    folder = open_prepared("prepared/")      # folder.train: np.memmap (N,) uint16/uint32, folder.vocab

The text is read in chunks (`chunk_bytes`), never whole, in two passes: the first counts the tokens (and
hashes the file), the second writes their ids. A chunk is cut after its last line break, so a word-level
tokenizer (which works line by line) sees whole lines: the ids equal the in-memory tokenisation of the whole
text. A single line must fit in memory.

The folder holds:

    train.bin       the ids, raw little-endian uint16 (a vocabulary of <= 65,536 tokens) or uint32
    valid.bin       the validation text's ids (only with `valid=`), encoded with the training vocabulary
    vocab.json      rnnkit/data/vocab.py's JSON
    manifest.json   format, tokenizer settings, and per token file: dtype, count, the source's size and SHA-256

Each file is written atomically; the manifest goes last, after the old one is removed, so a folder with a
manifest is complete. Opening checks the manifest against the files (sizes, dtypes, the vocabulary's size).
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint.atomic import open_temporary, write_json
from .vocab import Vocabulary

FORMAT, VERSION = "rnnkit.prepared", 1
MANIFEST, VOCAB = "manifest.json", "vocab.json"
CHUNK_BYTES = 1 << 16  # 64 KiB of text per chunk: about 1.5 MB of token lists at a time


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids 0 .. vocab_size - 1: uint16 up to 65,536 tokens, else uint32."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def text_chunks(path, chunk_bytes: int = CHUNK_BYTES, sha=None):
    """The UTF-8 text of `path` in pieces that end at a line break (the last piece: at the end of the file).

    Raises FileNotFoundError for a missing file, ValueError for an empty one or bytes that are not UTF-8
    (with the byte offset and line, as rnnkit/data/text.py's read_text). `sha`: a hashlib object fed the bytes.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset, lines, carry = 0, 0, ""
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_bytes)
            pending = decoder.getstate()[0]  # the bytes of a character cut by the last chunk
            try:
                text = carry + decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                line = lines + (pending + data).count(b"\n", 0, e.start) + 1
                raise ValueError(f"{path}: not valid UTF-8 at byte offset {offset - len(pending) + e.start} (line "
                                 f"{line}: {e.reason}); convert the file to UTF-8, "
                                 f"e.g. `iconv -f latin1 -t utf-8`") from None
            if sha is not None:
                sha.update(data)
            offset, lines = offset + len(data), lines + data.count(b"\n")
            if not data:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1
            carry = text[cut:]
            if cut:
                yield text[:cut]


def count_tokens(path, tokenizer, chunk_bytes: int = CHUNK_BYTES) -> tuple[Counter, dict]:
    """Pass 1: the token counts of a text file, and its source record (path, bytes, sha256)."""
    sha, counts, blank = hashlib.sha256(), Counter(), True
    for text in text_chunks(path, chunk_bytes, sha):
        counts.update(tokenizer.tokenize(text))
        blank = blank and not text.strip()
    if blank:
        raise ValueError(f"{path}: the file holds only whitespace ({Path(path).stat().st_size} bytes)")
    return counts, {"path": str(path), "bytes": Path(path).stat().st_size, "sha256": sha.hexdigest()}


def write_ids(path, out: Path, tokenizer, vocab: Vocabulary, dtype: np.dtype, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Pass 2: the ids of a text file's tokens, appended chunk by chunk to `out` (atomically); their count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temporary(out)
    count = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for text in text_chunks(path, chunk_bytes):
                ids = vocab.encode(tokenizer.tokenize(text)).astype(dtype)
                f.write(ids.tobytes())
                count += len(ids)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


def prepare(text_file, out, tokenizer, tokenizer_settings: dict, specials, min_freq: int = 1,
            max_vocab: int | None = None, valid=None, chunk_bytes: int = CHUNK_BYTES) -> dict:
    """Tokenise `text_file` (and `valid`, with the training vocabulary) into the folder `out`; the manifest."""
    out = Path(out)
    Vocabulary.from_counts(Counter(), min_freq, max_vocab, specials)  # bad settings fail before the long pass
    counts, source = count_tokens(text_file, tokenizer, chunk_bytes)
    vocab = Vocabulary.from_counts(counts, min_freq=min_freq, max_size=max_vocab, specials=specials)
    del counts
    dtype = token_dtype(len(vocab))
    (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest lands
    files = {}
    for part, path in (("train", text_file), ("valid", valid)):
        if path is None:
            continue
        record = source if part == "train" else count_tokens(path, tokenizer, chunk_bytes)[1]
        count = write_ids(path, out / f"{part}.bin", tokenizer, vocab, dtype, chunk_bytes)
        if count < 2:
            raise ValueError(f"{path}: {count} tokens; a language model needs at least 2")
        files[part] = {"file": f"{part}.bin", "dtype": dtype.name, "count": count, "source": record}
    vocab.save(out / VOCAB)
    manifest = {"format": FORMAT, "version": VERSION, "tokenizer": tokenizer_settings, "vocab": VOCAB,
                "vocab_size": len(vocab), "files": files}
    write_json(out / MANIFEST, manifest)
    return manifest


@dataclass
class PreparedCorpus:
    train: np.memmap            # (N,) token ids, read-only, in the file's dtype
    valid: np.memmap | None     # the prepared validation ids, if any
    vocab: Vocabulary
    tokenizer: dict
    manifest: dict


def open_prepared(folder) -> PreparedCorpus:
    """Map a prepared folder's token files (read-only; nothing is read yet), after checking the manifest."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}: not a folder made by `rnnkit data prepare` (or an "
                                f"unfinished one: prepare it again)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); prepare the folder again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path}: not a {FORMAT} manifest of version {VERSION}")
    vocab = Vocabulary.load(folder / VOCAB)
    if manifest.get("vocab_size") != len(vocab):
        raise ValueError(f"{path}: the manifest says {manifest.get('vocab_size')} tokens, {VOCAB} holds "
                         f"{len(vocab)}; prepare the folder again")
    arrays = {}
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for part in ("train", "valid"):
        entry = files.get(part)
        if entry is None:
            continue
        arrays[part] = _map(folder, part, entry, len(vocab), path)
    if "train" not in arrays:
        raise ValueError(f"{path}: no training token file listed")
    tokenizer = manifest.get("tokenizer")
    if not isinstance(tokenizer, dict) or tokenizer.get("level") not in ("char", "word"):
        raise ValueError(f"{path}: the tokenizer settings {tokenizer!r} are not char or word")
    return PreparedCorpus(arrays["train"], arrays.get("valid"), vocab, tokenizer, manifest)


def _map(folder: Path, part: str, entry, vocab_size: int, manifest: Path) -> np.memmap:
    """One token file as a read-only memmap, its manifest entry checked against the file and vocabulary."""
    if not isinstance(entry, dict) or entry.get("file") != f"{part}.bin":
        raise ValueError(f"{manifest}: the {part} entry must name {part}.bin")
    dtype, count = entry.get("dtype"), entry.get("count")
    if dtype not in ("uint16", "uint32") or np.dtype(dtype) != token_dtype(vocab_size):
        raise ValueError(f"{manifest}: {part} dtype {dtype!r} is not the one a vocabulary of {vocab_size} "
                         f"tokens is stored in ({token_dtype(vocab_size).name})")
    file = folder / entry["file"]
    size = file.stat().st_size if file.is_file() else None
    if not isinstance(count, int) or count < 2 or size != count * np.dtype(dtype).itemsize:
        raise ValueError(f"{file}: {size} bytes, but the manifest says {count!r} {dtype} tokens; "
                         f"the folder was changed: prepare it again")
    return np.memmap(file, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=(count,))
