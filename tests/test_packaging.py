"""The packages: built from this checkout with the real tools, then inspected.

The .deb is built once per session (about 5 s) and shared with the emulated-boot tests.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from azprov.config import Config, load_config
from tests.e2e.tools import DEB_TOOLS, REPO, RPM_TOOLS, built_package, require

UNIT = REPO / "units" / "azure-provisioning.service"
EXTENSIONS_UNIT = REPO / "units" / "azprov-extensions.service"


class Library(NamedTuple):
    name: str
    lowest: str


# What azprov imports at run time, at the lowest versions the test suite runs against
# (constraints/ubuntu2204.txt: Ubuntu 22.04's own packages).
RUNTIME_LIBRARIES = (
    Library("httpx", "0.22"),
    Library("click", "8.0.3"),
    Library("defusedxml", "0.7.1"),
)


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def deb() -> Path:
    require(DEB_TOOLS)
    return built_package("deb")


@pytest.fixture(scope="module")
def rpm() -> Path:
    require(RPM_TOOLS)
    return built_package("rpm")


def test_lintian_reports_no_errors(deb: Path) -> None:
    result = subprocess.run(
        ["lintian", "--info", "--pedantic", str(deb)], capture_output=True, text=True, check=False
    )
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    assert not [line for line in tags if line.startswith("E: ")], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_deb_contents_and_dependencies(deb: Path) -> None:
    files = run("dpkg-deb", "--contents", str(deb))
    for path in (
        "./usr/bin/azprov",
        "./usr/lib/systemd/system/azure-provisioning.service",
        "./etc/azprov/azprov.conf",
        "./usr/lib/python3/dist-packages/azprov/deprovision/__init__.py",
        "./usr/share/doc/azprov/copyright",
    ):
        assert path in files, path
    # Where Debian 13 wants units, and the same place on Debian 12 (merged /usr).
    assert "./lib/" not in files, files
    depends = [d.strip() for d in run("dpkg-deb", "--field", str(deb), "Depends").split(",")]
    for dependency in RUNTIME_LIBRARIES:
        assert f"python3-{dependency.name} (>= {dependency.lowest})" in depends, depends
    assert run("dpkg-deb", "--field", str(deb), "Architecture").strip() == "all"


def test_deb_config_is_a_conffile_and_units_are_never_started(deb: Path, tmp_path: Path) -> None:
    run("dpkg-deb", "--control", str(deb), str(tmp_path))
    assert (tmp_path / "conffiles").read_text().split() == ["/etc/azprov/azprov.conf"]
    postinst = (tmp_path / "postinst").read_text()
    assert "deb-systemd-helper enable 'azure-provisioning.service'" in postinst
    # Starting it on install would contact the WireServer from an image build host.
    assert "deb-systemd-invoke" not in postinst
    if EXTENSIONS_UNIT.exists():
        files = run("dpkg-deb", "--contents", str(deb))
        assert "./usr/lib/systemd/system/azprov-extensions.service" in files
        # --no-enable: enabled again on upgrade only if the admin had enabled it
        # (the e2e boot checks a fresh install leaves it disabled).
        guarded = postinst.split("deb-systemd-helper debian-installed 'azprov-extensions.service'")
        assert len(guarded) == 2, postinst
        assert "enable 'azprov-extensions.service'" not in guarded[0]


def _unpacked_root(deb: Path, tmp_path: Path) -> Path:
    """The package's files plus the host's systemd units, as a root for `verify --root`."""
    root = tmp_path / "root"
    run("dpkg-deb", "--extract", str(deb), str(root))
    shutil.copytree(
        "/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True
    )
    return root


def test_systemd_analyze_verify_is_clean(deb: Path, tmp_path: Path) -> None:
    root = _unpacked_root(deb, tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "azure-provisioning.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_would_catch_a_broken_unit(deb: Path, tmp_path: Path) -> None:
    root = _unpacked_root(deb, tmp_path)
    (root / "usr/bin/azprov").unlink()  # the ExecStart= binary is gone
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "azure-provisioning.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "/usr/bin/azprov" in result.stderr


def test_unit_orders_provisioning_before_logins() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    assert "network-online.target" in unit["Unit"]["After"].split()
    assert "network-online.target" in unit["Unit"]["Wants"].split()
    assert set(unit["Unit"]["Before"].split()) >= {
        "ssh.service",
        "sshd.service",
        "systemd-user-sessions.service",
    }
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == "/usr/bin/azprov provision"  # no --config: real defaults
    assert service["StandardOutput"] == service["StandardError"] == "journal+console"
    minutes = int(service["TimeoutStartSec"].removesuffix("min"))
    # Longer than one WireServer call's whole retry budget, so azprov's own
    # deadline (which reports why) ends a stuck run, not systemd's kill.
    assert minutes * 60 > Config().wireserver.total_timeout
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_example_config_documents_real_keys_and_defaults(tmp_path: Path) -> None:
    """Uncommenting every example line gives the built-in defaults (docs cannot drift)."""
    example = (REPO / "packaging" / "azprov.conf").read_text()
    uncommented = re.sub(r"^#(\w+ =)", r"\1", example, flags=re.MULTILINE)
    # These show an example value where the default is "not set".
    uncommented = re.sub(
        r"^(endpoint|path|ssh_host_key_types) = .*$", "", uncommented, flags=re.MULTILINE
    )
    for section in ("wireserver", "imds", "media", "provisioning", "extensions"):
        for name in getattr(Config(), section)._fields:
            assert re.search(rf"^#{name} =", example, re.MULTILINE), (section, name)
    (tmp_path / "etc/azprov").mkdir(parents=True)
    (tmp_path / "etc/azprov/azprov.conf").write_text(uncommented)
    assert load_config(tmp_path) == Config()
    # As shipped (all commented out) it changes nothing either.
    (tmp_path / "etc/azprov/azprov.conf").write_text(example)
    assert load_config(tmp_path) == Config()


def test_license_is_mit_and_copyright_is_machine_readable() -> None:
    license_text = (REPO / "LICENSE").read_text()
    copyright_text = (REPO / "packaging/debian/copyright").read_text()
    assert license_text.startswith("MIT License")
    assert copyright_text.startswith(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    )

    def words(text: str) -> list[str]:
        return re.findall(r"[a-z]+", text.lower())

    body = license_text.split("Permission is hereby granted", 1)[1]
    stanza = copyright_text.split("Permission is hereby granted", 1)[1]
    assert words(body) == words(stanza.replace("\n .\n", "\n"))


def test_rpm_contents_scriptlets_and_requirements(rpm: Path) -> None:
    files = run("rpm", "-qlp", str(rpm)).split()
    for path in (
        "/usr/bin/azprov",
        "/usr/lib/systemd/system/azure-provisioning.service",
        "/usr/lib/systemd/system-preset/80-azprov.preset",
        "/etc/azprov/azprov.conf",
    ):
        assert path in files, path
    assert "noarch" in rpm.name
    scripts = run("rpm", "-qp", "--scripts", str(rpm))
    assert "preset azure-provisioning.service" in scripts
    assert "try-restart" not in scripts and "systemctl restart" not in scripts
    requires = run("rpm", "-qpR", str(rpm)).splitlines()
    for dependency in RUNTIME_LIBRARIES:
        assert f"python3-{dependency.name} >= {dependency.lowest}" in requires, requires
    configs = run("rpm", "-qpc", str(rpm)).split()
    assert configs == ["/etc/azprov/azprov.conf"]
    preset = (REPO / "packaging/rpm/80-azprov.preset").read_text()
    assert "enable azure-provisioning.service" in preset
    assert "disable azprov-extensions.service" in preset


def _declared(text: str, pattern: str) -> dict[str, str]:
    return {name: lowest for name, lowest in re.findall(pattern, text, re.MULTILINE)}


def test_deb_and_rpm_declare_the_libraries_with_the_tested_lower_bounds() -> None:
    """Read from the sources, so a drift shows without building anything."""
    control = (REPO / "packaging/debian/control").read_text()
    spec = (REPO / "packaging/rpm/azprov.spec").read_text()
    expected = {f"python3-{lib.name}": lib.lowest for lib in RUNTIME_LIBRARIES}
    deb = _declared(control, r"^\s+(python3-[a-z]+) \(>= ([0-9.]+)\),?$")
    rpm = _declared(spec, r"^Requires:\s+(python3-[a-z]+) >= ([0-9.]+)$")
    assert deb == expected and rpm == expected, (deb, rpm)
    # Unversioned, they would let an older library in than the suite has ever run with.
    unversioned = r"^(?:\s+|Requires:\s+)python3-(?:httpx|httpcore|click|defusedxml),?$"
    assert not re.findall(unversioned, control + spec, re.MULTILINE)


# dh_python3 (${python3:Depends}) and rpm's Python dependency generator add what the
# wheel's metadata, that is pyproject.toml, names.


def test_built_packages_do_not_depend_on_httpcore(deb: Path, rpm: Path) -> None:
    """httpcore is httpx's engine and arrives with httpx; azprov does not import it."""
    depends = run("dpkg-deb", "--field", str(deb), "Depends")
    requires = run("rpm", "-qpR", str(rpm))
    assert "httpcore" not in depends and "httpcore" not in requires, (depends, requires)


def test_pyproject_declares_what_the_packages_declare() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    (block,) = re.findall(r"^dependencies = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    declared = _declared(block, r'"([a-z]+)>=([0-9.]+)"')
    assert declared == {lib.name: lib.lowest for lib in RUNTIME_LIBRARIES}
