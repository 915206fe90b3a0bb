"""login.defs and /etc/default/useradd read as shadow's tools read them (getdef,
get_defaults): what azprov checks before a tool runs is what the tool will use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azprov.host import toolpaths
from azprov.host.root import TargetRoot
from azprov.host.shadowconf import login_defs, useradd_defaults
from azprov.host.users import read_accounts
from azprov.simulate import prepare_root


def test_login_defs_is_read_as_getdef_reads_it() -> None:
    text = (
        b"# MAIL_DIR /commented\n"
        b"   MAIL_DIR\t/var/spool/mail  \n"
        b'ENV_PATH "PATH=/usr/bin" trailing\n'
        b"LONELY\n"
        b"UID_MIN 500\n"
        b"UID_MIN 1000\n"  # the last one wins
    )
    assert login_defs(text) == {
        "MAIL_DIR": "/var/spool/mail",
        "ENV_PATH": "PATH=/usr/bin",
        "UID_MIN": "1000",
    }


def test_a_login_defs_line_longer_than_fgets_reads_is_taken_as_two() -> None:
    """getdef's fgets takes 1023 bytes at a time: the rest of a long comment is a line."""
    hidden = b"#" + b"x" * 1022 + b"MAIL_DIR /elsewhere\n"
    assert login_defs(hidden) == {"MAIL_DIR": "/elsewhere"}
    assert login_defs(b"MAIL_DIR /var/mail\0 /ignored\n") == {"MAIL_DIR": "/var/mail"}


def test_useradd_defaults_are_read_as_get_defaults_reads_them() -> None:
    text = b"HOME=/srv/home\n# HOME=/commented\n HOME=/indented\nCREATE_MAIL_SPOOL=\nSKEL=/a=b\n"
    assert useradd_defaults(text) == {
        "HOME": "/srv/home",
        "# HOME": "/commented",
        " HOME": "/indented",
        "CREATE_MAIL_SPOOL": "",
        "SKEL": "/a=b",
    }
    assert useradd_defaults(None) == {}


def test_a_uid_min_of_thousands_of_digits_keeps_the_default(tmp_path: Path) -> None:
    """int() refuses more than 4300 digits (Python 3.11): the value is no UID bound."""
    prepare_root(tmp_path, "00000000-0000-0000-0000-000000000000")
    (tmp_path / "etc/login.defs").write_text(f"UID_MIN {'1' * 5000}\n")
    assert read_accounts(TargetRoot(tmp_path)).uid_min == 1000


def test_the_live_root_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """On `/` the tools use the running system's own files, as before: nothing is looked at."""

    def looked(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the live root was looked at")

    for method in ("lstat", "listdir", "read", "resolve"):
        monkeypatch.setattr(TargetRoot, method, looked)
    live = TargetRoot("/")
    assert toolpaths.useradd_args(live, "azureuser") == []
    toolpaths.check_usermod(live)
    toolpaths.check_userdel(live, "azureuser", "/home/azureuser")
    toolpaths.check_systemctl(live, "/etc/systemd/system/azure-provisioning.service")
