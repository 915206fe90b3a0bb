"""The two sources of an extensions goal state, and the choice between them (reference §7).

The WireServer's ExtensionsConfig and the HostGAPlugin's vmSettings (Fast
Track) ask for the same thing in two shapes; each parsed one is a
`SourcedGoal`: the goal with its id (the incarnation, or `etag_<ETag>`), when it
was made (.NET ticks) and its source. Of two new ones the one made later runs,
the ExtensionsConfig on a tie; the goal in effect is never replaced by an
older one, in a later process either: its id and creation time are kept with
the runner's memory (`remember_goal`, `in_effect`), so a restart that cannot
read vmSettings (a 404, a HostGAPlugin error) does not run an older
ExtensionsConfig in place of the Fast Track goal it had.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import NamedTuple, Optional, Union

from azprov.errors import AzprovError, InvalidInput
from azprov.extensions.goal import ExtensionsGoal, parse_extensions_config
from azprov.extensions.memory import Memory
from azprov.fabric.xmldoc import child, local_name, parse_xml

log = logging.getLogger(__name__)

FAST_TRACK = "FastTrack"
FABRIC = "Fabric"
TICKS_MAX = 2**63 - 1  # .NET ticks are an Int64
_TICKS = re.compile(r"^[0-9]{1,19}\Z")


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

    @property
    def named(self) -> str:
        """How logs name it."""
        return _named(self.id)


class KeptGoal(NamedTuple):
    """The goal in effect as an earlier process left it: its id and creation time."""

    id: str
    created: int

    @property
    def named(self) -> str:
        return _named(self.id)


def _named(goal_id: str) -> str:
    if goal_id.startswith("etag_"):
        return f"vmSettings {goal_id.removeprefix('etag_')}"
    return f"incarnation {goal_id}"


def remember_goal(memory: Memory, config_url: Optional[str], chosen: SourcedGoal) -> None:
    """Note in `memory` (saved with it) the goal now in effect: the ExtensionsConfig URL
    and inSvdSeqNo, and its id and creation time, for a later process to compare with."""
    memory.config_url, memory.in_svd_seq_no = config_url, chosen.goal.in_svd_seq_no
    memory.goal_id, memory.goal_created = chosen.id, chosen.created


def in_effect(memory: Memory) -> Optional[KeptGoal]:
    """The goal an earlier process left in effect, if the memory names one."""
    return None if memory.goal_id is None else KeptGoal(memory.goal_id, memory.goal_created)


def extensions_config_created(content: bytes) -> int:
    """The ExtensionsConfig's creation time (InVMGoalStateMetaData@createdOnTicks), or 0
    when it does not say (so any Fast Track goal state counts as newer)."""
    metadata = child(parse_xml(content, "ExtensionsConfig"), "InVMGoalStateMetaData")
    if metadata is None:
        return 0
    for key, value in metadata.attrib.items():
        if local_name(key).lower() == "createdonticks":
            text = value.strip()
            if _TICKS.match(text) and int(text) <= TICKS_MAX:
                return int(text)
            field = "ExtensionsConfig InVMGoalStateMetaData@createdOnTicks"
            raise InvalidInput(field, text[:40], "not a whole number")
    return 0


def new_goals(
    content: Optional[bytes], incarnation: str, fast: Optional[SourcedGoal]
) -> tuple[list[SourcedGoal], Optional[str]]:
    """The new goal states to choose from (the ExtensionsConfig `content` first) and, when
    a Fast Track goal state `fast` runs without it, why the ExtensionsConfig was refused;
    with no `fast`, a refused ExtensionsConfig raises as it always has."""
    found = [] if fast is None else [fast]
    if content is None:
        return found, None
    try:
        created = extensions_config_created(content)
        wire = SourcedGoal(parse_extensions_config(content), incarnation, created)
    except AzprovError as exc:
        if fast is None:
            raise
        refused = f"ExtensionsConfig of incarnation {incarnation}: {exc}"
        log.error("%s (the Fast Track goal state runs without it)", refused)
        return found, refused
    return [wire, *found], None


def choose(
    current: Optional[SourcedGoal],
    candidates: list[SourcedGoal],
    kept: Optional[KeptGoal] = None,
) -> Optional[SourcedGoal]:
    """The goal state to run of the new `candidates` (the first wins a tie), `current`
    when there are none, or None when the newest is older than the one in effect:
    `current`, or before this process applied any, `kept` from an earlier one."""
    if not candidates:
        return current
    newest = max(candidates, key=lambda c: c.created)
    effective: Union[SourcedGoal, KeptGoal, None] = current if current is not None else kept
    if effective is not None and newest.created < effective.created:
        log.info(
            "%s (created %d) is older than %s (created %d) in effect: not run",
            newest.named,
            newest.created,
            effective.named,
            effective.created,
        )
        return None
    return newest
