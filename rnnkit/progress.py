"""A progress bar over an iterable, for the commands that score or predict (the trainer has its own):
tqdm on stderr, shown only on a terminal; the iterable itself when off or tqdm is not installed."""
from __future__ import annotations

import sys


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "batch"):
    """`iterable`, with a bar on stderr if `enabled`, tqdm is installed and stderr is a terminal."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False,
                dynamic_ncols=True)
