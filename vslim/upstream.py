"""Keeping the libraries vslim drives from talking over it: one voice unless ``--debug``.

PaddleSlim and Paddle's quantization code log every step at INFO through their own
stderr handlers (``Mon Nov 30 20:45:56-INFO: Collect quantized variable names ...``),
draw their own tqdm bars and raise deprecation warnings; printed between vslim's
progress lines they read as a second program. Inside :func:`quiet_upstream` their
loggers are held at ERROR, their tqdm bars are disabled, their Python warnings are
ignored and whatever their code prints is dropped, while vslim's own prints and
progress bars (``vslim/progress.py``) pass untouched. ``vslim --debug`` turns the
upstream output back on (:func:`set_upstream_verbose`, called by the CLI).

Only Python-level output is covered; the C++ cores log through glog, which the
CLI quiets with ``GLOG_minloglevel`` before Paddle loads.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

UPSTREAM_PACKAGES = ("paddleslim", "paddle", "paddle2onnx")
_UPSTREAM = re.compile(r"^(" + "|".join(UPSTREAM_PACKAGES) + r")(\.|$)")
_verbose = False


def set_upstream_verbose(on: bool) -> None:
    """``True``: let the libraries' own logs, bars and prints through (``--debug``)."""
    global _verbose
    _verbose = bool(on)


def upstream_verbose() -> bool:
    return _verbose


def is_upstream(module_name: str) -> bool:
    return bool(_UPSTREAM.match(module_name or ""))


class _UpstreamFilteredStream:
    """Drops what upstream code writes (a ``print`` in a PaddleSlim module); everything else passes.

    ``print`` is a builtin, so the frame above ``write`` is the Python function that printed.
    """

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if is_upstream(caller):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _quiet_tqdm_class():
    from tqdm import tqdm  # a vslim dependency (vslim/progress.py)

    class QuietTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return tqdm, QuietTqdm


@contextlib.contextmanager
def quiet_upstream(*preload: str) -> Iterator[None]:
    """Silence upstream libraries' Python output for the block (a no-op under ``--debug``).

    Loggers and tqdm references are found in the upstream modules imported when the
    block starts (their loggers are made at import), so ``preload`` names the modules
    the block will use, e.g. ``quiet_upstream("paddleslim.quant")``.
    """
    if _verbose:
        yield
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _UpstreamFilteredStream(out), _UpstreamFilteredStream(err)
    levels: dict[logging.Logger, int] = {}
    patched: list[Any] = []  # upstream modules; Any because their ``tqdm`` global is reassigned
    tqdm = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_UPSTREAM.pattern)
            for name in preload:
                importlib.import_module(name)
            for name, logger in list(logging.root.manager.loggerDict.items()):
                if isinstance(logger, logging.Logger) and is_upstream(name) and logger.level < logging.ERROR:
                    levels[logger] = logger.level
                    logger.setLevel(logging.ERROR)
            tqdm, quiet = _quiet_tqdm_class()
            patched.extend(
                module
                for name, module in list(sys.modules.items())
                if module is not None and is_upstream(name) and getattr(module, "tqdm", None) is tqdm
            )
            for module in patched:
                module.tqdm = quiet
            yield
    finally:
        if isinstance(sys.stdout, _UpstreamFilteredStream) and sys.stdout._stream is out:
            sys.stdout = out
        if isinstance(sys.stderr, _UpstreamFilteredStream) and sys.stderr._stream is err:
            sys.stderr = err
        for module in patched:
            module.tqdm = tqdm
        for logger, level in levels.items():
            logger.setLevel(level)
