"""Checks on what starts at boot: azprov itself, agents that would race it, sshd, helpers."""

from __future__ import annotations

import re
from typing import Iterator

from azprov.checks import systemd
from azprov.checks.bootcfg import boot_cmdline
from azprov.checks.model import Note, check, unknown, unreadable
from azprov.checks.tree import Tree
from azprov.host.units import PROVISIONING_UNIT

ENABLE_FIX = f"run 'systemctl enable {PROVISIONING_UNIT}' (or 'azprov deprovision')"


@check(
    "prov-unit-enabled",
    "error",
    consequence="no agent runs at first boot, so no Ready: the platform gives up after 40 min",
    source="azprov unit; systemd.preset(5); machine-id(5)",
)
def prov_unit_enabled(tree: Tree) -> Iterator[Note]:
    unit = PROVISIONING_UNIT
    if systemd.unit_file(tree, unit) is None:
        yield Note("usr/lib/systemd/system", f"has no {unit}", "install the azprov package")
        return
    mask = systemd.masked(tree, unit)
    if mask:
        yield Note(mask, "links to /dev/null (masked)", f"systemctl unmask {unit}")
        return
    if not systemd.enable_links(tree, unit):
        yield Note(
            f"etc/systemd/system/multi-user.target.wants/{unit}",
            "is missing (disabled)",
            ENABLE_FIX,
        )
        return
    if systemd.first_boot(tree):
        line = systemd.preset_for(tree, unit)
        if isinstance(line, systemd.PresetsUnread):
            yield unknown(line.path, line.why, f"check by hand that no preset disables {unit}")
        elif line and line.action == "disable" and tree.unreadable("etc/machine-id"):
            yield from unreadable(tree, "etc/machine-id")  # a first boot or not: unknown
        elif line and line.action == "disable":
            yield Note(
                f"{line.path}:{line.number}",
                f"says '{line.text}' and etc/machine-id makes the next boot a first boot",
                f"add 'enable {unit}' to etc/systemd/system-preset/10-azprov.preset,"
                " or leave etc/machine-id empty instead of absent",
                severity="warn",
                consequence="a systemd applying full presets removes the enable link at first boot",
            )


# Units of other first-boot agents, and when they really provision.
_WAAGENT_UNITS = ("walinuxagent.service", "waagent.service")
_CLOUD_INIT_UNITS = (
    "cloud-init-local.service",
    "cloud-init.service",
    "cloud-init-main.service",
    "cloud-init-network.service",
)


def _cloud_init_allows_azure(tree: Tree) -> bool:
    """`datasource_list` (the last file that sets it wins) names Azure, or is not set."""
    allowed = True
    for path in ["etc/cloud/cloud.cfg", *tree.glob("etc/cloud/cloud.cfg.d/*.cfg")]:
        text = tree.read_text(path) or ""
        for match in re.finditer(r"(?m)^datasource_list\s*:\s*(.*(?:\n\s+-.*)*)", text):
            allowed = "azure" in match.group(1).lower()
    return allowed


@check(
    "prov-agent-conflict",
    "error",
    consequence="two agents race on one goal state (waagent may report Ready on its own)",
    source="WALinuxAgent pa/provision factory.py, default.py",
)
def prov_agent_conflict(tree: Tree) -> Iterator[Note]:
    for unit in systemd.any_enabled(tree, *_WAAGENT_UNITS):
        if tree.exists("usr/sbin/waagent"):
            link = systemd.enable_links(tree, unit)[0]
            yield Note(link, "enables WALinuxAgent", f"systemctl disable {unit} (or remove it)")
    cloud_init = systemd.any_enabled(tree, *_CLOUD_INIT_UNITS)
    cmdline = boot_cmdline(tree).words
    if (
        cloud_init
        and not tree.exists("etc/cloud/cloud-init.disabled")
        and "cloud-init=disabled" not in cmdline
        and _cloud_init_allows_azure(tree)
    ):
        link = systemd.enable_links(tree, cloud_init[0])[0]
        yield Note(
            link,
            "enables cloud-init with the Azure datasource",
            "remove cloud-init, or touch etc/cloud/cloud-init.disabled",
        )
    for unit in systemd.any_enabled(tree, "azure-init.service"):
        link = systemd.enable_links(tree, unit)[0]
        yield Note(link, "enables azure-init", f"systemctl disable {unit}")


@check(
    "network-online-wait",
    "warn",
    consequence="network-online.target is reached at once; the first calls fail and retry",
    source="systemd NETWORK_ONLINE.md",
)
def network_online_wait(tree: Tree) -> Iterator[Note]:
    settings = systemd.unit_settings(tree, PROVISIONING_UNIT)
    for key in ("Wants", "After"):
        if systemd.unit_file(tree, PROVISIONING_UNIT) and "network-online.target" not in (
            settings.get(key, [])
        ):
            yield Note(
                systemd.unit_file(tree, PROVISIONING_UNIT) or "",
                f"has no {key}=network-online.target",
                "use the unit azprov ships, or add it in a drop-in",
            )
    stacks = {
        "systemd-networkd.service": "systemd-networkd-wait-online.service",
        "NetworkManager.service": "NetworkManager-wait-online.service",
    }
    for stack, wait in stacks.items():
        if systemd.enabled(tree, stack) and not systemd.enabled(tree, wait):
            yield Note(
                f"etc/systemd/system/network-online.target.wants/{wait}",
                f"is missing while {stack} is enabled",
                f"systemctl enable {wait}",
            )
    if systemd.enabled(tree, "networking.service") and not systemd.enabled(
        tree, "ifupdown-wait-online.service"
    ):
        hotplug = [
            line
            for path in ["etc/network/interfaces", *tree.glob("etc/network/interfaces.d/*")]
            for line in tree.lines(path)
            if line.strip().startswith("allow-hotplug")
        ]
        if hotplug and tree.exists("lib/systemd/system/ifupdown-wait-online.service"):
            yield Note(
                "etc/network/interfaces",
                f"has '{hotplug[0].strip()}' but ifupdown-wait-online.service is disabled",
                "systemctl enable ifupdown-wait-online.service",
            )


_SSHD_UNITS = ("ssh.service", "sshd.service", "ssh.socket", "sshd.socket")


@check(
    "sshd-enabled",
    "error",
    consequence="no sshd at boot: nobody can log in",
    source="MS generic VHD doc",
)
def sshd_enabled(tree: Tree) -> Iterator[Note]:
    if not tree.exists("usr/sbin/sshd"):
        yield Note("usr/sbin/sshd", "is missing", "install openssh-server")
        return
    for unit in _SSHD_UNITS:
        mask = systemd.masked(tree, unit)
        if mask and unit.endswith(".service"):
            yield Note(mask, "links to /dev/null (masked)", f"systemctl unmask {unit}")
            return
    if not systemd.any_enabled(tree, *_SSHD_UNITS):
        yield Note(
            "etc/systemd/system/multi-user.target.wants/ssh.service",
            "is missing: neither ssh/sshd.service nor ssh/sshd.socket is enabled",
            "systemctl enable ssh.service (sshd.service on RHEL/Fedora)",
        )


@check(
    "kvp-daemon",
    "warn",
    consequence="azprov's KVP records (failure reasons) never reach the host",
    source="LISA verify_hv_kvp_daemon_installed",
)
def kvp_daemon(tree: Tree) -> Iterator[Note]:
    units = ("hv-kvp-daemon.service", "hypervkvpd.service")
    if systemd.any_enabled(tree, *units):
        return
    installed = [u for u in units if systemd.unit_file(tree, u)]
    if installed:
        yield Note(
            systemd.unit_file(tree, installed[0]) or "",
            "is installed but not enabled",
            f"systemctl enable {installed[0]}",
        )
    else:
        yield Note(
            "usr/lib/systemd/system",
            "has no hv-kvp-daemon.service / hypervkvpd.service",
            "install hyperv-daemons",
        )
