"""Software and leftovers: azprov's runtime, package versions, agents' state, logs, chores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azprov.host.kvp import encode_record
from tests.checks.trees import (
    assert_case,
    case_table,
    findings,
    good_tree,
    problems,
    systemctl,
    unit,
    write,
)

CASES, case = case_table()


@case("azprov-runtime-deps")
def old_python(root: Path) -> None:
    (root / "usr/bin/python3").unlink()
    (root / "usr/bin/python3").symlink_to("python3.8")


@case("azprov-runtime-deps")
def no_httpx(root: Path) -> None:
    (root / "usr/lib/python3/dist-packages/httpx/__init__.py").unlink()
    (root / "usr/lib/python3/dist-packages/httpx").rmdir()


@case("package-currency", "warn")
def no_security_suite(root: Path) -> None:
    write(
        root,
        "etc/apt/sources.list",
        "deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\n",
    )


@case("package-currency")
def vulnerable_omi(root: Path) -> None:
    status = root / "var/lib/dpkg/status"
    status.write_text(
        status.read_text() + "Package: omi\nStatus: install ok installed\nVersion: 1.6.8-0\n\n"
    )


@case("selinux-labels", "warn")
def selinux_enforcing_offline(root: Path) -> None:
    write(root, "etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=targeted\n")


@case("agent-state-leftover")
def azprov_state(root: Path) -> None:
    write(root, "var/lib/azprov/provisioned.json", '{"vm_id": "x"}\n')


@case("agent-state-leftover")
def waagent_state(root: Path) -> None:
    write(root, "var/lib/waagent/ovf-env.xml", "<Environment/>\n", 0o600)


@case("agent-state-leftover", "warn")
def kvp_records(root: Path) -> None:
    write(root, "var/lib/hyperv/.kvp_pool_1", "")
    (root / "var/lib/hyperv/.kvp_pool_1").write_bytes(
        encode_record("PROVISIONING_REPORT", "result=success")
    )


@case("logs-crash-tmp", "warn")
def logs(root: Path) -> None:
    write(root, "var/log/auth.log", "sshd[1]: Accepted publickey for packer from 10.1.2.3\n")


@case("logs-crash-tmp")
def kickstart_with_root_password(root: Path) -> None:
    write(root, "root/anaconda-ks.cfg", "rootpw --iscrypted $6$abc\n")


@case("waagent-duties", "warn")
def no_resource_disk_setup(root: Path) -> None:
    (root / "usr/lib/systemd/system/azure-ephemeral-disk-setup.service").unlink()


@case("time-sync-ptp", "warn")
def chrony_on_ptp0(root: Path) -> None:
    write(
        root,
        "etc/chrony/chrony.conf",
        "refclock PHC /dev/ptp0 poll 3\nrefclock PHC /dev/ptp_hyperv poll 3\n",
    )


@case("time-sync-ptp", "warn")
def no_time_daemon(root: Path) -> None:
    systemctl(root, "disable", "chrony.service")


@case("image-file-size", "info")
def always_a_tree(root: Path) -> None:
    del root


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    if check_id == "image-file-size":
        (finding,) = findings(good_tree(tmp_path / "root"), check_id)
        assert finding.severity == "info" and finding.found.startswith("unknown: a directory tree")
        return
    assert_case(tmp_path, check_id, severity, breaker)


def test_rpm_database_without_dpkg(tmp_path: Path) -> None:
    """RHEL-family tree: versions come from `rpm --root` (or are unknown without rpm)."""
    root = good_tree(tmp_path / "root")
    (root / "var/lib/dpkg/status").unlink()
    (root / "var/lib/rpm").mkdir(parents=True)
    write(root, "etc/yum.repos.d/rhui.repo", "[rhui-baseos]\nbaseurl=https://rhui.example/\n")
    found = [f for f in findings(root, "package-currency") if f.severity != "info"]
    assert found == []


def test_cloud_init_image_has_no_waagent_duties(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    no_resource_disk_setup(root)
    unit(root, "cloud-init.service")
    assert problems(root, "waagent-duties") == []


def test_missing_tools_are_unknown_not_guessed(tmp_path: Path) -> None:
    """No zstd (nor lsinitramfs) for a zstd initramfs, no rpm for an rpm database: info."""
    from tests.checks.trees import HV_MODULES, initramfs
    from tests.conftest import run_azprov

    root = good_tree(tmp_path / "root")
    initramfs(root, HV_MODULES, compress="zstd")
    (root / "var/lib/dpkg/status").unlink()
    (root / "var/lib/rpm").mkdir(parents=True)
    write(root, "etc/yum.repos.d/rhui.repo", "[rhui-baseos]\n")
    ids = "hyperv-drivers-initramfs,package-currency"
    with_tools = run_azprov("--root", str(root), "check", "--json", "--only", ids)
    assert json.loads(with_tools.stdout) == []
    run = run_azprov(
        "--root", str(root), "check", "--json", "--only", ids, env={"PATH": "/nonexistent"}
    )
    assert run.returncode == 0, run.stderr
    found = {f["id"]: f for f in json.loads(run.stdout)}
    assert found["hyperv-drivers-initramfs"]["severity"] == "info"
    assert found["hyperv-drivers-initramfs"]["found"] == (
        "unknown: zstd is not installed, and neither lsinitramfs nor lsinitrd is"
    )
    assert found["package-currency"]["severity"] == "info"
    assert found["package-currency"]["found"].startswith("unknown: the rpm database is binary")
