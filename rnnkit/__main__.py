"""The `rnnkit` command's entry point (`rnnkit ...`, `python -m rnnkit ...`): tunes the process, then runs
rnnkit.cli.

The tuning (rnnkit.runtime.tune_process) must come before NumPy is loaded, and rnnkit.cli imports NumPy
through its own imports, so it is imported only after the tuning.
"""
import sys


def main(argv=None) -> int:
    """Tune this process, then run the command line `argv` (default: sys.argv[1:]); return the exit code."""
    from rnnkit.runtime import tune_process

    tune_process()
    from rnnkit.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
