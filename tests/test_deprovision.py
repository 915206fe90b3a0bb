"""`azprov deprovision --root`: a real process, real userdel --prefix / systemctl --root,
against an image root that `azprov provision` really provisioned first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from azprov.simulate import prepare_root, snapshot
from azprov.simulator import SimulatedFabric
from tests.conftest import REPO, needs_root, run_azprov

pytestmark = needs_root

UNIT = "etc/systemd/system/multi-user.target.wants/azure-provisioning.service"
LEASES = (
    "var/lib/dhcp/dhclient.eth0.leases",
    "var/lib/dhclient/dhclient--eth0.lease",
    "run/systemd/netif/leases/2",
    "var/lib/NetworkManager/internal-1234-eth0.lease",
)
HISTORIES = ("root/.bash_history", "home/azureuser/.bash_history", "home/azureuser/.zsh_history")


@pytest.fixture
def provisioned(tmp_path: Path, fabric: SimulatedFabric, config_file: Path) -> Path:
    """An image root provisioned by azprov, then used for a while (leases, history)."""
    root = tmp_path / "root"
    prepare_root(root, fabric.spec.vm_id)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    run = run_azprov("--config", str(config_file), "--root", str(root), "provision")
    assert run.returncode == 0, run.stderr
    assert not (root / UNIT).is_symlink()  # provision disabled the unit
    for lease in LEASES:
        (root / lease).parent.mkdir(parents=True, exist_ok=True)
        (root / lease).write_text("lease {}\n")
    (root / "root").mkdir(exist_ok=True)
    for history in HISTORIES:
        (root / history).write_text("sudo cat /etc/shadow\n")
    (root / "var/lib/azprov/custom-data").write_bytes(b"#!/bin/sh\necho custom\n")
    return root


def deprovision(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "azprov", "--root", str(root), "deprovision", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def marker(root: Path) -> dict[str, object]:
    return json.loads((root / "var/lib/azprov/provisioned.json").read_text())


def test_user_deprovision_reverses_provision(provisioned: Path, tmp_path: Path) -> None:
    root = provisioned
    assert marker(root)["user_created"] is True
    assert (root / "home/azureuser/.ssh/authorized_keys").is_file()
    assert (root / "etc/sudoers.d/90-azprov-azureuser").is_file()
    assert list((root / "etc/ssh").glob("ssh_host_*"))

    run = deprovision(root, "--user", "--force")
    assert run.returncode == 0, run.stderr

    # Every action is listed, with paths as seen inside the image.
    for line in (
        "delete user azureuser",
        "remove sudoers drop-in /etc/sudoers.d/90-azprov-azureuser",
        "remove /var/lib/azprov",
        "remove SSH host key /etc/ssh/ssh_host_",
        "remove DHCP lease /var/lib/dhcp/dhclient.eth0.leases",
        "remove shell history /root/.bash_history",
        "set the host name to localhost",
        "empty /etc/machine-id",
        "enable azure-provisioning.service",
    ):
        assert line in run.stdout, line
    assert str(tmp_path / "root") in run.stdout

    passwd = (root / "etc/passwd").read_text()
    assert "azureuser:" not in passwd
    assert "azureuser:" not in (root / "etc/group").read_text()
    assert "azureuser:" not in (root / "etc/shadow").read_text()
    assert not (root / "home/azureuser").exists()
    assert not (root / "etc/sudoers.d/90-azprov-azureuser").exists()
    assert not (root / "var/lib/azprov").exists()
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/ssh/sshd_config").is_file()
    for lease in LEASES:
        assert not (root / lease).exists(), lease
    assert not (root / "root/.bash_history").exists()
    assert (root / "etc/hostname").read_text() == "localhost\n"
    machine_id = root / "etc/machine-id"
    assert machine_id.is_file() and machine_id.stat().st_size == 0
    assert (root / UNIT).is_symlink()


def test_without_user_the_account_stays_but_its_history_goes(provisioned: Path) -> None:
    root = provisioned
    run = deprovision(root, "--force")
    assert run.returncode == 0, run.stderr
    assert "delete user" not in run.stdout
    assert "azureuser:" in (root / "etc/passwd").read_text()
    assert (root / "home/azureuser/.ssh/authorized_keys").is_file()
    assert (root / "etc/sudoers.d/90-azprov-azureuser").is_file()
    assert not (root / "home/azureuser/.bash_history").exists()
    assert not (root / "home/azureuser/.zsh_history").exists()
    assert not (root / "var/lib/azprov").exists()
    assert (root / UNIT).is_symlink()


def test_dry_run_lists_and_changes_nothing(provisioned: Path) -> None:
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--user", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "delete user azureuser" in run.stdout
    assert "dry run: nothing was changed" in run.stdout
    assert snapshot(provisioned) == before


def test_no_terminal_and_no_force_refuses_and_changes_nothing(provisioned: Path) -> None:
    before = snapshot(provisioned)
    run = deprovision(provisioned, stdin="y\n")
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "azprov: error: refusing to deprovision without confirmation: stdin is not a terminal"
        " (pass --force to run unattended, or --dry-run to only list)"
    ]
    assert snapshot(provisioned) == before


def _on_a_terminal(root: Path, answer: bytes) -> tuple[int, bytes]:
    """Run deprovision with a pseudo-terminal as stdin and type `answer`."""
    import pty
    import sys

    pid, fd = pty.fork()
    if pid == 0:  # child: stdin/stdout are the terminal
        os.chdir(REPO)
        os.execv(
            sys.executable,
            [sys.executable, "-m", "azprov", "--root", str(root), "deprovision", "--user"],
        )
    output = b""
    while b"[y/N]" not in output:
        output += os.read(fd, 4096)
    os.write(fd, answer)
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def test_answering_no_on_a_terminal_changes_nothing(provisioned: Path) -> None:
    before = snapshot(provisioned)
    code, output = _on_a_terminal(provisioned, b"n\n")
    assert code != 0
    assert b"deprovision cancelled: nothing was changed" in output
    assert snapshot(provisioned) == before


def test_end_of_input_at_the_question_cancels_in_one_line(provisioned: Path) -> None:
    before = snapshot(provisioned)
    code, output = _on_a_terminal(provisioned, b"\x04")  # Ctrl-D
    assert code == 1
    assert b"azprov: cancelled: nothing was changed" in output
    assert b"internal error" not in output and b"Traceback" not in output
    assert snapshot(provisioned) == before


def test_answering_yes_on_a_terminal_deprovisions(provisioned: Path) -> None:
    code, output = _on_a_terminal(provisioned, b"y\n")
    assert code == 0, output
    assert "azureuser:" not in (provisioned / "etc/passwd").read_text()


def test_user_without_a_marker_is_refused(provisioned: Path) -> None:
    (provisioned / "var/lib/azprov/provisioned.json").unlink()
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--user", "--force")
    assert run.returncode != 0
    assert run.stderr.strip() == (
        "azprov: error: cannot tell which user azprov created: /var/lib/azprov/provisioned.json"
        " is missing or unreadable (delete the user yourself, or run without --user)"
    )
    assert snapshot(provisioned) == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"admin_user": None}, "/var/lib/azprov/provisioned.json has no admin_user"),
        ({"user_created": False}, "user 'azureuser' was not created by azprov"),
        ({"admin_user": "-rf"}, "admin_user='-rf' is not a valid user name"),
        ({"admin_user": "root"}, "user 'root' has UID 0, a system account"),
        ({"sudoers_file": "/etc/sudoers"}, "sudoers_file='/etc/sudoers' is not a file in"),
        ({"sudoers_file": "/etc/sudoers.d/../shadow"}, "is not a file in /etc/sudoers.d/"),
    ],
)
def test_user_with_an_unusable_marker_is_refused(
    provisioned: Path, change: dict[str, object], message: str
) -> None:
    path = provisioned / "var/lib/azprov/provisioned.json"
    path.write_text(json.dumps({**marker(provisioned), **change}))
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--user", "--force")
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("azprov: error: "), run.stderr
    assert message in lines[0]
    assert snapshot(provisioned) == before


def test_a_directory_that_is_not_a_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    run = deprovision(tmp_path / "empty", "--force")
    assert run.returncode != 0
    assert run.stderr.strip() == (
        f"azprov: error: {tmp_path / 'empty'} does not look like a root filesystem: no /etc"
    )


def test_an_image_without_the_unit_is_refused(provisioned: Path) -> None:
    (provisioned / "etc/systemd/system/azure-provisioning.service").unlink()
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--force")
    assert run.returncode != 0
    assert "azure-provisioning.service is not installed in" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert snapshot(provisioned) == before


def test_symlinks_out_of_the_image_are_not_followed(provisioned: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-dhcp"
    outside.mkdir()
    (outside / "dhclient.eth0.leases").write_text("the host's lease\n")
    leases = provisioned / "var/lib/dhcp"
    for child in leases.iterdir():
        child.unlink()
    leases.rmdir()
    leases.symlink_to(outside)  # an absolute symlink, as a mounted image may have
    history = provisioned / "root/.bash_history"
    history.unlink()
    host_history = tmp_path / "host-history"
    host_history.write_text("the host's history\n")
    history.symlink_to(host_history)

    run = deprovision(provisioned, "--force")
    assert run.returncode == 0, run.stderr
    assert (outside / "dhclient.eth0.leases").read_text() == "the host's lease\n"
    assert host_history.read_text() == "the host's history\n"  # the link went, not its target
    assert not history.is_symlink()


def test_running_twice_is_safe(provisioned: Path) -> None:
    assert deprovision(provisioned, "--force").returncode == 0
    again = deprovision(provisioned, "--force")
    assert again.returncode == 0, again.stderr
    assert (provisioned / "etc/machine-id").stat().st_size == 0


def test_the_deprovisioned_image_provisions_again_as_a_new_vm(
    provisioned: Path, fabric: SimulatedFabric, config_file: Path
) -> None:
    assert deprovision(provisioned, "--user", "--force").returncode == 0
    reports = len(fabric.health_reports)
    run = run_azprov("--config", str(config_file), "--root", str(provisioned), "provision")
    assert run.returncode == 0, run.stderr
    assert len(fabric.health_reports) == reports + 1
    assert marker(provisioned)["user_created"] is True
    assert (provisioned / "home/azureuser/.ssh/authorized_keys").is_file()
    assert list((provisioned / "etc/ssh").glob("ssh_host_*_key"))


# -- hostile images and what a kill leaves behind (issue 15) -----------------------------------


def test_a_fifo_kvp_pool_neither_hangs_a_dry_run_nor_stops_it(provisioned: Path) -> None:
    pool = provisioned / "var/lib/hyperv/.kvp_pool_1"
    pool.unlink()
    os.mkfifo(pool)
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "azprov",
                "--root",
                str(provisioned),
                "deprovision",
                "--dry-run",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("deprovision --dry-run hangs on a FIFO in place of the KVP pool")
    assert run.returncode == 0, run.stderr
    assert "is a FIFO, not a regular file" in run.stderr
    assert "dry run: nothing was changed" in run.stdout


def test_temporary_files_left_by_a_killed_run_are_removed(provisioned: Path) -> None:
    leftovers = [
        "etc/.hostname.azprov-0a1b2c3d",
        "etc/sudoers.d/.90-azprov-azureuser.azprov-deadbeef",
        "etc/ssh/sshd_config.d/.00-azprov.conf.azprov-01234567",
    ]
    for leftover in leftovers:
        (provisioned / leftover).write_text("half written\n")
    (provisioned / "etc/.hostname.keep-me").write_text("not azprov's\n")
    run = deprovision(provisioned, "--force")
    assert run.returncode == 0, run.stderr
    for leftover in leftovers:
        assert f"remove leftover temporary file /{leftover}" in run.stdout
        assert not (provisioned / leftover).exists(), leftover
    assert (provisioned / "etc/.hostname.keep-me").exists()


def test_user_deprovision_refuses_a_home_leading_out_and_changes_nothing(
    provisioned: Path, tmp_path: Path
) -> None:
    """userdel --prefix would stat and remove the home through a /home link: the host's."""
    outside = tmp_path / "host-home"
    shutil.copytree(provisioned / "home", outside, symlinks=True)
    shutil.rmtree(provisioned / "home")
    (provisioned / "home").symlink_to(outside)
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--force", "--user")
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "azprov: error: not running userdel on the image: /home/azureuser:"
        " /home is a symbolic link, which azprov does not follow there"
    ]
    assert (outside / "azureuser/.ssh/authorized_keys").is_file()
    assert snapshot(provisioned) == before


def test_deprovision_refuses_a_wants_folder_leading_out_and_changes_nothing(
    provisioned: Path, tmp_path: Path
) -> None:
    """systemctl --root enable would make its link wherever the .wants folder leads."""
    wants = provisioned / "etc/systemd/system/multi-user.target.wants"
    outside = tmp_path / "host-wants"
    outside.mkdir()
    shutil.rmtree(wants)
    wants.symlink_to(outside)
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--force")
    assert run.returncode != 0
    assert "not running systemctl on the image" in run.stderr
    assert f"{wants.relative_to(provisioned)} is a symbolic link" in run.stderr
    assert list(outside.iterdir()) == []
    assert snapshot(provisioned) == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_user_deprovision_refuses_a_passwd_home_with_a_dot_component_even_in_a_dry_run(
    provisioned: Path, dry_run: bool
) -> None:
    """A home from the image's passwd is handed on only as a plain absolute path."""
    passwd = provisioned / "etc/passwd"
    passwd.write_text(passwd.read_text().replace("/home/azureuser:", "/home/./azureuser:"))
    before = snapshot(provisioned)
    run = deprovision(provisioned, "--force", "--user", *(["--dry-run"] if dry_run else []))
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "azprov: error: not running userdel on the image: the home of azureuser in"
        " /etc/passwd '/home/./azureuser' has a '.' component"
    ]
    assert snapshot(provisioned) == before


def test_user_deprovision_keeps_a_home_the_user_does_not_own(provisioned: Path) -> None:
    """userdel's own rule, kept now that azprov removes an offline home itself."""
    os.chown(provisioned / "home/azureuser", 0, 0)
    run = deprovision(provisioned, "--force", "--user")
    assert run.returncode == 0, run.stderr
    assert "not removing /home/azureuser" in run.stderr
    assert (provisioned / "home/azureuser").is_dir()
    assert "azureuser:" not in (provisioned / "etc/passwd").read_text()
