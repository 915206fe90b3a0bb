"""Properties of the readers of what handlers and earlier runs leave on disk.

For any bytes in a handler's status file or heartbeat, in azprov's state file,
or in one plugin's settings: the reader gives a value, or that item's own error,
within a deadline, and never anything that could stop the round or spoil the
status document uploaded for every handler (an exception, NaN, a huge number).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.extensions.goal import parse_extensions_config
from azprov.extensions.handler import HandlerFolder
from azprov.extensions.memory import Memory
from azprov.extensions.status_files import (
    STATUS_FILE_MAX_BYTES,
    parse_heartbeat,
    parse_status,
    read_status_file,
)
from azprov.host.root import TargetRoot
from azprov.jsondoc import MAX_DEPTH, UnusableJson, nesting_depth, parse_json

DEADLINE = timedelta(seconds=2)
FAST = settings(
    max_examples=200,
    deadline=DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["\u00b2", "9" * 5000, "-0", " 12 ", "\ud800", "success", "Ready"]),
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_RAW_NUMBERS = st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "9" * 5000, "0.5", "-7"])


def _status_like(status: Any, code: str) -> str:
    """A status file's shape around hostile values; `code` is spliced in as raw JSON text."""
    document = [{"version": 1.0, "timestampUTC": "2026-01-01T00:00:00Z", "status": status}]
    return json.dumps(document).replace('"@CODE@"', code)


@st.composite
def status_contents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "shaped", "deep", "brackets_in_strings"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    if kind == "shaped":
        status = {
            "name": draw(_JSON),
            "operation": draw(_JSON),
            "status": draw(st.sampled_from(["success", "error", "splendid", None, 1])),
            "code": "@CODE@",
            "formattedMessage": draw(
                st.one_of(_JSON, st.fixed_dictionaries({"message": st.text(max_size=2000)}))
            ),
            "substatus": draw(st.one_of(st.none(), st.lists(_JSON, max_size=3))),
        }
        code = draw(st.one_of(_RAW_NUMBERS, _LEAVES.map(json.dumps)))
        return _status_like(status, code).encode()
    if kind == "deep":
        opener = draw(st.sampled_from(["[", '{"a":', '[{"status":']))
        return (opener * draw(st.integers(1, 20_000))).encode()
    # Brackets inside strings do not nest: the depth check must not count them.
    text = draw(st.text(alphabet='[]{}"\\ab', max_size=200))
    return json.dumps([{"status": {"status": "success", "name": text}}]).encode()


@FAST
@given(status_contents())
def test_any_status_file_is_a_status_or_that_files_own_error(content: bytes) -> None:
    status = parse_status(content, "1.status", "Pub.Ext")
    assert status["status"] in ("transitioning", "warning", "error", "success")
    if status["status"] == "error" and "malformed" in status["formattedMessage"]["message"]:
        assert status["formattedMessage"]["message"].startswith("1.status is malformed: ")
    code = status["code"]
    assert (isinstance(code, int) and -(2**31) <= code < 2**31) or (
        isinstance(code, str) and len(code) <= 40
    )
    # What is uploaded stays strict JSON, and what is logged stays encodable.
    json.dumps(status, allow_nan=False).encode()
    status["formattedMessage"]["message"].encode("utf-8")


@FAST
@given(status_contents())
def test_any_heartbeat_is_ready_or_not_with_an_encodable_message(content: bytes) -> None:
    ready, message = parse_heartbeat(content)
    assert isinstance(ready, bool)
    message.encode("utf-8")


# Around the cap: built by repetition, which Hypothesis does cheaply.
_NEAR_CAP = st.builds(
    lambda fill, delta: fill * (STATUS_FILE_MAX_BYTES + delta),
    st.sampled_from([b" ", b"[", b"a"]),
    st.integers(-8, 8),
)


@settings(max_examples=60, deadline=DEADLINE)
@given(st.one_of(status_contents(), _NEAR_CAP))
def test_a_status_file_on_disk_is_read_into_a_status_whatever_it_holds(
    tmp_path_factory: Any, content: bytes
) -> None:
    root = tmp_path_factory.mktemp("root")
    folder = HandlerFolder(TargetRoot(root), "/var/lib/waagent", "/var/log/azure", "P.E", "1.0")
    status_dir = Path(folder.path) / "status"
    status_dir.mkdir(parents=True)
    (status_dir / "1.status").write_bytes(content)
    status = read_status_file(folder, 1)
    assert status["status"] in ("transitioning", "warning", "error", "success")
    json.dumps(status, allow_nan=False)


@st.composite
def memory_contents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "shaped", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    if kind == "deep":
        return ('{"version": 1, "plugins": ' + "[" * draw(st.integers(1, 50_000))).encode()
    saved = {
        "version": draw(st.sampled_from([1, 1, 2, "1", None])),
        "incarnation": draw(st.one_of(st.text(max_size=8), _JSON)),
        "channels": draw(st.one_of(_JSON, st.lists(st.sampled_from(["storage", "HostGAPlugin"])))),
        "plugins": draw(st.one_of(_JSON, st.dictionaries(st.text(max_size=8), _JSON, max_size=3))),
    }
    kept = draw(st.sets(st.sampled_from(sorted(saved))))
    return json.dumps({key: saved[key] for key in sorted(kept)}).encode()


@FAST
@given(memory_contents())
def test_any_state_file_is_a_memory_or_a_fresh_start(content: bytes) -> None:
    memory = Memory.from_bytes(content)
    assert memory.incarnation is None or isinstance(memory.incarnation, str)
    assert all(isinstance(channel, str) for channel in memory.channels)
    assert isinstance(memory.plugins, dict)
    json.loads(memory._text())  # what is saved again is JSON again


@FAST
@given(st.one_of(status_contents(), memory_contents()))
def test_the_bounded_decoder_gives_a_value_or_its_own_error(content: bytes) -> None:
    try:
        value = parse_json(content, "x.json")
    except UnusableJson as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 1000
        return
    json.dumps(value, allow_nan=False)
    text = content.decode("utf-8").removeprefix("\ufeff")
    assert nesting_depth(text) <= MAX_DEPTH
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(value))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


_GOOD = (
    '<Plugin name="Pub.Good" version="1.0" location="https://m/good" state="enabled"/>',
    '<Plugin name="Pub.Good" version="1.0"><RuntimeSettings seqNo="3">'
    '{"runtimeSettings": [{"handlerSettings": {"publicSettings": {"a": 1}}}]}'
    "</RuntimeSettings></Plugin>",
)


@FAST
@given(
    st.one_of(
        st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), max_size=300),
        _JSON.map(json.dumps),
        _JSON.map(lambda v: json.dumps({"runtimeSettings": [{"handlerSettings": v}]})),
        st.integers(1, 20_000).map(lambda n: "[" * n),
    ),
    st.sampled_from(["1", "x", "\u00b2", "9" * 5000, ""]),
)
def test_one_plugins_settings_never_touch_another_plugin(settings_text: str, seq_no: str) -> None:
    bad = (
        '<Plugin name="Pub.Bad" version="1.0" location="https://m/bad" state="enabled"/>',
        f'<Plugin name="Pub.Bad" version="1.0"><RuntimeSettings seqNo="{seq_no}">'
        f"{escape(settings_text)}</RuntimeSettings></Plugin>",
    )
    document = (
        f"<Extensions><Plugins>{bad[0]}{_GOOD[0]}</Plugins>"
        f"<PluginSettings>{bad[1]}{_GOOD[1]}</PluginSettings>"
        '<StatusUploadBlob statusBlobType="BlockBlob">https://s/x</StatusUploadBlob></Extensions>'
    )
    try:
        goal = parse_extensions_config(document.encode())
    except UnusableJson:  # never: a plugin's settings are that plugin's business
        raise AssertionError("one plugin's settings refused the whole goal") from None
    bad_plugin, good = goal.plugins
    assert (good.name, good.seq_no, good.invalid) == ("Pub.Good", 3, None)
    assert bad_plugin.name == "Pub.Bad"
    if bad_plugin.invalid is not None:
        assert "\n" not in bad_plugin.invalid
