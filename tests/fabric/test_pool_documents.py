"""What ovf-env.xml and IMDS say about a pre-provisioned pool, parsed directly
(azure-fabric.md §7): ovf-env's PlatformSettings (PreprovisionedVm,
PreprovisionedVMType) and IMDS's extended.compute.ppsType, each strict, and the
request id every reprovisiondata request carries."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.errors import InvalidInput
from azprov.fabric.imds import parse_instance_metadata, request_id
from azprov.fabric.ovf import parse_ovf_env
from azprov.simulator.documents import ovf_env_xml
from tests.pool_documents import ABSENT, EXTENDED, KINDS, NIL, ovf, pool_imds, pool_ovf

# -- ovf-env.xml ---------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["true", "false", "True", "FALSE", ABSENT, NIL])
@pytest.mark.parametrize("kind", [*KINDS, ABSENT, NIL])
def test_ovf_platform_settings_are_read_as_sent(flag: object, kind: object) -> None:
    parsed = ovf(flag, kind)
    expected_flag = None if flag in (ABSENT, NIL) else str(flag).lower() == "true"
    assert parsed.preprovisioned_vm is expected_flag
    assert parsed.preprovisioned_vm_type == (None if kind in (ABSENT, NIL) else kind)


def test_a_document_without_platform_settings_says_nothing_of_a_pool() -> None:
    document = re.sub(
        rb"\s*<ns1:PlatformSettingsSection>.*</ns1:PlatformSettingsSection>",
        b"",
        ovf_env_xml(),
        flags=re.DOTALL,
    )
    assert b"PlatformSettings" not in document
    parsed = parse_ovf_env(document)
    assert (parsed.preprovisioned_vm, parsed.preprovisioned_vm_type) == (None, None)


def test_surrounding_whitespace_is_not_part_of_the_values() -> None:
    parsed = ovf("\n  true \n", "\n  Savable  ")
    assert (parsed.preprovisioned_vm, parsed.preprovisioned_vm_type) == (True, "Savable")


@pytest.mark.parametrize("flag", ["yes", "1", "tru", "true false", "Running"])
def test_a_preprovisioned_vm_flag_that_is_no_boolean_names_the_field(flag: str) -> None:
    with pytest.raises(InvalidInput, match=r"ovf-env\.PreprovisionedVm=") as caught:
        ovf(flag, ABSENT)
    assert caught.value.reason == "invalid_input"


@pytest.mark.parametrize(
    "kind", ["savable", "RUNNING", "OSDisk", "Preprovisioned OS Disk", "Unknown", "true"]
)
def test_an_unknown_pool_type_names_the_field(kind: str) -> None:
    # XML is case-sensitive and so is the platform: a near miss is refused, not guessed.
    with pytest.raises(InvalidInput, match=r"ovf-env\.PreprovisionedVMType="):
        ovf("true", kind)


def test_azure_inits_spelling_of_the_type_element_is_not_the_platforms() -> None:
    document = pool_ovf("true", ABSENT).replace(
        b"</ns1:PlatformSettings>",
        b"<ns1:PreprovisionedVmType>Savable</ns1:PreprovisionedVmType></ns1:PlatformSettings>",
    )
    assert parse_ovf_env(document).preprovisioned_vm_type is None


@settings(max_examples=300, deadline=None)
@given(
    flag=st.one_of(st.just(ABSENT), st.just(NIL), st.text()),
    kind=st.one_of(st.just(ABSENT), st.just(NIL), st.text()),
)
def test_any_text_in_the_two_elements_is_a_value_or_invalid_input(
    flag: object, kind: object
) -> None:
    try:
        parsed = ovf(flag, kind)
    except InvalidInput as exc:
        assert re.search(r"ovf-env\.(PreprovisionedVm|PreprovisionedVMType)=", str(exc)), str(exc)
        return
    assert parsed.preprovisioned_vm in (None, True, False)
    assert parsed.preprovisioned_vm_type in (None, *KINDS)


# -- IMDS ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_imds_pps_type_is_read(kind: str) -> None:
    assert parse_instance_metadata(pool_imds({"compute": {"ppsType": kind}})).pps_type == kind


@pytest.mark.parametrize(
    "extended",
    [ABSENT, None, {}, {"compute": None}, {"compute": {}}, {"compute": {"ppsType": None}}],
    ids=["no-extended", "extended-null", "empty", "compute-null", "no-ppsType", "ppsType-null"],
)
def test_imds_without_a_pps_type_says_nothing(extended: object) -> None:
    assert parse_instance_metadata(pool_imds(extended)).pps_type is None


@pytest.mark.parametrize("value", ["savable", "", "Savable ", 1, True, ["Savable"], {"x": 1}])
def test_an_unknown_pps_type_names_the_field(value: object) -> None:
    with pytest.raises(InvalidInput, match=r"imds\.extended\.compute\.ppsType="):
        parse_instance_metadata(pool_imds({"compute": {"ppsType": value}}))


@pytest.mark.parametrize("compute", ["Savable", 1, ["Savable"], True])
def test_an_extended_compute_that_is_no_object_names_the_field(compute: object) -> None:
    with pytest.raises(InvalidInput, match=r"imds\.extended\.compute="):
        parse_instance_metadata(pool_imds({"compute": compute}))


@pytest.mark.parametrize("extended", ["Savable", 1, [{"compute": {"ppsType": "Savable"}}], True])
def test_an_extended_that_is_no_object_names_the_field(extended: object) -> None:
    # Not read as "no pool": a pool VM that took it so would provision the placeholder.
    with pytest.raises(InvalidInput, match=r"imds\.extended="):
        parse_instance_metadata(pool_imds(extended))


@settings(max_examples=300, deadline=None)
@given(extended=EXTENDED)
def test_any_json_for_extended_is_a_pool_type_or_invalid_input(extended: object) -> None:
    try:
        parsed = parse_instance_metadata(pool_imds(extended))
    except InvalidInput as exc:
        assert str(exc).startswith("imds.extended"), str(exc)
        return
    assert parsed.pps_type in (None, *KINDS)


# -- the request id --------------------------------------------------------------------


def test_request_ids_are_random_uuid4_in_canonical_form() -> None:
    ids = [request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower-case hex, 8-4-4-4-12
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
