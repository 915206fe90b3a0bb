"""vmSettings (Fast Track, reference §7): the HostGAPlugin's JSON extensions goal state.

The same request as the WireServer's ExtensionsConfig, in another shape, parsed
into the same `ExtensionsGoal` (plugins, status blob, required features,
inSvdSeqNo) and kept as a `SourcedGoal` (`sources`) with what choosing between
the two needs: its id, creation time (.NET ticks), source (FastTrack | Fabric)
and onHold. Keys match case-insensitively: the HostGAPlugin is not consistent
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
from typing import Any, Optional

from azprov.errors import AzprovError, InvalidInput, one_line
from azprov.extensions.goal import ExtensionsGoal, Plugin
from azprov.extensions.json_fields import (
    SHOWN_MAX_CHARS,
    flag_field,
    folded,
    kind,
    list_field,
    object_field,
    shown,
    text_field,
    url_field,
    whole_field,
)
from azprov.extensions.named_extensions import NamedExtension
from azprov.extensions.plugin_fields import (
    EXTENSION_NAME,
    EXTENSION_STATES,
    NAME,
    STATES,
    THUMBPRINT,
    VERSION,
)
from azprov.extensions.sources import TICKS_MAX, SourcedGoal
from azprov.jsondoc import parse_json

DOCUMENT = "vmSettings"
BLOB_TYPES = ("BlockBlob", "PageBlob")
_SEQ_NO_MAX = 2**31 - 1
_LEVEL_MAX = 10**9 - 1


def parse_vm_settings(content: bytes, etag: str) -> SourcedGoal:
    """Parse a vmSettings document served under `etag`; an extension that cannot be used
    is kept with its reason, a document-level fault (above) raises a one-line error."""
    document = object_field(parse_json(content, DOCUMENT, secret=True), DOCUMENT)
    version = document.get("hostgapluginversion")
    version = one_line(version)[:40] if isinstance(version, str) else None
    blob = document.get("statusuploadblob")
    blob_url, blob_type = None, "BlockBlob"
    if blob is not None:
        fields = object_field(blob, f"{DOCUMENT} statusUploadBlob")
        blob_url = url_field(
            fields.get("value"), f"{DOCUMENT} statusUploadBlob.value", secret=True
        )
        blob_type = fields.get("statusblobtype") or "BlockBlob"
        if blob_type not in BLOB_TYPES:
            field = f"{DOCUMENT} statusUploadBlob.statusBlobType"
            raise InvalidInput(field, shown(blob_type), "not BlockBlob/PageBlob")
    features = []
    for entry in list_field(document.get("requiredfeatures"), f"{DOCUMENT} requiredFeatures"):
        name = object_field(entry, f"{DOCUMENT} requiredFeatures[]").get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"{DOCUMENT} requiredFeatures[].name", shown(name), "no name")
        features.append(one_line(name)[:SHOWN_MAX_CHARS])
    ticks = document.get("extensionslastmodifiedtickcount") or 0  # none: the oldest
    created = whole_field(ticks, f"{DOCUMENT} extensionsLastModifiedTickCount", TICKS_MAX)
    source = document.get("extensiongoalstatessource")
    if source is not None and not isinstance(source, str):
        raise InvalidInput(f"{DOCUMENT} extensionGoalStatesSource", kind(source), "not text")
    in_svd = document.get("insvdseqno")
    in_svd_seq_no = (
        None if in_svd is None else str(whole_field(in_svd, f"{DOCUMENT} inSvdSeqNo", _SEQ_NO_MAX))
    )
    entries = list_field(document.get("extensiongoalstates"), f"{DOCUMENT} extensionGoalStates")
    goal = ExtensionsGoal(_plugins(entries), blob_url, blob_type, tuple(features), in_svd_seq_no)
    return SourcedGoal(
        goal,
        f"etag_{etag}",
        created,
        one_line(source)[:40] if source else "unknown",
        flag_field(document.get("onhold"), f"{DOCUMENT} onHold"),
        version,
    )


def _plugins(entries: list[Any]) -> tuple[Plugin, ...]:
    """Each extension once per name (case-insensitively): an identical repeat is dropped,
    a different one makes that name invalid, since azprov cannot tell which is meant."""
    by_name: dict[str, list[Any]] = {}
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        name = folded(entry).get("name") if isinstance(entry, dict) else None
        key = shown(name).lower()
        text = json.dumps(entry, sort_keys=True)
        if (key, text) not in seen:
            seen.add((key, text))
            by_name.setdefault(key, []).append(entry)
    plugins = []
    for listed in by_name.values():
        try:
            if len(listed) > 1:
                name = folded(listed[0]).get("name") if isinstance(listed[0], dict) else None
                raise InvalidInput(
                    f"{DOCUMENT} extension name",
                    shown(name),
                    f"listed {len(listed)} times, differently",
                )
            plugins.append(_plugin(listed[0]))
        except AzprovError as exc:
            plugins.append(_invalid(listed[0], str(exc)))
    # Their manifests and packages are fetched for a Fast Track goal: `Plugin.fast_track`.
    return tuple(dataclasses.replace(p, fast_track=True) for p in plugins)


def _invalid(entry: Any, why: str) -> Plugin:
    """The extension as far as it can be told, marked invalid: reported, never run."""
    fields = folded(entry) if isinstance(entry, dict) else {}
    name = fields.get("name")
    version = fields.get("version")
    state = fields.get("state")
    seq_no = fields.get("settingsseqno")
    return Plugin(
        one_line(name)[:SHOWN_MAX_CHARS] if isinstance(name, str) else "",
        one_line(version)[:SHOWN_MAX_CHARS] if isinstance(version, str) else "",
        state if state in STATES else "enabled",
        (),
        seq_no
        if isinstance(seq_no, int) and not isinstance(seq_no, bool) and 0 <= seq_no <= _SEQ_NO_MAX
        else None,
        invalid=why,
    )


def _plugin(entry: Any) -> Plugin:
    fields = object_field(entry, f"{DOCUMENT} extensionGoalStates[]")
    name = text_field(
        fields.get("name"), f"{DOCUMENT} extension name", NAME, "not a Publisher.Type name"
    )
    what = f"{DOCUMENT} {name}"
    version = text_field(fields.get("version"), f"{what} version", VERSION, "not a dotted version")
    state = fields.get("state")
    if state not in STATES:
        raise InvalidInput(f"{what} state", shown(state), f"expected one of {', '.join(STATES)}")
    urls: list[Any] = [fields.get("location"), fields.get("failoverlocation")]
    urls += list_field(fields.get("additionallocations"), f"{what} additionalLocations")
    manifest_urls = tuple(
        dict.fromkeys(
            url_field(u, f"{what} manifest location") for u in urls if u not in (None, "")
        )
    )
    if not manifest_urls and state == "enabled":
        raise InvalidInput(f"{what} location", None, "no manifest location")
    settings = list_field(fields.get("settings"), f"{what} settings")
    if flag_field(fields.get("ismulticonfig"), f"{what} isMultiConfig"):
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
    seq_no = whole_field(fields.get("settingsseqno"), f"{what} settingsSeqNo", _SEQ_NO_MAX)
    text, protected = _runtime_settings(what, object_field(settings[0], f"{what} settings[0]"))
    return Plugin(name, version, state, manifest_urls, seq_no, text, protected, level, depends_on)


def _runtime_settings(what: str, settings: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The handler's settings file, in the shape ExtensionsConfig carries it (and the
    platform agent writes it), with public settings as sent; and the protected values."""
    public = settings.get("publicsettings")
    if public is not None:
        if not isinstance(public, str):
            raise InvalidInput(f"{what} publicSettings", kind(public), "not a JSON string")
        # Only the shape is azprov's business; the handler reads the numbers itself.
        decoded = parse_json(public, f"{what} publicSettings", keep_numbers=False, secret=True)
        if not isinstance(decoded, dict):
            raise InvalidInput(f"{what} publicSettings", kind(decoded), "not a JSON object")
    protected = settings.get("protectedsettings")
    thumbprint = settings.get("protectedsettingscertthumbprint")
    if protected is not None and not isinstance(protected, str):
        raise InvalidInput(f"{what} protectedSettings", kind(protected), "not text", secret=True)
    if protected and not (isinstance(thumbprint, str) and THUMBPRINT.match(thumbprint)):
        raise InvalidInput(
            f"{what} protectedSettingsCertThumbprint", shown(thumbprint), "not a SHA-1 thumbprint"
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
        fields = object_field(entry, f"{what} settings[{index}]")
        name = text_field(
            fields.get("extensionname"), f"{what} extensionName", EXTENSION_NAME, "not a name"
        )
        if name.lower() in seen:
            raise InvalidInput(f"{what} extensionName", name, "listed twice")
        seen.add(name.lower())
        seq_no = whole_field(fields.get("seqno"), f"{what} {name} seqNo", _SEQ_NO_MAX)
        state = fields.get("extensionstate", "enabled")
        if state not in EXTENSION_STATES:
            raise InvalidInput(
                f"{what} {name} extensionState", shown(state), "expected enabled or disabled"
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
    entries = list_field(value, f"{what} dependsOn")
    if names is None and len(entries) > 1:
        raise InvalidInput(
            f"{what} dependsOn",
            f"{len(entries)} entries",
            "more than one for a single-config handler",
        )
    level, handlers = 0, []
    for index, entry in enumerate(entries):
        depends = object_field(entry, f"{what} dependsOn[{index}]")
        named = depends.get("name")
        if names is not None and not (isinstance(named, str) and named.lower() in names):
            raise InvalidInput(
                f"{what} dependsOn[{index}].name", shown(named), "names no extension of it"
            )
        entry_level = whole_field(
            depends.get("dependencylevel", 0), f"{what} dependencyLevel", _LEVEL_MAX
        )
        level = max(level, entry_level)
        handlers += _depends_on_handlers(what, depends)
    return level, tuple(dict.fromkeys(handlers))


def _depends_on_handlers(what: str, depends: dict[str, Any]) -> list[str]:
    handlers = []
    for item in list_field(depends.get("dependsonextension"), f"{what} dependsOnExtension"):
        handler = object_field(item, f"{what} dependsOnExtension[]").get("handler")
        if isinstance(handler, str) and handler:
            handlers.append(
                text_field(
                    handler,
                    f"{what} dependsOnExtension.handler",
                    NAME,
                    "not a Publisher.Type name",
                )
            )
    return handlers
