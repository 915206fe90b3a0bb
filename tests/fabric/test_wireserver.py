"""The WireServer client over real loopback HTTP: goal state, health, 410, hostile documents."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from azprov import AGENT_NAME
from azprov.errors import FabricError, FabricTimeout
from azprov.fabric.http import FabricHttp, RetryPolicy
from azprov.fabric.wireserver import Health, WireServer
from azprov.simulator import Answer, SimulatedFabric
from azprov.simulator.documents import goal_state_xml
from tests.netfaults import ConnectionRecorder

FAST = RetryPolicy(connect_timeout=1.0, read_timeout=2.0, first_delay=0.05, max_delay=0.3)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE GoalState [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<GoalState><Incarnation>1</Incarnation><Container><ContainerId>&lol9;</ContainerId>
<RoleInstanceList><RoleInstance><InstanceId>x</InstanceId></RoleInstance></RoleInstanceList>
</Container></GoalState>
"""


def external_entity(url: str) -> bytes:
    return f"""<?xml version="1.0"?>
<!DOCTYPE GoalState [<!ENTITY leak SYSTEM "{url}">]>
<GoalState><Incarnation>1</Incarnation><Container><ContainerId>&leak;</ContainerId>
<RoleInstanceList><RoleInstance><InstanceId>x</InstanceId></RoleInstance></RoleInstanceList>
</Container></GoalState>
""".encode()


def external_dtd(url: str) -> bytes:
    return f"""<?xml version="1.0"?>
<!DOCTYPE GoalState SYSTEM "{url}">
<GoalState><Incarnation>1</Incarnation></GoalState>
""".encode()


@pytest.fixture
def wireserver(fabric: SimulatedFabric) -> Iterator[WireServer]:
    with FabricHttp(FAST) as http:
        yield WireServer(http, fabric.wireserver_endpoint, 10.0, fabric.hostplugin.port)


def wire_requests(fabric: SimulatedFabric) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in fabric.requests_to("wireserver")]


def without_role_instance(fabric: SimulatedFabric) -> bytes:
    document = goal_state_xml(fabric.spec, fabric.advertised_base).decode()
    start = document.index("<RoleInstance>")
    end = document.index("</RoleInstance>") + len("</RoleInstance>")
    return (document[:start] + document[end:]).encode()


# -- goal state ------------------------------------------------------------------------


def test_goal_state_is_parsed_with_the_protocol_headers(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    goal_state = wireserver.goal_state()
    assert goal_state.incarnation == "1"
    assert goal_state.container_id == fabric.spec.container_id
    assert goal_state.instance_id == fabric.spec.instance_id
    assert goal_state.role_config_name and goal_state.role_config_name.endswith("._simvm.1.xml")
    assert goal_state.hosting_environment_url and "hostingEnvironmentConfig" in (
        goal_state.hosting_environment_url
    )
    assert goal_state.extensions_config_url is None and goal_state.certificates_url is None
    (request,) = fabric.requests_to("wireserver")
    assert request.route == "/machine/" and request.query == {"comp": ["goalstate"]}
    assert request.headers["x-ms-version"] == "2012-11-30"
    assert request.headers["x-ms-agent-name"] == AGENT_NAME
    for name in ("x-forwarded-for", "via", "proxy-authorization"):
        assert name not in request.headers


def test_goal_state_without_role_instance_is_fetched_again(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    early = without_role_instance(fabric)
    fabric.wireserver.script([Answer(200, early), Answer(200, early)], "/machine/?comp=goalstate")
    goal_state = wireserver.goal_state()
    assert goal_state.instance_id == fabric.spec.instance_id
    assert len(fabric.requests_to("wireserver", "/machine/?comp=goalstate")) == 3


def test_goal_state_that_never_gets_a_role_instance_ends_at_the_deadline(
    fabric: SimulatedFabric,
) -> None:
    fabric.wireserver.script([Answer(200, without_role_instance(fabric))] * 100, "/machine/")
    started = time.monotonic()
    with FabricHttp(FAST) as http, pytest.raises(FabricError) as caught:
        WireServer(http, fabric.wireserver_endpoint, 1.0).goal_state()
    assert time.monotonic() - started < 1.5
    assert "no RoleInstance yet" in str(caught.value)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<GoalState><Incarnation>one</Incarnation></GoalState>", "Incarnation='one'"),
        (b"<GoalState><Incarnation>3</Incarnation></GoalState>", "ContainerId is missing"),
        (
            "<GoalState><Incarnation>²١</Incarnation></GoalState>".encode(),
            "is not a whole number",
        ),
        (b"<Goal><Incarnation>3</Incarnation></Goal>", "root element is <Goal>"),
        (
            b"<GoalState><Incarnation>3</Incarnation><Container><ContainerId>c</ContainerId>"
            b"<RoleInstanceList><RoleInstance><State>Started</State></RoleInstance>"
            b"</RoleInstanceList></Container></GoalState>",
            "InstanceId is missing",
        ),
    ],
)
def test_malformed_goal_state_fails_with_the_field(
    wireserver: WireServer, fabric: SimulatedFabric, document: bytes, expected: str
) -> None:
    fabric.wireserver.script([Answer(200, document)], "/machine/")
    with pytest.raises(FabricError) as caught:
        wireserver.goal_state()
    assert expected in str(caught.value)
    assert caught.value.reason == "malformed_document"
    assert "\n" not in str(caught.value)


def test_goal_state_cut_short_is_fetched_again(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    # A complete 200 whose body is not well-formed XML (a reply cut short) is
    # transient: the next answer is whole, so the call succeeds.
    fabric.wireserver.script([Answer(200, b"<GoalState><Incarnation>3</Incarnation")], "/machine/")
    goal_state = wireserver.goal_state()
    assert goal_state.container_id
    assert len(fabric.requests_to("wireserver")) == 2


def test_goal_state_never_well_formed_times_out_naming_it(fabric: SimulatedFabric) -> None:
    cut = Answer(200, b"<GoalState><Incarnation>3</Incarnation")
    fabric.wireserver.script([cut] * 200, "/machine/")
    with FabricHttp(FAST) as http:
        wireserver = WireServer(http, fabric.wireserver_endpoint, 1.0, fabric.hostplugin.port)
        with pytest.raises(FabricTimeout) as caught:
            wireserver.goal_state()
    assert caught.value.reason == "fabric_timeout"
    assert "goal state: not well-formed XML" in str(caught.value)
    assert len(fabric.requests_to("wireserver")) > 2


# -- hostile documents -------------------------------------------------------------------


def test_entity_bomb_is_refused_at_once_and_not_retried(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.script([Answer(200, BILLION_LAUGHS)] * 3, "/machine/")
    started = time.monotonic()
    with pytest.raises(FabricError) as caught:
        wireserver.goal_state()
    assert time.monotonic() - started < 1.0
    assert caught.value.reason == "hostile_document"
    assert str(caught.value) == "goal state: refused, it carries a DTD"
    assert len(fabric.requests_to("wireserver")) == 1


@pytest.mark.parametrize("shape", [external_entity, external_dtd])
def test_external_references_are_refused_and_never_fetched(
    wireserver: WireServer, fabric: SimulatedFabric, shape: object
) -> None:
    target = ConnectionRecorder()
    try:
        assert callable(shape)
        fabric.wireserver.script([Answer(200, shape(f"{target.url}/evil"))], "/machine/")
        started = time.monotonic()
        with pytest.raises(FabricError) as caught:
            wireserver.goal_state()
        assert time.monotonic() - started < 1.0
        assert caught.value.reason == "hostile_document"
        time.sleep(0.1)
        assert target.received == []
        assert len(fabric.requests_to("wireserver")) == 1
    finally:
        target.close()


# -- health ------------------------------------------------------------------------------


def test_report_ready_fetches_the_goal_state_and_posts_for_it(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    posted_for = wireserver.report_health(Health.ready())
    assert posted_for.incarnation == "1"
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]
    assert [(m, p) for m, p, _ in wire_requests(fabric)] == [
        ("GET", "/machine/?comp=goalstate"),
        ("POST", "/machine?comp=health"),
    ]
    post = fabric.requests_to("wireserver", "/machine?comp=health")[0]
    assert post.headers["content-type"] == "text/xml;charset=utf-8"
    assert post.headers["x-ms-version"] == "2012-11-30"
    assert post.headers["x-ms-agent-name"] == AGENT_NAME


def test_410_fetches_the_new_goal_state_and_posts_for_the_new_incarnation(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    old = wireserver.goal_state()
    fabric.new_incarnation()
    posted_for = wireserver.report_health(Health.ready(), old)
    assert posted_for.incarnation == "2"
    assert wire_requests(fabric) == [
        ("GET", "/machine/?comp=goalstate", 200),
        ("POST", "/machine?comp=health", 410),
        ("GET", "/machine/?comp=goalstate", 200),
        ("POST", "/machine?comp=health", 200),
    ]
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "2")]


def test_health_post_is_retried_on_5xx_and_refusal(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    goal_state = wireserver.goal_state()
    fabric.wireserver.script(
        [Answer(500), Answer(503, headers={"Retry-After": "0"})], "/machine?comp=health"
    )
    wireserver.report_health(Health.failed("disk full"), goal_state)
    assert [r.status for r in fabric.requests_to("wireserver", "/machine?comp=health")] == [
        500,
        503,
        200,
    ]
    (report,) = fabric.health_reports
    assert (report.state, report.substatus, report.description) == (
        "NotReady",
        "ProvisioningFailed",
        "disk full",
    )


def test_endless_410_for_an_unchanged_incarnation_backs_off_and_ends(
    fabric: SimulatedFabric,
) -> None:
    # A WireServer that keeps saying "gone" but keeps serving the same goal state.
    fabric.wireserver.script([Answer(410)] * 1000, "/machine?comp=health")
    started = time.monotonic()
    with FabricHttp(FAST) as http, pytest.raises(FabricError) as caught:
        WireServer(http, fabric.wireserver_endpoint, 2.0).report_health(Health.ready())
    assert time.monotonic() - started < 2.5
    posts = fabric.requests_to("wireserver", "/machine?comp=health")
    assert 3 <= len(posts) <= 20, f"{len(posts)} POSTs in 2 s: the 410 loop does not back off"
    assert "410" in str(caught.value)
    assert caught.value.reason == "fabric_timeout"


def test_health_post_4xx_fails_fast(wireserver: WireServer, fabric: SimulatedFabric) -> None:
    fabric.wireserver.script([Answer(400, b"<Error>InvalidXml</Error>")], "/machine?comp=health")
    with pytest.raises(FabricError) as caught:
        wireserver.report_health(Health.ready())
    assert "HTTP 400" in str(caught.value) and "InvalidXml" in str(caught.value)
    assert len(fabric.requests_to("wireserver", "/machine?comp=health")) == 1
    assert fabric.health_reports == []


def test_fetch_document_uses_the_protocol_headers(
    wireserver: WireServer, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.script([Answer(200, b"<HostingEnvironmentConfig/>")], "/machine/")
    url = f"{fabric.wireserver.base}/machine/c/r?comp=config&type=hostingEnvironmentConfig"
    assert wireserver.fetch_document("hosting config", url) == b"<HostingEnvironmentConfig/>"
    (request,) = fabric.requests_to("wireserver")
    assert request.headers["x-ms-version"] == "2012-11-30"


def test_hostplugin_base_uses_the_wireserver_host() -> None:
    with FabricHttp() as http:
        assert WireServer(http, "10.0.0.5", 5).hostplugin_base == "http://10.0.0.5:32526"
        assert WireServer(http, "10.0.0.5:8080", 5, 9999).hostplugin_base == "http://10.0.0.5:9999"
        ipv6 = WireServer(http, "[fd00::1]:80", 5)
        assert ipv6.base == "http://[fd00::1]:80"
        assert ipv6.hostplugin_base == "http://[fd00::1]:32526"
