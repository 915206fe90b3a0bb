"""azprov's own first-boot unit: disabled once the VM is provisioned."""

from __future__ import annotations

import logging

from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

PROVISIONING_UNIT = "azure-provisioning.service"


def disable_provisioning_unit(root: TargetRoot) -> None:
    """`systemctl disable` (or `--root`); a missing unit or systemctl is only logged."""
    if not root.has_tool("systemctl"):
        log.info("no systemctl: leaving %s as it is", PROVISIONING_UNIT)
        return
    # --no-reload: only the symlink matters (for the next boot); a daemon reload here
    # costs seconds on a small VM and would hold up sshd, which waits for this unit.
    result = root.systemctl("disable", "--no-reload", PROVISIONING_UNIT, check=False)
    if result.returncode == 0:
        log.info("disabled %s", PROVISIONING_UNIT)
    else:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        log.info(
            "could not disable %s: %s", PROVISIONING_UNIT, detail[-1] if detail else "no message"
        )
