"""What fuzzing the image files found in `azprov check`, each pinned by a plain test
named after the behaviour (the fuzz targets are test_image_files_fuzz.py and
test_image_tree_fuzz.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from azprov.checks import check_tree
from azprov.checks.model import Finding
from azprov.host.kvp import encode_record
from azprov.host.root import TargetRoot
from tests.checks.trees import UNIT, good_tree, systemctl, unit, write

# The CPU time a megabyte-sized file may take to check (CPU, not wall time: a busy
# CI machine must not fail these): the fixed readers take a tenth of it or less;
# the ones these tests pin took seconds to minutes.
QUICK = 2.0
MEGABYTE = 1 << 20
POOL = "var/lib/hyperv/.kvp_pool_1"


def checked(root: Path, *ids: str) -> list[Finding]:
    """The findings of `ids`, asserting that none of them crashed."""
    outcome = check_tree(TargetRoot(root), ids)
    assert outcome.broken == [], [f.found for f in outcome.findings if f.source == "azprov"]
    return outcome.findings


def timed(root: Path, *ids: str) -> tuple[list[Finding], float]:
    started = time.process_time()
    found = checked(root, *ids)
    return found, time.process_time() - started


@pytest.fixture(params=["3.11", "3.9"])
def python_ints(request: pytest.FixtureRequest) -> Iterator[None]:
    """int() of a long digit string as on Python 3.11 and later (ValueError past 4300
    digits) and as on 3.9, RHEL 9's (no limit, and quadratic time)."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: None)()
    if request.param == "3.9" and limit is not None:
        sys.set_int_max_str_digits(0)
    yield
    if limit is not None:
        sys.set_int_max_str_digits(limit)


# -- accounts ----------------------------------------------------------------------------------

ACCOUNT_CHECKS = (
    "leftover-users-sudoers",
    "authorized-keys",
    "shell-history",
    "cloud-cli-credentials",
)


def test_a_superscript_uid_in_passwd_is_not_an_account(tmp_path: Path) -> None:
    """'²'.isdigit() is true and int('²') raises: the line is no account (getpwent
    reads ASCII digits), and the checks go on."""
    root = good_tree(tmp_path / "root")
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("odd:x:²:0::/home/odd:/bin/sh\nbuild:x:1000:1000::/home/build:/bin/bash\n")
    found = checked(root, *ACCOUNT_CHECKS)
    assert [f.found for f in found if f.id == "leftover-users-sudoers"] == [
        "has user build (UID 1000, home /home/build)"
    ]


def test_a_uid_of_a_million_digits_is_no_account_and_takes_no_time(
    tmp_path: Path, python_ints: None
) -> None:
    root = good_tree(tmp_path / "root")
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("odd:x:" + "9" * MEGABYTE + ":0::/home/odd:/bin/sh\n")
    found, seconds = timed(root, *ACCOUNT_CHECKS)
    assert not [f for f in found if "odd" in f.found]
    assert seconds < QUICK


@pytest.mark.parametrize("value", ["²", "9" * MEGABYTE])
def test_a_login_defs_uid_min_that_is_no_number_keeps_the_default(
    tmp_path: Path, value: str, python_ints: None
) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/login.defs", f"UID_MIN {value}\nUID_MAX 60000\n")
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("build:x:1000:1000::/home/build:/bin/bash\n")
    found, seconds = timed(root, "leftover-users-sudoers")
    assert [f.found for f in found] == ["has user build (UID 1000, home /home/build)"]
    assert seconds < QUICK


@pytest.mark.parametrize("uid_min", ["0" * MEGABYTE + "1000", "0" * 5000 + "1001"])
def test_a_uid_min_after_a_million_zeros_is_read_as_its_number(
    tmp_path: Path, uid_min: str, python_ints: None
) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/login.defs", f"UID_MIN {uid_min}\nUID_MAX 60000\n")
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("build:x:1000:1000::/home/build:/bin/bash\n")
    found, seconds = timed(root, "leftover-users-sudoers")
    reported = ["has user build (UID 1000, home /home/build)"]
    assert [f.found for f in found] == (reported if uid_min.endswith("1000") else [])
    assert seconds < QUICK


def test_ten_thousand_accounts_sharing_a_home_are_checked_in_a_moment(tmp_path: Path) -> None:
    """Each home is searched once, not once per passwd line that names it."""
    root = good_tree(tmp_path / "root")
    (root / "root/.bash_history").write_text("ls\n")
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("root:x:0:0:root:/root:/bin/bash\n" * 10_000)
    found, seconds = timed(root, *ACCOUNT_CHECKS)
    assert [f.path for f in found if f.id == "shell-history"] == ["root/.bash_history"]
    assert seconds < QUICK


def test_a_megabyte_of_accounts_with_their_own_homes_is_checked_in_a_moment(
    tmp_path: Path,
) -> None:
    """A guard rather than a finding: 25,000 homes that are not there cost 1.5 s of
    CPU before (a lookup each) and 0.3 s now (one listing of home/)."""
    root = good_tree(tmp_path / "root")
    lines = "".join(f"u{n}:x:{n}:{n}::/home/u{n}:/bin/sh\n" for n in range(40_000))
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(lines[:MEGABYTE])
    _, seconds = timed(root, *ACCOUNT_CHECKS)
    assert seconds < QUICK


def test_sudoers_naming_one_include_a_hundred_thousand_times_reads_it_once(
    tmp_path: Path,
) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/sudoers.local", "Defaults targetpw\n", 0o440)
    includes = "#include /etc/sudoers.local\n@includedir /etc/sudoers.d\n" * 50_000
    write(root, "etc/sudoers", "@includedir /etc/sudoers.d\n" + includes, 0o440)
    found, seconds = timed(root, "sudo-policy")
    assert [(f.path, f.found) for f in found] == [
        ("etc/sudoers.local:1", "has 'Defaults targetpw'")
    ]
    assert seconds < QUICK


def test_sudoers_naming_thousands_of_include_files_is_unknown_in_a_moment(
    tmp_path: Path,
) -> None:
    root = good_tree(tmp_path / "root")
    includes = "".join(f"#include /etc/sudoers.d/missing-{n}\n" for n in range(40_000))
    write(root, "etc/sudoers", "@includedir /etc/sudoers.d\n" + includes, 0o440)
    found, seconds = timed(root, "sudo-policy")
    assert [(f.severity, f.path) for f in found] == [("info", "etc/sudoers")]
    assert found[0].found.startswith("unknown: ")
    assert seconds < QUICK


def test_a_sudoers_include_naming_a_nul_byte_names_no_file(tmp_path: Path) -> None:
    """Found by the whole-check property: '#include\\x1f\\x00' (\\x1f is a blank to
    Python's \\s) named 'etc/\\x00', and os.open's ValueError failed sudo-policy. The
    door now refuses such a path as UnsafePath (commit 012b08d); this pins it here."""
    root = good_tree(tmp_path / "root")
    write(root, "etc/sudoers", "#include\x1f\x00\n@includedir /etc/sudoers.d\n", 0o440)
    assert checked(root, "sudo-policy") == []


# -- network -----------------------------------------------------------------------------------


def _networkmanager(root: Path) -> None:
    unit(root, "NetworkManager.service")
    systemctl(root, "enable", "NetworkManager.service")


@pytest.mark.parametrize("value", ["²", "٣٠٠", "9" * MEGABYTE])
def test_a_networkmanager_dhcp_timeout_nm_cannot_read_is_reported(
    tmp_path: Path, value: str, python_ints: None
) -> None:
    """NetworkManager reads ASCII digits into a 32-bit number: anything else leaves
    its 45 s default, which is what the warning says."""
    root = good_tree(tmp_path / "root")
    _networkmanager(root)
    write(
        root,
        "etc/NetworkManager/conf.d/90-dhcp.conf",
        f"[connection]\nipv4.dhcp-timeout={value}\n",
    )
    found, seconds = timed(root, "dhcp-timeout")
    assert [f.found[:28] for f in found] == ["sets ipv4.dhcp-timeout=" + value[:5]]
    assert seconds < QUICK


def test_a_networkmanager_dhcp_timeout_of_300_is_enough(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    _networkmanager(root)
    write(root, "etc/NetworkManager/conf.d/90-dhcp.conf", "[connection]\nipv4.dhcp-timeout=300\n")
    assert checked(root, "dhcp-timeout") == []


def test_a_megabyte_of_ifupdown_interfaces_is_matched_in_a_moment(tmp_path: Path) -> None:
    """Each interface name was a glob compiled to a regular expression (37,000: 4 s)."""
    root = good_tree(tmp_path / "root")
    unit(root, "networking.service")
    systemctl(root, "enable", "networking.service")
    stanzas = "".join(f"auto eth{n}\niface eth{n} inet dhcp\n" for n in range(40_000))
    write(root, "etc/network/interfaces", stanzas[:MEGABYTE])
    _, seconds = timed(root, "net-dhcp-configured", "net-config-not-pinned", "net-vf-unmanaged")
    assert seconds < QUICK


def test_a_megabyte_of_networkd_name_globs_is_unknown_in_a_moment(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    names = " ".join(f"en{n}*" for n in range(150_000))[:MEGABYTE]
    write(
        root,
        "etc/systemd/network/20-many.network",
        f"[Match]\nName={names}\n[Network]\nDHCP=yes\n",
    )
    found, seconds = timed(
        root, "net-dhcp-configured", "net-config-not-pinned", "net-vf-unmanaged"
    )
    unknowns = {(f.id, f.path) for f in found if f.found.startswith("unknown: ")}
    assert unknowns == {  # (the good tree's udev rule leaves VFs alone: no net-vf-unmanaged)
        (check_id, "etc/systemd/network/20-many.network")
        for check_id in ("net-dhcp-configured", "net-config-not-pinned")
    }
    assert seconds < QUICK


@pytest.mark.parametrize(("value", "fires"), [("9" * MEGABYTE, False), ("0" * 5000 + "299", True)])
def test_a_dhclient_timeout_of_a_million_digits_is_compared_not_converted(
    tmp_path: Path, value: str, fires: bool, python_ints: None
) -> None:
    root = good_tree(tmp_path / "root")
    unit(root, "networking.service")
    systemctl(root, "enable", "networking.service")
    write(root, "etc/dhcp/dhclient.conf", f"timeout {value};\n")
    found, seconds = timed(root, "dhcp-timeout")
    assert bool(found) is fires
    assert seconds < QUICK


# -- boot --------------------------------------------------------------------------------------

BOOT_CHECKS = ("grub-forbidden-params", "serial-console", "cmdline-recommended", "swap-os-disk")


def test_a_grub_default_of_a_million_digits_boots_the_first_entry(
    tmp_path: Path, python_ints: None
) -> None:
    """GRUB's strtoul overflows on it and the menu falls back to its first entry."""
    root = good_tree(tmp_path / "root")
    (root / "boot/grub/grub.cfg").unlink()
    write(root, "boot/grub2/grub.cfg", f"set default={'9' * MEGABYTE}\ninsmod blscfg\nblscfg\n")
    for release, options in (("1", "console=ttyS0 quiet"), ("2", "console=ttyS0 rhgb")):
        write(
            root,
            f"boot/loader/entries/abc-6.1.0-{release}.conf",
            f"title {release}\nlinux /vmlinuz-6.1.0-{release}\noptions {options}\n",
        )
    found, seconds = timed(root, *BOOT_CHECKS)
    assert ("boot/loader/entries/abc-6.1.0-2.conf", "has rhgb") in [
        (f.path, f.found) for f in found
    ]
    assert seconds < QUICK


def test_a_kernel_line_of_a_megabyte_is_split_in_a_moment(tmp_path: Path) -> None:
    """shlex builds a word a character at a time (quadratic): 1 MiB took 50 s."""
    root = good_tree(tmp_path / "root")
    grub = (root / "boot/grub/grub.cfg").read_text()
    write(root, "boot/grub/grub.cfg", grub.replace("rootdelay=300", "rootdelay=300" * 80_000))
    found, seconds = timed(root, *BOOT_CHECKS)
    assert [f.found for f in found if f.id == "cmdline-recommended"] == []
    assert seconds < QUICK


def test_a_grub_cmdline_template_of_a_megabyte_is_split_in_a_moment(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    words = "console=ttyS0 " + "x" * MEGABYTE
    write(root, "etc/default/grub", f'GRUB_CMDLINE_LINUX="{words}"\n')
    found, seconds = timed(root, "serial-console")
    assert found == []
    assert seconds < QUICK


# -- systemd -----------------------------------------------------------------------------------


def _first_boot_disabling(root: Path, preset: str) -> None:
    (root / "etc/machine-id").unlink()
    write(root, "usr/lib/systemd/system-preset/90-default.preset", preset)


def test_a_megabyte_of_literal_preset_lines_is_read_in_a_moment(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    lines = "".join(f"enable unit{n}.service\n" for n in range(60_000))
    _first_boot_disabling(root, lines + f"disable {UNIT}\n")
    found, seconds = timed(root, "prov-unit-enabled")
    assert [f.path for f in found] == ["usr/lib/systemd/system-preset/90-default.preset:60001"]
    assert seconds < QUICK


def test_a_megabyte_of_preset_globs_is_unknown_in_a_moment(tmp_path: Path) -> None:
    """Each distinct glob costs a regular expression: past a few thousand (a real
    preset set has tens), whether a preset disables azprov is not worked out."""
    root = good_tree(tmp_path / "root")
    _first_boot_disabling(root, "".join(f"disable x{n}*.service\n" for n in range(60_000)))
    found, seconds = timed(root, "prov-unit-enabled")
    assert [(f.severity, f.path) for f in found] == [
        ("info", "usr/lib/systemd/system-preset/90-default.preset")
    ]
    assert found[0].found.startswith("unknown: ")
    assert seconds < QUICK


def test_a_few_preset_globs_still_decide(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    _first_boot_disabling(root, "enable sshd.service\ndisable azure-*.service\ndisable *\n")
    found = checked(root, "prov-unit-enabled")
    assert [f.path for f in found] == ["usr/lib/systemd/system-preset/90-default.preset:2"]


# -- the KVP pool ------------------------------------------------------------------------------


def test_a_kvp_pool_larger_than_the_pool_cap_is_unknown_not_clean(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    record = encode_record("PROVISIONING_REPORT", "result=success")
    write(root, POOL)
    (root / POOL).write_bytes(record * (7_000))  # 17.9 MB: past the 16 MiB azprov reads
    found = checked(root, "agent-state-leftover")
    assert [(f.severity, f.path) for f in found] == [("info", POOL)]
    assert found[0].found == f"unknown: {POOL} is larger than {16 << 20} bytes"


def test_a_kvp_pool_that_is_a_fifo_is_unknown_not_clean(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    (root / POOL).parent.mkdir(parents=True)
    os.mkfifo(root / POOL)
    found = checked(root, "agent-state-leftover")
    assert [(f.severity, f.path, f.found) for f in found] == [
        ("info", POOL, f"unknown: {POOL} is a FIFO")
    ]


# -- a file that is there but cannot be read is not an absent one ------------------------------


def test_a_grub_cfg_that_cannot_be_read_is_unknown_for_that_reason(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    (root / "boot/grub/grub.cfg").unlink()
    os.mkfifo(root / "boot/grub/grub.cfg")
    found = checked(root, "grub-forbidden-params")
    assert [(f.path, f.found) for f in found] == [
        ("boot/grub/grub.cfg", "unknown: boot/grub/grub.cfg is a FIFO")
    ]


def test_a_dpkg_status_that_cannot_be_read_is_unknown_not_up_to_date(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(
        root, "var/lib/dpkg/status", "Package: omi\nStatus: install ok installed\nVersion: 1.0\n"
    )
    assert [f.found for f in checked(root, "package-currency")] == ["has omi 1.0"]
    (root / "var/lib/dpkg/status").unlink()
    os.mkfifo(root / "var/lib/dpkg/status")
    found = checked(root, "package-currency")
    assert [(f.path, f.found) for f in found] == [
        ("var/lib/dpkg/status", "unknown: var/lib/dpkg/status is a FIFO")
    ]


# -- found in a file this change does not own ---------------------------------------------------


@pytest.mark.parametrize("value", ["²", "9" * 5000])
def test_a_client_alive_interval_that_is_no_number_is_reported_not_crashed(
    tmp_path: Path, value: str
) -> None:
    """Found by the whole-check property (the long run): 'ClientAliveInterval ²' made
    sshd-effective-config fail (ValueError), as did 5000 digits on 3.11."""
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config", f"ClientAliveInterval {value}\n")
    found = checked(root, "sshd-effective-config")
    assert any(f.found.startswith("sets ClientAliveInterval") for f in found)
