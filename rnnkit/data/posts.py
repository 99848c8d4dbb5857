"""A tokenizer for social-media posts (tweets, comments): `PostTokenizer().tokenize(text) -> list[str]`.

What it does, in order:
- HTML entities are decoded ("&amp;" -> "&", "&lt;3" -> "<3") and the text is put in Unicode NFC form.
- URLs (http://, https://, www.) become `<url>` (trailing . , ; : ! ? ) ] ' " are split off as punctuation);
  @mentions become `<user>`; numbers made only of digits, with inner "." "," or ":" ("3", "2.5", "1,000",
  "10:30") become `<number>`. Pass None to keep any of them as written.
- Hashtags stay one token with their "#": "#Fail" -> "#fail" (a hashtag is not the same word as the word).
- Emoticons (":)", ":-(", ";)", ":D", ":'(", "xD", "<3", "</3", "^_^", "-_-", "o_O", ...) stay whole and keep
  their case; an emoticon ending in a letter or digit must not run into a word (":Dallas" is ":" "Dallas").
- Emoji stay whole, one token per emoji, including the multi-codepoint ones: skin-tone modifiers, variation
  selectors, zero-width-joiner sequences (family, profession), flags (regional-indicator pairs, tag
  sequences) and keycaps ("1️⃣"). Emoji are recognised by code-point block, not from the full Unicode list.
- Words: letters/digits/underscore, apostrophes inside kept ("don't", "i'm"; "’" becomes "'"); hyphens split
  ("self-driving" -> "self" "-" "driving"). Words starting with a digit stay one token ("4pm", "2nd").
- Punctuation is split off; a run of the same mark is one token ("!!!" -> "!!" after elongation).
- Elongation: a character repeated more than `max_repeat` (default 2) times is cut to `max_repeat`, in
  words, hashtags and punctuation runs: "soooo" -> "soo", "!!!!" -> "!!", "..." -> ".." (None keeps them).
- Lower-casing (lower=True) applies to words and hashtags, not to emoticons (":D" stays ":D").
Empty or blank text gives []. The scan is one regular expression without nested or overlapping quantifiers
that can backtrack far, so the time is linear in the length of the text.
"""

from __future__ import annotations

import html
import re
import unicodedata

# emoji: a base character, then modifiers (variation selectors, skin tones, keycap, tags), joined by ZWJ
_EMOJI_BASE = ("\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a-\u23ff\u24c2\u25aa-\u25fe"
               "\u2600-\u27bf\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299\U0001F000-\U0001FAFF")
_EMOJI_MOD = "\ufe0e\ufe0f\u20e3\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F"
_EMOJI_ONE = f"[{_EMOJI_BASE}][{_EMOJI_MOD}]*"
_EMOJI = rf"[\U0001F1E6-\U0001F1FF]{{2}}|[0-9#*]\ufe0f?\u20e3|{_EMOJI_ONE}(?:\u200d{_EMOJI_ONE})*"

_EMOTICON = "|".join([
    r"[:;=][-o^']?[)(\][/\\|*}{@]",                                     # :) ;-( =] :/ :'( :* :|
    r"(?:[:;=][-o^']?[dDpP]|:-?[oO3]|[xX][dDpP]|</?3|[oO][._][oO]|[tT]_[tT])(?![A-Za-z0-9])",  # :D ;p :o xD <3
    r"\^_?\^|-_-|;_;",                                                    # ^_^ ^^ -_- ;_;
])

_TOKEN = re.compile("|".join([
    r"(?P<url>(?:[hH][tT][tT][pP][sS]?://|[wW][wW][wW]\.)\S+)",
    r"(?P<user>(?<!\w)@\w+)",
    r"(?P<hashtag>(?<!\w)#\w+)",
    rf"(?P<emoticon>{_EMOTICON})",
    rf"(?P<emoji>{_EMOJI})",
    r"(?P<number>\d+(?:[.,:]\d+)*\w*)",  # "4pm" too: only an all-digit match becomes <number>
    r"(?P<word>\w+(?:['’]\w+)*)",
    r"(?P<punct>(?P<mark>[^\w\s])(?P=mark)*)",
]))
_ALL_DIGITS = re.compile(r"\d+(?:[.,:]\d+)*")
_URL_TAIL = ".,;:!?)]'\""
_RUN = re.compile(r"(.)\1*", re.S)
# Words repeat: their lower-cased, de-elongated forms are kept, up to this many (a few MB at most).
_CACHE_SIZE = 100_000


class PostTokenizer:
    """Tokens of a social-media post; see the module docstring for the rules.

    url, user, number: the token that replaces URLs, @mentions, numbers; None keeps them as written.
    max_repeat: characters repeated more than this many times are cut to it; None turns this off.
    """

    def __init__(self, lower: bool = True, url: str | None = "<url>", user: str | None = "<user>",
                 number: str | None = "<number>", max_repeat: int | None = 2):
        if max_repeat is not None and max_repeat < 1:
            raise ValueError(f"max_repeat must be >= 1 or None, got {max_repeat}")
        self.lower, self.url, self.user, self.number, self.max_repeat = lower, url, user, number, max_repeat
        self._repeat = re.compile(rf"(\D)\1{{{max_repeat},}}") if max_repeat else None  # digits are never cut
        self._normalized: dict[str, str] = {}  # word, hashtag or mark as written -> its token (a cache)

    def _norm(self, token: str) -> str:
        if self.lower:
            token = token.lower()
        if self._repeat is not None:
            token = self._repeat.sub(lambda m: m.group(1) * self.max_repeat, token)
        return token

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFC", html.unescape(text))
        tokens: list[str] = []
        for m in _TOKEN.finditer(text):
            kind, tok = m.lastgroup, m.group(m.lastgroup)
            if kind == "url":
                url = tok.rstrip(_URL_TAIL)
                tokens.append(self.url or url)
                tokens += [self._norm(p.group()) for p in _RUN.finditer(tok[len(url):])]
            elif kind == "user":
                tokens.append(self.user or tok)
            elif kind == "number" and _ALL_DIGITS.fullmatch(tok):
                tokens.append(self.number or tok)
            elif kind in ("emoticon", "emoji"):
                tokens.append(tok)
            else:  # hashtag, word (or a number with letters), punctuation
                norm = self._normalized.get(tok)
                if norm is None:
                    norm = self._norm(tok.replace("’", "'"))
                    if len(self._normalized) < _CACHE_SIZE:
                        self._normalized[tok] = norm
                tokens.append(norm)
        return tokens

    def detokenize(self, tokens) -> str:
        """The tokens joined by spaces (tokenizing is lossy; the original text cannot be restored)."""
        return " ".join(tokens)

    def config(self) -> dict:
        """The constructor's arguments: `PostTokenizer(**tok.config())` is an equal tokenizer."""
        return {"lower": self.lower, "url": self.url, "user": self.user, "number": self.number,
                "max_repeat": self.max_repeat}

    def __eq__(self, other) -> bool:
        return isinstance(other, PostTokenizer) and self.config() == other.config()

    def __repr__(self) -> str:
        return "PostTokenizer(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"
