"""The image's own SSH host key generators: which key types they will make on this boot.

A type one of them makes when its key is missing, azprov makes itself (see
`hostkeys.default_key_types`), so that every key sshd offers has its fingerprint
on the console. Only unit files and links are read, through the door; nothing runs.
"""

from __future__ import annotations

import re
import stat
from typing import Optional

from azprov.config_values import KNOWN_TYPES
from azprov.host.root import TargetRoot

# A unit file is a few hundred bytes.
_UNIT_CAP = 64 << 10
# Fedora's and RHEL's sshd.service wants sshd-keygen.target, which wants
# sshd-keygen@<type>.service for rsa, ecdsa and ed25519, each run when its key is
# missing (ConditionFileNotEmpty=|!/etc/ssh/ssh_host_%i_key).
_KEYGEN_TARGET = "sshd-keygen.target"
# Debian 13's openssh-server ships sshd-keygen.service: `ssh-keygen -A` (every type the
# installed OpenSSH makes by default) before ssh.service, on a first boot only
# (ConditionFirstBoot=yes), and only while enabled (its postinst links it into
# ssh.service.wants and the .wants of the other units its WantedBy= names).
_FIRST_BOOT_KEYGEN = "sshd-keygen.service"
# What `ssh-keygen -A` makes (OpenSSH 9 and 10).
_KEYGEN_ALL_TYPES = ("rsa", "ecdsa", "ed25519")
# The image's own key generators whose types azprov makes itself. Its unit is ordered
# before each of them (units/azure-provisioning.service, Before=), so a generator that
# runs finds every key in place and makes none that azprov has not logged.
IMAGE_KEYGEN_UNITS = (
    "sshd-keygen@rsa.service",
    "sshd-keygen@ecdsa.service",
    "sshd-keygen@ed25519.service",
    _FIRST_BOOT_KEYGEN,
)
# (No /lib: the images that have these units, Fedora, RHEL and Debian 13, merged /usr.)
_UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system")
_KEYGEN_INSTANCE = re.compile(r"sshd-keygen@(\w+)\.service")
# systemd's mark of a first boot (machine-id(5)), made by PID 1 at its start: by the
# time azprov runs, /etc/machine-id already holds the new ID.
_FIRST_BOOT_MARK = "/run/systemd/first-boot"
_MACHINE_ID = "/etc/machine-id"
_MACHINE_ID_CAP = 4 << 10  # 33 bytes


def image_keygen_types(root: TargetRoot) -> list[str]:
    """The types the image's own generators make before sshd starts when missing:
    Fedora/RHEL's sshd-keygen@<type>.service instances, and every type on a boot
    where Debian 13's sshd-keygen.service runs. Raises HostError or OSError when
    the image's units cannot be read."""
    return _distro_keygen_types(root) + _first_boot_keygen_types(root)


def _distro_keygen_types(root: TargetRoot) -> list[str]:
    """The types sshd-keygen.target wants (its Wants= lines and .wants links) and
    whose instance is not masked, if any."""
    if any(_masked(root, name) for name in (_KEYGEN_TARGET, "sshd-keygen@.service")):
        return []
    found: list[str] = []
    for unit_dir in _UNIT_DIRS:
        text = root.read_text(f"{unit_dir}/{_KEYGEN_TARGET}", _UNIT_CAP)
        if text is not None:
            found += _KEYGEN_INSTANCE.findall(text)
            break  # the first found is the one systemd uses
    for unit_dir in _UNIT_DIRS:
        found += _KEYGEN_INSTANCE.findall(
            " ".join(root.listdir(f"{unit_dir}/{_KEYGEN_TARGET}.wants"))
        )
    return [
        kind
        for kind in found
        if kind in KNOWN_TYPES and not _masked(root, f"sshd-keygen@{kind}.service")
    ]


def _first_boot_keygen_types(root: TargetRoot) -> list[str]:
    """Every type `ssh-keygen -A` makes, when the image's sshd-keygen.service runs it
    on this boot: enabled, not masked, and its first-boot condition met.

    Only the unit file is read (a drop-in changing what it runs is not looked at).
    """
    text = None
    for unit_dir in _UNIT_DIRS:
        text = root.read_text(f"{unit_dir}/{_FIRST_BOOT_KEYGEN}", _UNIT_CAP)
        if text is not None:
            break  # the first found is the one systemd uses
    if not text or _masked(root, _FIRST_BOOT_KEYGEN) or not _wanted(root, _FIRST_BOOT_KEYGEN):
        return []  # (an empty file in /etc/systemd/system is a mask too)
    settings = _unit_settings(text)
    if not any(_runs_ssh_keygen_all(command) for command in settings.get("ExecStart", [])):
        return []
    # No (or an unparsable) condition: it runs at every boot it is started on.
    condition = settings.get("ConditionFirstBoot", [])
    wanted = _systemd_bool(condition[-1]) if condition else None
    if wanted is not None and wanted != _first_boot(root):
        return []
    return list(_KEYGEN_ALL_TYPES)


def _unit_settings(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file, each key's values in order (an empty value
    empties the list, as systemd resets it)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith(("#", ";", "[")):
            continue
        values = settings.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return settings


def _runs_ssh_keygen_all(command: str) -> bool:
    words = command.split()
    if not words:
        return False
    program = words[0].lstrip("-@:+!")  # systemd's prefixes: ignore failure, argv0, …
    return program.rsplit("/", 1)[-1] == "ssh-keygen" and "-A" in words[1:]


def _systemd_bool(value: str) -> Optional[bool]:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "y", "true", "t", "on"):
        return True
    if lowered in ("0", "no", "n", "false", "f", "off"):
        return False
    return None


def _first_boot(root: TargetRoot) -> bool:
    """What ConditionFirstBoot= sees. On the running system, systemd's mark; in an
    offline image, what its machine-id will make of the next boot (machine-id(5):
    missing or `uninitialized` is a first boot; empty is not)."""
    if root.live:
        return root.lstat(_FIRST_BOOT_MARK) is not None
    text = root.read_text(_MACHINE_ID, _MACHINE_ID_CAP)
    return text is None or text.strip() == "uninitialized"


def _wanted(root: TargetRoot, unit: str) -> bool:
    """Enabled: a link named after it in some *.wants/ or *.requires/ directory."""
    return any(
        root.glob(f"{unit_dir}/{pattern}/{unit}")
        for unit_dir in _UNIT_DIRS
        for pattern in ("*.wants", "*.requires")
    )


def _masked(root: TargetRoot, unit: str) -> bool:
    """Masked: a link to /dev/null (or an empty file) in /etc/systemd/system."""
    path = f"/etc/systemd/system/{unit}"
    link = root.readlink(path)
    if link is not None:
        return link == "/dev/null"
    found = root.stat(path)
    return found is not None and stat.S_ISREG(found.st_mode) and found.st_size == 0
