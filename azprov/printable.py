"""Text from an image, made safe to print on one line of a terminal.

A path or value from an image can hold any character: a line of output quotes
every character that could end the line, start another or reach the terminal
as a control (a newline, ESC or a one-byte CSI, a bidi override, a byte that is
not UTF-8), so a file name cannot forge a line of a listing or recolour it.
"""

from __future__ import annotations

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def quoted(text: str) -> str:
    """`text` with every unprintable character (and the backslash) as an escape: `\\n`,
    `\\x1b`, `\\u202e`, `\\udcff`; what is printable, non-ASCII included, stays as it is."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(char if char.isprintable() and char != "\\" else _escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
