"""Disks: fstab names that survive the move to Azure, LVM pinning, swap, the image file."""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

from azprov.checks.bootcfg import boot_cmdline
from azprov.checks.model import Note, check, unknown, unreadable
from azprov.checks.tree import Tree

KERNEL_NAMES = re.compile(r"^/dev/(sd[a-z]|nvme\d|vd[a-z]|xvd[a-z]|hd[a-z])")
LOCAL_MOUNTS = ("/", "/boot", "/boot/efi")


@dataclasses.dataclass(frozen=True)
class Mount:
    where: str  # path:line
    device: str
    point: str
    fstype: str
    options: tuple[str, ...]


def fstab(tree: Tree) -> list[Mount]:
    mounts = []
    for number, line in enumerate(tree.lines("etc/fstab"), 1):
        words = line.split("#", 1)[0].split()
        if len(words) >= 3:
            options = tuple(words[3].split(",")) if len(words) > 3 else ()
            mounts.append(Mount(f"etc/fstab:{number}", words[0], words[1], words[2], options))
    return mounts


def _mount_units(tree: Tree) -> Iterator[tuple[str, str]]:
    for path in tree.glob("etc/systemd/system/*.mount") + tree.glob("etc/systemd/system/*.swap"):
        for line in tree.lines(path):
            if line.startswith("What="):
                yield path, line[len("What=") :].strip()


@check(
    "fstab-boot-safe",
    "error",
    consequence="device names change between hypervisors; a failed required mount means emergency mode",
    source="MS Debian/RHEL/Ubuntu docs; LISA verify_os_partition_identifier; systemd.mount(5)",
    reads=("etc/fstab",),
)
def fstab_boot_safe(tree: Tree) -> Iterator[Note]:
    mounts = fstab(tree)
    named = [(m.where, m.device) for m in mounts] + list(_mount_units(tree))
    for where, device in named:
        if KERNEL_NAMES.match(device):
            yield Note(where, f"names {device}", "use UUID=, LABEL= or PARTUUID=")
    if not any(m.point == "/" for m in mounts):
        yield Note(
            "etc/fstab",
            "has no / entry",
            "add the root file system by UUID=",
            severity="warn",
            consequence="the root is mounted only as the kernel command line says: it works but is fragile",
        )
    for mount in mounts:
        if (
            mount.point not in LOCAL_MOUNTS
            and mount.fstype != "swap"
            and "nofail" not in mount.options
            and mount.fstype not in ("proc", "sysfs", "tmpfs", "devpts")
        ):
            yield Note(
                mount.where,
                f"mounts {mount.point} without nofail",
                "add nofail (or remove the entry if its device does not ship with the image)",
                severity="warn",
                consequence="if the device is not there, boot stops in emergency mode",
            )


def _on_lvm(device: str) -> bool:
    return device.startswith("/dev/mapper/") or bool(re.match(r"^/dev/[^/]+/[^/]+$", device))


@check(
    "lvm-devices-file",
    "error",
    consequence="the devices file pins PVs to the build disk: on Azure the VG stays inactive, no root",
    source="virt-sysprep lvm-system-devices; MS docs",
    reads=("etc/fstab",),
)
def lvm_devices_file(tree: Tree) -> Iterator[Note]:
    lvm = [m for m in fstab(tree) if _on_lvm(m.device)]
    devices = "etc/lvm/devices/system.devices"
    if any(m.point in ("/", "/usr") for m in lvm) and tree.exists(devices):
        yield Note(devices, "exists while / or /usr is on LVM", f"remove {devices} before capture")
    elif lvm:
        yield Note(
            lvm[0].where,
            f"mounts {lvm[0].point} from LVM ({lvm[0].device})",
            "prefer plain partitions on the OS disk",
            severity="info",
            consequence="LVM on the OS disk complicates resizing and repair",
        )


@check(
    "swap-os-disk",
    "warn",
    consequence="the OS disk is IOPS-capped: swapping there stalls the VM; LISA fails the image",
    source="LISA verify_no_swap_on_osdisk; MS docs",
)
def swap_os_disk(tree: Tree) -> Iterator[Note]:
    yield from unreadable(tree, "etc/fstab")
    for mount in fstab(tree):
        if mount.fstype == "swap" and not mount.device.startswith("/dev/zram"):
            yield Note(
                mount.where, f"swaps on {mount.device}", "remove it (use the resource disk)"
            )
    for path in tree.glob("etc/systemd/system/*.swap"):
        yield Note(path, "is a swap unit", "remove it (use the resource disk)")
    for path in ("swapfile", "swap.img"):
        if tree.is_file(path):
            yield Note(path, "is a swap file on the OS disk", f"remove /{path} and its fstab line")
    cmdline = boot_cmdline(tree)
    for value in cmdline.values("resume"):
        yield Note(cmdline.source or "", f"has resume={value}", "drop resume= from the cmdline")


@check(
    "image-file-size",
    "error",
    consequence="Azure refuses a disk whose virtual size is not a whole number of MiB",
    source="MS generic VHD doc",
)
def image_file_size(tree: Tree) -> Iterator[Note]:
    del tree  # only a disk file has a size; `check` reads a tree
    yield unknown(
        "",
        "a directory tree was checked, not a disk file",
        "check the disk with 'qemu-img info': a fixed VHD of whole MiB (or raw, whole MiB)",
    )
