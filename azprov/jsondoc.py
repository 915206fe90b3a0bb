"""JSON that azprov did not write itself, decoded within bounds.

A handler's status and heartbeat files, a plugin's settings, azprov's state
file (which anything running as root may have changed): each is read under a
size cap by the caller, then decoded here with a nesting depth checked before
the decoder recurses, numbers no longer than a status code can be (Python's
int() of a long digit string is slow on 3.9 and refused on 3.11+), and no NaN
or Infinity, which would make the status document azprov uploads invalid JSON
for every handler at once. Anything else is `UnusableJson`, never a
RecursionError or a bare ValueError.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from typing import Any, Union

from azprov.errors import InvalidInput

# Deeper than any document of the extension contract (a status file is six levels
# deep) and far below the interpreter's recursion limit.
MAX_DEPTH = 64
# A status code is an Int32 on the platform (10 digits); 20 covers an Int64 and stays
# far from where int() of a digit string gets slow or refused.
MAX_DIGITS = 20

# A string, ended by its closing quote or by the end of the text: this never fails to
# match once it starts, so the scan stays linear even for an unterminated string.
_STRING = re.compile(r'"(?:[^"\\]|\\.?)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# Each bracket as one step of the running depth: 2 - 1 = +1 opens, 0 - 1 = -1 closes.
_STEPS = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})
_BOM = "\ufeff"


class UnusableJson(InvalidInput):
    """A JSON document azprov refuses; `why` is the reason alone, for callers that
    word their own message (a handler's status entry)."""

    def __init__(self, document: str, why: str, *, excerpt: str = "", secret: bool = False):
        super().__init__(document, excerpt, why, secret=secret)
        self.why = why


def nesting_depth(text: str) -> int:
    """How deep `text` nests arrays and objects, brackets inside strings not counted.

    Linear in the length of the text and run in C (regular expressions,
    itertools), so a megabyte of brackets costs milliseconds.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    steps = brackets.translate(_STEPS).encode("latin-1")
    running = map(operator.sub, itertools.accumulate(steps), itertools.count(1))
    return max(running, default=0)


def _int(digits: str) -> int:
    count = len(digits.lstrip("-"))
    if count > MAX_DIGITS:
        raise ValueError(f"a number of {count} digits")
    return int(digits)


def _float(text: str) -> float:
    if len(text) > 4 * MAX_DIGITS:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range ({text[:24]})")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _ignored(text: str) -> None:
    return None


def parse_json(
    content: Union[bytes, str],
    document: str,
    *,
    max_depth: int = MAX_DEPTH,
    keep_numbers: bool = True,
    secret: bool = False,
) -> Any:
    """The value in `content` (UTF-8, a leading byte-order mark allowed), or UnusableJson.

    With `keep_numbers=False` numbers and NaN/Infinity are read as None: for text
    whose numbers azprov never looks at (a plugin's settings, which the handler
    parses itself), so no number there can refuse the document. `secret` keeps
    the content out of the error (an excerpt is shown otherwise).
    """
    if isinstance(content, bytes):
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnusableJson(
                document, f"not UTF-8 (byte {exc.start})", excerpt=_excerpt(content), secret=secret
            ) from None
    else:
        text = content
    text = text.removeprefix(_BOM)
    depth = nesting_depth(text)
    if depth > max_depth:
        raise UnusableJson(
            document,
            f"nested deeper than {max_depth} levels ({depth})",
            excerpt=_excerpt(text),
            secret=secret,
        )
    hooks: dict[str, Any] = (
        {"parse_int": _int, "parse_float": _float, "parse_constant": _constant}
        if keep_numbers
        else {"parse_int": _ignored, "parse_float": _ignored, "parse_constant": _ignored}
    )
    try:
        return json.loads(text, **hooks)
    except json.JSONDecodeError as exc:
        why = f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:  # the depth check above makes this a last resort
        why = "nested too deep to decode"
    except ValueError as exc:  # from the number hooks
        why = str(exc)
    raise UnusableJson(document, why, excerpt=_excerpt(text), secret=secret)


def _excerpt(content: Union[bytes, str]) -> str:
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    return text[:40]
