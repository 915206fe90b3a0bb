"""Debian 13 (trixie): one VM, two boots, with the image's own first-boot key generator.

The rootfs comes from the same archive and recipe as Debian 12's (image.py, suite
trixie), with the freshly built .deb. The disk is a first-boot image: /etc/machine-id
says `uninitialized`, as several image tools leave it, so systemd runs its
ConditionFirstBoot= units on the first boot, among them openssh-server's
sshd-keygen.service (`ssh-keygen -A` before ssh.service). systemd-firstboot.service
is masked: its prompts would wait on the console for ever.

1. First boot: provisioned, Ready. The host keys are azprov's promise: /etc/ssh holds
   exactly the types sshd-keygen.service would make (rsa, ecdsa, ed25519), made by
   azprov, each fingerprint in its journal; sshd-keygen.service ran after azprov's unit
   and found nothing to make. From the host, through a forward to port 22, sshd offers
   exactly the logged keys and lets the admin user in with the provisioned key.
2. Second boot of the same disk: not a first boot; nothing provisioned, nothing posted,
   the same host keys.

A guest kernel crash ends a boot at once (vm.py); the one crash emulation itself
causes (multi-threaded TCG's int3 race) runs both boots again, once, with a warning.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import warnings
from pathlib import Path

import pytest

from azprov.simulator import VmSpec
from azprov.simulator.documents import PublicKey
from tests.e2e.image import BootFiles, build_image, systemctl
from tests.e2e.login import Login
from tests.e2e.test_boot import PROVISIONING, assert_provisioned, before_sshd, vm_spec
from tests.e2e.tools import built_package
from tests.e2e.vm import Boot, GuestPanicked, boot, free_port

TRIXIE_UUID = "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
KEYGEN = "sshd-keygen.service"
# What `ssh-keygen -A` makes with trixie's OpenSSH 10.0, as `ssh-keygen -l` names them.
EVERY_TYPE = ["(ECDSA)", "(ED25519)", "(RSA)"]
LOGGED = re.compile(r"SSH host key: (\d+ SHA256:\S+ \(\w+\))")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-trixie")


@pytest.fixture(scope="module")
def login_key(workdir: Path) -> Path:
    key = workdir / "login_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@host", "-f", str(key)],
        check=True,
    )
    return key


@pytest.fixture(scope="module")
def spec(login_key: Path) -> VmSpec:
    public = Path(f"{login_key}.pub").read_text().strip()
    return dataclasses.replace(
        vm_spec(TRIXIE_UUID, "e2e-trixie", 4, "5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1a05"),
        public_keys=[PublicKey(public, "/home/azureuser/.ssh/authorized_keys")],
    )


def first_boot_image(tree: Path) -> None:
    """What image tools that keep first-boot semantics leave (machine-id(5))."""
    (tree / "etc/machine-id").write_text("uninitialized\n")
    systemctl(tree, "mask", "systemd-firstboot.service")


@pytest.fixture(scope="module")
def image(workdir: Path) -> BootFiles:
    return build_image(workdir, built_package("deb"), first_boot_image, suite="trixie")


@dataclasses.dataclass
class Scenario:
    first: Boot
    second: Boot
    login: Login


def run_scenario(
    image: BootFiles, workdir: Path, spec: VmSpec, key: Path, attempt: str = ""
) -> Scenario:
    """Both boots of one fresh copy of the disk (the first with the login)."""
    login = Login(free_port(), key, workdir)
    disk = image.copy_disk(workdir / f"trixie{attempt}.img")
    first = boot(
        image,
        disk,
        spec,
        TRIXIE_UUID,
        workdir,
        name=f"trixie-first{attempt}",
        extra_cmdline="e2e.login",
        prepare=login.prepare,
        ssh_port=login.port,
    )
    second = boot(image, disk, spec, TRIXIE_UUID, workdir, name=f"trixie-second{attempt}")
    return Scenario(first, second, login)


@pytest.fixture(scope="module")
def scenario(image: BootFiles, workdir: Path, spec: VmSpec, login_key: Path) -> Scenario:
    try:
        return run_scenario(image, workdir, spec, login_key)
    except GuestPanicked as crash:
        if not crash.emulation_race:
            raise
        # Not azprov's doing (see vm.py), but it ended a boot half-way: both boots
        # again from a fresh disk, once, and said so in the test report.
        warnings.warn(f"{crash}\n(the TCG int3 race: the scenario ran again)", stacklevel=1)
        return run_scenario(image, workdir, spec, login_key, "-again")


@pytest.fixture(scope="module")
def first_boot(scenario: Scenario) -> Boot:
    return scenario.first


@pytest.fixture(scope="module")
def second_boot(scenario: Scenario) -> Boot:
    return scenario.second


@pytest.fixture(scope="module")
def login(scenario: Scenario) -> Login:
    return scenario.login


def logged_fingerprints(result: Boot) -> list[str]:
    return sorted(LOGGED.findall(result.sections.get("journal", "")))


def fingerprints_on_disk(result: Boot) -> list[str]:
    """`ssh-keygen -l` of each public host key in the guest, less the comment."""
    lines = result.sections.get("host-keys", "").splitlines()
    return sorted(f"{w[0]} {w[1]} {w[-1]}" for w in map(str.split, lines) if w)


def test_trixie_first_boot_image_provisions_and_reports_ready(
    first_boot: Boot, spec: VmSpec
) -> None:
    assert first_boot.probe.get("first_boot") == "yes", first_boot.describe()
    assert_provisioned(first_boot, spec)
    started = first_boot.unit_time(PROVISIONING, "InactiveExitTimestampMonotonic")
    assert started is not None
    ready = first_boot.fabric.health_reports[0].at
    print(f"\ntrixie first boot: unit start -> Ready acknowledged {ready - started:.2f} s")
    # systemd presets every unit at a first boot; the package's preset keeps this one off.
    assert first_boot.probe.get("extensions_enabled") == "disabled", first_boot.describe()


def test_trixie_host_keys_are_every_type_the_image_would_make_each_logged_by_azprov(
    first_boot: Boot,
) -> None:
    context = first_boot.describe()
    # In place before sshd started: exactly what sshd-keygen.service would have made.
    assert sorted(before_sshd(first_boot).get("host_key", [])) == [
        "/etc/ssh/ssh_host_ecdsa_key",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_rsa_key",
    ], context
    logged = logged_fingerprints(first_boot)
    print("\nlogged by azprov:\n" + "\n".join(logged))
    assert sorted(line.split()[-1] for line in logged) == EVERY_TYPE, context
    assert logged == fingerprints_on_disk(first_boot), context
    # The image's generator ran (a first boot), after azprov's unit, and found them all.
    assert first_boot.probe.get(f"{KEYGEN}:ConditionResult") == "yes", context
    assert first_boot.probe.get(f"{KEYGEN}:Result") == "success", context
    finished = first_boot.unit_time(PROVISIONING, "ExecMainExitTimestampMonotonic")
    keygen = first_boot.unit_time(KEYGEN, "InactiveExitTimestampMonotonic")
    assert finished is not None and keygen is not None and finished <= keygen, context


def test_trixie_sshd_lets_the_admin_in_and_offers_exactly_the_logged_keys(
    first_boot: Boot, login: Login, spec: VmSpec
) -> None:
    context = first_boot.describe() + f"\n--- login ---\n{login}"
    assert first_boot.probe.get("login_status") == "200", context
    assert login.status == 0, context
    assert login.output.split() == ["azureuser", spec.computer_name], context
    assert login.offered == logged_fingerprints(first_boot), context


def test_trixie_second_boot_provisions_nothing_and_posts_nothing(
    second_boot: Boot, first_boot: Boot, spec: VmSpec
) -> None:
    context = second_boot.describe()
    assert second_boot.probe.get("first_boot") == "no", context
    assert second_boot.fabric.health_reports == [], context
    assert second_boot.agent_requests() == [], context
    assert second_boot.probe.get(f"{PROVISIONING}:InactiveExitTimestampMonotonic") == "0", context
    assert second_boot.probe.get("enabled") == "disabled", context
    assert second_boot.probe.get("hostname") == spec.computer_name, context
    assert second_boot.probe.get("sshd_active") == "active", context
    assert "SSH host key" not in second_boot.sections.get("journal", ""), context
    assert fingerprints_on_disk(second_boot) == fingerprints_on_disk(first_boot), context
