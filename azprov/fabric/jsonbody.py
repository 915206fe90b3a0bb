"""JSON from outside (IMDS, the HostGAPlugin, a handler package), decoded with its costs bounded.

`json.loads` alone has two unbounded costs: nesting deeper than the
interpreter's recursion limit raises RecursionError (not a ValueError), and
int() of a long digit string is quadratic on Python 3.9 (RHEL 9): a
megabyte-long number costs seconds. Both become a ValueError here, like any
other JSON that is not usable.
"""

from __future__ import annotations

import json
from typing import Any, Union

# Longer than any number the fabric or a manifest sends (an Int64 has 19
# digits), far shorter than where int() of a digit string gets slow.
MAX_DIGITS = 40


def _int(digits: str) -> int:
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"a number of {len(digits)} digits")
    return int(digits)


def loads(content: Union[bytes, str]) -> Any:
    """The JSON value of `content`, or ValueError (not JSON, nested too deeply, a
    number longer than MAX_DIGITS)."""
    try:
        return json.loads(content, parse_int=_int)
    except RecursionError:
        raise ValueError("nested deeper than the decoder goes") from None
