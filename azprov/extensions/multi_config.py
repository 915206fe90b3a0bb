"""A multi-config handler's named extensions (reference §8; RunCommand v2 is the one in use).

One handler folder, one install; each named extension is enabled, disabled and
removed on its own, with its own files (`config/<name>.<seqNo>.settings`,
`config/<name>.HandlerState`, the handler's `status/<name>.<seqNo>.status`) and
`ConfigExtensionName=<name>` beside `ConfigSequenceNumber` in every command's
environment. A named extension the goal no longer lists, or lists as
`disabled`, is removed as the platform agent removes it: its disable runs (a
failure is logged, not reported: nobody asks for its status any more) and its
files go; the others keep running. The handler itself stays installed until
the goal asks for its uninstall. What fails for the handler as a whole (its
download, its install) fails each of its named extensions; what one named
extension's own command does fails that one alone.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Optional

from azprov.errors import AzprovError, InvalidInput, TransientFabricError
from azprov.extensions.commands import CommandFailed
from azprov.extensions.goal import Plugin
from azprov.extensions.handler import (
    ENABLED,
    EXTENSION_DISABLED,
    EXTENSION_ENABLED,
    INSTALLED,
    NOT_INSTALLED,
    HandlerFolder,
    installed_versions,
)
from azprov.extensions.lifecycle import Lifecycle
from azprov.extensions.manifest import HandlerManifest
from azprov.extensions.named_extensions import NamedExtension
from azprov.extensions.outcome import Outcome, first_line
from azprov.extensions.version_update import update_multi_config

log = logging.getLogger(__name__)


class _NothingToRun(Exception):
    """No named extension is wanted and the handler is not on disk: nothing to fetch."""


def apply_multi_config(
    lifecycle: Lifecycle, plugin: Plugin, standing: Mapping[str, Outcome]
) -> Outcome:
    """Bring the handler and each named extension to the state asked for."""
    wanted = [e for e in plugin.extensions if e.state == EXTENSION_ENABLED]
    try:
        if plugin.state == "uninstall":
            return _uninstall(lifecycle, plugin)
        if plugin.state == "disabled":
            return _disable_all(lifecycle, plugin)
        folder, manifest = _install(lifecycle, plugin, wanted)
        on_disk = folder.extension_names()
    except _NothingToRun:
        return Outcome(plugin.name, None, 0, "Enable", multi_config=True)
    except CommandFailed as exc:
        failure, retry = f"{exc.result.describe()}\n{exc.result.output}", False
    except (AzprovError, OSError) as exc:
        failure, retry = lifecycle.scrub(str(exc)), isinstance(exc, TransientFabricError)
    else:
        named = _apply_named(lifecycle, plugin, folder, manifest, on_disk, standing)
        failed = [o for o in named if o.failed]
        return Outcome(
            plugin.name,
            folder.version,
            0,
            "Enable",
            "; ".join(f"{o.extension}: {o.failure_line}" for o in failed) or None,
            heartbeat=manifest.report_heartbeat,
            retry=any(o.retry for o in failed),
            named=tuple(named),
            multi_config=True,
        )
    step = lifecycle.step
    log.warning("%s: %s failed: %s", plugin.name, step, first_line(failure))
    shown = lifecycle.version_shown(plugin)
    return spread(plugin, Outcome(plugin.name, shown, 0, step, failure, retry=retry))


def _install(
    lifecycle: Lifecycle, plugin: Plugin, wanted: list[NamedExtension]
) -> tuple[HandlerFolder, HandlerManifest]:
    """The handler downloaded, checked to be multi-config, updated if the version changed,
    and installed (with the first named extension's name and settings, as the platform
    agent gives the extension that brought the install about)."""
    lifecycle.step = "Download"
    current = lifecycle.current(plugin.name)
    if not wanted:  # nothing to install or update it for: only removals to make
        if current is None:
            raise _NothingToRun()
        return current, current.manifest()
    version, package = lifecycle.choose(plugin, current)
    target = lifecycle.folder(plugin.name, version)
    if not target.exists():
        lifecycle.download(plugin, package, target)
    manifest = target.manifest()
    if not manifest.supports_multiple_extensions:
        raise InvalidInput(
            f"{plugin.name}-{version} HandlerManifest.json supportsMultipleExtensions",
            "false",
            "the goal state names extensions of it (ExtensionRuntimeSettings)",
        )
    first = wanted[0]
    seq_no, name = first.seq_no, first.name
    target.prepare(seq_no, first.settings, name)
    if current is not None and current.version != version:
        update_multi_config(lifecycle, current, target, manifest, seq_no, name)
    if target.state() == NOT_INSTALLED:
        lifecycle.run(target, manifest, "install", seq_no, extension=name)
        target.set_state(INSTALLED)
    return target, manifest


def _apply_named(
    lifecycle: Lifecycle,
    plugin: Plugin,
    folder: HandlerFolder,
    manifest: HandlerManifest,
    on_disk: list[str],
    standing: Mapping[str, Outcome],
) -> list[Outcome]:
    """Remove the named extensions no longer wanted (`on_disk`: those with a state file),
    then enable the wanted ones in goal order; one outcome per wanted extension."""
    # Azure's names are case-insensitive: 'First' then 'first' is one extension, whose
    # files on disk keep the spelling it was first enabled under.
    wanted = {e.name.lower() for e in plugin.extensions if e.state == EXTENSION_ENABLED}
    spelled = {}
    for name in on_disk:
        if name.lower() not in wanted:
            _remove_named(lifecycle, folder, manifest, name)
        else:
            spelled[name.lower()] = name
    outcomes = []
    for extension in plugin.extensions:
        if extension.state != EXTENSION_ENABLED:
            continue
        kept = standing.get(extension.name.lower())
        if kept is not None:
            log.debug("%s %s: already handled", plugin.name, extension.name)
            outcomes.append(kept)
            continue
        on_disk_as = spelled.get(extension.name.lower(), extension.name)
        outcomes.append(_enable_named(lifecycle, folder, manifest, extension, on_disk_as))
    try:
        if not _any_enabled(folder) and folder.state() == ENABLED:
            folder.set_state(INSTALLED)
    except AzprovError as exc:  # the handler's state only; each outcome is already known
        log.warning("%s: HandlerState not updated: %s", folder.name, exc)
    lifecycle.remove_leftovers(plugin.name, folder.version)
    return outcomes


def _any_enabled(folder: HandlerFolder) -> bool:
    return any(folder.extension_state(n) == EXTENSION_ENABLED for n in folder.extension_names())


def _enable_named(
    lifecycle: Lifecycle,
    folder: HandlerFolder,
    manifest: HandlerManifest,
    extension: NamedExtension,
    on_disk_as: str,
) -> Outcome:
    """Enable one named extension for its seqNo (once); its failure is its own.
    `on_disk_as`: the spelling its state files have (the goal may change its case)."""
    name, seq_no = extension.name, extension.seq_no
    outcome = Outcome(
        folder.name, folder.version, seq_no, "Enable", heartbeat=manifest.report_heartbeat,
        extension=name,
    )  # fmt: skip
    try:
        if (
            folder.extension_state(on_disk_as) == EXTENSION_ENABLED
            and folder.extension_seq_no(on_disk_as) == seq_no
        ):
            log.info("%s %s: seqNo %d already handled", folder.name, name, seq_no)
            return outcome
        folder.prepare(seq_no, extension.settings, name)
        lifecycle.run(folder, manifest, "enable", seq_no, extension=name)
        folder.set_extension_state(name, EXTENSION_ENABLED)
        folder.set_extension_seq_no(name, seq_no)
        if on_disk_as != name:  # now kept under the goal's spelling
            folder.remove_extension_files(on_disk_as)
        folder.set_state(ENABLED)
        return outcome
    except CommandFailed as exc:
        failure, retry = f"{exc.result.describe()}\n{exc.result.output}", False
    except (AzprovError, OSError) as exc:
        failure, retry = lifecycle.scrub(str(exc)), isinstance(exc, TransientFabricError)
    log.warning("%s %s: enable failed: %s", folder.name, name, first_line(failure))
    return dataclasses.replace(outcome, failure=failure, retry=retry)


def _remove_named(
    lifecycle: Lifecycle, folder: HandlerFolder, manifest: HandlerManifest, extension: str
) -> None:
    """Disable a named extension the goal no longer wants, and remove its files. Its
    disable failing does not keep it: the platform agent ignores that failure too. State
    files that cannot be read (a link the handler left, say) are removed all the same;
    what cannot be removed is logged and tried again when the goal next changes."""
    try:
        last = folder.extension_seq_no(extension)
        if folder.extension_state(extension) == EXTENSION_ENABLED and last is not None:
            lifecycle.run(folder, manifest, "disable", last, extension=extension)
    except CommandFailed as exc:
        log.warning(
            "%s %s: removed although its disable failed: %s",
            folder.name,
            extension,
            exc.result.describe(),
        )
    except AzprovError as exc:
        log.warning("%s %s: removed without its disable: %s", folder.name, extension, exc)
    try:
        folder.remove_extension_files(extension)
    except AzprovError as exc:
        log.warning("%s %s: its files were not all removed: %s", folder.name, extension, exc)
        return
    log.info("%s: named extension %s removed", folder.name, extension)


def _disable_all(lifecycle: Lifecycle, plugin: Plugin) -> Outcome:
    """`state=disabled` for the whole handler: each enabled named extension is disabled
    (its files kept: it may be enabled again)."""
    folder = lifecycle.current(plugin.name)
    if folder is not None and folder.state() == ENABLED:
        manifest = folder.manifest()
        _disable_enabled(lifecycle, folder, manifest)
        folder.set_state(INSTALLED)
    version = folder.version if folder else None
    return Outcome(plugin.name, version, 0, "Disable", multi_config=True)


def _disable_enabled(
    lifecycle: Lifecycle, folder: HandlerFolder, manifest: HandlerManifest
) -> Optional[tuple[int, str]]:
    """Disable each enabled named extension; the (seqNo, name) of the last one seen."""
    last_seen: Optional[tuple[int, str]] = None
    for extension in folder.extension_names():
        last = folder.extension_seq_no(extension)
        if last is None:
            continue
        last_seen = (last, extension)
        if folder.extension_state(extension) == EXTENSION_ENABLED:
            lifecycle.run(folder, manifest, "disable", last, extension=extension)
            folder.set_extension_state(extension, EXTENSION_DISABLED)
    return last_seen


def _uninstall(lifecycle: Lifecycle, plugin: Plugin) -> Outcome:
    """Every version: disable each enabled named extension, uninstall, remove the folder."""
    lib_dir = lifecycle.config.extensions.lib_dir
    for version in reversed(installed_versions(lifecycle.root, lib_dir, plugin.name)):
        folder = lifecycle.folder(plugin.name, version)
        manifest = folder.manifest()
        last_seen = _disable_enabled(lifecycle, folder, manifest)
        seq_no, name = last_seen if last_seen else (0, None)
        if last_seen is None:  # no named extension left: as the platform agent, seqNo 0
            folder.prepare(0, None)  # with an empty 0.settings
        if folder.state() == ENABLED:
            folder.set_state(INSTALLED)
        if folder.state() == INSTALLED:
            lifecycle.run(folder, manifest, "uninstall", seq_no, extension=name)
            folder.set_state(NOT_INSTALLED)
        folder.remove()
        log.info("%s: uninstalled and removed %s", plugin.name, folder.path)
    return Outcome(plugin.name, None, 0, "Uninstall", present=False, multi_config=True)


def spread(plugin: Plugin, outcome: Outcome) -> Outcome:
    """`outcome` (a failure of the handler as a whole) given to each named extension the
    goal asks to enable, when `plugin` is a multi-config handler: each is reported."""
    if not plugin.multi_config:
        return outcome
    named = tuple(
        dataclasses.replace(outcome, seq_no=e.seq_no, extension=e.name)
        for e in plugin.extensions
        if e.state == EXTENSION_ENABLED
    )
    return dataclasses.replace(outcome, named=named, multi_config=True)
