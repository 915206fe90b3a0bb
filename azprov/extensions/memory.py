"""What the runner last handled, kept across processes: an idle round costs nothing.

`<root>/var/lib/azprov/extensions.json` (0600, written atomically) holds the
incarnation and ExtensionsConfig URL last applied, the document's
`inSvdSeqNo`, the Certificates URL last handled, the order in which the
download channels are tried, and for each handler what was asked (version,
state, seqNo, a digest of its settings) and what came of it. A new process
(`extensions --once` from a timer) that finds the same goal state reuses
those outcomes: no manifest, package or certificate is downloaded and no
handler command runs; it only uploads the status again. Secrets are not
kept here: settings only as a digest, the status blob's SAS URL not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any, Optional

from azprov.extensions.goal import Plugin
from azprov.extensions.handler import read_capped
from azprov.extensions.lifecycle import Outcome
from azprov.host.files import write_atomic
from azprov.host.root import TargetRoot
from azprov.host.state import STATE_DIR

log = logging.getLogger(__name__)

MEMORY_FILE = f"{STATE_DIR}/extensions.json"
MEMORY_MAX_BYTES = 1024 * 1024
_VERSION = 1


def request_key(plugin: Plugin) -> list[Any]:
    """What the goal asks of one handler; the same key means nothing new to do."""
    digest = hashlib.sha256((plugin.settings or "").encode()).hexdigest()[:32]
    return [plugin.name.lower(), plugin.version, plugin.state, plugin.seq_no, digest]


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


def _outcome(value: Any) -> Optional[Outcome]:
    """A saved outcome, only when every field has its type (the file may be damaged)."""
    if not isinstance(value, dict) or set(value) != set(_OUTCOME_TYPES):
        return None
    for key, types in _OUTCOME_TYPES.items():
        if not isinstance(value[key], types) or (key == "seq_no" and isinstance(value[key], bool)):
            return None
    return Outcome(**value)


def _usable_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("request"), list)
        and _outcome(entry.get("outcome")) is not None
    )


@dataclasses.dataclass
class Memory:
    incarnation: Optional[str] = None
    config_url: Optional[str] = None
    in_svd_seq_no: Optional[str] = None
    certificates_url: Optional[str] = None
    channels: list[str] = dataclasses.field(default_factory=list)
    # name (lower case) -> {"request": request_key(...), "outcome": Outcome as a dict}
    plugins: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self._written: Optional[str] = None  # the text on disk, so an idle round writes nothing

    def _text(self) -> str:
        return json.dumps({"version": _VERSION, **dataclasses.asdict(self)}, sort_keys=True)

    @classmethod
    def load(cls, root: TargetRoot) -> Memory:
        """What was saved, or an empty memory (nothing saved, or not readable)."""
        raw = read_capped(root / MEMORY_FILE, MEMORY_MAX_BYTES)
        if raw is None:
            return cls()
        try:
            saved = json.loads(raw)
            if saved.get("version") != _VERSION:
                raise ValueError(f"version {saved.get('version')!r}")
            fields = {f.name for f in dataclasses.fields(cls)}
            memory = cls(**{k: v for k, v in saved.items() if k in fields})
            if not isinstance(memory.channels, list) or not isinstance(memory.plugins, dict):
                raise TypeError("channels or plugins")
            damaged = [name for name, entry in memory.plugins.items() if not _usable_entry(entry)]
            if damaged:
                log.warning("%s: forgetting damaged entries %s", MEMORY_FILE, ", ".join(damaged))
                for name in damaged:
                    del memory.plugins[name]
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("%s is unusable (%s): starting afresh", MEMORY_FILE, exc)
            return cls()
        memory._written = memory._text()
        return memory

    def save(self, root: TargetRoot) -> None:
        """Write it atomically, only when it changed since it was read or last written."""
        data = self._text()
        if data == self._written:
            return
        write_atomic(root / MEMORY_FILE, data.encode(), mode=0o600, dir_mode=0o700)
        self._written = data

    def outcome_for(self, incarnation: str, plugin: Plugin) -> Optional[Outcome]:
        """The saved outcome of the same request in the same incarnation, if final."""
        if incarnation != self.incarnation:
            return None
        saved = self.plugins.get(plugin.name.lower())
        if not saved or saved.get("request") != request_key(plugin):
            return None
        outcome = _outcome(saved.get("outcome"))
        return None if outcome is None or outcome.retry else outcome

    def remember(self, incarnation: str, plugin: Plugin, outcome: Outcome) -> None:
        if incarnation != self.incarnation:
            self.incarnation, self.plugins = incarnation, {}
        self.plugins[plugin.name.lower()] = {
            "request": request_key(plugin),
            "outcome": dataclasses.asdict(outcome),
        }
