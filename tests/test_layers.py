"""The code's shape stays true: imports point one way, modules and functions stay small.

Layers, lowest first (a module may import only its own layer or lower ones):

    0  azprov, errors, credentials, config(_values),  values and rules every layer uses,
       confined, treewalk, jsondoc                the one door into a tree, bounded JSON
    1  fabric.*  |  host.*                         talking to Azure | changing the machine
    2  plan                                        deciding what to apply
    3  provision, report, deprovision, status,     the flows, where fabric meets host
       extensions.*, checks.*, simulator.*
    4  cli*, simulate, __main__                    the command line

and fabric and host never import each other: they meet only in the flows.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "azprov"

MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> tuple[int, str]:
    """(rank, family) of an azprov module; the family keeps fabric and host apart."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top in (
        "",
        "errors",
        "timestamps",
        "credentials",
        "config_values",
        "config",
        "confined",
        "treewalk",
        "jsondoc",
    ):
        return 0, "base"
    if top in ("fabric", "host"):
        return 1, top
    if top == "plan":
        return 2, "plan"
    if top in (
        "cli",
        "cli_common",
        "cli_entry",
        "cli_options",
        "cli_image",
        "simulate",
        "simulate_pool",
        "__main__",
    ):
        return 4, "cli"
    return 3, top


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every azprov module `path` imports (at top level or inside a function), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("azprov")]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "relative import (write azprov.… in full)"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("azprov"):
            module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names]
            # `from azprov.host import state` names a module; `from azprov.x import f` not.
            found += [(node.lineno, n if _is_module(n) else module) for n in names]
    return found


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative).is_dir()


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_imports_point_one_way() -> None:
    offenders = []
    for path in modules():
        rank, family = layer(module_name(path))
        for line, imported in imports_of(path):
            if imported.startswith("relative"):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} {imported}")
                continue
            their_rank, their_family = layer(imported)
            upward = their_rank > rank
            across = {family, their_family} == {"fabric", "host"}
            if upward or across:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_the_layer_check_can_fail() -> None:
    assert layer("azprov.host.users") == (1, "host")
    assert layer("azprov.plan")[0] > layer("azprov.fabric.imds")[0]
    assert layer("azprov.cli")[0] > layer("azprov.provision")[0]
    assert layer("azprov.checks.sshd")[0] == 3


def test_no_module_or_function_is_too_long() -> None:
    offenders = []
    for path in modules():
        source = path.read_text()
        shown = path.relative_to(PACKAGE.parent)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            offenders.append(f"{shown}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{shown}:{node.lineno} {node.name}() is {length} lines")
    assert not offenders, "too long:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("entry", "command_module"),
    [
        # `azprov provision` as the unit runs it: no click either (cli_entry.py)
        ("azprov.cli_entry, azprov.cli_common", "azprov.provision"),
        ("azprov.cli", "azprov.report"),
    ],
)
def test_first_boot_imports_nothing_it_does_not_run(entry: str, command_module: str) -> None:
    """`provision` and `report-ready` must not pay for the extension runner, the
    simulator, deprovision, status or the image checks; `provision` not for click,
    which httpx's package would import for its command line (azprov/fabric/transport.py)."""
    probe = (
        f"import sys, {entry}, {command_module}; "
        "print(' '.join(sorted(m.split('.')[0] if not m.startswith('azprov') else m "
        "for m in sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert command_module in loaded and "httpx" in loaded  # the probe sees imports
    unwanted = ("azprov.extensions", "azprov.simulat", "azprov.deprovision", "azprov.status")
    assert not [m for m in loaded if m.startswith((*unwanted, "azprov.checks"))]
    assert ("click" in loaded) == (entry == "azprov.cli")
    assert not {"rich", "pygments"} & set(loaded)


def test_every_package_ships() -> None:
    """setuptools is given the package list by hand: a new sub-package missing from it
    installs everywhere but the .deb and .rpm (and `azprov deprovision` exits 70 there)."""
    listed = re.search(
        r"packages = \[(.*?)\]", (PACKAGE.parent / "pyproject.toml").read_text(), re.S
    )
    assert listed is not None
    shipped = set(re.findall(r'"([\w.]+)"', listed.group(1)))
    present = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert present == shipped


def test_a_relative_import_is_reported(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from . import plan\nfrom azprov.fabric import http\n")
    assert imports_of(module) == [
        (1, "relative import (write azprov.… in full)"),
        (2, "azprov.fabric.http"),
    ]
