"""The .deb on a first-boot image: systemd applies presets to every unit at a first
boot (machine-id(5): /etc/machine-id missing or `uninitialized`), and a unit no
preset names is enabled. Found in the Debian 13 emulated boot: the extension runner,
which the package leaves disabled, came up enabled and polled the WireServer at every
later boot. The package's own preset keeps it opt-in there too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.tools import DEB_TOOLS, built_package, require

PRESET = "usr/lib/systemd/system-preset/80-azprov.preset"


@pytest.fixture(scope="module")
def deb() -> Path:
    require(DEB_TOOLS)
    return built_package("deb")


def test_a_first_boots_presets_leave_the_extension_runner_disabled(
    deb: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(root)], check=True)
    # What systemd does at a first boot (enable-only: an enabled unit stays enabled).
    subprocess.run(
        ["systemctl", f"--root={root}", "--quiet", "preset-all", "--preset-mode=enable-only"],
        check=True,
        capture_output=True,
    )
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "azure-provisioning.service").is_symlink()
    assert not os.path.lexists(wants / "azprov-extensions.service")
    assert (root / PRESET).read_text().split("\n", 1)[1] == (
        "enable azure-provisioning.service\ndisable azprov-extensions.service\n"
    )
