"""Parsing vmSettings (reference §7) into the goal model ExtensionsConfig produces.

The documents here are in the shape the HostGAPlugin sends (see
`tests/extensions/fast_track.py`): mixed-case keys, public settings as a JSON string,
`DependsOnExtension`, a multi-config entry beside single-config ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from azprov.errors import InvalidInput
from azprov.extensions.fast_track import host_plugin_version_supported
from azprov.extensions.goal import ExtensionsGoal, parse_extensions_config
from azprov.extensions.sources import SourcedGoal, extensions_config_created
from azprov.extensions.vmsettings import parse_vm_settings
from azprov.simulator import SimulatedFabric
from tests.extensions.fast_track import vm_settings_json
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

THUMB = "7B6E2A1C0F9D8E3B4A5C6D7E8F90A1B2C3D4E5F6"
SECRET = "MIIBwQYJKoZIhvcNAQcDsecretprotectedpayload=="
STATUS_SAS = (
    "https://example.blob.core.windows.net/$system/vm.status?sv=2018-03-28&sr=b&sig=SASSIG"
)


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "hostGAPluginVersion": "1.0.8.143",
        "vmSettingsSchemaVersion": "0.0",
        "activityId": "2f1c1d5e-7d0b-4b44-9c3b-0a6b2d6f3c11",
        "correlationId": "5d6c0e55-3b1a-4f8e-8a55-9a8c7f1e2d33",
        "inSvdSeqNo": 4,
        "extensionsLastModifiedTickCount": 638000000000000000,
        "extensionGoalStatesSource": "FastTrack",
        "onHold": False,
        "statusUploadBlob": {"statusBlobType": "PageBlob", "value": STATUS_SAS},
        "inVMMetadata": {"vmName": "simvm", "osType": "Linux"},
        "requiredFeatures": [{"name": "MultipleExtensionsPerHandler"}],
        "gaFamilies": [{"name": "Prod", "uris": ["https://example.blob.core.windows.net/ga.xml"]}],
        "extensionGoalStates": [
            {
                "name": "Contoso.Monitor",
                "version": "1.9",
                "location": "https://example.blob.core.windows.net/m/monitor.xml",
                "failoverlocation": "https://example2.blob.core.windows.net/m/monitor.xml",
                "additionalLocations": ["https://example3.blob.core.windows.net/m/monitor.xml"],
                "state": "enabled",
                "autoUpgrade": True,
                "runAsStartupTask": False,
                "isJson": True,
                "useExactVersion": True,
                "settingsSeqNo": 3,
                "settings": [
                    {
                        "protectedSettingsCertThumbprint": THUMB,
                        "protectedSettings": SECRET,
                        "publicSettings": '{"AUTO_CONFIG":true,"interval":30}',
                    }
                ],
            },
            {
                "name": "Contoso.Script",
                "version": "2.1.6",
                "location": "https://example.blob.core.windows.net/m/script.xml",
                "state": "enabled",
                "settingsSeqNo": 0,
                "isMultiConfig": False,
                "settings": [{"publicSettings": '{"commandToExecute":"echo hi"}'}],
                "dependsOn": [
                    {"DependsOnExtension": [{"handler": "Contoso.Monitor"}], "dependencyLevel": 1}
                ],
            },
            {
                "name": "Contoso.RunCommand",
                "version": "1.2.0",
                "location": "https://example.blob.core.windows.net/m/run.xml",
                "state": "enabled",
                "settingsSeqNo": 0,
                "isMultiConfig": True,
                "settings": [
                    {
                        "publicSettings": "{}",
                        "seqNo": 0,
                        "extensionName": "first",
                        "extensionState": "enabled",
                    }
                ],
            },
        ],
    }
    document.update(changes)
    return document


def _parse(document: dict[str, Any], etag: str = "1234") -> SourcedGoal:
    return parse_vm_settings(json.dumps(document).encode(), etag)


def test_a_real_shaped_vm_settings_document_becomes_the_goal_model() -> None:
    sourced = _parse(_document())
    assert (sourced.id, sourced.source, sourced.on_hold) == ("etag_1234", "FastTrack", False)
    assert sourced.created == 638000000000000000 and sourced.fast_track
    goal = sourced.goal
    assert (goal.status_blob_url, goal.status_blob_type) == (STATUS_SAS, "PageBlob")
    assert goal.required_features == ("MultipleExtensionsPerHandler",)
    assert goal.in_svd_seq_no == "4"
    monitor, script, run = goal.plugins
    assert (monitor.name, monitor.version, monitor.state, monitor.seq_no) == (
        "Contoso.Monitor", "1.9", "enabled", 3,
    )  # fmt: skip
    assert len(monitor.manifest_urls) == 3
    handler = json.loads(monitor.settings or "")["runtimeSettings"][0]["handlerSettings"]
    assert handler == {
        "protectedSettingsCertThumbprint": THUMB,
        "protectedSettings": SECRET,
        "publicSettings": {"AUTO_CONFIG": True, "interval": 30},
    }
    assert monitor.protected == (SECRET,)
    assert (script.dependency_level, script.depends_on) == (1, ("Contoso.Monitor",))
    assert script.seq_no == 0 and script.protected == ()
    assert run.refusal is None and run.multi_config
    assert [(e.name, e.seq_no, e.state) for e in run.extensions] == [("first", 0, "enabled")]
    assert SECRET not in repr(goal)


def test_vm_settings_and_extensions_config_give_the_same_plugins(
    ext: SimulatedExtensions, fabric: SimulatedFabric, tmp_path: Path
) -> None:
    fabric.spec.certificates = True
    ext.plugins = [
        PluginSpec("Same.Sample", "1.0", seq_no=4, public_settings={"a": [1, "x"]},
                   protected_settings={"password": "pw"}),
        PluginSpec("Same.Access", "1.5", seq_no=0, dependency_level=1, depends_on=("Same.Sample",)),
        PluginSpec("Same.Gone", "2.0", state="uninstall", seq_no=None),
    ]  # fmt: skip
    from_config = parse_extensions_config(ext.extensions_config_xml())
    from_vm_settings = parse_vm_settings(vm_settings_json(ext), "e1").goal

    def comparable(goal: ExtensionsGoal) -> list[Any]:
        return [
            (p.name, p.version, p.state, p.manifest_urls[:1], p.seq_no, p.protected,
             p.dependency_level, p.depends_on, p.refusal,
             p.settings and json.loads(p.settings)["runtimeSettings"][0]["handlerSettings"]
             .get("publicSettings"))
            for p in goal.plugins
        ]  # fmt: skip

    assert comparable(from_vm_settings) == comparable(from_config)
    assert from_vm_settings.status_blob_url == from_config.status_blob_url


def test_public_settings_reach_the_handler_as_sent_numbers_and_all() -> None:
    document = _document()
    text = '{"big": 123456789012345678901234567890, "f": 1.50}'
    document["extensionGoalStates"][1]["settings"][0]["publicSettings"] = text
    script = _parse(document).goal.plugins[1]
    assert text in (script.settings or "")


def test_one_bad_extension_fails_alone_with_its_field_and_value() -> None:
    document = _document()
    document["extensionGoalStates"][0]["version"] = "1.9; rm -rf /"
    document["extensionGoalStates"][1]["state"] = "Enabled!"
    monitor, script, _ = _parse(document).goal.plugins
    assert monitor.invalid == (
        "vmSettings Contoso.Monitor version='1.9; rm -rf /' is invalid: not a dotted version"
    )
    assert script.invalid is not None and "state='Enabled!'" in script.invalid
    assert monitor.name == "Contoso.Monitor" and monitor.seq_no == 3


def test_a_bad_thumbprint_names_the_field_never_the_protected_settings() -> None:
    document = _document()
    document["extensionGoalStates"][0]["settings"][0]["protectedSettingsCertThumbprint"] = "nope"
    monitor = _parse(document).goal.plugins[0]
    assert (
        monitor.invalid is not None and "protectedSettingsCertThumbprint='nope'" in monitor.invalid
    )
    assert SECRET not in monitor.invalid and monitor.protected == ()


def test_keys_match_whatever_their_case() -> None:
    document = {key.upper(): value for key, value in _document().items()}
    sourced = _parse(document)
    assert sourced.source == "FastTrack" and len(sourced.goal.plugins) == 3


@pytest.mark.parametrize(
    "content, field",
    [
        (b"[1, 2]", "vmSettings='a list' is invalid: not an object"),
        (b'{"statusUploadBlob": {"statusBlobType": "AppendBlob", "value": "https://x/y"}}',
         "vmSettings statusUploadBlob.statusBlobType='AppendBlob' is invalid"),
        (b'{"statusUploadBlob": {"value": "ftp://x/y"}}',
         "vmSettings statusUploadBlob.value=<redacted> is invalid: not an http(s) URL"),
        (b'{"extensionGoalStates": {"a": 1}}',
         "vmSettings extensionGoalStates='an object' is invalid: not a list"),
        (b'{"extensionsLastModifiedTickCount": "yesterday"}',
         "vmSettings extensionsLastModifiedTickCount='yesterday' is invalid"),
        (b'{"requiredFeatures": [{"value": "1.0"}]}',
         "vmSettings requiredFeatures[].name='null' is invalid: no name"),
        (b"{" * 100 + b"}" * 100, "vmSettings"),
        (b'{"onHold": "maybe"}', "vmSettings onHold='a string' is invalid"),
    ],
)  # fmt: skip
def test_a_document_level_fault_is_one_line_naming_the_field(content: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_vm_settings(content, "e")
    assert str(caught.value).startswith(field) and "\n" not in str(caught.value)


def test_a_host_plugin_older_than_1_0_8_133_is_not_trusted_for_vm_settings() -> None:
    assert not host_plugin_version_supported("1.0.8.115")
    assert host_plugin_version_supported("1.0.8.133")
    assert host_plugin_version_supported("1.0.9")
    assert host_plugin_version_supported(None)
    assert not host_plugin_version_supported("banana")


def test_the_extensions_config_creation_time_is_read_from_its_metadata() -> None:
    def config(metadata: str) -> bytes:
        return f"<Extensions><Plugins/>{metadata}</Extensions>".encode()

    assert (
        extensions_config_created(config('<InVMGoalStateMetaData createdOnTicks="6380" />'))
        == 6380
    )
    assert extensions_config_created(config('<InVMGoalStateMetaData inSvdSeqNo="1" />')) == 0
    assert extensions_config_created(config("")) == 0
    with pytest.raises(InvalidInput, match="createdOnTicks='-1'"):
        extensions_config_created(config('<InVMGoalStateMetaData createdOnTicks="-1" />'))


def test_a_name_listed_twice_differently_is_invalid_an_identical_repeat_is_one() -> None:
    document = _document()
    monitor, script, run = document["extensionGoalStates"]
    changed = dict(script, version="2.2")
    document["extensionGoalStates"] = [monitor, monitor, script, changed, run]
    plugins = _parse(document).goal.plugins
    assert [p.name for p in plugins] == ["Contoso.Monitor", "Contoso.Script", "Contoso.RunCommand"]
    assert plugins[0].refusal is None
    assert plugins[1].invalid is not None and "listed 2 times, differently" in plugins[1].invalid


def test_a_multi_config_handler_gives_its_named_extensions_each_with_settings_and_level() -> None:
    document = _document()
    run = document["extensionGoalStates"][2]
    run["settings"] = [
        {"publicSettings": '{"source":{"script":"echo 1"}}', "seqNo": 2,
         "extensionName": "firstRunCommand", "extensionState": "enabled"},
        {"protectedSettingsCertThumbprint": THUMB, "protectedSettings": SECRET,
         "seqNo": 0, "extensionName": "second_Run-Command.2", "extensionState": "disabled"},
    ]  # fmt: skip
    run["dependsOn"] = [
        {"dependsOnExtension": [{"extension": "x", "handler": "Contoso.Monitor"}],
         "dependencyLevel": 2, "name": "firstRunCommand"},
        {"dependsOnExtension": [], "dependencyLevel": 1, "name": "second_Run-Command.2"},
    ]  # fmt: skip
    plugin = _parse(document).goal.plugins[2]
    assert plugin.refusal is None and plugin.multi_config
    first, second = plugin.extensions
    assert (first.name, first.seq_no, first.state) == ("firstRunCommand", 2, "enabled")
    assert (second.name, second.seq_no, second.state) == ("second_Run-Command.2", 0, "disabled")
    handler = json.loads(first.settings or "")["runtimeSettings"][0]["handlerSettings"]
    assert handler["publicSettings"] == {"source": {"script": "echo 1"}}
    assert plugin.protected == (SECRET,) and second.protected == (SECRET,)
    assert (plugin.dependency_level, plugin.depends_on) == (2, ("Contoso.Monitor",))

    for bad, why in (
        ("../x", "extensionName='../x' is invalid"),
        ("FIRSTRunCommand", "listed twice"),
    ):
        run["settings"][1]["extensionName"] = bad
        run["dependsOn"] = []
        plugin = _parse(document).goal.plugins[2]
        assert plugin.invalid is not None and why in plugin.invalid
