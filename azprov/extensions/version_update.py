"""A version change of a handler in service: the old version stopped, the new one's update run.

The extension contract's sequence, for a single-config handler and for a
multi-config one alike: disable the old version (each enabled named extension
of it), run the new version's `update`, uninstall the old version and remove
its folder; the new version is then installed (if its updateMode asks) and
enabled by the caller. With `continueOnUpdateFailure` in the new manifest a
failing step is logged and the sequence goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from azprov.extensions.goal import Plugin
from azprov.extensions.handler import (
    ENABLED,
    EXTENSION_DISABLED,
    EXTENSION_ENABLED,
    INSTALLED,
    NOT_INSTALLED,
    HandlerFolder,
)
from azprov.extensions.manifest import HandlerManifest

if TYPE_CHECKING:  # the lifecycle runs these steps and calls in here: types only
    from azprov.extensions.lifecycle import Lifecycle

log = logging.getLogger(__name__)


def update_handler(
    lifecycle: Lifecycle,
    old: HandlerFolder,
    new: HandlerFolder,
    manifest: HandlerManifest,
    plugin: Plugin,
) -> None:
    """A single-config handler's version change, `manifest` being the new version's."""
    seq_no = plugin.seq_no or 0
    log.info("%s: updating from %s to %s", new.name, old.version, new.version)
    tolerate = manifest.continue_on_update_failure
    old_manifest = old.manifest()
    # The old version is stopped with the settings it last ran with (it has
    # those files); one never enabled gets the current ones written first.
    old_seq = old.last_seq_no()
    if old_seq is None:
        old_seq = seq_no
        old.prepare(seq_no, plugin.settings)
    if old.state() == ENABLED:
        lifecycle.run(old, old_manifest, "disable", old_seq, tolerate=tolerate)
        old.set_state(INSTALLED)
    updating = {"VERSION": new.version, "AZURE_GUEST_AGENT_UPDATING_FROM_VERSION": old.version}
    lifecycle.run(new, manifest, "update", seq_no, updating, tolerate=tolerate)
    if old.state() != NOT_INSTALLED:  # an old install that failed has nothing to undo
        lifecycle.run(old, old_manifest, "uninstall", old_seq, tolerate=tolerate)
    old.remove()
    # Without UpdateWithInstall the update command did the installing.
    new.set_state(NOT_INSTALLED if manifest.update_mode == "UpdateWithInstall" else INSTALLED)


def update_multi_config(
    lifecycle: Lifecycle,
    old: HandlerFolder,
    new: HandlerFolder,
    manifest: HandlerManifest,
    seq_no: int,
    name: str,
) -> None:
    """Version change: each enabled named extension of the old version is disabled, the
    new version's update runs, the old one is uninstalled and removed; the new version
    then enables each named extension afresh (its own files are new)."""
    log.info("%s: updating from %s to %s", new.name, old.version, new.version)
    tolerate = manifest.continue_on_update_failure
    old_manifest = old.manifest()
    for extension in old.extension_names():
        last = old.extension_seq_no(extension)
        if old.extension_state(extension) == EXTENSION_ENABLED and last is not None:
            lifecycle.run(
                old, old_manifest, "disable", last, tolerate=tolerate, extension=extension
            )
            old.set_extension_state(extension, EXTENSION_DISABLED)
    if old.state() == ENABLED:
        old.set_state(INSTALLED)
    updating = {"VERSION": new.version, "AZURE_GUEST_AGENT_UPDATING_FROM_VERSION": old.version}
    lifecycle.run(new, manifest, "update", seq_no, updating, tolerate=tolerate, extension=name)
    if old.state() != NOT_INSTALLED:
        lifecycle.run(old, old_manifest, "uninstall", seq_no, tolerate=tolerate, extension=name)
    old.remove()
    new.set_state(NOT_INSTALLED if manifest.update_mode == "UpdateWithInstall" else INSTALLED)
