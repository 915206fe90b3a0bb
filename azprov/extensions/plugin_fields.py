"""What each field of a plugin entry must look like, whichever document brought it.

The patterns hold for ExtensionsConfig and vmSettings alike (a name becomes a
folder name, so nothing in it may climb out of lib_dir); the readers below
are ExtensionsConfig's: its XML attributes, its seqNos and the runtime
settings JSON it carries as text. Each check raises a one-line InvalidInput
naming the field and the value; settings are quoted only as secret.
"""

from __future__ import annotations

import re
from typing import Optional
from xml.etree.ElementTree import Element

from azprov.errors import InvalidInput
from azprov.fabric.xmldoc import local_name
from azprov.jsondoc import parse_json

# Publisher.Type: it becomes a folder name, so nothing that could climb out of lib_dir.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")
VERSION = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}\Z")
# seqNo is an Int32 on the platform; a dependency level is a small count.
_SEQ_NO = re.compile(r"^[0-9]{1,10}\Z")
_SEQ_NO_MAX = 2**31 - 1
LEVEL = re.compile(r"^[0-9]{1,9}\Z")
THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}\Z")
# A multi-config extension's name (an ARM resource name) names its files
# (config/<name>.<seqNo>.settings): no separator, no leading dot.
EXTENSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
STATES = ("enabled", "disabled", "uninstall")
EXTENSION_STATES = ("enabled", "disabled")


def attr(element: Element, name: str) -> Optional[str]:
    """An attribute looked up case-insensitively (the platform is not consistent)."""
    for key, value in element.attrib.items():
        if local_name(key).lower() == name.lower():
            return value.strip()
    return None


def valid(field: str, value: Optional[str], pattern: re.Pattern[str], why: str) -> str:
    if value is None or not pattern.match(value):
        raise InvalidInput(field, value, why)
    return value


def seq_no_of(text: Optional[str]) -> Optional[int]:
    """A seqNo attribute's value, or None when it is missing or not an Int32 count."""
    if text is None or not _SEQ_NO.match(text):
        return None
    value = int(text)
    return value if value <= _SEQ_NO_MAX else None


def protected_values(name: str, text: str) -> tuple[str, ...]:
    """Check the settings' shape and return the encrypted protected settings found in it."""
    field = f"Plugin {name} RuntimeSettings"
    # The handler reads its numbers itself: azprov needs only the shape and the
    # protected settings, so no number in them can refuse the plugin.
    document = parse_json(text, field, keep_numbers=False, secret=True)
    entries = document.get("runtimeSettings") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(field, text, "no runtimeSettings list", secret=True)
    found = []
    for entry in entries:
        handler = entry.get("handlerSettings") if isinstance(entry, dict) else None
        if not isinstance(handler, dict):
            raise InvalidInput(field, text, "an entry has no handlerSettings object", secret=True)
        value = handler.get("protectedSettings")
        if isinstance(value, str) and value:
            found.append(value)
        thumbprint = handler.get("protectedSettingsCertThumbprint")
        if value and not (isinstance(thumbprint, str) and THUMBPRINT.match(thumbprint)):
            raise InvalidInput(
                f"{field} protectedSettingsCertThumbprint", thumbprint, "not a SHA-1 thumbprint"
            )
    return tuple(found)
