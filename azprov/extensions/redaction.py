"""Keeping secrets out of everything azprov writes: logs, status, error messages.

Protected settings (even encrypted), private keys and SAS signatures are
replaced by `<redacted>` in any text that leaves the runner.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

REDACTED = "<redacted>"
# SAS signatures in any text (a URL inside a message or a JSON string): stop at
# the characters that end a query value there, not only at '&' as in a bare URL.
_SAS_SECRET = re.compile(r"(?i)\b(sig|signature|token)=[^&\s\"'\\<>]*")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
)


class Redactor:
    """Callable: text in, the same text with every known secret replaced."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _PRIVATE_KEY.sub(REDACTED, text)
        return _SAS_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)

    def strings(self, value: Any) -> Any:
        """A copy of a JSON-shaped `value` (dicts, lists, scalars) with every string in it,
        keys too, redacted on its own."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.strings(k): self.strings(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.strings(v) for v in value]
        return value
