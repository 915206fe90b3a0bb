"""Network interfaces, and DHCP leases asked of the image's own network manager.

A lease is needed when the host name changes (Azure DNS learns the name from the DHCP
request) and in a pre-provisioned pool once the platform has moved the VM to the
customer's network (the primary NIC renews; a hot-attached NIC is brought up and asked
for one). It is always asked of what manages the network on the image —
systemd-networkd, NetworkManager or dhclient — never of a DHCP client of azprov's own:
that manager keeps the lease renewed and applies routes, DNS and hooks as the image
expects. Everything here acts on the running system; another root skips with a log line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import time
from typing import Iterable, Optional, Sequence

from azprov.errors import HostError, one_line
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

NETWORKD = "systemd-networkd"
NETWORK_MANAGER = "NetworkManager"
DHCLIENT = "dhclient"
SKIPPED = "skipped: the target root is not the running system"

SYS_CLASS_NET = "/sys/class/net"
IP_TIMEOUT = 10.0
NETWORKCTL_TIMEOUT = 15.0
# nmcli waits this long for the activation (its own default is 90 s), azprov a bit more.
NMCLI_WAIT = 45
# dhclient -1 gives up after its configured timeout (60 s unless dhclient.conf says so).
DHCLIENT_TIMEOUT = 90.0
# How long networkd may take to decide about a new link (it waits for udev first).
NETWORKD_SETTLE = 10.0

ROUTE_OUTPUT_CAP = 4096  # `ip -o route get` answers in one line of a few dozen bytes
# The types iproute2 may print before the destination of a route it found (not unicast).
_ROUTE_TYPES = frozenset(("unicast", "local", "broadcast", "anycast", "multicast"))
# What the kernel answers `ip route get` for an address no route leads to, and exit 2:
# no route or a `throw` one; an `unreachable`, `prohibit` or `blackhole` route.
_NO_ROUTE = re.compile(
    r"RTNETLINK answers: (Network is unreachable|No route to host|Permission denied"
    r"|Invalid argument)\Z"
)
# Kernel names (dev_valid_name): 1-15 bytes, no '/', ':' or white space. azprov also
# wants them printable ASCII (they go into logs) and not starting with '-' (they go on
# command lines, after which a tool would read them as an option).
_INTERFACE_NAME = re.compile(r"(?!-)[!-.0-9;-~]{1,15}\Z")
# `networkctl list --no-legend` (252, 257): IDX LINK TYPE OPERATIONAL SETUP; LINK may hold U+3000.
_NETWORKCTL_ROW = re.compile(r" *([0-9]{1,10}) +([^ ]+) +(\S+) +(\S+) +(\S+) *\Z")
NETWORKCTL_LIST_CAP = 1 << 20
_UNDECIDED = (None, "pending", "initialized", "n/a")  # networkd has not matched the link yet


def valid_interface_name(name: str) -> bool:
    """True for a name azprov puts on a command line (see _INTERFACE_NAME)."""
    return bool(_INTERFACE_NAME.match(name)) and name not in (".", "..")


def _checked(interface: str) -> str:
    if not valid_interface_name(interface):
        raise HostError(f"not a network interface name: {interface!r}", interface=interface)
    return interface


def network_manager(root: TargetRoot) -> Optional[str]:
    """Which manager asks for the leases: NETWORKD or NETWORK_MANAGER when its service
    is active, else DHCLIENT when that tool is installed, else None."""
    if root.skip_live("asking which network manager runs"):
        return None
    for service in (NETWORKD, NETWORK_MANAGER):
        active = root.systemctl("is-active", "--quiet", f"{service}.service", check=False)
        if active.returncode == 0:
            return service
    return DHCLIENT if root.has_tool("dhclient") else None


def renew_leases(root: TargetRoot, interfaces: Sequence[str]) -> str:
    """Renew the DHCP leases of `interfaces` through the running manager; returns what
    was done, in a line."""
    if root.skip_live("renewing the DHCP leases"):
        return SKIPPED
    named = ", ".join(_checked(name) for name in interfaces)
    manager = network_manager(root)
    if manager == NETWORKD:
        root.run(["networkctl", "renew", *interfaces], what="networkctl renew", timeout=15.0)
        return f"renewed the DHCP lease through systemd-networkd ({named})"
    if manager == NETWORK_MANAGER:
        for interface in interfaces:
            argv = ["nmcli", "device", "reapply", interface]
            root.run(argv, what="nmcli reapply", check=False, timeout=15)
        return f"asked NetworkManager to renew the DHCP lease ({named})"
    if manager == DHCLIENT:
        for interface in interfaces:
            root.run(["dhclient", "-1", interface], what="dhclient renew", check=False, timeout=30)
        return f"renewed the DHCP lease through dhclient ({named})"
    return "no running DHCP client found; Azure DNS learns the name at the next renewal"


def interfaces(root: TargetRoot) -> list[str]:
    """The running system's network interfaces but loopback, sorted ([] for another
    root). A name azprov would not put on a command line is left out, with a warning."""
    if root.skip_live("listing the network interfaces"):
        return []
    try:
        names = sorted(os.listdir(SYS_CLASS_NET))
    except OSError as exc:
        raise HostError(f"cannot list the interfaces in {SYS_CLASS_NET}: {exc.strerror}") from None
    for name in names:
        if not valid_interface_name(name):
            log.warning("leaving out the network interface %r: not a name azprov uses", name)
    return [name for name in names if name != "lo" and valid_interface_name(name)]


def route_device(output: str, address: str) -> str:
    """The device in `ip -o route get ADDRESS`'s answer (`ADDRESS [via GW] dev NAME …`,
    maybe after a route type such as `local`); ValueError for anything else."""
    if len(output) > ROUTE_OUTPUT_CAP:
        raise ValueError(f"more than {ROUTE_OUTPUT_CAP} characters")
    text = output[:-1] if output.endswith("\n") else output
    if "\n" in text or "\r" in text:
        raise ValueError("more than one line")
    # -o joins the answer's lines with " \\ "; a NIC's name may hold a backslash, or be "dev".
    tokens = [token for token in f"{text} ".split(" \\ ", 1)[0].split(" ") if token]
    if tokens and tokens[0] in _ROUTE_TYPES:
        tokens = tokens[1:]
    if not tokens or not _same_address(tokens[0], address):
        raise ValueError(f"not a route to {address}")
    places = [i for i, token in enumerate(tokens) if token == "dev" and tokens[i - 1] != "dev"]
    if len(places) != 1 or places[0] + 1 == len(tokens):
        raise ValueError("not one device")
    device = tokens[places[0] + 1]
    if not valid_interface_name(device):
        raise ValueError(f"not a device name: {device!r}")
    return device


def _same_address(shown: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(shown) == ipaddress.ip_address(address)
    except ValueError:
        return False


def route_interface(root: TargetRoot, address: str) -> Optional[str]:
    """The device the kernel would send a packet for `address` through; None when no
    route leads there (or the root is not the running system)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise HostError(f"not an IP address: {address!r}", address=address) from None
    if root.skip_live(f"looking up the route to {address}"):
        return None
    what = f"ip -o route get {address}"
    result = root.run(
        ["ip", "-o", "route", "get", address], what=what, check=False, timeout=IP_TIMEOUT
    )
    stderr = one_line(result.stderr.decode("utf-8", "replace"))
    if result.returncode == 2 and _NO_ROUTE.match(stderr):
        return None
    if result.returncode != 0:
        raise HostError(
            f"{what}: ip exited with status {result.returncode}: {stderr[-300:] or 'no message'}",
            address=address,
        )
    try:
        return route_device(result.stdout.decode("utf-8", "replace"), address)
    except ValueError as exc:
        raise HostError(f"{what}: unexpected answer ({exc})", address=address) from None


def wait_for_route(
    root: TargetRoot,
    interface: str,
    addresses: Iterable[str],
    timeout: float,
    interval: float = 0.2,
) -> bool:
    """Wait until the route to one of `addresses` (the WireServer's, IMDS') goes through
    `interface`; False when none does within `timeout` seconds, or the root is not the
    running system."""
    wanted = list(addresses)
    if root.skip_live(f"waiting for a route through {interface}"):
        return False
    deadline = time.monotonic() + timeout
    while True:
        for address in wanted:
            if route_interface(root, address) == interface:
                log.info("the route to %s goes through %s", address, interface)
                return True
        if time.monotonic() + interval > deadline:
            return False
        time.sleep(interval)


def bring_up_with_dhcp(
    root: TargetRoot,
    interface: str,
    *,
    manager: Optional[str] = None,
    settle: float = NETWORKD_SETTLE,
) -> str:
    """Set `interface` up and ask the running network manager (found when `manager` is
    None) for a DHCP lease on it; returns what was done, in a line.

    HostError, naming the command and the interface, when a step fails, when no manager
    runs, or when systemd-networkd does not manage the interface (no .network file
    matches it: it would never ask for a lease there, and waiting for a route would only
    time out). `settle`: how long networkd may take to decide.
    """
    _checked(interface)
    if root.skip_live(f"bringing up {interface} with DHCP"):
        return SKIPPED
    manager = manager or network_manager(root)
    if manager is None:
        raise HostError(
            f"no network manager runs (systemd-networkd, NetworkManager) and dhclient is not"
            f" installed: nothing can ask for a DHCP lease on {interface}",
            interface=interface,
        )
    up = ["ip", "link", "set", "dev", interface, "up"]
    root.run(up, what=" ".join(up), timeout=IP_TIMEOUT)
    argv, timeout = lease_request(manager, interface)
    root.run(argv, what=" ".join(argv), timeout=timeout)
    if manager == NETWORKD:
        return _networkd_outcome(root, interface, settle)
    done = f"brought {interface} up; {manager} asked for a DHCP lease ({' '.join(argv)})"
    log.info("%s", done)
    return done


def lease_request(manager: str, interface: str) -> tuple[list[str], float]:
    """The command (and its time limit) that has `manager` ask for a lease on `interface`.

    networkd: `reconfigure` (in systemd 252 and 257 alike) matches the link to a .network
    file again and starts its DHCP afresh. `renew` fails on a link whose DHCP client has
    not started yet; `reconfigure` succeeds even on a link no .network file matches, so
    whether networkd manages it is read from `networkctl list` afterwards.
    """
    if manager == NETWORKD:
        return ["networkctl", "reconfigure", interface], NETWORKCTL_TIMEOUT
    if manager == NETWORK_MANAGER:
        argv = ["nmcli", "--wait", str(NMCLI_WAIT), "device", "connect", interface]
        return argv, NMCLI_WAIT + 15.0
    if manager == DHCLIENT:
        return ["dhclient", "-1", interface], DHCLIENT_TIMEOUT
    raise HostError(f"unknown network manager {manager!r} for {interface}", interface=interface)


def _networkd_outcome(root: TargetRoot, interface: str, settle: float) -> str:
    """What networkd made of `interface` after the reconfigure: its setup state, once
    networkd has decided (reconfigure answers before it has)."""
    deadline = time.monotonic() + settle
    argv = ["networkctl", "list", "--no-legend", "--no-pager"]
    while True:
        listing = root.run(argv, what=" ".join(argv), timeout=NETWORKCTL_TIMEOUT).stdout
        try:
            state = networkd_setup_state(listing.decode("utf-8", "replace"), interface)
        except ValueError as exc:
            raise HostError(f"networkctl list: unexpected answer ({exc})") from None
        if state not in _UNDECIDED or time.monotonic() + 0.2 > deadline:
            break
        time.sleep(0.2)
    if state == "unmanaged":
        raise HostError(
            f"systemd-networkd does not manage {interface} (no .network file matches it),"
            " so it asks for no DHCP lease there",
            interface=interface,
        )
    if state in ("failed", "linger"):
        raise HostError(f"systemd-networkd failed to configure {interface} ({state})")
    if state in _UNDECIDED:  # networkd waits for udev: it may still take the link later
        done = f"systemd-networkd has not taken {interface} in hand after {settle:g} s"
        log.warning("%s (%s)", done, state or "not listed")
        return done
    done = f"brought {interface} up; systemd-networkd is asking for a DHCP lease ({state})"
    log.info("%s", done)
    return done


def networkd_setup_state(listing: str, interface: str) -> Optional[str]:
    """The SETUP column of `interface` in `networkctl list --no-legend` output (None when
    it is not listed); ValueError for a line that is not such a row."""
    if len(listing) > NETWORKCTL_LIST_CAP:
        raise ValueError(f"more than {NETWORKCTL_LIST_CAP} characters")
    lines = listing.split("\n")
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        row = _NETWORKCTL_ROW.match(line)
        if row is None:
            raise ValueError(f"not a link row: {one_line(line)[:80]!r}")
        if row.group(2) == interface:
            return row.group(5)
    return None
