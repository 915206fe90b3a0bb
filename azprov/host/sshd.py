"""sshd's password policy (`PasswordAuthentication yes|no`), and making a running sshd see it.

sshd keeps the first global value it reads (see `azprov.host.sshd_config`, the
one reader of its configuration). Debian and Fedora include
`sshd_config.d/*.conf` at the top of sshd_config, so a drop-in named to sort
first decides; where sshd would not read that drop-in outside a Match block,
the line goes at the top of sshd_config itself. Either way, a line sshd would
read before azprov's, in any form (`Keyword=value`, quoted, another case) and
in any file, is removed, as azprov has always removed such lines from
sshd_config: the VM's policy is the one sshd uses. For a connection, a Match
block's value overrides the global one: a `PasswordAuthentication` under a
Match that matches every connection (`Match all`, `Match User *`) is removed
too, with a warning; other Match blocks are left alone (`azprov check` warns
of one that allows password login).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from azprov.confined import Confined
from azprov.errors import HostError
from azprov.host.root import TargetRoot
from azprov.host.sshd_config import (
    FILE_CAP,
    SSHD_CONFIG,
    Setting,
    SshdConfig,
    matches_every_connection,
    read_sshd_config,
    sshd_path,
)
from azprov.host.sshd_syntax import shown

log = logging.getLogger(__name__)

DROPIN_DIR = "/etc/ssh/sshd_config.d"
DROPIN = f"{DROPIN_DIR}/00-azprov.conf"
_KEYWORD = "passwordauthentication"
_MARK = b"# Set by azprov: the VM's password login policy.\n"
# Each pass removes one line sshd would read before azprov's; an image with more
# such lines than this is not one a person wrote.
_MAX_REMOVALS = 1000


def set_password_authentication(root: TargetRoot, allow: bool) -> bool:
    """Apply the policy; returns False when the image has no sshd_config."""
    files = _Files(root)
    main = files.current(SSHD_CONFIG)
    if main is None:
        log.info(
            "no %s in the target: sshd is not installed, no password policy written", SSHD_CONFIG
        )
        return False
    value = "yes" if allow else "no"
    ours = _MARK + f"PasswordAuthentication {value}\n".encode()
    # An earlier run's line at the top of sshd_config goes first: it is written again
    # below if that is still where it belongs.
    for old in (b"yes", b"no"):
        main = main.replace(_MARK + b"PasswordAuthentication " + old + b"\n", b"")
    files.edited[SSHD_CONFIG] = main
    files.edited[DROPIN] = ours
    config = files.config()
    if config.read_globally(DROPIN) is not None:
        where = DROPIN
    else:
        where = SSHD_CONFIG
        config = _at_the_top(files, main, ours)
    config = _make_ours_win(files, config, where)
    config = _remove_overrides(files, config, where)
    files.write()
    log.info("set PasswordAuthentication %s in %s", value, where)
    for problem in config.problems[:5]:
        log.warning("sshd will refuse its configuration: %s", problem)
    return True


def _at_the_top(files: _Files, main: bytes, ours: bytes) -> SshdConfig:
    """sshd would not read the drop-in, or only under a Match: azprov's line goes at the
    top of sshd_config, and the file's other global settings of it (dead from now on)
    go too, as they always have."""
    del files.edited[DROPIN]
    files.edited[SSHD_CONFIG] = ours + main
    config = files.config()
    stale = [
        s for s in config.every(_KEYWORD) if s.path == SSHD_CONFIG and not _is_ours(s, SSHD_CONFIG)
    ]
    for setting in reversed(stale):
        files.edited[SSHD_CONFIG] = _without(files.edited[SSHD_CONFIG], setting.span)
    return files.config() if stale else config


def _make_ours_win(files: _Files, config: SshdConfig, where: str) -> SshdConfig:
    """Remove each line sshd would take before azprov's, whatever its form or file."""
    for _ in range(_MAX_REMOVALS):
        winner = config.first(_KEYWORD)
        if winner is None:  # cannot be: azprov's own line is read globally
            raise HostError(f"sshd would not read azprov's PasswordAuthentication line in {where}")
        if _is_ours(winner, where):
            return config
        log.info(
            "removing `PasswordAuthentication %s` at %s: sshd reads it before azprov's line",
            winner.value,
            winner.where,
        )
        config = _remove_line(files, winner.path, winner.span)
    raise HostError(
        f"sshd configuration: more than {_MAX_REMOVALS} PasswordAuthentication lines "
        "are read before azprov's",
        path=SSHD_CONFIG,
    )


def _remove_line(files: _Files, path: str, span: tuple[int, int]) -> SshdConfig:
    """Drop the line at `span` of `path` from the edited files; the configuration as read again."""
    data = files.current(path)
    if data is None:
        raise HostError(f"{path} went away while azprov read it", path=path)
    files.edited[path] = _without(data, span)
    return files.config()


def _remove_overrides(files: _Files, config: SshdConfig, where: str) -> SshdConfig:
    """Remove each PasswordAuthentication under a Match that matches every connection:
    sshd applies it after the global value, so it would override azprov's for everyone.
    (azprov's own line may be under `Match all` itself, when the Include follows one.)"""
    for _ in range(_MAX_REMOVALS):
        found = next(
            (
                s
                for s in config.in_match(_KEYWORD)
                if matches_every_connection(s.match) and not _is_ours(s, where)
            ),
            None,
        )
        if found is None:
            return config
        log.warning(
            "removing `PasswordAuthentication %s` at %s: under `Match %s` it would "
            "override azprov's line for every connection",
            found.value,
            found.where,
            shown(" ".join(found.match)),
        )
        config = _remove_line(files, found.path, found.span)
    raise HostError(
        f"sshd configuration: more than {_MAX_REMOVALS} PasswordAuthentication lines "
        "under Match blocks for every connection",
        path=SSHD_CONFIG,
    )


class _Files:
    """sshd's configuration files as azprov reads them and as it will leave them."""

    def __init__(self, root: TargetRoot) -> None:
        self.root = root
        self.original: dict[str, Optional[bytes]] = {}
        self.edited: dict[str, bytes] = {}

    def current(self, path: str) -> Optional[bytes]:
        if path in self.edited:
            return self.edited[path]
        if path not in self.original:
            self.original[path] = self.root.read(path, FILE_CAP)
        return self.original[path]

    def config(self) -> SshdConfig:
        config = read_sshd_config(self.root, overlay=self.edited)
        assert config is not None  # sshd_config is among the edits
        return config

    def write(self) -> None:
        """Write each changed file where it leads inside the image (a linked
        sshd_config is edited, not replaced), keeping its mode and owner."""
        for path, data in self.edited.items():
            if path not in self.original:
                self.original[path] = self.root.read(path, FILE_CAP)
            if self.original[path] == data:
                continue
            if self.original[path] is None:  # a new file: nothing to keep
                self.root.write(path, data, mode=0o644, owner=(0, 0))
                continue
            target = self.root.resolve(path) or path
            found = self.root.stat(target)
            mode = found.st_mode & 0o7777 if found is not None else 0o644
            owner = (found.st_uid, found.st_gid) if found is not None else (0, 0)
            self.root.write(target, data, mode=mode, owner=owner)


def _is_ours(setting: Setting, where: str) -> bool:
    """azprov's line: the second line (after the mark) of the file it went in."""
    return setting.path == where and setting.line == 2


def _without(data: bytes, span: tuple[int, int]) -> bytes:
    return data[: span[0]] + data[span[1] :]


def reload_sshd(root: TargetRoot) -> None:
    """Make a running sshd read the new policy (nothing to do if it is not running yet)."""
    if root.skip_live("reloading sshd"):
        return
    pid_file = _configured_pid_file(root)
    if pid_file is not None and not sshd_may_be_running(root, pid_file):
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
# A pid file holds one number and a newline.
_PID_FILE_CAP = 4096


def _configured_pid_file(root: TargetRoot) -> Optional[str]:
    """Where sshd writes its pid: the first PidFile, else the default; None when it
    writes none (`PidFile none`), so only systemctl can tell."""
    try:
        config = read_sshd_config(root)
    except HostError:
        return SSHD_PID_FILE
    found = config.first("pidfile") if config is not None else None
    if found is None:
        return SSHD_PID_FILE
    path = sshd_path(found.args[0])
    return None if path.lower() == "none" else path


def sshd_may_be_running(root: Confined, pid_file: str = SSHD_PID_FILE) -> bool:
    """False only when sshd's pid file is absent or names no live process."""
    try:
        data = root.read(pid_file, _PID_FILE_CAP)
    except HostError:
        return True  # unreadable or odd: ask systemctl as before
    if data is None:
        return False
    try:
        pid = int(data.decode("ascii").strip())
    except ValueError:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
