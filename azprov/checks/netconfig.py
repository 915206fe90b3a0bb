"""Network configurations of every stack, reduced to what matters on Azure: which NICs
a DHCPv4 config applies to (by name, driver or MAC) and where it is written.

The primary NIC on Azure is `eth0` on `hv_netvsc` (VMBus devices get no
predictable name); an Accelerated Networking VF shares its MAC and has a
Mellanox or MANA driver and a name such as `enP30832s1`.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import fnmatch
import re
from typing import Optional

from azprov.checks import systemd
from azprov.checks.tree import Tree

PRIMARY = ("eth0", "hv_netvsc")
VF_EXAMPLES = (("enP30832s1", "mlx5_core"), ("eth1", "mlx4_core"), ("enP7s1", "mana"))
NETWORKD_DIRS = (
    "etc/systemd/network",
    "run/systemd/network",
    "usr/lib/systemd/network",
    "lib/systemd/network",
)


@dataclasses.dataclass(frozen=True)
class NetConfig:
    path: str
    stack: str  # networkd, NetworkManager, ifupdown, netplan, ifcfg
    dhcp4: bool
    names: tuple[str, ...] = ()  # name globs; empty: any name
    drivers: tuple[str, ...] = ()  # empty: any driver
    macs: tuple[str, ...] = ()

    def matches(self, name: str, driver: str) -> bool:
        """Could this apply to the NIC (MAC unknown: a MAC match never applies to a new VM)?"""
        if self.macs:
            return False
        if self.names and not any(fnmatch.fnmatchcase(name, n) for n in self.names):
            return False
        return not self.drivers or any(fnmatch.fnmatchcase(driver, d) for d in self.drivers)

    @property
    def by_mac_only(self) -> bool:
        return bool(self.macs) and not self.names and not self.drivers

    @property
    def editable(self) -> bool:
        return self.path.startswith(("etc/", "run/"))


def read_ini(tree: Tree, path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    with contextlib.suppress(configparser.Error):
        parser.read_string(tree.read_text(path) or "", source=path)
    return parser


def _words(parser: configparser.RawConfigParser, section: str, key: str) -> tuple[str, ...]:
    return tuple(parser.get(section, key, fallback="").split())


def vendor_first(tree: Tree, dirs: tuple[str, ...], pattern: str) -> list[str]:
    """Files by name across dirs, an earlier dir hiding the same name later (systemd's rule)."""
    files: dict[str, str] = {}
    for directory in dirs:
        for path in tree.glob(f"{directory}/{pattern}"):
            files.setdefault(path.rsplit("/", 1)[1], path)
    return [files[name] for name in sorted(files)]


def networkd(tree: Tree) -> list[NetConfig]:
    configs = []
    for path in vendor_first(tree, NETWORKD_DIRS, "*.network"):
        ini = read_ini(tree, path)
        kind = ini.get("Match", "Kind", fallback="") or ini.get(
            "Match", "Virtualization", fallback=""
        )
        if kind or ini.get("Match", "Type", fallback="ether") not in ("ether", ""):
            continue  # virtual links (containers, tunnels, bridges)
        dhcp = ini.get("Network", "DHCP", fallback="no").lower() in ("yes", "true", "ipv4", "1")
        macs = _words(ini, "Match", "MACAddress") + _words(ini, "Match", "PermanentMACAddress")
        configs.append(
            NetConfig(
                path,
                "networkd",
                dhcp,
                _words(ini, "Match", "Name"),
                _words(ini, "Match", "Driver"),
                macs,
            )
        )
    return configs


def networkmanager(tree: Tree) -> list[NetConfig]:
    configs = []
    for directory in (
        "etc/NetworkManager/system-connections",
        "usr/lib/NetworkManager/system-connections",
    ):
        for path in tree.glob(f"{directory}/*.nmconnection"):
            ini = read_ini(tree, path)
            kind = ini.get("connection", "type", fallback="ethernet")
            if kind not in ("ethernet", "802-3-ethernet"):
                continue
            auto = ini.get("connection", "autoconnect", fallback="true").lower() != "false"
            dhcp = auto and ini.get("ipv4", "method", fallback="auto") == "auto"
            name = ini.get("connection", "interface-name", fallback="")
            mac = ini.get("ethernet", "mac-address", fallback="") or ini.get(
                "802-3-ethernet", "mac-address", fallback=""
            )
            configs.append(
                NetConfig(
                    path,
                    "NetworkManager",
                    dhcp,
                    (name,) if name else (),
                    (),
                    (mac,) if mac else (),
                )
            )
    if nm_setting(tree, "main", "no-auto-default").strip() != "*":
        configs.append(NetConfig("etc/NetworkManager/NetworkManager.conf", "NetworkManager", True))
    return configs


def nm_setting(tree: Tree, section: str, key: str) -> str:
    """A NetworkManager.conf setting (conf.d files read after it, later wins)."""
    value = ""
    files = ["etc/NetworkManager/NetworkManager.conf"]
    files += vendor_first(
        tree, ("etc/NetworkManager/conf.d", "usr/lib/NetworkManager/conf.d"), "*.conf"
    )
    for path in files:
        value = read_ini(tree, path).get(section, key, fallback=value)
    return value


def ifupdown(tree: Tree) -> list[NetConfig]:
    configs = []
    for path in ["etc/network/interfaces", *tree.glob("etc/network/interfaces.d/*")]:
        started: set[str] = set()
        dhcp: list[str] = []
        for line in tree.lines(path):
            words = line.split("#", 1)[0].split()
            if words and words[0] in ("auto", "allow-hotplug"):
                started.update(words[1:])
            elif (
                len(words) >= 4
                and words[0] == "iface"
                and words[2] == "inet"
                and words[3] == "dhcp"
            ):
                dhcp.append(words[1])
        configs += [NetConfig(path, "ifupdown", name in started, (name,)) for name in dhcp]
    return configs


def ifcfg(tree: Tree) -> list[NetConfig]:
    configs = []
    for path in tree.glob("etc/sysconfig/network-scripts/ifcfg-*"):
        values = dict(
            (k.strip(), v.strip().strip("\"'"))
            for k, _, v in (line.partition("=") for line in tree.lines(path) if "=" in line)
        )
        name = values.get("DEVICE") or path.rsplit("ifcfg-", 1)[1]
        if name == "lo":
            continue
        dhcp = (
            values.get("BOOTPROTO", "").lower() == "dhcp"
            and values.get("ONBOOT", "yes").lower() == "yes"
        )
        macs = tuple(filter(None, (values.get("HWADDR"), values.get("MACADDR"))))
        configs.append(NetConfig(path, "ifcfg", dhcp, (name,), (), macs))
    return configs


def _yaml_tree(text: str) -> dict[str, object]:
    """The mapping subset of YAML that netplan files use (lists and flow style kept as text)."""
    top: dict[str, object] = {}
    stack: list[tuple[int, dict[str, object]]] = [(-1, top)]
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        match = re.match(r"^(\s*)([^\s:#-][^:]*):\s*(.*)$", line)
        if not match:
            continue
        indent, key, value = (
            len(match.group(1)),
            match.group(2).strip().strip("\"'"),
            match.group(3),
        )
        while stack[-1][0] >= indent:
            stack.pop()
        if value:
            stack[-1][1][key] = value.strip().strip("\"'")
        else:
            child: dict[str, object] = {}
            stack[-1][1][key] = child
            stack.append((indent, child))
    return top


def _field(match: dict[str, object], field: str) -> tuple[str, ...]:
    value = str(match.get(field, "")).strip()
    return (value,) if value else ()


def netplan(tree: Tree) -> list[tuple[NetConfig, Optional[str], str]]:
    """(config, set-name, renderer) for every ethernet in etc/lib/run netplan."""
    found = []
    for path in vendor_first(
        tree, ("etc/netplan", "run/netplan", "lib/netplan", "usr/lib/netplan"), "*.yaml"
    ):
        network = _yaml_tree(tree.read_text(path) or "").get("network", {})
        if not isinstance(network, dict):
            continue
        renderer = str(network.get("renderer", "networkd"))
        ethernets = network.get("ethernets", {})
        for key, spec in ethernets.items() if isinstance(ethernets, dict) else []:
            if not isinstance(spec, dict):
                continue
            match = spec.get("match") if isinstance(spec.get("match"), dict) else None
            dhcp = str(spec.get("dhcp4", "")).lower() in ("true", "yes", "on")
            if match is None:
                config = NetConfig(path, "netplan", dhcp, (key,))
            else:
                config = NetConfig(
                    path,
                    "netplan",
                    dhcp,
                    _field(match, "name"),
                    _field(match, "driver"),
                    _field(match, "macaddress"),
                )
            set_name = spec.get("set-name")
            found.append((config, str(set_name) if set_name else None, renderer))
    return found


def active_stacks(tree: Tree) -> list[str]:
    """The network managers that start at boot."""
    units = {
        "networkd": "systemd-networkd.service",
        "NetworkManager": "NetworkManager.service",
        "ifupdown": "networking.service",
        "network-scripts": "network.service",
    }
    return [stack for stack, unit in units.items() if systemd.enabled(tree, unit)]


def active_configs(tree: Tree) -> list[NetConfig]:
    """The configs that the enabled managers apply (netplan renders for its renderer at boot)."""

    def collect() -> list[NetConfig]:
        stacks = active_stacks(tree)
        configs: list[NetConfig] = []
        if "networkd" in stacks:
            configs += networkd(tree)
        if "NetworkManager" in stacks:
            configs += networkmanager(tree) + ifcfg(tree)
        if "ifupdown" in stacks:
            configs += ifupdown(tree)
        if "network-scripts" in stacks:
            configs += ifcfg(tree)
        for config, _, renderer in netplan(tree):
            if ("NetworkManager" if renderer == "NetworkManager" else "networkd") in stacks:
                configs.append(config)
        return configs

    return tree.memo("net.active", collect)
