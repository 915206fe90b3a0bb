"""Where the WireServer is: DHCP option 245 in the target root's lease files.

Azure hands the WireServer address to the guest as DHCP option 245 (four
bytes). Each DHCP client keeps it in its own lease format; we read them all
(from the target root) and use the newest, else the well-known address.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Union

from azprov.confined import Confined
from azprov.errors import HostError

log = logging.getLogger(__name__)

# A lease file holds a few leases of about 600 bytes each (dhclient rewrites its file
# at every start); 1 MiB is far beyond any. A larger one is skipped with a warning.
LEASE_MAX_BYTES = 1 << 20
# A client keeps one lease file per interface (a handful, even on a VM with many NICs),
# rewritten in place; the newest is the running client's. More than 64 in one location
# is a pile no client made, and reading them all (20,000 links to one 1 MiB file took
# ten minutes) would hold up the boot before anything is reported.
LEASES_PER_LOCATION = 64
# Real lease files are a few KiB; a budget of 4 MiB over all of them reads every real
# one, and bounds the time spent scanning files that only look like leases.
LEASE_TOTAL_BYTES = 4 << 20

DEFAULT_WIRESERVER = "168.63.129.16"

# Lease locations, relative to the target root, newest-first by mtime at read time.
LEASE_GLOBS = (
    "var/lib/dhcp/dhclient*.lease*",  # ISC dhclient (Debian, Ubuntu)
    "var/lib/dhclient/*.lease*",  # ISC dhclient (RHEL, Fedora)
    "run/systemd/netif/leases/*",  # systemd-networkd
    "var/lib/NetworkManager/*.lease",  # NetworkManager (internal and dhclient backends)
)

# dhclient: `option unknown-245 a8:3f:81:10;`, or `option unknown-245 "ABCD";` when
# all four bytes happen to be printable (dhclient then writes a string, with
# backslash escapes);  networkd/NM: `OPTION_245=A83F8110`
_OPTION_245 = re.compile(
    r"(?:option\s+unknown-245\s+(?P<colon>[0-9a-fA-F:]+)\s*;)"
    r'|(?:option\s+unknown-245\s+"(?P<quoted>(?:[^"\\\n]|\\.)*)"\s*;)'
    r"|(?:^OPTION_245=(?P<hex>[0-9a-fA-F:]+)\s*$)",
    re.MULTILINE,
)
_ESCAPE = re.compile(r"\\([0-7]{3}|.)", re.DOTALL)


def wireserver_from_leases(root: Union[Path, Confined]) -> str | None:
    """The WireServer address from the newest DHCP lease that carries option 245."""
    tree = root if isinstance(root, Confined) else Confined(root)
    total = 0
    for name in _newest_lease_files(tree):
        path = tree.host_path(name)
        if total >= LEASE_TOTAL_BYTES:
            log.warning(
                "stopped looking for DHCP option 245 after reading %d bytes of leases", total
            )
            return None
        try:
            data = tree.read(name, LEASE_MAX_BYTES)
        except HostError as exc:  # a FIFO, a directory, a file far too large…
            log.warning("ignoring the DHCP lease file %s: %s", path, exc)
            continue
        if data is None:
            continue
        total += len(data)
        address = _option_245(data.decode("utf-8", errors="replace"), path)
        if address:
            log.debug("WireServer address %s from DHCP option 245 in %s", address, path)
            return address
    return None


def _newest_lease_files(tree: Confined) -> list[str]:
    """The lease files of every location, newest first by mtime, at most
    LEASES_PER_LOCATION of each: the newest is the lease the running client wrote."""
    candidates: list[tuple[float, str]] = []
    for pattern in LEASE_GLOBS:
        try:
            names = tree.glob(pattern)
        except HostError as exc:  # a lease directory with a million entries…
            log.warning("not looking for DHCP leases in %s: %s", pattern, exc)
            continue
        found: list[tuple[float, str]] = []
        for name in names:
            try:
                info = tree.stat(name)
            except HostError:
                continue
            if info is not None:
                found.append((info.st_mtime, name))
        if len(found) > LEASES_PER_LOCATION:
            log.warning(
                "%s matches %d files: reading only the newest %d",
                pattern,
                len(found),
                LEASES_PER_LOCATION,
            )
        candidates += sorted(found, reverse=True)[:LEASES_PER_LOCATION]
    return [name for _, name in sorted(candidates, reverse=True)]


def _option_245(text: str, path: Path) -> str | None:
    """The address in the last option 245 of a lease file; None when it has none."""
    last = None
    for match in _OPTION_245.finditer(text):
        last = match  # the last lease in a file wins
    if last is None:
        return None
    if last.group("quoted") is not None:
        found = f'"{last.group("quoted")}"'
        address = _address_from_bytes(_unescape(last.group("quoted")))
    else:
        found = last.group("colon") or last.group("hex")
        address = _address_from_hex(found)
    if not address:
        log.warning("ignoring DHCP option 245 %r in %s: not an IPv4 address", found, path)
    return address


def _address_from_hex(text: str) -> str | None:
    digits = text.replace(":", "")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 4 or not all(1 <= len(p) <= 2 for p in parts):
            return None
        digits = "".join(p.zfill(2) for p in parts)
    if len(digits) != 8:
        return None
    return _address_from_bytes(bytes.fromhex(digits))


def _unescape(quoted: str) -> bytes:
    """The bytes of a dhclient string: `\\ooo` is an octal byte, `\\c` the character c."""

    def byte(match: re.Match[str]) -> str:
        escaped = match.group(1)
        return chr(int(escaped, 8)) if len(escaped) == 3 else escaped

    return _ESCAPE.sub(byte, quoted).encode("latin-1", errors="replace")


def _address_from_bytes(raw: bytes) -> str | None:
    if len(raw) != 4:
        return None
    address = ipaddress.IPv4Address(raw)
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        return None
    if address.is_reserved:  # 240.0.0.0/4, with the broadcast address
        return None
    return str(address)


def wireserver_endpoint(configured: str | None, root: Union[Path, Confined]) -> str:
    """The configured endpoint, else DHCP option 245, else the well-known address."""
    if configured:
        return configured
    return wireserver_from_leases(root) or DEFAULT_WIRESERVER
