"""Where the WireServer is: DHCP option 245 from every lease format, under the target root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from azprov.host.leases import DEFAULT_WIRESERVER, wireserver_endpoint, wireserver_from_leases

DHCLIENT = """lease {{
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option routers 10.0.0.1;
  option dhcp-lease-time 4294967295;
  option unknown-245 {value};
  option domain-name "abc.internal.cloudapp.net";
  renew 0 2126/12/28 09:03:26;
}}
"""

NETWORKD = """# This is private data. Do not parse.
ADDRESS=10.0.0.4
NETMASK=255.255.255.0
ROUTER=10.0.0.1
SERVER_ADDRESS=10.0.0.1
DOMAINNAME=abc.internal.cloudapp.net
OPTION_245={value}
"""

NM_INTERNAL = """# This is private data. Do not parse.
ADDRESS=10.0.0.4
NETMASK=255.255.255.0
OPTION_245={value}
"""


def lease(root: Path, relative: str, text: str, age: float = 0.0) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    when = path.stat().st_mtime - age
    os.utime(path, (when, when))
    return path


# -- each lease format ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "template", "value"),
    [
        ("var/lib/dhcp/dhclient.eth0.leases", DHCLIENT, "a8:3f:81:10"),
        ("var/lib/dhcp/dhclient.leases", DHCLIENT, "a8:3f:81:10"),
        ("var/lib/dhclient/dhclient--eth0.lease", DHCLIENT, "a8:3f:81:10"),
        ("run/systemd/netif/leases/2", NETWORKD, "A83F8110"),
        ("run/systemd/netif/leases/2", NETWORKD, "a83f8110"),
        ("var/lib/NetworkManager/internal-0b1c-eth0.lease", NM_INTERNAL, "A83F8110"),
        ("var/lib/NetworkManager/dhclient-0b1c-eth0.lease", DHCLIENT, "a8:3f:81:10"),
    ],
)
def test_option_245_in_each_lease_format(
    tmp_path: Path, relative: str, template: str, value: str
) -> None:
    lease(tmp_path, relative, template.format(value=value))
    assert wireserver_from_leases(tmp_path) == "168.63.129.16"


def test_dhclient_drops_leading_zeros(tmp_path: Path) -> None:
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT.format(value="a:0:1:2"))
    assert wireserver_from_leases(tmp_path) == "10.0.1.2"


def test_dhclient_prints_printable_bytes_as_a_string(tmp_path: Path) -> None:
    # ISC dhclient writes an unknown option whose bytes are all printable as a
    # quoted string: 65.66.67.68 is "ABCD"; quotes and backslashes are escaped.
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT.format(value='"ABCD"'))
    assert wireserver_from_leases(tmp_path) == "65.66.67.68"
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT.format(value=r'"A\"\\D"'))
    assert wireserver_from_leases(tmp_path) == "65.34.92.68"


def test_last_lease_in_a_dhclient_file_wins(tmp_path: Path) -> None:
    text = DHCLIENT.format(value="a:0:0:1") + DHCLIENT.format(value="a:0:0:2")
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", text)
    assert wireserver_from_leases(tmp_path) == "10.0.0.2"


# -- precedence ----------------------------------------------------------------------------


def test_newest_lease_file_wins_across_clients(tmp_path: Path) -> None:
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT.format(value="a:0:0:1"), 300)
    lease(tmp_path, "run/systemd/netif/leases/2", NETWORKD.format(value="0A000002"), 10)
    lease(
        tmp_path,
        "var/lib/NetworkManager/internal-x.lease",
        NM_INTERNAL.format(value="0A000003"),
        100,
    )
    assert wireserver_from_leases(tmp_path) == "10.0.0.2"


def test_newest_lease_without_option_245_falls_back_to_an_older_one(tmp_path: Path) -> None:
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT.format(value="a:0:0:1"), 300)
    lease(tmp_path, "run/systemd/netif/leases/2", "ADDRESS=10.0.0.4\n", 0)
    assert wireserver_from_leases(tmp_path) == "10.0.0.1"


def test_configured_endpoint_beats_dhcp_and_dhcp_beats_the_default(tmp_path: Path) -> None:
    assert wireserver_endpoint(None, tmp_path) == DEFAULT_WIRESERVER
    lease(tmp_path, "run/systemd/netif/leases/2", NETWORKD.format(value="0A000009"))
    assert wireserver_endpoint(None, tmp_path) == "10.0.0.9"
    assert wireserver_endpoint("127.0.0.1:8080", tmp_path) == "127.0.0.1:8080"


def test_leases_are_read_only_under_the_target_root(tmp_path: Path) -> None:
    assert wireserver_from_leases(tmp_path) is None


# -- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "value"),
    [
        (DHCLIENT, "a8:3f:81"),  # three bytes
        (DHCLIENT, "a8:3f:81:10:01"),  # five bytes
        (DHCLIENT, "a8:3f::10"),  # an empty byte
        (DHCLIENT, "a8:3f:811:10"),  # a three-digit byte
        (DHCLIENT, "7f:0:0:1"),  # loopback
        (DHCLIENT, "0:0:0:0"),  # unspecified
        (DHCLIENT, "e0:0:0:1"),  # multicast
        (DHCLIENT, "ff:ff:ff:ff"),  # broadcast
        (DHCLIENT, '"ABC"'),  # a three-character string
        (NETWORKD, "A83F81"),
        (NETWORKD, "A83F8110FF"),
        (NETWORKD, "7F000001"),
    ],
)
def test_bad_option_245_is_ignored_with_a_warning(
    tmp_path: Path, template: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = lease(tmp_path, "run/systemd/netif/leases/2", template.format(value=value))
    assert wireserver_from_leases(tmp_path) is None
    assert wireserver_endpoint(None, tmp_path) == DEFAULT_WIRESERVER
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_bad_newest_lease_does_not_hide_a_good_older_one(tmp_path: Path) -> None:
    lease(tmp_path, "var/lib/dhcp/dhclient.eth0.leases", DHCLIENT.format(value="a:0:0:1"), 300)
    lease(tmp_path, "run/systemd/netif/leases/2", NETWORKD.format(value="7F000001"), 0)
    assert wireserver_from_leases(tmp_path) == "10.0.0.1"


def test_binary_garbage_in_a_lease_file_is_survived(tmp_path: Path) -> None:
    path = tmp_path / "run/systemd/netif/leases/2"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe\x00OPTION_245=zz\n\x80")
    assert wireserver_from_leases(tmp_path) is None


def test_unreadable_lease_entry_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "run/systemd/netif/leases/3").mkdir(parents=True)  # a directory, not a file
    lease(tmp_path, "run/systemd/netif/leases/2", NETWORKD.format(value="0A000007"), 100)
    assert wireserver_from_leases(tmp_path) == "10.0.0.7"


# -- endpoint strings ----------------------------------------------------------------------
