"""Progress bars that also suit a log file.

On a terminal the bar redraws often; when stderr is redirected (a background run with a log
file) it still reports, once a minute, so a long stage is never silent until it ends.
"""
from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 60.0


def progress_bar(enabled: bool = True, **options) -> tqdm:
    """A tqdm bar on stderr; ``options`` are passed on (total, desc, unit, ...)."""
    interactive = sys.stderr.isatty()
    terminal_interval = options.pop("mininterval", 0.1)
    return tqdm(file=sys.stderr, disable=not enabled, dynamic_ncols=interactive,
                mininterval=terminal_interval if interactive else LOG_INTERVAL_S, **options)
