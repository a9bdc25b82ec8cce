"""The protocol modules generated from ``serving/proto`` at install time (see protogen)."""

from __future__ import annotations

import importlib
from types import ModuleType

from vslim.errors import VslimError


def load(module: str) -> ModuleType:
    """``vslim.serving._generated.<module>``, or a message saying how to generate it."""
    try:
        return importlib.import_module(f"vslim.serving._generated.{module}")
    except ImportError as exc:  # a source checkout that was never built
        raise VslimError(
            "the serving protocol modules were not generated: install vslim with "
            "`pip install -e .` (it compiles serving/proto/*.proto)"
        ) from exc
