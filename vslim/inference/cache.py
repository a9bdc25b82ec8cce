"""Where vslim keeps what it computes once per model (and host): probe outcomes, conversions to other runtimes.

``$VSLIM_HOME`` (default ``~/.cache/vslim``). Every entry is keyed by the content of the model's files, never
by their path, so a model re-exported into the same folder is never answered from a stale entry.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..fsio import sha256_of


def cache_home() -> Path:
    return Path(os.environ.get("VSLIM_HOME") or Path.home() / ".cache" / "vslim")


def content_key(*paths: Path, extra: str = "") -> str:
    """A short key of the files' bytes (and ``extra``): the same files, the same key."""
    h = hashlib.sha256()
    for path in paths:
        h.update(sha256_of(path).encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]
