"""The aggregate status document, built from the handlers' `.status` files and our outcomes.

A handler's status file is its own to write, so it is read defensively: at
most 128 KB, messages cut to 1 KB, a missing file is `transitioning`, and a
malformed one is reported as an error for that handler, never a crash.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from azprov import __version__
from azprov.extensions.handler import ENABLED, HandlerFolder, read_capped
from azprov.extensions.lifecycle import Outcome
from azprov.host.root import TargetRoot
from azprov.timestamps import utc_timestamp

STATUS_FILE_MAX_BYTES = 128 * 1024
MESSAGE_MAX_CHARS = 1024
FAILURE_MAX_CHARS = 3200
HEARTBEAT_MAX_BYTES = 16 * 1024
HEARTBEAT_STALE_SECONDS = 10 * 60
_STATUSES = ("transitioning", "warning", "error", "success")


def _message(text: str, limit: int = MESSAGE_MAX_CHARS) -> dict[str, str]:
    return {"lang": "en-US", "message": text if len(text) <= limit else text[: limit - 3] + "..."}


def _settings_status(
    name: str, operation: str, status: str, code: int, message: str, limit: int = MESSAGE_MAX_CHARS
) -> dict[str, Any]:
    return {
        "name": name,
        "operation": operation,
        "status": status,
        "code": code,
        "formattedMessage": _message(message, limit),
    }


def _capped_message(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return {**value, **_message(value["message"])}
    return value


def _message_text(value: Any) -> str:
    return value.get("message") or "" if isinstance(value, dict) else ""


def _code(value: Any) -> Any:
    """The extension's code: a number, or a string of digits read as one; else as written."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else 0


def read_status_file(folder: HandlerFolder, seq_no: int) -> dict[str, Any]:
    """The `status` object of element 0 of `status/<seqNo>.status`, checked and capped."""
    name = f"{seq_no}.status"
    raw = read_capped(folder.status_file(seq_no), STATUS_FILE_MAX_BYTES)
    if raw is None:
        return _settings_status(folder.name, "", "transitioning", 0, f"{name} not written yet")
    if len(raw) > STATUS_FILE_MAX_BYTES:
        why = f"{name} is larger than {STATUS_FILE_MAX_BYTES // 1024} KB"
        return _settings_status(folder.name, "", "error", 1, why)
    try:
        document = json.loads(raw)
        status = document[0]["status"]
        if not isinstance(status, dict):
            raise ValueError(f"status is {status!r}")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        why = f"{name} is malformed: {str(exc)[:200]}"
        return _settings_status(folder.name, "", "error", 1, why)
    cleaned = {
        k: v
        for k, v in status.items()
        if k in ("name", "operation", "status", "code", "formattedMessage", "substatus")
    }
    # As the platform agent does: an unknown status is an error, a code is
    # passed on as written ("0" included), a null substatus is none.
    cleaned["code"] = _code(status.get("code", 0))
    cleaned["formattedMessage"] = _capped_message(
        status.get("formattedMessage") or {"lang": "en-US", "message": ""}
    )
    if cleaned.get("status") not in _STATUSES:
        cleaned["status"] = "error"
        if not _message_text(cleaned["formattedMessage"]):
            why = f"{name}: status.status is {str(status.get('status'))[:40]!r}"
            cleaned["formattedMessage"] = _message(why)
    substatus = status.get("substatus")
    if isinstance(substatus, list):
        cleaned["substatus"] = [
            {**s, "formattedMessage": _capped_message(s.get("formattedMessage"))}
            if isinstance(s, dict)
            else s
            for s in substatus
        ]
    else:
        cleaned.pop("substatus", None)
    # When the extension wrote it: lifted out into settingsStatus by handler_status.
    stamp = document[0].get("timestampUTC")
    if isinstance(stamp, str) and len(stamp) <= 40:
        cleaned["timestampUTC"] = stamp
    return cleaned


def read_heartbeat(folder: HandlerFolder) -> tuple[bool, str]:
    """(ready, message) from `heartbeat.log`, for handlers whose manifest asks for it."""
    path = folder.path / "heartbeat.log"
    raw = read_capped(path, HEARTBEAT_MAX_BYTES)
    if raw is None:
        return False, "heartbeat.log not written yet"
    age = time.time() - path.lstat().st_mtime
    if age > HEARTBEAT_STALE_SECONDS:
        return False, f"heartbeat.log is stale: last written {age / 60:.0f} minutes ago"
    try:
        beat = json.loads(raw)[0]["heartbeat"]
        state, text = beat["status"], beat.get("formattedMessage", {}).get("message", "")
        if not isinstance(state, str) or not isinstance(text, str):
            raise TypeError("status or message is not text")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return False, f"heartbeat.log is malformed: {str(exc)[:200]}"
    return state.lower() == "ready", text or f"heartbeat: {state}"


def handler_status(
    root: TargetRoot, outcome: Outcome, folder: Optional[HandlerFolder]
) -> dict[str, Any]:
    """One entry of handlerAggregateStatus."""
    settings: Optional[dict[str, Any]]
    if outcome.failure is not None:
        settings = _settings_status(
            outcome.name, outcome.operation, "error", 1, outcome.failure, FAILURE_MAX_CHARS
        )
        ready, message = False, f"{outcome.operation} failed: {outcome.failure.splitlines()[0]}"
    elif folder is not None and folder.state() == ENABLED:
        settings = read_status_file(folder, outcome.seq_no)
        ready, message = read_heartbeat(folder) if outcome.heartbeat else (True, "Plugin enabled")
    else:
        settings = read_status_file(folder, outcome.seq_no) if folder is not None else None
        ready, message = False, "Plugin disabled" if folder is not None else "Plugin not installed"
    entry: dict[str, Any] = {
        "handlerName": outcome.name,
        "handlerVersion": outcome.version or "",
        "status": "Ready" if ready else "NotReady",
        "code": 0 if outcome.failure is None else 1,
        "useExactVersion": True,
        "formattedMessage": _message(message),
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
    return entry


def _os_info(root: TargetRoot) -> dict[str, str]:
    fields: dict[str, str] = {}
    raw = read_capped(root / "/etc/os-release", 16 * 1024) or b""
    for line in raw.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    hostname = (read_capped(root / "/etc/hostname", 256) or b"").decode("utf-8", "replace").strip()
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
                "formattedMessage": _message("Guest Agent is running"),
            },
            "handlerAggregateStatus": entries,
        },
        "guestOSInfo": _os_info(root),
        "supportedFeatures": [],
    }
    return json.dumps(document, separators=(",", ":")).encode()
