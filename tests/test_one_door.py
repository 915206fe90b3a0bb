"""The target root has one door: nothing in azprov/ opens, lists, copies or reads a
path by itself, except the door (azprov/confined.py over azprov/treewalk.py, with
azprov/host/files.py's descriptor-level writer) and an exact list of calls whose
path is not in a target root.

A call is through the door when it is a method of a door object: `root`, `tree`,
`confined` or `self.root` (a TargetRoot, checks' Tree or a Confined), or `self`
inside one of those classes. The check goes by name, so a host `Path` must not be
called `root` or `tree` unless its annotation says `Path` (then it is treated as
the Path it is). `read_text`/`read_bytes` through the door always name the file
(`tree.read_text("etc/hostname")`); with no path argument it is `Path.read_text`.

Like the layering test (tests/test_layers.py), it reads the source, never imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple, Optional, Union

PACKAGE = Path(__file__).resolve().parent.parent / "azprov"

# The door itself: the only modules that may touch a path directly.
DOOR = frozenset(
    {
        "azprov/confined.py",
        "azprov/treewalk.py",
        "azprov/host/confined.py",
        "azprov/host/files.py",
    }
)

# Functions (of the builtins, `os`, `io`, `glob`, `shutil`, azprov.host.files) that
# open, list, read, copy or follow a path.
FORBIDDEN_FUNCTIONS = frozenset(
    {
        "open",
        "io.open",
        "os.open",
        "os.listdir",
        "os.scandir",
        "os.walk",
        "os.fwalk",
        "os.readlink",
        "glob.glob",
        "glob.iglob",
        "shutil.copy",
        "shutil.copy2",
        "shutil.copyfile",
        "shutil.copytree",
        "shutil.copymode",
        "shutil.copystat",
        # shutil.copyfileobj copies between two open files: the opens are what count.
        # The helpers that took a host path before the door; only write_at (a name
        # in a directory descriptor the door opened) stays.
        "azprov.host.files.open_directory",
        "azprov.host.files.write_atomic",
        "azprov.host.files.read_at",
        "azprov.host.files.read_regular",
    }
)
# Path methods (and their names on any other object) that open, list or read a path.
FORBIDDEN_METHODS = frozenset(
    {
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "open",
        "glob",
        "rglob",
        "iterdir",
    }
)
# Door methods that share a name with a Path method.
DOOR_METHODS = frozenset({"read_text", "read_bytes", "glob"})
DOOR_NAMES = frozenset({"root", "tree", "confined"})
DOOR_CLASSES = frozenset({"Confined", "Rooted", "TargetRoot", "Tree"})


class Call(NamedTuple):
    """One forbidden call: where it is, and what it calls (`os.open`, `.read_text`)."""

    module: str
    function: str
    line: int
    name: str

    def shown(self) -> str:
        return f"{self.module}:{self.line} {self.function}: {self.name}("


# (module, function, call) -> why the path there is not in a target root.
# An entry that matches no call fails the test: it cannot outlive the code it excuses.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("azprov/host/kvp.py", "_boot_time", "open"): (
        "/proc/stat of the running kernel: the boot time that KVP records are stamped with"
    ),
    ("azprov/host/nic.py", "interfaces", "os.listdir"): (
        "/sys/class/net of the running kernel, listed only when the root is the live system"
    ),
    ("azprov/host/media.py", "_cd_devices", "glob.glob"): (
        "/dev/sr* and /dev/cdrom of the running system: the provisioning CD's device nodes"
    ),
    ("azprov/host/media.py", "_has_medium", "os.open"): (
        "a CD device node of the running system, opened O_NONBLOCK for one drive-status ioctl"
    ),
    ("azprov/checks/rpmdb.py", "_copy_db", "open"): (
        "the copy check makes in its own temporary directory, for rpm to read"
    ),
    ("azprov/config.py", "_read_extra", "open"): (
        "the config file named on the command line (--config): the operator's own, on the host"
    ),
    # Two descriptor-level opens, like files.write_at: a name (O_NOFOLLOW) in a
    # directory descriptor the door opened; the path is in the tree, but no walk is left.
    ("azprov/extensions/commands.py", "_output_file", "os.open"): (
        "a handler's log file, by name in the log folder's descriptor from the door"
    ),
    ("azprov/extensions/packages.py", "_write_member", "os.open"): (
        "a new package member, O_EXCL by name in the staging folder's descriptor from the door"
    ),
    ("azprov/extensions/packages.py", "_write_member", ".open"): (
        "ZipFile.open of a member of a package already open: a name in the archive, not a path"
    ),
    ("azprov/simulate.py", "put", ".write_text"): (
        "the simulator lays out its own throwaway tree, in a directory it made"
    ),
    ("azprov/simulate.py", "snapshot", "os.walk"): (
        "the simulator's own throwaway tree, listed for its report of what changed"
    ),
    ("azprov/simulate.py", "snapshot", ".read_bytes"): (
        "the simulator's own throwaway tree, hashed for its report of what changed"
    ),
    ("azprov/simulate.py", "snapshot", "os.readlink"): (
        "the simulator's own throwaway tree, its links described in its report"
    ),
    ("azprov/simulate.py", "run_simulation", ".write_text"): (
        "the simulator's own config file, in the temporary directory it made"
    ),
    ("azprov/simulate.py", "_demo_media", ".write_bytes"): (
        "the simulator's own provisioning media, in the temporary directory it made"
    ),
    ("azprov/simulate_pool.py", "run_pool_simulation", ".write_text"): (
        "the pool simulation's own config file, in the temporary directory it made"
    ),
    ("azprov/simulate_pool.py", "write_media", ".write_bytes"): (
        "the pool simulation's placeholder media, in the temporary directory it made"
    ),
    ("azprov/simulate_pool.py", "_boots", ".write_bytes"): (
        "the customer's media for the OS-disk pool's next boot, in the simulation's own directory"
    ),
}


# -- finding the calls -----------------------------------------------------------------------

Scope = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef]


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it stands for: `import os as o` gives o -> os,
    `from os import listdir` gives listdir -> os.listdir."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, aliases: dict[str, str]) -> Optional[str]:
    """`os.path.join` for an expression naming a module-level function, else None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _annotated_as_path(function: Optional[Scope]) -> frozenset[str]:
    """Names a function declares to be a `Path` (parameters and annotated assignments)."""
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return frozenset()
    found = set()
    arguments = function.args
    for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
        if arg.annotation is not None and "Path" in ast.unparse(arg.annotation):
            found.add(arg.arg)
    for node in ast.walk(function):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if "Path" in ast.unparse(node.annotation):
            found.add(node.target.id)
    return frozenset(found)


def _through_door(call: ast.Call, method: str, receiver: ast.expr, scopes: list[Scope]) -> bool:
    """True when `receiver.method(...)` is a door method called on a door object."""
    if method not in DOOR_METHODS:
        return False
    if method in ("read_text", "read_bytes") and not call.args:
        return False  # the door's read_* always names the file; Path's never does
    functions = [s for s in scopes if not isinstance(s, ast.ClassDef)]
    paths = _annotated_as_path(functions[-1] if functions else None)
    if isinstance(receiver, ast.Name):
        if receiver.id == "self":
            classes = [s.name for s in scopes if isinstance(s, ast.ClassDef)]
            return bool(classes) and classes[-1] in DOOR_CLASSES
        return receiver.id in DOOR_NAMES and receiver.id not in paths
    if isinstance(receiver, ast.Attribute):
        return (
            receiver.attr in DOOR_NAMES
            and isinstance(receiver.value, ast.Name)
            and receiver.value.id == "self"
        )
    return False


def _forbidden_name(call: ast.Call, aliases: dict[str, str], scopes: list[Scope]) -> Optional[str]:
    """What a forbidden call calls (`os.listdir`, `.read_text`), or None when it is allowed."""
    dotted = _dotted(call.func, aliases)
    if dotted in FORBIDDEN_FUNCTIONS:
        return dotted.replace("azprov.host.", "")  # files.write_atomic
    if isinstance(call.func, ast.Attribute) and call.func.attr in FORBIDDEN_METHODS:
        receiver = call.func.value
        if _dotted(receiver, aliases) in ("os", "io", "glob", "shutil", "zipfile", "tarfile"):
            return None  # a module's function, judged by its dotted name above
        if not _through_door(call, call.func.attr, receiver, scopes):
            return f".{call.func.attr}"
    return None


def calls_in(source: str, module: str) -> list[Call]:
    """Every forbidden call in `source` (the text of `module`), in line order."""
    tree = ast.parse(source, module)
    aliases = _aliases(tree)
    found: list[Call] = []

    def visit(node: ast.AST, scopes: list[Scope]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scopes = [*scopes, node]
        if isinstance(node, ast.Call):
            name = _forbidden_name(node, aliases, scopes)
            if name is not None:
                functions = [s.name for s in scopes if not isinstance(s, ast.ClassDef)]
                found.append(
                    Call(module, functions[-1] if functions else "<module>", node.lineno, name)
                )
        for child in ast.iter_child_nodes(node):
            visit(child, scopes)

    visit(tree, [])
    return sorted(found, key=lambda c: c.line)


def every_call() -> list[Call]:
    found: list[Call] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).as_posix()
        if module not in DOOR:
            found += calls_in(path.read_text(encoding="utf-8"), module)
    return found


def judge(calls: list[Call], allowed: dict[tuple[str, str, str], str]) -> list[str]:
    """The failure lines: each call nothing excuses, then each excuse nothing uses."""
    offenders = [c.shown() for c in calls if (c.module, c.function, c.name) not in allowed]
    used = {(c.module, c.function, c.name) for c in calls}
    stale = [
        f"{module} {function}: {name}( is allowed but no longer called there: "
        "remove it from ALLOWED"
        for (module, function, name) in allowed
        if (module, function, name) not in used
    ]
    return offenders + stale


# -- the tests -------------------------------------------------------------------------------


def test_nothing_touches_a_path_except_through_the_door() -> None:
    problems = judge(every_call(), ALLOWED)
    assert not problems, (
        "a path is opened, listed or copied outside the one door (azprov/confined.py); "
        "use TargetRoot/Confined, or add an exact ALLOWED entry saying why the path is "
        "not in a target root:\n" + "\n".join(problems)
    )


def test_every_allowance_gives_its_reason() -> None:
    assert all(len(reason) > 20 for reason in ALLOWED.values())


def test_a_path_read_in_a_module_is_flagged() -> None:
    source = (
        "from pathlib import Path\n"
        "import os, shutil\n"
        "from os import listdir as ls\n"
        "def read_vm_id(x):\n"
        "    return Path(x).read_text()\n"
        "def others(root: Path, p):\n"
        "    open(p)\n"
        "    ls(p)\n"
        "    shutil.copyfile(p, p)\n"
        "    root.glob('*')\n"
        "    root.read_text()\n"
        "    (root / 'etc').iterdir()\n"
    )
    flagged = [(c.function, c.line, c.name) for c in calls_in(source, "azprov/x.py")]
    assert flagged == [
        ("read_vm_id", 5, ".read_text"),
        ("others", 7, "open"),
        ("others", 8, "os.listdir"),
        ("others", 9, "shutil.copyfile"),
        ("others", 10, ".glob"),
        ("others", 11, ".read_text"),
        ("others", 12, ".iterdir"),
    ]


def test_calls_through_the_door_are_not_flagged() -> None:
    source = (
        "class Tree:\n"
        "    def lines(self, p):\n"
        "        return self.read_text(p) + self.root.read_text(p, 10)\n"
        "def check(tree, root):\n"
        "    tree.glob('etc/*')\n"
        "    root.read_text('/etc/hostname', 100)\n"
        "    root.read('/etc/shadow', 10)\n"
        "    with root.open_regular('/x') as fd:\n"
        "        pass\n"
    )
    assert calls_in(source, "azprov/x.py") == []


def test_a_stale_or_missing_allowance_fails() -> None:
    calls = calls_in("def f(p):\n    open(p)\n", "azprov/x.py")
    assert judge(calls, {}) == ["azprov/x.py:2 f: open("]
    assert judge(calls, {("azprov/x.py", "f", "open"): "why"}) == []
    stale = judge([], {("azprov/x.py", "f", "open"): "why"})
    assert len(stale) == 1 and "no longer called" in stale[0]
