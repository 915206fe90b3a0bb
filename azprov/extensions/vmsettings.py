"""vmSettings (Fast Track, reference §7): the HostGAPlugin's JSON extensions goal state.

The same request as the WireServer's ExtensionsConfig, in another shape, parsed
into the same `ExtensionsGoal` (plugins, status blob, required features,
inSvdSeqNo) and kept as a `SourcedGoal` with what choosing between the two
needs: its id, creation time (.NET ticks), source (FastTrack | Fabric) and
onHold. Keys match case-insensitively: the HostGAPlugin is not consistent
(`failoverlocation`, `DependsOnExtension`).

As with ExtensionsConfig, one bad extension fails alone (`Plugin.invalid`); what
refuses the whole document is only what nothing could be reported without: text
that is not a bounded JSON object, a status blob that is not BlockBlob/PageBlob
or not an http(s) URL, a creation time or source of the wrong kind, and lists
that are not lists. Public settings arrive as a JSON *string*: it is checked to
hold an object and written into the handler's settings as sent, numbers and all;
protected settings stay encrypted and out of every message.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

from azprov.errors import AzprovError, InvalidInput, one_line
from azprov.extensions.goal import (
    _EXTENSION_NAME,
    _NAME,
    _THUMBPRINT,
    _VERSION,
    EXTENSION_STATES,
    STATES,
    ExtensionsGoal,
    NamedExtension,
    Plugin,
)
from azprov.fabric.xmldoc import child, local_name, parse_xml
from azprov.jsondoc import parse_json

DOCUMENT = "vmSettings"
FAST_TRACK = "FastTrack"
FABRIC = "Fabric"
BLOB_TYPES = ("BlockBlob", "PageBlob")
# HostGAPlugins older than this serve vmSettings the platform agent does not trust.
MIN_HOST_PLUGIN_VERSION = (1, 0, 8, 133)
_SEQ_NO_MAX = 2**31 - 1
_LEVEL_MAX = 10**9 - 1
# .NET ticks stay below 2^63; the platform writes them as a JSON number.
_TICKS_MAX = 2**63 - 1
_SHOWN_MAX_CHARS = 200
_DOTTED = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$")
_DIGITS = re.compile(r"^\s*[0-9]{1,20}\s*$")


@dataclasses.dataclass(frozen=True)
class SourcedGoal:
    """An extensions goal state with where it came from and when it was made."""

    goal: ExtensionsGoal
    id: str  # "incarnation N" (ExtensionsConfig) or "etag_<ETag>" (vmSettings)
    created: int = 0  # creation time in .NET ticks; 0 when the document does not say
    source: str = FABRIC  # FastTrack | Fabric
    on_hold: bool = False
    host_plugin_version: Optional[str] = None

    @property
    def fast_track(self) -> bool:
        return self.id.startswith("etag_")


def _folded(value: Any) -> dict[str, Any]:
    """An object's keys case-folded (the first spelling of a key wins)."""
    folded: dict[str, Any] = {}
    for key, item in value.items():
        folded.setdefault(key.casefold(), item)
    return folded


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, _kind(value), "not an object")
    return _folded(value)


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(field, _kind(value), "not a list")
    return value


def _kind(value: Any) -> str:
    """How a refused value is named: its type, never its content (it may be secret)."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _text(value: Any, field: str, pattern: re.Pattern[str], why: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        shown = one_line(value)[:_SHOWN_MAX_CHARS] if isinstance(value, str) else _kind(value)
        raise InvalidInput(field, shown, why)
    return value


def _whole(value: Any, field: str, maximum: int) -> int:
    """A whole number, sent as a number or as digits in a string."""
    if isinstance(value, str) and _DIGITS.match(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        shown = one_line(value)[:40] if isinstance(value, str) else value
        raise InvalidInput(field, shown, f"not a whole number up to {maximum}")
    return value


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if value is None:
        return False
    raise InvalidInput(field, _kind(value), "not true or false")


def _url(value: Any, field: str, *, secret: bool = False) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        shown = one_line(value)[:_SHOWN_MAX_CHARS] if isinstance(value, str) else _kind(value)
        raise InvalidInput(field, shown, "not an http(s) URL", secret=secret)
    return value


def host_plugin_version_supported(version: Optional[str]) -> bool:
    """True unless the document names a HostGAPlugin older than MIN_HOST_PLUGIN_VERSION."""
    if version is None or not _DOTTED.match(version):
        return version is None
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts)) >= MIN_HOST_PLUGIN_VERSION


def parse_vm_settings(content: bytes, etag: str) -> SourcedGoal:
    """Parse a vmSettings document served under `etag`; an extension that cannot be used
    is kept with its reason, a document-level fault (above) raises a one-line error."""
    document = _object(parse_json(content, DOCUMENT, secret=True), DOCUMENT)
    version = document.get("hostgapluginversion")
    version = one_line(version)[:40] if isinstance(version, str) else None
    blob = document.get("statusuploadblob")
    blob_url, blob_type = None, "BlockBlob"
    if blob is not None:
        fields = _object(blob, f"{DOCUMENT} statusUploadBlob")
        blob_url = _url(fields.get("value"), f"{DOCUMENT} statusUploadBlob.value", secret=True)
        blob_type = fields.get("statusblobtype") or "BlockBlob"
        if blob_type not in BLOB_TYPES:
            field = f"{DOCUMENT} statusUploadBlob.statusBlobType"
            raise InvalidInput(field, _shown(blob_type), "not BlockBlob/PageBlob")
    features = []
    for entry in _list(document.get("requiredfeatures"), f"{DOCUMENT} requiredFeatures"):
        name = _object(entry, f"{DOCUMENT} requiredFeatures[]").get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"{DOCUMENT} requiredFeatures[].name", _shown(name), "no name")
        features.append(one_line(name)[:_SHOWN_MAX_CHARS])
    created = document.get("extensionslastmodifiedtickcount")
    created = (
        0
        if created is None
        else _whole(created, f"{DOCUMENT} extensionsLastModifiedTickCount", _TICKS_MAX)
    )
    source = document.get("extensiongoalstatessource")
    if source is not None and not isinstance(source, str):
        raise InvalidInput(f"{DOCUMENT} extensionGoalStatesSource", _kind(source), "not text")
    in_svd = document.get("insvdseqno")
    in_svd_seq_no = (
        None if in_svd is None else str(_whole(in_svd, f"{DOCUMENT} inSvdSeqNo", _SEQ_NO_MAX))
    )
    entries = _list(document.get("extensiongoalstates"), f"{DOCUMENT} extensionGoalStates")
    goal = ExtensionsGoal(_plugins(entries), blob_url, blob_type, tuple(features), in_svd_seq_no)
    return SourcedGoal(
        goal,
        f"etag_{etag}",
        created,
        one_line(source)[:40] if source else "unknown",
        _flag(document.get("onhold"), f"{DOCUMENT} onHold"),
        version,
    )


def _shown(value: Any) -> str:
    return one_line(value)[:_SHOWN_MAX_CHARS] if isinstance(value, str) else _kind(value)


def _plugins(entries: list[Any]) -> tuple[Plugin, ...]:
    """Each extension once per name (case-insensitively): an identical repeat is dropped,
    a different one makes that name invalid, since azprov cannot tell which is meant."""
    by_name: dict[str, list[Any]] = {}
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        name = _folded(entry).get("name") if isinstance(entry, dict) else None
        key = _shown(name).lower()
        text = json.dumps(entry, sort_keys=True)
        if (key, text) not in seen:
            seen.add((key, text))
            by_name.setdefault(key, []).append(entry)
    plugins = []
    for listed in by_name.values():
        try:
            if len(listed) > 1:
                name = _folded(listed[0]).get("name") if isinstance(listed[0], dict) else None
                raise InvalidInput(
                    f"{DOCUMENT} extension name",
                    _shown(name),
                    f"listed {len(listed)} times, differently",
                )
            plugins.append(_plugin(listed[0]))
        except AzprovError as exc:
            plugins.append(_invalid(listed[0], str(exc)))
    return tuple(plugins)


def _invalid(entry: Any, why: str) -> Plugin:
    """The extension as far as it can be told, marked invalid: reported, never run."""
    fields = _folded(entry) if isinstance(entry, dict) else {}
    name = fields.get("name")
    version = fields.get("version")
    state = fields.get("state")
    seq_no = fields.get("settingsseqno")
    return Plugin(
        one_line(name)[:_SHOWN_MAX_CHARS] if isinstance(name, str) else "",
        one_line(version)[:_SHOWN_MAX_CHARS] if isinstance(version, str) else "",
        state if state in STATES else "enabled",
        (),
        seq_no
        if isinstance(seq_no, int) and not isinstance(seq_no, bool) and 0 <= seq_no <= _SEQ_NO_MAX
        else None,
        invalid=why,
    )


def _plugin(entry: Any) -> Plugin:
    fields = _object(entry, f"{DOCUMENT} extensionGoalStates[]")
    name = _text(
        fields.get("name"), f"{DOCUMENT} extension name", _NAME, "not a Publisher.Type name"
    )
    what = f"{DOCUMENT} {name}"
    version = _text(fields.get("version"), f"{what} version", _VERSION, "not a dotted version")
    state = fields.get("state")
    if state not in STATES:
        raise InvalidInput(f"{what} state", _shown(state), f"expected one of {', '.join(STATES)}")
    urls: list[Any] = [fields.get("location"), fields.get("failoverlocation")]
    urls += _list(fields.get("additionallocations"), f"{what} additionalLocations")
    manifest_urls = tuple(
        dict.fromkeys(_url(u, f"{what} manifest location") for u in urls if u not in (None, ""))
    )
    if not manifest_urls and state == "enabled":
        raise InvalidInput(f"{what} location", None, "no manifest location")
    settings = _list(fields.get("settings"), f"{what} settings")
    if _flag(fields.get("ismulticonfig"), f"{what} isMultiConfig"):
        extensions = _named_extensions(what, settings)
        names = {e.name.lower() for e in extensions}
        level, depends_on = _dependencies(what, fields.get("dependson"), names)
        return Plugin(
            name,
            version,
            state,
            manifest_urls,
            protected=tuple(value for e in extensions for value in e.protected),
            dependency_level=level,
            depends_on=depends_on,
            multi_config=True,
            extensions=extensions,
        )
    level, depends_on = _dependencies(what, fields.get("dependson"))
    if len(settings) > 1:
        raise InvalidInput(
            f"{what} settings",
            f"{len(settings)} entries",
            "more than one for a single-config handler",
        )
    if not settings:
        return Plugin(name, version, state, manifest_urls, None, None, (), level, depends_on)
    seq_no = _whole(fields.get("settingsseqno"), f"{what} settingsSeqNo", _SEQ_NO_MAX)
    text, protected = _runtime_settings(what, _object(settings[0], f"{what} settings[0]"))
    return Plugin(name, version, state, manifest_urls, seq_no, text, protected, level, depends_on)


def _runtime_settings(what: str, settings: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The handler's settings file, in the shape ExtensionsConfig carries it (and the
    platform agent writes it), with public settings as sent; and the protected values."""
    public = settings.get("publicsettings")
    if public is not None:
        if not isinstance(public, str):
            raise InvalidInput(f"{what} publicSettings", _kind(public), "not a JSON string")
        # Only the shape is azprov's business; the handler reads the numbers itself.
        decoded = parse_json(public, f"{what} publicSettings", keep_numbers=False, secret=True)
        if not isinstance(decoded, dict):
            raise InvalidInput(f"{what} publicSettings", _kind(decoded), "not a JSON object")
    protected = settings.get("protectedsettings")
    thumbprint = settings.get("protectedsettingscertthumbprint")
    if protected is not None and not isinstance(protected, str):
        raise InvalidInput(f"{what} protectedSettings", _kind(protected), "not text", secret=True)
    if protected and not (isinstance(thumbprint, str) and _THUMBPRINT.match(thumbprint)):
        raise InvalidInput(
            f"{what} protectedSettingsCertThumbprint", _shown(thumbprint), "not a SHA-1 thumbprint"
        )
    if thumbprint is not None and not isinstance(thumbprint, str):
        thumbprint = None
    handler = (
        f'{{"protectedSettingsCertThumbprint":{json.dumps(thumbprint)},'
        f'"protectedSettings":{json.dumps(protected)},'
        f'"publicSettings":{public if public is not None else "null"}}}'
    )
    text = f'{{"runtimeSettings":[{{"handlerSettings":{handler}}}]}}'
    return text, (protected,) if protected else ()


def _named_extensions(what: str, settings: list[Any]) -> tuple[NamedExtension, ...]:
    """A multi-config handler's settings, one named extension each; any fault makes the
    whole plugin invalid (its extensions share one handler folder), as in ExtensionsConfig."""
    found: list[NamedExtension] = []
    seen: set[str] = set()
    for index, entry in enumerate(settings):
        fields = _object(entry, f"{what} settings[{index}]")
        name = _text(
            fields.get("extensionname"), f"{what} extensionName", _EXTENSION_NAME, "not a name"
        )
        if name.lower() in seen:
            raise InvalidInput(f"{what} extensionName", name, "listed twice")
        seen.add(name.lower())
        seq_no = _whole(fields.get("seqno"), f"{what} {name} seqNo", _SEQ_NO_MAX)
        state = fields.get("extensionstate", "enabled")
        if state not in EXTENSION_STATES:
            raise InvalidInput(
                f"{what} {name} extensionState", _shown(state), "expected enabled or disabled"
            )
        text, protected = _runtime_settings(f"{what} {name}", fields)
        found.append(NamedExtension(name, seq_no, state, text, protected))
    return tuple(found)


def _dependencies(
    what: str, value: Any, names: Optional[set[str]] = None
) -> tuple[int, tuple[str, ...]]:
    """dependsOn: a single-config handler's one entry, or one per named extension of a
    multi-config handler (`names`); the handler runs at the highest level named, after
    every handler any of its extensions depends on."""
    entries = _list(value, f"{what} dependsOn")
    if names is None and len(entries) > 1:
        raise InvalidInput(
            f"{what} dependsOn",
            f"{len(entries)} entries",
            "more than one for a single-config handler",
        )
    level, handlers = 0, []
    for index, entry in enumerate(entries):
        depends = _object(entry, f"{what} dependsOn[{index}]")
        named = depends.get("name")
        if names is not None and not (isinstance(named, str) and named.lower() in names):
            raise InvalidInput(
                f"{what} dependsOn[{index}].name", _shown(named), "names no extension of it"
            )
        entry_level = _whole(
            depends.get("dependencylevel", 0), f"{what} dependencyLevel", _LEVEL_MAX
        )
        level = max(level, entry_level)
        handlers += _depends_on_handlers(what, depends)
    return level, tuple(dict.fromkeys(handlers))


def _depends_on_handlers(what: str, depends: dict[str, Any]) -> list[str]:
    handlers = []
    for item in _list(depends.get("dependsonextension"), f"{what} dependsOnExtension"):
        handler = _object(item, f"{what} dependsOnExtension[]").get("handler")
        if isinstance(handler, str) and handler:
            handlers.append(
                _text(
                    handler,
                    f"{what} dependsOnExtension.handler",
                    _NAME,
                    "not a Publisher.Type name",
                )
            )
    return handlers


def extensions_config_created(content: bytes) -> int:
    """The ExtensionsConfig's creation time (InVMGoalStateMetaData@createdOnTicks), or 0
    when it does not say (so any Fast Track goal state counts as newer)."""
    metadata = child(parse_xml(content, "ExtensionsConfig"), "InVMGoalStateMetaData")
    if metadata is None:
        return 0
    for key, value in metadata.attrib.items():
        if local_name(key).lower() == "createdonticks":
            text = value.strip()
            if text.isdigit() and len(text) <= 19 and int(text) <= _TICKS_MAX:
                return int(text)
            raise InvalidInput(
                "ExtensionsConfig InVMGoalStateMetaData@createdOnTicks",
                text[:40],
                "not a whole number",
            )
    return 0
