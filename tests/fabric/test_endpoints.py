"""Endpoint strings: host, host:port, [v6]:port, and the base URL made from one."""

from __future__ import annotations

import pytest

from azprov.config_values import parse_endpoint
from azprov.fabric.endpoints import base_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3", ("10.1.2.3", None)),
        (" 10.1.2.3:80 ", ("10.1.2.3", 80)),
        ("wireserver.example:8080", ("wireserver.example", 8080)),
        ("fd00::1", ("fd00::1", None)),
        ("[fd00::1]", ("fd00::1", None)),
        ("[fd00::1]:65535", ("fd00::1", 65535)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "h:0",
        "h:65536",
        "h:x",
        "h:",
        ":80",
        "[::1]x",
        "[::1]:",
        "a/b",
        "u@h",
        "a b",
        "h?x",
        "h:80:90",
        "[h:80]:8",
        "h#x",
    ],
)
def test_bad_endpoint(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_base_url() -> None:
    assert base_url("168.63.129.16", 80) == "http://168.63.129.16:80"
    assert base_url("127.0.0.1:9", 80) == "http://127.0.0.1:9"
    assert base_url("fd00::1", 32526) == "http://[fd00::1]:32526"
    assert base_url("[fd00::1]:81", 80) == "http://[fd00::1]:81"
