"""Identity: machine ID (and D-Bus's copy), host name, host keys, per-machine secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.checks.trees import (
    UNIT,
    assert_case,
    case_table,
    fired,
    good_tree,
    link,
    problems,
    write,
)

CASES, case = case_table()


def host_key(root: Path, kind: str = "ed25519") -> Path:
    path = root / f"etc/ssh/ssh_host_{kind}_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "root@build", "-f", str(path)], check=True
    )
    return path


@case("machine-id")
def machine_id_set(root: Path) -> None:
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n", 0o444)


@case("machine-id")
def dbus_copy_left(root: Path) -> None:
    write(root, "var/lib/dbus/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")


@case("hostname-generic", "warn")
def build_hostname(root: Path) -> None:
    write(root, "etc/hostname", "packer-build-7\n")


@case("hostname-generic", "warn")
def hostname_sent_over_dhcp(root: Path) -> None:
    write(root, "etc/dhcp/dhclient.conf", 'send host-name "packer-build-7";\n')


@case("clone-shared-secrets", "warn")
def random_seed(root: Path) -> None:
    write(root, "var/lib/systemd/random-seed", "\x01" * 32, 0o600)


@case("clone-shared-secrets")
def kerberos_keytab(root: Path) -> None:
    write(root, "etc/krb5.keytab", "\x05\x02keytab", 0o600)


@case("ssh-host-keys")
def host_key_left(root: Path) -> None:
    host_key(root)


@case("ssh-host-keys")
def no_keys_and_nothing_makes_them(root: Path) -> None:
    (root / f"usr/lib/systemd/system/{UNIT}").unlink()


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    assert_case(tmp_path, check_id, severity, breaker)


def test_machine_id_finding_shows_a_prefix_and_the_fix(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    machine_id_set(root)
    finding = fired(root, "machine-id")
    assert (finding.path, finding.found) == ("etc/machine-id", "holds 5f3c0a9e…")
    assert "azprov deprovision" in finding.fix


@pytest.mark.parametrize("state", ["absent", "uninitialized", "dbus-link", "dbus-empty"])
def test_first_boot_machine_ids_pass(tmp_path: Path, state: str) -> None:
    root = good_tree(tmp_path / "root")
    if state == "absent":
        (root / "etc/machine-id").unlink()
    elif state == "uninitialized":
        write(root, "etc/machine-id", "uninitialized\n")
    elif state == "dbus-link":
        link(root, "var/lib/dbus/machine-id", "/etc/machine-id")
        write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
        assert len(problems(root, "machine-id")) == 1  # only etc/machine-id itself
        return
    else:
        write(root, "var/lib/dbus/machine-id", "")
    assert problems(root, "machine-id") == []


def test_every_host_key_is_listed(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    for kind in ("ed25519", "ecdsa", "rsa"):
        host_key(root, kind)
    paths = [f.path for f in problems(root, "ssh-host-keys")]
    assert paths == [f"etc/ssh/ssh_host_{k}_key" for k in ("ecdsa", "ed25519", "rsa")]
