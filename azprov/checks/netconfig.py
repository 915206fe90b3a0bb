"""Network configurations of every stack, reduced to what matters on Azure: which NICs
a DHCPv4 config applies to (by name, driver or MAC) and where it is written.

The primary NIC on Azure is `eth0` on `hv_netvsc` (VMBus devices get no
predictable name); an Accelerated Networking VF shares its MAC and has a
Mellanox or MANA driver and a name such as `enP30832s1`.
"""

from __future__ import annotations

import configparser
import contextlib
from typing import Optional

from azprov.checks import systemd
from azprov.checks.model import Note, unknown
from azprov.checks.netplan import (
    MAX_NETPLAN_BYTES,
    MAX_NETPLAN_FILES,
    MAX_NETPLAN_TOTAL,
    NO_YAML,
    NetplanDevice,
    ethernets,
    read_netplan,
)
from azprov.checks.nicconfig import NetConfig, within_glob_budget
from azprov.checks.tree import Tree
from azprov.errors import InvalidInput

PRIMARY = ("eth0", "hv_netvsc")
VF_EXAMPLES = (("enP30832s1", "mlx5_core"), ("eth1", "mlx4_core"), ("enP7s1", "mana"))
NETWORKD_DIRS = (
    "etc/systemd/network",
    "run/systemd/network",
    "usr/lib/systemd/network",
    "lib/systemd/network",
)


def read_ini(tree: Tree, path: str) -> configparser.RawConfigParser:
    """An INI file (networkd, NetworkManager), parsed once per run: several checks
    read the same files, and a megabyte of them takes configparser a third of a second."""

    def parse() -> configparser.RawConfigParser:
        parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        with contextlib.suppress(configparser.Error):
            parser.read_string(tree.read_text(path) or "", source=path)
        return parser

    return tree.memo(f"ini:{path}", parse)


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


NETPLAN_DIRS = ("etc/netplan", "run/netplan", "lib/netplan", "usr/lib/netplan")
# One netplan ethernet: what it matches, its set-name, the renderer it is for.
Ethernet = tuple[NetConfig, Optional[str], str]


def _netplan_read(tree: Tree) -> tuple[list[Ethernet], list[tuple[str, str]]]:
    """Every readable file's ethernets, and (path, why) for each file not read."""

    def read() -> tuple[list[Ethernet], list[tuple[str, str]]]:
        found: list[Ethernet] = []
        problems: list[tuple[str, str]] = []
        paths = vendor_first(tree, NETPLAN_DIRS, "*.yaml")
        if len(paths) > MAX_NETPLAN_FILES:
            too_many = f"{len(paths)} netplan files, more than the {MAX_NETPLAN_FILES} read"
            return [], [(NETPLAN_DIRS[0], too_many)]
        budget = MAX_NETPLAN_TOTAL
        for path in paths:
            why = tree.unreadable(path, cap=MAX_NETPLAN_BYTES)
            if why is None and tree.size(path) > budget:
                why = f"not read: the files before it fill the {MAX_NETPLAN_TOTAL} bytes read"
            if why:
                problems.append((path, f"{path} is {why}"))
                continue
            budget -= tree.size(path)
            text = tree.read_text(path, MAX_NETPLAN_BYTES) or ""
            try:
                devices = ethernets(read_netplan(text, path))
                found += [_netplan_config(path, device) for device in devices]
            except ImportError:
                problems.append((path, f"{path} is not read: {NO_YAML}"))
            except InvalidInput as exc:
                problems.append((path, str(exc)))
        return found, problems

    return tree.memo("net.netplan", read)


def _netplan_config(path: str, device: NetplanDevice) -> Ethernet:
    config = NetConfig(path, "netplan", device.dhcp4, device.names, device.drivers, device.macs)
    return config, device.set_name, device.renderer


def netplan(tree: Tree) -> list[Ethernet]:
    """(config, set-name, renderer) for every ethernet in etc/run/lib netplan files
    that could be read (see `netplan_unknowns` for the others)."""
    return _netplan_read(tree)[0]


def netplan_unknowns(tree: Tree) -> list[Note]:
    """`unknown:` for each netplan file that was not read (not YAML, refused, too
    large, or no PyYAML): what it configures is not known."""
    return [
        unknown(path, why, "make it netplan YAML azprov reads, or check it by hand")
        for path, why in _netplan_read(tree)[1]
    ]


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
    """The configs that the enabled managers apply (netplan renders for its renderer at boot),
    but for those not read (see `config_unknowns`)."""
    return _active(tree)[0]


def config_unknowns(tree: Tree) -> list[Note]:
    """`unknown:` for each config not read: a netplan file not read (see
    `netplan_unknowns`), or one whose globs pass MAX_GLOBS."""
    return netplan_unknowns(tree) + _active(tree)[1]


def _active(tree: Tree) -> tuple[list[NetConfig], list[Note]]:
    def collect() -> tuple[list[NetConfig], list[Note]]:
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
        return within_glob_budget(configs)

    return tree.memo("net.active", collect)
