"""The social-media post tokenizer."""

import time

import pytest

from rnnkit.data import posts
from rnnkit.data.posts import PostTokenizer

tok = PostTokenizer()


@pytest.mark.parametrize("text, tokens", [
    ("check http://t.co/AbC12 and https://x.com/a?b=1&c=2, www.Example.org/x).",
     ["check", "<url>", "and", "<url>", ",", "<url>", ")", "."]),
    ("HTTPS://EXAMPLE.COM", ["<url>"]),
])
def test_urls(text, tokens):
    assert tok.tokenize(text) == tokens


def test_mentions_and_email():
    assert tok.tokenize("@united @Virgin_America thanks!@JetBlue") == ["<user>", "<user>", "thanks", "!", "<user>"]
    assert tok.tokenize("mail me@x.org") == ["mail", "me", "@", "x", ".", "org"]  # not a mention


def test_hashtags():
    assert tok.tokenize("So #FAIL #united2015 a#b # lol") == ["so", "#fail", "#united2015", "a", "#", "b", "#", "lol"]
    assert tok.tokenize("#Haaaappy") == ["#haappy"]


def test_numbers():
    assert tok.tokenize("Flight 1565 at 10:30, $1,000.50 or 3.5hrs 4pm 2nd 1.") == [
        "flight", "<number>", "at", "<number>", ",", "$", "<number>", "or", "3.5hrs", "4pm", "2nd", "<number>", "."]
    assert PostTokenizer(number=None).tokenize("1565 2.5") == ["1565", "2.5"]
    assert tok.tokenize("1000000 flights") == ["<number>", "flights"]  # digits are never shortened


@pytest.mark.parametrize("emoticon", [":)", ":-)", ":(", ":-(", ";)", ";-)", ":D", ":-D", ":P", ":p", ":'(", ":/",
                                      ":|", ":*", ":o", ":O", "=)", "=(", "xD", "XD", "<3", "</3", "^_^", "^^",
                                      "-_-", "o_O", "O_o", ";_;", "T_T", ":]", ":3"])
def test_emoticons(emoticon):
    assert tok.tokenize(f"ok {emoticon} ok") == ["ok", emoticon, "ok"]
    if not emoticon[0].isalpha():  # "okxD" is one word
        assert tok.tokenize(f"ok{emoticon}") == ["ok", emoticon]


def test_emoticon_edges():
    assert tok.tokenize("Fun:D") == ["fun", ":D"]
    assert tok.tokenize("to:Dallas") == ["to", ":", "dallas"]  # a letter mouth must not run into a word
    assert tok.tokenize("xpress xDD") == ["xpress", "xdd"]
    assert tok.tokenize("I &lt;3 it &amp; you") == ["i", "<3", "it", "&", "you"]
    assert tok.tokenize("x=3 (8)") == ["x", "=", "<number>", "(", "<number>", ")"]


def test_emoji():
    thumbs_tone = "\U0001F44D\U0001F3FD"                                  # thumbs up + skin tone
    heart = "\u2764\ufe0f"                                                # heart + variation selector
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # ZWJ sequence
    pilot = "\U0001F9D1\U0001F3FD\u200d\u2708\ufe0f"                      # person, tone, ZWJ, plane
    us, gb = "\U0001F1FA\U0001F1F8", "\U0001F1EC\U0001F1E7"               # regional-indicator pairs
    scotland = "\U0001F3F4" + "".join(chr(0xE0000 + ord(c)) for c in "gbsct") + "\U000E007F"  # tag sequence
    keycap = "1\ufe0f\u20e3"
    joy = "\U0001F602"
    text = f"ok \U0001F44D {thumbs_tone} {heart} \u2708 {family} {us}{gb} {keycap} {scotland} {joy * 3} {pilot}!"
    assert tok.tokenize(text) == ["ok", "\U0001F44D", thumbs_tone, heart, "\u2708", family, us, gb, keycap,
                                  scotland, joy, joy, joy, pilot, "!"]


def test_elongation():
    assert tok.tokenize("Soooo goooood!!!! ...... ??") == ["soo", "good", "!!", "..", "??"]
    assert PostTokenizer(max_repeat=3).tokenize("soooooo!!!!!") == ["sooo", "!!!"]
    assert PostTokenizer(max_repeat=None).tokenize("soooo") == ["soooo"]
    with pytest.raises(ValueError, match="max_repeat"):
        PostTokenizer(max_repeat=0)


def test_words_and_punctuation():
    assert tok.tokenize("Don’t go!It's self-driving (really).") == [
        "don't", "go", "!", "it's", "self", "-", "driving", "(", "really", ")", "."]
    assert PostTokenizer(lower=False).tokenize("Hi YOU :D") == ["Hi", "YOU", ":D"]


def test_options_keep_originals():
    t = PostTokenizer(lower=False, url=None, user=None)
    assert t.tokenize("@United see http://t.co/X.") == ["@United", "see", "http://t.co/X", "."]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty(text):
    assert tok.tokenize(text) == []


def test_non_ascii():
    assert tok.tokenize("Ünïcode CAFÉ naïve, Москва ПРИВЕТ 東京 ¡Olé!") == [
        "ünïcode", "café", "naïve", ",", "москва", "привет", "東京", "¡", "olé", "!"]
    assert tok.tokenize("cafe\u0301") == ["café"]  # NFC: the combining accent stays with its letter


def test_config_round_trip():
    t = PostTokenizer(lower=False, number=None, max_repeat=3)
    assert PostTokenizer(**t.config()) == t and t != tok
    assert "max_repeat=3" in repr(t)
    assert tok.detokenize(["a", "<url>", "!"]) == "a <url> !"


@pytest.mark.parametrize("text", [
    "@united Soooo bad!!!! http://t.co/x. :( #fail 3.5 👍🏽 don't &amp; " * 16_000,  # about 1 MB of posts
    "1." * 500_000 + "x",                 # long number-like runs
    "http://x" + ".," * 500_000,          # a URL with a long tail of punctuation
    "a" * 1_000_000 + "’",                # one huge word
    ":" * 1_000_000,                      # one huge punctuation run
])
def test_very_long_text_is_fast(text):
    # Linear work on 1 MB takes well under a second; a regex that backtracks quadratically takes hours. The bound
    # is loose so that a loaded CI machine never fails it, and tight enough to catch super-linear patterns.
    start = time.perf_counter()
    tokens = tok.tokenize(text)
    assert tokens and time.perf_counter() - start < 20.0


def test_cached_words_give_the_same_tokens_and_the_cache_is_bounded(monkeypatch):
    text = "Sooo GOOD!!!! so good, Don’t #FAIL don't sooo good #fail"
    expected = ["soo", "good", "!!", "so", "good", ",", "don't", "#fail", "don't", "soo", "good", "#fail"]
    tok = PostTokenizer()
    assert tok.tokenize(text) == expected
    assert tok.tokenize(text) == expected  # now from the cache
    assert tok._normalized["GOOD"] == "good" and tok._normalized["Don’t"] == "don't"
    monkeypatch.setattr(posts, "_CACHE_SIZE", 3)
    small = PostTokenizer()
    assert small.tokenize(text) == expected == small.tokenize(text)
    assert len(small._normalized) == 3
