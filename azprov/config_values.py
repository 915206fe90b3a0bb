"""Parsers for configuration values: each takes the raw text and returns the value,
or raises ValueError with the rule the text broke (the config loader adds the
file, section and key)."""

from __future__ import annotations

import ipaddress

from azprov.errors import ConfigError

# The types OpenSSH still accepts as host keys. DSA is gone from OpenSSH 9.8.
KNOWN_TYPES = ("rsa", "ecdsa", "ed25519")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a positive number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


def parse_port(text: str) -> int:
    """A TCP port, 1 to 65535, written in ASCII digits."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise ValueError("invalid literal for a port")  # shown as "is not valid"
    if not 0 < int(value) < 65536:
        raise ValueError("must be a port number from 1 to 65535")
    return int(value)


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """Split `host`, `host:port`, `[v6]:port` into (host, port or None)."""
    value = text.strip()
    if not value or any(c.isspace() or c in "/?#@" for c in value):
        raise ValueError("must be a host or host:port")
    host, port = value, None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError("must be a host or host:port")
            port = _endpoint_port(rest[1:])
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        port = _endpoint_port(port_text)
    if not host:
        raise ValueError("must be a host or host:port")
    if ":" in host:  # more than one colon: only an IPv6 address may carry them
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("must be a host, host:port or [IPv6]:port") from None
    return host, port


def _endpoint_port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError:
        raise ValueError("port must be a number from 1 to 65535") from None


def parse_key_types(text: str) -> list[str]:
    """`ssh_host_key_types` ("ed25519, rsa") as a list; empty means ssh-keygen's defaults."""
    types: list[str] = []
    for item in text.replace(",", " ").split():
        name = item.strip().lower()
        if name not in KNOWN_TYPES:
            raise ConfigError(
                f"[provisioning] ssh_host_key_types: {item!r} is not a host key type"
                f" (use {', '.join(KNOWN_TYPES)})"
            )
        if name not in types:
            types.append(name)
    return types


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError("must be true or false")


def endpoint(text: str) -> str:
    parse_endpoint(text)  # raises ValueError on a bad host:port
    return text.strip()


def url(text: str) -> str:
    value = text.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or len(value) < 8:
        raise ValueError("must be an http:// or https:// URL")
    return value


def absolute_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    return text


def host_key_types(text: str) -> str:
    try:
        parse_key_types(text)
    except ConfigError:
        raise ValueError(f"must list host key types from: {', '.join(KNOWN_TYPES)}") from None
    return text.strip()


def stripped_text(text: str) -> str:
    return text.strip()
