"""What the runner last handled, kept across processes: an idle round costs nothing.

`<root>/var/lib/azprov/extensions.json` (0600, written atomically) holds the
ExtensionsConfig URL last applied, the id, creation time and `inSvdSeqNo` of the goal
in effect (a later process never runs an older one: reference §7), the Certificates
URL last handled, the order in which the download channels are tried, and for each
handler what was asked (version, state, seqNo, a digest of its settings) and what
came of it. A new process (`extensions --once` from a timer) that finds the same goal
state reuses those outcomes: no manifest, package or certificate is downloaded and no
handler command runs; it only uploads the status again. Secrets are not kept here:
settings only as a digest, the status blob's SAS URL not at all.

What is reused follows the one rule for work done again (reference §6): an
outcome that failed for a reason that may pass (`retry`: a download, a stale
container, certificates still missing) is never reused, so the next round
tries again; a handler's own failure (a non-zero exit, a timeout) is reused
until the goal state asks something new of it, or until the next boot: each
entry keeps the boot id it was recorded in (`/proc/sys/kernel/random/boot_id`,
new at every boot), and a failure from another boot is tried once more, as the
platform agent does when it starts again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any, Callable, Optional

from azprov.confined import Links
from azprov.errors import AzprovError
from azprov.extensions.goal import Plugin
from azprov.extensions.outcome import Outcome
from azprov.host.root import TargetRoot
from azprov.host.state import STATE_DIR
from azprov.jsondoc import UnusableJson, parse_json

log = logging.getLogger(__name__)

MEMORY_FILE = f"{STATE_DIR}/extensions.json"
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_BOOT_ID_MAX_BYTES = 64  # a UUID and a newline
# A few hundred bytes per handler: a megabyte is thousands of handlers.
MEMORY_MAX_BYTES = 1024 * 1024
_VERSION = 1


def read_boot_id(root: TargetRoot) -> Optional[str]:
    """This boot's id, through the root's door; None when there is none to read (an
    offline root has no /proc: its failures then stand until the goal state changes)."""
    try:
        raw = root.read(BOOT_ID_FILE, _BOOT_ID_MAX_BYTES, links=Links.REFUSE)
    except AzprovError as exc:
        log.warning("no boot id: %s", exc)
        return None
    text = (raw or b"").decode("ascii", "replace").strip()
    return text or None


def _digest(settings: Optional[str]) -> str:
    return hashlib.sha256((settings or "").encode()).hexdigest()[:32]


def request_key(plugin: Plugin) -> list[Any]:
    """What the goal asks of one handler; the same key means nothing new to do (for a
    multi-config handler, of it and of every named extension)."""
    key: list[Any] = [plugin.name.lower(), plugin.version, plugin.state, plugin.seq_no]
    key.append(_digest(plugin.settings))
    if plugin.multi_config:
        key.append([extension_key(plugin, e.name) for e in plugin.extensions])
    return key


def extension_key(plugin: Plugin, name: str) -> list[Any]:
    """What the goal asks of one named extension of a multi-config handler."""
    for e in plugin.extensions:
        if e.name.lower() == name.lower():
            return [
                plugin.name.lower(),
                plugin.version,
                e.name.lower(),
                e.state,
                e.seq_no,
                _digest(e.settings),
            ]
    return []


_OUTCOME_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "version": (str, type(None)),
    "seq_no": (int,),
    "operation": (str,),
    "failure": (str, type(None)),
    "present": (bool,),
    "heartbeat": (bool,),
    "retry": (bool,),
}
# Fields added since: absent from a file an older azprov wrote, which stays usable.
_LATER_OUTCOME_TYPES: dict[str, tuple[type, ...]] = {
    "extension": (str, type(None)),
    "multi_config": (bool,),
    "named": (list, tuple),
}


def _outcome(value: Any, depth: int = 0) -> Optional[Outcome]:
    """A saved outcome, only when every field has its type (the file may be damaged); a
    multi-config handler's holds its named extensions' (one level only)."""
    if not isinstance(value, dict) or not set(_OUTCOME_TYPES) <= set(value):
        return None
    if not set(value) <= set(_OUTCOME_TYPES) | set(_LATER_OUTCOME_TYPES):
        return None
    for key, types in {**_OUTCOME_TYPES, **_LATER_OUTCOME_TYPES}.items():
        if key not in value and key in _LATER_OUTCOME_TYPES:
            continue
        if not isinstance(value[key], types) or (key == "seq_no" and isinstance(value[key], bool)):
            return None
    named = []
    for saved in value.get("named", []):
        outcome = _outcome(saved, depth + 1) if depth == 0 else None
        if outcome is None:
            return None
        named.append(outcome)
    return Outcome(**{**value, "named": tuple(named)})


def _usable_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("request"), list)
        and _outcome(entry.get("outcome")) is not None
    )


class UnusableMemory(ValueError):
    """Why a saved memory that decoded cannot be used."""


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _json_kind(value: Any) -> str:
    """`an object`, `a string`…: what a decoded JSON value is, for messages."""
    kinds: tuple[tuple[Any, str], ...] = (
        (bool, "a boolean"),
        ((int, float), "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "an object"),
    )
    return next((name for types, name in kinds if isinstance(value, types)), "null")


# Each saved field: (name, its test, what it must be).
_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("incarnation", _text_or_none, "a string"),
    ("config_url", _text_or_none, "a string"),
    ("in_svd_seq_no", _text_or_none, "a string"),
    ("certificates_url", _text_or_none, "a string"),
    ("goal_id", _text_or_none, "a string"),
    ("goal_created", lambda v: type(v) is int and 0 <= v < 2**63, "a number of .NET ticks"),
    ("channels", _names, "an array of names"),
    ("plugins", lambda value: isinstance(value, dict), "an object"),
)


@dataclasses.dataclass
class Memory:
    incarnation: Optional[str] = None
    config_url: Optional[str] = None
    in_svd_seq_no: Optional[str] = None
    certificates_url: Optional[str] = None
    goal_id: Optional[str] = None  # the goal in effect: SourcedGoal.id and .created
    goal_created: int = 0
    channels: list[str] = dataclasses.field(default_factory=list)
    # name (lower case) -> {"request": request_key(...), "outcome": Outcome as a dict}
    plugins: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self._written: Optional[str] = None  # the text on disk, so an idle round writes nothing

    def _text(self) -> str:
        return json.dumps({"version": _VERSION, **dataclasses.asdict(self)}, sort_keys=True)

    @classmethod
    def load(cls, root: TargetRoot) -> Memory:
        """What was saved, or an empty memory (nothing saved, or not usable: said why)."""
        try:
            raw = root.read(MEMORY_FILE, MEMORY_MAX_BYTES, links=Links.REFUSE)
        except AzprovError as exc:
            log.warning("%s is unusable (%s): starting afresh", MEMORY_FILE, exc)
            return cls()
        return cls() if raw is None else cls.from_bytes(raw)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Memory:
        """The memory saved as `raw`; an empty one (and a warning) when it is unusable."""
        try:
            memory = cls._from_document(parse_json(raw, MEMORY_FILE))
        except UnusableJson as exc:
            why = exc.why
        except UnusableMemory as exc:
            why = str(exc)
        else:
            memory._written = memory._text()
            return memory
        log.warning("%s is unusable (%s): starting afresh", MEMORY_FILE, why)
        return cls()

    @classmethod
    def _from_document(cls, saved: Any) -> Memory:
        if not isinstance(saved, dict):
            raise UnusableMemory(f"it holds {_json_kind(saved)}, not an object")
        if saved.get("version") != _VERSION:
            raise UnusableMemory(f"version {str(saved.get('version'))[:40]!r}")
        fields = {}
        for name, check, wanted in _FIELDS:
            if name in saved:
                if not check(saved[name]):
                    raise UnusableMemory(f"{name} is {_json_kind(saved[name])}, not {wanted}")
                fields[name] = saved[name]
        memory = cls(**fields)
        damaged = [name for name, entry in memory.plugins.items() if not _usable_entry(entry)]
        if damaged:
            shown = ", ".join(name[:100] for name in damaged[:10])
            log.warning("%s: forgetting damaged entries %s", MEMORY_FILE, shown)
            for name in damaged:
                del memory.plugins[name]
        return memory

    def save(self, root: TargetRoot) -> None:
        """Write it atomically, only when it changed since it was read or last written."""
        data = self._text()
        if data == self._written:
            return
        root.write(MEMORY_FILE, data.encode(), mode=0o600, dir_mode=0o700, links=Links.REFUSE)
        self._written = data

    def outcome_for(
        self, incarnation: str, plugin: Plugin, boot_id: Optional[str]
    ) -> Optional[Outcome]:
        """The saved outcome of the same request in the same incarnation, if it stands: not
        a failure that may pass, nor a failure recorded in another boot."""
        if incarnation != self.incarnation:
            return None
        saved = self.plugins.get(plugin.name.lower())
        if not saved or saved.get("request") != request_key(plugin):
            return None
        outcome = _outcome(saved.get("outcome"))
        if outcome is None or outcome.retry:
            return None
        if outcome.failed and saved.get("boot_id") != boot_id:
            return None
        return outcome

    def standing_extensions(
        self, incarnation: str, plugin: Plugin, boot_id: Optional[str]
    ) -> dict[str, Outcome]:
        """A multi-config handler's named extensions whose saved outcome stands (by
        lower-cased name), under the rule `outcome_for` applies to a handler: the same
        request in the same incarnation, not a failure that may pass, nor a failure
        recorded in another boot. Only these are not run again."""
        saved = self.plugins.get(plugin.name.lower())
        if incarnation != self.incarnation or not plugin.multi_config or not saved:
            return {}
        outcome = _outcome(saved.get("outcome"))
        requests = saved.get("extensions")
        if outcome is None or not isinstance(requests, dict):
            return {}
        standing = {}
        for named in outcome.named:
            key = (named.extension or "").lower()
            if not key or requests.get(key) != extension_key(plugin, key) or named.retry:
                continue
            if named.failed and saved.get("boot_id") != boot_id:
                continue
            standing[key] = named
        return standing

    def remember(
        self, incarnation: str, plugin: Plugin, outcome: Outcome, boot_id: Optional[str]
    ) -> None:
        if incarnation != self.incarnation:
            self.incarnation, self.plugins = incarnation, {}
        self.plugins[plugin.name.lower()] = {
            "request": request_key(plugin),
            "outcome": dataclasses.asdict(outcome),
            "boot_id": boot_id,
        }
        if plugin.multi_config:
            self.plugins[plugin.name.lower()]["extensions"] = {
                e.name.lower(): extension_key(plugin, e.name) for e in plugin.extensions
            }
