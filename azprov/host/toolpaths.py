"""Before a system tool runs against an offline root: every path it will open, checked.

useradd, usermod, userdel (`--prefix ROOT`) and `systemctl --root=ROOT` open the
files of the root by name, and the kernel follows every link on the way as the
host sees it: an absolute link (or one climbing above the root) takes them out
of the image, a FIFO or /dev/zero hangs them, a sparse 4 GiB shadow keeps them
reading for minutes. azprov cannot confine another program, so before running
one it looks, through the door, at every path the tool will read or write (what
shadow 4.13 and systemd 252 open, from their sources and strace) and refuses the
run, before anything changes, with one line naming the first bad path.

The rule, the same for every path: no link at any component (Links.REFUSE: the
tool would follow it), the kind the tool needs (a regular file, a directory),
and for what it reads whole, no more than that file's cap. The live root is the
running system's own files: nothing is checked there.

Not covered: shadow built with libeconf (openSUSE) also reads /usr/etc/login.defs
and login.defs.d drop-ins; systemctl looks up the targets a unit names in every
unit directory (lib/systemd/system is a link on merged-/usr images, so a link
there cannot be refused) but only reads there, never writes.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import stat
from typing import Iterator, Optional

from azprov.confined import Links, kind_of
from azprov.errors import FileTooLarge, UnsafePath
from azprov.host import shadowconf
from azprov.host.root import TargetRoot

# passwd, group, shadow: a line is ~60-100 bytes, so an image with 100,000 local
# accounts (far more than any real one) has files of about 10 MB. Larger is refused
# whole: azprov and the tools read them into memory, and a cut copy would lose accounts.
ACCOUNT_FILE_CAP = 32 << 20
# Each database the shadow tools change gets, beside it (lib/commonio.c), NAME.PID and
# NAME.lock (the lock: created, and an existing one read, by name), NAME- (the backup)
# and NAME+ (the new copy, renamed over NAME), all opened following links. The PID is
# not known before the tool runs, so every NAME.<digits> in /etc is looked at.
DATABASES = ("passwd", "shadow", "group", "gshadow", "subuid", "subgid")
_BESIDE_A_DATABASE = re.compile(rf"^({'|'.join(DATABASES)})([-+]|\.lock|\.[0-9]+)?$")
# A skeleton is a few dotfiles (Debian's: 3 files, 5 KB): useradd copies all of it into
# the new home, reading each file whole, so its size, entries and depth are bounded.
SKELETON_CAP = 16 << 20
SKELETON_ENTRIES = 1000
SKELETON_DEPTH = 16
# The spool when login.defs names none: shadow's configure compiles in the first of
# /var/mail, /var/spool/mail that is a directory, which is /var/mail everywhere.
DEFAULT_MAIL_DIR = "/var/mail"
# A unit file is a few KB (azprov's: 2 KB); systemd itself refuses lines over 1 MiB.
UNIT_FILE_CAP = 1 << 20
UNIT_CONFIG_DIR = "/etc/systemd/system"
# Where systemctl --root looks for a unit before /etc/systemd/system (systemd 252): a
# link there would have it read a unit file of the host.
_UNIT_DIRS_FIRST = (  # a unit file in one is read without O_NONBLOCK: a FIFO would hang it
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
)
_DEPENDENCY_DIRS = (".wants", ".requires", ".upholds")


@contextlib.contextmanager
def _before(tool: str) -> Iterator[None]:
    """A refusal found while checking says which tool was not run."""
    try:
        yield
    except (UnsafePath, FileTooLarge) as exc:
        raise type(exc)(f"not running {tool} on the image: {exc}", **exc.supporting_data) from None


def _file(root: TargetRoot, path: str, cap: Optional[int] = None) -> bool:
    """`path` is absent (False) or a regular file (True) of at most `cap` bytes, with no
    link on its way."""
    found = root.lstat(path, links=Links.REFUSE)
    if found is None:
        return False
    if not stat.S_ISREG(found.st_mode):
        raise UnsafePath(f"{path} is {kind_of(found.st_mode)}, not a regular file", path=path)
    if cap is not None and found.st_size > cap:
        raise FileTooLarge(
            f"{path} is {found.st_size} bytes, more than the {cap} it may be", path=path
        )
    return True


def _directory(root: TargetRoot, path: str) -> bool:
    """`path` is absent (False) or a directory (True), with no link on its way."""
    found = root.lstat(path, links=Links.REFUSE)
    if found is None:
        return False
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafePath(f"{path} is {kind_of(found.st_mode)}, not a directory", path=path)
    return True


def _home(root: TargetRoot, home: str) -> None:
    """A home is absent or a directory, and so is each directory on the way to it (the
    tools make what is missing, in the last one that exists)."""
    path = home
    while not _directory(root, path) and path != "/":
        path = posixpath.dirname(path)


def plain_path(path: str, what: str) -> str:
    """`path`, from a file of the image, as a tool joins it to the root (`ROOT/path`):
    refused unless absolute, without `..` (it would climb out) or `.` components, and
    without a NUL (the tool would see a shorter path than the one checked)."""
    shown = path.replace("\0", "\\0")
    if "\0" in path:
        raise UnsafePath(f"{what} {path!r} holds a NUL byte", path=shown)
    if not path.startswith("/"):
        raise UnsafePath(f"{what} {path!r} is not an absolute path", path=shown)
    parts = path.split("/")
    if ".." in parts:
        raise UnsafePath(f"{what} {path!r} climbs with '..'", path=shown)
    if "." in parts:
        raise UnsafePath(f"{what} {path!r} has a '.' component", path=shown)
    return "/" + "/".join(part for part in parts if part)


def _databases(root: TargetRoot) -> dict[str, str]:
    """login.defs and the account databases with their companions; login.defs' settings."""
    for name in root.listdir("/etc", links=Links.REFUSE):
        match = _BESIDE_A_DATABASE.match(name)
        if match:
            _file(root, f"/etc/{name}", None if match.group(2) else ACCOUNT_FILE_CAP)
    return shadowconf.login_defs(shadowconf.read_settings(root, shadowconf.LOGIN_DEFS))


def _mail_dir(settings: dict[str, str]) -> Optional[str]:
    """The tools' mail spool directory (None: mailboxes are files in the homes)."""
    if "MAIL_DIR" in settings:
        return plain_path(settings["MAIL_DIR"], f"MAIL_DIR in {shadowconf.LOGIN_DEFS}")
    return None if "MAIL_FILE" in settings else DEFAULT_MAIL_DIR


def _skeleton(root: TargetRoot) -> str:
    """The image's /etc/skel (where it leads inside the image): absent, or a directory of
    bounded size. useradd copies links in it as links, never following them, but would
    make a FIFO or device found there again, owned by the new user: refused."""
    top = root.resolve("/etc/skel") or "/etc/skel"
    pending = [(top, 0)] if _directory(root, top) else []
    entries, size = 0, 0
    while pending:
        directory, depth = pending.pop()
        for name in root.listdir(directory, links=Links.REFUSE, limit=SKELETON_ENTRIES):
            path = f"{directory}/{name}"
            found = root.lstat(path, links=Links.REFUSE)
            entries += 1
            if found is None or stat.S_ISLNK(found.st_mode):
                continue
            if stat.S_ISREG(found.st_mode):
                size += found.st_size
            elif not stat.S_ISDIR(found.st_mode):
                raise UnsafePath(f"{path} is {kind_of(found.st_mode)}, in a skeleton", path=path)
            elif depth == SKELETON_DEPTH:
                raise UnsafePath(f"{path} is more than {SKELETON_DEPTH} levels deep", path=path)
            else:
                pending.append((path, depth + 1))
            if entries > SKELETON_ENTRIES or size > SKELETON_CAP:
                raise FileTooLarge(
                    f"{top} holds more than {SKELETON_ENTRIES} entries or {SKELETON_CAP}"
                    " bytes, for a skeleton copied into every new home",
                    path=top,
                )
    return top


def useradd_args(root: TargetRoot, name: str) -> list[str]:
    """Check every path `useradd --prefix --create-home NAME` opens in an offline root,
    and return the options that name them on its command line, so that what it uses is
    what was checked: the home, the skeleton (else the host's /etc/skel is copied) and
    the mail spool; and --no-log-init, else it resets the host's lastlog and faillog
    entries for the new UID. [] for the live root."""
    if root.live:
        return []
    with _before("useradd"):
        settings = _databases(root)
        defaults = shadowconf.useradd_defaults(
            shadowconf.read_settings(root, shadowconf.USERADD_DEFAULTS)
        )
        # The image's base for homes is honoured only as a plain in-tree path; the home
        # is then named to useradd (--home-dir), never left for it to compose.
        base = plain_path(defaults.get("HOME", "/home"), f"HOME in {shadowconf.USERADD_DEFAULTS}")
        if "/" in name or "\0" in name or name in ("", ".", ".."):
            raise UnsafePath(f"the user name {name!r} cannot name a home in {base}")
        home = posixpath.join(base, name)
        _home(root, home)
        args = ["--home-dir", home, "--skel", str(root.host_path(_skeleton(root)))]
        args.append("--no-log-init")
        # An empty value is "no" (get_defaults); unset, upstream's default is "yes".
        create_mailbox = (defaults.get("CREATE_MAIL_SPOOL", "yes") or "no").lower() == "yes"
        spool = _mail_dir(settings)
        if create_mailbox and spool is not None:
            _directory(root, spool)  # the mailbox itself is made O_EXCL: never followed
            args += ["--key", f"MAIL_DIR={spool}"]
    return args


def check_usermod(root: TargetRoot) -> None:
    """`usermod --prefix` (--lock): login.defs and the databases it rewrites."""
    if not root.live:
        with _before("usermod"):
            _databases(root)


def check_userdel(
    root: TargetRoot, name: str, home: Optional[str]
) -> tuple[Optional[str], Optional[str]]:
    """`userdel --prefix --remove NAME`: the databases, the way to the home it removes
    (`home`, from passwd) and the mailbox. Inside the home nothing is followed:
    remove_tree opens each directory from its parent with O_NOFOLLOW and unlinks the
    rest. The mailbox is looked at by name (access, stat) before it is unlinked, and
    shadow 4.13-4.14 cut the last letter of its name under --prefix: both are looked at.

    Returns the home and the mail spool directory as checked (plain in-tree paths; the
    spool None when there is none), for removing them through the door; (None, None)
    for the live root."""
    if root.live:
        return None, None
    with _before("userdel"):
        spool = _mail_dir(_databases(root))
        if home is not None:
            home = plain_path(home, f"the home of {name} in /etc/passwd")
            if home == "/":  # removing that home would empty the whole image
                raise UnsafePath(f"the home of {name} in /etc/passwd is '/', the whole tree")
            _home(root, home)
        if spool is not None and _directory(root, spool):
            for mailbox in sorted({name, name[:-1]} - {""}):
                _file(root, f"{spool}/{mailbox}")
        else:
            spool = None
    return home, spool


def check_systemctl(root: TargetRoot, unit_file: str) -> None:
    """`systemctl --root enable/disable/mask` of the unit at `unit_file`: the unit
    directories it looks in first, the unit file it reads, /etc/systemd/system and the
    dependency folders (`*.wants`…) it makes links in, and a SysV script of the same
    name (which would have it run systemd-sysv-install)."""
    if root.live:
        return
    unit = posixpath.basename(unit_file)
    with _before("systemctl"):
        for directory in _UNIT_DIRS_FIRST:
            if _directory(root, directory):
                _file(root, f"{directory}/{unit}", UNIT_FILE_CAP)
        if _directory(root, UNIT_CONFIG_DIR):
            _file(root, f"{UNIT_CONFIG_DIR}/{unit}", UNIT_FILE_CAP)
            for name in root.listdir(UNIT_CONFIG_DIR, links=Links.REFUSE):
                if name.endswith(_DEPENDENCY_DIRS):
                    _directory(root, f"{UNIT_CONFIG_DIR}/{name}")
        _file(root, unit_file, UNIT_FILE_CAP)
        _file(root, f"/etc/init.d/{unit.rsplit('.', 1)[0]}")
