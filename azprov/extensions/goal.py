"""The ExtensionsConfig document: which handlers the platform wants, with what settings.

One bad plugin fails alone: whatever is wrong in its `Plugins/Plugin` entry or
its `PluginSettings/Plugin` entry (its name, version, state, manifest
locations, seqNo, settings, dependencies, the same name listed twice) makes
that plugin `invalid`, with the reason; the runner runs nothing for it and
reports the reason as its status, and every other plugin runs as asked.

What refuses the whole document (`parse_extensions_config` raises) is only
what no plugin could be understood or reported without: XML that is not well
formed or carries a DTD, a root other than <Extensions>, and a StatusUploadBlob
that is not BlockBlob/PageBlob or not an http(s) URL (with nowhere to report
to, running handlers would change the machine with the platform hearing
nothing). Settings stay as the JSON text the platform sent; protected
settings inside stay encrypted. The rules each field is held to are in
`plugin_fields`; a multi-config handler's named extensions are read by
`named_extensions`. `Plugin` and `ExtensionsGoal` are vmSettings' model too.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Optional
from xml.etree import ElementTree
from xml.etree.ElementTree import Element

from azprov.errors import AzprovError, InvalidInput, one_line
from azprov.extensions.named_extensions import (
    NamedExtension,
    multi_config_dependencies,
    named_extensions,
)
from azprov.extensions.plugin_fields import (
    LEVEL,
    NAME,
    STATES,
    VERSION,
    attr,
    protected_values,
    seq_no_of,
    valid,
)
from azprov.fabric.xmldoc import child, children, local_name, parse_xml

# How much of a refused name or version a status entry and a log line show.
_SHOWN_MAX_CHARS = 200
BLOB_TYPES = ("BlockBlob", "PageBlob")
# RequiredFeatures azprov implements; any other one fails the goal state.
SUPPORTED_FEATURES: frozenset[str] = frozenset({"MultipleExtensionsPerHandler"})


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
    invalid: Optional[str] = None  # why the goal's entry for it is unusable (one line)
    # Multi-config handlers: the named extensions the goal asks for (seq_no and settings
    # stay None); one that is no longer listed is to be removed.
    multi_config: bool = False
    extensions: tuple[NamedExtension, ...] = ()
    # Asked for by vmSettings: the HostGAPlugin is told to check its manifest and package
    # against the artifacts blob (reference §7), as the platform agent has it do.
    fast_track: bool = False

    @property
    def refusal(self) -> Optional[str]:
        """Why this plugin must not run at all, or None."""
        return self.invalid or self.unsupported

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


def parse_extensions_config(content: bytes) -> ExtensionsGoal:
    """Parse the ExtensionsConfig: a plugin that cannot be used is kept with its reason
    (`Plugin.invalid`); only a document-level fault (see above) raises a one-line error."""
    root = parse_xml(content, "ExtensionsConfig")
    if local_name(root.tag) != "Extensions":
        raise InvalidInput("ExtensionsConfig root", root.tag, "expected <Extensions>")
    blob = child(root, "StatusUploadBlob")
    blob_url = (blob.text or "").strip() or None if blob is not None else None
    blob_type = (attr(blob, "statusBlobType") if blob is not None else None) or "BlockBlob"
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
    in_svd = attr(metadata, "inSvdSeqNo") if metadata is not None else None
    return ExtensionsGoal(_plugins(root), blob_url, blob_type, features, in_svd)


def _plugins(root: Element) -> tuple[Plugin, ...]:
    """Each Plugins/Plugin with its settings, once per name (names match case-insensitively).

    A name listed again with the very same entry is one plugin (the repeat says
    nothing new); listed with different entries, azprov cannot tell which is
    meant, and that plugin is invalid.
    """
    settings = _by_name(children(child(root, "PluginSettings"), "Plugin"))
    plugins: list[Plugin] = []
    for key, elements in _by_name(children(child(root, "Plugins"), "Plugin")).items():
        element = elements[0]
        try:
            for where, entries in (
                ("Plugins", elements),
                ("PluginSettings", settings.get(key, [])),
            ):
                if len(entries) > 1:
                    raise InvalidInput(
                        "Plugin@name",
                        attr(element, "name"),
                        f"listed {len(entries)} times in {where}, differently",
                    )
            entry = settings.get(key)
            plugins.append(_plugin(element, entry[0] if entry else None))
        except AzprovError as exc:
            plugins.append(_invalid(element, settings.get(key, []), str(exc)))
    return tuple(plugins)


def _shown_name(element: Element) -> str:
    """The plugin's name as reported: one line, bounded (a valid name is unchanged)."""
    return one_line(attr(element, "name") or "")[:_SHOWN_MAX_CHARS]


def _by_name(elements: list[Element]) -> dict[str, list[Element]]:
    """Elements by lower-cased name, in document order, identical repeats dropped."""
    found: dict[str, list[Element]] = {}
    seen: dict[str, set[bytes]] = {}
    for element in elements:
        key = _shown_name(element).lower()
        bare = copy.copy(element)
        bare.tail = None  # the text after it is not part of the entry
        text = ElementTree.tostring(bare)
        if text not in seen.setdefault(key, set()):
            seen[key].add(text)
            found.setdefault(key, []).append(element)
    return found


def _invalid(element: Element, settings: list[Element], why: str) -> Plugin:
    """The plugin as far as it can be told, marked invalid: reported, never run."""
    name = _shown_name(element)
    version = one_line(attr(element, "version") or "")[:_SHOWN_MAX_CHARS]
    state = (attr(element, "state") or "enabled").lower()
    runtime = child(settings[0], "RuntimeSettings") if len(settings) == 1 else None
    seq_text = attr(runtime, "seqNo") if runtime is not None else None
    seq_no = seq_no_of(seq_text)
    return Plugin(name, version, state if state in STATES else "enabled", (), seq_no, invalid=why)


def _plugin(element: Element, settings: Optional[Element]) -> Plugin:
    name = valid("Plugin@name", attr(element, "name"), NAME, "not a Publisher.Type name")
    version = valid(
        f"Plugin {name} @version", attr(element, "version"), VERSION, "not a dotted version"
    )
    state = (attr(element, "state") or "enabled").lower()
    if state not in STATES:
        raise InvalidInput(f"Plugin {name} @state", state, f"expected one of {', '.join(STATES)}")
    manifest_urls = _manifest_urls(element, name, state)
    if settings is None:
        return Plugin(name, version, state, manifest_urls)
    if children(settings, "ExtensionRuntimeSettings"):
        level, depends_on = multi_config_dependencies(name, settings)
        extensions = named_extensions(name, settings)
        protected = tuple(value for e in extensions for value in e.protected)
        return Plugin(
            name,
            version,
            state,
            manifest_urls,
            protected=protected,
            dependency_level=level,
            depends_on=depends_on,
            multi_config=True,
            extensions=extensions,
        )
    level, depends_on = _dependencies(name, settings)
    runtime = child(settings, "RuntimeSettings")
    if runtime is None:
        return Plugin(name, version, state, manifest_urls, None, None, (), level, depends_on)
    seq_text = attr(runtime, "seqNo")
    seq_no = seq_no_of(seq_text)
    if seq_no is None:
        raise InvalidInput(f"Plugin {name} RuntimeSettings@seqNo", seq_text, "not a whole number")
    text = (runtime.text or "").strip()
    protected = protected_values(name, text) if text else ()
    return Plugin(
        name,
        version,
        state,
        manifest_urls,
        seq_no,
        text or None,
        protected,
        level,
        depends_on,
    )


def _manifest_urls(element: Element, name: str, state: str) -> tuple[str, ...]:
    """Where the handler's manifest is: location, failover, additional locations."""
    urls = [attr(element, "location"), attr(element, "failoverlocation")]
    additional = child(element, "additionalLocations")
    urls += [(a.text or "").strip() for a in children(additional, "additionalLocation")]
    manifest_urls = tuple(u for u in urls if u)
    for url in manifest_urls:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"Plugin {name} manifest location", url, "not an http(s) URL")
    if not manifest_urls and state == "enabled":
        raise InvalidInput(f"Plugin {name} @location", None, "no manifest location")
    return manifest_urls


def _dependencies(name: str, settings: Element) -> tuple[int, tuple[str, ...]]:
    depends = child(settings, "DependsOn")
    if depends is None:
        return 0, ()
    level_text = attr(depends, "dependencyLevel") or "0"
    if not LEVEL.match(level_text):
        raise InvalidInput(f"Plugin {name} DependsOn@dependencyLevel", level_text, "not a number")
    handlers = tuple(
        h for h in (attr(e, "handler") for e in children(depends, "DependsOnExtension")) if h
    )
    return int(level_text), handlers
