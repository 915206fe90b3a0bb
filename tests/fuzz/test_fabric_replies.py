"""Fuzzing what the fabric's servers send back, through the client code that reads it.

The replies go through the real `FabricHttp.call` (only the socket is replaced),
so what is checked is what a caller sees: a value, or an AzprovError (a reply
worth another try ends, with one try allowed, as FabricTimeout).
"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.errors import AzprovError
from azprov.fabric.hostplugin import HostPlugin
from azprov.fabric.http import Deadline, Retry, RetryPolicy
from azprov.fabric.imds import Imds, parse_instance_metadata
from azprov.fabric.models import GoalState
from azprov.fabric.retry import retry_after
from azprov.fabric.transport import header_map
from azprov.fabric.wireserver import WireServer
from azprov.simulator.documents import VmSpec, goal_state_xml, imds_instance
from tests.fuzz.hostile import (
    CannedHttp,
    counts,
    deep_json,
    examples,
    hostile_text,
    json_values,
    peak_allocation,
    repeated,
    typed_outcome,
)

DEADLINE = timedelta(seconds=2)
GOAL_STATE = GoalState("1", "container", "instance", "config.xml")


def statuses() -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([200, 201, 400, 404, 410, 429, 500, 503]), st.integers(100, 999)
    )


# -- IMDS --------------------------------------------------------------------------------------


@st.composite
def imds_documents(draw: st.DrawFn) -> bytes:
    """The real instance document with some fields replaced by any JSON at all."""
    document = imds_instance(VmSpec())
    compute = document["compute"]
    assert isinstance(compute, dict)
    targets = [
        (compute, "vmId"),
        (compute, "name"),
        (compute, "userData"),
        (compute, "publicKeys"),
        (compute, "osProfile"),
        (compute["osProfile"], "computerName"),
        (compute["osProfile"], "adminUsername"),
        (compute["osProfile"], "disablePasswordAuthentication"),
        (compute["publicKeys"][0], "keyData"),
        (compute["publicKeys"][0], "path"),
        (document, "compute"),
    ]
    for holder, key in draw(st.lists(st.sampled_from(targets), min_size=1, max_size=4)):
        holder[key] = draw(json_values())
    if (
        draw(st.booleans())
        and isinstance(compute, dict)
        and isinstance(compute.get("publicKeys"), list)
    ):
        compute["publicKeys"] = compute["publicKeys"] * draw(counts(2_000))
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32"])))


@settings(max_examples=examples(300), deadline=DEADLINE)
@given(st.one_of(st.binary(max_size=2048), deep_json().map(str.encode)))
def test_imds_of_any_bytes_is_metadata_or_a_typed_error(content: bytes) -> None:
    typed_outcome(parse_instance_metadata, content, signals=(Retry,))


@settings(max_examples=examples(200), deadline=DEADLINE)
@given(imds_documents())
def test_imds_near_valid_is_metadata_or_a_typed_error(content: bytes) -> None:
    typed_outcome(parse_instance_metadata, content, signals=(Retry,))


@settings(max_examples=examples(60), deadline=DEADLINE)
@given(statuses(), st.one_of(imds_documents(), st.binary(max_size=512)))
def test_imds_reply_reaches_the_caller_as_metadata_or_a_typed_error(
    status: int, content: bytes
) -> None:
    with CannedHttp(status, content) as http:
        typed_outcome(Imds(http, "http://127.0.0.1/metadata", 1).instance_metadata)


JSON_BYTES_PER_BYTE = 64
SLACK = 256 * 1024


@settings(
    max_examples=examples(12), deadline=None
)  # tracemalloc slows it tenfold: the time is not the point
@given(
    st.one_of(
        repeated(st.sampled_from(["[]", "{}", '"",', "1.5,", '{"keyData":"a"},']), 200_000),
        deep_json(),
    )
)
def test_imds_memory_is_linear_in_the_document(body: str) -> None:
    content = ('{"compute":{"publicKeys":[' + body + "]}}").encode()
    peak = peak_allocation(lambda: parse_instance_metadata(content))
    assert peak <= JSON_BYTES_PER_BYTE * len(content) + SLACK, (
        f"{len(content)} bytes of JSON took {peak} bytes at the peak"
    )


# -- the WireServer ----------------------------------------------------------------------------


@settings(max_examples=examples(150), deadline=DEADLINE)
@given(
    statuses(),
    st.one_of(
        st.binary(max_size=2048),
        st.just(goal_state_xml(VmSpec(), "http://127.0.0.1")),
        hostile_text().map(lambda t: goal_state_xml(VmSpec(container_id=t), "http://x")),
    ),
)
def test_goal_state_reply_reaches_the_caller_as_a_goal_state_or_a_typed_error(
    status: int, content: bytes
) -> None:
    with CannedHttp(status, content) as http:
        typed_outcome(WireServer(http, "127.0.0.1", 1).goal_state)


@settings(max_examples=examples(100), deadline=DEADLINE)
@given(statuses(), st.binary(max_size=2048))
def test_health_report_reply_is_taken_or_a_typed_error(status: int, content: bytes) -> None:
    """The health POST's answer is not parsed; only its status matters, never its body."""
    with CannedHttp(status, content) as http:
        wireserver = WireServer(http, "127.0.0.1", 1)
        try:
            from azprov.fabric.wireserver import Health

            wireserver.report_health(Health.ready(), GOAL_STATE, Deadline(0.5))
        except AzprovError:
            pass


# -- the HostGAPlugin --------------------------------------------------------------------------


@settings(max_examples=examples(200), deadline=DEADLINE)
@given(
    statuses(),
    st.one_of(
        st.binary(max_size=1024),
        json_values().map(lambda v: json.dumps(v).encode()),
        deep_json().map(str.encode),
        st.just(b'["2015-09-01", "2012-11-30"]'),
    ),
)
def test_hostplugin_versions_reply_is_a_yes_or_no_never_a_crash(
    status: int, content: bytes
) -> None:
    with CannedHttp(status, content) as http:
        assert HostPlugin(http, "http://127.0.0.1:32526", 1).usable() in (True, False)


@settings(max_examples=examples(150), deadline=DEADLINE)
@given(statuses(), st.binary(max_size=2048), st.sampled_from(["artifact", "status"]))
def test_hostplugin_artifact_and_status_replies_are_a_reply_or_a_typed_error(
    status: int, content: bytes, call: str
) -> None:
    with CannedHttp(status, content) as http:
        plugin = HostPlugin(http, "http://127.0.0.1:32526", 1)
        if call == "artifact":
            typed_outcome(
                plugin.fetch_artifact,
                "manifest",
                "https://x/y?sig=s",
                GOAL_STATE,
                max_bytes=1 << 20,
            )
        else:
            typed_outcome(
                plugin.put_status,
                "https://x/y?sig=s",
                {"x-ms-blob-type": "BlockBlob"},
                b"{}",
                GOAL_STATE,
            )


# -- headers every reply carries ---------------------------------------------------------------


@settings(max_examples=examples(300), deadline=DEADLINE)
@given(
    st.one_of(
        hostile_text(),
        st.text(st.characters(max_codepoint=0xFF)),
        st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
        st.builds(
            "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
            st.sampled_from(["Mon", "Xyz", ""]),
            st.integers(-1, 99),
            st.sampled_from(["Jan", "Feb", "Dec", "Foo"]),
            st.integers(-99999, 99999),
            st.integers(-1, 99),
            st.integers(-1, 99),
            st.integers(-1, 99),
            st.sampled_from(["GMT", "+0000", "-2359", "+9999", "-99999999", "EST", "Z"]),
        ),
    )
)
def test_retry_after_is_a_bounded_delay_or_none(value: str) -> None:
    policy = RetryPolicy()
    delay = retry_after(value, policy)
    assert delay is None or 0.0 <= delay <= policy.max_retry_after


@settings(max_examples=examples(100), deadline=DEADLINE)
@given(st.lists(st.tuples(st.binary(max_size=64), st.binary(max_size=256)), max_size=50))
def test_reply_headers_always_map_to_text(raw: list[tuple[bytes, bytes]]) -> None:
    headers = header_map(raw)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
