"""The two manifests: which versions a handler has (XML), and how to run one (JSON).

No I/O here: bytes in, validated values out, one-line errors naming the field.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from azprov.errors import InvalidInput
from azprov.fabric.xmldoc import child, children, parse_xml, text
from azprov.jsondoc import parse_json

COMMANDS = ("install", "enable", "disable", "update", "uninstall")
UPDATE_MODES = ("UpdateWithInstall", "UpdateWithoutInstall")
_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}\Z")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclasses.dataclass(frozen=True)
class PackageVersion:
    version: str
    uris: tuple[str, ...]


def parse_version_manifest(content: bytes, name: str) -> list[PackageVersion]:
    """The versions a PluginVersionManifest lists (Plugins and InternalPlugins)."""
    document = f"manifest of {name}"
    root = parse_xml(content, document)
    found = []
    for section in ("Plugins", "InternalPlugins"):
        for plugin in children(child(root, section), "Plugin"):
            version = text(plugin, "Version")
            if version is None or not _VERSION.match(version):
                raise InvalidInput(f"{document}: Plugin/Version", version, "not a dotted version")
            uris = tuple(
                u.text.strip()
                for u in children(child(plugin, "Uris"), "Uri")
                if u.text and u.text.strip()
            )
            if not uris:
                raise InvalidInput(f"{document}: Plugin {version} Uris", None, "no package URI")
            found.append(PackageVersion(version, uris))
    return found


def choose_version(requested: str, available: list[PackageVersion]) -> Optional[PackageVersion]:
    """The highest version whose leading components equal `requested` ("1.0" → 1.0.x)."""
    prefix = version_key(requested)
    matching = [v for v in available if version_key(v.version)[: len(prefix)] == prefix]
    return max(matching, key=lambda v: version_key(v.version), default=None)


@dataclasses.dataclass(frozen=True)
class HandlerManifest:
    """What HandlerManifest.json says about running a handler."""

    commands: dict[str, str]  # command name -> shell command, relative to the handler folder
    update_mode: str = "UpdateWithInstall"
    continue_on_update_failure: bool = False
    report_heartbeat: bool = False
    supports_multiple_extensions: bool = False  # a multi-config handler (RunCommand v2)


def _flag(field: str, value: Any) -> bool:
    # The platform's manifests carry booleans as JSON booleans or as "true"/"false".
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInput(field, value, "expected true or false")


# Published HandlerManifest.json files are under 2 KB; the cap is checked here
# too, so no caller can hand the decoder a document of any size.
HANDLER_MANIFEST_MAX_BYTES = 64 * 1024


def parse_handler_manifest(content: bytes, name: str) -> HandlerManifest:
    field = f"{name} HandlerManifest.json"
    if len(content) > HANDLER_MANIFEST_MAX_BYTES:
        raise InvalidInput(
            field, f"{len(content)} bytes", f"larger than {HANDLER_MANIFEST_MAX_BYTES} bytes"
        )
    # Published manifests may start with a UTF-8 byte-order mark (parse_json allows it).
    document = parse_json(content, field)
    if isinstance(document, list) and document:
        document = document[0]
    manifest = document.get("handlerManifest") if isinstance(document, dict) else None
    if not isinstance(manifest, dict):
        raise InvalidInput(field, type(document).__name__, "no handlerManifest object")
    commands = {}
    for command in COMMANDS:
        value = manifest.get(f"{command}Command")
        # Commands are relative to the handler folder, even when written with a leading '/'.
        relative = value.strip().lstrip("/") if isinstance(value, str) else ""
        if not relative:
            raise InvalidInput(f"{field} {command}Command", value, "missing or names no file")
        commands[command] = relative
    mode = manifest.get("updateMode") or "UpdateWithInstall"
    if mode not in UPDATE_MODES:
        raise InvalidInput(f"{field} updateMode", mode, f"expected {' or '.join(UPDATE_MODES)}")
    return HandlerManifest(
        commands=commands,
        update_mode=mode,
        continue_on_update_failure=_flag(
            f"{field} continueOnUpdateFailure", manifest.get("continueOnUpdateFailure")
        ),
        report_heartbeat=_flag(f"{field} reportHeartbeat", manifest.get("reportHeartbeat")),
        supports_multiple_extensions=_flag(
            f"{field} supportsMultipleExtensions", manifest.get("supportsMultipleExtensions")
        ),
    )
