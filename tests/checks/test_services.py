"""What starts at boot: azprov's unit (masks, links, first-boot presets), rival agents, sshd."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checks.trees import UNIT, assert_case, case_table, link, systemctl, unit, write

CASES, case = case_table()


@case("prov-unit-enabled")
def unit_disabled(root: Path) -> None:
    systemctl(root, "disable", UNIT)


@case("prov-unit-enabled")
def unit_masked(root: Path) -> None:
    link(root, f"etc/systemd/system/{UNIT}", "/dev/null")


@case("prov-unit-enabled")
def unit_missing(root: Path) -> None:
    (root / f"usr/lib/systemd/system/{UNIT}").unlink()


@case("prov-unit-enabled", "warn")
def first_boot_preset_disables(root: Path) -> None:
    (root / "etc/machine-id").unlink()
    write(root, "usr/lib/systemd/system-preset/99-default.preset", "disable *\n")


@case("prov-agent-conflict")
def waagent_enabled(root: Path) -> None:
    write(root, "usr/sbin/waagent", "", 0o755)
    unit(root, "walinuxagent.service")
    systemctl(root, "enable", "walinuxagent.service")


@case("prov-agent-conflict")
def cloud_init_enabled(root: Path) -> None:
    unit(root, "cloud-init.service", wanted_by="cloud-init.target")
    systemctl(root, "enable", "cloud-init.service")
    write(root, "etc/cloud/cloud.cfg.d/90_dpkg.cfg", "datasource_list: [ Azure ]\n")


@case("network-online-wait", "warn")
def no_wait_online(root: Path) -> None:
    systemctl(root, "disable", "systemd-networkd-wait-online.service")


@case("network-online-wait", "warn")
def unit_without_network_ordering(root: Path) -> None:
    # The seed documents' reference unit: no Wants=network-online.target.
    path = root / f"usr/lib/systemd/system/{UNIT}"
    path.write_text(path.read_text().replace("Wants=network-online.target\n", ""))


@case("sshd-enabled")
def sshd_disabled(root: Path) -> None:
    systemctl(root, "disable", "ssh.service")


@case("sshd-enabled")
def sshd_masked(root: Path) -> None:
    systemctl(root, "mask", "ssh.service")


@case("sshd-enabled")
def sshd_missing(root: Path) -> None:
    (root / "usr/sbin/sshd").unlink()


@case("sshd-enabled")
def sshd_unit_deleted_link_left(root: Path) -> None:
    # The unit file is gone; its dangling `.wants` link starts nothing.
    (root / "usr/lib/systemd/system/ssh.service").unlink()


@case("kvp-daemon", "warn")
def kvp_disabled(root: Path) -> None:
    systemctl(root, "disable", "hv-kvp-daemon.service")


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    assert_case(tmp_path, check_id, severity, breaker)


def test_preset_enable_line_clears_the_first_boot_warning(tmp_path: Path) -> None:
    from tests.checks.trees import good_tree, problems

    root = good_tree(tmp_path / "root")
    first_boot_preset_disables(root)
    write(root, "etc/systemd/system-preset/10-azprov.preset", f"enable {UNIT}\n")
    assert problems(root, "prov-unit-enabled") == []


def test_presets_do_not_matter_when_machine_id_is_empty(tmp_path: Path) -> None:
    from tests.checks.trees import good_tree, problems

    root = good_tree(tmp_path / "root")
    write(root, "usr/lib/systemd/system-preset/99-default.preset", "disable *\n")
    assert problems(root, "prov-unit-enabled") == []


def test_alias_link_alone_is_not_enabled(tmp_path: Path) -> None:
    """sshd.service -> ssh.service makes `is-enabled` say enabled; nothing starts it."""
    from tests.checks.trees import fired, good_tree

    root = good_tree(tmp_path / "root")
    systemctl(root, "disable", "ssh.service")
    link(root, "etc/systemd/system/sshd.service", "/usr/lib/systemd/system/ssh.service")
    assert "missing" in fired(root, "sshd-enabled").found


def test_socket_activation_counts_for_sshd(tmp_path: Path) -> None:
    from tests.checks.trees import good_tree, problems

    root = good_tree(tmp_path / "root")
    systemctl(root, "disable", "ssh.service")
    unit(root, "ssh.socket", wanted_by="sockets.target")
    systemctl(root, "enable", "ssh.socket")
    assert problems(root, "sshd-enabled") == []


def test_cloud_init_disabled_file_clears_the_conflict(tmp_path: Path) -> None:
    from tests.checks.trees import good_tree, problems

    root = good_tree(tmp_path / "root")
    cloud_init_enabled(root)
    write(root, "etc/cloud/cloud-init.disabled")
    assert problems(root, "prov-agent-conflict") == []
