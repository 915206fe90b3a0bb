"""`azprov check` on the emulated-boot image: clean after deprovision, and three seeded faults.

The image is the one the boot tests build (Debian 12 with the project's .deb).
After `azprov --root TREE deprovision --force` it must pass with exit 0; the
checks that need a boot loader it does not have (qemu boots it with -kernel
and -initrd) say so as `info`. Then three faults are seeded and exactly those
three errors are reported, and a boot shows the last one's consequence: no
Ready is ever posted.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Run, run_azprov
from tests.e2e.image import BootFiles, build_image
from tests.e2e.test_boot import vm_spec
from tests.e2e.tools import built_package
from tests.e2e.vm import Boot, boot

UNIT_LINK = "etc/systemd/system/multi-user.target.wants/azure-provisioning.service"
FAULTS = {"authorized-keys", "machine-id", "prov-unit-enabled"}
NO_BOOT_LOADER = "unknown: no boot loader configuration in the tree"
FAULTY_UUID = "2c3d4e5f-6a7b-4c8d-9e0f-a1b2c3d4e5f6"
FAULTY = vm_spec(FAULTY_UUID, "e2e-faulty", 1, "5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1a04")


@dataclasses.dataclass
class Checked:
    deprovision: Run
    clean: Run
    clean_json: list[dict[str, str]]
    faulty: Run
    faulty_json: list[dict[str, str]]
    image: BootFiles


def seed_faults(tree: Path, workdir: Path) -> None:
    """A build user's key left behind, the build's machine ID, the unit's enable link gone."""
    subprocess.run(
        ["useradd", "--prefix", str(tree), "--create-home", "--shell", "/bin/bash", "builder"],
        check=True,
        capture_output=True,
    )
    key = workdir / "builder_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = tree / "home/builder/.ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (tree / "etc/machine-id").write_text("5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    (tree / UNIT_LINK).unlink()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-check")


@pytest.fixture(scope="module")
def checked(workdir: Path) -> Checked:
    runs: dict[str, Run] = {}

    def customize(tree: Path) -> None:
        runs["deprovision"] = run_azprov("--root", str(tree), "deprovision", "--force")
        runs["clean"] = run_azprov("--root", str(tree), "check")
        runs["clean_json"] = run_azprov("--root", str(tree), "check", "--json")
        seed_faults(tree, workdir)
        runs["faulty"] = run_azprov("--root", str(tree), "check")
        runs["faulty_json"] = run_azprov("--root", str(tree), "check", "--json")

    image = build_image(workdir, built_package("deb"), customize)
    return Checked(
        runs["deprovision"],
        runs["clean"],
        json.loads(runs["clean_json"].stdout),
        runs["faulty"],
        json.loads(runs["faulty_json"].stdout),
        image,
    )


@pytest.fixture(scope="module")
def faulty_boot(checked: Checked, workdir: Path) -> Boot:
    disk = checked.image.copy_disk(workdir / "faulty.img")
    return boot(checked.image, disk, FAULTY, FAULTY_UUID, workdir, name="faulty")


def test_deprovisioned_image_passes(checked: Checked) -> None:
    assert checked.deprovision.returncode == 0, checked.deprovision.stderr
    assert checked.clean.returncode == 0, checked.clean.stdout + checked.clean.stderr
    assert [f for f in checked.clean_json if f["severity"] == "error"] == []
    print("\n" + checked.clean.stdout)


def test_boot_loader_checks_say_the_image_has_none(checked: Checked) -> None:
    by_id = {f["id"]: f for f in checked.clean_json}
    for check_id in ("serial-console", "grub-forbidden-params", "cmdline-recommended"):
        assert by_id[check_id]["severity"] == "info", by_id[check_id]
        assert by_id[check_id]["found"].startswith(NO_BOOT_LOADER), by_id[check_id]
    assert by_id["efi-fallback-loader"]["found"].startswith("unknown: no EFI system partition")


def test_seeded_faults_are_exactly_the_errors(checked: Checked) -> None:
    assert checked.faulty.returncode == 1
    errors = [f for f in checked.faulty_json if f["severity"] == "error"]
    assert {f["id"] for f in errors} == FAULTS and len(errors) == 3, errors
    paths = {f["id"]: f["path"] for f in errors}
    assert paths["authorized-keys"] == "home/builder/.ssh/authorized_keys"
    assert paths["machine-id"] == "etc/machine-id"
    assert paths["prov-unit-enabled"] == UNIT_LINK
    print("\n" + checked.faulty.stdout)


def test_faulty_image_never_reports_ready(faulty_boot: Boot) -> None:
    """The consequence of the missing enable link: the VM boots, nothing provisions it."""
    context = faulty_boot.describe()
    assert faulty_boot.fabric.health_reports == [], context
    assert faulty_boot.agent_requests() == [], context
    assert faulty_boot.probe.get("enabled") == "disabled", context
    assert (
        faulty_boot.probe.get("azure-provisioning.service:InactiveExitTimestampMonotonic") == "0"
    )
    # The network itself worked (the probe's clock samples reached the fabric).
    assert faulty_boot.probe.get("clock_status") == "0", context
