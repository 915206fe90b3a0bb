"""Configuration: one immutable tree of named tuples read from INI files.

Files, later wins: `<root>/etc/azprov/azprov.conf`, then
`<root>/etc/azprov/azprov.conf.d/*.conf` in sorted order, then `--config FILE`.
An unknown section or key, or a value that does not parse, is an error that
names the file, the key and the value: a typo must never be silently ignored.

The root's files are the image's: they are read through the one door
(`azprov.confined`), so a link in them resolves inside the image, as it will
when the image boots, and never reaches the host's files. For the same reason a
path an image's file names is a path inside that image: only `--config FILE`,
the operator's, may name a path on the host (`[media] path` is then a
`HostPath`).
"""

from __future__ import annotations

import configparser
import stat
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Optional

from azprov.config_values import (
    absolute_path,
    boolean,
    endpoint,
    host_key_types,
    parse_port,
    positive_float,
    positive_int,
    stripped_text,
    url,
)
from azprov.confined import Confined
from azprov.errors import ConfigError, FileTooLarge, HostError

MAIN_FILE = "etc/azprov/azprov.conf"
DROPIN_DIR = "etc/azprov/azprov.conf.d"
# azprov.conf and its drop-ins are a few hundred bytes (the shipped example, every
# line commented, is under 4 KiB): 1 MiB is far beyond a real one, and a larger
# file (a sparse 4 GiB one) is refused whole instead of read into memory.
CONFIG_CAP = 1 << 20


class WireServerConfig(NamedTuple):
    endpoint: Optional[str] = None  # None: DHCP option 245, else 168.63.129.16
    total_timeout: float = 1200.0
    hostplugin_port: int = 32526


class ImdsConfig(NamedTuple):
    url: str = "http://169.254.169.254/metadata"
    total_timeout: float = 300.0


class HostPath(str):
    """A path from `--config FILE` (the operator's): on the host, not in the target root."""


class MediaConfig(NamedTuple):
    # A directory already holding ovf-env.xml: in the target root, unless a HostPath.
    path: Optional[str] = None


class ProvisioningConfig(NamedTuple):
    # Unset: host.hostkeys.default_key_types picks for the image (no RSA unless the
    # image's own sshd would make it anyway). Empty: `ssh-keygen -A` (its defaults).
    ssh_host_key_types: Optional[str] = None
    user_groups: str = ""  # extra groups for the admin user, comma-separated
    publish_hostname: bool = True  # renew the DHCP lease so Azure DNS learns the name


class ExtensionsConfig(NamedTuple):
    lib_dir: str = "/var/lib/waagent"
    log_dir: str = "/var/log/azure"
    poll_interval: float = 6.0
    command_timeout: float = 1200.0  # per command, unless a handler section overrides
    max_package_bytes: int = 256 * 1024 * 1024
    # Budget of one channel (storage direct, or the HostGAPlugin) before the
    # other is tried: most VMs have no route to storage, so do not wait long.
    channel_timeout: float = 10.0
    # A direct storage request is tried once, with this connect timeout.
    storage_connect_timeout: float = 1.5


class Config(NamedTuple):
    wireserver: WireServerConfig = WireServerConfig()
    imds: ImdsConfig = ImdsConfig()
    media: MediaConfig = MediaConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    # Per-extension overrides from sections `[extension NAME]`: NAME -> key -> value.
    extension_overrides: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()

    def extension_timeout(self, handler: str, command: str) -> float:
        """Timeout of one handler command: `[extension NAME] <command>_timeout`,
        then `[extension NAME] timeout`, then `[extensions] command_timeout`."""
        for name, values in self.extension_overrides:
            if name.lower() == handler.lower():
                found = dict(values)
                for key in (f"{command}_timeout", "timeout"):
                    if key in found:
                        return found[key]
        return self.extensions.command_timeout


_SECTIONS: dict[str, tuple[type, dict[str, Callable[[str], object]]]] = {
    "wireserver": (
        WireServerConfig,
        {"endpoint": endpoint, "total_timeout": positive_float, "hostplugin_port": parse_port},
    ),
    "imds": (ImdsConfig, {"url": url, "total_timeout": positive_float}),
    "media": (MediaConfig, {"path": absolute_path}),
    "provisioning": (
        ProvisioningConfig,
        {
            "ssh_host_key_types": host_key_types,
            "user_groups": stripped_text,
            "publish_hostname": boolean,
        },
    ),
    "extensions": (
        ExtensionsConfig,
        {
            "lib_dir": absolute_path,
            "log_dir": absolute_path,
            "poll_interval": positive_float,
            "command_timeout": positive_float,
            "max_package_bytes": positive_int,
            "channel_timeout": positive_float,
            "storage_connect_timeout": positive_float,
        },
    ),
}
_EXTENSION_COMMANDS = ("install", "enable", "disable", "update", "uninstall")
_EXTENSION_KEYS = {"timeout"} | {f"{c}_timeout" for c in _EXTENSION_COMMANDS}


def config_files(root: Path, extra: Path | None) -> list[tuple[Path, bytes]]:
    """(path, content) of the files to read, in order. In the root only regular
    files count (a missing one, a directory or a FIFO is skipped)."""
    tree = Confined(root)
    try:
        names = [n for n in tree.listdir(DROPIN_DIR) if n.endswith(".conf")]
    except HostError as exc:  # a link loop, too many entries: the image's fault, reported
        raise ConfigError(f"{root / DROPIN_DIR}: cannot list: {exc}") from None
    found = []
    for relative in [MAIN_FILE, *(f"{DROPIN_DIR}/{name}" for name in names)]:
        data = _read_in_root(tree, relative)
        if data is not None:
            found.append((root / relative, data))
    if extra is not None:
        found.append((extra, _read_extra(extra)))
    return found


def _read_in_root(tree: Confined, relative: str) -> Optional[bytes]:
    """The regular file `relative` of the root, or None when there is none."""
    path = tree.path / relative
    try:
        found = tree.stat(relative)
        if found is None or not stat.S_ISREG(found.st_mode):
            return None
        return tree.read(relative, CONFIG_CAP)
    except FileTooLarge as exc:
        size = exc.supporting_data.get("size", "?")
        raise ConfigError(
            f"{path}: is {size} bytes, more than the {CONFIG_CAP} azprov reads for a config file"
        ) from None
    except HostError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


def _read_extra(path: Path) -> bytes:
    """`--config FILE`: the operator's own file, on the host, read up to the cap."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(CONFIG_CAP + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > CONFIG_CAP:
        raise ConfigError(
            f"{path}: is more than the {CONFIG_CAP} bytes azprov reads for a config file"
        )
    return data


def load_config(root: Path, extra: Path | None = None) -> Config:
    """Read every config file for `root` (plus `extra`) into one `Config`."""
    values: dict[str, dict[str, object]] = {name: {} for name in _SECTIONS}
    overrides: dict[str, dict[str, float]] = {}
    files = config_files(root, extra)  # `extra`, when given, is the last
    for index, (path, data) in enumerate(files):
        keys = _read_file(path, data, values, overrides)
        is_operators = extra is not None and index == len(files) - 1
        if is_operators and ("media", "path") in keys:
            values["media"]["path"] = HostPath(str(values["media"]["path"]))
    built = {name: _SECTIONS[name][0](**section_values) for name, section_values in values.items()}
    return Config(
        **built,
        extension_overrides=tuple(
            (name, tuple(sorted(keys.items()))) for name, keys in sorted(overrides.items())
        ),
    )


def _read_file(
    path: Path,
    data: bytes,
    values: dict[str, dict[str, object]],
    overrides: dict[str, dict[str, float]],
) -> set[tuple[str, str]]:
    """Parse one file into `values` and `overrides`; the (section, key)s it set."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        text = data.decode("utf-8-sig")  # an editor's BOM is not a key
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {_describe_parse_error(exc)}") from None
    if parser.defaults():
        raise ConfigError(f"{path}: section [DEFAULT] is not supported")
    found: set[tuple[str, str]] = set()
    for section in parser.sections():
        items = parser.items(section, raw=True)
        if section.startswith("extension "):
            name = section[len("extension ") :].strip()
            target = overrides.setdefault(name, {})
            for key, raw in items:
                if key not in _EXTENSION_KEYS:
                    raise _unknown_key(path, section, key, sorted(_EXTENSION_KEYS))
                target[key] = _parse_value(path, section, key, raw, positive_float)  # type: ignore[assignment]
            continue
        if section not in _SECTIONS:
            known = ", ".join(f"[{s}]" for s in [*_SECTIONS, "extension NAME"])
            raise ConfigError(f"{path}: unknown section [{section}] (known: {known})")
        keys = _SECTIONS[section][1]
        for key, raw in items:
            if key not in keys:
                raise _unknown_key(path, section, key, keys)
            values[section][key] = _parse_value(path, section, key, raw, keys[key])
            found.add((section, key))
    return found


def _parse_value(
    path: Path, section: str, key: str, raw: str, parse: Callable[[str], object]
) -> object:
    try:
        return parse(raw.strip())
    except ValueError as exc:
        why = str(exc) if not str(exc).startswith(("could not", "invalid literal")) else ""
        why = why or "is not valid"
        raise ConfigError(f"{path}: [{section}] {key} = {raw.strip()!r}: {why}") from None


def _unknown_key(path: Path, section: str, key: str, known: Iterable[str]) -> ConfigError:
    return ConfigError(
        f"{path}: unknown key {key!r} in [{section}] (known: {', '.join(sorted(known))})"
    )


def _describe_parse_error(exc: configparser.Error) -> str:
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: a key outside any [section]: {exc.line.strip()!r}"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: key {exc.option!r} repeated in [{exc.section}]"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: section [{exc.section}] repeated"
    if isinstance(exc, configparser.ParsingError):
        lineno, line = exc.errors[0]
        return f"line {lineno}: not a 'key = value' line: {_unrepr(line).strip()!r}"
    return exc.message.splitlines()[0]


def _unrepr(text: str) -> str:
    """configparser keeps a bad line as its repr(); show the line itself."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text
