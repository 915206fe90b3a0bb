"""Errors that know how to describe themselves to a user and to the platform.

Every failure a user can hit is an `AzprovError`: its `str()` is one line
that names the field and the value. A `ReportableError` also renders the
pipe-separated report line the platform shows (health Description, KVP).
"""

from __future__ import annotations

import datetime
from typing import Mapping

from azprov import AGENT_NAME

DOCUMENTATION_URL = "https://aka.ms/linuxprovisioningerror"

# Azure reads at most 1024 bytes of a KVP value; keep one byte for the NUL.
REPORT_MAX_BYTES = 1023


class AzprovError(Exception):
    """A failure with a one-line, user-facing message (never a traceback)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class ConfigError(AzprovError):
    """A configuration file or command-line value is unusable."""

    exit_code = 2


class ReportableError(AzprovError):
    """A failure the platform should hear about, with supporting key=value data."""

    def __init__(self, reason: str, message: str, **supporting_data: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.supporting_data: dict[str, str] = {
            key: one_line(str(value)) for key, value in supporting_data.items()
        }

    def report_line(self, vm_id: str | None, now: datetime.datetime | None = None) -> str:
        data = {"reason": self.reason}
        if str(self) != self.reason:
            data["message"] = str(self)
        data.update(self.supporting_data)
        return report_line("error", data, vm_id, now)


class FabricError(ReportableError):
    """Azure's WireServer, HostGAPlugin or IMDS could not give a usable answer."""


class InvalidInput(ReportableError):
    """A value from IMDS, the media or the user is not acceptable."""

    def __init__(self, field: str, value: object, why: str, *, secret: bool = False) -> None:
        shown = "<redacted>" if secret else repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(
            "invalid_input", f"{field}={shown} is invalid: {why}", field=field, value=shown
        )
        self.field = field


def one_line(text: str) -> str:
    """Fold any line breaks and control characters so a message stays on one line."""
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _clean(text: str) -> str:
    # '|' separates fields and '=' separates key from value in the report.
    return one_line(text).replace("|", "/")


def report_line(
    result: str,
    data: Mapping[str, str],
    vm_id: str | None,
    now: datetime.datetime | None = None,
) -> str:
    """Render `result=…|reason=…|agent=…|k=v…|vm_id=…|timestamp=…[|documentation_url=…]`.

    The line is cut to REPORT_MAX_BYTES of UTF-8 by shortening the supporting
    data (then, if still needed, the reason), never the identity fields at the
    end, so support can always find the VM and the time.
    """
    when = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tail = [f"vm_id={vm_id or 'unknown'}", f"timestamp={when}"]
    if result == "error":
        tail.append(f"documentation_url={DOCUMENTATION_URL}")
    agent = f"agent={AGENT_NAME}"
    head = [f"result={result}"]
    if "reason" in data:
        # `report-failure TEXT` makes the user's text the reason: it may be long.
        others = len("|".join([*head, agent, *tail]).encode())
        room = REPORT_MAX_BYTES - others - len("|reason=")
        head.append(f"reason={_cut(_clean(data['reason']), room)}")
    head.append(agent)
    body = [f"{_clean(k).replace('=', '_')}={_clean(v)}" for k, v in data.items() if k != "reason"]
    fixed = "|".join(head + tail)
    middle = _cut("|".join(body), REPORT_MAX_BYTES - len(fixed.encode()) - 1)
    parts = head + ([middle] if middle else []) + tail
    return "|".join(parts)


def _cut(text: str, room: int) -> str:
    """`text` in at most `room` bytes of UTF-8, marked with "..." when shortened."""
    encoded = text.encode()
    if len(encoded) <= room:
        return text
    if room < 3:
        return ""
    return encoded[: room - 3].decode("utf-8", "ignore") + "..."
