"""modprobe policy: what `blacklist`, `install X /bin/true` and the cmdline keep from loading."""

from __future__ import annotations

import dataclasses
from typing import Iterator

from azprov.checks.bootcfg import boot_cmdline
from azprov.checks.kernel import config_path, default_kernel, kernel_config
from azprov.checks.model import Note, check, unknown
from azprov.checks.tree import Tree

MODPROBE_DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d")
# The provisioning media (UDF or ISO 9660 on an IDE/SCSI CD) and the Gen2 ESP.
NEEDED = ("udf", "iso9660", "cdrom", "sr_mod", "vfat")
_OPTIONS = {
    "CONFIG_UDF_FS": "udf",
    "CONFIG_ISO9660_FS": "iso9660",
    "CONFIG_BLK_DEV_SR": "sr_mod",
    "CONFIG_VFAT_FS": "vfat",
}
_NO_OPS = ("/bin/true", "/bin/false", "/usr/bin/true", "/usr/bin/false", "true", "false")


@dataclasses.dataclass(frozen=True)
class Block:
    module: str
    where: str  # path:line or "kernel command line"
    how: str


def _module(name: str) -> str:
    return name.replace("-", "_")


def blocked_modules(tree: Tree) -> dict[str, Block]:
    """Modules the image keeps from loading (a file in an earlier dir hides a same-named later one)."""
    files: dict[str, str] = {}
    for directory in MODPROBE_DIRS:
        for path in tree.glob(f"{directory}/*.conf"):
            files.setdefault(path.rsplit("/", 1)[1], path)
    blocked: dict[str, Block] = {}
    for name in sorted(files):
        for number, line in enumerate(tree.lines(files[name]), 1):
            words = line.split("#", 1)[0].split()
            blacklist = len(words) >= 2 and words[0] == "blacklist"
            if blacklist or (len(words) >= 3 and words[0] == "install" and words[2] in _NO_OPS):
                module = _module(words[1])
                blocked.setdefault(module, Block(module, f"{files[name]}:{number}", line.strip()))
    cmdline = boot_cmdline(tree)
    for value in cmdline.values("modprobe.blacklist"):
        for module in filter(None, value.split(",")):
            where = cmdline.source or "kernel command line"
            blocked.setdefault(
                _module(module), Block(_module(module), where, f"modprobe.blacklist={value}")
            )
    return blocked


def _has_floppy(tree: Tree) -> bool:
    config = kernel_config(tree) or {}
    if config.get("CONFIG_BLK_DEV_FD") in ("y", "m"):
        return True
    version = default_kernel(tree)
    return bool(
        version
        and any(
            tree.glob(f"{lib}/modules/{version}/kernel/drivers/block/floppy.ko*")
            for lib in ("lib", "usr/lib")
        )
    )


@check(
    "modprobe-policy",
    "error",
    consequence="the provisioning CD (UDF) or the Gen2 ESP (vfat) cannot be read",
    source="MS generic and RHEL docs; LISA verify_floppy_module_is_blacklisted",
)
def modprobe_policy(tree: Tree) -> Iterator[Note]:
    blocked = blocked_modules(tree)
    for module in NEEDED:
        if module in blocked:
            block = blocked[module]
            yield Note(block.where, f"has '{block.how}'", f"remove it: {module} must load")
    config = kernel_config(tree)
    if config is None:
        yield unknown(config_path(tree), "no kernel config in the tree for the default kernel")
    else:
        for option, module in _OPTIONS.items():
            if config.get(option) not in ("y", "m"):
                yield Note(config_path(tree), f"has {option} unset", f"use a kernel with {module}")
        if config.get("CONFIG_ATA_PIIX") not in ("y", "m"):
            yield Note(
                config_path(tree),
                "has CONFIG_ATA_PIIX unset",
                "use a kernel with ata_piix",
                severity="warn",
                consequence="Generation 1 VMs cannot read the provisioning CD on the IDE bus",
            )
    if _has_floppy(tree) and "floppy" not in blocked:
        yield Note(
            "etc/modprobe.d",
            "does not blacklist floppy (the kernel has it)",
            "echo 'blacklist floppy' > etc/modprobe.d/50-azure-floppy.conf",
            severity="warn",
            consequence="a useless probe at every boot; LISA fails the image",
        )
