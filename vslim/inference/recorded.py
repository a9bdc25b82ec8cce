"""What a bundle's ``runtime.json`` chose, and a config's ``auto`` runtime replaced by it.

``vslim-package`` measures the runtimes on the packaging host and records the choice (``selection.py``); every
later open of the bundle reads it here, without loading anything that measures.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from .. import runtime_registry
from ..config import PredictorConfig
from ..errors import VslimError

RECORD = "runtime.json"
CONVERTED = "converted"


def recorded_choice(server_dir: Path | str) -> dict | None:
    """What ``runtime.json`` in a bundle's server folder chose, or None."""
    path = Path(server_dir) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["chosen"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise VslimError(f"{path} is unreadable ({exc}); repackage the bundle") from exc


def recorded_layout(server_dir: Path | str) -> dict | None:
    """The workers x threads ``runtime.json`` measured fastest under load (``layout.py``), or None."""
    path = Path(server_dir) / RECORD
    if not path.is_file():
        return None
    try:
        layout = json.loads(path.read_text()).get("layout")
        return (
            None if layout is None else {"workers": int(layout["workers"]), "threads": int(layout["threads"]), **layout}
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise VslimError(f"{path} is unreadable ({exc}); repackage the bundle") from exc


def resolve(
    config: PredictorConfig, model_dir: Path | str, warn: Callable[[str], None] = lambda _: None
) -> tuple[PredictorConfig, Path | None]:
    """``config`` with ``runtime="auto"`` replaced by the bundle's recorded choice (the reference runtime, Paddle, when none
    or not installed).

    Returns the config to run and the folder of the bundle's conversions.
    """
    cache = Path(model_dir) / CONVERTED
    if config.runtime != runtime_registry.AUTO:
        return config, cache if cache.is_dir() else None
    choice = recorded_choice(model_dir)
    reference = dataclasses.replace(config, runtime=runtime_registry.REFERENCE)
    if choice is None or config.device != "cpu":
        return reference, None
    try:
        row = runtime_registry.get(choice["runtime"]).require()
    except VslimError as exc:
        warn(
            f"this bundle was measured fastest on {choice['runtime']} {choice['precision']}, which is not installed "
            f"here; serving with {runtime_registry.REFERENCE} instead ({exc})"
        )
        return dataclasses.replace(reference, precision="auto"), None
    return dataclasses.replace(config, runtime=row.name, precision=choice["precision"]), cache
