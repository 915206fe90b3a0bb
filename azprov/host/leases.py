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
    candidates: list[tuple[float, str]] = []
    for pattern in LEASE_GLOBS:
        try:
            names = tree.glob(pattern)
        except HostError as exc:  # a lease directory with a million entries…
            log.warning("not looking for DHCP leases in %s: %s", pattern, exc)
            continue
        for name in names:
            try:
                info = tree.stat(name)
            except HostError:
                continue
            if info is not None:
                candidates.append((info.st_mtime, name))
    for _, name in sorted(candidates, reverse=True):
        path = tree.host_path(name)
        try:
            data = tree.read(name, LEASE_MAX_BYTES)
        except HostError as exc:  # a FIFO, a directory, a file far too large…
            log.warning("ignoring the DHCP lease file %s: %s", path, exc)
            continue
        if data is None:
            continue
        text = data.decode("utf-8", errors="replace")
        last = None
        for match in _OPTION_245.finditer(text):
            last = match  # the last lease in a file wins
        if last is None:
            continue
        if last.group("quoted") is not None:
            found = f'"{last.group("quoted")}"'
            address = _address_from_bytes(_unescape(last.group("quoted")))
        else:
            found = last.group("colon") or last.group("hex")
            address = _address_from_hex(found)
        if address:
            log.debug("WireServer address %s from DHCP option 245 in %s", address, path)
            return address
        log.warning("ignoring DHCP option 245 %r in %s: not an IPv4 address", found, path)
    return None


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
