"""This VM's identity: the VM ID the platform knows it by, read from DMI.

On Generation 1 VMs (BIOS: neither /sys/firmware/efi nor /dev/efi) the
SMBIOS UUID has its first three fields byte-swapped relative to the vmId IMDS
reports, so it is swapped back.
"""

from __future__ import annotations

import uuid

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
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise IdentityInvalid(
            f"{PRODUCT_UUID} ({len(raw)} bytes, starting {_prefix(text)}) is not a UUID",
            path=PRODUCT_UUID,
        ) from None
    if is_generation_1(root):
        parsed = uuid.UUID(bytes=parsed.bytes_le)
    return str(parsed).lower()


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
