"""Disabling azprov's own unit: the links `systemctl disable` would remove, checked
with the real `systemctl --root`."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from azprov.host.root import TargetRoot
from azprov.host.units import PROVISIONING_UNIT, disable_provisioning_unit

REPO = Path(__file__).resolve().parents[2]
needs_systemctl = pytest.mark.skipif(not shutil.which("systemctl"), reason="no systemctl")


def systemctl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemctl", "--root", str(root), *args], capture_output=True, text=True, check=False
    )


def image_with_unit(root: Path) -> Path:
    unit_dir = root / "usr/lib/systemd/system"
    unit_dir.mkdir(parents=True)
    shutil.copy(REPO / "units" / PROVISIONING_UNIT, unit_dir / PROVISIONING_UNIT)
    return root


@needs_systemctl
def test_an_enabled_unit_ends_disabled_as_systemctl_sees_it(tmp_path: Path) -> None:
    root = image_with_unit(tmp_path)
    assert systemctl(root, "enable", PROVISIONING_UNIT).returncode == 0
    assert systemctl(root, "is-enabled", PROVISIONING_UNIT).stdout.strip() == "enabled"
    disable_provisioning_unit(TargetRoot(root))
    assert systemctl(root, "is-enabled", PROVISIONING_UNIT).stdout.strip() == "disabled"
    assert (root / "usr/lib/systemd/system" / PROVISIONING_UNIT).is_file()  # only the link goes


def test_a_unit_that_is_not_enabled_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = image_with_unit(tmp_path)
    with caplog.at_level(logging.INFO):
        disable_provisioning_unit(TargetRoot(root))
    assert "was not enabled" in caplog.text


def test_a_link_that_cannot_be_removed_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Disabling runs after Ready (and on every already-provisioned start): it must never
    fail the run. A unit left enabled runs again next boot and exits at once."""
    root = image_with_unit(tmp_path)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / PROVISIONING_UNIT).symlink_to(f"/usr/lib/systemd/system/{PROVISIONING_UNIT}")
    if subprocess.run(["chattr", "+i", str(wants)], capture_output=True).returncode != 0:
        pytest.skip("no immutable directories on this filesystem (chattr +i)")
    try:
        with caplog.at_level(logging.WARNING):
            disable_provisioning_unit(TargetRoot(root))
    finally:
        subprocess.run(["chattr", "-i", str(wants)], check=True)
    assert "could not disable" in caplog.text and "Operation not permitted" in caplog.text
    assert (wants / PROVISIONING_UNIT).is_symlink()


def test_a_wants_folder_linked_out_of_the_image_is_resolved_inside_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An absolute link in an offline image means what it means when the image boots:
    it is resolved inside the image, and nothing it names on the host is touched."""
    outside = tmp_path / "host-wants"
    outside.mkdir()
    (outside / PROVISIONING_UNIT).symlink_to("/dev/null")
    root = image_with_unit(tmp_path / "image")
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/multi-user.target.wants").symlink_to(outside)
    with caplog.at_level(logging.INFO):
        disable_provisioning_unit(TargetRoot(root))
    assert "was not enabled" in caplog.text
    assert (outside / PROVISIONING_UNIT).is_symlink()
