"""What the emulated-boot tests need from the machine, and building the package under test."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

E2E_TOOLS = ("qemu-system-x86_64", "mmdebstrap", "socat", "mke2fs", "chroot", "systemctl")
DEB_TOOLS = ("dpkg-buildpackage", "dh", "lintian")
RPM_TOOLS = ("rpmbuild",)

_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip on a developer machine; in CI a missing prerequisite is a failure, not a skip."""
    if in_ci():
        pytest.fail(f"CI=true but {reason} (scripts/setup installs the tools)")
    pytest.skip(reason)


def require(tools: tuple[str, ...], *, root: bool = False) -> None:
    missing = [tool for tool in tools if shutil.which(tool, path=_SYSTEM_PATH) is None]
    if missing:
        unavailable(f"not installed: {', '.join(missing)}")
    if root and os.geteuid() != 0:
        unavailable("needs root (unpacking an image with its owners, chroot, dpkg)")


@functools.cache
def built_package(kind: str, repo: Path = REPO) -> Path:
    """Build the .deb or .rpm from this checkout (or the checkout at `repo`, with its own
    packaging/build) once per test session (about 5 s)."""
    out = Path(tempfile.mkdtemp(prefix=f"azprov-{kind}-"))
    result = subprocess.run(
        [str(repo / "packaging" / "build"), kind, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"packaging/build {kind} failed:\n{result.stderr[-4000:]}")
    suffix = ".deb" if kind == "deb" else ".rpm"
    (package,) = [p for p in out.iterdir() if p.name.endswith(suffix)]
    return package
