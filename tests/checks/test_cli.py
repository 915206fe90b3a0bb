"""`azprov [--root DIR] check`: exit codes, the text and JSON shapes, --only/--skip, colour."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from azprov.checks import CHECK_IDS
from tests.checks.trees import REPO, good_tree, link, write
from tests.conftest import run_azprov


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return good_tree(tmp_path / "root")


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.lstat().st_mtime_ns, p.lstat().st_mode) for p in root.rglob("*"))


def test_clean_tree_exits_0_with_a_summary_and_changes_nothing(root: Path) -> None:
    before = snapshot(root)
    run = run_azprov("--root", str(root), "check")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "40 checks: 0 errors, 0 warnings, 1 info"
    assert snapshot(root) == before


def test_errors_exit_1_one_line_each(root: Path) -> None:
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    write(root, "etc/hostname", "build-7\n")
    run = run_azprov("--root", str(root), "check")
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert lines[0].startswith("warn hostname-generic: etc/hostname holds build-7; ")
    assert lines[1].startswith(
        "error machine-id: etc/machine-id holds 5f3c0a9e…; clones would share"
    )
    assert " — run 'azprov deprovision' or truncate it" in lines[1]
    assert lines[-1] == "40 checks: 1 error, 1 warning, 1 info"
    assert "\x1b[" not in run.stdout  # no colour without a terminal


def test_json_is_a_list_of_findings(root: Path) -> None:
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    run = run_azprov("--root", str(root), "check", "--json")
    assert run.returncode == 1
    found = json.loads(run.stdout)
    assert isinstance(found, list)
    assert all(set(f) == {"id", "severity", "path", "found", "fix", "source"} for f in found)
    (machine_id,) = [f for f in found if f["id"] == "machine-id"]
    assert machine_id["severity"] == "error" and machine_id["path"] == "etc/machine-id"


def test_only_and_skip(root: Path) -> None:
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    only = run_azprov("--root", str(root), "check", "--only", "machine-id,hostname-generic")
    assert only.returncode == 1 and only.stdout.splitlines()[-1].startswith("2 checks: 1 error")
    skipped = run_azprov("--root", str(root), "check", "--skip", "machine-id,image-file-size")
    assert skipped.returncode == 0
    assert skipped.stdout.strip() == "38 checks: 0 errors, 0 warnings, 0 info"


@pytest.mark.parametrize("option", ["--only", "--skip"])
def test_unknown_id_is_one_line_exit_2(root: Path, option: str) -> None:
    run = run_azprov("--root", str(root), "check", option, "machine-id,machine-idd")
    assert run.returncode == 2 and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("azprov: error:") and "'machine-idd'" in line


def test_root_that_is_not_a_directory_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "image.raw"
    file.write_bytes(b"\0")
    for bad in (file, tmp_path / "missing"):
        run = run_azprov("--root", str(bad), "check")
        assert run.returncode == 2
        (line,) = run.stderr.strip().splitlines()
        assert str(bad) in line and "Traceback" not in run.stderr


def test_colour_on_a_terminal(root: Path) -> None:
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "azprov", "--root", str(root), "check", "--only", "machine-id"],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 1
    assert b"\x1b[31m" in output and b"machine-id" in output


def test_links_never_lead_out_of_the_tree(root: Path, tmp_path: Path) -> None:
    """Absolute and climbing links resolve as if the tree were /, never onto the host."""
    outside = tmp_path / "outside"
    write(outside, "etc/hostname", "host-outside\n")
    (root / "etc/hostname").unlink()
    link(root, "etc/hostname", "../../../outside/etc/hostname")
    link(root, "etc/machine-id", str(outside / "etc/hostname"))
    run = run_azprov("--root", str(root), "check", "--only", "hostname-generic,machine-id")
    assert run.returncode == 0, run.stdout
    assert "host-outside" not in run.stdout


def test_every_id_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [i for i in CHECK_IDS if f"`{i}`" not in readme]
    assert missing == []


def test_provision_does_not_import_checks() -> None:
    code = "import sys, azprov.cli, azprov.provision; print(any(m.startswith('azprov.checks') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip() == "False", done.stderr


def test_a_tree_without_etc_cannot_be_checked(tmp_path: Path) -> None:
    """An empty mount point is not an image with 20 faults: exit 2, one line."""
    run = run_azprov("--root", str(tmp_path), "check")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == (
        f"azprov: error: {tmp_path} does not look like a root file system: it has no etc/"
    )
