"""Bringing one handler to the state the goal asks for: install, enable, disable, update, uninstall.

The sequences follow the extension contract: new handler: install → enable;
same version, new seqNo: enable; `disabled`: disable; `uninstall`: disable →
uninstall → remove; version change: disable old → update new → uninstall old
→ install new (if its updateMode asks) → enable new (the update part in
`version_update`). A failure ends that handler's sequence and becomes its
status (an `Outcome`); it never stops the other handlers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Mapping, Optional

from azprov.config import Config
from azprov.errors import AzprovError, FabricError, TransientFabricError
from azprov.extensions.artifacts import Artifacts
from azprov.extensions.commands import CommandFailed, CommandResult, run_command
from azprov.extensions.download import install_package, resolve_version
from azprov.extensions.goal import Plugin
from azprov.extensions.handler import (
    ENABLED,
    INSTALLED,
    NOT_INSTALLED,
    HandlerFolder,
    installed_versions,
)
from azprov.extensions.manifest import HandlerManifest, PackageVersion, version_key
from azprov.extensions.outcome import Outcome, first_line
from azprov.extensions.version_update import update_handler
from azprov.host.root import COMMAND_PATH, TargetRoot

log = logging.getLogger(__name__)

_BASE_ENV = {
    "PATH": COMMAND_PATH,
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


class Lifecycle:
    """Applies plugins one at a time (package managers inside extensions collide)."""

    def __init__(
        self,
        root: TargetRoot,
        config: Config,
        artifacts: Artifacts,
        wire_address: str,
        scrub: Callable[[str], str],
    ) -> None:
        self.root = root
        self.config = config
        self.artifacts = artifacts
        self.wire_address = wire_address
        self.scrub = scrub
        self.step = ""

    def folder(self, name: str, version: str) -> HandlerFolder:
        ext = self.config.extensions
        return HandlerFolder(self.root, ext.lib_dir, ext.log_dir, name, version)

    def current(self, name: str) -> Optional[HandlerFolder]:
        """The version in service: the highest one installed, else the highest on disk."""
        folders = [
            self.folder(name, v)
            for v in installed_versions(self.root, self.config.extensions.lib_dir, name)
        ]
        installed = [f for f in folders if f.state() != NOT_INSTALLED]
        in_service = installed or folders
        return in_service[-1] if in_service else None

    def remove_leftovers(self, name: str, keep: str) -> None:
        """Drop other versions that never installed (a failed upgrade): nothing to undo."""
        for version in installed_versions(self.root, self.config.extensions.lib_dir, name):
            if version == keep:
                continue
            folder = self.folder(name, version)
            try:
                state = folder.state()
            except AzprovError as exc:  # not ours to judge: left as it is
                log.warning("%s: keeping %s: %s", name, folder.path, exc)
                continue
            if state == NOT_INSTALLED:
                log.info("%s: removing %s, which never installed", name, folder.path)
                folder.remove()

    def apply(self, plugin: Plugin, standing: Optional[Mapping[str, Outcome]] = None) -> Outcome:
        """Bring `plugin` to the state asked for. `standing`: a multi-config handler's named
        extensions whose outcome stands (by lower-cased name): not run again."""
        if plugin.multi_config or self._multi_config_without_settings(plugin):
            from azprov.extensions.multi_config import apply_multi_config

            multi = dataclasses.replace(plugin, multi_config=True)
            return apply_multi_config(self, multi, standing or {})
        seq_no = plugin.seq_no if plugin.seq_no is not None else 0
        self.step = "Download"
        version: Optional[str] = None
        try:
            if plugin.state == "uninstall":
                return self._uninstall(plugin, seq_no)
            if plugin.state == "disabled":
                return self._disable(plugin, seq_no)
            version, heartbeat = self._enable(plugin, seq_no)
            return Outcome(plugin.name, version, seq_no, "Enable", heartbeat=heartbeat)
        except CommandFailed as exc:
            failure, retry = f"{exc.result.describe()}\n{exc.result.output}", False
        except (AzprovError, OSError) as exc:
            failure, retry = self.scrub(str(exc)), isinstance(exc, TransientFabricError)
        log.warning("%s: %s failed: %s", plugin.name, self.step, first_line(failure))
        shown = self.version_shown(plugin, version)
        return Outcome(plugin.name, shown, seq_no, self.step, failure, retry=retry)

    def _multi_config_without_settings(self, plugin: Plugin) -> bool:
        """A plugin sent with no settings at all, for a multi-config handler in service:
        every named extension was deleted. It is not a single-config enable (with an
        empty 0.settings): its named extensions are to be removed, the handler kept."""
        if plugin.settings is not None or plugin.seq_no is not None or plugin.refusal:
            return False
        try:
            current = self.current(plugin.name)
            return current is not None and current.manifest().supports_multiple_extensions
        except (AzprovError, OSError) as exc:
            log.debug("%s: not known to be multi-config: %s", plugin.name, exc)
            return False

    def version_shown(self, plugin: Plugin, chosen: Optional[str] = None) -> str:
        """The version to report for `plugin`: the one in service, else the one chosen,
        else the one asked for (nothing on disk yet, or its folder cannot be read)."""
        try:
            current = self.current(plugin.name)
        except (AzprovError, OSError) as exc:
            log.debug("%s: no version in service: %s", plugin.name, exc)
            current = None
        return current.version if current else chosen or plugin.version

    # -- the three goal states ----------------------------------------------
    def _uninstall(self, plugin: Plugin, seq_no: int) -> Outcome:
        for version in reversed(
            installed_versions(self.root, self.config.extensions.lib_dir, plugin.name)
        ):
            folder = self.folder(plugin.name, version)
            manifest = folder.manifest()
            folder.prepare(seq_no, plugin.settings)
            if folder.state() == ENABLED:
                self.run(folder, manifest, "disable", seq_no)
                folder.set_state(INSTALLED)
            if folder.state() == INSTALLED:
                self.run(folder, manifest, "uninstall", seq_no)
                folder.set_state(NOT_INSTALLED)
            folder.remove()
            log.info("%s: uninstalled and removed %s", plugin.name, folder.path)
        return Outcome(plugin.name, None, seq_no, "Uninstall", present=False)

    def _disable(self, plugin: Plugin, seq_no: int) -> Outcome:
        folder = self.current(plugin.name)
        if folder is not None and folder.state() == ENABLED:
            folder.prepare(seq_no, plugin.settings)
            self.run(folder, folder.manifest(), "disable", seq_no)
            folder.set_state(INSTALLED)
        return Outcome(plugin.name, folder.version if folder else None, seq_no, "Disable")

    def _enable(self, plugin: Plugin, seq_no: int) -> tuple[str, bool]:
        """Bring the handler to enabled; returns its version and whether it reports a heartbeat."""
        current = self.current(plugin.name)
        version, package = self.choose(plugin, current)
        target = self.folder(plugin.name, version)
        if not target.exists():
            self.download(plugin, package, target)
        manifest = target.manifest()
        target.prepare(seq_no, plugin.settings)
        if current is not None and current.version != version:
            update_handler(self, current, target, manifest, plugin)
        if target.state() == NOT_INSTALLED:
            self.run(target, manifest, "install", seq_no)
            target.set_state(INSTALLED)
        if target.state() != ENABLED or target.last_seq_no() != seq_no:
            self.run(target, manifest, "enable", seq_no)
            target.set_state(ENABLED)
            target.set_last_seq_no(seq_no)
            self.remove_leftovers(plugin.name, version)
        else:
            log.info("%s %s: seqNo %d already handled", plugin.name, version, seq_no)
        return version, manifest.report_heartbeat

    # -- pieces ---------------------------------------------------------------
    def choose(
        self, plugin: Plugin, current: Optional[HandlerFolder]
    ) -> tuple[str, Optional[PackageVersion]]:
        """The version to run; the installed one still serves when no manifest is reachable."""
        try:
            package = resolve_version(self.artifacts, plugin)
        except FabricError as exc:
            prefix = version_key(plugin.version)
            if current is None or version_key(current.version)[: len(prefix)] != prefix:
                raise
            log.warning("%s: %s; keeping the installed %s", plugin.name, exc, current.version)
            return current.version, None
        return package.version, package

    def download(
        self, plugin: Plugin, package: Optional[PackageVersion], target: HandlerFolder
    ) -> None:
        assert package is not None  # a version without a package is always installed
        with self.root.directory(target.lib_dir, mode=0o700):
            pass
        install_package(
            self.artifacts,
            plugin.name,
            package,
            target.path,
            self.config.extensions.max_package_bytes,
            verify_from_artifacts_blob=plugin.fast_track,
        )
        log.info("%s: unpacked %s into %s", plugin.name, package.version, target.path)

    def run(
        self,
        folder: HandlerFolder,
        manifest: HandlerManifest,
        command: str,
        seq_no: int,
        extra_env: Mapping[str, str] | None = None,
        *,
        tolerate: bool = False,
        extension: Optional[str] = None,
    ) -> CommandResult:
        """Run the manifest's `command`; CommandFailed unless it succeeds (or `tolerate`).
        `extension`: the multi-config handler's named extension it runs for."""
        self.step = command.capitalize()
        named = {"ConfigExtensionName": extension} if extension else {}
        env = {
            **_BASE_ENV,
            **named,
            "ConfigSequenceNumber": str(seq_no),
            "AZURE_GUEST_AGENT_EXTENSION_PATH": str(folder.path),
            "AZURE_GUEST_AGENT_EXTENSION_VERSION": folder.version,
            "AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS": self.wire_address,
            **(extra_env or {}),
        }
        with folder.log_directory() as log_dir:
            result = run_command(
                command,
                manifest.commands[command],
                handler_dir=folder.path,
                log_dir=log_dir,
                env=env,
                timeout=self.config.extension_timeout(folder.name, command),
                scrub=self.scrub,
            )
        if not result.ok:
            if not tolerate:
                raise CommandFailed(result)
            log.warning(
                "%s: continuing (continueOnUpdateFailure): %s", folder.name, result.describe()
            )
        return result
