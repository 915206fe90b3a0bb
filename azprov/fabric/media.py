"""The provisioning media: ovf-env.xml from the CD Azure attaches at first boot.

It is the only source of the admin password and of custom data. The CD is
mounted read-only on a private mount point only for as long as it takes to
read one file. No media is normal: IMDS-only provisioning.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fcntl
import glob
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

from azprov.errors import HostError, InvalidInput
from azprov.fabric.models import Secret
from azprov.fabric.xmldoc import child, children, local_name, parse_xml, text
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

OVF_FILE = "ovf-env.xml"
MAX_OVF_BYTES = 1 << 20  # custom data is at most 64 KiB; the whole file stays far below this
CD_DEVICES = ("/dev/sr0", "/dev/disk/by-id/ata-Virtual_CD*")


@dataclasses.dataclass(frozen=True)
class OvfPublicKey:
    path: Optional[str]
    value: Optional[str]  # None: the key is only a certificate fingerprint
    fingerprint: Optional[str]


@dataclasses.dataclass(frozen=True)
class OvfEnv:
    hostname: Optional[str]
    username: Optional[str]
    password: Optional[Secret]
    disable_ssh_password_auth: Optional[bool]
    public_keys: tuple[OvfPublicKey, ...]
    custom_data: Optional[bytes]


def parse_ovf_env(content: bytes) -> OvfEnv:
    root = parse_xml(content, OVF_FILE)
    if local_name(root.tag) != "Environment":
        raise InvalidInput("ovf-env.xml", local_name(root.tag), "root element is not Environment")
    section = child(root, "ProvisioningSection", "LinuxProvisioningConfigurationSet")
    if section is None:
        raise InvalidInput(
            "ovf-env.xml", "ProvisioningSection", "has no LinuxProvisioningConfigurationSet"
        )
    password_node = child(section, "UserPassword")
    password = password_node.text if password_node is not None and password_node.text else None
    disable = text(section, "DisableSshPasswordAuthentication")
    if disable is not None and disable.lower() not in ("true", "false"):
        raise InvalidInput(
            "ovf-env.DisableSshPasswordAuthentication", disable, 'is neither "true" nor "false"'
        )
    keys = tuple(
        OvfPublicKey(
            path=text(key, "Path"), value=text(key, "Value"), fingerprint=text(key, "Fingerprint")
        )
        for key in children(child(section, "SSH", "PublicKeys"), "PublicKey")
    )
    return OvfEnv(
        hostname=text(section, "HostName"),
        username=text(section, "UserName"),
        password=Secret(password) if password else None,
        disable_ssh_password_auth=None if disable is None else disable.lower() == "true",
        public_keys=keys,
        custom_data=_decode_custom_data(text(section, "CustomData")),
    )


def _decode_custom_data(encoded: Optional[str]) -> Optional[bytes]:
    if encoded is None:
        return None
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "ovf-env.CustomData", f"<{len(encoded)} characters>", "is not valid base64"
        ) from None


def _read_ovf(directory: Path) -> Optional[bytes]:
    path = directory / OVF_FILE
    try:
        # O_NONBLOCK: a FIFO planted as ovf-env.xml must not hang the boot.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(MAX_OVF_BYTES + 1)
    if len(data) > MAX_OVF_BYTES:
        raise InvalidInput("ovf-env.xml", f"<over {MAX_OVF_BYTES} bytes>", "is too large")
    return data


def read_media(root: TargetRoot, configured_path: Optional[str]) -> Optional[OvfEnv]:
    """ovf-env.xml from `[media] path` if set, else from the provisioning CD (live systems)."""
    if configured_path:
        data = _read_ovf(Path(configured_path))
        if data is None:
            raise InvalidInput("media.path", configured_path, f"holds no {OVF_FILE}")
        return parse_ovf_env(data)
    if not root.live:
        log.debug("no [media] path and not the running system: no provisioning media")
        return None
    for device in _cd_devices():
        data = _read_from_device(root, device)
        if data is not None:
            log.info("read %s from %s", OVF_FILE, device)
            return parse_ovf_env(data)
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
