"""Deciding what to provision, and validating all of it before anything changes.

IMDS wins for the computer name, the admin user name, the public keys and the
password policy; ovf-env.xml gives the password and custom data and is the
fallback for the rest. Every value that will reach the machine is checked
here, so a bad one fails the whole run before the first change.
"""

from __future__ import annotations

import base64
import binascii
import logging
import posixpath
import re
import struct
from typing import NamedTuple, Optional

from azprov.credentials import AuthorizedKey, Secret
from azprov.errors import InvalidInput
from azprov.fabric.imds import InstanceMetadata
from azprov.fabric.ovf import OvfEnv
from azprov.host.users import Accounts

log = logging.getLogger(__name__)

SSH_KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
MAX_PASSWORD_CHARS = 72  # bcrypt's limit; cloud-init refuses longer ones too
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# Debian's and Fedora's default NAME_REGEX, less the trailing '$' for machine accounts.
_LOGIN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
RESERVED_USERS = frozenset({"root", "daemon", "bin", "sys", "nobody", "admin", "sshd"})


class Plan(NamedTuple):
    """Everything provisioning will apply, already validated."""

    hostname: str
    username: str
    groups: str  # extra groups, comma-separated, all existing
    password: Optional[Secret]
    keys: tuple[AuthorizedKey, ...]
    disable_password_auth: bool
    custom_data: Optional[bytes]


def validate_hostname(name: str, field: str) -> str:
    if len(name) > 64:
        raise InvalidInput(field, name, "is longer than 64 characters")
    labels = name.split(".")
    for label in labels:
        if not _HOST_LABEL.fullmatch(label):
            raise InvalidInput(
                field, name, "is not an RFC 1123 host name (letters, digits, inner hyphens)"
            )
    return name


def validate_username(name: str, field: str, accounts: Accounts) -> str:
    """A login azprov may create or take over: never root or another system account."""
    if "/" in name or name in (".", "..") or "\0" in name:
        raise InvalidInput(field, name, "contains path characters")
    if not _LOGIN.fullmatch(name):
        raise InvalidInput(
            field,
            name,
            "is not a valid login (lower-case letters, digits, '_' and '-', "
            "starting with a letter or '_', at most 32)",
        )
    if name in RESERVED_USERS:
        raise InvalidInput(field, name, "is a reserved system account")
    existing = accounts.users.get(name)
    if existing is not None:
        if not accounts.uid_min <= existing.uid <= accounts.uid_max:
            raise InvalidInput(field, name, f"is an existing system account (UID {existing.uid})")
        home = existing.home
        if not home.startswith("/") or posixpath.normpath(home) != home or home == "/":
            raise InvalidInput(
                field, name, f"is an existing account with an unusable home {home!r}"
            )
    elif name in accounts.groups:
        raise InvalidInput(field, name, "is already the name of a group")
    return name


def validate_groups(groups: str, accounts: Accounts) -> str:
    """`[provisioning] user_groups`: every group must exist in the target's /etc/group."""
    names = [g.strip() for g in groups.split(",") if g.strip()]
    missing = [g for g in names if g not in accounts.groups]
    if missing:
        raise InvalidInput(
            "provisioning.user_groups", groups, f"no such group: {', '.join(missing)}"
        )
    return ",".join(names)


def validate_ssh_key(raw: str, field: str) -> str:
    """One authorized_keys line: `TYPE BASE64 [comment]`, the body naming the same type."""
    line = raw.strip()  # IMDS has been seen sending a trailing \r\n (LP #1910835)
    if "\n" in line or "\r" in line:
        raise InvalidInput(field, raw, "contains a line break inside the key")
    if not line.isprintable():
        raise InvalidInput(field, raw, "contains control characters")
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise InvalidInput(field, raw, "is not 'TYPE BASE64 [COMMENT]'")
    key_type, body = parts[0], parts[1]
    if key_type not in SSH_KEY_TYPES:
        raise InvalidInput(field, raw, f"has unknown key type {key_type!r}")
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, raw, "key body is not valid base64") from None
    if len(blob) < 4:
        raise InvalidInput(field, raw, "key body is too short")
    (length,) = struct.unpack(">I", blob[:4])
    # The blob starts with the type as a length-prefixed string, then the key material.
    if length != len(key_type) or blob[4 : 4 + length] != key_type.encode():
        raise InvalidInput(field, raw, f"key body does not name the type {key_type!r}")
    if len(blob) <= 4 + length + 4:
        raise InvalidInput(field, raw, "key body holds no key material")
    return " ".join(parts)


def validate_password(password: Secret, field: str) -> Secret:
    value = password.reveal()
    # openssl passwd reads at most 256 bytes: a longer UTF-8 password would be cut silently.
    if len(value) > MAX_PASSWORD_CHARS or len(value.encode()) > 255:
        raise InvalidInput(
            field, value, f"is longer than {MAX_PASSWORD_CHARS} characters", secret=True
        )
    if any(ch in value for ch in "\n\r\0"):
        raise InvalidInput(field, value, "contains a line break or NUL", secret=True)
    return password


def decide(
    imds: InstanceMetadata,
    ovf: Optional[OvfEnv],
    accounts: Accounts,
    vm_id: str,
    user_groups: str = "",
) -> Plan:
    """Merge IMDS and ovf-env.xml into a validated Plan, or raise InvalidInput.

    IMDS wins for every field it gives; ovf-env.xml is the fallback, and the
    only source of the password and custom data.
    """
    if imds.vm_id and imds.vm_id.lower() != vm_id:
        log.warning("IMDS vmId %s differs from this machine's VM ID %s", imds.vm_id, vm_id)
    # Validated in this order, so the first problem reported is the same on every run.
    hostname = _hostname(imds, ovf)
    username = _username(imds, ovf, accounts)
    groups = validate_groups(user_groups, accounts)
    keys = _imds_keys(imds) if imds.public_keys else _ovf_keys(ovf)
    password = _password(ovf)
    disable_password_auth = _disable_password_auth(imds, ovf, password)
    if not keys and (password is None or disable_password_auth):
        raise InvalidInput(
            "publicKeys",
            [],
            "no SSH key, and password login is off or no password was given: nobody could log in",
        )
    return Plan(
        hostname=hostname,
        username=username,
        groups=groups,
        password=password,
        keys=keys,
        disable_password_auth=disable_password_auth,
        custom_data=ovf.custom_data if ovf else None,
    )


def _hostname(imds: InstanceMetadata, ovf: Optional[OvfEnv]) -> str:
    if imds.computer_name:
        return validate_hostname(imds.computer_name, "imds.compute.osProfile.computerName")
    if ovf and ovf.hostname:
        return validate_hostname(ovf.hostname, "ovf-env.HostName")
    raise InvalidInput("computerName", None, "neither IMDS nor ovf-env.xml gives one")


def _username(imds: InstanceMetadata, ovf: Optional[OvfEnv], accounts: Accounts) -> str:
    if imds.admin_username:
        field = "imds.compute.osProfile.adminUsername"
        return validate_username(imds.admin_username, field, accounts)
    if ovf and ovf.username:
        return validate_username(ovf.username, "ovf-env.UserName", accounts)
    raise InvalidInput("adminUsername", None, "neither IMDS nor ovf-env.xml gives one")


def _imds_keys(imds: InstanceMetadata) -> tuple[AuthorizedKey, ...]:
    keys = []
    for index, key in enumerate(imds.public_keys):
        field = f"imds.compute.publicKeys[{index}]"
        line = validate_ssh_key(key.key_data, f"{field}.keyData")
        keys.append(AuthorizedKey(line, validate_key_path(key.path, f"{field}.path")))
    return tuple(keys)


def _ovf_keys(ovf: Optional[OvfEnv]) -> tuple[AuthorizedKey, ...]:
    keys = []
    for index, ovf_key in enumerate(ovf.public_keys if ovf else ()):
        if ovf_key.value is None:
            log.warning(
                "ovf-env.xml key %d names only certificate %s; azprov installs keys "
                "given by value (IMDS publicKeys), skipping it",
                index,
                ovf_key.fingerprint,
            )
            continue
        field = f"ovf-env.PublicKey[{index}]"
        line = validate_ssh_key(ovf_key.value, f"{field}.Value")
        keys.append(AuthorizedKey(line, validate_key_path(ovf_key.path, f"{field}.Path")))
    return tuple(keys)


def _password(ovf: Optional[OvfEnv]) -> Optional[Secret]:
    if ovf and ovf.password:
        return validate_password(ovf.password, "ovf-env.UserPassword")
    return None


def _disable_password_auth(
    imds: InstanceMetadata, ovf: Optional[OvfEnv], password: Optional[Secret]
) -> bool:
    if imds.disable_password_authentication is not None:
        return imds.disable_password_authentication
    if ovf and ovf.disable_ssh_password_auth is not None:
        return ovf.disable_ssh_password_auth
    return password is None


def validate_key_path(path: Optional[str], field: str) -> Optional[str]:
    """A requested authorized_keys path: absolute, printable, reasonable. Where it may
    point is decided against the real home directory later (`key_path_inside_home`)."""
    if path is None:
        return None
    if not path.startswith("/") or not path.isprintable() or len(path.encode()) > 1024:
        raise InvalidInput(field, path, "is not an absolute, printable path")
    return path
