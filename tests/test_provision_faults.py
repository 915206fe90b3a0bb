"""`provision` against a hostile or failing image (issue 15): a root it cannot write, a
run killed at the worst moment, files linked to the host. Each still ends reported,
recoverable, and with nothing of the host read into the image or the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from azprov.host.kvp import decode_records
from azprov.simulate import prepare_root, snapshot
from azprov.simulator import SimulatedFabric
from tests.conftest import REPO, Run, needs_root, run_azprov

pytestmark = needs_root

PASSWORD = "Very-Secret-Passw0rd-4-tests"
HOST_SECRET = "root:$6$hostsalt$THEHOSTSHADOWHASHthatmustneverleave:19000:0:99999:7:::\n"


@pytest.fixture
def image(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    root = tmp_path / "root"
    prepare_root(root, fabric.spec.vm_id)
    return root


def provision(config: Path, root: Path) -> Run:
    return run_azprov("--config", str(config), "--root", str(root), "provision")


def with_password(tmp_path: Path, config: Path) -> None:
    from azprov.simulator.documents import ovf_env_xml

    media = tmp_path / "media"
    media.mkdir()
    (media / "ovf-env.xml").write_bytes(ovf_env_xml(password=PASSWORD))
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f"[media]\npath = {media}\n")


def kvp_text(root: Path) -> str:
    pool = root / "var/lib/hyperv/.kvp_pool_1"
    return " ".join(v for _, v in decode_records(pool.read_bytes())) if pool.exists() else ""


def every_file(root: Path) -> Iterator[Path]:
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                yield path


def killed_at(tmp_path: Path, trigger: str) -> Path:
    """A probe that runs azprov and SIGKILLs itself where `trigger` (Python that
    patches a function) says: the test's hook, kept out of azprov's own code."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, signal, subprocess, sys, runpy\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "def die():\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"{trigger}\n"
        "sys.argv = ['azprov', *sys.argv[1:]]\n"
        "runpy.run_module('azprov', run_name='__main__')\n"
    )
    return probe


def run_probe(probe: Path, config: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(probe), "--config", str(config), "--root", str(root), "provision"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


# -- finding 12: a read-only root ----------------------------------------------------------


@pytest.fixture
def read_only_image(tmp_path: Path, fabric: SimulatedFabric) -> Iterator[Path]:
    """A generalized image on a tmpfs remounted read-only, as a root whose filesystem
    went read-only (errors=remount-ro) looks at first boot."""
    root = tmp_path / "ro-root"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        prepare_root(root, fabric.spec.vm_id)
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_a_read_only_root_is_reported_not_ready_with_its_reason(
    fabric: SimulatedFabric, config_file: Path, read_only_image: Path
) -> None:
    run = provision(config_file, read_only_image)
    assert run.returncode == 1, run.stderr
    assert "internal error" not in run.stderr and "Traceback" not in run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("azprov: error:")]
    assert len(error) == 1 and "/var/lib/azprov" in error[0] and "Read-only" in error[0]
    report = fabric.health_reports[-1]
    assert (report.state, report.substatus) == ("NotReady", "ProvisioningFailed")
    assert report.description is not None
    assert "reason=state_unwritable" in report.description
    assert f"vm_id={fabric.spec.vm_id}" in report.description


# -- finding 15: a kill between useradd and its record ---------------------------------------


def test_killed_right_after_useradd_the_rerun_still_knows_the_user_is_azprovs(
    fabric: SimulatedFabric, config_file: Path, image: Path, tmp_path: Path
) -> None:
    probe = killed_at(
        tmp_path,
        "real_run = subprocess.run\n"
        "def run(argv, *args, **kwargs):\n"
        "    result = real_run(argv, *args, **kwargs)\n"
        "    if argv and argv[0] == 'useradd':\n"
        "        die()\n"
        "    return result\n"
        "subprocess.run = run\n",
    )
    killed = run_probe(probe, config_file, image)
    assert killed.returncode == -9, killed.stderr
    assert "azureuser:" in (image / "etc/passwd").read_text()  # useradd did run
    assert fabric.health_reports == []

    again = provision(config_file, image)
    assert again.returncode == 0, again.stderr
    marker = json.loads((image / "var/lib/azprov/provisioned.json").read_text())
    assert marker["admin_user"] == "azureuser" and marker["user_created"] is True
    assert not (image / "var/lib/azprov/created-user.json").exists()
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "azprov",
            "--root",
            str(image),
            "deprovision",
            "--user",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "delete user azureuser" in listed.stdout + listed.stderr


def test_a_temp_file_left_by_a_kill_mid_write_is_removed_by_the_next_run(
    fabric: SimulatedFabric, config_file: Path, image: Path, tmp_path: Path
) -> None:
    probe = killed_at(
        tmp_path,
        "real_rename = os.rename\n"
        "def rename(src, dst, *args, **kwargs):\n"
        "    if str(src).startswith('.hostname.azprov-'):\n"
        "        die()\n"
        "    return real_rename(src, dst, *args, **kwargs)\n"
        "os.rename = rename\n",
    )
    killed = run_probe(probe, config_file, image)
    assert killed.returncode == -9, killed.stderr
    leftovers = [p.name for p in (image / "etc").iterdir() if ".azprov-" in p.name]
    assert len(leftovers) == 1 and leftovers[0].startswith(".hostname.azprov-")

    again = provision(config_file, image)
    assert again.returncode == 0, again.stderr
    assert [p.name for p in (image / "etc").iterdir() if ".azprov-" in p.name] == []
    assert f"removed /etc/{leftovers[0]}" in again.stderr
    assert (image / "etc/hostname").read_text() == "simvm\n"


# -- findings 1 and 2 end to end: nothing of the host in the report or the image -------------


def test_a_product_uuid_linked_to_a_host_secret_reaches_no_report(
    fabric: SimulatedFabric, config_file: Path, image: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "host-shadow"
    secret.write_text(HOST_SECRET)
    uuid_file = image / "sys/class/dmi/id/product_uuid"
    uuid_file.unlink()
    uuid_file.symlink_to(secret)
    run = provision(config_file, image)
    assert run.returncode == 1 and "symbolic link" in run.stderr
    report = fabric.health_reports[-1]
    assert report.state == "NotReady" and report.description is not None
    assert "reason=vm_id_unreadable" in report.description
    for text in (run.stderr, report.description, kvp_text(image)):
        assert "THEHOSTSHADOW" not in text and "hostsalt" not in text


def test_a_shadow_linked_out_of_the_image_is_refused_before_any_change(
    fabric: SimulatedFabric, config_file: Path, image: Path, tmp_path: Path
) -> None:
    """The admin user exists in the image, an ovf-env password is given, and the image's
    etc/shadow is a link to a host file: the host's hashes must not be copied into the
    image (by azprov's rewrite of the shadow, or by a shadow tool following the link)."""
    with_password(tmp_path, config_file)
    with (image / "etc/passwd").open("a") as passwd:
        passwd.write("azureuser:x:1000:1000::/home/azureuser:/bin/bash\n")
    with (image / "etc/group").open("a") as group:
        group.write("azureuser:x:1000:\n")
    host_shadow = tmp_path / "host-shadow"
    host_shadow.write_text(HOST_SECRET + "azureuser:!:19000:0:99999:7:::\n")
    (image / "etc/shadow").unlink()
    (image / "etc/shadow").symlink_to(host_shadow)
    before = snapshot(image)
    run = provision(config_file, image)
    assert run.returncode == 1 and "/etc/shadow" in run.stderr
    report = fabric.health_reports[-1]
    assert report.state == "NotReady" and report.description is not None
    assert "reason=unsafe_path" in report.description
    assert host_shadow.read_text().startswith(HOST_SECRET)
    after = {p: v for p, v in snapshot(image).items() if not p.startswith("/var/lib/")}
    assert after == {p: v for p, v in before.items() if not p.startswith("/var/lib/")}
    for path in every_file(image):
        assert b"THEHOSTSHADOW" not in path.read_bytes(), path
