"""azprov's own first-boot unit: disabled once the VM is provisioned."""

from __future__ import annotations

import logging
import stat

from azprov.errors import HostError
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

PROVISIONING_UNIT = "azure-provisioning.service"
UNIT_DIR = "/etc/systemd/system"


def disable_provisioning_unit(root: TargetRoot) -> None:
    """Remove the unit's enablement links, as `systemctl disable --no-reload` would.
    Never raises: a failure is logged (see below).

    That is all `disable` does for a unit whose [Install] section has only
    WantedBy=: unlink `<target>.wants/<unit>` under /etc/systemd/system. Doing it
    directly saves a systemctl process (hundreds of milliseconds on a small VM)
    on the path to sshd, which waits for this unit; no daemon reload is needed,
    since only the next boot reads the links.
    """
    # Every *.wants/ and *.requires/ folder is listed, and the link looked at itself
    # (lstat): in an offline image its absolute target dangles.
    links = [
        path
        for pattern in ("*.wants", "*.requires")
        for path in root.glob(f"{UNIT_DIR}/{pattern}/{PROVISIONING_UNIT}")
        if _is_link(root, path)
    ]
    for link in links:
        shown = root.shown(link)
        try:
            root.remove(link)
        except HostError as exc:
            # Never fatal: the marker is written, so a unit left enabled runs again at
            # the next boot and exits at once, having nothing to do.
            log.warning("could not disable %s (%s): %s", PROVISIONING_UNIT, shown, exc)
            continue
        log.info("disabled %s (removed %s)", PROVISIONING_UNIT, shown)
    if not links:
        log.info("%s was not enabled; nothing to disable", PROVISIONING_UNIT)


def _is_link(root: TargetRoot, path: str) -> bool:
    try:
        found = root.lstat(path)
    except HostError:
        return False
    return found is not None and stat.S_ISLNK(found.st_mode)
