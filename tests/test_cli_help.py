"""Every command's --help shows what each option does by default."""
import argparse
import re

import pytest

from rnnkit.cli import build_parser, main


def commands(parser, path=()):
    """(path, parser) for the top-level parser and every subcommand's, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def test_every_option_with_a_default_shows_it():
    missing = []
    for path, parser in commands(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue  # positionals, --help, --version
            shown = formatter._expand_help(action) if action.help else ""
            if "default" not in shown and not (action.default is None or action.default is False):
                missing.append(f"rnnkit {' '.join(path)} {action.option_strings[0]}")
    assert missing == []


@pytest.mark.parametrize("argv, expected", [
    (["train", "lm"], ["--hidden HIDDEN", "(default: 256)", "(default: lstm)", "(default: 0.002)",
                       "(default: constant)", "(default: runs/lm)", "(default: scratch)", "(default: auto)"]),
    (["generate"], ["(default: 200)", "(default: 1.0)", "nucleus sampling; default: 1", "fresh random seed"]),
    (["evaluate"], ["(default: test)", "(default: 10)", "the training run's"]),
    (["data", "fetch"], ["$RNNKIT_HOME"]),
])
def test_help_texts(argv, expected, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, text
    if argv == ["train", "lm"]:
        flat = " ".join(out.split())  # each option with its help on one line
        for option, default in [("--layers LAYERS", "2"), ("--weight-decay WEIGHT_DECAY", "0.0"),  # a zero is a
                                ("--seed SEED", "0")]:                                            # default, not "none"
            assert re.search(rf"{option} [^()]*\(default: {re.escape(default)}\)", flat), option
