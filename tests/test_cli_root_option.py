"""`azprov COMMAND --root DIR` means what `azprov --root DIR COMMAND` means.

The form after the command is what people type first (`check --help` speaks of
"--root"); it used to be refused with "No such option". Both forms given with
different directories is a usage error naming both, never a silent choice.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from azprov.cli import cli
from tests.checks.trees import good_tree, write
from tests.conftest import run_azprov

# `simulate` makes its own throwaway root; every other command works on the target root.
ROOT_FREE_COMMANDS = {"simulate"}
ROOT_COMMANDS = (
    "provision",
    "report-ready",
    "report-failure",
    "status",
    "extensions",
    "deprovision",
    "check",
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = good_tree(tmp_path / "image")
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")  # one finding to show
    return root


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("azprov: error: "), stderr
    return lines[0]


def test_check_with_root_after_the_command_checks_that_tree(tree: Path) -> None:
    after = run_azprov("check", "--root", str(tree), "--json")
    before = run_azprov("--root", str(tree), "check", "--json")
    assert (after.returncode, after.stderr) == (before.returncode, before.stderr) == (1, "")
    assert after.stdout == before.stdout
    assert "machine-id" in [finding["id"] for finding in json.loads(after.stdout)]


def test_deprovision_with_root_after_the_command_lists_changes_to_that_tree(tree: Path) -> None:
    after = run_azprov("deprovision", "--dry-run", "--root", str(tree))
    before = run_azprov("--root", str(tree), "deprovision", "--dry-run")
    assert after.returncode == before.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    assert after.stdout.splitlines()[0] == f"azprov deprovision will change {tree}:"
    assert after.stdout.splitlines()[-1] == "dry run: nothing was changed"


def test_status_with_root_after_the_command_reads_that_tree(tmp_path: Path) -> None:
    run = run_azprov("status", "--root", str(tmp_path), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["provisioned"] is False


def test_extensions_with_root_after_the_command_is_refused_for_that_tree(tmp_path: Path) -> None:
    # A tree, not this host: the handlers would run here as root, so it is refused.
    run = run_azprov("extensions", "--once", "--root", str(tmp_path))
    assert run.returncode == 2
    line = one_error_line(run.stderr)
    assert f"extensions --root {tmp_path}:" in line and "--run-handlers-on-this-host" in line


def test_the_same_root_in_both_places_is_accepted(tree: Path) -> None:
    run = run_azprov("--root", str(tree), "check", "--root", f"{tree}/", "--json")
    assert run.returncode == 1 and run.stderr == ""
    assert "machine-id" in [finding["id"] for finding in json.loads(run.stdout)]


@pytest.mark.parametrize("command", ["check", "deprovision", "status"])
def test_two_different_roots_are_one_usage_error_naming_both(
    command: str, tree: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    run = run_azprov("--root", str(tree), command, "--root", str(other))
    assert run.returncode == 2 and run.stdout == ""
    line = one_error_line(run.stderr)
    assert f"'{tree}'" in line and f"'{other}'" in line and command in line


def test_a_root_after_the_command_that_is_no_directory_is_a_usage_error(tmp_path: Path) -> None:
    run = run_azprov("check", "--root", str(tmp_path / "missing"))
    assert run.returncode == 2
    assert "'--root'" in one_error_line(run.stderr)


@pytest.mark.parametrize("command", ROOT_COMMANDS)
def test_every_root_command_shows_root_in_its_help(command: str) -> None:
    run = run_azprov(command, "--help")
    assert run.returncode == 0, run.stderr
    assert "--root DIR" in run.stdout


def test_every_command_but_simulate_takes_root_after_its_name() -> None:
    """A new command gets the option too, or is listed as one that needs no root."""
    assert isinstance(cli, click.Group)
    takes_root = {
        name
        for name, command in cli.commands.items()
        if any("--root" in param.opts for param in command.params)
    }
    assert takes_root == set(ROOT_COMMANDS) == set(cli.commands) - ROOT_FREE_COMMANDS
