"""Listing an initramfs: concatenated newc cpio archives, each possibly compressed.

gzip, xz/lzma and bzip2 come from the stdlib; zstd and lz4 (Debian 12 builds
zstd) need their tools, or the distribution's lister (`lsinitramfs`, `lsinitrd`).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
from pathlib import Path
from typing import Union

from azprov.checks.tools import find_tool

_TOOLS = {
    b"\x28\xb5\x2f\xfd": ["zstd", "-dcq"],
    b"\x02\x21\x4c\x18": ["lz4", "-dcq"],
}


def _cpio_names(data: bytes, offset: int, names: list[str]) -> int:
    """Read one newc archive from `offset`; return where the data after it starts."""
    while data[offset : offset + 6] in (b"070701", b"070702"):
        header = data[offset : offset + 110]
        size = int(header[54:62], 16)
        name_size = int(header[94:102], 16)
        name = data[offset + 110 : offset + 110 + name_size - 1].decode("utf-8", "replace")
        offset = (offset + 110 + name_size + 3) & ~3
        offset = (offset + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        names.append(name)
    while offset < len(data) and data[offset] == 0:
        offset += 1
    return offset


def _decompress(rest: bytes) -> Union[bytes, str]:
    if rest[:2] == b"\x1f\x8b":
        return gzip.decompress(rest)
    if rest[:6] == b"\xfd7zXZ\x00" or rest[:3] == b"\x5d\x00\x00":
        return lzma.decompress(rest)
    if rest[:3] == b"BZh":
        return bz2.decompress(rest)
    for magic, argv in _TOOLS.items():
        if rest.startswith(magic):
            tool = find_tool(argv[0])
            if tool is None:
                return f"{argv[0]} is not installed"
            done = subprocess.run([tool, *argv[1:]], input=rest, capture_output=True, check=False)
            return done.stdout if done.returncode == 0 else f"{argv[0]} failed"
    return f"unknown compression (starts {rest[:4].hex()})"


def _with_lister(path: Path) -> Union[list[str], str]:
    for argv in (["lsinitramfs", str(path)], ["lsinitrd", "--list", str(path)]):
        tool = find_tool(argv[0])
        if tool:
            done = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return done.stdout.split()
    return ""


def list_initramfs(path: Path) -> Union[list[str], str]:
    """Every path in the initramfs, or a sentence saying why it could not be read."""
    try:
        return _list(path.read_bytes(), path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    except ValueError:  # a cpio header that is not hex: not an initramfs this reader knows
        return "not a newc cpio archive"


def _list(data: bytes, path: Path) -> Union[list[str], str]:
    names: list[str] = []
    offset = 0
    while offset < len(data):
        if data[offset : offset + 6] in (b"070701", b"070702"):
            offset = _cpio_names(data, offset, names)
            continue
        try:
            unpacked = _decompress(data[offset:])
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            unpacked = "corrupt compressed data"
        if isinstance(unpacked, str):
            listed = _with_lister(path)
            return listed or f"{unpacked}, and neither lsinitramfs nor lsinitrd is"
        _cpio_names(unpacked, 0, names)
        break
    return names
