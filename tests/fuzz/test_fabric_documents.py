"""Fuzzing the fabric's XML: the safe parser, the goal state and ovf-env.xml.

Each parser gets arbitrary bytes, and near-valid documents: the real skeleton
(as the WireServer and the provisioning media write it) with each field drawn
from hostile values, wrapped in hostile prologs and encodings.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.fabric.models import RoleInstanceMissing, parse_goal_state
from azprov.fabric.ovf import parse_ovf_env
from azprov.fabric.xmldoc import parse_xml
from tests.fuzz.hostile import (
    counts,
    encode,
    examples,
    peak_allocation,
    repeated,
    typed_outcome,
    xml_encodings,
    xml_fields,
    xml_prolog,
)

DEADLINE = timedelta(seconds=2)


def goal_state_document(
    incarnation: str, container: str, instance: str, config: str, extra: str
) -> str:
    return f"""<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>{incarnation}</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
    <LBProbePorts><Port>16001</Port></LBProbePorts>
    <ExpectHealthReport>FALSE</ExpectHealthReport>
  </Machine>
  <Container>
    <ContainerId>{container}</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>{instance}</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>{config}</HostingEnvironmentConfig>
          <SharedConfig>{config}</SharedConfig>
          <ExtensionsConfig>{config}</ExtensionsConfig>
          <FullConfig>{config}</FullConfig>
          <Certificates>{config}</Certificates>
          <ConfigName>{config}</ConfigName>
        </Configuration>{extra}
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
"""


def ovf_document(fields: dict[str, str], keys: str, extra: str) -> str:
    values = "\n".join(f"      <ns1:{name}>{value}</ns1:{name}>" for name, value in fields.items())
    return f"""<ns0:Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <ns1:ProvisioningSection>
    <ns1:Version>1.0</ns1:Version>
    <ns1:LinuxProvisioningConfigurationSet>
      <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
{values}
      <ns1:SSH><ns1:PublicKeys>{keys}</ns1:PublicKeys></ns1:SSH>{extra}
    </ns1:LinuxProvisioningConfigurationSet>
  </ns1:ProvisioningSection>
  <ns1:PlatformSettingsSection>
    <ns1:Version>1.0</ns1:Version>
    <ns1:PlatformSettings>
      <ns1:KmsServerHostname>kms.core.windows.net</ns1:KmsServerHostname>
      <ns1:ProvisionGuestAgent>false</ns1:ProvisionGuestAgent>
      <ns1:GuestAgentPackageName xsi:nil="true" />
      <ns1:PreprovisionedVm>false</ns1:PreprovisionedVm>
    </ns1:PlatformSettings>
  </ns1:PlatformSettingsSection>
</ns0:Environment>
"""


@st.composite
def goal_states(draw: st.DrawFn) -> bytes:
    fields = draw(xml_fields(["Incarnation", "ContainerId", "InstanceId", "Configuration"]))
    if draw(st.booleans()):
        fields["Incarnation"] = str(draw(st.integers(0, 2**70)))
    document = goal_state_document(
        fields["Incarnation"],
        fields["ContainerId"],
        fields["InstanceId"],
        fields["Configuration"],
        draw(st.sampled_from(["", "<RoleInstance><InstanceId>2</InstanceId></RoleInstance>"])),
    )
    if draw(st.integers(0, 9)) == 0:  # another root element, maybe a huge one
        name = draw(
            st.one_of(
                st.from_regex(r"[A-Za-z_][\w.-]{0,20}", fullmatch=True), st.just("G" * 100_000)
            )
        )
        document = document.replace("GoalState", name)
    if draw(st.booleans()):  # the RoleInstance not there yet, as right after boot
        document = document.replace("<RoleInstanceList>", "<RoleInstanceList><!--", 1).replace(
            "</RoleInstanceList>", "--></RoleInstanceList>", 1
        )
    return encode(draw(xml_prolog()) + document, draw(xml_encodings()))


OVF_FIELDS = [
    "HostName",
    "UserName",
    "UserPassword",
    "DisableSshPasswordAuthentication",
    "CustomData",
]
KEY_FIELDS = ["Fingerprint", "Path", "Value"]


@st.composite
def ovf_envs(draw: st.DrawFn) -> bytes:
    present = draw(st.lists(st.sampled_from(OVF_FIELDS), unique=True))
    fields = draw(xml_fields(present))
    if "CustomData" in fields and draw(st.booleans()):
        fields["CustomData"] = draw(
            st.sampled_from(
                ["Y2xvdWQtY29uZmlnCg==", "Y2xv\nZC1j\r\nb25m", "Y2xv ZC1", "=", "===="]
            )
        ) * draw(counts(10_000))
    keys = "".join(
        "<ns1:PublicKey>"
        + "".join(f"<ns1:{n}>{v}</ns1:{n}>" for n, v in draw(xml_fields(KEY_FIELDS)).items())
        + "</ns1:PublicKey>"
        for _ in range(draw(st.integers(0, 3)))
    )
    if len(keys) < 10_000:
        keys *= draw(st.sampled_from([1, 1, 1000]))
    extra = draw(st.sampled_from(["", "<ns1:HostName>second</ns1:HostName>", "<x/>" * 10_000]))
    document = ovf_document(fields, keys, extra)
    return encode(draw(xml_prolog()) + document, draw(xml_encodings()))


# -- the XML layer -----------------------------------------------------------------------------


@settings(max_examples=examples(500), deadline=DEADLINE)
@given(st.binary(max_size=4096))
def test_parse_xml_of_any_bytes_is_an_element_or_a_typed_error(content: bytes) -> None:
    typed_outcome(parse_xml, content, "document")


@settings(max_examples=examples(150), deadline=DEADLINE)
@given(st.one_of(goal_states(), ovf_envs()))
def test_parse_xml_of_near_valid_documents_is_an_element_or_a_typed_error(content: bytes) -> None:
    typed_outcome(parse_xml, content, "document")


# -- the goal state ----------------------------------------------------------------------------


@settings(max_examples=examples(500), deadline=DEADLINE)
@given(st.binary(max_size=4096))
def test_goal_state_of_any_bytes_is_a_value_or_a_typed_error(content: bytes) -> None:
    typed_outcome(parse_goal_state, content, signals=(RoleInstanceMissing,))


@settings(max_examples=examples(200), deadline=DEADLINE)
@given(goal_states())
def test_goal_state_near_valid_is_a_value_or_a_typed_error(content: bytes) -> None:
    state = typed_outcome(parse_goal_state, content, signals=(RoleInstanceMissing,))
    if state is not None:
        assert state.incarnation.isascii() and state.incarnation.isdigit()
        assert state.container_id and state.instance_id


# -- ovf-env.xml -------------------------------------------------------------------------------


@settings(max_examples=examples(500), deadline=DEADLINE)
@given(st.binary(max_size=4096))
def test_ovf_env_of_any_bytes_is_a_value_or_a_typed_error(content: bytes) -> None:
    typed_outcome(parse_ovf_env, content)


@settings(max_examples=examples(200), deadline=DEADLINE)
@given(ovf_envs())
def test_ovf_env_near_valid_is_a_value_or_a_typed_error(content: bytes) -> None:
    env = typed_outcome(parse_ovf_env, content)
    if env is not None and env.custom_data is not None:
        assert len(env.custom_data) <= len(content)


# -- memory: no document costs more than a constant times its size ----------------------------

# An element of a few bytes becomes an object of about a hundred: the bound is
# linear, and an expansion (entities, a decoder that multiplies) breaks it.
XML_BYTES_PER_BYTE = 64
SLACK = 256 * 1024


@st.composite
def big_xml(draw: st.DrawFn) -> bytes:
    fragment = draw(
        st.sampled_from(["<a/>", '<a b="c"/>', "<a>", "x", "&amp;", "<![CDATA[x]]>", "<!--x-->"])
    )
    body = draw(repeated(st.just(fragment), 200_000))
    which = draw(st.sampled_from(["goal", "ovf", "bare"]))
    if which == "goal":
        return goal_state_document("1", "c", "i", body, "").encode()
    if which == "ovf":
        return ovf_document({"HostName": body}, "", "").encode()
    return f"<r>{body}</r>".encode()


@settings(
    max_examples=examples(12), deadline=None
)  # tracemalloc slows it tenfold: the time is not the point
@given(big_xml())
def test_fabric_xml_memory_is_linear_in_the_document(content: bytes) -> None:
    def parse_all() -> None:
        for parse in (
            lambda: parse_goal_state(content),
            lambda: parse_ovf_env(content),
        ):
            with contextlib.suppress(Exception):
                parse()

    peak = peak_allocation(parse_all)
    assert peak <= XML_BYTES_PER_BYTE * len(content) + SLACK, (
        f"{len(content)} bytes of XML took {peak} bytes at the peak"
    )
