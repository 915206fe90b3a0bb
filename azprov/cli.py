"""The command line: parse, call, print, exit code. No logic of its own.

Imports of anything network- or host-related happen inside the commands, so
`azprov --version` and `--help` start as fast as Python itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from azprov import __version__
from azprov.cli_common import provision_command as first_boot
from azprov.cli_image import check_command, deprovision_command
from azprov.cli_options import (
    ROOT_HELP,
    Options,
    fail_cleanly,
    pass_options,
    root_option,
    setup_logging,
)


def _version_message() -> str:
    return f"azprov {__version__} (Python {sys.version.split()[0]}, {sys.executable})"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An extra INI file read after /etc/azprov/azprov.conf and its conf.d.",
)
@click.option(
    "--root",
    "root_dir",
    default="/",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help=ROOT_HELP,
)
@click.option("-v", "--verbose", count=True, help="More detail in the log (repeat for debug).")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and the Python in use, then exit.",
)
@click.pass_context
def cli(ctx: click.Context, config_file: Optional[Path], root_dir: str, verbose: int) -> None:
    """azprov: provision an Azure Linux VM on first boot and report to the platform."""
    ctx.obj = Options(root_dir=root_dir, config_file=config_file, verbose=verbose)
    setup_logging(verbose)


@cli.command("report-ready")
@root_option
@pass_options
@fail_cleanly
def report_ready_command(options: Options) -> None:
    """Tell the platform this VM is Ready (nothing else)."""
    from azprov.report import report_ready

    report_ready(options.root(), options.config())


@cli.command("report-failure")
@click.argument("text")
@root_option
@pass_options
@fail_cleanly
def report_failure_command(options: Options, text: str) -> None:
    """Tell the platform provisioning failed (NotReady / ProvisioningFailed) with TEXT."""
    from azprov.report import report_failure_text

    report_failure_text(options.root(), options.config(), text)


@cli.command("provision")
@root_option
@pass_options
@fail_cleanly
def provision_command(options: Options) -> None:
    """First boot: hostname, admin user, SSH keys, sshd, then report Ready (once per VM)."""
    first_boot(options)  # the unit's exact command line runs it without click: cli_entry.py


@cli.command("extensions")
@click.option("--once", is_flag=True, help="Run one round and exit with a code (see above).")
@click.option(
    "--run-handlers-on-this-host",
    "run_on_host",
    is_flag=True,
    help="With --root DIR: run the handlers' commands on this host, as root (tests only).",
)
@root_option
@pass_options
@fail_cleanly
def extensions_command(options: Options, once: bool, run_on_host: bool) -> None:
    """Run Azure VM extensions: poll the goal state, install/enable/report handlers.

    \b
    Exit codes of --once:
      0  every handler reached the requested state and reports success
         or transitioning
      1  azprov failed: a download, a handler command, the certificates,
         the status upload, or the goal state itself
      3  an extension reported error (or warning) in its own status
    Each problem is one line on stderr naming the extension.

    With --root other than / nothing on the running system may change, but a
    handler's commands run here, as root, from a fabric the tree's config or
    lease names: refused unless --run-handlers-on-this-host says so.
    """
    root = options.root()
    if not root.live and not run_on_host:
        from azprov.errors import ConfigError

        raise ConfigError(
            f"extensions --root {options.root_dir}: handlers would run as root on this host;"
            " pass --run-handlers-on-this-host to allow it"
        )
    from azprov.extensions.runner import run_extensions

    sys.exit(run_extensions(root, options.config(), once=once))


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@root_option
@pass_options
@fail_cleanly
def status_command(options: Options, as_json: bool) -> None:
    """Show whether this VM is provisioned, when, and the last run's report and timings."""
    from azprov.status import render_status

    click.echo(render_status(options.root(), as_json))


@cli.command("simulate")
@click.option("--keep", is_flag=True, help="Keep the throwaway target root and print its path.")
@click.option(
    "--pool",
    type=click.Choice(["running", "savable", "os-disk"]),
    help="A pre-provisioned pool VM of this kind, handed over to a customer after its Ready.",
)
@pass_options
@fail_cleanly
def simulate_command(options: Options, keep: bool, pool: Optional[str]) -> None:
    """Run `provision` against a simulated fabric on loopback in a throwaway root."""
    if pool is not None:
        from azprov.simulate_pool import run_pool_simulation

        sys.exit(run_pool_simulation(pool, keep=keep, verbose=options.verbose))
    from azprov.simulate import run_simulation

    sys.exit(run_simulation(keep=keep, verbose=options.verbose))


cli.add_command(deprovision_command)
cli.add_command(check_command)


def main() -> None:
    """Entry point: click usage errors become one line on stderr, like every other error."""
    try:
        code = cli.main(prog_name="azprov", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("azprov: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"azprov: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
