"""The host name, and publishing it to Azure's DNS.

Azure's internal DNS learns a VM's name from its DHCP request, so after the
name changes the lease is renewed through whichever network manager is
running (systemd-networkd, NetworkManager or dhclient): best effort, logged.
"""

from __future__ import annotations

import logging
import os
import socket

from azprov.errors import HostError
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

HOSTNAME_FILE = "/etc/hostname"
# A host name is at most 64 bytes (HOST_NAME_MAX); the file may add a comment or two.
HOSTNAME_CAP = 4096


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


def publish_hostname(root: TargetRoot) -> None:
    """Renew the DHCP lease so Azure DNS learns the new name (best effort)."""
    if root.skip_live("renewing the DHCP lease to publish the host name"):
        return
    try:
        interfaces = [name for name in sorted(os.listdir("/sys/class/net")) if name != "lo"]
        if (
            root.systemctl(
                "is-active", "--quiet", "systemd-networkd.service", check=False
            ).returncode
            == 0
        ):
            root.run(["networkctl", "renew", *interfaces], what="networkctl renew", timeout=15)
            log.info("renewed the DHCP lease through systemd-networkd (%s)", ", ".join(interfaces))
        elif (
            root.systemctl(
                "is-active", "--quiet", "NetworkManager.service", check=False
            ).returncode
            == 0
        ):
            for interface in interfaces:
                root.run(
                    ["nmcli", "device", "reapply", interface],
                    what="nmcli reapply",
                    check=False,
                    timeout=15,
                )
            log.info("asked NetworkManager to renew the DHCP lease (%s)", ", ".join(interfaces))
        elif root.has_tool("dhclient"):
            for interface in interfaces:
                root.run(
                    ["dhclient", "-1", interface], what="dhclient renew", check=False, timeout=30
                )
            log.info("renewed the DHCP lease through dhclient (%s)", ", ".join(interfaces))
        else:
            log.info("no running DHCP client found; Azure DNS learns the name at the next renewal")
    except (HostError, OSError) as exc:
        log.warning("could not publish the host name to Azure DNS: %s", exc)
