"""Network: DHCP on eth0, nothing pinned to the build NIC, VFs unmanaged, leases, timeouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.errors import InvalidInput
from azprov.host.root import TargetRoot
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


# What cloud-init writes on Ubuntu's Azure images (its header comment, then the
# datasource's NIC matched by driver and MAC and renamed to eth0).
UBUNTU_AZURE_CLOUD_INIT = """\
# This file is generated from information provided by the datasource.  Changes
# to it will not persist across an instance reboot.  To disable cloud-init's
# network configuration capabilities, write a file
# /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:
# network: {config: disabled}
network:
    ethernets:
        eth0:
            dhcp4: true
            dhcp4-overrides:
                route-metric: 100
            dhcp6: false
            match:
                driver: hv_netvsc
                macaddress: 00:22:48:8a:6f:a1
            set-name: eth0
    version: 2
"""
# An image's own file matching the synthetic NIC and its Accelerated Networking
# VF by driver, in flow style.
DRIVER_LIST = """\
network:
  version: 2
  ethernets:
    azure:
      match: {driver: [hv_netvsc, mlx5_core]}
      dhcp4: yes
"""


def netplan_only(root: Path, name: str, text: str) -> None:
    """Networkd renders netplan's config: the image's own .network file goes."""
    (root / NETWORK).unlink()
    write(root, f"etc/netplan/{name}", text)


def test_netplan_flow_style_is_read_as_yaml(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    netplan_only(root, "90-eth0.yaml", "network: {version: 2, ethernets: {eth0: {dhcp4: true}}}\n")
    assert problems(root, "net-dhcp-configured") == []


def test_netplan_driver_lists_match_each_driver(tmp_path: Path) -> None:
    """`driver: [hv_netvsc, mlx5_core]` covers eth0, and the VF too (so it must be unmanaged)."""
    root = good_tree(tmp_path / "root")
    drop_vf_rule(root)
    netplan_only(root, "90-azure.yaml", DRIVER_LIST)
    assert problems(root, "net-dhcp-configured") == []
    finding = fired(root, "net-vf-unmanaged")
    assert (finding.path, finding.found) == (
        "etc/netplan/90-azure.yaml",
        "matches every NIC, so VFs too",
    )


def test_ubuntu_cloud_init_netplan_is_read_whole(tmp_path: Path) -> None:
    from azprov.checks.netconfig import NetConfig, netplan
    from azprov.checks.tree import Tree
    from azprov.host.root import TargetRoot

    root = good_tree(tmp_path / "root")
    netplan_only(root, "50-cloud-init.yaml", UBUNTU_AZURE_CLOUD_INIT)
    path = "etc/netplan/50-cloud-init.yaml"
    expected = NetConfig(path, "netplan", True, (), ("hv_netvsc",), ("00:22:48:8a:6f:a1",))
    assert netplan(Tree(TargetRoot(root))) == [(expected, "eth0", "networkd")]
    # Left in the image, it binds eth0 to the build VM's MAC.
    assert fired(root, "net-config-not-pinned").found == "matches MAC 00:22:48:8a:6f:a1"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("network: {ethernets: {eth0: {dhcp4: true}}\n", "line 2, column 1: "),
        ("a: &a [x, x]\nb: &b [*a, *a]\nnetwork: *b\n", "an alias (*a) is refused"),
        ("network: " + "[" * 40 + "]" * 40 + "\n", "nesting deeper than 32 levels is refused"),
        (
            "network:\n  ethernets:\n    eth0: {dhcp4: true}\n" + "#" * (64 << 10),
            "is larger than 65536 bytes",
        ),
    ],
)
def test_a_netplan_file_not_read_is_unknown_naming_it(tmp_path: Path, text: str, why: str) -> None:
    from azprov.checks.netconfig import netplan, netplan_unknowns
    from azprov.checks.tree import Tree

    root = good_tree(tmp_path / "root")
    write(root, "etc/netplan/60-bad.yaml", text)
    write(root, "etc/netplan/50-good.yaml", "network: {ethernets: {eth1: {dhcp4: true}}}\n")
    tree = Tree(TargetRoot(root))
    assert [c.names for c, _, _ in netplan(tree)] == [("eth1",)]  # the other file still counts
    (note,) = netplan_unknowns(tree)
    assert note.path == "etc/netplan/60-bad.yaml" and note.severity == "info"
    assert note.found.startswith("unknown: etc/netplan/60-bad.yaml") and why in note.found


def test_without_pyyaml_netplan_is_unknown_not_guessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azprov.checks.netconfig import netplan, netplan_unknowns
    from azprov.checks.tree import Tree

    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    root = good_tree(tmp_path / "root")
    write(root, "etc/netplan/50-cloud-init.yaml", UBUNTU_AZURE_CLOUD_INIT)
    tree = Tree(TargetRoot(root))
    assert netplan(tree) == []
    (note,) = netplan_unknowns(tree)
    assert note.found == (
        "unknown: etc/netplan/50-cloud-init.yaml is not read:"
        " PyYAML (python3-yaml) is not installed here"
    )


def test_the_check_module_does_not_import_yaml(tmp_path: Path) -> None:
    """PyYAML is imported when a netplan file is read, never by importing azprov."""
    code = "import sys, azprov.checks, azprov.cli; print('yaml' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


_YAMLISH = st.text(alphabet="{}[],:-&*!|>?'\"#%@` \n\tab0é", max_size=200)


@settings(max_examples=200, deadline=2000)
@given(st.one_of(_YAMLISH, st.text(max_size=200)))
def test_any_text_is_netplan_values_or_invalid_input(text: str) -> None:
    from azprov.checks.netplan import ethernets, read_netplan

    try:
        document = read_netplan(text, "etc/netplan/x.yaml")
    except InvalidInput as exc:
        assert str(exc).startswith("etc/netplan/x.yaml=")
        return
    ethernets(document)
    ethernets({"network": {"ethernets": {"e": document}}})
    ethernets({"network": {"ethernets": document}})


def test_an_unread_netplan_file_is_unknown_in_the_network_checks(tmp_path: Path) -> None:
    """Not YAML azprov reads (or no PyYAML): each network check says unknown, naming the
    file, instead of "no DHCP for eth0" from a file it did not read."""
    from tests.checks.trees import findings

    root = good_tree(tmp_path / "root")
    drop_vf_rule(root)
    netplan_only(root, "50-cloud-init.yaml", "network: {ethernets: {eth0: {dhcp4: true}}\n")
    for check_id in ("net-dhcp-configured", "net-config-not-pinned", "net-vf-unmanaged"):
        (finding,) = findings(root, check_id)
        assert (finding.severity, finding.path) == ("info", "etc/netplan/50-cloud-init.yaml")
        assert finding.found.startswith("unknown: etc/netplan/50-cloud-init.yaml=")
