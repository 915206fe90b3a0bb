"""azprov's own first-boot unit: disabled once the VM is provisioned."""

from __future__ import annotations

import logging

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
    unit_dir = root / UNIT_DIR
    # Not glob("*.wants/<unit>"): in an offline image the link's absolute target
    # dangles, and glob skips a literal name that does not "exist".
    links = [
        folder / PROVISIONING_UNIT
        for pattern in ("*.wants", "*.requires")
        for folder in sorted(unit_dir.glob(pattern))
        if (folder / PROVISIONING_UNIT).is_symlink()
    ]
    for link in links:
        shown = root.outside_view(link)
        try:
            (root / shown).unlink()  # `root /` refuses a .wants that leads out of the root
        except (OSError, HostError) as exc:
            # Never fatal: the marker is written, so a unit left enabled runs again at
            # the next boot and exits at once, having nothing to do.
            log.warning("could not disable %s (%s): %s", PROVISIONING_UNIT, shown, exc)
            continue
        log.info("disabled %s (removed %s)", PROVISIONING_UNIT, shown)
    if not links:
        log.info("%s was not enabled; nothing to disable", PROVISIONING_UNIT)
