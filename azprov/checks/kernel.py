"""The kernel the image boots: its architecture, its config, its modules in the initramfs."""

from __future__ import annotations

import functools
import re
import struct
from typing import Iterator, Optional

from azprov.checks.initramfs import list_initramfs
from azprov.checks.model import Note, check, unknown
from azprov.checks.tree import Tree
from azprov.checks.versions import rpm_part_compare

EM_X86_64 = 62
EM_AARCH64 = 183


def elf_machine(tree: Tree) -> Optional[tuple[int, int]]:
    """(ELF class, e_machine) of the tree's usr/bin/env; None when it cannot be read."""
    for path in ("usr/bin/env", "bin/env", "sbin/init"):
        header = tree.head(path, 20)
        if header and len(header) >= 20 and header[:4] == b"\x7fELF":
            order = "<" if header[5] == 1 else ">"
            return header[4], struct.unpack(order + "H", header[18:20])[0]
    return None


def is_arm64(tree: Tree) -> bool:
    found = elf_machine(tree)
    return found is not None and found[1] == EM_AARCH64


def default_kernel(tree: Tree) -> Optional[str]:
    """The newest kernel version with a `boot/vmlinuz-*` (what grub's default entry boots)."""

    def find() -> Optional[str]:
        versions = [p.split("vmlinuz-", 1)[1] for p in tree.glob("boot/vmlinuz-*")]
        versions += [p.split("/")[-2] for p in tree.glob("usr/lib/modules/*/vmlinuz")]
        versions = [v for v in versions if "rescue" not in v]
        # rpm's segment rule orders Debian's `6.1.0-18-amd64` and Fedora's
        # `5.14.0-362.el9.x86_64` alike (the one version comparison, never a
        # home-made split that cannot compare `rc1` with `18`).
        return max(versions, key=functools.cmp_to_key(rpm_part_compare)) if versions else None

    return tree.memo("kernel.version", find)


def kernel_config(tree: Tree) -> Optional[dict[str, str]]:
    """`CONFIG_X -> y/m/value` of the default kernel; None when its config is not in the tree."""

    def read() -> Optional[dict[str, str]]:
        version = default_kernel(tree)
        if version is None:
            return None
        for path in (f"boot/config-{version}", f"usr/lib/modules/{version}/config"):
            text = tree.read_text(path)
            if text is not None:
                pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
                return {key: value for key, value in pairs if key.startswith("CONFIG_")}
        return None

    return tree.memo("kernel.config", read)


def config_path(tree: Tree) -> str:
    return f"boot/config-{default_kernel(tree) or '<kver>'}"


@check(
    "arch-64bit",
    "error",
    consequence="Azure runs only 64-bit x86-64 and arm64 guests",
    source="LISA verify_azure_64bit_os",
)
def arch_64bit(tree: Tree) -> Iterator[Note]:
    found = elf_machine(tree)
    if found is None:
        yield unknown("usr/bin/env", "no readable ELF binary (usr/bin/env, bin/env, sbin/init)")
    elif found[0] != 2 or found[1] not in (EM_X86_64, EM_AARCH64):
        yield Note(
            "usr/bin/env",
            f"is ELF class {found[0]}, machine {found[1]} (not x86-64 or AArch64)",
            "build a 64-bit x86-64 or arm64 image",
        )


# Hyper-V drivers: the config option and the module that must then be in the initramfs.
_BOOT_DRIVERS = {
    "CONFIG_HYPERV": "hv_vmbus",
    "CONFIG_HYPERV_STORAGE": "hv_storvsc",
    "CONFIG_HYPERV_NET": "hv_netvsc",
}
_NEEDED_OPTIONS = ("CONFIG_HYPERV_UTILS", "CONFIG_HYPERV_BALLOON", "CONFIG_HYPERV_KEYBOARD")
_ADVISED_OPTIONS = ("CONFIG_WATCHDOG", "CONFIG_CIFS")


def initramfs_path(tree: Tree, version: str) -> Optional[str]:
    for path in (f"boot/initrd.img-{version}", f"boot/initramfs-{version}.img"):
        if tree.is_file(path):
            return path
    return None


@check(
    "hyperv-drivers-initramfs",
    "error",
    consequence="the root disk never appears and boot stops before anything runs",
    source="LISA verify_initrd_modules, verify_essential_kernel_modules; MS docs",
)
def hyperv_drivers_initramfs(tree: Tree) -> Iterator[Note]:
    config = kernel_config(tree)
    if config is None:
        yield unknown(config_path(tree), "no kernel config in the tree for the default kernel")
        return
    where = config_path(tree)
    for option in [*_BOOT_DRIVERS, *_NEEDED_OPTIONS, "CONFIG_HID_HYPERV_MOUSE", *_ADVISED_OPTIONS]:
        if config.get(option) not in ("y", "m"):
            severity = "warn" if option in _ADVISED_OPTIONS else None
            yield Note(where, f"has {option} unset", "use a kernel built for Hyper-V", severity)
    modules = [m for option, m in _BOOT_DRIVERS.items() if config.get(option) == "m"]
    nvme = config.get("CONFIG_BLK_DEV_NVME") == "m"
    if not modules and not nvme:
        return
    version = default_kernel(tree) or ""
    image = initramfs_path(tree, version)
    if image is None:
        yield Note(f"boot/initrd.img-{version}", "is missing", "update-initramfs -c -k " + version)
        return
    names = list_initramfs(tree, image)
    if isinstance(names, str):
        yield unknown(image, names, "list it with lsinitramfs/lsinitrd")
        return
    inside = {re.sub(r"\.ko(\..*)?$", "", n.rsplit("/", 1)[-1]) for n in names if ".ko" in n}
    missing = [m for m in modules if m not in inside]
    if missing:
        yield Note(
            image,
            f"lacks {', '.join(m + '.ko' for m in missing)}",
            "set MODULES=most in etc/initramfs-tools/initramfs.conf (dracut: add_drivers+="
            '" hv_vmbus hv_netvsc hv_storvsc "), then rebuild the initramfs',
        )
    if nvme and "nvme" not in inside:
        yield Note(
            image,
            "lacks nvme.ko",
            "add nvme and nvme_core to the initramfs",
            severity="warn",
            consequence="on NVMe VM sizes the OS disk is not found",
        )
