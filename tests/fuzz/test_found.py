"""What the fuzz targets found, each pinned by a plain test named after the behaviour.

The ones at the end were found in files this change does not own, and are fixed
there. A test marked xfail(strict=True) names a bug reported and not yet fixed:
it flips to a failure the day the fix lands, so the mark goes with the fix.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from azprov.errors import AzprovError, InvalidInput, MalformedDocument
from azprov.extensions.manifest import parse_handler_manifest
from azprov.fabric.hostplugin import HostPlugin
from azprov.fabric.http import Retry
from azprov.fabric.imds import parse_instance_metadata
from azprov.fabric.models import parse_goal_state
from azprov.fabric.ovf import parse_ovf_env
from azprov.simulator.documents import ovf_env_xml
from tests.fuzz.hostile import MESSAGE_MAX_CHARS, CannedHttp, peak_allocation

# Deeper than any recursion limit Python ships with.
TOO_DEEP = sys.getrecursionlimit() * 50


def test_a_megabyte_incarnation_is_quoted_short_in_the_goal_state_error() -> None:
    document = b"<GoalState><Incarnation>" + b"x" * 1_000_000 + b"</Incarnation></GoalState>"
    with pytest.raises(MalformedDocument, match="Incarnation='xxx") as refused:
        parse_goal_state(document)
    assert len(str(refused.value)) <= MESSAGE_MAX_CHARS


def test_a_megabyte_root_element_name_is_quoted_short_in_the_goal_state_error() -> None:
    document = b"<" + b"G" * 1_000_000 + b"/>"
    with pytest.raises(MalformedDocument, match="root element") as refused:
        parse_goal_state(document)
    assert len(str(refused.value)) <= MESSAGE_MAX_CHARS


def test_a_versions_reply_nested_past_the_recursion_limit_makes_the_hostplugin_unusable() -> None:
    with CannedHttp(200, b"[" * TOO_DEEP) as http:
        assert HostPlugin(http, "http://127.0.0.1:32526", 1).usable() is False


def test_a_handler_manifest_nested_past_the_recursion_limit_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"HandlerManifest\.json"):
        parse_handler_manifest(b"[" * TOO_DEEP, "Pub.Ext-1.0")


# -- XML whose tree costs a hundred times its size ---------------------------------------------

# A parsed element costs ~100 bytes, and each level of nesting under ovf-env.xml's
# namespaces more: a 2 MB document of nothing but tags took 40-180 MB (measured).
XML_PEAK_MAX = 16 * 1024 * 1024


def test_two_megabytes_of_sibling_elements_are_refused_within_a_bounded_peak() -> None:
    document = b"<GoalState><Incarnation>1</Incarnation>" + b"<a/>" * 500_000 + b"</GoalState>"
    peak = peak_allocation(lambda: parse_goal_state(document))
    with pytest.raises(MalformedDocument, match="elements"):
        parse_goal_state(document)
    assert peak < XML_PEAK_MAX


def test_two_megabytes_of_nested_elements_are_refused_within_a_bounded_peak() -> None:
    document = ovf_env_xml().replace(b"<ns1:HostName>", b"<ns1:HostName>" + b"<a>" * 700_000)
    peak = peak_allocation(lambda: parse_ovf_env(document))
    with pytest.raises(MalformedDocument, match="nested"):
        parse_ovf_env(document)
    assert peak < XML_PEAK_MAX


# -- numbers of a million digits: int() of them is quadratic on Python 3.9 ---------------------

MILLION_DIGITS = "9" * 1_000_000


# python39_ints (conftest.py): int() without 3.11's digit limit, as on Python 3.9.


def _seconds(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with contextlib.suppress(AzprovError, Retry):
        call()
    return time.monotonic() - started


def test_an_imds_number_of_a_million_digits_is_refused_in_milliseconds(python39_ints) -> None:
    content = ('{"compute": {"vmId": ' + MILLION_DIGITS + "}}").encode()
    assert _seconds(lambda: parse_instance_metadata(content)) < 0.5


def test_a_handler_manifest_number_of_a_million_digits_is_refused_in_milliseconds(
    python39_ints,
) -> None:
    content = ('[{"handlerManifest": {"version": ' + MILLION_DIGITS + "}}]").encode()
    assert _seconds(lambda: parse_handler_manifest(content, "Pub.Ext-1.0")) < 0.5


def test_a_versions_reply_number_of_a_million_digits_is_refused_in_milliseconds(
    python39_ints,
) -> None:
    with CannedHttp(200, ("[" + MILLION_DIGITS + "]").encode()) as http:
        plugin = HostPlugin(http, "http://127.0.0.1:32526", 1)
        assert _seconds(plugin.usable) < 0.5
        assert plugin.usable() is False


# -- found in files this change does not own (reported) ----------------------------------------

_CONFIG = (
    '<Extensions><Plugins><Plugin name="Pub.Ext" version="1.0" location="https://m/1"/></Plugins>'
    '<PluginSettings><Plugin name="Pub.Ext">{depends}<RuntimeSettings seqNo="{seq}">{runtime}'
    "</RuntimeSettings></Plugin></PluginSettings></Extensions>"
)
_SETTINGS = json.dumps({"runtimeSettings": [{"handlerSettings": {"publicSettings": {}}}]})


def _goal_or_typed_error(document: str) -> None:
    from azprov.extensions.goal import parse_extensions_config

    with contextlib.suppress(AzprovError):
        parse_extensions_config(document.encode())


def test_a_superscript_seq_no_is_a_typed_error_not_a_value_error() -> None:
    _goal_or_typed_error(_CONFIG.format(depends="", seq="²", runtime=_SETTINGS))


def test_a_superscript_dependency_level_is_a_typed_error_not_a_value_error() -> None:
    depends = '<DependsOn dependencyLevel="²"/>'
    _goal_or_typed_error(_CONFIG.format(depends=depends, seq="1", runtime=_SETTINGS))


def test_runtime_settings_nested_past_the_recursion_limit_are_a_typed_error() -> None:
    _goal_or_typed_error(_CONFIG.format(depends="", seq="1", runtime="[" * TOO_DEEP))


def test_plugin_settings_nested_deeply_are_a_typed_error_not_a_recursion_error() -> None:
    """Found with the change that makes one bad plugin fail alone (it compares entries by
    serializing them, recursively): the parser's depth cap keeps any tree shallow."""
    from azprov.extensions.goal import parse_extensions_config

    runtime = "<a>" * 5_000 + "</a>" * 5_000
    with contextlib.suppress(AzprovError):
        parse_extensions_config(_CONFIG.format(depends="", seq="1", runtime=runtime).encode())


def test_certificates_data_with_non_ascii_characters_is_invalid_input(tmp_path: Path) -> None:
    from azprov.extensions.certificates import fetch_certificates
    from azprov.fabric.wireserver import WireServer

    cert = tmp_path / "TransportCert.pem"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    document = (
        "<CertificateFile><Format>Pkcs7BlobWithPfxContents</Format><Data>MIIN\u00e9</Data>"
        "</CertificateFile>"
    ).encode()
    with CannedHttp(200, document) as http, pytest.raises(InvalidInput, match="Certificates Data"):
        fetch_certificates(WireServer(http, "127.0.0.1", 1), "http://127.0.0.1/c", cert)


def test_a_handler_manifest_of_fifty_megabytes_is_refused_by_size_at_once() -> None:
    """Found by the long run: 50 MB of strings took 7 s to decode; the parser
    itself now refuses anything over the cap, whoever calls it."""
    import time

    from azprov.extensions.manifest import parse_handler_manifest

    content = b'[{"handlerManifest": {"installCommand": ["' + b"9" * (50 << 20) + b'"]}}]'
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="larger than 65536 bytes"):
        parse_handler_manifest(content, "Bad-1.0")
    assert time.monotonic() - started < 0.5
