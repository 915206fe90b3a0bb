"""ssh-host-keys and Debian 13's first-boot key generator, sshd-keygen.service.

The unit is the one Debian 13's openssh-server (1:10.0p1-7+deb13u4) ships, its text
unchanged, enabled with the real `systemctl --root` as its postinst enables it. It
makes host keys only on a first boot (ConditionFirstBoot=yes), so an image that
relies on it, without azprov, has host keys at boot only when its machine-id makes
that boot a first boot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checks.trees import UNIT, findings, good_tree, problems, systemctl, write
from tests.distro_units import TRIXIE_SSHD_KEYGEN


def without_azprov_with_sshd_keygen(root: Path, machine_id: str | None) -> Path:
    """No host keys, no azprov unit: only Debian 13's generator, enabled."""
    good_tree(root)
    (root / f"usr/lib/systemd/system/{UNIT}").unlink()
    write(root, "usr/lib/systemd/system/sshd-keygen.service", TRIXIE_SSHD_KEYGEN)
    systemctl(root, "enable", "sshd-keygen.service")
    if machine_id is None:
        (root / "etc/machine-id").unlink()
    else:
        write(root, "etc/machine-id", machine_id, 0o444)
    return root


@pytest.mark.parametrize("machine_id", ["uninitialized\n", None], ids=["uninitialized", "absent"])
def test_sshd_keygen_service_counts_as_a_generator_on_a_first_boot_image(
    tmp_path: Path, machine_id: str | None
) -> None:
    root = without_azprov_with_sshd_keygen(tmp_path / "root", machine_id)
    assert problems(root, "ssh-host-keys") == []


def test_sshd_keygen_service_does_not_count_when_the_next_boot_is_not_a_first_boot(
    tmp_path: Path,
) -> None:
    """An empty machine-id ('azprov deprovision', systemd's advice for images): the
    unit's condition is false at every boot, sshd finds no key and exits."""
    root = without_azprov_with_sshd_keygen(tmp_path / "root", "")
    (finding,) = problems(root, "ssh-host-keys")
    assert finding.severity == "error"
    assert "sshd-keygen.service" in finding.found and "first boot" in finding.found
    assert "etc/machine-id" in finding.fix


def test_a_disabled_sshd_keygen_service_is_no_generator(tmp_path: Path) -> None:
    root = without_azprov_with_sshd_keygen(tmp_path / "root", "uninitialized\n")
    systemctl(root, "disable", "sshd-keygen.service")
    (finding,) = problems(root, "ssh-host-keys")
    assert finding.found == "has no host keys and nothing makes them at boot"


def test_an_unreadable_machine_id_leaves_it_unknown(tmp_path: Path) -> None:
    """A FIFO there: whether the next boot is a first boot cannot be told (never a hang)."""
    import os

    root = without_azprov_with_sshd_keygen(tmp_path / "root", None)
    os.mkfifo(root / "etc/machine-id")
    found = [f for f in findings(root, "ssh-host-keys") if f.path == "etc/machine-id"]
    assert len(found) == 1 and found[0].found.startswith("unknown:"), found
