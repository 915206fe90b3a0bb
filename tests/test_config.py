"""Configuration: file order, defaults, and one-line errors naming file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from azprov.config import DROPIN_DIR, MAIN_FILE, Config, load_config
from azprov.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(root: Path, extra: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(root, extra)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.exit_code == 2
    return message


def test_no_files_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == Config()
    assert config.wireserver.endpoint is None
    assert config.wireserver.total_timeout == 1200.0
    assert config.imds.total_timeout == 300.0
    assert config.imds.url == "http://169.254.169.254/metadata"


def test_main_then_dropins_sorted_then_extra_later_wins(tmp_path: Path) -> None:
    write(
        tmp_path / MAIN_FILE,
        "[wireserver]\nendpoint = 10.0.0.1\ntotal_timeout = 100\n[imds]\ntotal_timeout = 50\n",
    )
    write(tmp_path / DROPIN_DIR / "20-second.conf", "[wireserver]\nendpoint = 10.0.0.3\n")
    write(tmp_path / DROPIN_DIR / "10-first.conf", "[wireserver]\nendpoint = 10.0.0.2\n")
    write(tmp_path / DROPIN_DIR / "30-ignored.conf.disabled", "[nonsense]\n")
    write(tmp_path / DROPIN_DIR / "99-notes.txt", "[nonsense]\n")
    config = load_config(tmp_path)
    assert config.wireserver.endpoint == "10.0.0.3"
    assert config.wireserver.total_timeout == 100.0
    assert config.imds.total_timeout == 50.0
    extra = write(tmp_path / "extra.conf", "[wireserver]\nendpoint = 127.0.0.1:8080\n")
    assert load_config(tmp_path, extra).wireserver.endpoint == "127.0.0.1:8080"


def test_every_documented_key_parses(tmp_path: Path) -> None:
    extra = write(
        tmp_path / "all.conf",
        """
[wireserver]
endpoint = [fd00::1]:8080
total_timeout = 0.5
hostplugin_port = 32527

[imds]
url = http://127.0.0.1:9/metadata/
total_timeout = 7

[media]
path = /mnt/media

[provisioning]
ssh_host_key_types = ed25519, rsa
user_groups = adm,sudo
publish_hostname = off

[extensions]
lib_dir = /var/lib/azprov-ext
log_dir = /var/log/azprov-ext
poll_interval = 2.5
command_timeout = 60
max_package_bytes = 1024

[extension Microsoft.Azure.Extensions.CustomScript]
timeout = 30
enable_timeout = 90
""",
    )
    config = load_config(tmp_path, extra)
    assert config.wireserver.endpoint == "[fd00::1]:8080"
    assert config.wireserver.total_timeout == 0.5
    assert config.wireserver.hostplugin_port == 32527
    assert config.imds.url == "http://127.0.0.1:9/metadata"  # trailing slash dropped
    assert config.media.path == "/mnt/media"
    assert config.provisioning.publish_hostname is False
    assert config.provisioning.user_groups == "adm,sudo"
    assert config.extensions.max_package_bytes == 1024
    name = "microsoft.azure.extensions.customscript"  # handler names match case-insensitively
    assert config.extension_timeout(name, "enable") == 90.0
    assert config.extension_timeout(name, "install") == 30.0
    assert config.extension_timeout("Other", "enable") == 60.0


@pytest.mark.parametrize(
    ("section", "key", "value", "why"),
    [
        ("wireserver", "total_timeout", "-1", "must be a positive number of seconds"),
        ("wireserver", "total_timeout", "0", "must be a positive number of seconds"),
        ("wireserver", "total_timeout", "nan", "must be a positive number of seconds"),
        ("wireserver", "total_timeout", "inf", "must be a positive number of seconds"),
        ("wireserver", "total_timeout", "20m", "must be a positive number of seconds"),
        (
            "provisioning",
            "ssh_host_key_types",
            "ed25519, dsa",
            "must list host key types from: rsa, ecdsa, ed25519",
        ),
        ("wireserver", "hostplugin_port", "0", "must be a port number from 1 to 65535"),
        ("wireserver", "hostplugin_port", "65536", "must be a port number from 1 to 65535"),
        ("wireserver", "hostplugin_port", "80.5", "is not valid"),
        ("wireserver", "endpoint", "10.0.0.1:99999", "port must be a number from 1 to 65535"),
        ("wireserver", "endpoint", "http://10.0.0.1/", "must be a host or host:port"),
        ("wireserver", "endpoint", "a b", "must be a host or host:port"),
        ("imds", "url", "ftp://127.0.0.1", "must be an http:// or https:// URL"),
        ("media", "path", "relative/dir", "must be an absolute path"),
        ("provisioning", "publish_hostname", "maybe", "must be true or false"),
        ("extensions", "max_package_bytes", "-5", "must be a positive whole number"),
        ("extension Foo", "enable_timeout", "soon", "must be a positive number of seconds"),
    ],
)
def test_bad_value_names_file_section_key_and_value(
    tmp_path: Path, section: str, key: str, value: str, why: str
) -> None:
    path = write(tmp_path / "bad.conf", f"[{section}]\n{key} = {value}\n")
    message = config_error(tmp_path, path)
    assert message == f"{path}: [{section}] {key} = {value!r}: {why}"


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / DROPIN_DIR / "50-typo.conf", "[wireserver]\ntotal_timout = 5\n")
    message = config_error(tmp_path)
    assert message.startswith(f"{path}: unknown key 'total_timout' in [wireserver] (known: ")
    assert "total_timeout" in message


def test_keys_are_case_sensitive(tmp_path: Path) -> None:
    path = write(tmp_path / "x.conf", "[imds]\nURL = http://x/\n")
    assert "unknown key 'URL' in [imds]" in config_error(tmp_path, path)


def test_unknown_extension_key(tmp_path: Path) -> None:
    path = write(tmp_path / "x.conf", "[extension Foo]\nretries = 3\n")
    assert "unknown key 'retries' in [extension Foo]" in config_error(tmp_path, path)


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path / MAIN_FILE, "[wireservr]\nendpoint = x\n")
    message = config_error(tmp_path)
    assert message.startswith(f"{path}: unknown section [wireservr] (known: [wireserver]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("endpoint = 1.2.3.4\n", "line 1: a key outside any [section]: 'endpoint = 1.2.3.4'"),
        ("[imds]\nurl = http://a/\nurl = http://b/\n", "line 3: key 'url' repeated in [imds]"),
        ("[imds]\n[imds]\n", "line 2: section [imds] repeated"),
        ("[imds]\njust words\n", "line 2: not a 'key = value' line: 'just words'"),
        ("[DEFAULT]\nx = 1\n", "section [DEFAULT] is not supported"),
    ],
)
def test_syntax_errors_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "x.conf", text)
    assert config_error(tmp_path, path) == f"{path}: {expected}"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"[media]\npath = /caf\xe9\n")
    assert config_error(tmp_path, path) == f"{path}: is not UTF-8 text"


def test_unreadable_extra_file(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory.conf"
    directory.mkdir()
    assert config_error(tmp_path, directory).startswith(f"{directory}: cannot read: ")


def test_first_bad_file_is_named_even_when_a_later_one_is_fine(tmp_path: Path) -> None:
    bad = write(tmp_path / DROPIN_DIR / "10-bad.conf", "[imds]\ntotal_timeout = x\n")
    write(tmp_path / DROPIN_DIR / "20-good.conf", "[imds]\ntotal_timeout = 3\n")
    assert config_error(tmp_path).startswith(f"{bad}: [imds] total_timeout = 'x'")


def test_percent_signs_are_literal(tmp_path: Path) -> None:
    path = write(tmp_path / "x.conf", "[provisioning]\nuser_groups = a%b,%(x)s\n")
    assert load_config(tmp_path, path).provisioning.user_groups == "a%b,%(x)s"


def test_host_key_types_are_unset_by_default_and_rsa_can_be_asked_for(
    tmp_path: Path,
) -> None:
    # Unset: host.hostkeys.default_key_types decides for the image (tests/host).
    assert load_config(tmp_path).provisioning.ssh_host_key_types is None
    with_rsa = write(tmp_path / "rsa.conf", "[provisioning]\nssh_host_key_types = ed25519, rsa\n")
    assert load_config(tmp_path, with_rsa).provisioning.ssh_host_key_types == "ed25519, rsa"
    # Empty is ssh-keygen -A: whatever the installed OpenSSH makes by default.
    empty = write(tmp_path / "empty.conf", "[provisioning]\nssh_host_key_types =\n")
    assert load_config(tmp_path, empty).provisioning.ssh_host_key_types == ""
