"""The kernel, its command line from the generated boot config, modprobe policy, disks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


MACHINE = "8c2b43cfb1d94ffa9d3a3f2f0d1f5a6e"
GRUBENV_HEAD = "# GRUB Environment Block\n"
RHEL_GRUB_CFG = (
    "set pager=1\n"
    "if [ -f ${config_directory}/grubenv ]; then\n"
    "  load_env -f ${config_directory}/grubenv\n"
    "elif [ -s $prefix/grubenv ]; then\n"
    "  load_env\n"
    "fi\n"
    'if [ "${next_entry}" ] ; then\n'
    '   set default="${next_entry}"\n'
    "   set next_entry=\n"
    "   save_env next_entry\n"
    "   set boot_once=true\n"
    "else\n"
    '   set default="${saved_entry}"\n'
    "fi\n"
    "insmod blscfg\n"
    "blscfg\n"
)


def grubenv_block(**values: str) -> str:
    """A grubenv as grub2-editenv writes it: the signature, NAME=value lines, '#' to 1024 bytes."""
    body = GRUBENV_HEAD + "".join(f"{k}={v}\n" for k, v in values.items())
    return body + "#" * (1024 - len(body))


def rhel_boot(root: Path, **grubenv: str) -> None:
    """RHEL 9's layout: grub2's grub.cfg runs blscfg, entries in boot/loader/entries."""
    (root / "boot/grub/grub.cfg").unlink(missing_ok=True)
    write(root, "boot/grub2/grub.cfg", RHEL_GRUB_CFG)
    write(root, "boot/grub2/grubenv", grubenv_block(**grubenv))


def bls_entry(root: Path, kernel: str, options: str, title: str = "") -> str:
    """One BLS entry as kernel-install writes it (<machine-id>-<kernel>.conf); its id."""
    entry_id = f"{MACHINE}-{kernel}"
    write(
        root,
        f"boot/loader/entries/{entry_id}.conf",
        f"title {title or f'Red Hat Enterprise Linux ({kernel}) 9.4 (Plow)'}\n"
        f"version {kernel}\n"
        f"linux /vmlinuz-{kernel}\n"
        f"initrd /initramfs-{kernel}.img $tuned_initrd\n"
        f"options {options}\n"
        "grub_users $grub_users\n"
        "grub_arg --unrestricted\n"
        "grub_class rhel\n",
    )
    return entry_id


OLD_KERNEL, NEW_KERNEL = "5.14.0-70.13.1.el9_0.x86_64", "5.14.0-362.8.1.el9_3.x86_64"


def test_bls_entries_and_grubenv_kernelopts(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    rhel_boot(root, kernelopts="root=UUID=1 ro console=tty0")
    bls_entry(root, NEW_KERNEL, "$kernelopts")
    assert "has no console=ttyS0" in fired(root, "serial-console").found


def test_bls_default_is_the_newest_kernel_by_rpm_version_not_by_string(tmp_path: Path) -> None:
    """-362 is newer than -70: GRUB's blscfg orders by rpm's comparison, not strcmp."""
    root = good_tree(tmp_path / "root")
    rhel_boot(root)
    bls_entry(root, OLD_KERNEL, CMDLINE)
    newest = bls_entry(root, NEW_KERNEL, "root=UUID=1 ro console=tty0")
    bls_entry(root, "0-rescue", CMDLINE, title="Rescue")  # {machine}-0-rescue: sorts last
    finding = fired(root, "serial-console")
    assert finding.path == f"boot/loader/entries/{newest}.conf"
    assert "has no console=ttyS0" in finding.found


def test_saved_entry_in_grubenv_selects_the_bls_default(tmp_path: Path) -> None:
    """GRUB_DEFAULT=saved: grub.cfg's default is ${saved_entry}, an entry id (or title)."""
    root = good_tree(tmp_path / "root")
    old = bls_entry(root, OLD_KERNEL, "root=UUID=1 ro console=tty0")
    bls_entry(root, NEW_KERNEL, CMDLINE)
    rhel_boot(root, saved_entry=old)
    assert fired(root, "serial-console").path == f"boot/loader/entries/{old}.conf"
    title = f"Red Hat Enterprise Linux ({OLD_KERNEL}) 9.4 (Plow)"
    write(root, "boot/grub2/grubenv", grubenv_block(saved_entry=title))
    assert fired(root, "serial-console").path == f"boot/loader/entries/{old}.conf"
    write(root, "boot/grub2/grubenv", grubenv_block(saved_entry="1"))
    assert fired(root, "serial-console").path == f"boot/loader/entries/{old}.conf"
    # A saved entry that names nothing (a removed kernel) is menu entry 0, the newest.
    write(root, "boot/grub2/grubenv", grubenv_block(saved_entry=f"{MACHINE}-4.18.0"))
    assert problems(root, "serial-console") == []


def test_next_entry_from_grub_reboot_wins_over_saved_entry(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    old = bls_entry(root, OLD_KERNEL, CMDLINE)
    new = bls_entry(root, NEW_KERNEL, "root=UUID=1 ro console=tty0")
    rhel_boot(root, saved_entry=old)
    assert problems(root, "serial-console") == []
    rhel_boot(root, saved_entry=old, next_entry=new)
    assert fired(root, "serial-console").path == f"boot/loader/entries/{new}.conf"


def test_grubenv_larger_than_its_block_is_unknown_not_read(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    bls_entry(root, NEW_KERNEL, CMDLINE)
    rhel_boot(root)
    write(root, "boot/grub2/grubenv", GRUBENV_HEAD + "saved_entry=x\n" + "#" * 5000)
    (finding,) = findings(root, "serial-console")
    assert finding.severity == "info" and finding.path == "boot/grub2/grubenv"
    assert finding.found.startswith("unknown: boot/grub2/grubenv is 5039 bytes, larger than")


def test_bls_entries_past_the_cap_are_unknown_not_sorted(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    rhel_boot(root)
    for number in range(129):  # the cap is 128
        write(root, f"boot/loader/entries/{MACHINE}-5.14.0-{number}.el9.conf", "linux /v\n")
    (finding,) = findings(root, "grub-forbidden-params")
    assert finding.severity == "info" and finding.path == "boot/loader/entries"
    assert "holds 129 entries, more than the 128 read" in finding.found


def test_a_bls_entry_past_its_size_cap_is_unknown_naming_it(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    rhel_boot(root)
    entry = bls_entry(root, NEW_KERNEL, CMDLINE + " x" * (64 << 10))  # the cap is 64 KiB
    (finding,) = findings(root, "cmdline-recommended")
    assert finding.found.startswith(f"unknown: boot/loader/entries/{entry}.conf is larger than")


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
    assert finding.severity == "info"
    assert finding.found.startswith("unknown: not a newc cpio archive")


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=300), st.text(max_size=300))
def test_grubenv_and_entries_read_any_text_as_grub_does(env_text: str, entry_text: str) -> None:
    """Whatever a grubenv or an entry holds: variables and keys, never an exception."""
    from azprov.checks.grubmenu import BootEntry, entry_keys, grubenv, pick_default

    found = grubenv(GRUBENV_HEAD + env_text)
    assert all("=" not in name for name in found)
    keys = entry_keys(entry_text)
    menu = [BootEntry("a-1-1", "a.conf", keys), BootEntry("b-2-2", "b.conf", ())]
    for spec in (*found.values(), entry_text, env_text):
        assert pick_default(menu, spec) in menu


def test_the_default_kernel_is_chosen_by_the_one_version_rule_even_with_rc_names(
    tmp_path: Path,
) -> None:
    """`6.1.0-rc1` beside `6.1.0-18-amd64` once raised TypeError (int against str)."""
    from azprov.checks.kernel import default_kernel
    from azprov.checks.tree import Tree
    from azprov.host.root import TargetRoot

    boot = tmp_path / "boot"
    boot.mkdir()
    for version in ("6.1.0-rc1", "6.1.0-18-amd64", "6.1.0-9-amd64"):
        (boot / f"vmlinuz-{version}").write_bytes(b"")
    # rpm's rule: a numeric segment (18) is newer than an alphabetic one (rc).
    assert default_kernel(Tree(TargetRoot(tmp_path))) == "6.1.0-18-amd64"
