"""Properties of the vmSettings parser: whatever the HostGAPlugin sends ends as a goal or as
one of azprov's one-line errors (never a traceback); and what a well-formed document
asks for is what the goal holds, settings as sent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.errors import AzprovError
from azprov.extensions.goal import ExtensionsGoal
from azprov.extensions.sources import SourcedGoal, choose
from azprov.extensions.vmsettings import parse_vm_settings

FAST = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The keys of the contract, in the spellings seen, so the fuzz reaches the parser's
# branches instead of stopping at unknown keys.
_KEYS = st.sampled_from([
    "hostGAPluginVersion", "extensionsLastModifiedTickCount", "extensionGoalStatesSource",
    "onHold", "statusUploadBlob", "statusBlobType", "value", "requiredFeatures", "name",
    "inSvdSeqNo", "extensionGoalStates", "version", "location", "failoverlocation",
    "additionalLocations", "state", "settingsSeqNo", "isMultiConfig", "settings",
    "publicSettings", "protectedSettings", "protectedSettingsCertThumbprint", "dependsOn",
    "DependsOnExtension", "dependencyLevel", "handler",
])  # fmt: skip
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["enabled", "uninstall", "BlockBlob", "https://h/x", "1.0", "{}", "A.B"]),
    st.text(max_size=12),
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=40,
)


@FAST
@given(document=st.dictionaries(_KEYS, _JSON, max_size=8))
def test_any_document_is_a_goal_or_a_one_line_error(document: dict[str, Any]) -> None:
    try:
        sourced = parse_vm_settings(json.dumps(document).encode(), "etag")
    except AzprovError as exc:
        assert "\n" not in str(exc)
        return
    for plugin in sourced.goal.plugins:
        assert plugin.invalid is None or "\n" not in plugin.invalid
        if plugin.settings is not None:
            json.loads(plugin.settings)  # the handler's settings file is always JSON


_NAMES = st.from_regex(r"[A-Z][a-z]{1,6}\.[A-Z][a-z]{1,6}", fullmatch=True)
_PUBLIC = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none()),
    max_size=4,
)


@FAST
@given(
    extensions=st.dictionaries(
        _NAMES,
        st.tuples(
            st.sampled_from(["enabled", "disabled", "uninstall"]),
            st.integers(min_value=0, max_value=2**31 - 1),
            _PUBLIC,
            st.integers(min_value=0, max_value=5),
        ),
        max_size=5,
    ),
    created=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_what_a_document_asks_for_is_what_the_goal_holds(
    extensions: dict[str, tuple[str, int, dict[str, Any], int]], created: int
) -> None:
    names = {name.lower(): name for name in extensions}  # one per name, whatever its case
    document = {
        "extensionsLastModifiedTickCount": created,
        "extensionGoalStatesSource": "FastTrack",
        "extensionGoalStates": [
            {
                "name": name,
                "version": "1.0",
                "location": f"https://example.net/{name}.xml",
                "state": state,
                "settingsSeqNo": seq_no,
                "settings": [{"publicSettings": json.dumps(public)}],
                "dependsOn": [{"dependsOnExtension": [], "dependencyLevel": level}],
            }
            for name, (state, seq_no, public, level) in extensions.items()
            if name in names.values()
        ],
    }
    sourced = parse_vm_settings(json.dumps(document).encode(), "e")
    assert sourced.created == created
    got = {
        p.name: (
            p.state,
            p.seq_no,
            json.loads(p.settings or "")["runtimeSettings"][0]["handlerSettings"][
                "publicSettings"
            ],
            p.dependency_level,
        )
        for p in sourced.goal.plugins
        if p.refusal is None
    }
    assert got == {name: extensions[name] for name in names.values()}


@FAST
@given(
    rounds=st.lists(
        st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=50)), max_size=2),
        max_size=12,
    )
)
def test_the_goal_in_effect_is_never_replaced_by_an_older_one(
    rounds: list[list[tuple[bool, int]]],
) -> None:
    """Whatever arrives round after round (an ExtensionsConfig, vmSettings, or both), the
    creation time of the goal in effect never goes back, and a newer arrival always runs."""
    empty = ExtensionsGoal((), None, "BlockBlob", ())
    current: Optional[SourcedGoal] = None
    for number, arrivals in enumerate(rounds):
        candidates = [
            SourcedGoal(empty, f"etag_{number}" if fast else str(number), created)
            for fast, created in arrivals
        ]
        chosen = choose(current, candidates)
        if not candidates:  # nothing new: the goal in effect stays
            assert chosen is current
            continue
        if chosen is None:
            assert current is not None and max(c.created for c in candidates) < current.created
            continue
        if current is not None:
            assert chosen.created >= current.created
        assert chosen.created == max(c.created for c in candidates)
        current = chosen
