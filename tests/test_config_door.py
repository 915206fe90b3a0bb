"""The image's own azprov.conf and drop-ins are read through the one door: a link in
them never leads out of the target root, and no file there is read past its cap."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from azprov.config import CONFIG_CAP, DROPIN_DIR, MAIN_FILE, load_config
from azprov.errors import ConfigError

OUTSIDE = "[imds]\nurl = http://10.9.9.9/outside\n"


def test_a_config_file_linked_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside.conf"
    outside.write_text(OUTSIDE)
    (root / MAIN_FILE).parent.mkdir(parents=True)
    (root / MAIN_FILE).symlink_to(outside)
    assert load_config(root).imds.url == "http://169.254.169.254/metadata"


def test_a_config_file_linked_inside_the_root_is_read_as_the_image_sees_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    shipped = root / "usr/share/azprov/azprov.conf"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("[imds]\nurl = http://10.1.1.1/inside\n")
    (root / MAIN_FILE).parent.mkdir(parents=True)
    (root / MAIN_FILE).symlink_to("/usr/share/azprov/azprov.conf")  # absolute: in the image
    assert load_config(root).imds.url == "http://10.1.1.1/inside"


def test_a_drop_in_folder_linked_out_of_the_root_is_not_listed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside.d"
    outside.mkdir()
    (outside / "10-x.conf").write_text(OUTSIDE)
    (root / DROPIN_DIR).parent.mkdir(parents=True)
    (root / DROPIN_DIR).symlink_to(outside)
    assert load_config(root).imds.url == "http://169.254.169.254/metadata"


def test_a_drop_in_linked_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside.conf"
    outside.write_text(OUTSIDE)
    (root / DROPIN_DIR).mkdir(parents=True)
    (root / DROPIN_DIR / "10-x.conf").symlink_to(os.path.relpath(outside, root / DROPIN_DIR))
    assert load_config(root).imds.url == "http://169.254.169.254/metadata"


def test_a_huge_config_file_is_refused_with_one_line_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / MAIN_FILE
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        handle.truncate(64 << 20)  # sparse: a hole, not 64 MiB of disk
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == (
        f"{path}: is {64 << 20} bytes, more than the {CONFIG_CAP} azprov reads for a config file"
    )


def test_a_huge_config_file_on_the_command_line_is_refused_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.conf"
    with path.open("wb") as handle:
        handle.truncate(64 << 20)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "root", path)
    assert str(caught.value) == (
        f"{path}: is more than the {CONFIG_CAP} bytes azprov reads for a config file"
    )


def test_a_config_file_that_is_a_fifo_is_skipped_not_waited_on(tmp_path: Path) -> None:
    """As a directory there always was: only regular files are configuration."""
    path = tmp_path / MAIN_FILE
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    loaded: list[object] = []
    reader = threading.Thread(target=lambda: loaded.append(load_config(tmp_path)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # let the stuck reader go before failing
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
    assert loaded and loaded[0] == load_config(tmp_path / "absent")
