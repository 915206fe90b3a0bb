"""This VM's identity: the VM ID the platform knows it by, read from DMI.

On Generation 1 VMs (BIOS: neither /sys/firmware/efi nor /dev/efi) the
SMBIOS UUID has its first three fields byte-swapped relative to the vmId IMDS
reports, so it is swapped back.
"""

from __future__ import annotations

import string

from azprov.errors import FileTooLarge, HostError, IdentityInvalid, IdentityUnreadable
from azprov.host.confined import Links
from azprov.host.files import read_fd
from azprov.host.root import TargetRoot

PRODUCT_UUID = "/sys/class/dmi/id/product_uuid"
# A UUID is 36 characters and a newline; anything much longer is not one, and is
# never read in full (sysfs reports 4096 as the size of every attribute, so the
# size on record cannot be trusted here: the read itself stops at the cap).
UUID_CAP = 128
# How much of a value that is not a UUID an error may quote: enough to tell a
# firmware that reports zeros or "Not Settable" from a stray file, too little to
# carry a secret (the error goes to stderr, KVP and the platform).
QUOTED_CHARS = 8


def read_vm_id(root: TargetRoot) -> str:
    """The platform's vmId for this machine, lower-case."""
    raw = _read_product_uuid(root)
    text = raw.decode("ascii", "replace").strip()
    digits = _uuid_digits(text)
    if digits is None:
        raise IdentityInvalid(
            f"{PRODUCT_UUID} ({len(raw)} bytes, starting {_prefix(text)}) is not a UUID",
            path=PRODUCT_UUID,
        )
    if is_generation_1(root):
        # The first three fields (4, 2 and 2 bytes) are little-endian in the SMBIOS.
        octets = bytes.fromhex(digits)
        swapped = octets[3::-1] + octets[5:3:-1] + octets[7:5:-1] + octets[8:]
        digits = swapped.hex()
    return "-".join((digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]))


def _uuid_digits(text: str) -> str | None:
    """The 32 hex digits of a UUID as Python's uuid.UUID reads one (braces, a urn:uuid:
    prefix and hyphens allowed), lower-case; None for anything else. (Not uuid itself:
    it imports `platform`, 3 ms of a first boot's CPU, for nothing azprov uses.)"""
    digits = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(digits) != 32 or not all(char in string.hexdigits for char in digits):
        return None
    return digits.lower()


def _read_product_uuid(root: TargetRoot) -> bytes:
    """At most UUID_CAP bytes of the DMI product UUID, read through the root's door.

    On the running system /sys/class/dmi/id is a link into /sys/devices, resolved
    inside the root. In an offline tree no link is followed at all: a product_uuid
    pointing at a shadow file, the image's or the host's, is refused unread.
    """
    links = Links.IN_ROOT if root.live else Links.REFUSE
    try:
        with root.open_regular(PRODUCT_UUID, links=links) as fd:
            if fd is None:
                raise IdentityUnreadable(
                    f"cannot read the VM ID: there is no {PRODUCT_UUID}", path=PRODUCT_UUID
                )
            return read_fd(fd, UUID_CAP, PRODUCT_UUID, trust_size=False)
    except FileTooLarge:
        raise IdentityInvalid(
            f"{PRODUCT_UUID} holds more than {UUID_CAP} bytes: not a UUID", path=PRODUCT_UUID
        ) from None
    except OSError as exc:
        raise IdentityUnreadable(
            f"cannot read the VM ID from {PRODUCT_UUID}: {exc.strerror or exc}",
            path=PRODUCT_UUID,
        ) from None
    except IdentityUnreadable:
        raise
    except HostError as exc:  # a refused link, a FIFO, a directory…
        raise IdentityUnreadable(f"cannot read the VM ID: {exc}", path=PRODUCT_UUID) from None


def _prefix(text: str) -> str:
    """The first few characters of a bad value, quoted, with the rest left out."""
    shown = repr(text[:QUOTED_CHARS])
    return shown + ("…" if len(text) > QUOTED_CHARS else "")


def try_vm_id(root: TargetRoot) -> str | None:
    """The VM ID, or None where there is none to read (used only to label reports)."""
    try:
        return read_vm_id(root)
    except IdentityUnreadable:
        return None


def is_generation_1(root: TargetRoot) -> bool:
    return root.stat("/sys/firmware/efi") is None and root.stat("/dev/efi") is None
