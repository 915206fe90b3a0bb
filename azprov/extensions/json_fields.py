"""Fields of a decoded JSON document azprov did not write (vmSettings), checked one by one.

Each helper returns the value in the type asked for or raises a one-line
InvalidInput naming the field and the value: cut to a line of at most 200
characters, and for a value of the wrong type only its kind ("a list"), never
its content, which may be secret. Objects come back with their keys
case-folded: the HostGAPlugin is not consistent about case.
"""

from __future__ import annotations

import re
from typing import Any

from azprov.errors import InvalidInput, one_line

SHOWN_MAX_CHARS = 200
_DIGITS = re.compile(r"^\s*[0-9]{1,20}\s*\Z")


def kind(value: Any) -> str:
    """How a refused value is named: its type, never its content (it may be secret)."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def shown(value: Any) -> str:
    """A value as an error quotes it: text cut to one short line, anything else its kind."""
    return one_line(value)[:SHOWN_MAX_CHARS] if isinstance(value, str) else kind(value)


def folded(value: dict[str, Any]) -> dict[str, Any]:
    """An object's keys case-folded (the first spelling of a key wins)."""
    found: dict[str, Any] = {}
    for key, item in value.items():
        found.setdefault(key.casefold(), item)
    return found


def object_field(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, kind(value), "not an object")
    return folded(value)


def list_field(value: Any, field: str) -> list[Any]:
    """A list; a missing one (null) is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(field, kind(value), "not a list")
    return value


def text_field(value: Any, field: str, pattern: re.Pattern[str], why: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidInput(field, shown(value), why)
    return value


def whole_field(value: Any, field: str, maximum: int) -> int:
    """A whole number from 0 to `maximum`, sent as a number or as digits in a string."""
    if isinstance(value, str) and _DIGITS.match(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        quoted = one_line(value)[:40] if isinstance(value, str) else value
        raise InvalidInput(field, quoted, f"not a whole number up to {maximum}")
    return value


def flag_field(value: Any, field: str) -> bool:
    """true/false, as a boolean or as text; a missing one (null) is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if value is None:
        return False
    raise InvalidInput(field, kind(value), "not true or false")


def url_field(value: Any, field: str, *, secret: bool = False) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidInput(field, shown(value), "not an http(s) URL", secret=secret)
    return value
