"""Typed values parsed from the fabric's documents. No I/O here."""

from __future__ import annotations

from typing import NamedTuple, Optional

from azprov.errors import MalformedDocument
from azprov.fabric.xmldoc import child, parse_xml, text


class GoalState(NamedTuple):
    """What the WireServer wants of this VM now (the parts every agent needs)."""

    incarnation: str
    container_id: str
    instance_id: str
    role_config_name: Optional[str] = None
    hosting_environment_url: Optional[str] = None
    shared_config_url: Optional[str] = None
    extensions_config_url: Optional[str] = None
    certificates_url: Optional[str] = None


# How much of a refused value an error quotes: a document may carry megabytes where
# a field belongs, and the message is a log line and the start of a health report.
SHOWN_MAX_CHARS = 80


def shown(text: str) -> str:
    """`text` as an error quotes it: cut to SHOWN_MAX_CHARS, with "..." when it was longer."""
    return text if len(text) <= SHOWN_MAX_CHARS else text[: SHOWN_MAX_CHARS - 3] + "..."


class RoleInstanceMissing(Exception):
    """The goal state has no RoleInstance yet (normal right after boot): fetch again."""


def parse_goal_state(content: bytes) -> GoalState:
    root = parse_xml(content, "goal state")
    if root.tag != "GoalState":
        raise MalformedDocument(
            f"goal state: root element is <{shown(root.tag)}>, expected <GoalState>",
            document="goal state",
        )
    incarnation = text(root, "Incarnation")
    if incarnation is None or not (incarnation.isascii() and incarnation.isdigit()):
        raise MalformedDocument(
            f"goal state: Incarnation={shown(repr(incarnation))} is not a whole number",
            document="goal state",
        )
    container_id = text(root, "Container", "ContainerId")
    if not container_id:
        raise MalformedDocument(
            "goal state: Container/ContainerId is missing",
            document="goal state",
        )
    role = child(root, "Container", "RoleInstanceList", "RoleInstance")
    if role is None:
        raise RoleInstanceMissing()
    instance_id = text(role, "InstanceId")
    if not instance_id:
        raise MalformedDocument(
            "goal state: RoleInstance/InstanceId is missing",
            document="goal state",
        )

    def config(name: str) -> Optional[str]:
        return text(role, "Configuration", name)

    return GoalState(
        incarnation=incarnation,
        container_id=container_id,
        instance_id=instance_id,
        role_config_name=config("ConfigName"),
        hosting_environment_url=config("HostingEnvironmentConfig"),
        shared_config_url=config("SharedConfig"),
        extensions_config_url=config("ExtensionsConfig"),
        certificates_url=config("Certificates"),
    )
