"""The order a goal's plugins run in, and what keeps one from running now."""

from __future__ import annotations

from typing import Optional

from azprov.extensions.goal import ExtensionsGoal, Plugin
from azprov.extensions.lifecycle import Outcome


def run_order(plugins: tuple[Plugin, ...]) -> list[Plugin]:
    """Removals first (dependents before what they depend on), then enables, lowest level first."""
    return sorted(
        plugins,
        key=lambda p: (
            (1, p.dependency_level) if p.state == "enabled" else (0, -p.dependency_level)
        ),
    )


def blocked_reason(
    plugin: Plugin, goal: ExtensionsGoal, done: dict[str, Outcome]
) -> Optional[str]:
    """Why `plugin` must not run now, or None."""
    unsupported = goal.unsupported_features()
    if unsupported:
        return f"the goal state requires unsupported feature(s): {', '.join(unsupported)}"
    if plugin.refusal or plugin.state != "enabled" or plugin.dependency_level == 0:
        return plugin.refusal
    levels = {p.name.lower(): p.dependency_level for p in goal.plugins}
    wanted = {d.lower() for d in plugin.depends_on}
    blockers = [
        outcome.name
        for key, outcome in done.items()
        if outcome.failed
        and (key in wanted or (not wanted and levels.get(key, 0) < plugin.dependency_level))
    ]
    return f"skipped: it depends on {', '.join(blockers)}, which failed" if blockers else None
