"""The image's sshd configuration, read as OpenSSH's sshd reads it: the one reader
behind provision (password policy), reload (PidFile), host keys (HostKey) and check.

As sshd does (servconf.c of OpenSSH 8.7 and later: Debian 12, Ubuntu 22.04,
RHEL 9, Fedora; the line syntax is in `azprov.host.sshd_syntax`):

- `Include` reads each file its glob patterns name, where the line stands: a
  relative pattern is under /etc/ssh, matches are taken in byte order, a
  directory reads as empty, and nesting deeper than 16 files makes sshd refuse
  to start.
- `Match`: the lines after it apply only to the connections it matches, until
  the next `Match` or the end of the file it is in, so they hold no global
  value. An Include under a Match makes every line it brings conditional.
  `Match all` matches every connection: at start, the lines after it are read
  as global ones (PidFile, HostKey).
- For most keywords the first global value wins; some (HostKey) collect every
  value.
- For a connection, sshd takes the Match blocks that match it, in order: the
  first value among them wins over the global one, wherever that stands
  (`sshd -T -C user=…` says so; `sshd -T` too for `Match all`).

Bounded beyond what sshd bounds (it has no cap of its own): each file is read
through the target root's door (links resolved inside the tree, never past a
FIFO or device), at most `FILE_CAP` bytes each, `MAX_FILES` file reads and
`TOTAL_CAP` bytes in all: a web of Includes that multiplies is refused with a
HostError naming it, never followed until memory or time run out.
"""

from __future__ import annotations

import stat
from typing import Mapping, NamedTuple, Optional

from azprov.confined import Confined
from azprov.errors import HostError, UnsafePath
from azprov.host.sshd_glob import Glob
from azprov.host.sshd_syntax import Refused, logical_lines, match_all, shown, split_line

SSH_DIR = "/etc/ssh"
SSHD_CONFIG = f"{SSH_DIR}/sshd_config"
# sshd's SERVCONF_MAX_DEPTH: sshd_config is depth 0, and a file included at a depth
# over this makes sshd exit ("Too many recursive configuration includes").
MAX_DEPTH = 16
# Debian 12's sshd_config is 3.2 KB and Fedora's 3.7 KB; drop-ins are a few lines.
# 1 MiB is hundreds of times any real one and still reads in milliseconds.
FILE_CAP = 1 << 20
# Every file sshd reads counts (a file included twice counts twice): real images
# read the main file and a handful of drop-ins; more than this is a web of
# Includes feeding itself, which sshd would follow until depth 16 (2^16 reads
# for a file that includes itself twice).
MAX_FILES = 256
# All the text read, repeats included: bounds the work however the files nest.
TOTAL_CAP = 4 << 20


class Setting(NamedTuple):
    """One keyword line, where sshd read it."""

    keyword: str  # lower case: sshd compares keywords without case
    args: tuple[str, ...]  # the words after it, quotes and escapes removed
    path: str  # the file, named as sshd names it (`/etc/ssh/sshd_config.d/50-x.conf`)
    line: int  # sshd's line number in that file
    order: int  # how many keyword lines sshd read before this one
    conditional: bool  # under a Match (or included from under one): not a global value
    span: tuple[int, int]  # the line's bytes in the file: what removing it removes
    # The Match line's words it is under (`("User", "x")`); () outside any Match.
    # Under a Match in a file included from under another, the outer's words, `&`, its own.
    match: tuple[str, ...] = ()

    @property
    def value(self) -> str:
        """The arguments as one string (`/etc/ssh/my key` for `HostKey "/etc/ssh/my key"`)."""
        return " ".join(self.args)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


class SourceFile(NamedTuple):
    """One file as sshd reads it: the main file or an included one (again for each Include)."""

    path: str
    order: int  # keyword lines read before it
    conditional: bool  # included from under a Match


class SshdConfig(NamedTuple):
    """Every keyword line sshd reads, in its order, with Includes expanded."""

    settings: tuple[Setting, ...]
    files: tuple[SourceFile, ...]
    # Lines that make sshd refuse the whole configuration (`path:3: invalid quotes`):
    # the rest is still read as sshd reads it before it gives up.
    problems: tuple[str, ...]

    def first(self, keyword: str) -> Optional[Setting]:
        """The global value sshd uses for a keyword where the first one wins."""
        keyword = keyword.lower()
        return next((s for s in self.settings if s.keyword == keyword and not s.conditional), None)

    def every(self, keyword: str) -> list[Setting]:
        """Every global value of a keyword that collects them (HostKey), in order."""
        keyword = keyword.lower()
        return [s for s in self.settings if s.keyword == keyword and not s.conditional]

    def in_match(self, keyword: str) -> list[Setting]:
        """The values of a keyword under Match blocks: for a connection each matching
        block's first one overrides the global value."""
        keyword = keyword.lower()
        return [s for s in self.settings if s.keyword == keyword and s.match]

    def for_every_connection(self, keyword: str) -> Optional[Setting]:
        """The value of a keyword sshd allows under Match that every connection gets:
        the first one under a block matching every connection, else the global one."""
        keyword = keyword.lower()
        overriding = (s for s in self.in_match(keyword) if matches_every_connection(s.match))
        return next(overriding, None) or next(
            (s for s in self.settings if s.keyword == keyword and not s.match), None
        )

    def read_globally(self, path: str) -> Optional[SourceFile]:
        """Where sshd first reads `path` outside any Match; None when it never does."""
        return next((f for f in self.files if f.path == path and not f.conditional), None)


# Criteria whose `*` matches every connection.
_EVERY = frozenset({"user", "host", "address", "localaddress"})


def matches_every_connection(match: tuple[str, ...]) -> bool:
    """Whether a Match line's words (`all`, `User *`, `User * Host *`) match every
    connection. Anything else is taken to match only some."""
    if len(match) == 1:
        return match[0].lower() == "all"
    if not match or len(match) % 2:
        return False
    pairs = zip(match[::2], match[1::2])
    return all(name.lower() in _EVERY and value == "*" for name, value in pairs)


def sshd_path(value: str) -> str:
    """A file argument (PidFile, HostKey) as sshd takes it (derelativise_path): `none`
    as it is, `~/` under root's home, and a relative path joined to sshd's working
    directory, which is / when systemd starts it (`//x`, as sshd itself writes it)."""
    if value.lower() == "none" or value.startswith("/"):
        return value
    if value == "~" or value.startswith("~/"):
        return "/root" + value[1:]
    return "//" + value


def read_sshd_config(
    root: Confined, *, overlay: Optional[Mapping[str, bytes]] = None, main: str = SSHD_CONFIG
) -> Optional[SshdConfig]:
    """The configuration sshd would read from the tree; None when there is no sshd_config.

    `overlay`: files (in-tree paths, `/etc/ssh/sshd_config.d/00-azprov.conf`)
    read with this content instead of what the tree holds, as if written
    (the configuration azprov is about to write, or will write at first boot).

    HostError (UnsafePath, FileTooLarge among them) when sshd would not get
    past a file either: a FIFO, a device, a link loop, a file an Include names
    that cannot be opened, Includes nested deeper than sshd allows; and when
    the files are more or larger than the bounds above.
    """
    reader = _Reader(root, dict(overlay or {}))
    if reader.content(main) is None:
        return None
    reader.read_file(main, depth=0, active=True, never=False)
    return SshdConfig(tuple(reader.settings), tuple(reader.files), tuple(reader.problems))


class _Reader:
    def __init__(self, root: Confined, overlay: dict[str, bytes]) -> None:
        self.root = root
        self.overlay = overlay
        self.glob = Glob(root, overlay, MAX_FILES)
        self.cache: dict[str, Optional[bytes]] = {}
        # Like sshd, which keeps each Include pattern's files from its first use.
        self.globbed: dict[str, list[str]] = {}
        self.settings: list[Setting] = []
        self.files: list[SourceFile] = []
        self.problems: list[str] = []
        self.total = 0
        self.block: tuple[str, ...] = ()  # the Match the current line is under
        self.outer: tuple[str, ...] = ()  # the Match an Include under one was under

    def content(self, path: str) -> Optional[bytes]:
        """A file's bytes (a directory reads as empty, as with sshd); None when absent."""
        if path in self.overlay:
            return self.overlay[path]
        if path not in self.cache:
            try:
                self.cache[path] = self.root.read(path, FILE_CAP)
            except UnsafePath:
                found = self.root.stat(path)
                if found is None or not stat.S_ISDIR(found.st_mode):
                    raise
                self.cache[path] = b""  # fopen() takes a directory; reading it gives nothing
        return self.cache[path]

    def read_file(self, path: str, *, depth: int, active: bool, never: bool) -> None:
        """Read one file as sshd's parse_server_config_depth does. `active`: whether
        the lines are global where it starts; `never`: included from under a Match,
        so no Match in it can make a line global."""
        if depth > MAX_DEPTH:
            raise HostError(
                f"sshd configuration: Include nested more than {MAX_DEPTH} files deep "
                f"at {shown(path)}: sshd refuses it",
                path=shown(path),
            )
        if len(self.files) >= MAX_FILES:
            raise HostError(
                f"sshd configuration: its Includes read more than {MAX_FILES} files "
                f"(at {shown(path)})",
                path=shown(path),
            )
        data = self.content(path)
        if data is None:  # matched by a glob but gone, or a link to nothing
            raise HostError(
                f"sshd configuration: {shown(path)} is included but cannot be opened "
                "(sshd would not start)",
                path=shown(path),
            )
        self.total += len(data)
        if self.total > TOTAL_CAP:
            raise HostError(
                f"sshd configuration: more than {TOTAL_CAP} bytes with its Includes "
                f"(at {shown(path)})",
                path=shown(path),
            )
        self.files.append(SourceFile(path, len(self.settings), not active))
        outer, outer_of_outer = self.block, self.outer  # a Match ends with the file it is in
        if never:
            self.outer = self.block
        for number, (text, span) in enumerate(logical_lines(data), 1):
            try:
                active = self.line(path, number, text, span, depth, active, never)
            except Refused as exc:
                self.problems.append(f"{shown(path)}:{number}: {exc}")
        self.block, self.outer = outer, outer_of_outer

    def line(
        self,
        path: str,
        number: int,
        text: str,
        span: tuple[int, int],
        depth: int,
        active: bool,
        never: bool,
    ) -> bool:
        """Take one line; returns whether the lines after it are global."""
        words = split_line(text)
        if words is None:
            return active
        keyword, args = words
        if keyword == "match":
            matches_all = match_all(args)
            criteria = tuple(w for w in args if not w.startswith("#"))
            self.block = (*self.outer, "&", *criteria) if never else criteria
            if matches_all is None:
                # sshd stops here; what follows is not taken as global either.
                self.problems.append(f"{shown(path)}:{number}: bad Match condition")
                return False
            return matches_all and not never
        if keyword == "include":
            self.include(args, depth, active, never)
            return active
        self.settings.append(
            Setting(
                keyword,
                tuple(args),
                path,
                number,
                len(self.settings),
                not active,
                span,
                self.block,
            )
        )
        return active

    def include(self, args: list[str], depth: int, active: bool, never: bool) -> None:
        if not args:
            raise Refused("Include without a file name")
        for pattern in args:
            if pattern == "":
                raise Refused("Include with an empty argument")
            # sshd prefixes /etc/ssh to a pattern not starting with / or ~; one starting
            # with ~ it passes as it is (no tilde expansion: relative to its working
            # directory, which is / under systemd).
            if not pattern.startswith(("/", "~")):
                pattern = f"{SSH_DIR}/{pattern}"
            if pattern not in self.globbed:
                self.globbed[pattern] = self.glob.expand(pattern)
            for found in self.globbed[pattern]:
                self.read_file(found, depth=depth + 1, active=active, never=never or not active)
