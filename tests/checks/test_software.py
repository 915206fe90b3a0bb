"""Software and leftovers: azprov's runtime, package versions, agents' state, logs, chores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from azprov.host.kvp import encode_record
from tests.checks.trees import (
    assert_case,
    case_table,
    findings,
    good_tree,
    link,
    problems,
    rpm_db,
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


@case("azprov-runtime-deps")
def no_httpcore(root: Path) -> None:
    (root / "usr/lib/python3/dist-packages/httpcore/__init__.py").unlink()
    (root / "usr/lib/python3/dist-packages/httpcore").rmdir()


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


def snapshot(top: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under `top` (links not followed): mode, size, mtime and content or target."""
    seen: dict[str, tuple[int, int, int, str]] = {}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                body = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                body = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                body = ""
            seen[str(path.relative_to(top))] = (info.st_mode, info.st_size, info.st_mtime_ns, body)
    return seen


def rhel_tree(tmp_path: Path) -> Path:
    root = good_tree(tmp_path / "root")
    (root / "var/lib/dpkg/status").unlink()
    write(root, "etc/yum.repos.d/rhui.repo", "[rhui-baseos]\nbaseurl=https://rhui.example/\n")
    return root


def test_rpm_versions_come_from_a_copy_and_the_tree_is_untouched(tmp_path: Path) -> None:
    """The image's own database is read (through its links), nothing is written, nor the host's."""
    root = rhel_tree(tmp_path)
    rpm_db(root, {"omi": "1.6.7", "openssl": "3.0.7"}, "usr/lib/sysimage/rpm")
    link(root, "var/lib/rpm", "../../usr/lib/sysimage/rpm")
    host = tmp_path / "host-root"
    rpm_db(host, {"openssl": "1.0.1"}, ".rpmdb")
    shutil.rmtree(root / "root")
    link(root, "root", str(host))  # `rpm --root` would follow it to this "host" database
    before, host_before = snapshot(root), snapshot(host)
    (finding,) = problems(root, "package-currency")
    assert (finding.severity, finding.found) == ("error", "has omi 1.6.7-1")
    assert finding.path == "var/lib/rpm"
    assert snapshot(root) == before and snapshot(host) == host_before


def test_rpm_failures_are_unknown_not_empty(tmp_path: Path) -> None:
    root = rhel_tree(tmp_path)
    (root / "var/lib/rpm").mkdir(parents=True)
    (finding,) = findings(root, "package-currency")
    assert finding.severity == "info"
    assert finding.found.startswith("unknown: var/lib/rpm holds no rpm database")
    (root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"not a database" * 100)
    before = snapshot(root)
    (finding,) = findings(root, "package-currency")
    assert finding.severity == "info" and finding.found.startswith("unknown: rpm ")
    assert snapshot(root) == before


def rpm_package(root: Path, name: str, version: str, release: str, epoch: str = "") -> None:
    """Install an empty noarch package with this epoch:version-release into root's var/lib/rpm."""
    work = root.parent / "rpmbuild"
    database = root / "var/lib/rpm"
    if not database.exists():
        database.mkdir(parents=True)
        subprocess.run(["rpm", "--dbpath", str(database), "--initdb"], check=True)
    spec = work / f"{name}-{version}-{release}.spec"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        (f"Epoch: {epoch}\n" if epoch else "")
        + f"Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: t\nLicense: MIT\n"
        "BuildArch: noarch\n%description\nt\n%files\n"
    )
    top = ["--define", f"_topdir {work}", "--define", f"_dbpath {work}/db"]
    subprocess.run(["rpmbuild", "-bb", *top, str(spec)], check=True, capture_output=True)
    (package,) = (work / "RPMS/noarch").glob(f"{name}-{version}-{release}.noarch.rpm")
    install = ["-i", "--justdb", "--nodeps", "--noscripts", str(package)]
    subprocess.run(["rpm", "--dbpath", str(database), *install], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("version", "release", "epoch", "found"),
    [
        ("1.6.8", "1", "", None),  # the fixed build: OMIGOD's fix is 1.6.8-1
        ("1.6.9", "0", "", None),
        ("1.6.8", "0", "", "has omi 1.6.8-0"),
        ("1.6.8", "0", "1", "has omi 1:1.6.8-0"),  # an epoch does not make it a newer OMI
    ],
)
def test_omi_from_the_rpm_database_is_judged_by_version_and_release(
    tmp_path: Path, version: str, release: str, epoch: str, found: str | None
) -> None:
    root = rhel_tree(tmp_path)
    rpm_package(root, "omi", version, release, epoch)
    rpm_package(root, "openssl", "3.0.7", "27.el9", "1")
    assert [f.found for f in problems(root, "package-currency")] == ([found] if found else [])


@pytest.mark.parametrize(
    ("package", "version", "found"),
    [
        ("omi", "1.6.8.1", None),  # OMI's .deb spells its fixed build 1.6.8.1
        ("omi", "1.6.8.1~rc1", "has omi 1.6.8.1~rc1"),  # a pre-release of it sorts before
        ("openssl", "1:1.0.1t-1+deb8u12", "has openssl 1:1.0.1t-1+deb8u12"),
        ("openssl", "1.1.1w-0+deb11u1", None),  # a branch its distribution still patches
        ("walinuxagent", "2.2.53.1-0ubuntu1", None),
        ("walinuxagent", "2.2.53~rc1-1", "has WALinuxAgent 2.2.53~rc1-1"),
    ],
)
def test_dpkg_versions_are_compared_by_dpkg_rules(
    tmp_path: Path, package: str, version: str, found: str | None
) -> None:
    root = good_tree(tmp_path / "root")
    write(
        root,
        "var/lib/dpkg/status",
        f"Package: {package}\nStatus: install ok installed\nVersion: {version}\n\n",
    )
    assert [f.found for f in problems(root, "package-currency")] == ([found] if found else [])


def test_a_malformed_package_version_is_unknown_naming_the_file(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(
        root, "var/lib/dpkg/status", "Package: omi\nStatus: install ok installed\nVersion: 1:\n\n"
    )
    (finding,) = findings(root, "package-currency")
    assert (finding.severity, finding.path) == ("info", "var/lib/dpkg/status")
    assert finding.found == "unknown: omi version='1:' is invalid: has nothing after the colon"


def test_a_sparse_rpm_database_past_the_cap_is_refused_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1.9 GB sparse Packages costs nothing in the image and would be 1.9 GB of the
    host's /tmp (often RAM): refused by its size, with nothing written."""
    root = rhel_tree(tmp_path)
    rpm_db(root, {"openssl": "3.0.7"})
    with open(root / "var/lib/rpm/Packages", "wb") as sparse:
        sparse.truncate(1900 * 1000 * 1000)
    scratch = tmp_path / "host-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real_open = open

    def no_copy(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).startswith(str(scratch)):
            raise AssertionError(f"check wrote {path}")  # stops a copy at its first file
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_copy)
    (finding,) = findings(root, "package-currency")
    assert finding.severity == "info"
    assert finding.found.startswith("unknown: var/lib/rpm is larger than 256 MiB (")
    assert "var/lib/rpm/Packages is 1900000000 bytes" in finding.found
    assert list(scratch.iterdir()) == []


def test_the_rpm_copy_is_removed_when_check_is_stopped_by_sigterm(tmp_path: Path) -> None:
    """SIGTERM while rpm runs on the copy: the run ends, and the copy goes with it."""
    from tests.conftest import REPO

    root = rhel_tree(tmp_path)
    rpm_db(root, {"openssl": "3.0.7"})
    tools = tmp_path / "bin"
    tools.mkdir()
    started = tmp_path / "rpm-started"
    fake_rpm = tools / "rpm"
    fake_rpm.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 30\n")
    fake_rpm.chmod(0o755)
    scratch = tmp_path / "host-tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PATH": f"{tools}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "azprov", "--root", str(root), "check", "--only"]
    check = subprocess.Popen(
        [*command, "package-currency"], env=env, cwd=REPO, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists() and [p.name[:13] for p in scratch.iterdir()] == ["azprov-rpmdb-"]
        check.send_signal(signal.SIGTERM)
        assert check.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        check.kill()
        check.wait()
    assert list(scratch.iterdir()) == []


def test_cloud_init_image_has_no_waagent_duties(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    no_resource_disk_setup(root)
    unit(root, "cloud-init.service")
    assert problems(root, "waagent-duties") == []


def test_missing_tools_are_unknown_not_guessed(tmp_path: Path) -> None:
    """No zstd (nor lsinitramfs) for a zstd initramfs, no rpm for an rpm database: info."""
    from tests.checks.trees import HV_MODULES, initramfs
    from tests.conftest import run_azprov

    root = rhel_tree(tmp_path)
    initramfs(root, HV_MODULES, compress="zstd")
    rpm_db(root, {"openssl": "3.0.7"})
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
