"""systemd unit state read from the tree: installed, masked, enabled (started), presets.

"Enabled" here means started at boot: a link named after the unit in some
`*.wants/` or `*.requires/` directory. An alias link alone is not enablement
(the sheet's decision), although `systemctl is-enabled` then says "enabled".
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Optional, Union

from azprov.checks.tree import Tree

CONFIG_DIRS = ("etc/systemd/system", "run/systemd/system")
VENDOR_DIRS = ("usr/lib/systemd/system", "lib/systemd/system")
PRESET_DIRS = (
    "etc/systemd/system-preset",
    "run/systemd/system-preset",
    "usr/lib/systemd/system-preset",
    "lib/systemd/system-preset",
)


def unit_dirs(tree: Tree) -> tuple[str, ...]:
    # /run is made at boot: on a mounted image it is whatever the build left, so skip it.
    config = CONFIG_DIRS if tree.live else CONFIG_DIRS[:1]
    return config + VENDOR_DIRS


def unit_file(tree: Tree, unit: str) -> Optional[str]:
    """Where the unit (or, for `x@y.service`, its template) is defined; None: not installed.

    A link counts only when it leads to a file inside the tree (a dangling one defines nothing).
    """
    names = [unit]
    if "@" in unit:
        prefix, _, rest = unit.partition("@")
        names.append(f"{prefix}@.{rest.rpartition('.')[2]}")
    for directory in unit_dirs(tree):
        for name in names:
            path = f"{directory}/{name}"
            if tree.is_file(path) and not is_mask(tree, path):
                return path
    return None


def is_mask(tree: Tree, path: str) -> bool:
    target = tree.link_target(path)
    return target is not None and target.rstrip("/") == "/dev/null"


def masked(tree: Tree, unit: str) -> Optional[str]:
    """The mask link (`etc/systemd/system/UNIT -> /dev/null`), or None."""
    for directory in unit_dirs(tree):
        path = f"{directory}/{unit}"
        if is_mask(tree, path):
            return path
    return None


def _wanted_links(tree: Tree) -> dict[str, list[str]]:
    links: dict[str, list[str]] = {}
    for directory in unit_dirs(tree):
        for suffix in ("*.wants/*", "*.requires/*"):
            for path in tree.glob(f"{directory}/{suffix}"):
                links.setdefault(path.rsplit("/", 1)[1], []).append(path)
    return links


def enable_links(tree: Tree, unit: str) -> list[str]:
    """The `.wants`/`.requires` links that start `unit` (a pattern may be given)."""
    links = tree.memo("systemd.wanted", lambda: _wanted_links(tree))
    if not any(c in unit for c in "*?["):
        return links.get(unit, [])
    return [p for name, paths in links.items() if fnmatch.fnmatchcase(name, unit) for p in paths]


def enabled(tree: Tree, unit: str) -> bool:
    """Started at boot: installed, not masked and pulled in by a `.wants`/`.requires` link."""
    return (
        bool(enable_links(tree, unit))
        and masked(tree, unit) is None
        and unit_file(tree, unit) is not None
    )


def any_enabled(tree: Tree, *units: str) -> list[str]:
    return [unit for unit in units if enabled(tree, unit)]


def first_boot(tree: Tree) -> bool:
    """machine-id(5): absent or `uninitialized` makes the next boot a first boot (presets run)."""
    data = tree.read_text("etc/machine-id")
    return data is None or data.strip() == "uninitialized"


@dataclasses.dataclass(frozen=True)
class PresetLine:
    path: str
    number: int
    action: str  # enable / disable / ignore
    text: str


@dataclasses.dataclass(frozen=True)
class PresetsUnread:
    """What the presets say was not worked out: `path` is where, and why."""

    path: str
    why: str


# Fedora's presets are a few hundred lines, a handful of them globs. Each distinct
# glob costs a regular expression (a tenth of a millisecond): past this many, what
# the presets say is not worked out, where a crafted megabyte of them took seconds.
MAX_PRESET_GLOBS = 1024


def preset_for(tree: Tree, unit: str) -> Union[PresetLine, PresetsUnread, None]:
    """The first preset line matching `unit`: files ordered by name across dirs, earlier
    dirs win; or why that is not worked out (more than MAX_PRESET_GLOBS globs before it)."""
    files: dict[str, str] = {}
    for directory in PRESET_DIRS:
        for path in tree.glob(f"{directory}/*.preset"):
            files.setdefault(path.rsplit("/", 1)[1], path)
    globs: set[str] = set()
    for name in sorted(files):
        for number, line in enumerate(tree.lines(files[name]), 1):
            words = line.split()
            if len(words) < 2 or words[0].startswith(("#", ";")):
                continue
            pattern = words[1]
            if not any(char in pattern for char in "*?["):
                matches = pattern == unit  # what fnmatch says of a pattern without a glob
            elif pattern not in globs and len(globs) >= MAX_PRESET_GLOBS:
                why = f"the presets up to {files[name]} hold more than {MAX_PRESET_GLOBS} globs"
                return PresetsUnread(files[name], why)
            else:
                globs.add(pattern)
                matches = fnmatch.fnmatchcase(unit, pattern)
            if matches:
                return PresetLine(files[name], number, words[0], line.strip())
    return None


def unit_settings(tree: Tree, unit: str) -> dict[str, list[str]]:
    """`Key=value` settings of a unit file and its drop-ins (values of repeated keys collected)."""
    path = unit_file(tree, unit)
    files = [path] if path else []
    for directory in unit_dirs(tree):
        files += tree.glob(f"{directory}/{unit}.d/*.conf")
    settings: dict[str, list[str]] = {}
    for file in files:
        for line in tree.lines(file):
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith(("#", ";", "[")):
                settings.setdefault(key.strip(), []).extend(value.split())
    return settings
