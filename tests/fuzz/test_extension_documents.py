"""Fuzzing the extension runner's documents: ExtensionsConfig, the version manifest,
HandlerManifest.json and the Certificates reply.

ExtensionsConfig's property allows either outcome for a plugin whose own part is
bad: the whole document refused with a typed error, or a goal in which that
plugin carries its own error while the others stand (the runner's aim: one bad
item fails alone).
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.extensions.certificates import fetch_certificates
from azprov.extensions.goal import ExtensionsGoal, Plugin, parse_extensions_config
from azprov.extensions.manifest import parse_handler_manifest, parse_version_manifest
from azprov.fabric.wireserver import WireServer
from tests.fuzz.hostile import (
    CannedHttp,
    counts,
    deep_json,
    encode,
    examples,
    hostile_text,
    json_values,
    peak_allocation,
    repeated,
    typed_outcome,
    xml_encodings,
    xml_escape,
    xml_fields,
    xml_prolog,
)

DEADLINE = timedelta(seconds=2)
THUMBPRINT = "4037FBF5F1F3014F99B5D6C7799E9B20E6871CB3"


def runtime_settings(
    public: Any = None, protected: Any = "MIICWgYJKoZIhvcNAQcDoIICSzCCAkcCAQAx"
) -> str:
    return json.dumps(
        {
            "runtimeSettings": [
                {
                    "handlerSettings": {
                        "protectedSettingsCertThumbprint": THUMBPRINT,
                        "protectedSettings": protected,
                        "publicSettings": public
                        if public is not None
                        else {"commandToExecute": "date"},
                    }
                }
            ]
        }
    )


def extensions_config(plugins: str, settings: str, blob: str = "", extra: str = "") -> str:
    """ExtensionsConfig as the WireServer sends it (trimmed of the agent-family part)."""
    return (
        '<Extensions version="1.0.0.0" goalStateIncarnation="9">'
        '<GuestAgentExtension xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><GAFamilies>'
        "<GAFamily><Name>Prod</Name><Uris><Uri>https://rdfe.blob/ga-manifest.xml</Uri></Uris></GAFamily>"
        "</GAFamilies></GuestAgentExtension>"
        f"<Plugins>{plugins}</Plugins><PluginSettings>{settings}</PluginSettings>{extra}"
        '<InVMGoalStateMetaData inSvdSeqNo="7" createdOnTicks="638000000000000000" activityId="a" correlationId="c"/>'
        f'<StatusUploadBlob statusBlobType="BlockBlob">{blob or "https://st.blob/vm.status?sv=2018-03-28&amp;sr=b&amp;sig=SECRET"}</StatusUploadBlob>'
        "</Extensions>"
    )


def plugin_xml(
    name: str, version: str = "1.0", state: str = "enabled", location: str = "https://m/1"
) -> str:
    return (
        f'<Plugin name="{name}" version="{version}" location="{location}" '
        f'failoverlocation="https://m/2" config="" state="{state}" autoUpgrade="true" '
        'runAsStartupTask="false" isJson="true" useExactVersion="true" />'
    )


def plugin_settings_xml(name: str, seq_no: str, runtime: str, depends: str = "") -> str:
    return (
        f'<Plugin name="{name}" version="1.0">{depends}'
        f'<RuntimeSettings seqNo="{seq_no}">{runtime}</RuntimeSettings></Plugin>'
    )


ATTRIBUTES = ["name", "version", "state", "location", "seqNo", "dependencyLevel", "handler"]


@st.composite
def extensions_configs(draw: st.DrawFn) -> bytes:
    """A good plugin beside one whose every attribute and setting may be hostile."""
    field = draw(xml_fields(["runtime", "blob", "extra"]))
    attribute = {name: xml_escape(draw(hostile_text())) for name in ATTRIBUTES}
    for name in draw(st.lists(st.sampled_from(ATTRIBUTES))):  # some stay plausible
        plausible = {
            "name": "Bad.Ext",
            "version": "1.0",
            "state": "enabled",
            "location": "https://m/b",
        }
        attribute[name] = plausible.get(name, "1")
    if draw(st.booleans()):
        field["runtime"] = xml_escape(
            draw(
                st.one_of(
                    json_values().map(json.dumps),
                    json_values().map(lambda v: runtime_settings(public=v)),
                    json_values().map(lambda v: runtime_settings(protected=v)),
                    deep_json(),
                )
            )
        )
    depends = (
        f'<DependsOn dependencyLevel="{attribute["dependencyLevel"]}">'
        f'<DependsOnExtension handler="{attribute["handler"]}"/></DependsOn>'
    )
    plugins = plugin_xml("Good.Ext") + plugin_xml(
        attribute["name"], attribute["version"], attribute["state"], attribute["location"]
    )
    settings = plugin_settings_xml(
        "Good.Ext", "0", xml_escape(runtime_settings())
    ) + plugin_settings_xml(attribute["name"], attribute["seqNo"], field["runtime"], depends)
    if draw(st.booleans()):
        plugins, settings = plugins * draw(counts(2_000)), settings
    document = extensions_config(
        plugins, settings, field["blob"], draw(st.sampled_from(["", field["extra"]]))
    )
    return encode(draw(xml_prolog()) + document, draw(xml_encodings()))


def _failed_alone(plugin: Plugin) -> bool:
    """Whether the goal marks `plugin` as one azprov will not run, with a reason."""
    return any(getattr(plugin, name, None) for name in ("error", "invalid", "unsupported"))


def check_extensions_goal(goal: Optional[ExtensionsGoal]) -> None:
    if goal is None:
        return
    names = [p.name.lower() for p in goal.plugins]
    assert len(names) == len(set(names)), "a plugin listed twice"
    for plugin in goal.plugins:
        if plugin.name == "Good.Ext":
            assert plugin.seq_no == 0 and plugin.settings, "the good plugin lost its settings"


@settings(max_examples=examples(500), deadline=DEADLINE)
@given(st.binary(max_size=4096))
def test_extensions_config_of_any_bytes_is_a_goal_or_a_typed_error(content: bytes) -> None:
    check_extensions_goal(typed_outcome(parse_extensions_config, content))


@settings(max_examples=examples(250), deadline=DEADLINE)
@given(extensions_configs())
def test_extensions_config_near_valid_is_a_goal_or_a_typed_error(content: bytes) -> None:
    check_extensions_goal(typed_outcome(parse_extensions_config, content))


# -- the version manifest ----------------------------------------------------------------------


@st.composite
def version_manifests(draw: st.DrawFn) -> bytes:
    field = draw(xml_fields(["version", "uri", "extra"]))
    plugin = f"<Plugin><Version>{field['version']}</Version><Uris><Uri>{field['uri']}</Uri></Uris></Plugin>"
    good = "<Plugin><Version>1.0.9</Version><Uris><Uri>https://p/1.0.9.zip</Uri></Uris></Plugin>"
    plugins = good + plugin
    if len(plugin) < 1_000:
        plugins *= draw(st.sampled_from([1, 1, 5_000]))
    document = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<PluginVersionManifest xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        f"<Plugins>{plugins}</Plugins><InternalPlugins>{good}{field['extra']}</InternalPlugins>"
        "</PluginVersionManifest>"
    )
    return encode(draw(xml_prolog()) + document, draw(xml_encodings()))


@settings(max_examples=examples(100), deadline=DEADLINE)
@given(st.one_of(st.binary(max_size=4096), version_manifests()))
def test_version_manifest_is_versions_or_a_typed_error(content: bytes) -> None:
    versions = typed_outcome(parse_version_manifest, content, "Pub.Ext")
    for version in versions or ():
        assert version.uris and all(part.isdigit() for part in version.version.split("."))


# -- HandlerManifest.json ----------------------------------------------------------------------

COMMANDS = ["install", "enable", "disable", "update", "uninstall"]


@st.composite
def handler_manifests(draw: st.DrawFn) -> bytes:
    manifest: dict[str, Any] = {
        f"{c}Command": f"extension_shim.sh -c ./vmaccess.py -{c[0]}" for c in COMMANDS
    }
    manifest.update(rebootAfterInstall=False, reportHeartbeat=False)
    keys = [*manifest, "updateMode", "continueOnUpdateFailure"]
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        manifest[key] = draw(json_values())
    document: Any = [{"version": 1.0, "handlerManifest": manifest}]
    shape = draw(st.sampled_from(["list", "object", "empty", "many", "deep"]))
    if shape == "object":
        document = document[0]
    elif shape == "empty":
        document = []
    elif shape == "many":
        document = document * draw(counts(2_000))
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    if shape == "deep":
        text = draw(deep_json())
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + text).encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32"])))


@settings(max_examples=examples(150), deadline=DEADLINE)
@given(st.one_of(st.binary(max_size=2048), handler_manifests()))
def test_handler_manifest_is_a_manifest_or_a_typed_error(content: bytes) -> None:
    manifest = typed_outcome(parse_handler_manifest, content, "Pub.Ext-1.0")
    if manifest is not None:
        assert set(manifest.commands) == set(COMMANDS)
        assert all(
            command and not command.startswith("/") for command in manifest.commands.values()
        )


JSON_BYTES_PER_BYTE = 64
SLACK = 256 * 1024


@settings(
    max_examples=examples(10), deadline=None
)  # tracemalloc slows it tenfold: the time is not the point
@given(repeated(st.sampled_from(["[]", "{}", '"",', "1.5,", '{"a":[]},']), 200_000))
def test_handler_manifest_memory_is_linear_in_the_document(body: str) -> None:
    content = ('[{"handlerManifest":{"x":[' + body + "]}}]").encode()
    peak = peak_allocation(lambda: parse_handler_manifest(content, "Pub.Ext-1.0"))
    assert peak <= JSON_BYTES_PER_BYTE * len(content) + SLACK, (
        f"{len(content)} bytes of JSON took {peak} bytes at the peak"
    )


# -- the Certificates reply --------------------------------------------------------------------

_TRANSPORT_CERT = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


@st.composite
def certificate_files(draw: st.DrawFn) -> bytes:
    field = draw(xml_fields(["Format", "Data"]))
    if draw(st.booleans()):
        field["Format"] = "Pkcs7BlobWithPfxContents"
    if draw(st.booleans()):
        field["Data"] = draw(
            st.sampled_from(
                ["MIINAgYJKoZIhvcNAQcDoIIM8zCCDO8C", "MIIN\nAgYJ\r\nKoZI", "MIIN=AgYJ", "===="]
            )
        ) * draw(counts(20_000))
    document = (
        '<?xml version="1.0" encoding="utf-8"?><CertificateFile><Version>2012-11-30</Version>'
        f"<Incarnation>1</Incarnation><Format>{field['Format']}</Format><Data>{field['Data']}</Data>"
        "</CertificateFile>"
    )
    return encode(draw(xml_prolog()) + document, draw(xml_encodings()))


@settings(max_examples=examples(200), deadline=DEADLINE)
@given(st.one_of(st.binary(max_size=2048), certificate_files()))
def test_certificates_reply_is_base64_data_or_a_typed_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="azprov-fuzz-") as directory:
        cert = Path(directory) / "TransportCert.pem"
        cert.write_bytes(_TRANSPORT_CERT)
        with CannedHttp(200, content) as http:
            wireserver = WireServer(http, "127.0.0.1", 1)  # canned: nothing is sent
            data = typed_outcome(fetch_certificates, wireserver, "http://127.0.0.1/c", cert)
    if data is not None:
        assert data and data.isascii()
