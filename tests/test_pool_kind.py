"""Which pool a VM is in (azure-fabric.md §7), over every combination of what
ovf-env.xml and IMDS can say: a kind, or PoolKindUnclear where they disagree."""

from __future__ import annotations

import itertools
import json
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.errors import InvalidInput
from azprov.fabric.imds import InstanceMetadata, parse_instance_metadata
from azprov.fabric.ovf import OvfEnv
from azprov.pool_kind import PoolKind, PoolKindUnclear, pool_kind, pool_summary
from tests.pool_documents import ABSENT, EXTENDED, KINDS, NIL, ovf, pool_imds

UNCLEAR = "unclear"
SILENT = "silent"  # says nothing of a pool either way

# What ovf-env.xml alone says, element by element (PreprovisionedVm, PreprovisionedVMType).
OVF_SAYS = {
    ("true", "None"): UNCLEAR,  # "a pool VM" of type "no pool"
    ("true", "Running"): "Running",
    ("true", "Savable"): "Savable",
    ("true", "PreprovisionedOSDisk"): "PreprovisionedOSDisk",
    ("true", ABSENT): "pool",  # a pool VM from before the type was sent: IMDS may name it
    ("true", NIL): "pool",
    ("false", "None"): "None",
    ("false", "Running"): UNCLEAR,
    ("false", "Savable"): UNCLEAR,
    ("false", "PreprovisionedOSDisk"): UNCLEAR,
    ("false", ABSENT): "None",
    ("false", NIL): "None",
    (ABSENT, "None"): "None",
    (ABSENT, "Running"): "Running",
    (ABSENT, "Savable"): "Savable",
    (ABSENT, "PreprovisionedOSDisk"): "PreprovisionedOSDisk",
    (ABSENT, ABSENT): SILENT,
    (ABSENT, NIL): SILENT,
}
NO_PPS_TYPE: dict[str, dict[str, str]] = {"compute": {}}
IMDS_STATES = [*KINDS, NO_PPS_TYPE, ABSENT]  # a value, extended without it, no extended


def imds_says(extended: object) -> str:
    return SILENT if extended in (NO_PPS_TYPE, ABSENT) else str(extended)


def expected(ovf_says: str, imds: str) -> str:
    """The rule: the two sources agree or one is silent; a bare PreprovisionedVm=true is
    a pool whose kind IMDS may name (Running when it names none); else unclear."""
    if ovf_says == UNCLEAR:
        return UNCLEAR
    if ovf_says == "pool":
        return {"None": UNCLEAR, SILENT: "Running"}.get(imds, imds)
    if ovf_says == SILENT:
        return "None" if imds == SILENT else imds
    if imds == SILENT:
        return ovf_says
    return ovf_says if ovf_says == imds else UNCLEAR


def imds_of(extended: object) -> InstanceMetadata:
    """IMDS's document with `extended` as one of IMDS_STATES, or ppsType set to it."""
    if extended is ABSENT or extended == NO_PPS_TYPE:
        return parse_instance_metadata(pool_imds(extended))
    return parse_instance_metadata(pool_imds({"compute": {"ppsType": extended}}))


def label(value: object) -> str:
    return "absent" if value is ABSENT else "nil" if value is NIL else json.dumps(value)


def outcome(media: Optional[OvfEnv], extended: object) -> str:
    try:
        return pool_kind(media, imds_of(extended)).value
    except PoolKindUnclear as exc:
        assert exc.reason == "pool_kind_contradictory"
        assert exc.supporting_data["field"] in (
            "ovf-env.PreprovisionedVMType",
            "imds.extended.compute.ppsType",
        )
        return UNCLEAR


CASES = [
    pytest.param(flag, kind, extended, id=f"{label(flag)}-{label(kind)}-{label(extended)}")
    for (flag, kind), extended in itertools.product(OVF_SAYS, IMDS_STATES)
]


@pytest.mark.parametrize("flag, kind, extended", CASES)
def test_every_combination_of_ovf_and_imds(flag: object, kind: object, extended: object) -> None:
    want = expected(OVF_SAYS[flag, kind], imds_says(extended))
    assert outcome(ovf(flag, kind), extended) == want


@pytest.mark.parametrize("extended", IMDS_STATES, ids=label)
def test_without_media_imds_alone_decides(extended: object) -> None:
    said = imds_says(extended)
    assert outcome(None, extended) == ("None" if said == SILENT else said)


def test_the_table_holds_the_cases_that_matter_literally() -> None:
    # A few rows spelled out, so a wrong rule above cannot hide a wrong table.
    assert outcome(ovf("true", "Savable"), "Savable") == "Savable"
    assert outcome(ovf("true", ABSENT), ABSENT) == "Running"
    assert outcome(ovf("true", ABSENT), "Savable") == "Savable"  # the platform agent's order
    assert outcome(ovf("true", NIL), "PreprovisionedOSDisk") == "PreprovisionedOSDisk"
    assert outcome(ovf("true", ABSENT), "None") == UNCLEAR
    assert outcome(ovf(ABSENT, "Savable"), "Running") == UNCLEAR
    assert outcome(ovf("false", NIL), "Savable") == UNCLEAR
    assert outcome(ovf("false", NIL), "None") == "None"
    assert outcome(ovf(ABSENT, ABSENT), ABSENT) == "None"


def test_the_contradiction_names_both_sources() -> None:
    with pytest.raises(PoolKindUnclear) as caught:
        pool_kind(ovf("true", "Savable"), imds_of("Running"))
    message = str(caught.value)
    assert "'Savable'" in message and "'Running'" in message and "ppsType" in message
    assert caught.value.supporting_data == {
        "field": "imds.extended.compute.ppsType",
        "value": "Running",
    }
    with pytest.raises(PoolKindUnclear, match="PreprovisionedVm=true") as inner:
        pool_kind(ovf("true", "None"), imds_of("None"))
    assert inner.value.supporting_data["field"] == "ovf-env.PreprovisionedVMType"


_TEXT = st.one_of(
    st.just(ABSENT), st.just(NIL), st.sampled_from(["true", "false", *KINDS]), st.text()
)


@settings(max_examples=400, deadline=None)
@given(flag=_TEXT, kind=_TEXT, extended=st.one_of(st.just(ABSENT), EXTENDED))
def test_any_documents_give_a_kind_or_a_typed_refusal(
    flag: object, kind: object, extended: object
) -> None:
    try:
        kind_found = pool_kind(ovf(flag, kind), parse_instance_metadata(pool_imds(extended)))
    except (InvalidInput, PoolKindUnclear) as exc:
        assert exc.supporting_data or "=" in str(exc)
        return
    assert isinstance(kind_found, PoolKind)


def test_the_summary_keeps_the_kind_and_the_seconds_waited() -> None:
    entry = {"kind": "Savable", "ready_at": 1_700_000_000.0, "data_at": 1_700_000_012.3456}
    assert pool_summary(entry) == {
        "kind": "Savable",
        "ready_at": "2023-11-14T22:13:20Z",
        "waited_seconds": 12.346,
    }
    assert pool_summary({"kind": "Running", "ready_at": "garbage"})["waited_seconds"] is None
