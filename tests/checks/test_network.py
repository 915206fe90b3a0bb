"""Network: DHCP on eth0, nothing pinned to the build NIC, VFs unmanaged, leases, timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checks.trees import (
    assert_case,
    case_table,
    fired,
    good_tree,
    link,
    problems,
    systemctl,
    unit,
    write,
)

CASES, case = case_table()
NETWORK = "etc/systemd/network/10-eth0.network"
UNMANAGED_RULE = "usr/lib/udev/rules.d/80-azure.rules"


def drop_vf_rule(root: Path) -> None:
    rules = root / UNMANAGED_RULE
    rules.write_text(
        "".join(x for x in rules.read_text().splitlines(True) if "unmanaged" not in x)
    )


@case("net-dhcp-configured")
def no_network_manager(root: Path) -> None:
    systemctl(root, "disable", "systemd-networkd.service")


@case("net-dhcp-configured")
def dhcp_only_for_another_name(root: Path) -> None:
    write(root, NETWORK, "[Match]\nName=eth1\n\n[Network]\nDHCP=ipv4\n")


@case("net-config-not-pinned")
def networkd_matches_build_mac(root: Path) -> None:
    write(
        root, NETWORK, "[Match]\nName=eth0\nMACAddress=00:15:5d:01:02:03\n\n[Network]\nDHCP=yes\n"
    )
    write(
        root,
        "etc/systemd/network/20-any.network",
        "[Match]\nDriver=hv_netvsc\n[Network]\nDHCP=yes\n",
    )


@case("net-config-not-pinned")
def ifupdown_for_the_kvm_name(root: Path) -> None:
    systemctl(root, "disable", "systemd-networkd.service")
    unit(root, "networking.service")
    systemctl(root, "enable", "networking.service")
    write(root, "etc/network/interfaces", "auto eth0\niface eth0 inet dhcp\n")
    write(root, "etc/network/interfaces.d/ens3", "allow-hotplug ens3\niface ens3 inet dhcp\n")


@case("udev-persistent-net")
def persistent_net_rules(root: Path) -> None:
    write(
        root,
        "etc/udev/rules.d/70-persistent-net.rules",
        'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="00:15:5d:01:02:03", NAME="eth0"\n',
    )


@case("net-vf-unmanaged")
def name_glob_matches_vfs(root: Path) -> None:
    drop_vf_rule(root)
    write(root, NETWORK, "[Match]\nName=en* eth0\n\n[Network]\nDHCP=ipv4\n")


@case("net-vf-unmanaged")
def netplan_by_mac_alone(root: Path) -> None:
    drop_vf_rule(root)
    write(
        root,
        "etc/netplan/50-cloud-init.yaml",
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
        "      match:\n        macaddress: 00:15:5d:01:02:03\n",
    )


@case("dhcp-timeout", "warn")
def dhclient_short_timeout(root: Path) -> None:
    ifupdown_for_the_kvm_name(root)
    (root / "etc/network/interfaces.d/ens3").unlink()
    write(root, "etc/dhcp/dhclient.conf", "send host-name = gethostname();\ntimeout 60;\n")


@case("dhcp-dns-leftovers", "warn")
def lease_left(root: Path) -> None:
    write(root, "var/lib/dhcp/dhclient.eth0.leases", "lease { fixed-address 10.0.0.4; }\n")


@case("dhcp-dns-leftovers", "warn")
def build_site_resolver(root: Path) -> None:
    (root / "etc/resolv.conf").unlink()
    write(root, "etc/resolv.conf", "search corp.example\nnameserver 10.1.2.3\n")


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    assert_case(tmp_path, check_id, severity, breaker)


def test_driver_match_covers_the_primary_nic_and_not_vfs(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    drop_vf_rule(root)
    write(root, NETWORK, "[Match]\nDriver=hv_netvsc\n\n[Network]\nDHCP=yes\n")
    for check_id in ("net-dhcp-configured", "net-vf-unmanaged", "net-config-not-pinned"):
        assert problems(root, check_id) == []


def test_networkmanager_auto_profile_and_keyfiles(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    systemctl(root, "disable", "systemd-networkd.service", "systemd-networkd-wait-online.service")
    for name in ("NetworkManager.service", "NetworkManager-wait-online.service"):
        unit(root, name)
        systemctl(root, "enable", name)
    write(
        root, "etc/NetworkManager/conf.d/90-timeout.conf", "[connection]\nipv4.dhcp-timeout=300\n"
    )
    # NM's automatic wired profile does DHCP on eth0; VFs are unmanaged by the udev rule.
    for check_id in ("net-dhcp-configured", "net-vf-unmanaged", "dhcp-timeout"):
        assert problems(root, check_id) == [], check_id
    write(root, "etc/NetworkManager/NetworkManager.conf", "[main]\nno-auto-default=*\n")
    assert "no DHCPv4 configuration for eth0" in fired(root, "net-dhcp-configured").found
    write(
        root,
        "etc/NetworkManager/system-connections/eth0.nmconnection",
        "[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n[ipv4]\nmethod=auto\n",
    )
    assert problems(root, "net-dhcp-configured") == []


def test_lease_in_run_counts_only_on_a_live_root(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "run/systemd/netif/leases/2", "ADDRESS=10.0.0.4\n")
    link(root, "etc/resolv.conf", "/run/systemd/resolve/stub-resolv.conf")
    assert problems(root, "dhcp-dns-leftovers") == []
