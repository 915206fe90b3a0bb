"""The order a goal's plugins run in, and what keeps one from running now."""

from __future__ import annotations

from typing import NamedTuple, Optional

from azprov.extensions.goal import ExtensionsGoal, Plugin
from azprov.extensions.outcome import Outcome


class Blocked(NamedTuple):
    """Why a plugin does not run now, and whether that may pass by the next round."""

    reason: str
    retry: bool = False


def run_order(plugins: tuple[Plugin, ...]) -> list[Plugin]:
    """Removals first (dependents before what they depend on), then enables, lowest level first."""
    return sorted(
        plugins,
        key=lambda p: (
            (1, p.dependency_level) if p.state == "enabled" else (0, -p.dependency_level)
        ),
    )


def blocked_reason(
    plugin: Plugin,
    goal: ExtensionsGoal,
    done: dict[str, Outcome],
    certificates_missing: Optional[str] = None,
) -> Optional[Blocked]:
    """Why `plugin` must not run now, or None. `certificates_missing` says why the goal
    state's certificates are not installed yet (tried again next round): a plugin with
    protected settings waits for them rather than fail on a key it cannot have."""
    unsupported = goal.unsupported_features()
    if unsupported:
        return Blocked(f"the goal state requires unsupported feature(s): {', '.join(unsupported)}")
    if plugin.refusal:
        return Blocked(plugin.refusal)
    if plugin.state != "enabled":
        return None
    if plugin.protected and certificates_missing:
        return Blocked(f"waiting for the tenant certificates: {certificates_missing}", retry=True)
    if plugin.dependency_level == 0:
        return None
    levels = {p.name.lower(): p.dependency_level for p in goal.plugins}
    wanted = {d.lower() for d in plugin.depends_on}
    blockers = [
        outcome
        for key, outcome in done.items()
        if outcome.failed
        and (key in wanted or (not wanted and levels.get(key, 0) < plugin.dependency_level))
    ]
    if not blockers:
        return None
    # Waiting on a failure that may pass (a download, say) may pass with it.
    names = ", ".join(outcome.name for outcome in blockers)
    return Blocked(
        f"skipped: it depends on {names}, which failed",
        retry=any(outcome.retry for outcome in blockers),
    )
