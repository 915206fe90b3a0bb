"""Software in the image: azprov's own runtime, package versions and repositories, SELinux."""

from __future__ import annotations

import re
from typing import Iterator, Optional

from azprov.checks.model import Note, check, unknown
from azprov.checks.rpmdb import db_dir, rpm_versions
from azprov.checks.tree import Tree

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


def dpkg_versions(tree: Tree) -> dict[str, str]:
    def read() -> dict[str, str]:
        versions: dict[str, str] = {}
        for block in (tree.read_text("var/lib/dpkg/status") or "").split("\n\n"):
            fields = dict(re.findall(r"(?m)^(Package|Status|Version): (.*)$", block))
            if fields.get("Status", "").endswith(" installed") and "Version" in fields:
                versions[fields["Package"]] = fields["Version"]
        return versions

    return tree.memo("dpkg.versions", read)


def _numbers(version: str) -> tuple[int, ...]:
    upstream = version.split(":", 1)[-1].split("-", 1)[0]
    return tuple(int(n) for n in re.findall(r"\d+", upstream)[:4])


def _version_notes(versions: dict[str, str], where: str) -> Iterator[Note]:
    omi = versions.get("omi")
    if omi and _numbers(omi) < (1, 6, 8, 1):
        yield Note(
            where, f"has omi {omi}", "upgrade OMI to 1.6.8-1 or later (OMIGOD)", severity="error"
        )
    ssl = versions.get("openssl")
    if ssl and _numbers(ssl) < (3,) and _numbers(ssl)[:3] not in ((1, 1, 1), (1, 0, 2)):
        yield Note(where, f"has openssl {ssl}", "upgrade OpenSSL to 3.0 or later")
    agent = versions.get("walinuxagent") or versions.get("WALinuxAgent")
    if agent and _numbers(agent) < (2, 2, 53, 1):
        yield Note(where, f"has WALinuxAgent {agent}", "upgrade it to 2.2.53.1 or later")


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
        yield from _version_notes(dpkg_versions(tree), "var/lib/dpkg/status")
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
            yield from _version_notes(versions, rpmdb)
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
