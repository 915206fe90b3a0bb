"""A conf.d the image makes unreadable (a link loop, too many entries) is a ConfigError
naming it, the error provision reports, never an unhandled HostError (review M5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from azprov.config import load_config
from azprov.errors import ConfigError


def test_dropin_dir_link_loop_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "etc/azprov").mkdir(parents=True)
    os.symlink("azprov.conf.d", tmp_path / "etc/azprov/azprov.conf.d")
    with pytest.raises(ConfigError, match=r"azprov\.conf\.d"):
        load_config(tmp_path)


def test_dropin_dir_with_too_many_entries_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azprov.confined

    dropins = tmp_path / "etc/azprov/azprov.conf.d"
    dropins.mkdir(parents=True)
    for index in range(5):
        (dropins / f"{index}.conf").write_text("")
    # The real cap is 100,000 entries; a smaller one keeps the test fast.
    monkeypatch.setitem(azprov.confined.Confined.listdir.__kwdefaults__, "limit", 3)
    with pytest.raises(ConfigError, match=r"azprov\.conf\.d.*more than 3 entries"):
        load_config(tmp_path)
