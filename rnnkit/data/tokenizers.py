"""Character and word tokenizers: `tokenize(text) -> list[str]`, `detokenize(tokens) -> str`."""

from __future__ import annotations

import re

# A special token like <unk> or <eos>, a word (letters/digits, inner ' or - kept: "don't", "well-known"),
# or any other single non-space character (punctuation).
_WORD = re.compile(r"<[^<>\s]+>|\w+(?:['’-]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{¿¡]) ")


class CharTokenizer:
    """One token per character; `detokenize(tokenize(text)) == text` exactly."""

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, tokens) -> str:
        return "".join(tokens)

    def __repr__(self):
        return "CharTokenizer()"


class WordTokenizer:
    """Words and punctuation marks.

    split="punct": words and single punctuation characters are separate tokens ("Hi, you!" -> Hi , you !);
        special tokens written as <name> stay whole.
    split="whitespace": split on whitespace only, for text that is already tokenised (WikiText).
    lower: lower-case the text first.
    eos: if given (e.g. "<eos>"), this token is appended at the end of every line, as the standard
        word-level language models do; `detokenize` turns it back into a newline.

    `detokenize` joins with spaces (and, for split="punct", removes the space before closing punctuation
    and after opening brackets); it cannot restore the original spacing exactly.
    """

    def __init__(self, split: str = "punct", lower: bool = False, eos: str | None = None):
        if split not in ("punct", "whitespace"):
            raise ValueError(f"split must be 'punct' or 'whitespace', not {split!r}")
        self.split, self.lower, self.eos = split, lower, eos

    def _words(self, line: str) -> list[str]:
        return _WORD.findall(line) if self.split == "punct" else line.split()

    def tokenize(self, text: str) -> list[str]:
        if self.lower:
            text = text.lower()
        if self.eos is None:
            return self._words(text)
        lines = text.split("\n")
        if lines[-1] == "":  # a final newline ends the last line; it does not start a new one
            lines.pop()
        tokens: list[str] = []
        for line in lines:
            tokens += self._words(line)
            tokens.append(self.eos)
        return tokens

    def detokenize(self, tokens) -> str:
        if self.eos is None:
            return self._join(tokens)
        lines, line = [], []
        for t in tokens:
            if t == self.eos:
                lines.append(self._join(line) + "\n")
                line = []
            else:
                line.append(t)
        return "".join(lines) + self._join(line)

    def _join(self, tokens) -> str:
        text = " ".join(tokens)
        if self.split == "punct":
            text = _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))
        return text

    def __repr__(self):
        return f"WordTokenizer(split={self.split!r}, lower={self.lower}, eos={self.eos!r})"
