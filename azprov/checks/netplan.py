"""Netplan files read as netplan reads them: YAML (through PyYAML, imported here
and only when a file is read, never on the first-boot path), every scalar a
string, and bounded in size, nesting and aliases.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from azprov.errors import InvalidInput

# A netplan file describes a few interfaces in a few hundred bytes (cloud-init's
# 50-cloud-init.yaml is under 1 KiB); one with a hundred VLANs stays under 20 KiB.
# PyYAML reads 256 KiB in about 0.5 s with libyaml and 5 s without: the caps (a
# file, all files, how many) bound what a crafted image can cost; a file past
# them is `unknown:`.
MAX_NETPLAN_BYTES = 64 << 10
MAX_NETPLAN_TOTAL = 256 << 10
MAX_NETPLAN_FILES = 32
# netplan's deepest keys (network.ethernets.NAME.routes[N].to) are five levels down.
MAX_NETPLAN_DEPTH = 32
NO_YAML = "PyYAML (python3-yaml) is not installed here"
_TRUE = ("true", "yes", "on", "y")


def read_netplan(text: str, path: str) -> object:
    """One netplan file's YAML as dicts, lists and strings; InvalidInput naming
    `path` and the line when it is not YAML or is refused; ImportError when
    PyYAML is not installed.

    Every scalar stays a string, as netplan reads them (a MAC never becomes a
    base-60 number). What netplan files never need and a crafted one could
    explode with is refused before anything is built: aliases, and nesting past
    MAX_NETPLAN_DEPTH. PyYAML is imported here, when a netplan file is read,
    never on the first-boot path.
    """
    import yaml

    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # libyaml when it is there
    try:
        depth = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                raise _refused(yaml, event, f"an alias (*{event.anchor}) is refused")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NETPLAN_DEPTH:
                    why = f"nesting deeper than {MAX_NETPLAN_DEPTH} levels is refused"
                    raise _refused(yaml, event, why)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        lines = text.splitlines()
        shown = lines[min(mark.line, len(lines) - 1)].strip() if mark and lines else ""
        raise InvalidInput(path, shown, f"{where}{problem}") from None


def _refused(yaml: Any, event: Any, why: str) -> Exception:
    return yaml.MarkedYAMLError(problem=why, problem_mark=event.start_mark)


def _strings(value: object) -> tuple[str, ...]:
    """A scalar or a list of scalars (netplan's `driver: [a, b]`) as strings."""
    items = value if isinstance(value, list) else [value]
    return tuple(item.strip() for item in items if isinstance(item, str) and item.strip())


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


@dataclasses.dataclass(frozen=True)
class NetplanDevice:
    """One device of `network.ethernets`: what it matches (its own name when it has
    no `match`), whether it asks for DHCPv4, its set-name and the renderer it is for."""

    id: str
    dhcp4: bool
    names: tuple[str, ...]
    drivers: tuple[str, ...]
    macs: tuple[str, ...]
    set_name: Optional[str]
    renderer: str


def ethernets(document: object) -> list[NetplanDevice]:
    """The ethernets a netplan document defines; anything netplan would refuse is skipped."""
    network = document.get("network") if isinstance(document, dict) else None
    if not isinstance(network, dict):
        return []
    devices = network.get("ethernets")
    if not isinstance(devices, dict):
        return []
    # A renderer may be given for all, for a device type, or for one device.
    renderer = _text(devices.get("renderer"), _text(network.get("renderer"), "networkd"))
    found = []
    for key, spec in devices.items():
        if not isinstance(spec, dict) or not key.strip():
            continue  # `renderer` itself, or nothing netplan would accept
        match = spec.get("match")
        if not isinstance(match, dict):
            match = {"name": key}  # no match: the device is its own name
        found.append(
            NetplanDevice(
                key,
                _text(spec.get("dhcp4")).lower() in _TRUE,
                _strings(match.get("name")),
                _strings(match.get("driver")),
                _strings(match.get("macaddress")),
                _text(spec.get("set-name")) or None,
                _text(spec.get("renderer"), renderer),
            )
        )
    return found
