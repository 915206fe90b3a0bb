"""Boot a real Debian 12 image with the freshly built .deb against the simulated fabric.

Four boots, about a minute each under TCG:
1. first boot of a generalized disk: provisioned, Ready, unit disabled;
2. the same disk again: nothing provisioned, nothing posted; then the probe
   runs `azprov deprovision --user --force` and powers off;
3. that deprovisioned disk as a new VM (new VM ID): provisioned again;
4. a fresh disk whose IMDS gives an invalid computer name: NotReady with a reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from azprov.simulator import VmSpec
from azprov.simulator.documents import ovf_env_xml
from tests.e2e.image import BootFiles, build_image
from tests.e2e.tools import built_package
from tests.e2e.vm import Boot, boot, vm_id_for

FIRST_UUID = "4a6c1f8e-2b3d-4c5e-9f10-112233445566"
REDEPLOYED_UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
BAD_NAME_UUID = "9e8d7c6b-5a49-3827-1605-f4e3d2c1b0a9"
BAD_NAME = "bad name!"
PROVISIONING = "azure-provisioning.service"


def vm_spec(smbios_uuid: str, name: str, incarnation: int, container: str) -> VmSpec:
    return VmSpec(
        vm_id=vm_id_for(smbios_uuid),
        name=name,
        computer_name=name,
        role_name=f"_{name}",
        incarnation=incarnation,  # not 1: the agent must take it from the goal state
        container_id=container,
    )


FIRST = vm_spec(FIRST_UUID, "e2e-first", 3, "5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1a01")
REDEPLOYED = vm_spec(REDEPLOYED_UUID, "e2e-second", 2, "5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1a02")
BAD = dataclasses.replace(
    vm_spec(BAD_NAME_UUID, "e2e-bad", 1, "5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1a03"),
    computer_name=BAD_NAME,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def image(workdir: Path) -> BootFiles:
    return build_image(workdir, built_package("deb"))


@pytest.fixture(scope="module")
def first_disk(image: BootFiles, workdir: Path) -> Path:
    return image.copy_disk(workdir / "first.img")


@pytest.fixture(scope="module")
def first_boot(image: BootFiles, first_disk: Path, workdir: Path) -> Boot:
    return boot(image, first_disk, FIRST, FIRST_UUID, workdir, name="first")


@pytest.fixture(scope="module")
def second_boot(image: BootFiles, first_disk: Path, workdir: Path, first_boot: Boot) -> Boot:
    return boot(
        image,
        first_disk,
        dataclasses.replace(FIRST),
        FIRST_UUID,
        workdir,
        name="second",
        extra_cmdline="e2e.deprovision",
    )


MEDIA_PASSWORD = "E2e-Media-Passw0rd"
MEDIA_CUSTOM_DATA = b"#!/bin/sh\necho 'from the provisioning media'\n"


def provisioning_media(workdir: Path) -> Path:
    """An ovf-env.xml on a UDF/ISO 9660 image, attached as Azure attaches its CD."""
    content = workdir / "media"
    content.mkdir(exist_ok=True)
    (content / "ovf-env.xml").write_bytes(
        ovf_env_xml(
            hostname=REDEPLOYED.computer_name,
            username="azureuser",
            password=MEDIA_PASSWORD,
            custom_data=MEDIA_CUSTOM_DATA,
        )
    )
    iso = workdir / "ovf.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-udf", "-V", "rd_rdfe_stable", "-o", str(iso), str(content)],
        check=True,
    )
    return iso


@pytest.fixture(scope="module")
def redeployed_boot(image: BootFiles, first_disk: Path, workdir: Path, second_boot: Boot) -> Boot:
    return boot(
        image,
        first_disk,
        REDEPLOYED,
        REDEPLOYED_UUID,
        workdir,
        name="redeployed",
        cdrom=provisioning_media(workdir),
    )


@pytest.fixture(scope="module")
def bad_name_boot(image: BootFiles, workdir: Path) -> Boot:
    disk = image.copy_disk(workdir / "bad-name.img")
    return boot(image, disk, BAD, BAD_NAME_UUID, workdir, name="bad-name")


def before_sshd(result: Boot) -> dict[str, list[str]]:
    """The snapshot taken by ssh.service's ExecStartPre: kind -> lines."""
    found: dict[str, list[str]] = {}
    for line in result.sections.get("before-sshd", "").splitlines():
        kind, _, rest = (
            line.partition(" ")
            if not line.startswith(("uptime=", "hostname="))
            else line.partition("=")
        )
        found.setdefault(kind, []).append(rest)
    return found


def assert_provisioned(result: Boot, spec: VmSpec, password: bool = False) -> None:
    context = result.describe()
    reports = result.fabric.health_reports
    assert [r.state for r in reports] == ["Ready"], context
    (ready,) = reports
    assert (ready.incarnation, ready.container_id, ready.instance_id) == (
        str(spec.incarnation),
        spec.container_id,
        spec.instance_id,
    ), context
    assert result.probe.get(f"{PROVISIONING}:Result") == "success", context
    assert result.probe.get("enabled") == "disabled", context
    assert result.probe.get("hostname") == spec.computer_name, context
    marker = json.loads(result.probe.get("marker") or "{}")
    assert marker.get("vm_id") == spec.vm_id, context  # the swapped (Generation 1) form
    assert marker.get("admin_user") == "azureuser" and marker.get("user_created") is True

    # What a user reaching sshd finds: in place before sshd was started.
    state = before_sshd(result)
    assert state.get("hostname") == [spec.computer_name], context
    assert any(line.startswith("azureuser:x:") for line in state.get("user", [])), context
    keys = "".join(key.key_data + "\n" for key in spec.public_keys)
    digest = hashlib.sha256(keys.encode()).hexdigest()
    assert state.get("authorized_keys") == [
        f"/home/azureuser/.ssh/authorized_keys 600 azureuser {digest}"
    ], context
    rule = "azureuser ALL=(ALL) ALL" if password else "azureuser ALL=(ALL) NOPASSWD: ALL"
    assert any(
        line.startswith("/etc/sudoers.d/") and rule in line for line in state.get("sudoers", [])
    ), context
    assert len(state.get("host_key", [])) >= 1, context
    assert result.probe.get("sshd_active") == "active", context

    # And in that order on the guest's own clock: the unit ended before sshd began.
    finished = result.unit_time(PROVISIONING, "ExecMainExitTimestampMonotonic")
    sshd = result.unit_time("ssh.service", "InactiveExitTimestampMonotonic")
    assert finished is not None and sshd is not None and finished <= sshd, context
    assert ready.at <= sshd, context


def test_first_boot_provisions_and_reports_ready(first_boot: Boot) -> None:
    assert_provisioned(first_boot, FIRST)
    started = first_boot.unit_time(PROVISIONING, "InactiveExitTimestampMonotonic")
    assert started is not None
    ready = first_boot.fabric.health_reports[0].at
    print(f"\nfirst boot: unit start -> Ready acknowledged {ready - started:.2f} s")
    # The host keys' fingerprints are on the console (boot diagnostics).
    assert "SSH host key: " in first_boot.sections.get("journal", ""), first_boot.describe()
    # Debian 12's own sshd_config names no HostKey and its sshd makes no keys itself:
    # the unset default is ed25519 and ecdsa, no RSA (README: why).
    assert sorted(before_sshd(first_boot).get("host_key", [])) == [
        "/etc/ssh/ssh_host_ecdsa_key",
        "/etc/ssh/ssh_host_ed25519_key",
    ], first_boot.describe()
    # The name reaches Azure DNS: the lease renewal ran (beside the host keys' install).
    assert "renewed the DHCP lease through systemd-networkd" in first_boot.sections.get(
        "journal", ""
    ), first_boot.describe()
    # The extension runner ships in the package but is not enabled by it.
    assert first_boot.probe.get("extensions_enabled") == "disabled", first_boot.describe()


def test_second_boot_provisions_nothing_and_posts_nothing(second_boot: Boot) -> None:
    context = second_boot.describe()
    assert second_boot.fabric.health_reports == [], context
    assert second_boot.agent_requests() == [], context
    assert second_boot.probe.get(f"{PROVISIONING}:InactiveExitTimestampMonotonic") == "0", context
    assert second_boot.probe.get("hostname") == FIRST.computer_name, context
    assert second_boot.probe.get("sshd_active") == "active", context


def test_deprovision_inside_the_guest(second_boot: Boot) -> None:
    context = second_boot.describe()
    assert second_boot.probe.get("deprovision_status") == "0", context
    listing = second_boot.sections.get("deprovision", "")
    for action in (
        "delete user azureuser",
        "remove /var/lib/azprov",
        "SSH host key",
        "empty /etc/machine-id",
        "enable azure-provisioning.service",
    ):
        assert action in listing, context


def test_deprovisioned_disk_provisions_again_as_a_new_vm(redeployed_boot: Boot) -> None:
    assert_provisioned(redeployed_boot, REDEPLOYED, password=True)


def test_provisioning_media_is_mounted_and_read(redeployed_boot: Boot) -> None:
    """The real CD path: found, mounted read-only in the guest, read, unmounted."""
    context = redeployed_boot.describe()
    journal = redeployed_boot.sections.get("journal", "")
    assert "read ovf-env.xml from /dev/sr0" in journal, context
    assert redeployed_boot.probe.get("password_hash") == "$6$", context
    digest = hashlib.sha256(MEDIA_CUSTOM_DATA).hexdigest()
    assert redeployed_boot.probe.get("custom_data") == f"600 root {digest}", context
    assert MEDIA_PASSWORD not in redeployed_boot.console + journal, context


def test_invalid_computer_name_gets_not_ready_within_seconds(bad_name_boot: Boot) -> None:
    context = bad_name_boot.describe()
    reports = bad_name_boot.fabric.health_reports
    assert [r.state for r in reports] == ["NotReady"], context
    (report,) = reports
    assert report.substatus == "ProvisioningFailed", context
    assert report.description and BAD_NAME in report.description, context
    assert (report.incarnation, report.container_id, report.instance_id) == (
        str(BAD.incarnation),
        BAD.container_id,
        BAD.instance_id,
    ), context
    started = bad_name_boot.unit_time(PROVISIONING, "InactiveExitTimestampMonotonic")
    assert started is not None, context
    # Seconds, not the platform's 20-minute timeout (under emulation Python
    # alone needs several seconds to start).
    assert report.at - started < 30, context
    assert bad_name_boot.probe.get(f"{PROVISIONING}:Result") == "exit-code", context
    assert bad_name_boot.probe.get("hostname") != BAD_NAME, context
    assert bad_name_boot.probe.get("enabled") == "enabled", context  # the next boot tries again
