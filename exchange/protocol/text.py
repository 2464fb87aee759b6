"""Values no store can hold and no JSON peer can read back, recognised in one place (server and partner alike).

- a string (a value or a key, at any depth) with a NUL or a lone surrogate: PostgreSQL cannot store either, SQLite
  would store them silently, and no JSON peer could read them back (RFC 8259 §8.2);
- an integer outside the signed 64-bit range: no column, index or page can hold it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

BAD_TEXT = "Text may not contain NUL characters or unpaired surrogates."
BAD_INTEGER = f"Use an integer between {INT64_MIN} and {INT64_MAX}."


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL; surrogates (in a Python str they are always unpaired)


def text_fault(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    return BAD_TEXT if _UNSTORABLE.search(value) else None


def integer_fault(value: int) -> str | None:
    if isinstance(value, bool):
        return None
    return None if INT64_MIN <= value <= INT64_MAX else BAD_INTEGER


def faults(value: Any) -> Iterator[str]:
    """Every reason `value` (a JSON value, at any depth) cannot be stored."""
    if isinstance(value, str):
        fault = text_fault(value)
        if fault:
            yield fault
    elif isinstance(value, int):
        fault = integer_fault(value)
        if fault:
            yield fault
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and text_fault(key):
                yield BAD_TEXT
            yield from faults(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from faults(item)
