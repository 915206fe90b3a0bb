"""A handler's own status and heartbeat files, read defensively.

They are the handler's to write, so they are read through the handler
folder's door (no link followed, only a regular file, at most 128 KB and
16 KB), decoded with bounds (`jsondoc`), messages cut to 1 KB. A missing
status file is `transitioning`; one that cannot be read or used is an `error`
for that handler alone, with the reason, as the platform agent reports it —
never an exception that would leave every other handler unreported.
"""

from __future__ import annotations

import re
import time
from typing import Any, Optional

from azprov.confined import Links
from azprov.errors import AzprovError, FileTooLarge
from azprov.extensions.handler import HandlerFolder
from azprov.jsondoc import UnusableJson, parse_json

STATUS_FILE_MAX_BYTES = 128 * 1024  # what the platform agent reads of one
MESSAGE_MAX_CHARS = 1024
HEARTBEAT_MAX_BYTES = 16 * 1024  # one small JSON object, rewritten in place
HEARTBEAT_STALE_SECONDS = 10 * 60
_STATUSES = ("transitioning", "warning", "error", "success")
# A status code is an Int32 on the platform: a whole number, or text passed on as the
# extension wrote it (the platform agent does), when short.
_CODE_TEXT = re.compile(r"^\s*-?[0-9]{1,10}\s*\Z")
_INT32 = 2**31
CODE_MAX_CHARS = 40


class UnusableStatus(ValueError):
    """Why a status or heartbeat document that decoded cannot be used."""


def _clean_text(text: str) -> str:
    # A JSON escape can carry half a surrogate pair: not encodable, so not loggable.
    return text.encode("utf-8", "replace").decode("utf-8")


def formatted_message(text: str, limit: int = MESSAGE_MAX_CHARS) -> dict[str, str]:
    """A formattedMessage of `text`, cut to `limit` characters."""
    text = _clean_text(text)
    return {"lang": "en-US", "message": text if len(text) <= limit else text[: limit - 3] + "..."}


def settings_status(
    name: str, operation: str, status: str, code: int, message: str, limit: int = MESSAGE_MAX_CHARS
) -> dict[str, Any]:
    """A settingsStatus `status` object azprov writes in place of the handler's own."""
    return {
        "name": name,
        "operation": operation,
        "status": status,
        "code": code,
        "formattedMessage": formatted_message(message, limit),
    }


def _formatted(value: Any) -> dict[str, str]:
    """A formattedMessage as the platform reads it: a language and a message of text,
    the message capped; anything else an extension wrote there is an empty message."""
    if not isinstance(value, dict) or not isinstance(value.get("message"), str):
        return formatted_message("")
    lang = value.get("lang")
    shown = formatted_message(value["message"])
    if isinstance(lang, str) and len(lang) <= CODE_MAX_CHARS:
        shown["lang"] = _clean_text(lang)
    return shown


def _message_text(value: Any) -> str:
    return value.get("message") or "" if isinstance(value, dict) else ""


def _code(value: Any) -> Any:
    """The extension's code: a number, or a string of digits read as one; other short
    text as written; anything else 0. UnusableStatus for what the platform cannot take."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return 0
    if isinstance(value, str):
        if not _CODE_TEXT.match(value):
            if len(value) > CODE_MAX_CHARS:
                raise UnusableStatus(f"status.code is a string of {len(value)} characters")
            return value
        value = int(value)
    if not -_INT32 <= value < _INT32:
        raise UnusableStatus(f"status.code {value} is not a 32-bit number")
    return value


def parse_status(content: bytes, name: str, handler: str) -> dict[str, Any]:
    """The `status` object of element 0 of a status file's `content`, checked and
    capped; that file's own `error` when it cannot be used (`name` says which)."""
    try:
        return _status_of(parse_json(content, name), name)
    except UnusableJson as exc:
        why = exc.why
    except (UnusableStatus, KeyError, IndexError, TypeError, AttributeError) as exc:
        why = str(exc)
    return settings_status(handler, "", "error", 1, f"{name} is malformed: {why[:200]}")


def _status_of(document: Any, name: str) -> dict[str, Any]:
    status = document[0]["status"]
    if not isinstance(status, dict):
        raise UnusableStatus(f"status is {str(status)[:40]!r}")
    # As the platform agent does: an unknown status is an error, a code is
    # passed on as written ("0" included), a null substatus is none. Fields the
    # platform reads as text are text here, whatever the file held.
    cleaned: dict[str, Any] = {"status": status.get("status")}
    for key in ("name", "operation"):
        if isinstance(status.get(key), str):
            cleaned[key] = _clean_text(status[key][:MESSAGE_MAX_CHARS])
    cleaned["code"] = _code(status.get("code", 0))
    cleaned["formattedMessage"] = _formatted(status.get("formattedMessage"))
    if cleaned.get("status") not in _STATUSES:
        cleaned["status"] = "error"
        if not _message_text(cleaned["formattedMessage"]):
            why = f"{name}: status.status is {str(status.get('status'))[:40]!r}"
            cleaned["formattedMessage"] = formatted_message(why)
    substatus = status.get("substatus")
    if isinstance(substatus, list):
        cleaned["substatus"] = [
            {**s, "formattedMessage": _formatted(s.get("formattedMessage"))}
            for s in substatus
            if isinstance(s, dict)
        ]
    else:
        cleaned.pop("substatus", None)
    # When the extension wrote it: lifted out into settingsStatus by handler_status.
    first = document[0]
    stamp = first.get("timestampUTC") if isinstance(first, dict) else None
    if isinstance(stamp, str) and len(stamp) <= 40:
        cleaned["timestampUTC"] = stamp
    return cleaned


def read_status_file(
    folder: HandlerFolder, seq_no: int, extension: Optional[str] = None
) -> dict[str, Any]:
    """The `status` object of `status/<seqNo>.status` (`status/<extension>.<seqNo>.status`
    for a multi-config handler's named extension), or that handler's own error."""
    name = f"{extension}.{seq_no}.status" if extension else f"{seq_no}.status"
    try:
        raw = folder.read(f"status/{name}", STATUS_FILE_MAX_BYTES)
    except FileTooLarge:
        why = f"{name} is larger than {STATUS_FILE_MAX_BYTES // 1024} KB"
        return settings_status(folder.name, "", "error", 1, why)
    except AzprovError as exc:
        return settings_status(folder.name, "", "error", 1, f"status/{name} cannot be read: {exc}")
    if raw is None:
        return settings_status(folder.name, "", "transitioning", 0, f"{name} not written yet")
    return parse_status(raw, name, folder.name)


def parse_heartbeat(content: bytes) -> tuple[bool, str]:
    """(ready, message) from the content of `heartbeat.log`."""
    try:
        beat = parse_json(content, "heartbeat.log")[0]["heartbeat"]
        state, text = beat["status"], beat.get("formattedMessage", {}).get("message", "")
        if not isinstance(state, str) or not isinstance(text, str):
            raise TypeError("status or message is not text")
    except UnusableJson as exc:
        return False, f"heartbeat.log is malformed: {exc.why[:200]}"
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        return False, f"heartbeat.log is malformed: {str(exc)[:200]}"
    return state.lower() == "ready", _clean_text(text or f"heartbeat: {state[:40]}")


def read_heartbeat(folder: HandlerFolder) -> tuple[bool, str]:
    """(ready, message) from `heartbeat.log`, for handlers whose manifest asks for it."""
    try:
        raw = folder.read("heartbeat.log", HEARTBEAT_MAX_BYTES)
        written = folder.tree.lstat("heartbeat.log", links=Links.REFUSE) if raw else None
    except FileTooLarge:
        return False, f"heartbeat.log is larger than {HEARTBEAT_MAX_BYTES // 1024} KB"
    except AzprovError as exc:
        return False, f"heartbeat.log cannot be read: {exc}"
    if raw is None or written is None:
        return False, "heartbeat.log not written yet"
    age = time.time() - written.st_mtime
    if age > HEARTBEAT_STALE_SECONDS:
        return False, f"heartbeat.log is stale: last written {age / 60:.0f} minutes ago"
    return parse_heartbeat(raw)
