"""Network checks: DHCP on the primary NIC, nothing pinned to the build machine, VFs left alone."""

from __future__ import annotations

import re
from typing import Iterator

from azprov.checks import netconfig
from azprov.checks.model import Note, check
from azprov.checks.netconfig import PRIMARY, VF_EXAMPLES, active_configs, active_stacks
from azprov.checks.tree import Tree

UDEV_DIRS = ("etc/udev/rules.d", "run/udev/rules.d", "usr/lib/udev/rules.d", "lib/udev/rules.d")


@check(
    "net-dhcp-configured",
    "error",
    consequence="no DHCP lease, so no WireServer and no Ready",
    source="MS no-agent doc; LISA verify_ifcfg_eth0, verify_network_file_configuration",
)
def net_dhcp_configured(tree: Tree) -> Iterator[Note]:
    stacks = active_stacks(tree)
    if not stacks:
        yield Note(
            "etc/systemd/system/multi-user.target.wants",
            "enables no network manager (networkd, NetworkManager, ifupdown)",
            "enable one, with DHCPv4 on eth0",
        )
        return
    primary = [c for c in active_configs(tree) if c.dhcp4 and c.matches(*PRIMARY)]
    unread = netconfig.config_unknowns(tree)
    yield from unread
    if not primary and not unread:  # an unread netplan file may be what configures it
        yield Note(
            "etc",
            f"has no DHCPv4 configuration for {PRIMARY[0]} ({PRIMARY[1]}) in {', '.join(stacks)}",
            "e.g. a .network with [Match] Name=eth0 and DHCP=ipv4",
        )
    managing = sorted({c.stack for c in primary} - {"netplan"})
    if len(managing) > 1:
        yield Note(
            primary[0].path,
            f"and others configure {PRIMARY[0]} in {' and '.join(managing)}",
            "keep exactly one network manager enabled",
            consequence="two DHCP clients race on the NIC",
        )


@check(
    "net-config-not-pinned",
    "error",
    consequence="every clone has a new MAC: a config bound to the build NIC never applies, no DHCP",
    source="virt-sysprep net-hwaddr, net-nmconn",
)
def net_config_not_pinned(tree: Tree) -> Iterator[Note]:
    yield from netconfig.config_unknowns(tree)
    configs = [c for c in active_configs(tree) if c.editable]
    for config in configs:
        if config.macs:
            yield Note(
                config.path,
                f"matches MAC {config.macs[0]}",
                "match Name=eth0 (or the driver) instead",
            )
        elif (
            config.dhcp4
            and config.names
            and not config.drivers
            and all(not re.search(r"[*?\[]", n) and n != PRIMARY[0] for n in config.names)
        ):
            yield Note(config.path, f"applies only to {', '.join(config.names)}", "configure eth0")
    for path in tree.glob("etc/systemd/network/*.link"):
        ini = netconfig.read_ini(tree, path)
        macs = ini.get("Match", "MACAddress", fallback="") or ini.get(
            "Match", "PermanentMACAddress", fallback=""
        )
        if macs:
            yield Note(path, f"matches MAC {macs.split()[0]}", f"remove {path}")
    for config, set_name, _ in netconfig.netplan(tree):
        if config.macs and set_name and config.editable and not config.drivers:
            yield Note(
                config.path,
                f"renames MAC {config.macs[0]} to {set_name}",
                "match the driver hv_netvsc",
            )


@check(
    "udev-persistent-net",
    "error",
    consequence="the new MAC gets the next free name (eth1) and the eth0 config goes unused",
    source="virt-sysprep udev-persistent-net; LISA verify_udev_rules_moved",
)
def udev_persistent_net(tree: Tree) -> Iterator[Note]:
    generated = (
        "etc/udev/rules.d/70-persistent-net.rules",
        "lib/udev/rules.d/75-persistent-net-generator.rules",
        "usr/lib/udev/rules.d/75-persistent-net-generator.rules",
    )
    for path in generated:
        if tree.size(path):
            yield Note(path, "exists", f"remove {path}")
    for path in tree.glob("etc/udev/rules.d/*.rules"):
        if path.endswith("/70-persistent-net.rules"):
            continue
        for number, line in enumerate(tree.lines(path), 1):
            if 'SUBSYSTEM=="net"' in line and "ATTR{address}==" in line and "NAME=" in line:
                yield Note(f"{path}:{number}", "names a NIC by its MAC", "remove the rule")


def vf_marked_unmanaged(tree: Tree) -> bool:
    for path in netconfig.vendor_first(tree, UDEV_DIRS, "*.rules"):
        text = tree.read_text(path) or ""
        if re.search(r'NM_UNMANAGED}?="?1|ID_NET_MANAGED_BY}?="?unmanaged', text):
            return True
    for config in netconfig.vendor_first(tree, netconfig.NETWORKD_DIRS, "*.network"):
        if netconfig.read_ini(tree, config).get("Link", "Unmanaged", fallback="no").lower() in (
            "yes",
            "true",
        ):
            return True
    unmanaged = netconfig.nm_setting(tree, "keyfile", "unmanaged-devices")
    return "mlx" in unmanaged or "mana" in unmanaged


@check(
    "net-vf-unmanaged",
    "error",
    consequence="on Accelerated Networking sizes a managed VF gets the same IP: broken routing",
    source="azure-vm-utils selftest; MS RHEL doc",
)
def net_vf_unmanaged(tree: Tree) -> Iterator[Note]:
    if vf_marked_unmanaged(tree):
        return
    yield from netconfig.config_unknowns(tree)
    for config in active_configs(tree):
        if not config.dhcp4:
            continue
        if config.by_mac_only:
            yield Note(config.path, "matches by MAC alone (a VF has the same MAC)", _VF_FIX)
        elif any(config.matches(name, driver) for name, driver in VF_EXAMPLES):
            what = f"Name={' '.join(config.names)}" if config.names else "every NIC"
            yield Note(config.path, f"matches {what}, so VFs too", _VF_FIX)


_VF_FIX = "match Name=eth0 or Driver=hv_netvsc, or install azure-vm-utils (marks VFs unmanaged)"


@check(
    "dhcp-timeout",
    "warn",
    consequence="a DHCP client that gives up early leaves a slow first boot without a lease",
    source="LISA verify_dhcp_client_timeout",
)
def dhcp_timeout(tree: Tree) -> Iterator[Note]:
    stacks = active_stacks(tree)
    if "ifupdown" in stacks and tree.exists("etc/dhcp/dhclient.conf"):
        values = [
            m.group(1).lstrip("0") or "0"
            for line in tree.lines("etc/dhcp/dhclient.conf")
            for m in [re.match(r"\s*timeout\s+([0-9]+)\s*;", line)]
            if m
        ]
        if not values or not at_least(values[-1], 300):
            found = f"has timeout {values[-1]}" if values else "sets no timeout"
            yield Note("etc/dhcp/dhclient.conf", found, "add 'timeout 300;'")
    if "NetworkManager" in stacks:
        value = netconfig.nm_setting(tree, "connection", "ipv4.dhcp-timeout")
        # NetworkManager reads ASCII digits up to G_MAXINT32; anything else leaves its 45 s.
        number = value.isascii() and value.isdigit()
        if not number or not at_least(value, 300) or at_least(value, 1 << 31):
            shown = value if len(value) <= 20 else value[:20] + "…"
            yield Note(
                "etc/NetworkManager/conf.d",
                f"sets ipv4.dhcp-timeout={shown}"
                if value
                else "sets no ipv4.dhcp-timeout (45 s default)",
                "add [connection] ipv4.dhcp-timeout=300 in a conf.d file",
            )


def at_least(digits: str, floor: int) -> bool:
    """Is the ASCII decimal `digits` at least `floor`? Told by its length first, so
    that a million digits cost no int() (quadratic on Python 3.9, refused on 3.11)."""
    significant = digits.lstrip("0")
    if len(significant) != len(str(floor)):
        return len(significant) > len(str(floor))
    return int(significant) >= floor


_LEASES = (
    "var/lib/dhcp/*",
    "var/lib/dhclient/*",
    "var/lib/dhcpcd/*",
    "var/lib/NetworkManager/*.lease",
)


@check(
    "dhcp-dns-leftovers",
    "warn",
    consequence="stale leases replay the old address and WireServer; a build-site resolver breaks DNS",
    source="waagent del_dhcp_lease, del_resolv; virt-sysprep dhcp-client-state",
)
def dhcp_dns_leftovers(tree: Tree) -> Iterator[Note]:
    leases = _LEASES + (("run/systemd/netif/leases/*",) if tree.live else ())
    for pattern in leases:
        for path in tree.glob(pattern):
            if tree.size(path):
                yield Note(
                    path, "is a DHCP lease from the build", "remove it ('azprov deprovision')"
                )
    if tree.link_target("etc/resolv.conf") is None and tree.is_file("etc/resolv.conf"):
        servers = [
            line.split()[1]
            for line in tree.lines("etc/resolv.conf")
            if line.startswith("nameserver ") and len(line.split()) > 1
        ]
        if servers:
            yield Note(
                "etc/resolv.conf",
                f"is a file naming {', '.join(servers)}",
                "link it to the resolver's file in /run (systemd-resolved stub), or empty it",
            )
