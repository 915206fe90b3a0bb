"""Building small image trees for the check tests: real files, real `systemctl --root`.

`good_tree` makes a tree that passes every check (only `info` findings); each
test then breaks one thing and expects exactly that check to fire.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from azprov.checks import check_tree
from azprov.checks.model import Finding
from azprov.host.root import TargetRoot

KVER = "6.1.0-99-cloud-amd64"
UNIT = "azure-provisioning.service"
REPO = Path(__file__).resolve().parents[2]


def write(root: Path, relative: str, text: str = "", mode: int = 0o644) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def link(root: Path, relative: str, target: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def systemctl(root: Path, *args: str) -> None:
    subprocess.run(
        ["systemctl", f"--root={root}", "--quiet", *args], check=True, capture_output=True
    )


def unit(root: Path, name: str, wanted_by: str = "multi-user.target", extra: str = "") -> None:
    write(
        root,
        f"usr/lib/systemd/system/{name}",
        f"[Unit]\nDescription={name}\n{extra}\n[Service]\nExecStart=/bin/true\n"
        f"[Install]\nWantedBy={wanted_by}\n",
    )


def newc(entries: dict[str, bytes]) -> bytes:
    """A newc cpio archive (what initramfs tools write), built byte by byte."""
    out = bytearray()
    for number, (name, data) in enumerate([*entries.items(), ("TRAILER!!!", b"")], 1):
        encoded = name.encode() + b"\0"
        mode = 0o100644 if name != "TRAILER!!!" else 0
        fields = [number, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def initramfs(root: Path, modules: tuple[str, ...], compress: str = "gzip") -> None:
    base = f"usr/lib/modules/{KVER}/kernel/drivers"
    archive = newc({f"{base}/{m}.ko": b"\x7fELF" for m in modules})
    path = root / f"boot/initrd.img-{KVER}"
    path.parent.mkdir(parents=True, exist_ok=True)
    early = newc({"kernel/x86/microcode/GenuineIntel.bin": b"micro"})
    packed = subprocess.run(
        [compress, "-c"], input=archive, capture_output=True, check=True
    ).stdout
    path.write_bytes(early + packed)


def rpm_db(root: Path, packages: dict[str, str], relative: str = "var/lib/rpm") -> None:
    """A real rpm database at `root/relative` holding empty noarch packages (name: version)."""
    work = root.parent / "rpmbuild"
    database = root / relative
    database.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rpm", "--dbpath", str(database), "--initdb"], check=True)
    for name, version in packages.items():
        spec = work / f"{name}.spec"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(
            f"Name: {name}\nVersion: {version}\nRelease: 1\nSummary: t\nLicense: MIT\n"
            "BuildArch: noarch\n%description\nt\n%files\n"
        )
        top = ["--define", f"_topdir {work}", "--define", f"_dbpath {work}/db"]
        subprocess.run(["rpmbuild", "-bb", *top, str(spec)], check=True, capture_output=True)
        (package,) = (work / "RPMS/noarch").glob(f"{name}-{version}-*.rpm")
        install = ["-i", "--justdb", "--nodeps", "--noscripts", str(package)]
        subprocess.run(
            ["rpm", "--dbpath", str(database), *install], check=True, capture_output=True
        )


HV_MODULES = ("hv/hv_vmbus", "scsi/hv_storvsc", "net/hyperv/hv_netvsc", "nvme/host/nvme")
KERNEL_CONFIG = "\n".join(
    f"CONFIG_{name}={value}"
    for name, value in {
        "HYPERV": "m",
        "HYPERV_STORAGE": "m",
        "HYPERV_NET": "m",
        "HYPERV_UTILS": "m",
        "HYPERV_BALLOON": "m",
        "HYPERV_KEYBOARD": "m",
        "HID_HYPERV_MOUSE": "m",
        "WATCHDOG": "y",
        "CIFS": "m",
        "BLK_DEV_NVME": "m",
        "UDF_FS": "m",
        "ISO9660_FS": "m",
        "BLK_DEV_SR": "m",
        "VFAT_FS": "m",
        "ATA_PIIX": "m",
    }.items()
)
CMDLINE = (
    "root=UUID=0b1f ro console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
)


def boot_files(root: Path, cmdline: str = CMDLINE) -> None:
    write(root, f"boot/vmlinuz-{KVER}", "kernel")
    write(root, f"boot/config-{KVER}", KERNEL_CONFIG + "\n")
    initramfs(root, HV_MODULES)
    write(
        root,
        "boot/grub/grub.cfg",
        "set default=0\nmenuentry 'Debian GNU/Linux' {\n"
        f"\tlinux\t/boot/vmlinuz-{KVER} {cmdline}\n\tinitrd\t/boot/initrd.img-{KVER}\n}}\n",
    )
    write(root, "boot/efi/EFI/BOOT/BOOTX64.EFI", "MZ" + "x" * 2000)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/bin/env", root / "usr/bin/env")


def services(root: Path) -> None:
    azprov_unit = (REPO / "units" / UNIT).read_text()
    write(root, f"usr/lib/systemd/system/{UNIT}", azprov_unit)
    for name in (
        "systemd-networkd.service",
        "ssh.service",
        "chrony.service",
        "hv-kvp-daemon.service",
    ):
        unit(root, name)
    unit(root, "systemd-networkd-wait-online.service", wanted_by="network-online.target")
    unit(root, "azure-ephemeral-disk-setup.service")
    systemctl(
        root, "enable", UNIT, "systemd-networkd.service", "systemd-networkd-wait-online.service"
    )
    systemctl(root, "enable", "ssh.service", "chrony.service", "hv-kvp-daemon.service")
    write(root, "usr/sbin/sshd", "", 0o755)
    write(
        root, "etc/systemd/network/10-eth0.network", "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"
    )
    write(
        root, "etc/chrony/chrony.conf", "refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0\n"
    )
    write(
        root,
        "usr/lib/udev/rules.d/80-azure.rules",
        'SUBSYSTEM=="ptp", ATTR{clock_name}=="hyperv", SYMLINK+="ptp_hyperv"\n'
        'SUBSYSTEM=="block", SYMLINK+="disk/azure/root"\n'
        'ACTION=="add", SUBSYSTEM=="block", ATTR{device/timeout}="300"\n'
        'SUBSYSTEM=="net", DRIVERS=="mlx5_core", ENV{ID_NET_MANAGED_BY}="unmanaged"\n',
    )


def software(root: Path) -> None:
    link(root, "usr/bin/python3", "python3.11")
    write(root, "usr/bin/python3.11", "", 0o755)
    for library in ("httpx", "httpcore", "defusedxml", "click"):
        write(root, f"usr/lib/python3/dist-packages/{library}/__init__.py")
    for tool in ("openssl", "ssh-keygen", "hostnamectl", "systemctl", "mount"):
        write(root, f"usr/bin/{tool}", "", 0o755)
    for tool in ("useradd", "usermod", "chpasswd"):
        write(root, f"usr/sbin/{tool}", "", 0o755)
    write(
        root,
        "var/lib/dpkg/status",
        "Package: openssl\nStatus: install ok installed\nVersion: 3.0.15-1~deb12u1\n\n",
    )
    write(
        root,
        "etc/apt/sources.list",
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n",
    )


def accounts(root: Path) -> None:
    write(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
    )
    write(root, "etc/shadow", "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o640)
    write(root, "etc/login.defs", "UID_MIN 1000\nUID_MAX 60000\n")
    write(
        root,
        "etc/sudoers",
        "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
        0o440,
    )
    (root / "etc/sudoers.d").mkdir(parents=True, exist_ok=True)
    (root / "root").mkdir(exist_ok=True)
    write(
        root,
        "etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\n"
        "ClientAliveInterval 180\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
    )
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)


def good_tree(root: Path) -> Path:
    """A small Debian-like image that passes every check."""
    root.mkdir(parents=True, exist_ok=True)
    write(root, "etc/machine-id", "", 0o444)
    write(root, "etc/hostname", "localhost\n")
    write(root, "etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    write(root, "etc/fstab", "UUID=0b1f / ext4 rw,discard,errors=remount-ro 0 1\n")
    link(root, "etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    boot_files(root)
    services(root)
    software(root)
    accounts(root)
    return root


def findings(root: Path, *ids: str) -> list[Finding]:
    return check_tree(TargetRoot(root), ids).findings


def problems(root: Path, check_id: str, advice: bool = False) -> list[Finding]:
    """The error and warn findings of one check (and, with `advice`, info that is not unknown)."""
    return [
        f
        for f in findings(root, check_id)
        if f.severity in ("error", "warn") or (advice and not f.found.startswith("unknown:"))
    ]


def fired(root: Path, check_id: str, severity: str = "error") -> Finding:
    """The one finding `check_id` made (asserting there is exactly one, of `severity`)."""
    found = problems(root, check_id, advice=severity == "info")
    assert [f.severity for f in found] == [severity], found
    return found[0]


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


Breaker = Callable[[Path], None]


def case_table() -> tuple[
    list[tuple[str, str, Breaker]], Callable[..., Callable[[Breaker], Breaker]]
]:
    """A per-module table of (check id, expected severity, what breaks the good tree)."""
    table: list[tuple[str, str, Breaker]] = []

    def case(check_id: str, severity: str = "error") -> Callable[[Breaker], Breaker]:
        def add(breaker: Breaker) -> Breaker:
            table.append((check_id, severity, breaker))
            return breaker

        return add

    return table, case


def assert_case(tmp_path: Path, check_id: str, severity: str, breaker: Breaker) -> Finding:
    """The good tree does not fire `check_id`; broken by `breaker`, it fires exactly once."""
    root = good_tree(tmp_path / "root")
    assert problems(root, check_id, advice=True) == []
    breaker(root)
    finding = fired(root, check_id, severity)
    assert finding.found and finding.fix and finding.source
    return finding
