"""The health document: its exact shape, and hostile values escaped on the way out.

The exact text is compared here; the same bytes are then posted over real
loopback HTTP and parsed back by the simulated WireServer.
"""

from __future__ import annotations

from typing import Iterator
from xml.etree import ElementTree

import pytest

from azprov.fabric.http import FabricHttp, RetryPolicy
from azprov.fabric.models import GoalState, parse_goal_state
from azprov.fabric.wireserver import DESCRIPTION_MAX_CHARS, Health, WireServer, health_xml
from azprov.fabric.xmldoc import escape
from azprov.simulator import SimulatedFabric, VmSpec

GOAL_STATE = GoalState(
    incarnation="7",
    container_id="7b324f53-983a-43bc-b919-1775d6077608",
    instance_id="fbb84507-46cd-4f4e-bd78-a2edaa9d059b._vm1",
)

READY = b"""<?xml version="1.0" encoding="utf-8"?>
<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <GoalStateIncarnation>7</GoalStateIncarnation>
  <Container>
    <ContainerId>7b324f53-983a-43bc-b919-1775d6077608</ContainerId>
    <RoleInstanceList>
      <Role>
        <InstanceId>fbb84507-46cd-4f4e-bd78-a2edaa9d059b._vm1</InstanceId>
        <Health>
          <State>Ready</State>
        </Health>
      </Role>
    </RoleInstanceList>
  </Container>
</Health>
"""

NOT_READY = b"""<?xml version="1.0" encoding="utf-8"?>
<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <GoalStateIncarnation>7</GoalStateIncarnation>
  <Container>
    <ContainerId>7b324f53-983a-43bc-b919-1775d6077608</ContainerId>
    <RoleInstanceList>
      <Role>
        <InstanceId>fbb84507-46cd-4f4e-bd78-a2edaa9d059b._vm1</InstanceId>
        <Health>
          <State>NotReady</State>
          <Details>
            <SubStatus>ProvisioningFailed</SubStatus>
            <Description>useradd failed</Description>
          </Details>
        </Health>
      </Role>
    </RoleInstanceList>
  </Container>
</Health>
"""

# Markup, CDATA ends, quotes, an entity lookalike, C0 controls XML cannot carry,
# a lone surrogate, a carriage return, and text beyond the BMP.
HOSTILE = "a</Description></Details><State>Ready</State>&amp;]]>\"'\x00\x1b\ud800\r\n\té😀 end"
HOSTILE_KEPT = "a</Description></Details><State>Ready</State>&amp;]]>\"'\r\n\té😀 end"


def shape(element: ElementTree.Element) -> list[tuple[int, str, str | None]]:
    """(depth, tag, stripped text) of every element, in document order."""
    out: list[tuple[int, str, str | None]] = []

    def walk(node: ElementTree.Element, depth: int) -> None:
        out.append((depth, node.tag, (node.text or "").strip() or None))
        for sub in node:
            walk(sub, depth + 1)

    walk(element, 0)
    return out


def test_ready_document_is_exactly_the_documented_one() -> None:
    assert health_xml(GOAL_STATE, Health.ready()) == READY


def test_not_ready_document_is_exactly_the_documented_one() -> None:
    assert health_xml(GOAL_STATE, Health.failed("useradd failed")) == NOT_READY


def test_ready_document_parsed_back_has_the_documented_tree() -> None:
    root = ElementTree.fromstring(health_xml(GOAL_STATE, Health.ready()))
    assert shape(root) == [
        (0, "Health", None),
        (1, "GoalStateIncarnation", "7"),
        (1, "Container", None),
        (2, "ContainerId", GOAL_STATE.container_id),
        (2, "RoleInstanceList", None),
        (3, "Role", None),
        (4, "InstanceId", GOAL_STATE.instance_id),
        (4, "Health", None),
        (5, "State", "Ready"),
    ]


def test_seed_sample_and_azprov_agree_on_every_value() -> None:
    """The seed's Python sample builds the tree with ElementTree; the values must match."""
    seed = ElementTree.Element("Health")
    ElementTree.SubElement(seed, "GoalStateIncarnation").text = GOAL_STATE.incarnation
    container = ElementTree.SubElement(seed, "Container")
    ElementTree.SubElement(container, "ContainerId").text = GOAL_STATE.container_id
    role = ElementTree.SubElement(ElementTree.SubElement(container, "RoleInstanceList"), "Role")
    ElementTree.SubElement(role, "InstanceId").text = GOAL_STATE.instance_id
    ElementTree.SubElement(ElementTree.SubElement(role, "Health"), "State").text = "Ready"
    ours = ElementTree.fromstring(health_xml(GOAL_STATE, Health.ready()))
    assert shape(ours) == shape(seed)


def test_hostile_description_cannot_change_the_structure() -> None:
    document = health_xml(GOAL_STATE, Health.failed(HOSTILE))
    root = ElementTree.fromstring(document)  # well-formed despite the input
    states = [e.text for e in root.iter("State")]
    assert states == ["NotReady"]
    description = root.find("Container/RoleInstanceList/Role/Health/Details/Description")
    assert description is not None and description.text == HOSTILE_KEPT


def test_description_is_cut_to_the_limit() -> None:
    root = ElementTree.fromstring(health_xml(GOAL_STATE, Health.failed("x" * 5000)))
    text = root.findtext("Container/RoleInstanceList/Role/Health/Details/Description")
    assert text is not None and len(text) == DESCRIPTION_MAX_CHARS and text.endswith("...")


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a&b", "a&amp;b"),
        ("<x>", "&lt;x&gt;"),
        ("]]>", "]]&gt;"),
        ("\"'", "&quot;&apos;"),
        ("a\x00b\x08c\x0bd\x1fe", "abcde"),
        ("\ud800x\udfff", "x"),
        ("\ufffe\uffff", ""),
        ("\r", "&#13;"),
        ("tab\tnl\n", "tab\tnl\n"),
        ("é😀", "é😀"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


# -- over the wire --------------------------------------------------------------------------


@pytest.fixture
def hostile_fabric() -> Iterator[SimulatedFabric]:
    spec = VmSpec(
        container_id="c<&>\"']]>ontainer",
        role_name="_vm&<x>\"'\té😀",
        incarnation=12,
    )
    with SimulatedFabric(spec) as simulated:
        yield simulated


def test_hostile_goal_state_values_round_trip_over_http(hostile_fabric: SimulatedFabric) -> None:
    spec = hostile_fabric.spec
    with FabricHttp(RetryPolicy(first_delay=0.05, max_delay=0.2)) as http:
        wireserver = WireServer(http, hostile_fabric.wireserver_endpoint, 10)
        wireserver.report_health(Health.failed(HOSTILE))
    (report,) = hostile_fabric.health_reports  # the simulator accepts only matching ids
    assert report.container_id == spec.container_id
    assert report.instance_id == spec.instance_id
    assert report.incarnation == "12"
    assert (report.state, report.substatus) == ("NotReady", "ProvisioningFailed")
    # The simulator reads XML with a standard parser: \r\n arrives as written.
    assert report.description == HOSTILE_KEPT.strip()
    (post,) = hostile_fabric.requests_to("wireserver", "/machine?comp=health")
    goal_state = parse_goal_state(_served_goal_state(hostile_fabric))
    assert post.body == health_xml(goal_state, Health.failed(HOSTILE))


def _served_goal_state(fabric: SimulatedFabric) -> bytes:
    from azprov.simulator.documents import goal_state_xml

    return goal_state_xml(fabric.spec, fabric.advertised_base)


def test_ready_posted_over_http_is_byte_identical(fabric: SimulatedFabric) -> None:
    with FabricHttp() as http:
        posted_for = WireServer(http, fabric.wireserver_endpoint, 10).report_health(Health.ready())
    (post,) = fabric.requests_to("wireserver", "/machine?comp=health")
    assert post.body == health_xml(posted_for, Health.ready())
    assert post.headers["content-length"] == str(len(post.body))
    root = ElementTree.fromstring(post.body)
    assert root.findtext("GoalStateIncarnation") == "1"
    assert root.findtext("Container/ContainerId") == fabric.spec.container_id
    assert root.findtext("Container/RoleInstanceList/Role/InstanceId") == fabric.spec.instance_id
