"""The provisioning media: the CD Azure attaches at first boot, and ovf-env.xml on it.

The CD is mounted read-only on a private mount point only for as long as it
takes to read one file. No media is normal: IMDS-only provisioning. Parsing
the document is the fabric's job (`azprov.fabric.ovf`); this only finds it.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

from azprov.config import HostPath
from azprov.errors import FileTooLarge, HostError, InvalidInput
from azprov.host.confined import Confined, Links
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

OVF_FILE = "ovf-env.xml"
MAX_OVF_BYTES = 1 << 20  # custom data is at most 64 KiB; the whole file stays far below this
CD_DEVICES = ("/dev/sr0", "/dev/disk/by-id/ata-Virtual_CD*")


def _read_ovf(directory: Path) -> Optional[bytes]:
    """ovf-env.xml in `directory` (the mounted CD, or `[media] path`), None when absent.
    It carries the password: a link in its place is refused, not followed, and so is
    anything but a regular file (a FIFO must not hang the boot)."""
    try:
        return Confined(directory).read(OVF_FILE, MAX_OVF_BYTES, links=Links.REFUSE)
    except FileTooLarge:
        raise InvalidInput(
            "ovf-env.xml", f"<over {MAX_OVF_BYTES} bytes>", "is too large"
        ) from None


def _read_ovf_in_root(root: TargetRoot, directory: str) -> Optional[bytes]:
    """ovf-env.xml in the tree's `directory`: the directory's links resolve inside the
    tree; the file itself, as on the CD, must not be a link."""
    resolved = root.resolve(directory)
    if resolved is None:
        return None
    try:
        return root.read(f"{resolved}/{OVF_FILE}", MAX_OVF_BYTES, links=Links.REFUSE)
    except FileTooLarge:
        raise InvalidInput(
            "ovf-env.xml", f"<over {MAX_OVF_BYTES} bytes>", "is too large"
        ) from None


def read_media(root: TargetRoot, configured_path: Optional[str]) -> Optional[bytes]:
    """ovf-env.xml's bytes from `[media] path` if set, else from the provisioning CD
    (live systems only); None when there is no media.

    `[media] path` is a directory inside the target root, resolved through its door
    (a link restarts at the tree's top), unless it is a `HostPath`: only the
    operator's `--config FILE` may name a directory on the host."""
    if configured_path:
        if isinstance(configured_path, HostPath) or root.live:
            data = _read_ovf(Path(configured_path))
        else:
            data = _read_ovf_in_root(root, configured_path)
        if data is None:
            raise InvalidInput("media.path", configured_path, f"holds no {OVF_FILE}")
        return data
    if not root.live:
        log.debug("no [media] path and not the running system: no provisioning media")
        return None
    for device in _cd_devices():
        data = _read_from_device(root, device)
        if data is not None:
            log.info("read %s from %s", OVF_FILE, device)
            return data
    log.info("no provisioning media found: provisioning from IMDS only")
    return None


def _cd_devices() -> list[str]:
    found: list[str] = []
    for pattern in CD_DEVICES:
        for device in sorted(glob.glob(pattern)):
            real = os.path.realpath(device)
            try:
                if not stat.S_ISBLK(os.stat(real).st_mode) or real in found:
                    continue
            except OSError:
                continue
            if _has_medium(real):
                found.append(real)
            else:
                log.debug("%s has no medium in it", device)
    return found


CDROM_DRIVE_STATUS = 0x5326  # linux/cdrom.h
CDS_DISC_OK = 4


def _has_medium(device: str) -> bool:
    """Ask the drive whether a disc is in it: mounting an empty drive fails, slowly
    (about a second under emulation, twice). Anything that cannot answer is tried."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        return fcntl.ioctl(fd, CDROM_DRIVE_STATUS, 0) == CDS_DISC_OK
    except OSError:
        return True  # not a CD drive (a USB stick, a loop device): let mount decide
    finally:
        os.close(fd)


def _read_from_device(root: TargetRoot, device: str) -> Optional[bytes]:
    """Mount `device` read-only (udf, then iso9660) on a private directory, read, unmount."""
    with tempfile.TemporaryDirectory(prefix="azprov-media-") as mount_point:
        os.chmod(mount_point, 0o700)
        for fstype in ("udf", "iso9660"):
            try:
                root.run(
                    ["mount", "-o", "ro,nosuid,nodev,noexec", "-t", fstype, device, mount_point],
                    what=f"mount {device}",
                    timeout=30,
                )
            except HostError as exc:
                log.debug("%s is not %s: %s", device, fstype, exc)
                continue
            try:
                return _read_ovf(Path(mount_point))
            finally:
                root.run(["umount", mount_point], what=f"unmount {device}", check=False)
        log.warning("could not mount %s as udf or iso9660; ignoring it", device)
    return None
