"""sshd's password policy: `PasswordAuthentication yes|no`.

sshd keeps the first value it reads for a keyword. Debian and Fedora include
`sshd_config.d/*.conf` at the top of sshd_config, so a drop-in named to sort
first decides; without that Include, the line goes at the top of sshd_config
itself, replacing any earlier global setting (Match blocks are left alone).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

from azprov.errors import HostError
from azprov.host.files import read_regular, write_atomic
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

SSHD_CONFIG = "/etc/ssh/sshd_config"
DROPIN_DIR = "/etc/ssh/sshd_config.d"
DROPIN = f"{DROPIN_DIR}/00-azprov.conf"
_INCLUDE = re.compile(r"^\s*Include\s+\S*sshd_config\.d/", re.IGNORECASE | re.MULTILINE)
_SETTING = re.compile(r"^\s*PasswordAuthentication\s", re.IGNORECASE)
_MATCH = re.compile(r"^\s*Match\s", re.IGNORECASE)
_MARK = "# Set by azprov: the VM's password login policy.\n"


def _without_global_setting(text: str, stop: int) -> str:
    """`text` without our earlier line and without global PasswordAuthentication lines
    that start before offset `stop` (Match blocks are left alone)."""
    kept: list[str] = []
    offset = 0
    in_match = False
    lines = text.splitlines(keepends=True)
    for index, existing in enumerate(lines):
        in_match = in_match or bool(_MATCH.match(existing))
        global_setting = not in_match and offset < stop and _SETTING.match(existing)
        ours = existing == _MARK and index + 1 < len(lines) and _SETTING.match(lines[index + 1])
        offset += len(existing)
        if global_setting or ours:
            continue
        kept.append(existing)
    return "".join(kept)


def set_password_authentication(root: TargetRoot, allow: bool) -> bool:
    """Apply the policy; returns False when the image has no sshd_config."""
    config = root / SSHD_CONFIG
    if not config.is_file():
        log.info(
            "no %s in the target: sshd is not installed, no password policy written", SSHD_CONFIG
        )
        return False
    value = "yes" if allow else "no"
    line = f"PasswordAuthentication {value}\n"
    text = config.read_text(encoding="utf-8", errors="replace")
    include = _INCLUDE.search(text)
    # sshd keeps the first value it reads: a global setting above the Include (or, without
    # an Include, anywhere before the first Match) would beat ours, so it goes.
    kept = _without_global_setting(text, stop=include.start() if include else len(text))
    if include:
        write_atomic(root / DROPIN, f"{_MARK}{line}".encode(), mode=0o644)
        log.info("wrote %s: PasswordAuthentication %s", DROPIN, value)
    else:
        kept = f"{_MARK}{line}{kept}"
    if kept != text:
        info = os.stat(config)
        write_atomic(config, kept.encode(), mode=info.st_mode & 0o7777)
        log.info("set PasswordAuthentication %s in %s", value, SSHD_CONFIG)
    return True


def reload_sshd(root: TargetRoot) -> None:
    """Make a running sshd read the new policy (nothing to do if it is not running yet)."""
    if root.skip_live("reloading sshd"):
        return
    pid_file = _configured_pid_file(root)
    if pid_file is not None and not sshd_may_be_running(pid_file):
        # First boot: sshd is ordered after azprov's unit and starts with the new
        # files; asking systemctl about two unit names would cost two processes.
        log.debug("sshd is not running (no live %s); nothing to reload", pid_file)
        return
    for unit in ("ssh.service", "sshd.service"):
        if root.systemctl("is-active", "--quiet", unit, check=False).returncode == 0:
            root.systemctl("reload-or-restart", unit, check=False)
            log.info("reloaded %s", unit)
            return


SSHD_PID_FILE = "/run/sshd.pid"
_CONFIG_LIMIT = 1 << 20


def configured_values(root: TargetRoot, keyword: str) -> list[str]:
    """Every value the image's sshd configuration gives `keyword`, in the order sshd
    reads them: sshd_config, with the sshd_config.d/*.conf drop-ins read where its
    Include names them. `Keyword value` and `Keyword=value` both count; keywords
    that only Match blocks may hold are not what this is for.

    An absent or unreadable file reads as empty; HostError when a file or the
    drop-in directory leads out of an offline root.
    """
    line = re.compile(rf"^[ \t]*{keyword}(?:[ \t]*=[ \t]*|[ \t]+)(\S+)", re.I | re.M)
    text = _text(root, SSHD_CONFIG)
    include = _INCLUDE.search(text)
    if include is None:
        return line.findall(text)
    drop_ins = [
        _text(root, f"{DROPIN_DIR}/{name}")
        for name in root.listdir(DROPIN_DIR)
        if name.endswith(".conf")  # what Debian's and Fedora's Include pattern names
    ]
    return [
        value
        for part in (text[: include.start()], *drop_ins, text[include.end() :])
        for value in line.findall(part)
    ]


def _text(root: TargetRoot, path: str) -> str:
    data = read_regular(root / path, _CONFIG_LIMIT)
    return data.decode("utf-8", errors="replace") if data is not None else ""


def _configured_pid_file(root: TargetRoot) -> Optional[str]:
    """Where sshd writes its pid: the first PidFile, else the default; None when it
    writes none (`PidFile none`), so only systemctl can tell."""
    try:
        found = configured_values(root, "PidFile")
    except (HostError, OSError):
        return SSHD_PID_FILE
    if not found:
        return SSHD_PID_FILE
    return None if found[0].lower() == "none" else found[0]


def sshd_may_be_running(pid_file: str = SSHD_PID_FILE) -> bool:
    """False only when sshd's pid file is absent or names no live process."""
    try:
        pid = int(Path(pid_file).read_text(encoding="ascii").strip())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable or odd: ask systemctl as before
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
