"""The `azprov` command's entry point.

The first-boot unit runs exactly `azprov provision` (no options): that command
line goes straight to the command, without importing click, whose import is
about a third of azprov's own import path and all of it before the first
request (`python3 -X importtime`; the figures are in the README's "Speed").
Every other command line, including `provision` with any option, goes to the
click CLI, so options, `--help` and usage errors behave as documented there.
"""

from __future__ import annotations

import sys

# units/azure-provisioning.service: ExecStart=/usr/bin/azprov provision
FIRST_BOOT_ARGS = ["provision"]


def main() -> None:
    if sys.argv[1:] == FIRST_BOOT_ARGS:
        from azprov.cli_common import Options, provision_command, run_cleanly, setup_logging

        options = Options(root_dir="/", config_file=None, verbose=0)  # click's defaults
        setup_logging(options.verbose)
        run_cleanly(lambda: provision_command(options))
        sys.exit(0)
    from azprov.cli import main as click_main

    click_main()
