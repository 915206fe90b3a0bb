"""The host name, and publishing it to Azure's DNS.

Azure's internal DNS learns a VM's name from its DHCP request, so after the
name changes the lease is renewed through whichever network manager is
running (systemd-networkd, NetworkManager or dhclient, see nic.py): best effort,
logged.
Under systemd that renewal runs in a unit of its own, after azprov's.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Sequence

from azprov.errors import HostError
from azprov.host.root import TargetRoot
from azprov.host.units import PROVISIONING_UNIT

log = logging.getLogger(__name__)

HOSTNAME_FILE = "/etc/hostname"
# A host name is at most 64 bytes (HOST_NAME_MAX); the file may add a comment or two.
HOSTNAME_CAP = 4096
# The transient unit the renewal runs in when azprov runs under systemd.
PUBLISHING_UNIT = "azprov-publish-hostname.service"
# OpenSSH's unit on Debian/Ubuntu and on Fedora/RHEL/SUSE (a name not on the system
# is ignored by an ordering).
SSHD_UNITS = ("ssh.service", "sshd.service")


def current_hostname(root: TargetRoot) -> str:
    """The static host name in the root's /etc/hostname ("" when it has none)."""
    try:
        text = root.read_text(HOSTNAME_FILE, HOSTNAME_CAP)
    except HostError as exc:
        # Only compared with the new name for the log: the file is replaced anyway.
        log.info("not reading the old host name: %s", exc)
        return ""
    return text.strip() if text is not None else ""


def set_hostname(root: TargetRoot, name: str) -> bool:
    """Set the static host name; returns True when it changed."""
    changed = current_hostname(root) != name
    if root.live and selinux_enabled() and root.has_tool("hostnamectl"):
        # hostnamed writes /etc/hostname with the label SELinux policy expects.
        root.run(["hostnamectl", "set-hostname", name], what="set the host name")
    else:
        # What `hostnamectl set-hostname` does, without starting hostnamed over D-Bus
        # (a second on a small VM): the static name in /etc/hostname, then the kernel's.
        root.write(HOSTNAME_FILE, f"{name}\n".encode(), mode=0o644)
        if root.live:
            try:
                socket.sethostname(name)
            except OSError as exc:
                raise HostError(f"cannot set the host name to {name}: {exc.strerror}") from None
    log.info("host name is %s%s", name, "" if changed else " (unchanged)")
    return changed


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def publish_hostname(root: TargetRoot) -> str:
    """Renew the DHCP lease so Azure DNS learns the new name (best effort, logged):
    returns what was done, in a line, for the run record."""
    # Imported here: the renewal runs after Ready (mostly in a unit of its own), and
    # the first boot's path to Ready should not pay for loading it.
    from azprov.host import nic

    if root.skip_live("renewing the DHCP lease to publish the host name"):
        return nic.SKIPPED
    try:
        done = nic.renew_leases(root, nic.interfaces(root))
    except (HostError, OSError) as exc:
        log.warning("could not publish the host name to Azure DNS: %s", exc)
        return f"failed: {exc}"
    log.info("%s", done)
    return done


def publish_hostname_in_own_unit(root: TargetRoot, command: Sequence[str]) -> bool:
    """Queue the renewal (`command`) as a systemd unit of its own that starts once
    azprov's unit, and sshd's, have started; True when systemd took it.

    Under systemd azprov is a Type=oneshot unit: sshd waits for its exit, and whatever
    it leaves running is killed at that exit. A renewal in azprov's own process would
    hold sshd back (it takes about a second on a small VM); a child would be killed.
    Only the job is queued here (`--no-block`: it waits for this unit to end). False,
    for the caller to renew inline, when this is not the running system as a systemd
    service, or systemd-run is missing or refuses.
    """
    if not (root.live and os.environ.get("INVOCATION_ID") and root.has_tool("systemd-run")):
        return False
    argv = [
        "systemd-run",
        "--no-block",
        "--collect",  # unloaded once done, even when it failed (its journal stays)
        "--quiet",
        f"--unit={PUBLISHING_UNIT}",
        "--description=azprov: publish the host name to Azure DNS (DHCP lease renewal)",
        "--property=Type=oneshot",
        # Not before this unit has ended, nor beside sshd's start: the name can wait.
        *(f"--property=After={unit}" for unit in (PROVISIONING_UNIT, *SSHD_UNITS)),
        "--property=SyslogIdentifier=azprov",
        "--",
        *command,
    ]
    try:
        root.run(argv, what="systemd-run", timeout=30)
    except (HostError, OSError) as exc:  # best effort: never a reason to fail the run
        log.warning("could not hand the DNS renewal to systemd, renewing after Ready: %s", exc)
        return False
    log.info("queued %s: it publishes the host name once this unit has ended", PUBLISHING_UNIT)
    return True
