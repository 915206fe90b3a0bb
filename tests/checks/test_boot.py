"""The kernel, its command line from the generated boot config, modprobe policy, disks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checks.trees import (
    CMDLINE,
    HV_MODULES,
    KVER,
    assert_case,
    case_table,
    findings,
    fired,
    good_tree,
    initramfs,
    problems,
    write,
)

CASES, case = case_table()


def grub_cmdline(root: Path, cmdline: str) -> None:
    grub = root / "boot/grub/grub.cfg"
    grub.write_text(grub.read_text().replace(CMDLINE, cmdline))


@case("arch-64bit")
def thirty_two_bit(root: Path) -> None:
    env = root / "usr/bin/env"
    header = bytearray(env.read_bytes()[:64])
    header[4] = 1  # ELFCLASS32
    header[18:20] = (3).to_bytes(2, "little")  # EM_386
    env.write_bytes(bytes(header))


@case("hyperv-drivers-initramfs")
def storvsc_not_in_initramfs(root: Path) -> None:
    initramfs(root, tuple(m for m in HV_MODULES if "storvsc" not in m), compress="zstd")


@case("hyperv-drivers-initramfs")
def hyperv_net_unset(root: Path) -> None:
    config = root / f"boot/config-{KVER}"
    config.write_text(
        config.read_text().replace("CONFIG_HYPERV_NET=m", "# CONFIG_HYPERV_NET is not set")
    )


@case("modprobe-policy")
def udf_blacklisted(root: Path) -> None:
    write(root, "etc/modprobe.d/cis.conf", "blacklist udf\n")


@case("modprobe-policy")
def vfat_installed_as_true(root: Path) -> None:
    write(root, "etc/modprobe.d/CIS.conf", "install vfat /bin/true\n")


@case("modprobe-policy")
def cdrom_blacklisted_on_cmdline(root: Path) -> None:
    grub_cmdline(root, CMDLINE + " modprobe.blacklist=floppy,sr_mod")


@case("modprobe-policy", "warn")
def floppy_not_blacklisted(root: Path) -> None:
    write(root, f"usr/lib/modules/{KVER}/kernel/drivers/block/floppy.ko.xz", "ko")


@case("grub-forbidden-params")
def atapi_disabled(root: Path) -> None:
    grub_cmdline(root, CMDLINE + " libata.atapi_enabled=0")


@case("serial-console")
def no_serial_console(root: Path) -> None:
    grub_cmdline(root, CMDLINE.replace("console=ttyS0,115200n8", ""))


@case("serial-console")
def serial_console_not_last(root: Path) -> None:
    grub_cmdline(root, CMDLINE + " console=tty0")


@case("cmdline-recommended", "info")
def quiet_boot(root: Path) -> None:
    grub_cmdline(root, CMDLINE + " quiet")


@case("efi-fallback-loader")
def no_removable_loader(root: Path) -> None:
    (root / "boot/efi/EFI/BOOT/BOOTX64.EFI").unlink()
    write(root, "boot/efi/EFI/debian/grubx64.efi", "MZ")


@case("fstab-boot-safe")
def fstab_kernel_name(root: Path) -> None:
    write(root, "etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n")


@case("fstab-boot-safe", "warn")
def data_disk_without_nofail(root: Path) -> None:
    write(root, "etc/fstab", "UUID=0b1f / ext4 defaults 0 1\nUUID=77aa /data xfs defaults 0 2\n")


@case("lvm-devices-file")
def lvm_root_with_devices_file(root: Path) -> None:
    write(root, "etc/fstab", "/dev/mapper/rootvg-rootlv / xfs defaults 0 0\n")
    write(
        root, "etc/lvm/devices/system.devices", "VERSION=1.1.2\nIDTYPE=sys_wwid IDNAME=naa.600\n"
    )


@case("swap-os-disk", "warn")
def swap_file(root: Path) -> None:
    write(root, "swap.img", "\0" * 16, 0o600)


@case("swap-os-disk", "warn")
def swap_partition(root: Path) -> None:
    write(root, "etc/fstab", "UUID=0b1f / ext4 defaults 0 1\nUUID=5e2 none swap sw 0 0\n")


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    assert_case(tmp_path, check_id, severity, breaker)


def test_no_boot_loader_is_info_saying_so(tmp_path: Path) -> None:
    """An image booted with an external kernel (qemu -kernel): unknown, not an error."""
    root = good_tree(tmp_path / "root")
    (root / "boot/grub/grub.cfg").unlink()
    for check_id in ("serial-console", "grub-forbidden-params", "cmdline-recommended"):
        (finding,) = findings(root, check_id)
        assert finding.severity == "info"
        assert finding.found.startswith("unknown: no boot loader configuration in the tree")


def test_bls_entries_and_grubenv_kernelopts(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "boot/grub2/grub.cfg", "insmod blscfg\nblscfg\n")
    (root / "boot/grub/grub.cfg").unlink()
    write(root, "boot/grub2/grubenv", "kernelopts=root=UUID=1 ro console=tty0\n")
    write(root, "boot/loader/entries/abc-5.14.0.conf", "title RHEL\noptions $kernelopts\n")
    assert "has no console=ttyS0" in fired(root, "serial-console").found


def test_template_that_would_drop_the_console_is_a_warning(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/default/grub", 'GRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert fired(root, "serial-console", "warn").path == "etc/default/grub"


def test_etc_modprobe_file_hides_a_vendor_file_of_the_same_name(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "usr/lib/modprobe.d/hardening.conf", "install udf /bin/false\n")
    assert fired(root, "modprobe-policy").path == "usr/lib/modprobe.d/hardening.conf:1"
    write(
        root, "etc/modprobe.d/hardening.conf", "# overridden: udf carries the provisioning media\n"
    )
    assert problems(root, "modprobe-policy") == []


def test_initramfs_compressed_with_xz_is_read(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    initramfs(root, HV_MODULES[1:], compress="xz")
    assert "hv_vmbus.ko" in fired(root, "hyperv-drivers-initramfs").found


def test_missing_tools_make_the_initramfs_unknown(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    path = root / f"boot/initrd.img-{KVER}"
    path.write_bytes(b"\x04\x22\x4d\x18" + b"\0" * 64)  # lz4 frame magic: unknown to the reader
    (finding,) = findings(root, "hyperv-drivers-initramfs")
    assert finding.severity == "info" and finding.found.startswith("unknown:")


def test_corrupt_initramfs_is_unknown(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    (root / f"boot/initrd.img-{KVER}").write_bytes(b"070701" + b"zz" * 60)
    (finding,) = findings(root, "hyperv-drivers-initramfs")
    assert (finding.severity, finding.found) == ("info", "unknown: not a newc cpio archive")
