"""Parsing what the fabric and the packages send: ExtensionsConfig, manifests, HandlerManifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azprov.config import load_config
from azprov.errors import ConfigError, FabricError, InvalidInput
from azprov.extensions.goal import parse_extensions_config
from azprov.extensions.manifest import (
    PackageVersion,
    choose_version,
    parse_handler_manifest,
    parse_version_manifest,
)
from azprov.extensions.redaction import Redactor

SETTINGS = json.dumps(
    {
        "runtimeSettings": [
            {
                "handlerSettings": {
                    "publicSettings": {"a": 1},
                    "protectedSettings": "MIIBencryptedBASE64==",
                    "protectedSettingsCertThumbprint": "AB" * 20,
                }
            }
        ]
    }
)


def _config(plugin: str = "", settings: str = "", extra: str = "") -> bytes:
    return (
        '<Extensions version="1.0.0.0" goalStateIncarnation="2"><Plugins>'
        f"{plugin}</Plugins><PluginSettings>{settings}</PluginSettings>{extra}"
        '<StatusUploadBlob statusBlobType="PageBlob">https://s.blob/x?sig=abc</StatusUploadBlob>'
        "</Extensions>"
    ).encode()


def _settings(runtime: str) -> str:
    return (
        f'<Plugin name="Pub.Ext"><RuntimeSettings seqNo="1">{runtime}</RuntimeSettings></Plugin>'
    )


PLUGIN = (
    '<Plugin name="Pub.Ext" version="1.2" location="https://m/1" failoverlocation="https://m/2" '
    'state="enabled"><additionalLocations><additionalLocation>https://m/3</additionalLocation>'
    "</additionalLocations></Plugin>"
)


def test_extensions_config_is_parsed() -> None:
    settings = (
        '<Plugin name="pub.ext" version="1.2"><DependsOn dependencyLevel="2">'
        '<DependsOnExtension handler="Pub.Other"/></DependsOn>'
        f'<RuntimeSettings seqNo="7">{SETTINGS}</RuntimeSettings></Plugin>'
    )
    goal = parse_extensions_config(
        _config(
            PLUGIN,
            settings,
            "<RequiredFeatures><RequiredFeature><Name>X</Name></RequiredFeature></RequiredFeatures>",
        )
    )
    (plugin,) = goal.plugins
    assert (plugin.name, plugin.version, plugin.state, plugin.seq_no) == (
        "Pub.Ext",
        "1.2",
        "enabled",
        7,
    )
    assert plugin.manifest_urls == ("https://m/1", "https://m/2", "https://m/3")
    assert (plugin.dependency_level, plugin.depends_on) == (2, ("Pub.Other",))
    assert plugin.protected == ("MIIBencryptedBASE64==",)
    assert "MIIB" not in repr(plugin)
    assert goal.status_blob_type == "PageBlob"
    assert goal.unsupported_features() == ["X"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            _config().replace(b'statusBlobType="PageBlob"', b'statusBlobType="AppendBlob"'),
            "statusBlobType='AppendBlob'",
        ),
        (b"<Extensions><Plugins>", "not well-formed XML"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><Extensions/>', "refused, it carries a DTD"),
        (b"<GoalState/>", "ExtensionsConfig root='GoalState' is invalid"),
        (
            _config().replace(b"https://s.blob/x?sig=abc", b"ftp://s/x?sig=abc"),
            "StatusUploadBlob=<redacted>",
        ),
    ],
)
def test_an_unusable_extensions_config_is_refused_in_one_line(
    document: bytes, message: str
) -> None:
    with pytest.raises((InvalidInput, FabricError)) as refused:
        parse_extensions_config(document)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


OTHER = PLUGIN.replace("Pub.Ext", "Pub.Other")
OTHER_SETTINGS = (
    f'<Plugin name="Pub.Other"><RuntimeSettings seqNo="4">{SETTINGS}</RuntimeSettings></Plugin>'
)


@pytest.mark.parametrize(
    ("plugin", "settings", "message"),
    [
        (PLUGIN.replace("Pub.Ext", "../../etc"), "", "Plugin@name='../../etc' is invalid"),
        (
            PLUGIN.replace('version="1.2"', 'version="latest"'),
            "",
            "Plugin Pub.Ext @version='latest'",
        ),
        (PLUGIN.replace("enabled", "paused"), "", "Plugin Pub.Ext @state='paused' is invalid"),
        (
            PLUGIN.replace("https://m/1", "file:///etc/passwd"),
            "",
            "manifest location='file:///etc/passwd'",
        ),
        (
            PLUGIN + PLUGIN.replace("https://m/3", "https://m/4"),
            "",
            "Plugin@name='Pub.Ext' is invalid: listed 2 times in Plugins, differently",
        ),
        (
            PLUGIN,
            _settings("{}") + _settings("[]"),
            "Plugin@name='Pub.Ext' is invalid: listed 2 times in PluginSettings, differently",
        ),
        (
            PLUGIN,
            '<Plugin name="Pub.Ext"><RuntimeSettings seqNo="x">{}</RuntimeSettings></Plugin>',
            "RuntimeSettings@seqNo='x' is invalid",
        ),
        (
            PLUGIN,
            '<Plugin name="Pub.Ext"><RuntimeSettings seqNo="1">{"protectedSettings": "S3CR3T"'
            "</RuntimeSettings></Plugin>",
            "Plugin Pub.Ext RuntimeSettings=<redacted> is invalid: not JSON",
        ),
        (
            PLUGIN,
            _settings("{}"),
            "RuntimeSettings=<redacted> is invalid: no runtimeSettings list",
        ),
        (
            PLUGIN,
            _settings('{"runtimeSettings": [{"publicSettings": {}}]}'),
            "an entry has no handlerSettings object",
        ),
        (
            PLUGIN,
            _settings(SETTINGS.replace("AB" * 20, "not-a-thumbprint")),
            "protectedSettingsCertThumbprint='not-a-thumbprint' is invalid",
        ),
        (
            PLUGIN,
            '<Plugin name="Pub.Ext"><DependsOn dependencyLevel="high"/></Plugin>',
            "DependsOn@dependencyLevel='high' is invalid",
        ),
        (
            PLUGIN.replace('location="https://m/1" failoverlocation="https://m/2" ', "").replace(
                "<additionalLocation>https://m/3</additionalLocation>", ""
            ),
            "",
            "Plugin Pub.Ext @location=None is invalid: no manifest location",
        ),
    ],
)
def test_a_bad_plugin_fails_alone_in_the_goal(plugin: str, settings: str, message: str) -> None:
    goal = parse_extensions_config(_config(plugin + OTHER, settings + OTHER_SETTINGS))
    bad, other = goal.plugins
    assert bad.invalid is not None and message in bad.invalid
    assert bad.refusal == bad.invalid
    assert "\n" not in bad.invalid and "S3CR3T" not in bad.invalid
    assert (other.name, other.seq_no, other.settings, other.invalid) == (
        "Pub.Other",
        4,
        SETTINGS,
        None,
    )
    assert other.protected == ("MIIBencryptedBASE64==",)


def test_a_plugin_repeated_word_for_word_is_one_plugin() -> None:
    goal = parse_extensions_config(_config(PLUGIN + "\n" + PLUGIN, _settings(SETTINGS) * 2))
    (plugin,) = goal.plugins
    assert (plugin.name, plugin.seq_no, plugin.invalid) == ("Pub.Ext", 1, None)


def test_version_manifest_and_choice() -> None:
    manifest = parse_version_manifest(
        b"<PluginVersionManifest><Plugins>"
        b"<Plugin><Version>1.0.9</Version><Uris><Uri>https://p/1.0.9</Uri></Uris></Plugin>"
        b"<Plugin><Version>1.0.10</Version><Uris><Uri>https://p/1.0.10</Uri></Uris></Plugin>"
        b"<Plugin><Version>1.1.0</Version><Uris><Uri>https://p/1.1.0</Uri></Uris></Plugin>"
        b"</Plugins><InternalPlugins>"
        b"<Plugin><Version>2.0.0</Version><Uris><Uri>https://p/2</Uri></Uris></Plugin>"
        b"</InternalPlugins></PluginVersionManifest>",
        "Pub.Ext",
    )
    assert [v.version for v in manifest] == ["1.0.9", "1.0.10", "1.1.0", "2.0.0"]
    chosen = choose_version("1.0", manifest)
    assert chosen == PackageVersion("1.0.10", ("https://p/1.0.10",))
    assert choose_version("1", manifest).version == "1.1.0"  # type: ignore[union-attr]
    assert choose_version("1.1.0", manifest).version == "1.1.0"  # type: ignore[union-attr]
    assert choose_version("3", manifest) is None
    assert choose_version("1.0.1", manifest) is None  # 1.0.10 is not 1.0.1.x
    with pytest.raises(InvalidInput, match="Plugin/Version='one'"):
        parse_version_manifest(
            b"<M><Plugins><Plugin><Version>one</Version></Plugin></Plugins></M>", "P.E"
        )
    with pytest.raises(InvalidInput, match="no package URI"):
        parse_version_manifest(
            b"<M><Plugins><Plugin><Version>1.0</Version></Plugin></Plugins></M>", "P.E"
        )


def test_handler_manifest() -> None:
    commands = {
        f"{c}Command": f"/bin/{c}.sh"
        for c in ("install", "uninstall", "update", "enable", "disable")
    }
    manifest = parse_handler_manifest(
        json.dumps(
            [
                {
                    "handlerManifest": {
                        **commands,
                        "continueOnUpdateFailure": "true",
                        "reportHeartbeat": False,
                    }
                }
            ]
        ).encode(),
        "P.E-1.0",
    )
    assert manifest.commands["enable"] == "bin/enable.sh"  # a leading '/' means the handler folder
    assert manifest.continue_on_update_failure is True
    assert manifest.update_mode == "UpdateWithInstall"
    with pytest.raises(InvalidInput, match="enableCommand=None is invalid"):
        parse_handler_manifest(
            json.dumps([{"handlerManifest": {"installCommand": "x"}}]).encode(), "P.E-1.0"
        )
    with pytest.raises(InvalidInput, match="installCommand='/ ' is invalid: missing or names no"):
        parse_handler_manifest(
            json.dumps([{"handlerManifest": {**commands, "installCommand": "/ "}}]).encode(), "P"
        )
    with pytest.raises(InvalidInput, match="updateMode='Sometimes'"):
        parse_handler_manifest(
            json.dumps([{"handlerManifest": {**commands, "updateMode": "Sometimes"}}]).encode(),
            "P",
        )
    with pytest.raises(InvalidInput, match="reportHeartbeat='maybe'"):
        parse_handler_manifest(
            json.dumps([{"handlerManifest": {**commands, "reportHeartbeat": "maybe"}}]).encode(),
            "P",
        )
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_handler_manifest(b"{", "P")
    with pytest.raises(InvalidInput, match="no handlerManifest object"):
        parse_handler_manifest(b'[{"name": "P"}]', "P")


def test_redactor_hides_protected_settings_keys_and_signatures() -> None:
    redact = Redactor(["MIIBencryptedBASE64=="])
    text = redact(
        'got MIIBencryptedBASE64== from https://a/b?sv=1&sig=abc%3D&se=2 "https://c?sig=zz"\n'
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- exit code=3"
    )
    assert text == (
        'got <redacted> from https://a/b?sv=1&sig=<redacted>&se=2 "https://c?sig=<redacted>"\n'
        "<redacted> exit code=3"
    )


def test_extension_config_keys(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text(
        "[extensions]\nchannel_timeout = 3.5\n[extension Pub.Ext]\nenable_timeout = 90\n"
    )
    config = load_config(tmp_path, conf)
    assert config.extensions.channel_timeout == 3.5
    assert config.extension_timeout("pub.ext", "enable") == 90
    assert config.extension_timeout("pub.ext", "install") == 1200
    conf.write_text("[extensions]\nchannel_timeout = -1\n")
    with pytest.raises(ConfigError, match="channel_timeout = '-1': must be a positive number"):
        load_config(tmp_path, conf)
    conf.write_text("[extensions]\nchanel_timeout = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'chanel_timeout'"):
        load_config(tmp_path, conf)


def test_a_multi_config_plugin_carries_its_named_extensions_and_the_other_is_unchanged() -> None:
    other = PLUGIN.replace("Pub.Ext", "Pub.Other")
    goal = parse_extensions_config(
        _config(
            PLUGIN + other,
            '<Plugin name="Pub.Ext"><ExtensionRuntimeSettings seqNo="1" name="a"/></Plugin>',
        )
    )
    multi, plain = goal.plugins
    assert multi.refusal is None and multi.multi_config
    assert [(e.name, e.seq_no, e.state) for e in multi.extensions] == [("a", 1, "enabled")]
    assert plain.refusal is None and not plain.multi_config
