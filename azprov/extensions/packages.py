"""Handler packages: checked whole as soon as they arrive, then unpacked safely.

`verify_zip` reads a downloaded package through before anything is unpacked:
its end record, its central directory, and every member to its end, so zipfile
checks each member's CRC (all within the same caps as unpacking). What zipfile
or a decompressor cannot read is `DamagedDownload`: the caller fetches it again
from the other channel, and the next round if none gives it whole. What is
whole but refused for what it holds is the package's own `InvalidInput`.

A package is unpacked into a hidden sibling folder and renamed into place
only when every entry was checked and written, so a refused or broken zip
leaves nothing behind. Refused: paths that are absolute or climb with `..`,
symbolic links, device files, FIFOs and sockets, and entries neither stored nor
deflated. Every folder and file is
made through the staging folder's door (`Confined`, links refused), so no
entry can be written anywhere but where its own name says.

Why no symbolic link at all, even one that points inside: whether a link
stays inside cannot be told from its text (`s -> .` makes `s/s/../..` climb
out though it reads as staying in), and no published handler needs one. The
platform agent unpacks with Python's `zipfile.extractall`, which writes a link
entry as a small file holding the target's text, so no handler that works on
Azure can rely on a link; and the published build recipes (Custom Script's and
Run Command's `zip` of their bin/ folder, azure-linux-extensions'
`find -type f | zip -@`) store files only.
"""

from __future__ import annotations

import logging
import lzma
import os
import secrets
import shutil
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Optional

from azprov.confined import Confined, Links
from azprov.errors import InvalidInput, one_line
from azprov.extensions.artifacts import DamagedDownload
from azprov.extensions.handler import MANIFEST_MAX_BYTES as HANDLER_MANIFEST_MAX_BYTES

log = logging.getLogger(__name__)

_COPY_CHUNK = 256 * 1024
# Published handlers ship from a handful of files (Custom Script, Run Command) to a few
# hundred (the monitoring agents with their bundled packages); 10,000 is far above any,
# and refusing there keeps a zip of empty members from making hundreds of thousands of files.
MAX_MEMBERS = 10_000
# Reading a central directory costs ~20 µs an entry: one that could list far more than
# MAX_MEMBERS entries (46 bytes each at least) is refused before zipfile reads it.
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 512
_END_RECORD_SEARCH = 22 + 0xFFFF  # the end record and the longest archive comment
# Stored and deflated entries only: the published build recipes (`zip`, above) make no
# other, and zipfile inflates a bzip2 or lzma entry whole in one call, whatever size it declares
# (a few hundred bytes of bzip2 hold gigabytes of zeros), before any cap can count it.
# Any other method zipfile cannot read at all: the package's own failure, not a download
# to fetch again every round.
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# What zipfile and its decompressors raise for bytes they cannot decode: a zip cut short
# or with no end record, a CRC that does not match, a corrupt deflate, lzma or bzip2
# stream, an encrypted entry (RuntimeError), a name flagged UTF-8 that is not
# (UnicodeDecodeError), a header that lies (ValueError).
_UNDECODABLE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    NotImplementedError,
    zlib.error,
    lzma.LZMAError,
    RuntimeError,
    ValueError,
)


def verify_zip(source: IO[bytes], name: str, *, max_unpacked: int) -> None:
    """Check that `source` holds a whole zip, before anything is unpacked (see the module
    docstring); DamagedDownload when it does not, InvalidInput when it is refused for what
    it holds (too many entries, too large, an encrypted entry, a path that climbs, a link).

    Why bytes that are whole but no zip at all (a proxy's page, a blob replaced) are a
    failed download too, not the package's own failure: they cannot be told from a
    download damaged on the way (with no length to check, a cut reply looks whole), and
    the platform agent takes a package it cannot unzip as a failed download, removes it
    and tries the next URI and channel (reference §2, §6); so azprov tries the other
    channel, and the next round, as for any download."""
    try:
        _check_directory_size(source, name)
        with zipfile.ZipFile(source) as archive:
            for info, relative in _check_members(archive, name, max_unpacked):
                _write_member(archive, info, None, relative, max_unpacked)
    except _UNDECODABLE as exc:
        raise DamagedDownload(f"not a whole zip ({one_line(str(exc))[:200]})") from None
    finally:
        source.seek(0)


def _member_path(field: str, raw: str) -> str:
    """The member's path relative to the package root, or a refusal naming it."""
    if "\\" in raw or "\0" in raw:
        raise InvalidInput(field, raw, "has a backslash or NUL in its path")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise InvalidInput(field, raw, "is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(field, raw, "climbs out of the package with '..'")
    return "/".join(parts)


def _check_directory_size(source: IO[bytes], name: str) -> None:
    """Refuse a zip whose end record declares more than MAX_MEMBERS entries or a central
    directory over MAX_DIRECTORY_BYTES (zipfile finds no end record: it says so itself).

    Every record zipfile may take is checked, since its choice differs from what a plain
    search finds: it takes the last 22 bytes as the end record when they begin with its
    signature (one that a field of that record repeats is then the last one in the
    file), else the last signature; and Python 3.9-3.13 read the zip64 end record just
    before its locator, later ones where the locator says."""
    end = source.seek(0, os.SEEK_END)
    start = max(0, end - _END_RECORD_SEARCH)
    source.seek(start)
    tail = source.read()
    last = tail.rfind(b"PK\x05\x06")
    found = {at for at in (len(tail) - 22, last) if at >= 0 and len(tail) - at >= 22}
    declared = []
    for at in sorted(found):
        if tail[at : at + 4] != b"PK\x05\x06":
            continue
        entries, size = struct.unpack_from("<HI", tail, at + 10)
        locator = at - 20
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            declared.append((entries, size))
        else:
            # With a zip64 record, all ones are placeholders for its values; a size of
            # all ones, were it taken, starts the directory before the file (refused).
            declared.append(
                (0 if entries == 0xFFFF else entries, 0 if size == 2**32 - 1 else size)
            )
            (named,) = struct.unpack_from("<Q", tail, locator + 8)
            for record in {named, start + locator - 56}:
                if record < 0:  # no room for one before the locator
                    continue
                source.seek(record)
                zip64 = source.read(56)
                if len(zip64) == 56 and zip64[:4] == b"PK\x06\x06":
                    declared.append(struct.unpack_from("<QQ", zip64, 32))
    source.seek(0)
    for entries, size in declared:
        if entries > MAX_MEMBERS:
            raise InvalidInput(
                f"package {name}", f"{entries} entries", f"has more than {MAX_MEMBERS} entries"
            )
        if size > MAX_DIRECTORY_BYTES:
            raise InvalidInput(
                f"package {name}",
                f"{size} bytes of central directory",
                f"is more than {MAX_DIRECTORY_BYTES} (room for {MAX_MEMBERS} entries)",
            )


def _check_members(
    archive: zipfile.ZipFile, name: str, max_unpacked: int
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every entry before writing any: (entry, relative path)."""
    checked: list[tuple[zipfile.ZipInfo, str]] = []
    total = 0
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise InvalidInput(
            f"package {name}", f"{len(members)} entries", f"has more than {MAX_MEMBERS} entries"
        )
    for info in members:
        field = f"package {name} entry"
        relative = _member_path(field, info.filename)
        if info.flag_bits & 0x1:
            raise InvalidInput(field, info.filename, "is encrypted")
        if info.compress_type not in _METHODS:
            raise InvalidInput(
                field,
                info.filename,
                f"is compressed with method {info.compress_type} (azprov unpacks stored "
                "and deflated entries only)",
            )
        mode = info.external_attr >> 16 if info.create_system == 3 else 0
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise InvalidInput(
                field, info.filename, "is a symbolic link (azprov unpacks files and folders only)"
            )
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidInput(field, info.filename, "is a device, FIFO or socket")
        total += info.file_size
        if total > max_unpacked:
            raise InvalidInput(
                f"package {name}", f"{total} bytes", f"unpacks to more than {max_unpacked}"
            )
        if relative:
            checked.append((info, relative))
    return checked


def unpack_zip(source: IO[bytes], target: Path, *, max_unpacked: int, name: str) -> None:
    """Unpack the zip in `source` as `target` (which must not exist yet), all or nothing."""
    staging = f".{target.name}.azprov-unpack-{secrets.token_hex(4)}"
    with Confined(target.parent).directory(".", create=False, links=Links.REFUSE) as parent:
        os.mkdir(staging, 0o755, dir_fd=parent)
        try:
            tree = Confined(target.parent / staging)
            try:
                _check_directory_size(source, name)
                with zipfile.ZipFile(source) as archive:
                    members = _check_members(archive, name, max_unpacked)
                    for info, relative in members:
                        _write_member(archive, info, tree, relative, max_unpacked)
            except _UNDECODABLE as exc:
                raise InvalidInput(
                    f"package {name}", "zip", f"is not a usable zip file ({exc})"
                ) from None
            files = sorted(relative for info, relative in members if not info.is_dir())
            _lift_handler_manifest(tree, files, name)
            os.rename(staging, target.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            # rmtree never follows a link inside the tree (and the package has none).
            shutil.rmtree(target.parent / staging, ignore_errors=True)
            raise


def _write_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    tree: Optional[Confined],
    relative: str,
    cap: int,
) -> None:
    """Read one checked entry to its end (zipfile checks its CRC there) and write it into
    the staging `tree`: a folder, or a file marked executable. With no tree it is only
    read: how `verify_zip` checks a download before anything is unpacked."""
    if tree is None:
        if not info.is_dir():
            with archive.open(info) as member:
                _copy_member(member, None, info, relative, cap)
        return
    parent, _, leaf = relative.rpartition("/")
    is_dir = info.is_dir()
    with tree.directory(relative if is_dir else parent, mode=0o755, links=Links.REFUSE) as dir_fd:
        if is_dir:
            return
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(leaf, flags, 0o755, dir_fd=dir_fd)
        except FileExistsError:
            raise InvalidInput("package entry", relative, "appears twice") from None
        with os.fdopen(fd, "wb") as out, archive.open(info) as member:
            _copy_member(member, out, info, relative, cap)
            os.fchmod(out.fileno(), 0o755)  # handlers are scripts: mark every file executable


def _copy_member(
    member: IO[bytes], out: Optional[IO[bytes]], info: zipfile.ZipInfo, relative: str, cap: int
) -> None:
    """Copy a member to `out` (or only read it), never past `cap` bytes."""
    written = 0
    while True:
        chunk = member.read(_COPY_CHUNK)
        if not chunk:
            return
        written += len(chunk)
        if written > cap:
            raise InvalidInput(
                f"package entry {relative}", f"{written} bytes", "is larger than declared"
            )
        if out is not None:
            out.write(chunk)


def _lift_handler_manifest(tree: Confined, files: list[str], name: str) -> None:
    """Copy a HandlerManifest.json found in a sub-folder to the package root (the first
    of the package's `files`, in path order, when there are several)."""
    manifest = "HandlerManifest.json"
    if manifest in files:
        return
    for found in files:
        if found.endswith(f"/{manifest}"):
            content = tree.read(found, HANDLER_MANIFEST_MAX_BYTES, links=Links.REFUSE)
            if content is not None:
                tree.write(manifest, content, mode=0o644, links=Links.REFUSE)
                return
    raise InvalidInput(f"package {name}", manifest, "is not in the package")
