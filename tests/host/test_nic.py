"""azprov/host/nic.py: routes, bring-up and DHCP through the image's network manager.

The kernel is real: each scenario runs in a fresh network namespace, either in a
thread of the test process that unshared its own (`in_new_network`: the tools it
starts run there, the rest of the process keeps the machine's network), or, for
systemd-networkd, in a child started by `unshare -n -m` with its own /run and /sys, a
private D-Bus system bus and the real systemd-networkd. NetworkManager and dhclient
are not installed here: they are stub scripts first on the tools' PATH (the seam
test_provision_renewal.py uses), that record their argv, and `ip link` stays real.
Only documentation addresses (192.0.2.0/24, 198.51.100.0/24) are looked up.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import azprov.host.root as root_module
from azprov.errors import HostError
from azprov.host import nic
from azprov.host.root import TargetRoot
from tests.conftest import REPO, needs_root

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETWORKD_BINARY = "/lib/systemd/systemd-networkd"

# What `ip -o route get` (iproute2 6.1) printed here, in a namespace with a tap t0
# (10.9.0.2/24, up, no carrier), a default route via 10.9.0.1 and loopback up.
REAL_ANSWERS = {
    ("10.9.0.5", "t0"): "10.9.0.5 dev t0 src 10.9.0.2 uid 0 \\    cache \n",
    ("127.0.0.1", "lo"): "local 127.0.0.1 dev lo src 127.0.0.1 uid 0 \\    cache <local> \n",
    ("10.9.0.2", "lo"): "local 10.9.0.2 dev lo src 10.9.0.2 uid 0 \\    cache <local> \n",
    ("198.51.100.7", "t0"): "198.51.100.7 via 10.9.0.1 dev t0 src 10.9.0.2 uid 0 \\    cache \n",
    (
        "::1",
        "lo",
    ): "local ::1 from :: dev lo table local proto kernel src ::1 metric 0 pref medium\n",
}
# What `networkctl list --no-legend --no-pager` (systemd 252) printed here, networkd
# running with a .network file for t0 only.
REAL_LISTING = (
    "  1 lo loopback carrier    unmanaged\n"
    "  2 t0 ether    no-carrier configuring\n"
    "  3 t1 ether    no-carrier unmanaged\n"
)


# --- the parsers ----------------------------------------------------------------------


@pytest.mark.parametrize(("address", "device"), sorted(REAL_ANSWERS))
def test_real_route_answers_name_their_device(address: str, device: str) -> None:
    assert nic.route_device(REAL_ANSWERS[(address, device)], address) == device


@pytest.mark.parametrize(
    ("output", "why"),
    [
        ("", "not a route to"),
        ("198.51.100.8 dev t0 src 10.9.0.2 uid 0 \\    cache \n", "not a route to"),
        ("198.51.100.7 via 10.9.0.1 src 10.9.0.2\n", "not one device"),
        ("198.51.100.7 dev t0 dev t1\n", "not one device"),
        ("198.51.100.7 via 10.9.0.1 dev\n", "not one device"),
        ("198.51.100.7 dev t0\n198.51.100.7 dev t1\n", "more than one line"),
        ("198.51.100.7 dev t0\r", "more than one line"),
        ("198.51.100.7 dev -t0\n", "not a device name"),
        ("198.51.100.7 dev a/b\n", "not a device name"),
        ("198.51.100.7 dev eth0" + " " * 5000, "more than 4096"),
        ("blackhole 198.51.100.7 dev lo\n", "not a route to"),
    ],
)
def test_anything_else_is_refused(output: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        nic.route_device(output, "198.51.100.7")


names: st.SearchStrategy[str] = st.from_regex(r"[a-zA-Z0-9_.@+=-]{1,15}", fullmatch=True).filter(
    nic.valid_interface_name
)
ipv4 = st.ip_addresses(v=4).map(str)


@given(
    address=ipv4,
    device=names,
    kind=st.sampled_from(["", "local ", "broadcast ", "multicast "]),
    via=st.one_of(st.none(), ipv4),
    source=st.one_of(st.none(), ipv4),
    cache=st.sampled_from(
        ["", " \\    cache ", " \\    cache <local> ", " \\    cache expires 5sec"]
    ),
)
def test_an_answer_as_ip_prints_it_gives_its_device(
    address: str, device: str, kind: str, via: Optional[str], source: Optional[str], cache: str
) -> None:
    line = f"{kind}{address}{f' via {via}' if via else ''} dev {device}"
    line += f"{f' src {source}' if source else ''} uid 0{cache}\n"
    assert nic.route_device(line, address) == device


@settings(max_examples=400)
@given(output=st.text(max_size=300), address=st.sampled_from(["198.51.100.7", "::1"]))
def test_any_text_gives_a_valid_name_it_holds_or_a_value_error(output: str, address: str) -> None:
    try:
        device = nic.route_device(output, address)
    except ValueError:
        return
    assert nic.valid_interface_name(device)
    assert f"dev {device}" in output


@given(prefix=ipv4, device=names)
def test_a_route_to_another_address_is_refused(prefix: str, device: str) -> None:
    if prefix != "198.51.100.7":
        with pytest.raises(ValueError, match="not a route to"):
            nic.route_device(f"{prefix} dev {device} uid 0\n", "198.51.100.7")


def test_the_real_listing_gives_each_links_setup_state() -> None:
    assert nic.networkd_setup_state(REAL_LISTING, "t0") == "configuring"
    assert nic.networkd_setup_state(REAL_LISTING, "t1") == "unmanaged"
    assert nic.networkd_setup_state(REAL_LISTING, "eth9") is None
    assert nic.networkd_setup_state("", "t0") is None


@pytest.mark.parametrize(
    "listing",
    [
        "IDX LINK TYPE OPERATIONAL SETUP\n",
        "  2 t0 ether\n",
        "\n",
        "  2 t0 ether off pending extra\n",
    ],
)
def test_a_listing_line_that_is_no_row_is_refused(listing: str) -> None:
    with pytest.raises(ValueError, match="not a link row"):
        nic.networkd_setup_state(REAL_LISTING + listing, "t9")


@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 10**6), names, st.sampled_from(["ether", "loopback", "none"])
        ).map(lambda row: (*row, "routable", "configured")),
        unique_by=lambda row: row[1],
        max_size=8,
    ),
    text=st.text(max_size=200),
)
def test_listings_parse_back_and_any_text_is_a_row_state_or_a_value_error(
    rows: list[tuple[int, str, str, str, str]], text: str
) -> None:
    listing = "".join(
        f"{i:>3} {name:<15} {kind:<8} {op} {setup}\n" for i, name, kind, op, setup in rows
    )
    for _, name, *_rest in rows:
        assert nic.networkd_setup_state(listing, name) == "configured"
    try:
        state = nic.networkd_setup_state(text, "t0")
    except ValueError:
        return
    assert state is None or state in text.split()


@pytest.mark.parametrize("name", ["eth0", "enP1234s1", "t0", "a-b_c.d@1", "x" * 15])
def test_interface_names_azprov_uses(name: str) -> None:
    assert nic.valid_interface_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "x" * 16, "a/b", "a:b", "a b", "a\tb", "-x", "ethé", "a\x1b[0m"]
)
def test_names_azprov_does_not_put_on_a_command_line(name: str) -> None:
    assert not nic.valid_interface_name(name)


# --- the real kernel, in a network namespace of a thread ------------------------------


def in_new_network(action: Callable[[], T]) -> T:
    """Run `action` in a thread that has a network namespace of its own (loopback up):
    the tools it starts run in that namespace, nothing of the machine's changes."""
    libc = ctypes.CDLL(None, use_errno=True)
    machine = os.readlink("/proc/thread-self/ns/net")
    box: dict[str, Any] = {}

    def enter() -> None:
        if libc.unshare(CLONE_NEWNET) != 0:
            box["skip"] = f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
        elif os.readlink("/proc/thread-self/ns/net") == machine:
            box["skip"] = "the thread is still in the machine's network namespace"
        else:
            try:
                ip("link", "set", "lo", "up")
                box["value"] = action()
            except BaseException as exc:  # re-raised in the test's own thread
                box["error"] = exc

    thread = threading.Thread(target=enter, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the scenario did not end in 120 s"
    if "skip" in box:
        pytest.skip(box["skip"])
    if "error" in box:
        raise box["error"]
    return box["value"]


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


def tap(name: str, address: Optional[str] = None) -> None:
    ip("tuntap", "add", name, "mode", "tap")
    if address:
        ip("addr", "add", address, "dev", name)
    ip("link", "set", name, "up")


live = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None,
    reason="needs root, /dev/net/tun and ip(8)",
)


@live
def test_route_interface_names_the_device_the_kernel_chooses() -> None:
    def scenario() -> dict[str, Optional[str]]:
        tap("t0", "10.9.0.2/24")  # up, without carrier: its routes are there all the same
        tap("t1", "10.8.0.2/24")
        ip("route", "add", "198.51.100.0/24", "via", "10.9.0.1", "dev", "t0")
        ip("route", "add", "default", "via", "10.8.0.1", "dev", "t1")
        root = TargetRoot("/")
        return {
            address: nic.route_interface(root, address)
            for address in ("10.9.0.5", "198.51.100.7", "192.0.2.1", "10.9.0.2", "127.0.0.1")
        }

    assert in_new_network(scenario) == {
        "10.9.0.5": "t0",
        "198.51.100.7": "t0",
        "192.0.2.1": "t1",  # the default route
        "10.9.0.2": "lo",  # an address of this machine
        "127.0.0.1": "lo",
    }


@live
def test_no_route_is_none_whatever_the_kernel_says_about_it() -> None:
    def scenario() -> list[Optional[str]]:
        tap("t0", "10.9.0.2/24")
        ip("route", "add", "blackhole", "192.0.2.0/26")  # Invalid argument
        ip("route", "add", "unreachable", "192.0.2.64/26")  # No route to host
        ip("route", "add", "prohibit", "192.0.2.128/26")  # Permission denied
        ip("link", "set", "t0", "down")  # its routes go with it
        root = TargetRoot("/")
        addresses = ("198.51.100.7", "10.9.0.5", "192.0.2.1", "192.0.2.65", "192.0.2.129")
        return [nic.route_interface(root, address) for address in addresses]

    assert in_new_network(scenario) == [None] * 5


def test_an_address_that_is_no_address_is_refused_before_ip_runs() -> None:
    with pytest.raises(HostError, match=r"not an IP address: '198\.51\.100'"):
        nic.route_interface(TargetRoot("/"), "198.51.100")
    with pytest.raises(HostError, match="not an IP address: '-h'"):
        nic.route_interface(TargetRoot("/"), "-h")


@live
def test_wait_for_route_sees_the_route_come_and_gives_up_when_it_does_not() -> None:
    def scenario() -> tuple[bool, float, bool, float]:
        tap("t0")
        tap("t1", "10.8.0.2/24")
        ip("route", "add", "default", "via", "10.8.0.1", "dev", "t1")
        root = TargetRoot("/")
        # What a DHCP client does half a second from now: an address, and a route.
        subprocess.Popen(
            [
                "sh",
                "-c",
                "sleep 0.5; ip addr add 10.9.0.2/24 dev t0;"
                " ip route add 198.51.100.0/24 via 10.9.0.1 dev t0",
            ]
        )
        started = time.monotonic()
        found = nic.wait_for_route(root, "t0", ["192.0.2.1", "198.51.100.7"], timeout=10)
        found_after = time.monotonic() - started
        started = time.monotonic()
        # 192.0.2.1 goes through t1 (the default route) and never through t0.
        missed = nic.wait_for_route(root, "t0", ["192.0.2.1"], timeout=1.0, interval=0.1)
        return found, found_after, missed, time.monotonic() - started

    found, found_after, missed, missed_after = in_new_network(scenario)
    assert found and 0.4 < found_after < 5
    assert not missed and 0.9 < missed_after < 3


# --- bringing a NIC up: NetworkManager and dhclient as stubs, ip(8) real --------------


class Stubs:
    """Stub tools first on TargetRoot's PATH; each records `name args…` in a log."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch, only: bool = False):
        self.bin = directory / "stub-bin"
        self.bin.mkdir()
        self.log = directory / "stub-calls.log"
        path = str(self.bin) if only else f"{self.bin}:{root_module.COMMAND_PATH}"
        monkeypatch.setitem(root_module._ENV, "PATH", path)

    def add(self, name: str, body: str = "exit 0") -> None:
        script = self.bin / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {self.log}\n{body}\n')
        script.chmod(0o755)

    def active(self, service: Optional[str]) -> None:
        """A systemctl that says `service` (and nothing else) is active."""
        match = f"*is-active*{service}.service*) exit 0;;" if service else ""
        self.add("systemctl", f'case "$*" in {match} *) exit 3;; esac')

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stubs:
    return Stubs(tmp_path, monkeypatch)


@live
def test_dhclient_brings_the_nic_up_and_its_lease_routes_through_it(stubs: Stubs) -> None:
    stubs.active(None)  # neither networkd nor NetworkManager: dhclient, which "leases":
    stubs.add("dhclient", 'ip addr add 10.9.0.2/24 dev "$2"')

    def scenario() -> tuple[Optional[str], str, str, bool]:
        tap("t0")
        ip("link", "set", "t0", "down")
        root = TargetRoot("/")
        manager = nic.network_manager(root)
        done = nic.bring_up_with_dhcp(root, "t0")
        shown = ip("-o", "link", "show", "t0")
        return manager, done, shown, nic.wait_for_route(root, "t0", ["10.9.0.1"], timeout=5)

    manager, done, shown, routed = in_new_network(scenario)
    assert manager == "dhclient"
    assert stubs.calls()[-1] == "dhclient -1 t0"
    assert "<NO-CARRIER,BROADCAST,MULTICAST,UP>" in shown  # set up by ip(8), for real
    assert done == "brought t0 up; dhclient asked for a DHCP lease (dhclient -1 t0)"
    assert routed


def bring_up_a_new_tap(manager: Optional[str] = None) -> str:
    tap("t0")
    return nic.bring_up_with_dhcp(TargetRoot("/"), "t0", manager=manager)


@live
def test_networkmanager_is_asked_to_connect_the_device(stubs: Stubs) -> None:
    stubs.active("NetworkManager")
    stubs.add("nmcli")
    done = in_new_network(bring_up_a_new_tap)
    assert stubs.calls()[-1] == "nmcli --wait 45 device connect t0"
    assert "NetworkManager asked for a DHCP lease" in done


@live
def test_a_refused_connection_is_one_line_naming_the_command_and_the_nic(stubs: Stubs) -> None:
    stubs.add(
        "nmcli",
        "echo 'Error: Connection activation failed: No suitable device found for this"
        " connection (device t0 not available because device is strictly unmanaged).' >&2\nexit 4",
    )
    with pytest.raises(HostError) as caught:
        in_new_network(lambda: bring_up_a_new_tap("NetworkManager"))
    message = str(caught.value)
    assert message.startswith("nmcli --wait 45 device connect t0: nmcli exited with status 4:")
    assert "strictly unmanaged" in message and "\n" not in message


@live
def test_a_dhclient_that_hangs_is_stopped_at_its_time_limit(
    stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nic, "DHCLIENT_TIMEOUT", 0.5)
    stubs.add("dhclient", "exec sleep 30")
    started = time.monotonic()
    with pytest.raises(HostError, match=r"^dhclient -1 t0: dhclient did not finish in 0.5 s$"):
        in_new_network(lambda: bring_up_a_new_tap("dhclient"))
    assert time.monotonic() - started < 10


@live
def test_a_nic_that_is_gone_fails_at_ip_link_naming_it(stubs: Stubs) -> None:
    stubs.add("dhclient")
    with pytest.raises(
        HostError, match=r'^ip link set dev eth7 up: ip exited with status 1: .*"eth7"'
    ):
        in_new_network(lambda: nic.bring_up_with_dhcp(TargetRoot("/"), "eth7", manager="dhclient"))
    assert stubs.calls() == []


def test_without_any_network_manager_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubs = Stubs(tmp_path, monkeypatch, only=True)  # not even a dhclient to be found
    stubs.active(None)
    with pytest.raises(
        HostError, match="dhclient is not installed: nothing can ask for a DHCP lease on eth1"
    ):
        nic.bring_up_with_dhcp(TargetRoot("/"), "eth1")
    assert [call.split()[0] for call in stubs.calls()] == ["systemctl", "systemctl"]


@pytest.mark.parametrize("name", ["-h", "eth0 eth1", "a/b", "x" * 16])
def test_a_name_that_is_no_interface_name_runs_nothing(stubs: Stubs, name: str) -> None:
    stubs.active("systemd-networkd")
    with pytest.raises(HostError, match="not a network interface name"):
        nic.bring_up_with_dhcp(TargetRoot("/"), name)
    with pytest.raises(HostError, match="not a network interface name"):
        nic.renew_leases(TargetRoot("/"), ["eth0", name])
    assert stubs.calls() == []


def test_each_manager_has_its_own_lease_request() -> None:
    assert nic.lease_request("systemd-networkd", "eth1") == (
        ["networkctl", "reconfigure", "eth1"],
        nic.NETWORKCTL_TIMEOUT,
    )
    assert nic.lease_request("NetworkManager", "eth1")[0] == [
        "nmcli",
        "--wait",
        "45",
        "device",
        "connect",
        "eth1",
    ]
    assert nic.lease_request("dhclient", "eth1") == (["dhclient", "-1", "eth1"], 90.0)
    with pytest.raises(HostError, match="unknown network manager 'wicked' for eth1"):
        nic.lease_request("wicked", "eth1")


# --- which manager, and renewing leases (publish_hostname's path) ---------------------


@pytest.mark.parametrize(
    ("active", "dhclient", "expected"),
    [
        ("systemd-networkd", True, "systemd-networkd"),
        ("NetworkManager", True, "NetworkManager"),
        (None, True, "dhclient"),
        (None, False, None),
    ],
)
def test_the_manager_is_the_active_service_else_an_installed_dhclient(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    active: Optional[str],
    dhclient: bool,
    expected: Optional[str],
) -> None:
    stubs = Stubs(tmp_path, monkeypatch, only=True)
    stubs.active(active)
    if dhclient:
        stubs.add("dhclient")
    assert nic.network_manager(TargetRoot("/")) == expected
    assert "systemctl is-active --quiet systemd-networkd.service" in stubs.calls()


@pytest.mark.parametrize(
    ("active", "calls", "done"),
    [
        (
            "systemd-networkd",
            ["networkctl renew eth0 eth1"],
            "renewed the DHCP lease through systemd-networkd (eth0, eth1)",
        ),
        (
            "NetworkManager",
            ["nmcli device reapply eth0", "nmcli device reapply eth1"],
            "asked NetworkManager to renew the DHCP lease (eth0, eth1)",
        ),
        (
            None,
            ["dhclient -1 eth0", "dhclient -1 eth1"],
            "renewed the DHCP lease through dhclient (eth0, eth1)",
        ),
    ],
)
def test_leases_are_renewed_through_the_running_manager(
    stubs: Stubs, active: Optional[str], calls: list[str], done: str
) -> None:
    stubs.active(active)
    for tool in ("networkctl", "nmcli", "dhclient"):
        stubs.add(tool)
    assert nic.renew_leases(TargetRoot("/"), ["eth0", "eth1"]) == done
    assert [call for call in stubs.calls() if not call.startswith("systemctl")] == calls


def test_interfaces_lists_the_live_directory_but_loopback_and_odd_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    net = tmp_path / "class-net"
    net.mkdir()
    for name in ("lo", "eth1", "eth0", "-odd", "enP1234s1"):
        (net / name).mkdir()
    monkeypatch.setattr(nic, "SYS_CLASS_NET", str(net))
    with caplog.at_level(logging.WARNING):
        assert nic.interfaces(TargetRoot("/")) == ["enP1234s1", "eth0", "eth1"]
    assert "leaving out the network interface '-odd'" in caplog.text
    monkeypatch.setattr(nic, "SYS_CLASS_NET", str(tmp_path / "missing"))
    with pytest.raises(HostError, match=r"^cannot list the interfaces in .*missing: No such file"):
        nic.interfaces(TargetRoot("/"))


def test_another_root_runs_nothing_and_says_so(
    tmp_path: Path, stubs: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    for tool in ("systemctl", "ip", "networkctl", "nmcli", "dhclient"):
        stubs.add(tool)
    image = tmp_path / "image"
    image.mkdir()
    root = TargetRoot(image)
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert nic.network_manager(root) is None
        assert nic.renew_leases(root, ["eth0"]) == nic.SKIPPED
        assert nic.interfaces(root) == []
        assert nic.route_interface(root, "198.51.100.7") is None
        assert nic.bring_up_with_dhcp(root, "eth1") == nic.SKIPPED
        assert nic.wait_for_route(root, "eth1", ["198.51.100.7"], timeout=30) is False
    assert time.monotonic() - started < 5
    assert stubs.calls() == []
    for action in (
        "asking which network manager runs",
        "renewing the DHCP leases",
        "listing the network interfaces",
        "looking up the route to 198.51.100.7",
        "bringing up eth1 with DHCP",
        "waiting for a route through eth1",
    ):
        assert (
            f"skipping {action}: the target root is {image}, not the running system" in caplog.text
        )


# --- the real systemd-networkd, in a child with its own namespaces -----------------------

NETWORK_FILE = "[Match]\nName=managed0\n\n[Network]\nDHCP=ipv4\n"
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")


def networkd_sandbox(udev: str) -> None:
    """The child's side (run as `unshare -n -m --propagation private python -c …`): a
    private /run with a D-Bus system bus and systemd-networkd, which has a .network
    file for the tap managed0 and none for the tap stray0; prints what nic.py did, as
    JSON. With `udev` "absent", /sys is read-only and networkd takes links in hand at
    once; with "awaited" it waits for a udev that never comes (links stay pending)."""

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=10)

    def die_with_this_process() -> None:
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

    run("mount", "--make-rprivate", "/")
    run("mount", "-t", "tmpfs", "tmpfs", "/run")
    # This namespace's own sysfs (its links only); read-only means "no udev" to networkd.
    run("mount", "-t", "sysfs", *(["-o", "ro"] if udev == "absent" else []), "sysfs", "/sys")
    run("ip", "link", "set", "lo", "up")
    for name in ("managed0", "stray0"):
        run("ip", "tuntap", "add", name, "mode", "tap")
    Path("/run/systemd/network").mkdir(parents=True)
    Path("/run/systemd/network/50-managed0.network").write_text(NETWORK_FILE)
    Path("/run/dbus").mkdir()
    started = [
        subprocess.Popen(
            ["dbus-daemon", "--system", "--nofork", "--nopidfile"],
            preexec_fn=die_with_this_process,
        )
    ]
    try:
        wait_for(lambda: Path("/run/dbus/system_bus_socket").exists())
        started.append(subprocess.Popen([NETWORKD_BINARY], preexec_fn=die_with_this_process))
        wait_for(networkd_answers)
        # networkd really runs, but not under a systemd to ask: systemctl says so for it.
        stubs = Path("/run/stub-bin")
        stubs.mkdir()
        (stubs / "systemctl").write_text(
            '#!/bin/sh\ncase "$*" in *is-active*systemd-networkd.service*) exit 0;; esac\nexit 3\n'
        )
        (stubs / "systemctl").chmod(0o755)
        root_module._ENV["PATH"] = f"{stubs}:{root_module.COMMAND_PATH}"
        root = TargetRoot("/")
        results: dict[str, Any] = {
            "interfaces": nic.interfaces(root),
            "manager": nic.network_manager(root),
        }
        for name in ("managed0", "stray0"):
            results[name] = outcome(nic.bring_up_with_dhcp, root, name, settle=1.0)
            results[f"renew {name}"] = outcome(nic.renew_leases, root, [name])
        print(json.dumps(results))
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=10)


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.05)


def networkd_answers() -> bool:
    """networkd holds its bus name and has listed the taps."""
    owned = subprocess.run(
        ["busctl", "--system", "call", *BUS, "NameHasOwner", "s", "org.freedesktop.network1"],
        capture_output=True,
        text=True,
        check=False,
    )
    listing = subprocess.run(
        ["networkctl", "list", "--no-legend", "--no-pager"],
        capture_output=True,
        text=True,
        check=False,
    )
    return owned.stdout.strip() == "b true" and "managed0" in listing.stdout


def outcome(action: Callable[..., str], *args: Any, **kwargs: Any) -> dict[str, str]:
    try:
        return {"done": action(*args, **kwargs)}
    except HostError as exc:
        return {"error": str(exc)}


def run_sandbox(udev: str) -> dict[str, Any]:
    code = f"from tests.host.test_nic import networkd_sandbox; networkd_sandbox({udev!r})"
    result = subprocess.run(
        ["unshare", "-n", "-m", "--propagation", "private", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


networkd_here = pytest.mark.skipif(
    not all(map(os.path.exists, (NETWORKD_BINARY, "/dev/net/tun")))
    or not all(map(shutil.which, ("dbus-daemon", "busctl", "networkctl", "unshare"))),
    reason="needs systemd-networkd, networkctl, busctl, dbus-daemon, unshare and /dev/net/tun",
)


@needs_root
@networkd_here
def test_real_networkd_configures_a_matched_nic_and_refuses_an_unmatched_one() -> None:
    results = run_sandbox("absent")
    assert results["interfaces"] == ["managed0", "stray0"]  # the namespace's own sysfs
    assert results["manager"] == "systemd-networkd"
    assert results["managed0"] == {
        "done": "brought managed0 up; systemd-networkd is asking for a DHCP lease (configuring)"
    }
    assert results["stray0"] == {
        "error": "systemd-networkd does not manage stray0 (no .network file matches it),"
        " so it asks for no DHCP lease there"
    }
    assert results["renew managed0"] == {
        "done": "renewed the DHCP lease through systemd-networkd (managed0)"
    }
    assert results["renew stray0"] == {
        "error": "networkctl renew: networkctl exited with status 1: Failed to renew dynamic"
        " configuration of interface stray0: Interface stray0 is not managed by systemd-networkd"
    }


@needs_root
@networkd_here
def test_a_nic_networkd_has_not_taken_in_hand_yet_is_a_logged_outcome() -> None:
    """networkd waits for udev to announce a new link before it matches it to a
    .network file: until it has, there is nothing to refuse, only to report."""
    results = run_sandbox("awaited")
    for name in ("managed0", "stray0"):
        assert results[name] == {
            "done": f"systemd-networkd has not taken {name} in hand after 1 s"
        }
