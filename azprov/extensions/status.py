"""The aggregate status document: one entry per handler, built from our outcomes and its files.

What a handler's entry says comes from its `Outcome` (a failure is the
entry's error) and, when it ran, from the status and heartbeat files it wrote
(`status_files` reads those defensively). What goes wrong building one entry
is that entry's error alone; the document always lists every handler.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Optional

from azprov import __version__
from azprov.errors import AzprovError
from azprov.extensions.handler import ENABLED, EXTENSION_ENABLED, HandlerFolder
from azprov.extensions.outcome import Outcome
from azprov.extensions.status_files import (
    formatted_message,
    read_heartbeat,
    read_status_file,
    settings_status,
)
from azprov.host.root import TargetRoot
from azprov.timestamps import utc_timestamp

log = logging.getLogger(__name__)

FAILURE_MAX_CHARS = 3200
# os-release is a few hundred bytes on every distro; a hostname is at most 253
# characters (DNS) plus a newline.
OS_RELEASE_MAX_BYTES = 16 * 1024
HOSTNAME_MAX_BYTES = 1024
# What azprov tells the platform it can do, in every status document.
MULTI_CONFIG_FEATURE = {"Key": "MultipleExtensionsPerHandler", "Value": "1.0"}


def handler_statuses(
    root: TargetRoot, outcome: Outcome, folder: Optional[HandlerFolder]
) -> list[tuple[Outcome, dict[str, Any]]]:
    """The handlerAggregateStatus entries of one handler, each with the outcome it tells:
    one, or one per named extension of a multi-config handler (none when none is wanted).
    What goes wrong building one named extension's entry is that entry's error alone."""
    if not outcome.multi_config:
        return [(outcome, handler_status(root, outcome, folder))]
    entries = []
    for named in outcome.named:
        try:
            entry = handler_status(root, named, folder)
        except Exception as exc:  # a bug with one extension must not silence the others
            log.debug("status failure", exc_info=exc)
            why = f"azprov could not read its status: {type(exc).__name__}: {exc}"
            entry = handler_status(root, dataclasses.replace(named, failure=why), None)
        entries.append((named, entry))
    return entries


def handler_status(
    root: TargetRoot, outcome: Outcome, folder: Optional[HandlerFolder]
) -> dict[str, Any]:
    """One entry of handlerAggregateStatus; what cannot be read is this entry's error.
    A multi-config handler's named extension (`outcome.extension`) is ready when it is
    enabled itself, and its entry carries its extensionName."""
    settings: Optional[dict[str, Any]]
    extension = outcome.extension
    outcome, state = _with_state(outcome, folder)
    if outcome.failure is not None:
        settings = settings_status(
            extension or outcome.name,
            outcome.operation,
            "error",
            1,
            outcome.failure,
            FAILURE_MAX_CHARS,
        )
        ready, message = False, f"{outcome.operation} failed: {outcome.failure_line}"
    elif folder is not None and state == ENABLED:
        settings = read_status_file(folder, outcome.seq_no, extension)
        ready, message = read_heartbeat(folder) if outcome.heartbeat else (True, "Plugin enabled")
    else:
        settings = (
            read_status_file(folder, outcome.seq_no, extension) if folder is not None else None
        )
        ready, message = False, "Plugin disabled" if folder is not None else "Plugin not installed"
    entry: dict[str, Any] = {
        "handlerName": outcome.name,
        "handlerVersion": outcome.version or "",
        "status": "Ready" if ready else "NotReady",
        "code": 0 if outcome.failure is None else 1,
        "useExactVersion": True,
        "formattedMessage": formatted_message(message),
    }
    if settings is not None:
        entry["runtimeSettingsStatus"] = {
            "sequenceNumber": outcome.seq_no,
            "settingsStatus": {
                "timestampUTC": settings.pop("timestampUTC", None) or utc_timestamp(),
                "version": 1.0,
                "status": settings,
            },
        }
        if extension:
            entry["runtimeSettingsStatus"]["extensionName"] = extension
    return entry


def _with_state(
    outcome: Outcome, folder: Optional[HandlerFolder]
) -> tuple[Outcome, Optional[str]]:
    """The outcome with the handler's state (None: not read, or a named extension not
    enabled itself); a HandlerState that cannot be read becomes the outcome's failure."""
    if outcome.failure is not None or folder is None:
        return outcome, None
    extension = outcome.extension
    try:
        state = folder.state()
        if extension and folder.extension_state(extension) != EXTENSION_ENABLED:
            return outcome, None
    except AzprovError as exc:
        why = f"config/HandlerState cannot be read: {exc}"
        return dataclasses.replace(outcome, failure=why), None
    return outcome, state


def _read_or_empty(root: TargetRoot, path: str, cap: int) -> str:
    """A small system file for guestOSInfo; empty when it cannot be read (it is not
    worth a failed upload, and the reason is in the debug log)."""
    try:
        return root.read_text(path, cap) or ""
    except AzprovError as exc:
        log.debug("guestOSInfo: %s", exc)
        return ""


def _os_info(root: TargetRoot) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in _read_or_empty(root, "/etc/os-release", OS_RELEASE_MAX_BYTES).splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    hostname = _read_or_empty(root, "/etc/hostname", HOSTNAME_MAX_BYTES).strip()
    return {
        "computerName": hostname,
        "osName": fields.get("ID", "linux"),
        "osVersion": fields.get("VERSION_ID", ""),
        "version": __version__,
    }


def aggregate_status(root: TargetRoot, entries: list[dict[str, Any]]) -> bytes:
    """The document uploaded to the status blob."""
    document = {
        "version": "1.1",
        "timestampUTC": utc_timestamp(),
        "aggregateStatus": {
            "guestAgentStatus": {
                "version": __version__,
                "status": "Ready",
                "formattedMessage": formatted_message("Guest Agent is running"),
            },
            "handlerAggregateStatus": entries,
        },
        "guestOSInfo": _os_info(root),
        "supportedFeatures": [MULTI_CONFIG_FEATURE],
    }
    return json.dumps(document, separators=(",", ":")).encode()
