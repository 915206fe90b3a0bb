"""A multi-config handler's entry in ExtensionsConfig: its named extensions and their DependsOn.

Such a handler's PluginSettings carry one ExtensionRuntimeSettings per named
extension (RunCommand v2's, say) instead of one RuntimeSettings. Any fault in
one of them makes the whole plugin invalid: its extensions share one handler
folder, so none can run while another's entry is unusable.
"""

from __future__ import annotations

import dataclasses
from typing import Optional
from xml.etree.ElementTree import Element

from azprov.errors import InvalidInput
from azprov.extensions.plugin_fields import (
    EXTENSION_NAME,
    EXTENSION_STATES,
    LEVEL,
    attr,
    protected_values,
    seq_no_of,
    valid,
)
from azprov.fabric.xmldoc import child, children


@dataclasses.dataclass(frozen=True)
class NamedExtension:
    """One named extension of a multi-config handler (RunCommand v2's, say)."""

    name: str
    seq_no: int
    state: str  # enabled | disabled (disabled: remove it, as the platform agent does)
    settings: Optional[str] = None  # the runtimeSettings JSON, protected part encrypted
    protected: tuple[str, ...] = ()  # encrypted protected settings: kept out of every log

    def __repr__(self) -> str:  # settings never reach a log, even through a repr
        return f"NamedExtension({self.name} {self.state} seqNo={self.seq_no})"


def named_extensions(name: str, settings: Element) -> tuple[NamedExtension, ...]:
    """A multi-config handler's ExtensionRuntimeSettings, each checked; any fault makes
    the whole plugin invalid (its extensions share one handler folder)."""
    if child(settings, "RuntimeSettings") is not None:
        raise InvalidInput(
            f"Plugin {name} RuntimeSettings", "present", "beside ExtensionRuntimeSettings"
        )
    found: list[NamedExtension] = []
    for element in children(settings, "ExtensionRuntimeSettings"):
        field = f"Plugin {name} ExtensionRuntimeSettings"
        ext = valid(f"{field}@name", attr(element, "name"), EXTENSION_NAME, "not a name")
        if any(e.name.lower() == ext.lower() for e in found):
            raise InvalidInput(f"{field}@name", ext, "listed twice")
        seq_text = attr(element, "seqNo")
        number = seq_no_of(seq_text)
        if number is None:
            raise InvalidInput(f"{field} {ext} @seqNo", seq_text, "not a whole number")
        state = (attr(element, "state") or "enabled").lower()
        if state not in EXTENSION_STATES:
            raise InvalidInput(f"{field} {ext} @state", state, "expected enabled or disabled")
        text = (element.text or "").strip()
        protected = protected_values(f"{name} {ext}", text) if text else ()
        found.append(NamedExtension(ext, number, state, text or None, protected))
    return tuple(found)


def multi_config_dependencies(name: str, settings: Element) -> tuple[int, tuple[str, ...]]:
    """A multi-config handler's DependsOn, one per named extension (@name): its
    extensions run together, so the handler runs at the highest level any of them names,
    after every other handler any of them depends on (as for vmSettings)."""
    level, handlers = 0, []
    for depends in children(settings, "DependsOn"):
        level_text = attr(depends, "dependencyLevel") or "0"
        if not LEVEL.match(level_text):
            field = f"Plugin {name} DependsOn@dependencyLevel"
            raise InvalidInput(field, level_text, "not a number")
        level = max(level, int(level_text))
        for element in children(depends, "DependsOnExtension"):
            handler = attr(element, "handler")
            if handler and handler.lower() != name.lower():
                handlers.append(handler)
    return level, tuple(dict.fromkeys(handlers))
