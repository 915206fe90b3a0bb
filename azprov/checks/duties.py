"""Azure chores an agent usually does: the resource disk, disk links and timeouts, time sync."""

from __future__ import annotations

import re
from typing import Iterator

from azprov.checks import systemd
from azprov.checks.model import Note, check
from azprov.checks.netconfig import vendor_first
from azprov.checks.network import UDEV_DIRS
from azprov.checks.tree import Tree


def _rules_text(tree: Tree) -> str:
    return "\n".join(tree.read_text(p) or "" for p in vendor_first(tree, UDEV_DIRS, "*.rules"))


@check(
    "waagent-duties",
    "warn",
    consequence="without waagent or cloud-init the resource disk and /dev/disk/azure links are not set up",
    source="LISA verify_resource_disk_mounted, verify_disks_device_timeout_setting; waagent.conf",
)
def waagent_duties(tree: Tree) -> Iterator[Note]:
    if tree.exists("usr/sbin/waagent") or systemd.unit_file(tree, "cloud-init.service"):
        return
    if not systemd.unit_file(tree, "azure-ephemeral-disk-setup.service"):
        yield Note(
            "usr/lib/systemd/system",
            "has nothing that formats and mounts the resource disk",
            "install azure-vm-utils (azure-ephemeral-disk-setup.service)",
        )
    rules = _rules_text(tree)
    if "disk/azure" not in rules:
        yield Note(
            "usr/lib/udev/rules.d",
            "has no rule making /dev/disk/azure links",
            "install azure-vm-utils (80-azure-disk.rules)",
        )
    if not re.search(r"ATTR\{device/timeout\}=\"?300", rules):
        yield Note(
            "etc/udev/rules.d",
            "does not raise the SCSI disk timeout to 300 s",
            'add a udev rule setting ATTR{device/timeout}="300"',
        )


_TIME_UNITS = (
    "chrony.service",
    "chronyd.service",
    "systemd-timesyncd.service",
    "ntp.service",
    "ntpsec.service",
)
_CHRONY = (
    "etc/chrony.conf",
    "etc/chrony/chrony.conf",
    "etc/chrony.d/*.conf",
    "etc/chrony/conf.d/*.conf",
    "etc/chrony/sources.d/*.sources",
)


@check(
    "time-sync-ptp",
    "warn",
    consequence="the clock drifts across host maintenance pauses",
    source="LISA verify_timesync_ptp; MS time-sync doc",
)
def time_sync_ptp(tree: Tree) -> Iterator[Note]:
    running = systemd.any_enabled(tree, *_TIME_UNITS)
    if not running:
        yield Note("etc/systemd/system", "enables no time daemon", "install and enable chrony")
        return
    if not any(u.startswith("chrony") for u in running):
        yield Note(
            systemd.enable_links(tree, running[0])[0],
            f"enables {running[0]}, which cannot use the Hyper-V PTP clock",
            "use chrony with 'refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0'",
        )
        return
    files = [p for pattern in _CHRONY for p in tree.glob(pattern)]
    lines = [(p, line) for p in files for line in tree.lines(p) if line.startswith("refclock")]
    for path, line in lines:
        if "/dev/ptp0" in line:
            yield Note(
                path, f"has '{line.strip()}'", "use /dev/ptp_hyperv (ptp0 may be the NIC's clock)"
            )
    if not any("ptp_hyperv" in line for _, line in lines):
        yield Note(
            files[0] if files else "etc/chrony",
            "has no refclock on /dev/ptp_hyperv",
            "add 'refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0'",
        )
    elif "ptp_hyperv" not in _rules_text(tree):
        yield Note(
            "etc/udev/rules.d",
            "has no rule making /dev/ptp_hyperv",
            "add 99-ptp_hyperv.rules (newer systemd ships it)",
        )
