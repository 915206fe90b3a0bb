"""sshd's effective configuration: Include expanded in place, first value wins, stop at Match."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checks.trees import assert_case, case_table, fired, good_tree, problems, write

CASES, case = case_table()


@case("sshd-effective-config")
def dropin_before_azprov(root: Path) -> None:
    write(root, "etc/ssh/sshd_config.d/00-aaa-hardening.conf", "PasswordAuthentication yes\n")


@case("sshd-effective-config")
def kbd_interactive_before_azprov(root: Path) -> None:
    write(root, "etc/ssh/sshd_config.d/0-kbd.conf", "KbdInteractiveAuthentication yes\n")


@case("sshd-effective-config")
def empty_passwords(root: Path) -> None:
    write(root, "etc/ssh/sshd_config.d/60-site.conf", "PermitEmptyPasswords yes\n")


@case("sshd-effective-config", "warn")
def root_login(root: Path) -> None:
    write(root, "etc/ssh/sshd_config.d/60-site.conf", "PermitRootLogin yes\n")


@case("sshd-effective-config", "warn")
def client_alive_too_long(root: Path) -> None:
    write(root, "etc/ssh/sshd_config.d/60-site.conf", "ClientAliveInterval 600\n")


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    assert_case(tmp_path, check_id, severity, breaker)


def test_dropins_after_azprov_and_main_file_cannot_override(tmp_path: Path) -> None:
    """Debian/Ubuntu: the Include comes first, so 50-cloud-init.conf and the main file lose."""
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n")
    main = root / "etc/ssh/sshd_config"
    main.write_text(main.read_text() + "PasswordAuthentication yes\n")
    assert problems(root, "sshd-effective-config") == []


def test_main_file_before_the_include_wins(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(
        root,
        "etc/ssh/sshd_config",
        "PasswordAuthentication yes\nInclude sshd_config.d/*.conf\nClientAliveInterval 180\n",
    )
    assert fired(root, "sshd-effective-config").path == "etc/ssh/sshd_config:1"


def test_values_inside_match_are_not_global(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    main = root / "etc/ssh/sshd_config"
    main.write_text(
        main.read_text()
        + "Match User backup\n    PermitRootLogin yes\n    PermitEmptyPasswords yes\n"
    )
    assert problems(root, "sshd-effective-config") == []


def test_first_value_wins_across_includes(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/10-alive.conf", "ClientAliveInterval 120\n")
    write(root, "etc/ssh/sshd_config.d/20-alive.conf", "ClientAliveInterval 900\n")
    assert problems(root, "sshd-effective-config") == []
    write(root, "etc/ssh/sshd_config.d/05-alive.conf", "ClientAliveInterval=0\n")
    assert (
        fired(root, "sshd-effective-config", "warn").path
        == "etc/ssh/sshd_config.d/05-alive.conf:1"
    )


def test_spaces_around_the_equals_sign(tmp_path: Path) -> None:
    """sshd -T accepts `PermitEmptyPasswords = yes`: the value is `yes`, not `= yes`."""
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/60-site.conf", "PermitEmptyPasswords = yes\n")
    assert fired(root, "sshd-effective-config").found == "sets PermitEmptyPasswords yes"
    write(root, "etc/ssh/sshd_config.d/60-site.conf", "PermitEmptyPasswords\t=\tno\n")
    write(root, "etc/ssh/sshd_config.d/61-site.conf", "PermitRootLogin  =yes\n")
    assert fired(root, "sshd-effective-config", "warn").found == "sets PermitRootLogin yes"


def test_match_in_an_included_file_ends_with_that_file(tmp_path: Path) -> None:
    """A Match block in a drop-in is conditional only to its end; later files and lines count."""
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/10.conf", "Match User x\n    PasswordAuthentication yes\n")
    write(root, "etc/ssh/sshd_config.d/20.conf", "PermitEmptyPasswords yes\n")
    main = root / "etc/ssh/sshd_config"
    main.write_text(main.read_text() + "PermitRootLogin yes\n")
    found = sorted((f.severity, f.found) for f in problems(root, "sshd-effective-config"))
    assert found == [
        ("error", "sets PermitEmptyPasswords yes"),
        ("warn", "sets PermitRootLogin yes"),
    ]
