"""Errors that know how to describe themselves to a user and to the platform.

An `AzprovError`'s `str()` is one line naming the field and the value; a
`ReportableError` also renders the report line the platform shows (health, KVP).
"""

from __future__ import annotations

import datetime
from typing import Any, Mapping

from azprov import AGENT_NAME
from azprov.timestamps import utc_timestamp

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
    """A failure the platform should hear about, with supporting key=value data.

    Each subclass names its kind in `reason`, the token the report line and
    KVP carry; callers decide by type, never by comparing reason strings. An
    instance may override the reason only where the text comes from outside
    (`report-failure TEXT`).
    """

    reason = "provisioning_failed"

    def __init__(self, message: str, *, reason: str | None = None, **supporting_data: object):
        super().__init__(message)
        if reason is not None:
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


class InternalError(ReportableError):
    """A bug: an exception azprov did not expect, reported without a traceback."""

    reason = "internal_error"


class Terminated(ReportableError):
    """systemd (or a user) stopped the run with SIGTERM."""

    reason = "terminated"


class GoalStateUnavailable(ReportableError):
    """The WireServer never gave a goal state: there is no container to report NotReady for."""

    def __init__(self, cause: ReportableError) -> None:
        super().__init__(str(cause), reason=cause.reason, **cause.supporting_data)
        self.cause = cause


class InvalidInput(ReportableError):
    """A value from IMDS, the media or the user is not acceptable."""

    reason = "invalid_input"

    def __init__(self, field: str, value: object, why: str, *, secret: bool = False) -> None:
        shown = "<redacted>" if secret else repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{field}={shown} is invalid: {why}", field=field, value=shown)
        self.field = field


class HostError(ReportableError):
    """A change to (or a read of) the machine failed."""

    reason = "host_change_failed"


class IdentityUnreadable(HostError):
    """The VM ID cannot be read from the firmware."""

    reason = "vm_id_unreadable"


class IdentityInvalid(IdentityUnreadable):
    """The firmware's VM ID is not a UUID."""

    reason = "vm_id_invalid"


class UnsafePath(HostError):
    """A path in a tree azprov will not use: a refused link, a loop, a FIFO or device."""

    reason = "unsafe_path"


class FileTooLarge(HostError):
    """A file larger than azprov reads for its kind: refused whole, never cut."""

    reason = "file_too_large"


class CommandFailed(HostError):
    """An extension handler's command exited non-zero or ran out of time."""

    reason = "command_failed"


class FabricError(ReportableError):
    """Azure's WireServer, HostGAPlugin, IMDS or storage gave no usable answer.

    The tree, with what a caller may do about each:

        FabricError
        ├── TransientFabricError        may succeed if asked again later
        │   ├── FabricTimeout           no usable answer within the call's budget
        │   └── StaleContainer          the goal state moved on: fetch it again
        ├── HttpStatusError             the server understood and refused (4xx), .status
        ├── TransportError              the request could not even be sent (bad URL, scheme)
        ├── ReplyTooLarge               the body passed its size cap
        ├── MalformedDocument           a document azprov cannot use, .document
        │   ├── NotWellFormed           cut short or garbled: the next reply may be whole
        │   └── HostileDocument         a DTD or entities: refused without retrying
        ├── HostPluginUnusable          the HostGAPlugin does not speak our protocol version
        ├── ArtifactUnavailable         no channel (direct, HostGAPlugin) gave the file
        │   ├── ManifestUnavailable     no location gave a usable extension manifest
        │   ├── PackageUnavailable      no URI gave the extension's package
        │   └── Transient…Unavailable   the same, where a channel only timed out or
        │                               failed on the server side (also transient)
        ├── StatusUploadFailed          neither the HostGAPlugin nor storage took the status
        └── CertificatesUndecryptable   the tenant certificates cannot be opened
    """

    reason = "fabric_error"


class TransientFabricError(FabricError):
    """A fabric failure that says nothing about the request: worth another try later."""


class FabricTimeout(TransientFabricError):
    reason = "fabric_timeout"


class StaleContainer(TransientFabricError):
    """The HostGAPlugin no longer knows our container: fetch the goal state again."""

    reason = "stale_container"


class HttpStatusError(FabricError):
    """The server answered with a status that retrying will not change."""

    reason = "http_error"

    def __init__(self, message: str, *, status: int, **supporting_data: Any) -> None:
        super().__init__(message, status=status, **supporting_data)
        self.status = status


class TransportError(FabricError):
    """The request could not be sent at all (an unusable URL, an unsupported scheme)."""

    reason = "transport_error"


class ReplyTooLarge(FabricError):
    reason = "reply_too_large"


class MalformedDocument(FabricError):
    """A fabric document that does not parse or lacks what azprov needs."""

    reason = "malformed_document"

    def __init__(self, message: str, *, document: str, **supporting_data: Any) -> None:
        super().__init__(message, document=document, **supporting_data)
        self.document = document


class NotWellFormed(MalformedDocument):
    """Not XML at all (often a reply cut short); the WireServer's callers retry these."""


class HostileDocument(MalformedDocument):
    """A document with a DTD, entities or external references: never expanded or retried."""

    reason = "hostile_document"


class ArtifactUnavailable(FabricError):
    """No channel gave an extension manifest, package or other artifact."""

    reason = "artifact_unavailable"


class ManifestUnavailable(ArtifactUnavailable):
    reason = "manifest_unavailable"


class PackageUnavailable(ArtifactUnavailable):
    reason = "package_unavailable"


class TransientArtifactUnavailable(ArtifactUnavailable, TransientFabricError):
    """No channel gave the file, and at least one only timed out or failed on the server."""


class TransientManifestUnavailable(ManifestUnavailable, TransientFabricError):
    """No manifest location worked, and at least one may work when asked again."""


class TransientPackageUnavailable(PackageUnavailable, TransientFabricError):
    """No package URI worked, and at least one may work when asked again."""


class HostPluginUnusable(FabricError):
    reason = "hostplugin_unusable"


class StatusUploadFailed(FabricError):
    reason = "status_upload_failed"


class CertificatesUndecryptable(FabricError):
    reason = "certificates_undecryptable"


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
    when = utc_timestamp(now)
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
