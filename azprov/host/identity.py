"""This VM's identity: the VM ID the platform knows it by, read from DMI.

On Generation 1 VMs (BIOS: neither /sys/firmware/efi nor /dev/efi) the
SMBIOS UUID has its first three fields byte-swapped relative to the vmId IMDS
reports, so it is swapped back.
"""

from __future__ import annotations

import uuid

from azprov.errors import IdentityInvalid, IdentityUnreadable
from azprov.host.root import TargetRoot

PRODUCT_UUID = "/sys/class/dmi/id/product_uuid"


def read_vm_id(root: TargetRoot) -> str:
    """The platform's vmId for this machine, lower-case."""
    path = root / PRODUCT_UUID
    try:
        raw = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityUnreadable(
            f"cannot read the VM ID from {PRODUCT_UUID}: {getattr(exc, 'strerror', None) or exc}",
            path=PRODUCT_UUID,
        ) from None
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        raise IdentityInvalid(
            f"{PRODUCT_UUID}={raw[:60]!r} is not a UUID", path=PRODUCT_UUID
        ) from None
    if is_generation_1(root):
        parsed = uuid.UUID(bytes=parsed.bytes_le)
    return str(parsed).lower()


def try_vm_id(root: TargetRoot) -> str | None:
    """The VM ID, or None where there is none to read (used only to label reports)."""
    try:
        return read_vm_id(root)
    except IdentityUnreadable:
        return None


def is_generation_1(root: TargetRoot) -> bool:
    return not ((root / "/sys/firmware/efi").exists() or (root / "/dev/efi").exists())
