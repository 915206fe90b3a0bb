"""Software in the image: azprov's own runtime, package versions and repositories, SELinux."""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator, Optional

from azprov.checks.model import Note, check, unknown, unreadable
from azprov.checks.rpmdb import db_dir, rpm_versions
from azprov.checks.tree import Tree
from azprov.checks.versions import Scheme, Version, compare, compare_parts, parse
from azprov.errors import InvalidInput

TOOLS = (
    "openssl",
    "ssh-keygen",
    "useradd",
    "usermod",
    "chpasswd",
    "hostnamectl",
    "systemctl",
    "mount",
)
# httpcore is not a dependency azprov declares, but httpx sends nothing without it
# (python3-httpx depends on python3-httpcore): an image that lost it fails at
# the first request just the same.
LIBRARIES = ("httpx", "httpcore", "defusedxml", "click")
_BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin")


def python_version(tree: Tree) -> Optional[tuple[int, int]]:
    real = tree.real("usr/bin/python3")
    if real is None or not tree.exists("usr/bin/python3"):
        return None
    match = re.search(r"python3\.(\d+)$", real)
    if match:
        return 3, int(match.group(1))
    versions = [
        int(m.group(1))
        for p in tree.glob("usr/bin/python3.*")
        for m in [re.search(r"python3\.(\d+)$", p)]
        if m
    ]
    return (3, max(versions)) if versions else None


def _site_dirs(tree: Tree, minor: int) -> list[str]:
    return [
        "usr/lib/python3/dist-packages",
        f"usr/lib/python3.{minor}/site-packages",
        f"usr/lib64/python3.{minor}/site-packages",
        f"usr/local/lib/python3.{minor}/dist-packages",
        f"usr/local/lib/python3.{minor}/site-packages",
    ]


@check(
    "azprov-runtime-deps",
    "error",
    consequence="azprov cannot run at first boot: provisioning fails",
    source="azprov DESIGN; LISA verify_python_version",
)
def azprov_runtime_deps(tree: Tree) -> Iterator[Note]:
    version = python_version(tree)
    if version is None:
        yield Note("usr/bin/python3", "is missing", "install python3 (3.9 or newer)")
    elif version < (3, 9):
        yield Note(
            "usr/bin/python3", f"is Python {version[0]}.{version[1]}", "use Python 3.9 or newer"
        )
    else:
        dirs = _site_dirs(tree, version[1])
        for library in LIBRARIES:
            if not any(
                tree.exists(f"{d}/{library}") or tree.exists(f"{d}/{library}.py") for d in dirs
            ):
                yield Note(
                    dirs[0],
                    f"has no {library} for Python 3.{version[1]}",
                    f"install python3-{library}",
                )
    for tool in TOOLS:
        if not any(tree.exists(f"{d}/{tool}") for d in _BIN_DIRS):
            yield Note("usr/bin", f"has no {tool}", f"install the package that ships {tool}")


def dpkg_versions(tree: Tree) -> dict[str, list[str]]:
    """name -> the versions of its installed instances (one per architecture)."""

    def read() -> dict[str, list[str]]:
        versions: dict[str, list[str]] = {}
        for block in (tree.read_text("var/lib/dpkg/status") or "").split("\n\n"):
            fields = dict(re.findall(r"(?m)^(Package|Status|Version): (.*)$", block))
            if fields.get("Status", "").endswith(" installed") and "Version" in fields:
                versions.setdefault(fields.get("Package", ""), []).append(fields["Version"])
        return versions

    return tree.memo("dpkg.versions", read)


# The first fixed build of each, as its packages spell it: OMI's .deb says
# 1.6.8.1 where its rpm says 1.6.8-1 (OMIGOD, CVE-2021-38647); the agent's
# 2.2.53.1 is LISA's floor.
_OMI_FIXED = {Scheme.DEB: "1.6.8.1", Scheme.RPM: "1.6.8-1"}
_AGENT_FLOOR = "2.2.53.1"
# OpenSSL branches whose vendors still patch them: older than 3.0 but not flagged.
_OPENSSL_PATCHED_BRANCH = re.compile(r"1\.(?:1\.1|0\.2)(?![0-9])")


def _older(scheme: Scheme, installed: Version, floor: str) -> bool:
    """Is `installed` older than the upstream build `floor`? The floor is taken
    in the package's own epoch: a distribution's epoch says nothing about which
    upstream release it packs (RHEL's openssl is 1:3.0.7)."""
    minimum = dataclasses.replace(parse(scheme, floor), epoch=installed.epoch)
    return compare(installed, minimum) < 0


def _unpatched_openssl(scheme: Scheme, installed: Version) -> bool:
    below_three = compare_parts(scheme)(installed.upstream, "3.0") < 0
    return below_three and not _OPENSSL_PATCHED_BRANCH.match(installed.upstream)


def _version_notes(scheme: Scheme, versions: dict[str, list[str]], where: str) -> Iterator[Note]:
    for name in ("omi", "openssl", "walinuxagent", "WALinuxAgent"):
        for text in versions.get(name, []):
            try:
                installed = parse(scheme, text, f"{name} version")
            except InvalidInput as exc:
                yield unknown(where, str(exc), f"check the {name} package by hand")
                continue
            if name == "omi" and _older(scheme, installed, _OMI_FIXED[scheme]):
                fix = "upgrade OMI to 1.6.8-1 or later (OMIGOD)"
                yield Note(where, f"has omi {text}", fix, severity="error")
            elif name == "openssl" and _unpatched_openssl(scheme, installed):
                yield Note(where, f"has openssl {text}", "upgrade OpenSSL to 3.0 or later")
            elif name.lower() == "walinuxagent" and _older(scheme, installed, _AGENT_FLOOR):
                fix = f"upgrade it to {_AGENT_FLOOR} or later"
                yield Note(where, f"has WALinuxAgent {text}", fix)


def _apt_sources(tree: Tree) -> str:
    files = [
        "etc/apt/sources.list",
        *tree.glob("etc/apt/sources.list.d/*.list"),
        *tree.glob("etc/apt/sources.list.d/*.sources"),
    ]
    return "\n".join(
        line for path in files for line in tree.lines(path) if not line.lstrip().startswith("#")
    )


@check(
    "package-currency",
    "warn",
    consequence="known-vulnerable software, or an image that cannot be patched",
    source="LISA verify_omi_version, verify_openssl_version, verify_waagent_version, verify_repository_installed",
)
def package_currency(tree: Tree) -> Iterator[Note]:
    if tree.exists("var/lib/dpkg/status"):
        cannot = unreadable(tree, "var/lib/dpkg/status")  # not read is not up to date
        if cannot:
            yield from cannot
        else:
            yield from _version_notes(Scheme.DEB, dpkg_versions(tree), "var/lib/dpkg/status")
        sources = _apt_sources(tree)
        for suite in ("-updates", "-security"):
            if suite not in sources:
                yield Note(
                    "etc/apt/sources.list",
                    f"has no {suite} suite",
                    f"add the distribution's {suite} suite",
                )
        return
    rpmdb = db_dir(tree)
    if rpmdb:
        versions = rpm_versions(tree, ("omi", "openssl", "WALinuxAgent"))
        if isinstance(versions, str):
            yield unknown(rpmdb, versions, "check the package versions by hand")
        else:
            yield from _version_notes(Scheme.RPM, versions, rpmdb)
        if not tree.glob("etc/yum.repos.d/*.repo"):
            yield Note(
                "etc/yum.repos.d",
                "has no repositories",
                "configure the distribution's repositories (RHUI)",
            )
        return
    yield unknown("var/lib/dpkg/status", "no dpkg status and no rpm database in the tree")


@check(
    "selinux-labels",
    "warn",
    consequence="files changed offline are unlabeled: under enforcing, sshd or the unit is denied",
    source="virt-sysprep/virt-builder SELinux notes",
)
def selinux_labels(tree: Tree) -> Iterator[Note]:
    if tree.live:
        return  # changed on the running system, files got their labels as they were written
    mode = ""
    for line in tree.lines("etc/selinux/config"):
        if line.startswith("SELINUX="):
            mode = line.split("=", 1)[1].strip().lower()
    if mode in ("enforcing", "permissive") and not tree.exists(".autorelabel"):
        yield Note(
            "etc/selinux/config",
            f"sets SELINUX={mode} and the tree was checked offline with no /.autorelabel",
            "touch /.autorelabel in the image (or run setfiles with its file_contexts)",
        )
