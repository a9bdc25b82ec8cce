"""Progress bars that stay quiet where nobody watches (pipes, CI logs) unless asked."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress_enabled() -> bool:
    flag = os.environ.get("VSLIM_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress_bar(total=None, desc=None, unit="it", leave=False):
    """A tqdm bar on stderr; disabled when stderr is not a terminal or VSLIM_PROGRESS=0."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        disable=not progress_enabled(),
        file=sys.stderr,
        dynamic_ncols=True,
    )
