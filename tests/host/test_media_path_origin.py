"""`[media] path`: an image's own config names a directory inside the image; only the
operator's `--config FILE` may name one on the host (review H1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from azprov.config import load_config
from azprov.errors import InvalidInput
from azprov.host.media import read_media
from azprov.host.root import TargetRoot


def _host_media(tmp_path: Path) -> Path:
    host_dir = tmp_path / "host-media"
    host_dir.mkdir()
    (host_dir / "ovf-env.xml").write_bytes(b"<host secret/>")
    return host_dir


def _image(tmp_path: Path, media_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc/azprov").mkdir(parents=True)
    (tree / "etc/azprov/azprov.conf").write_text(f"[media]\npath = {media_path}\n")
    return tree


def test_image_media_path_is_read_inside_the_tree_not_on_the_host(tmp_path: Path) -> None:
    host_dir = _host_media(tmp_path)
    tree = _image(tmp_path, host_dir)
    config = load_config(tree)
    with pytest.raises(InvalidInput, match=r"holds no ovf-env\.xml"):
        read_media(TargetRoot(str(tree)), config.media.path)
    inside = tree / str(host_dir).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "ovf-env.xml").write_bytes(b"<image media/>")
    assert read_media(TargetRoot(str(tree)), config.media.path) == b"<image media/>"


def test_image_media_path_through_a_link_stays_inside_the_tree(tmp_path: Path) -> None:
    host_dir = _host_media(tmp_path)
    tree = _image(tmp_path, Path("/media"))
    (tree / "media").symlink_to(host_dir)  # absolute: restarts at the tree's top
    inside = tree / str(host_dir).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "ovf-env.xml").write_bytes(b"<image media/>")
    assert read_media(TargetRoot(str(tree)), load_config(tree).media.path) == b"<image media/>"


def test_operator_config_media_path_is_a_host_path(tmp_path: Path) -> None:
    host_dir = _host_media(tmp_path)
    tree = _image(tmp_path, Path("/nowhere"))
    operator = tmp_path / "operator.conf"
    operator.write_text(f"[media]\npath = {host_dir}\n")
    config = load_config(tree, operator)
    assert read_media(TargetRoot(str(tree)), config.media.path) == b"<host secret/>"
