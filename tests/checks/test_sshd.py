"""sshd's effective configuration: Include expanded in place, first value wins, stop at Match."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checks.trees import assert_case, case_table, findings, fired, good_tree, problems, write

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
        (
            "warn",
            "sets passwordauthentication yes under `Match User x`: password login "
            "stays on for those connections whatever the VM's policy",
        ),
    ]


AZPROV_DROPIN = "etc/ssh/sshd_config.d/00-azprov.conf"


def test_a_provisioned_image_is_still_judged_against_azprov_drop_in(tmp_path: Path) -> None:
    """Finding 17: with 00-azprov.conf present (`check /` on a provisioned VM), the
    "read before 00-azprov.conf" test was skipped."""
    root = good_tree(tmp_path / "root")
    write(root, AZPROV_DROPIN, "PasswordAuthentication no\n")
    assert problems(root, "sshd-effective-config") == []
    write(root, "etc/ssh/sshd_config.d/00-aaa.conf", "PasswordAuthentication=yes\n")
    finding = fired(root, "sshd-effective-config")
    assert finding.path == "etc/ssh/sshd_config.d/00-aaa.conf:1"
    assert "before 00-azprov.conf" in finding.found or AZPROV_DROPIN in finding.found


def test_check_and_provision_agree_on_every_form_of_an_earlier_line(tmp_path: Path) -> None:
    """Finding 16: the check flagged `PasswordAuthentication=yes` above the Include while
    provision's reader missed it. One reader now: what the check flags, provision fixes."""
    from azprov.host.root import TargetRoot
    from azprov.host.sshd import set_password_authentication

    root = good_tree(tmp_path / "root")
    main = root / "etc/ssh/sshd_config"
    good = main.read_text()
    for form in ("PasswordAuthentication=yes", '"passwordauthentication" "yes"'):
        main.write_text(f"{form}\n{good}")
        assert fired(root, "sshd-effective-config").path == "etc/ssh/sshd_config:1"
        set_password_authentication(TargetRoot(root), allow=False)
        assert problems(root, "sshd-effective-config") == []


def test_a_quoted_value_is_one_value(tmp_path: Path) -> None:
    """Finding 17: `HostKey "/etc/ssh/my key"` is one path, with its space."""
    from azprov.checks.sshd import effective_config
    from azprov.checks.tree import Tree
    from azprov.host.root import TargetRoot

    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/50-keys.conf", 'HostKey "/etc/ssh/my key"\n')
    config = effective_config(Tree(TargetRoot(root)))
    assert config is not None and config["hostkey"].value == "/etc/ssh/my key"


def test_an_include_under_a_match_is_conditional(tmp_path: Path) -> None:
    """sshd applies what an Include inside a Match block brings only to that block."""
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/extra/10.conf", "PermitEmptyPasswords yes\n")
    main = root / "etc/ssh/sshd_config"
    main.write_text(main.read_text() + "Match User backup\n  Include extra/*.conf\n")
    assert problems(root, "sshd-effective-config") == []
    main.write_text(main.read_text() + "Match all\nInclude extra/*.conf\n")
    assert fired(root, "sshd-effective-config").path == "etc/ssh/extra/10.conf:1"


def test_a_configuration_sshd_refuses_is_an_error(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/60-site.conf", 'Banner "/etc/issue\n')
    finding = fired(root, "sshd-effective-config")
    assert finding.path == "etc/ssh/sshd_config.d/60-site.conf:1"
    assert "invalid quotes" in finding.found


def test_an_include_loop_is_unknown_not_a_hang(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/60-loop.conf", "Include /etc/ssh/sshd_config.d/*.conf\n")
    found = [(f.severity, f.found) for f in findings(root, "sshd-effective-config")]
    assert len(found) == 1 and found[0][0] == "info" and "16 files deep" in found[0][1]


def test_a_match_all_that_turns_password_login_back_on_is_a_warning(tmp_path: Path) -> None:
    """Review H4: sshd applies a `Match all` block after the global values, so its
    `PasswordAuthentication yes` beats 00-azprov.conf's `no` for every connection."""
    root = good_tree(tmp_path / "root")
    assert problems(root, "sshd-effective-config") == []
    main = root / "etc/ssh/sshd_config"
    lines = len(main.read_text().splitlines())
    main.write_text(main.read_text() + "Match all\nPasswordAuthentication yes\n")
    finding = fired(root, "sshd-effective-config", "warn")
    assert finding.path == f"etc/ssh/sshd_config:{lines + 2}"
    assert "every connection" in finding.found


def test_a_match_block_allowing_passwords_for_some_users_is_a_warning(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(
        root,
        "etc/ssh/sshd_config.d/60-backup.conf",
        "Match User backup\n  PasswordAuthentication yes\n",
    )
    finding = fired(root, "sshd-effective-config", "warn")
    assert finding.path == "etc/ssh/sshd_config.d/60-backup.conf:2"
    assert "`Match User backup`" in finding.found


def test_a_match_all_value_overrides_the_global_one_in_the_check(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(
        root,
        "etc/ssh/sshd_config.d/60-site.conf",
        "PermitEmptyPasswords no\nMatch all\n  PermitEmptyPasswords yes\n",
    )
    finding = fired(root, "sshd-effective-config")
    assert (finding.severity, finding.found) == ("error", "sets PermitEmptyPasswords yes")
    assert finding.path == "etc/ssh/sshd_config.d/60-site.conf:3"


def test_provision_removes_what_the_check_flags_under_match_all(tmp_path: Path) -> None:
    from azprov.host.root import TargetRoot
    from azprov.host.sshd import set_password_authentication

    root = good_tree(tmp_path / "root")
    main = root / "etc/ssh/sshd_config"
    main.write_text(main.read_text() + "Match User *\n  PasswordAuthentication yes\n")
    assert "every connection" in fired(root, "sshd-effective-config", "warn").found
    set_password_authentication(TargetRoot(root), allow=False)
    assert problems(root, "sshd-effective-config") == []
