"""What makes each VM itself: machine ID, host name, host keys, per-machine secrets."""

from __future__ import annotations

import re
from typing import Iterator

from azprov.checks import systemd
from azprov.checks.model import Note, check, unreadable
from azprov.checks.sshd import effective_config
from azprov.checks.tree import Tree
from azprov.host.units import PROVISIONING_UNIT

_ID = re.compile(r"^[0-9a-fA-F]{32}\Z")


def _shown(value: str) -> str:
    return value[:8] + "…" if len(value) > 8 else value


@check(
    "machine-id",
    "error",
    consequence="clones would share it (one DHCP client identity, one journal identity)",
    source="machine-id(5); networkd.conf(5); virt-sysprep machine-id",
    reads=(
        "etc/machine-id",
        "var/lib/dbus/machine-id",
    ),
)
def machine_id(tree: Tree) -> Iterator[Note]:
    value = (tree.read_text("etc/machine-id") or "").strip()
    if _ID.match(value):
        yield Note(
            "etc/machine-id",
            f"holds {_shown(value)}",
            "run 'azprov deprovision' or truncate it (': > etc/machine-id')",
        )
    elif value and value != "uninitialized":
        yield Note(
            "etc/machine-id",
            f"holds {value[:20]!r}, not an ID",
            "truncate it",
            severity="warn",
            consequence="systemd treats it as invalid and makes a new one",
        )
    dbus = "var/lib/dbus/machine-id"
    if tree.link_target(dbus) is None:
        old = (tree.read_text(dbus) or "").strip()
        if old:
            yield Note(
                dbus,
                f"holds {_shown(old)}",
                "remove it ('azprov deprovision' does)",
                consequence="systemd copies it into an empty etc/machine-id: the old ID returns",
            )


_GENERIC = ("", "localhost", "localhost.localdomain")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _hosts_names(tree: Tree) -> list[str]:
    names = []
    for line in tree.lines("etc/hosts"):
        words = line.split("#", 1)[0].split()
        if len(words) > 1 and (words[0].startswith("127.") or words[0] == "::1"):
            names += [w for w in words[1:] if w not in _LOCAL_NAMES and not w.startswith("ip6-")]
    return names


@check(
    "hostname-generic",
    "warn",
    consequence="clones come up with the build's name and announce it over DHCP until renamed",
    source="waagent reset_hostname; virt-sysprep net-hostname; systemd BUILDING_IMAGES",
)
def hostname_generic(tree: Tree) -> Iterator[Note]:
    yield from unreadable(tree, "etc/hostname", "etc/hosts")
    name = (tree.read_text("etc/hostname") or "").strip()
    if name not in _GENERIC:
        yield Note(
            "etc/hostname", f"holds {name}", "write 'localhost' ('azprov deprovision' does)"
        )
    for alias in _hosts_names(tree):
        yield Note("etc/hosts", f"maps {alias} to loopback", f"remove {alias}")
    for line in tree.lines("etc/machine-info"):
        if line.startswith("PRETTY_HOSTNAME="):
            yield Note("etc/machine-info", f"sets {line.strip()}", "remove the line")
    for number, line in enumerate(tree.lines("etc/dhcp/dhclient.conf"), 1):
        if re.match(r'\s*send\s+host-name\s+"', line):
            yield Note(
                f"etc/dhcp/dhclient.conf:{number}",
                f"has '{line.strip()}'",
                "use 'send host-name = gethostname();'",
            )
    for path in ["etc/sysconfig/network", *tree.glob("etc/sysconfig/network-scripts/ifcfg-*")]:
        for line in tree.lines(path):
            match = re.match(r"\s*(HOSTNAME|DHCP_HOSTNAME)=[\"']?([^\"'\s]*)", line)
            if match and match.group(2) not in _GENERIC:
                yield Note(path, f"sets {match.group(1)}={match.group(2)}", "remove the line")


_SHARED_WARN = (
    "var/lib/systemd/random-seed",
    "boot/efi/loader/random-seed",
    "var/lib/systemd/credential.secret",
)
_SHARED_ERROR = (
    "etc/krb5.keytab",
    "etc/ipa/default.conf",
    "var/lib/ipa-client/sysrestore/sysrestore.state",
)
_SHARED_INFO = ("var/lib/yum/uuid",)


@check(
    "clone-shared-secrets",
    "warn",
    consequence="clones share an entropy seed, credential key, Kerberos or subscription identity",
    source="systemd BUILDING_IMAGES; virt-sysprep kerberos-hostkeytab, ipa-client, rh-subscription-manager",
)
def clone_shared_secrets(tree: Tree) -> Iterator[Note]:
    for path in _SHARED_WARN:
        if tree.exists(path):
            yield Note(path, "exists", f"remove {path}")
    errors = (
        list(_SHARED_ERROR) + tree.glob("etc/pki/consumer/*") + tree.glob("etc/pki/entitlement/*")
    )
    for path in errors:
        if tree.size(path):
            yield Note(path, "exists", f"remove {path} (unenroll the build VM)", severity="error")
    for path in list(_SHARED_INFO) + tree.glob("var/lib/rpm/__db.*"):
        if tree.exists(path):
            yield Note(path, "exists", f"remove {path}", severity="info")


def host_key_paths(tree: Tree) -> list[str]:
    keys = [p for p in tree.glob("etc/ssh/*_host_*") if not p.endswith(".pub")]
    config = effective_config(tree) or {}
    extra = config.get("hostkey")
    if extra and tree.exists(extra.value.lstrip("/")):
        keys.append(extra.value.lstrip("/"))
    return sorted(set(keys))


_GENERATORS = (
    "sshd-keygen.target",
    "sshd-keygen@rsa.service",
    "sshd-keygen@*.service",
    "ssh-keygen.service",
)
# Debian 13's openssh-server: `ssh-keygen -A` before sshd, on a first boot only.
_FIRST_BOOT_GENERATOR = "sshd-keygen.service"


@check(
    "ssh-host-keys",
    "error",
    consequence="clones share host keys: one VM can impersonate another",
    source="virt-sysprep ssh-hostkeys; waagent RegenerateSshHostKeyPair",
)
def ssh_host_keys(tree: Tree) -> Iterator[Note]:
    keys = host_key_paths(tree)
    for key in keys:
        yield Note(
            key, "is a host key from the build", "remove etc/ssh/ssh_host_* ('azprov deprovision')"
        )
    if keys or not tree.exists("usr/sbin/sshd"):
        return
    # azprov makes missing keys before sshd starts; whether its unit is enabled is
    # prov-unit-enabled's finding, not a second one here.
    if systemd.unit_file(tree, PROVISIONING_UNIT) or any(
        systemd.enable_links(tree, g) for g in _GENERATORS
    ):
        return
    if systemd.enabled(tree, _FIRST_BOOT_GENERATOR):
        condition = systemd.unit_settings(tree, _FIRST_BOOT_GENERATOR).get("ConditionFirstBoot")
        if not condition or condition[-1].lower() not in ("yes", "true", "on", "1"):
            return
        if tree.unreadable("etc/machine-id"):
            yield from unreadable(tree, "etc/machine-id")  # a first boot or not: unknown
            return
        if systemd.first_boot(tree):
            return
        yield Note(
            "etc/ssh",
            f"has no host keys, and {_FIRST_BOOT_GENERATOR} makes them on a first boot only"
            " (etc/machine-id is not missing or 'uninitialized')",
            "install azprov, or write 'uninitialized' to etc/machine-id",
            consequence="sshd exits 'no hostkeys available': nobody can log in",
        )
        return
    yield Note(
        "etc/ssh",
        "has no host keys and nothing makes them at boot",
        "install azprov, or enable a key generator (sshd-keygen@, sshd-keygen.service)",
        consequence="sshd exits 'no hostkeys available': nobody can log in",
    )
