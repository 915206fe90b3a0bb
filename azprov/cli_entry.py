"""The `azprov` command's entry point.

The first-boot unit runs exactly `azprov provision` (no options): that command
line goes straight to the command, without importing click, whose import is
about a third of azprov's own import path and all of it before the first
request (`python3 -X importtime`; the figures are in the README's "Speed").
Every other command line, including `provision` with any option, goes to the
click CLI, so options, `--help` and usage errors behave as documented there.

One internal command line is not the CLI's: `--root DIR publish-hostname`, what
`provision` hands to a systemd unit of its own to renew the DHCP lease after it
has ended (azprov/run.py). It too skips click: the boot goes on beside it.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import NoReturn

# units/azure-provisioning.service: ExecStart=/usr/bin/azprov provision
FIRST_BOOT_ARGS = ["provision"]
# The renewal's own unit: `azprov --root DIR publish-hostname` (azprov.run builds it).
PUBLISH_HOSTNAME = "publish-hostname"


def main() -> None:
    args = sys.argv[1:]
    if args == FIRST_BOOT_ARGS:
        from azprov.cli_common import Options, provision_command, run_cleanly, setup_logging

        options = Options(root_dir="/", config_file=None, verbose=0)  # click's defaults
        setup_logging(options.verbose)
        run_cleanly(lambda: provision_command(options))
        exit_provisioned()
    if len(args) == 3 and args[0] == "--root" and args[2] == PUBLISH_HOSTNAME:
        run_publish_hostname(args[1])
        sys.exit(0)
    from azprov.cli import main as click_main

    click_main()


def exit_provisioned() -> NoReturn:
    """Exit 0 (provisioned, or already) at once: sshd waits for this exit, and the
    interpreter's teardown (freeing every module and object) is ~20 ms natively, many
    times that on a small VM. By now every file is closed and every pool joined; a
    thread still running is waited for, as a normal exit would."""
    if threading.active_count() > 1:
        sys.exit(0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_publish_hostname(root_dir: str) -> None:
    from azprov.cli_common import run_cleanly, setup_logging
    from azprov.host.root import TargetRoot
    from azprov.run import publish_hostname_after_run

    setup_logging(0)
    run_cleanly(lambda: publish_hostname_after_run(TargetRoot(root_dir)))
