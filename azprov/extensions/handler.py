"""One handler version on disk: `<lib_dir>/<Name>-<Version>/` and the files of the contract.

`HandlerEnvironment.json` tells the extension where things are;
`config/<seqNo>.settings` carries its settings (protected part encrypted);
`config/HandlerState` and `mrseq` (the last handled seqNo) are ours, so a
restart never runs enable twice for one seqNo.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Optional

from azprov.extensions.manifest import HandlerManifest, parse_handler_manifest, version_key
from azprov.host.files import write_atomic
from azprov.host.root import TargetRoot

NOT_INSTALLED = "NotInstalled"
INSTALLED = "Installed"
ENABLED = "Enabled"
_STATES = (NOT_INSTALLED, INSTALLED, ENABLED)
MANIFEST_MAX_BYTES = 64 * 1024


def read_capped(path: Path, limit: int) -> Optional[bytes]:
    """Up to `limit + 1` bytes of a regular file (never through a symlink); None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None  # a FIFO or device where a status file should be
        return handle.read(limit + 1)


class HandlerFolder:
    """`<root><lib_dir>/<name>-<version>` and its state files."""

    def __init__(self, root: TargetRoot, lib_dir: str, log_dir: str, name: str, version: str):
        self.name = name
        self.version = version
        self.path = root / f"{lib_dir}/{name}-{version}"
        self.log_dir = root / f"{log_dir}/{name}"
        self.config_dir = self.path / "config"
        self.status_dir = self.path / "status"

    def __repr__(self) -> str:
        return f"HandlerFolder({self.name}-{self.version})"

    def exists(self) -> bool:
        return self.path.is_dir() and not self.path.is_symlink()

    def manifest(self) -> HandlerManifest:
        content = read_capped(self.path / "HandlerManifest.json", MANIFEST_MAX_BYTES) or b""
        return parse_handler_manifest(content, f"{self.name}-{self.version}")

    def state(self) -> str:
        raw = read_capped(self.config_dir / "HandlerState", 64)
        value = raw.decode("ascii", "replace").strip() if raw else NOT_INSTALLED
        return value if value in _STATES else NOT_INSTALLED

    def set_state(self, state: str) -> None:
        write_atomic(self.config_dir / "HandlerState", state.encode(), mode=0o600)

    def last_seq_no(self) -> Optional[int]:
        raw = read_capped(self.path / "mrseq", 32)
        text = raw.decode("ascii", "replace").strip() if raw else ""
        return int(text) if text.isdigit() else None

    def set_last_seq_no(self, seq_no: int) -> None:
        write_atomic(self.path / "mrseq", str(seq_no).encode(), mode=0o600)

    def prepare(self, seq_no: int, settings: Optional[str]) -> None:
        """Write HandlerEnvironment.json and the settings for `seq_no` before any command."""
        environment = [
            {
                "name": self.name,
                "version": 1.0,
                "handlerEnvironment": {
                    "logFolder": str(self.log_dir),
                    "configFolder": str(self.config_dir),
                    "statusFolder": str(self.status_dir),
                    "heartbeatFile": str(self.path / "heartbeat.log"),
                    "eventsFolder": str(self.log_dir / "events"),
                },
            }
        ]
        write_atomic(self.path / "HandlerEnvironment.json", json.dumps(environment).encode())
        for folder in (self.status_dir, self.log_dir / "events"):
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Protected settings stay encrypted; still, only root reads settings.
        write_atomic(self.config_dir / f"{seq_no}.settings", (settings or "").encode(), mode=0o600)

    def status_file(self, seq_no: int) -> Path:
        return self.status_dir / f"{seq_no}.status"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def installed_versions(root: TargetRoot, lib_dir: str, name: str) -> list[str]:
    """Versions of `name` with a folder in lib_dir, lowest first."""
    folder = root / lib_dir
    pattern = re.compile(rf"^{re.escape(name)}-([0-9]+(?:\.[0-9]+){{0,3}})$", re.IGNORECASE)
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return []
    versions = [m.group(1) for m in map(pattern.match, entries) if m]
    return sorted((v for v in versions if (folder / f"{name}-{v}").is_dir()), key=version_key)
