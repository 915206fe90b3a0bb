"""The ExtensionsConfig document: which handlers the platform wants, with what settings.

Parsing is all-or-nothing: one bad plugin refuses the whole document, so a
half-understood goal never changes the machine. Settings stay as the JSON
text the platform sent; protected settings inside stay encrypted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Optional
from xml.etree.ElementTree import Element

from azprov.errors import InvalidInput
from azprov.fabric.xmldoc import child, children, local_name, parse_xml

# Publisher.Type: it becomes a folder name, so nothing that could climb out of lib_dir.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$")
STATES = ("enabled", "disabled", "uninstall")
BLOB_TYPES = ("BlockBlob", "PageBlob")
# RequiredFeatures azprov implements; any other one fails the goal state.
SUPPORTED_FEATURES: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Plugin:
    """One handler as the goal state asks for it."""

    name: str
    version: str  # a prefix of the version to run ("1.0" matches 1.0.x)
    state: str  # enabled | disabled | uninstall
    manifest_urls: tuple[str, ...]  # location, failover, additional locations
    seq_no: Optional[int] = None
    settings: Optional[str] = None  # the runtimeSettings JSON, protected part encrypted
    protected: tuple[str, ...] = ()  # encrypted protected settings: kept out of every log
    dependency_level: int = 0
    depends_on: tuple[str, ...] = ()
    unsupported: Optional[str] = None  # why azprov cannot run this handler at all

    def __repr__(self) -> str:  # settings never reach a log, even through a repr
        return f"Plugin({self.name} {self.version} {self.state} seqNo={self.seq_no})"


@dataclasses.dataclass(frozen=True)
class ExtensionsGoal:
    plugins: tuple[Plugin, ...]
    status_blob_url: Optional[str]
    status_blob_type: str
    required_features: tuple[str, ...]
    in_svd_seq_no: Optional[str] = None  # InVMGoalStateMetaData: the document's own version

    def unsupported_features(self) -> list[str]:
        return [f for f in self.required_features if f not in SUPPORTED_FEATURES]


def _attr(element: Element, name: str) -> Optional[str]:
    """An attribute looked up case-insensitively (the platform is not consistent)."""
    for key, value in element.attrib.items():
        if local_name(key).lower() == name.lower():
            return value.strip()
    return None


def _valid(field: str, value: Optional[str], pattern: re.Pattern[str], why: str) -> str:
    if value is None or not pattern.match(value):
        raise InvalidInput(field, value, why)
    return value


def parse_extensions_config(content: bytes) -> ExtensionsGoal:
    """Parse and validate the whole ExtensionsConfig, or raise a one-line error."""
    root = parse_xml(content, "ExtensionsConfig")
    if local_name(root.tag) != "Extensions":
        raise InvalidInput("ExtensionsConfig root", root.tag, "expected <Extensions>")
    settings = {
        (_attr(p, "name") or "").lower(): p
        for p in children(child(root, "PluginSettings"), "Plugin")
    }
    plugins = tuple(
        _plugin(element, settings.get((_attr(element, "name") or "").lower()))
        for element in children(child(root, "Plugins"), "Plugin")
    )
    seen: set[str] = set()
    for plugin in plugins:
        if plugin.name.lower() in seen:
            raise InvalidInput("Plugin@name", plugin.name, "listed twice")
        seen.add(plugin.name.lower())
    blob = child(root, "StatusUploadBlob")
    blob_url = (blob.text or "").strip() or None if blob is not None else None
    blob_type = (_attr(blob, "statusBlobType") if blob is not None else None) or "BlockBlob"
    if blob_type not in BLOB_TYPES:
        raise InvalidInput("StatusUploadBlob@statusBlobType", blob_type, "not BlockBlob/PageBlob")
    if blob_url is not None and not blob_url.startswith(("http://", "https://")):
        raise InvalidInput("StatusUploadBlob", blob_url, "not an http(s) URL", secret=True)
    features = tuple(
        (f.text or "").strip()
        for f in (
            child(n, "Name") for n in children(child(root, "RequiredFeatures"), "RequiredFeature")
        )
        if f is not None and (f.text or "").strip()
    )
    metadata = child(root, "InVMGoalStateMetaData")
    in_svd = _attr(metadata, "inSvdSeqNo") if metadata is not None else None
    return ExtensionsGoal(plugins, blob_url, blob_type, features, in_svd)


def _plugin(element: Element, settings: Optional[Element]) -> Plugin:
    name = _valid("Plugin@name", _attr(element, "name"), _NAME, "not a Publisher.Type name")
    version = _valid(
        f"Plugin {name} @version", _attr(element, "version"), _VERSION, "not a dotted version"
    )
    state = (_attr(element, "state") or "enabled").lower()
    if state not in STATES:
        raise InvalidInput(f"Plugin {name} @state", state, f"expected one of {', '.join(STATES)}")
    urls = [_attr(element, "location"), _attr(element, "failoverlocation")]
    additional = child(element, "additionalLocations")
    urls += [(a.text or "").strip() for a in children(additional, "additionalLocation")]
    manifest_urls = tuple(u for u in urls if u)
    for url in manifest_urls:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"Plugin {name} manifest location", url, "not an http(s) URL")
    if not manifest_urls and state == "enabled":
        raise InvalidInput(f"Plugin {name} @location", None, "no manifest location")
    if settings is None:
        return Plugin(name, version, state, manifest_urls)
    if children(settings, "ExtensionRuntimeSettings"):
        # One handler azprov cannot run must not stop the others: it fails alone.
        why = "multi-config handlers (ExtensionRuntimeSettings) are not supported by azprov"
        return Plugin(name, version, state, manifest_urls, unsupported=why)
    level, depends_on = _dependencies(name, settings)
    runtime = child(settings, "RuntimeSettings")
    if runtime is None:
        return Plugin(name, version, state, manifest_urls, None, None, (), level, depends_on)
    seq_text = _attr(runtime, "seqNo")
    if seq_text is None or not seq_text.isdigit():
        raise InvalidInput(f"Plugin {name} RuntimeSettings@seqNo", seq_text, "not a whole number")
    text = (runtime.text or "").strip()
    protected = _protected_values(name, text) if text else ()
    return Plugin(
        name,
        version,
        state,
        manifest_urls,
        int(seq_text),
        text or None,
        protected,
        level,
        depends_on,
    )


def _dependencies(name: str, settings: Element) -> tuple[int, tuple[str, ...]]:
    depends = child(settings, "DependsOn")
    if depends is None:
        return 0, ()
    level_text = _attr(depends, "dependencyLevel") or "0"
    if not level_text.isdigit():
        raise InvalidInput(f"Plugin {name} DependsOn@dependencyLevel", level_text, "not a number")
    handlers = tuple(
        h for h in (_attr(e, "handler") for e in children(depends, "DependsOnExtension")) if h
    )
    return int(level_text), handlers


def _protected_values(name: str, text: str) -> tuple[str, ...]:
    """Check the settings' shape and return the encrypted protected settings found in it."""
    field = f"Plugin {name} RuntimeSettings"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(field, text, f"not JSON ({exc.msg})", secret=True) from None
    entries = document.get("runtimeSettings") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(field, text, "no runtimeSettings list", secret=True)
    found = []
    for entry in entries:
        handler = entry.get("handlerSettings") if isinstance(entry, dict) else None
        if not isinstance(handler, dict):
            raise InvalidInput(field, text, "an entry has no handlerSettings object", secret=True)
        value = handler.get("protectedSettings")
        if isinstance(value, str) and value:
            found.append(value)
        thumbprint = handler.get("protectedSettingsCertThumbprint")
        if value and not (
            isinstance(thumbprint, str) and re.match(r"^[0-9A-Fa-f]{40}$", thumbprint)
        ):
            raise InvalidInput(
                f"{field} protectedSettingsCertThumbprint", thumbprint, "not a SHA-1 thumbprint"
            )
    return tuple(found)
