"""The argument parser every vslim command uses: defaults in help, "did you mean" on a typo.

argparse's stock parser shows neither; a new user reading ``--help`` should see
what they get without the flag, and ``vslim serv`` should point at ``serve``
instead of listing every command. Subparsers inherit this class (argparse builds
them with the parent's type), so one class covers every level.
"""

from __future__ import annotations

import argparse
import difflib
import re

# argparse 3.9-3.13: "argument COMMAND: invalid choice: 'serv' (choose from 'data', 'train', ...)"
_INVALID = re.compile(r"invalid choice: '?(?P<got>[^' ]+)'? \(choose from (?P<choices>.*)\)")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it already says its default, or has none worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        silent = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in help.lower() or silent or not action.option_strings:
            return help
        if isinstance(action.default, (list, tuple)):
            return f"{help} (default: {' '.join(map(str, action.default))})".strip()
        return f"{help} (default: %(default)s)".strip()


class VslimArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        match = _INVALID.search(message)
        if match:
            choices = re.findall(r"'([^']+)'", match["choices"]) or [c.strip() for c in match["choices"].split(",")]
            close = difflib.get_close_matches(match["got"], choices, n=1, cutoff=0.5)
            if close:
                message = f"{message}; did you mean {close[0]!r}?"
        super().error(message)
