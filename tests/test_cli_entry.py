"""The entry point: the first-boot unit's exact command line skips click, nothing else does."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys

from azprov.cli_entry import FIRST_BOOT_ARGS
from tests.conftest import REPO

# Runs the entry point with `argv`, the first-boot command replaced by a recorder
# (the real one would provision this machine): what was called, and whether click
# was imported by then.
PROBE = """
import sys
import azprov.cli_common as common
def record(options):
    print("called", options.root_dir, options.config_file, options.verbose)
    print("click imported:", any(m == "click" or m.startswith("click.") for m in sys.modules))
common.provision_command = record
sys.argv = ["azprov", *sys.argv[1:]]
from azprov.cli_entry import main
main()
"""


def entry(*args: str, probe: str = PROBE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_the_units_command_line_is_the_one_that_skips_click() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "units" / "azure-provisioning.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0] == "/usr/bin/azprov"
    assert argv[1:] == FIRST_BOOT_ARGS


def test_the_first_boot_command_line_reaches_provision_without_click() -> None:
    result = entry(*FIRST_BOOT_ARGS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["called / None 0", "click imported: False"]


def test_provision_with_any_option_goes_through_click() -> None:
    result = entry("-v", "provision")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["called / None 1", "click imported: True"]


def test_provision_help_is_clicks() -> None:
    result = entry("provision", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: azprov provision" in result.stdout
    assert "called" not in result.stdout


def test_a_failure_on_the_first_boot_path_is_one_line_and_its_exit_code() -> None:
    """The same run_cleanly as every click command: a ConfigError is exit 2, one line."""
    probe = PROBE.replace(
        'print("called", options.root_dir, options.config_file, options.verbose)',
        "from azprov.errors import ConfigError; raise ConfigError('azprov.conf: [x] y: bad')",
    )
    result = entry(*FIRST_BOOT_ARGS, probe=probe)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["azprov: error: azprov.conf: [x] y: bad"]
