"""ovf-env.xml, the provisioning media's one document, parsed into an `OvfEnv`.

It is the only source of the admin password and of custom data. Finding and
mounting the CD that carries it is host work: see `azprov.host.media`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, NamedTuple, Optional
from xml.etree.ElementTree import Element

from azprov.credentials import Secret
from azprov.errors import InvalidInput
from azprov.fabric.xmldoc import child, children, local_name, parse_xml, text

log = logging.getLogger(__name__)

OVF_FILE = "ovf-env.xml"


class OvfPublicKey(NamedTuple):
    path: Optional[str]
    value: Optional[str]  # None: the key is only a certificate fingerprint
    fingerprint: Optional[str]


class OvfEnv(NamedTuple):
    hostname: Optional[str]
    username: Optional[str]
    password: Optional[Secret]
    disable_ssh_password_auth: Optional[bool]
    public_keys: tuple[OvfPublicKey, ...]
    custom_data: Optional[bytes]
    # PlatformSettings of a VM made for a pre-provisioned pool (None: not given).
    preprovisioned_vm: Optional[bool] = None
    preprovisioned_vm_type: Optional[str] = None


# PreprovisionedVMType values (the spelling in production; XML is case-sensitive).
PREPROVISIONED_VM_TYPES = frozenset({"None", "Running", "Savable", "PreprovisionedOSDisk"})


def parse_ovf_env(content: bytes) -> OvfEnv:
    root = parse_xml(content, OVF_FILE)
    if local_name(root.tag) != "Environment":
        raise InvalidInput("ovf-env.xml", local_name(root.tag), "root element is not Environment")
    section = child(root, "ProvisioningSection", "LinuxProvisioningConfigurationSet")
    if section is None:
        raise InvalidInput(
            "ovf-env.xml", "ProvisioningSection", "has no LinuxProvisioningConfigurationSet"
        )
    password_node = child(section, "UserPassword")
    password = password_node.text if password_node is not None and password_node.text else None
    disable = text(section, "DisableSshPasswordAuthentication")
    if disable is not None and disable.lower() not in ("true", "false"):
        raise InvalidInput(
            "ovf-env.DisableSshPasswordAuthentication", disable, 'is neither "true" nor "false"'
        )
    keys = tuple(
        OvfPublicKey(
            path=text(key, "Path"), value=text(key, "Value"), fingerprint=text(key, "Fingerprint")
        )
        for key in children(child(section, "SSH", "PublicKeys"), "PublicKey")
    )
    return OvfEnv(
        hostname=text(section, "HostName"),
        username=text(section, "UserName"),
        password=Secret(password) if password else None,
        disable_ssh_password_auth=None if disable is None else disable.lower() == "true",
        public_keys=keys,
        custom_data=_decode_custom_data(text(section, "CustomData")),
        **_platform_settings(child(root, "PlatformSettingsSection", "PlatformSettings")),
    )


def _platform_settings(settings: Optional[Element]) -> dict[str, Any]:
    """PreprovisionedVm ("true"/"false") and PreprovisionedVMType, strictly."""
    if settings is None:
        return {}
    flag = text(settings, "PreprovisionedVm")
    if flag is not None and flag.lower() not in ("true", "false"):
        raise InvalidInput("ovf-env.PreprovisionedVm", flag, 'is neither "true" nor "false"')
    kind = text(settings, "PreprovisionedVMType")
    if kind is not None and kind not in PREPROVISIONED_VM_TYPES:
        raise InvalidInput(
            "ovf-env.PreprovisionedVMType",
            kind,
            f"is not one of {', '.join(sorted(PREPROVISIONED_VM_TYPES))}",
        )
    return {
        "preprovisioned_vm": None if flag is None else flag.lower() == "true",
        "preprovisioned_vm_type": kind,
    }


def _decode_custom_data(encoded: Optional[str]) -> Optional[bytes]:
    if encoded is None:
        return None
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "ovf-env.CustomData", f"<{len(encoded)} characters>", "is not valid base64"
        ) from None
