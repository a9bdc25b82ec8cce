"""Whole numbers written as text (headers, JSON strings, file names), read without surprises.

``str.isdigit`` accepts ``'²'`` and ``str.isdecimal`` accepts a 5,000-digit string;
``int()`` refuses both, so a check-then-convert lets a ``ValueError`` escape. One
ASCII pattern with a length bound (19 digits: every int64) answers instead.
"""

from __future__ import annotations

import re

_WHOLE = re.compile(r"[0-9]{1,19}")
_SIGNED = re.compile(r"-?[0-9]{1,19}")


def whole_number(text: str, signed: bool = False) -> int | None:
    """The integer ``text`` spells (ASCII digits, an optional minus when ``signed``), else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    return int(text) if (_SIGNED if signed else _WHOLE).fullmatch(text) else None
