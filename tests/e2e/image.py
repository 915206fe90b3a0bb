"""The Debian images the emulated-boot tests and the bench boot: Debian 12
(bookworm) by default, Debian 13 (trixie) where a test asks for it.

The root filesystem (Debian's packages, nothing of azprov) is built once per
suite with mmdebstrap, from the same archive and with the same recipe for
every suite, and cached as a tarball keyed by a hash of everything that goes
into it. Each run unpacks it, installs the freshly built .deb (its
dependencies are already there, from Debian), adds the emulation plumbing
from `guest/` and makes an ext4 disk with `mke2fs -d` (no loop mounts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

GUEST_FILES = Path(__file__).resolve().parent / "guest"
CACHE_DIR = Path(os.environ.get("AZPROV_E2E_CACHE", "/var/cache/azprov-e2e"))
# The default suite; a test passes suite="trixie" for Debian 13.
SUITE = "bookworm"
SUITES = ("bookworm", "trixie")
# What Azure's Debian 12 and 13 images have that matters here, plus curl for the
# seed document's reference unit (bench) and nftables for the guest-side DNAT.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "python3",
    "python3-httpx",
    "python3-defusedxml",
    "python3-click",
    "openssh-server",
    "linux-image-cloud-amd64",
    "iproute2",
    "sudo",
    "passwd",
    "nftables",
    "openssl",
    "curl",
)
DISK_SIZE = "2G"


def rootfs_key(suite: str = SUITE) -> str:
    recipe = "\n".join([suite, "variant=apt", *sorted(PACKAGES)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cached_rootfs(suite: str = SUITE) -> Path:
    """The rootfs tarball for this recipe and suite, built with mmdebstrap on first use
    (about 70 s)."""
    if suite not in SUITES:
        raise ValueError(f"no e2e image recipe for suite {suite!r} (known: {', '.join(SUITES)})")
    tarball = CACHE_DIR / f"rootfs-{suite}-{rootfs_key(suite)}.tar"
    with _locked(CACHE_DIR / ".lock"):
        if tarball.is_file():
            return tarball
        build_rootfs(tarball, PACKAGES, suite)
    return tarball


def build_rootfs(tarball: Path, packages: Iterable[str], suite: str = SUITE) -> None:
    """A Debian rootfs of `suite` with `packages` as a tarball, made with mmdebstrap
    (written aside first, so an interrupted build never leaves a tarball that looks
    complete)."""
    partial = tarball.with_name(tarball.stem + ".partial.tar")  # mmdebstrap goes by the suffix
    tarball.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=apt",
            "--include=" + ",".join(sorted(packages)),
            suite,
            str(partial),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    partial.rename(tarball)


@dataclasses.dataclass(frozen=True)
class BootFiles:
    """A prepared disk image and the kernel and initrd to boot it with."""

    disk: Path
    kernel: Path
    initrd: Path

    def copy_disk(self, destination: Path) -> Path:
        """A fresh copy of the pristine disk (sparse, so about a second)."""
        subprocess.run(["cp", "--sparse=always", str(self.disk), str(destination)], check=True)
        return destination


def unpack(tarball: Path, tree: Path) -> None:
    tree.mkdir(parents=True)
    subprocess.run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(tree)], check=True)


def install_plumbing(tree: Path) -> None:
    """What the emulated machine needs to behave like an Azure VM's network, and the probe.

    None of it configures azprov: its unit runs with its built-in defaults.
    """
    for source in sorted(GUEST_FILES.rglob("*")):
        if source.is_file():
            target = tree / source.relative_to(GUEST_FILES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (tree / "usr/local/sbin/e2e-probe").chmod(0o755)
    (tree / "usr/local/sbin/e2e-before-sshd").chmod(0o755)
    # A generalized image: no host keys (provision must create them), a
    # host name that is not the VM's, an empty machine-id.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tree / "etc/hostname").write_text("debian-image\n")
    (tree / "etc/machine-id").write_text("")
    (tree / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    systemctl(
        tree,
        "enable",
        "systemd-networkd.service",
        "systemd-networkd-wait-online.service",
        "nftables.service",
        "e2e-probe.service",
    )
    # The console getty would fight the test for ttyS0; nobody logs in here.
    systemctl(tree, "mask", "serial-getty@ttyS0.service")


def systemctl(tree: Path, *args: str) -> None:
    subprocess.run(
        ["systemctl", f"--root={tree}", "--quiet", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def install_deb(tree: Path, deb: Path) -> None:
    """Install the package as apt would: dpkg inside the image, maintainer scripts included."""
    inside = tree / "tmp" / deb.name
    shutil.copy2(deb, inside)
    try:
        subprocess.run(
            ["chroot", str(tree), "dpkg", "--install", f"/tmp/{deb.name}"],
            check=True,
            capture_output=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"},
        )
    finally:
        inside.unlink()


def make_disk(tree: Path, disk: Path) -> None:
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(disk), DISK_SIZE],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def boot_files(tree: Path, out: Path) -> tuple[Path, Path]:
    (kernel,) = sorted((tree / "boot").glob("vmlinuz-*"))
    (initrd,) = sorted((tree / "boot").glob("initrd.img-*"))
    shutil.copy2(kernel, out / "vmlinuz")
    shutil.copy2(initrd, out / "initrd.img")
    return out / "vmlinuz", out / "initrd.img"


def build_image(
    out: Path,
    deb: Optional[Path],
    customize: Optional[Callable[[Path], None]] = None,
    *,
    suite: str = SUITE,
) -> BootFiles:
    """Unpack the cached rootfs of `suite`, add the plumbing and (if given) the .deb,
    make the disk.

    `customize`, if given, is called with the tree before the disk is made.
    """
    tarball = cached_rootfs(suite)
    with tempfile.TemporaryDirectory(prefix="azprov-e2e-tree-", dir=out) as tmp:
        tree = Path(tmp) / "root"
        unpack(tarball, tree)
        install_plumbing(tree)
        if deb is not None:
            install_deb(tree, deb)
        if customize is not None:
            customize(tree)
        kernel, initrd = boot_files(tree, out)
        disk = out / "pristine.img"
        make_disk(tree, disk)
    return BootFiles(disk, kernel, initrd)
