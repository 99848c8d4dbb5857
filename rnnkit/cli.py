"""The `rnnkit` command.

Each command group is a function `add_<group>_commands(subparsers)` that adds its parsers and sets
`func=<handler>` on them; a handler takes the parsed arguments and returns an exit code. To add a command,
write such a function and append it to COMMANDS. Errors the user can fix (ValueError, OSError, DatasetError)
print `error: ...` to stderr and exit with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from rnnkit import __version__
from rnnkit.data import datasets

FORMATTER = argparse.ArgumentDefaultsHelpFormatter
USER_ERRORS = (ValueError, OSError, datasets.DatasetError)


def add_parser(subparsers, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand parser that shows defaults in --help."""
    return subparsers.add_parser(name, help=help, description=help, formatter_class=FORMATTER, **kwargs)


# ----------------------------------------------------------------------------------------- rnnkit data


def cmd_data_list(args) -> int:
    rows = [(d.name, d.size, d.license, d.description) for d in datasets.list_datasets()]
    width = max(len(r[0]) for r in rows)
    for name, size, license, description in rows:
        print(f"{name:<{width}}  {description}")
        print(f"{'':<{width}}  size: {size}; license: {license}")
    return 0


def cmd_data_fetch(args) -> int:
    for name in args.names:
        print(datasets.fetch(name, args.home, verbose=True))
    return 0


def add_data_commands(subparsers) -> None:
    data = add_parser(subparsers, "data", "datasets: list the registry, fetch into the cache")
    sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    p = add_parser(sub, "list", "list the registered datasets")
    p.set_defaults(func=cmd_data_list)
    p = add_parser(sub, "fetch", "download, verify and cache datasets; print their cache folders")
    p.add_argument("names", nargs="+", metavar="NAME", help="dataset name (see `rnnkit data list`)")
    p.add_argument("--home", default=str(datasets.home()), help="cache folder ($RNNKIT_HOME, else ~/.cache/rnnkit)")
    p.set_defaults(func=cmd_data_fetch)


COMMANDS = [add_data_commands]  # later: add_train_command, add_generate_command, ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks: data, training, "
                                     "evaluation and serving.", formatter_class=FORMATTER)
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed by argparse)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
