"""`azprov simulate`: the first boot, for real, against a simulated fabric in a throwaway root.

Nothing on the host changes: the fabric listens on 127.0.0.1, and azprov runs
as a separate process with `--root` pointing at a temporary tree that looks
like a small generalized Debian image (passwd, sshd_config, sudoers.d, DMI
product UUID, a KVP pool directory, the first-boot unit enabled).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azprov.errors import AzprovError
from azprov.simulator import SimulatedFabric, VmSpec
from azprov.simulator.documents import ovf_env_xml

_PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
messagebus:x:100:107::/nonexistent:/usr/sbin/nologin
sshd:x:101:65534::/run/sshd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
_GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
shadow:x:42:
sudo:x:27:
users:x:100:
messagebus:x:107:
nogroup:x:65534:
"""
_LOGIN_DEFS = """# A minimal login.defs for the simulated image.
UID_MIN 1000
UID_MAX 60000
SYS_UID_MIN 100
SYS_UID_MAX 999
GID_MIN 1000
GID_MAX 60000
SYS_GID_MIN 100
SYS_GID_MAX 999
USERGROUPS_ENAB yes
ENCRYPT_METHOD SHA512
"""
_SSHD_CONFIG = """# The simulated image's sshd_config (Debian 12 layout).
Include /etc/ssh/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""
_UNIT = """[Unit]
Description=Azure first-boot provisioning (azprov)

[Service]
Type=oneshot
ExecStart=/usr/bin/azprov provision

[Install]
WantedBy=multi-user.target
"""


def prepare_root(root: Path, vm_id: str) -> None:
    """Lay out a small generalized-image tree at `root` for VM `vm_id`."""

    def put(path: str, text: str, mode: int = 0o644) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        os.chmod(target, mode)

    put("/etc/passwd", _PASSWD)
    put("/etc/group", _GROUP)
    put(
        "/etc/shadow",
        "".join(f"{line.split(':')[0]}:*:20000:0:99999:7:::\n" for line in _PASSWD.splitlines()),
        0o640,
    )
    put(
        "/etc/gshadow",
        "".join(f"{line.split(':')[0]}:*::\n" for line in _GROUP.splitlines()),
        0o640,
    )
    put("/etc/login.defs", _LOGIN_DEFS)
    put("/etc/skel/.profile", "# ~/.profile from the image's skeleton\n")
    put("/etc/hostname", "localhost\n")
    put("/etc/ssh/sshd_config", _SSHD_CONFIG)
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/sudoers.d").mkdir(mode=0o750, parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    put("/sys/class/dmi/id/product_uuid", vm_id + "\n")
    (root / "sys/firmware/efi").mkdir(parents=True, exist_ok=True)  # a Generation 2 VM
    (root / "var/lib/hyperv").mkdir(parents=True, exist_ok=True)
    put("/etc/systemd/system/azure-provisioning.service", _UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "azure-provisioning.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/azure-provisioning.service")


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """path -> (description, content digest) of everything under root, links not followed."""
    entries: dict[str, tuple[str, str]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            info = path.lstat()
            kind = (
                "link"
                if stat.S_ISLNK(info.st_mode)
                else "dir"
                if stat.S_ISDIR(info.st_mode)
                else "file"
            )
            digest = ""
            if kind == "file":
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif kind == "link":
                digest = os.readlink(path)
            description = f"{kind} {stat.S_IMODE(info.st_mode):04o} {info.st_uid}:{info.st_gid}"
            entries["/" + str(path.relative_to(root))] = (description, digest)
    return entries


def describe_changes(
    before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]
) -> list[str]:
    lines = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            lines.append(f"  + {path:<58} {after[path][0]}")
        elif path not in after:
            lines.append(f"  - {path}")
        elif before[path] != after[path]:
            lines.append(f"  ~ {path:<58} {after[path][0]}")
    return lines


def _run_provision(config: Path, root: Path, verbose: int) -> tuple[int, str, float]:
    started = time.monotonic()
    argv = [sys.executable, "-m", "azprov", "--config", str(config), "--root", str(root)]
    argv += ["-v"] * verbose + ["provision"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    return result.returncode, result.stderr, time.monotonic() - started


def run_simulation(keep: bool = False, verbose: int = 0) -> int:
    """First and second boot of a simulated VM in a throwaway root, narrated on stdout."""
    if os.geteuid() != 0:
        raise AzprovError(
            "azprov simulate needs root: it runs the real useradd --prefix and chown "
            "inside its throwaway root (nothing outside it changes); run it with sudo"
        )
    workdir = Path(tempfile.mkdtemp(prefix="azprov-simulate-"))
    root = workdir / "root"
    spec = VmSpec()
    try:
        prepare_root(root, spec.vm_id)
        media = _demo_media(workdir / "media", spec)
        with SimulatedFabric(spec) as fabric:
            config = workdir / "azprov.conf"
            config.write_text(
                fabric.config_text() + f"[media]\npath = {media}\n", encoding="utf-8"
            )
            print(
                f"azprov simulate: simulated Azure fabric on 127.0.0.1 "
                f"(WireServer :{fabric.wireserver.port}, HostGAPlugin :{fabric.hostplugin.port}, "
                f"IMDS :{fabric.imds.port}); throwaway root {root}"
            )
            code = _first_boot(fabric, config, root, verbose)
            second_code = _second_boot(fabric, config, root, verbose)
        if keep:
            print(f"\nThe target root is kept at {root}")
        return code or second_code
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _demo_media(media: Path, spec: VmSpec) -> Path:
    media.mkdir()
    (media / "ovf-env.xml").write_bytes(
        ovf_env_xml(
            hostname=spec.computer_name,
            username=spec.admin_username,
            password="Sim-Passw0rd!",  # demo only: shows that only a hash lands on disk
            custom_data=b"#!/bin/sh\necho 'custom data is saved, never executed'\n",
        )
    )
    return media


def _first_boot(fabric: SimulatedFabric, config: Path, root: Path, verbose: int) -> int:
    before = snapshot(root)
    code, log_text, seconds = _run_provision(config, root, verbose)
    print(f"\n== First boot: azprov provision (exit status {code}, {seconds:.2f} s) ==")
    print(_indented(log_text))
    print("\n== Requests the fabric saw ==")
    print("\n".join(f"  {line}" for line in fabric.transcript()) or "  none")
    print("\n== Health reports ==")
    for report in fabric.health_reports:
        detail = f": {report.description}" if report.description else ""
        print(
            f"  {report.state} for incarnation {report.incarnation}, "
            f"container {report.container_id}, instance {report.instance_id}{detail}"
        )
    print("\n== What changed in the target root ==")
    print("\n".join(describe_changes(before, snapshot(root))) or "  nothing")
    print("\n== Phases (from azprov status) ==")
    status = subprocess.run(
        [sys.executable, "-m", "azprov", "--root", str(root), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    print(_indented(status.stdout))
    return code


def _second_boot(fabric: SimulatedFabric, config: Path, root: Path, verbose: int) -> int:
    seen = len(fabric.requests)
    code, log_text, seconds = _run_provision(config, root, verbose)
    print(f"\n== Second boot of the same VM (exit status {code}, {seconds:.2f} s) ==")
    print(_indented(log_text))
    print(f"  requests to the fabric: {len(fabric.requests) - seen}")
    return code


def _indented(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines()).rstrip()
