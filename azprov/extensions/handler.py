"""One handler version on disk: `<lib_dir>/<Name>-<Version>/` and the files of the contract.

`HandlerEnvironment.json` tells the extension where things are;
`config/<seqNo>.settings` carries its settings (protected part encrypted);
`config/HandlerState` and `mrseq` (the last handled seqNo) are ours, so a
restart never runs enable twice for one seqNo. A multi-config handler's named
extensions each have their own: `config/<name>.<seqNo>.settings`,
`status/<name>.<seqNo>.status` (the handler's), `config/<name>.HandlerState`
(`enabled`/`disabled`, as the platform agent writes it) and `config/<name>.mrseq`
(the handler's own `<name>.mrseq`, RunCommand's, is in the folder's top, not here).

The folder is the handler's too: it runs there as root, and a buggy one may
leave a link where azprov's own files go. So every read and write azprov
makes below it goes through the folder as a tree of its own (`Confined`), with
links refused at every component: nothing planted in the folder, by the
package or by the handler, can lead a read or a write out of it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import stat
from typing import Iterator, Optional

from azprov.confined import Confined, Links
from azprov.errors import UnsafePath
from azprov.extensions.manifest import (
    HANDLER_MANIFEST_MAX_BYTES,
    HandlerManifest,
    parse_handler_manifest,
    version_key,
)
from azprov.host.root import TargetRoot

NOT_INSTALLED = "NotInstalled"
INSTALLED = "Installed"
ENABLED = "Enabled"
_STATES = (NOT_INSTALLED, INSTALLED, ENABLED)
# Published manifests are a few hundred bytes; a copy with every option spelled out
# stays under 2 KB.
MANIFEST_MAX_BYTES = HANDLER_MANIFEST_MAX_BYTES
# HandlerState and mrseq are azprov's own one-word files.
STATE_MAX_BYTES = 64
SEQ_NO_MAX_BYTES = 32
_SEQ_NO = re.compile(r"^[0-9]{1,10}\Z")
EXTENSION_ENABLED = "enabled"
EXTENSION_DISABLED = "disabled"
_EXTENSION_STATE_SUFFIX = ".HandlerState"


class HandlerFolder:
    """`<root><lib_dir>/<name>-<version>` and its state files."""

    def __init__(self, root: TargetRoot, lib_dir: str, log_dir: str, name: str, version: str):
        self.root = root
        self.name = name
        self.version = version
        self.lib_dir = lib_dir
        self.log_parent = log_dir
        self.in_root = f"{lib_dir}/{name}-{version}"
        self.logs_in_root = f"{log_dir}/{name}"
        # Host paths: only for naming the folders to the handler (its environment,
        # its working directory), never for opening anything below them.
        self.path = root / self.in_root
        self.log_dir = root / self.logs_in_root
        self.config_dir = self.path / "config"
        self.status_dir = self.path / "status"

    def __repr__(self) -> str:
        return f"HandlerFolder({self.name}-{self.version})"

    @property
    def tree(self) -> Confined:
        """The handler folder as a tree nothing below can lead out of (the folder
        itself a link is refused too: `Confined` would take where it leads)."""
        found = self.root.lstat(self.in_root)
        if found is not None and stat.S_ISLNK(found.st_mode):
            shown = self.root.shown(self.in_root)
            raise UnsafePath(f"{shown} is a symbolic link, not a handler folder", path=shown)
        return Confined(self.path)

    def exists(self) -> bool:
        found = self.root.lstat(self.in_root)
        return found is not None and stat.S_ISDIR(found.st_mode)

    def read(self, name: str, cap: int) -> Optional[bytes]:
        """A file of the folder (`status/1.status`), never through a link; None if absent.

        FileTooLarge over `cap`, UnsafePath for a link or anything but a regular file.
        """
        return self.tree.read(name, cap, links=Links.REFUSE)

    def _write(self, name: str, data: bytes, mode: int) -> None:
        self.tree.write(name, data, mode=mode, links=Links.REFUSE)

    def manifest(self) -> HandlerManifest:
        content = self.read("HandlerManifest.json", MANIFEST_MAX_BYTES) or b""
        return parse_handler_manifest(content, f"{self.name}-{self.version}")

    def state(self) -> str:
        """NotInstalled, Installed or Enabled; UnsafePath when HandlerState is not a file."""
        raw = self.read("config/HandlerState", STATE_MAX_BYTES)
        value = raw.decode("ascii", "replace").strip() if raw else NOT_INSTALLED
        return value if value in _STATES else NOT_INSTALLED

    def set_state(self, state: str) -> None:
        self._write("config/HandlerState", state.encode(), 0o600)

    def last_seq_no(self) -> Optional[int]:
        raw = self.read("mrseq", SEQ_NO_MAX_BYTES)
        text = raw.decode("ascii", "replace").strip() if raw else ""
        return int(text) if _SEQ_NO.match(text) else None

    def set_last_seq_no(self, seq_no: int) -> None:
        self._write("mrseq", str(seq_no).encode(), 0o600)

    # -- a multi-config handler's named extensions ------------------------------------
    def extension_names(self) -> list[str]:
        """The named extensions with a state file (`config/<name>.HandlerState`)."""
        return [
            entry[: -len(_EXTENSION_STATE_SUFFIX)]
            for entry in self.tree.listdir("config", links=Links.REFUSE)
            if entry.endswith(_EXTENSION_STATE_SUFFIX) and entry != "HandlerState"
        ]

    def extension_state(self, extension: str) -> str:
        """`enabled` or `disabled` (also when it has no state file yet)."""
        raw = self.read(f"config/{extension}{_EXTENSION_STATE_SUFFIX}", STATE_MAX_BYTES)
        value = raw.decode("ascii", "replace").strip().lower() if raw else ""
        return EXTENSION_ENABLED if value == EXTENSION_ENABLED else EXTENSION_DISABLED

    def set_extension_state(self, extension: str, state: str) -> None:
        self._write(f"config/{extension}{_EXTENSION_STATE_SUFFIX}", state.encode(), 0o600)

    def extension_seq_no(self, extension: str) -> Optional[int]:
        """The seqNo this named extension was last enabled with, or None."""
        raw = self.read(f"config/{extension}.mrseq", SEQ_NO_MAX_BYTES)
        text = raw.decode("ascii", "replace").strip() if raw else ""
        return int(text) if _SEQ_NO.match(text) else None

    def set_extension_seq_no(self, extension: str, seq_no: int) -> None:
        self._write(f"config/{extension}.mrseq", str(seq_no).encode(), 0o600)

    def remove_extension_files(self, extension: str) -> None:
        """Its settings, status, state and seqNo files: the extension is gone."""
        tree = self.tree
        pattern = re.compile(rf"^{re.escape(extension)}\.[0-9]{{1,10}}\.(settings|status)\Z")
        for folder in ("config", "status"):
            for entry in tree.listdir(folder, links=Links.REFUSE):
                if pattern.match(entry):
                    tree.remove(f"{folder}/{entry}", links=Links.REFUSE)
        for own in (f"{extension}{_EXTENSION_STATE_SUFFIX}", f"{extension}.mrseq"):
            tree.remove(f"config/{own}", links=Links.REFUSE)

    def prepare(
        self, seq_no: int, settings: Optional[str], extension: Optional[str] = None
    ) -> None:
        """Write HandlerEnvironment.json and the settings for `seq_no` before any command
        (`<extension>.<seqNo>.settings` for a multi-config handler's named extension)."""
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
        self._write("HandlerEnvironment.json", json.dumps(environment).encode(), 0o644)
        with self.tree.directory("status", mode=0o755, links=Links.REFUSE):
            pass
        with self.log_directory("events"):
            pass
        # Protected settings stay encrypted; still, only root reads settings.
        prefix = f"{extension}." if extension else ""
        self._write(f"config/{prefix}{seq_no}.settings", (settings or "").encode(), 0o600)

    @contextlib.contextmanager
    def log_directory(self, below: str = "") -> Iterator[int]:
        """A descriptor of `<log_dir>/<Name>` (or a folder below it), created if missing.

        The handler writes there too: a link it leaves at or below its own log folder
        is refused; above it, the image's own layout is followed inside the root.
        """
        path = f"{self.logs_in_root}/{below}" if below else self.logs_in_root
        with self.root.directory(path, mode=0o755, trusted=self.log_parent) as fd:
            yield fd

    def remove(self) -> None:
        # rmtree never follows a link inside the tree, and refuses one at its top.
        shutil.rmtree(self.path, ignore_errors=True)


def installed_versions(root: TargetRoot, lib_dir: str, name: str) -> list[str]:
    """Versions of `name` with a folder (not a link) in lib_dir, lowest first."""
    pattern = re.compile(rf"^{re.escape(name)}-([0-9]+(?:\.[0-9]+){{0,3}})$", re.IGNORECASE)
    found = []
    for entry in root.listdir(lib_dir):
        match = pattern.match(entry)
        if match is None:
            continue
        status = root.lstat(f"{lib_dir}/{entry}")
        if status is not None and stat.S_ISDIR(status.st_mode):
            found.append(match.group(1))
    return sorted(found, key=version_key)
