"""The command line: parse, call, print, exit code. No logic of its own.

Imports of anything network- or host-related happen inside the commands, so
`azprov --version` and `--help` start as fast as Python itself.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import click

from azprov import __version__

if TYPE_CHECKING:
    from azprov.config import Config
    from azprov.host.root import TargetRoot

log = logging.getLogger("azprov")

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class Options:
    root_dir: str
    config_file: Optional[Path]
    verbose: int

    def root(self) -> TargetRoot:
        from azprov.host.root import TargetRoot

        return TargetRoot(self.root_dir)

    def config(self) -> Config:
        from azprov.config import load_config

        return load_config(Path(self.root_dir), self.config_file)


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    # Under systemd the journal adds its own timestamp and unit name.
    handler.setFormatter(logging.Formatter("azprov: %(message)s"))
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [handler]
    root_logger.setLevel(level)
    # httpx logs every URL it requests, SAS signatures included: never let it.
    # azprov's own messages name each request with the secrets redacted.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def _version_message() -> str:
    return f"azprov {__version__} (Python {sys.version.split()[0]}, {sys.executable})"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit(0)


def fail_cleanly(func: F) -> F:
    """Turn any AzprovError into one line on stderr and its exit code; never a traceback."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from azprov.errors import AzprovError

        try:
            return func(*args, **kwargs)
        except AzprovError as exc:
            click.echo(f"azprov: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("azprov: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                log.exception("internal error")
            click.echo(f"azprov: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(70)

    return wrapper  # type: ignore[return-value]


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
    help="Target root: provision this directory tree instead of the running system.",
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
    _setup_logging(verbose)


pass_options = click.make_pass_decorator(Options)


@cli.command("report-ready")
@pass_options
@fail_cleanly
def report_ready_command(options: Options) -> None:
    """Tell the platform this VM is Ready (nothing else)."""
    from azprov.report import report_ready

    report_ready(options.root(), options.config())


@cli.command("report-failure")
@click.argument("text")
@pass_options
@fail_cleanly
def report_failure_command(options: Options, text: str) -> None:
    """Tell the platform provisioning failed (NotReady / ProvisioningFailed) with TEXT."""
    from azprov.report import report_failure

    report_failure(options.root(), options.config(), text)


@cli.command("provision")
@pass_options
@fail_cleanly
def provision_command(options: Options) -> None:
    """First boot: hostname, admin user, SSH keys, sshd, then report Ready (once per VM)."""
    from azprov.errors import ConfigError
    from azprov.host.hostkeys import start_host_keys

    root = options.root()
    try:
        config = options.config()
    except ConfigError as exc:
        from azprov.provision import record_config_error

        record_config_error(root, exc)
        raise
    # SSH host keys take seconds of CPU on a small VM: on a generalized image, start
    # making them (privately) now, so they overlap the imports and the network calls.
    host_keys = start_host_keys(root, config.provisioning.ssh_host_key_types)
    from azprov.provision import provision

    provision(root, config, host_keys)


@cli.command("deprovision")
@click.option(
    "--user", "delete_user", is_flag=True, help="Also delete the admin user azprov created."
)
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only list what would be done.")
@pass_options
@fail_cleanly
def deprovision_command(options: Options, delete_user: bool, force: bool, dry_run: bool) -> None:
    """Prepare this machine (or --root image) for capture: the reverse of provision."""
    from azprov.deprovision import deprovision

    deprovision(
        options.root(), options.config(), delete_user=delete_user, force=force, dry_run=dry_run
    )
    if not dry_run:
        _report_still_wrong(options)


def _report_still_wrong(options: Options) -> None:
    """After deprovisioning, what the checks still find (deprovision fixes only what it owns)."""
    try:
        from azprov.checks import check_tree
        from azprov.checks.report import finding_line, summary_line

        outcome = check_tree(options.root())
    except Exception as exc:  # the image is deprovisioned either way; only the report is lost
        log.warning("could not run the checks after deprovisioning: %s", exc)
        return
    wrong = [f for f in outcome.findings if f.severity in ("error", "warn")]
    click.echo("azprov check: " + ("still to fix by hand:" if wrong else "nothing left to fix"))
    for finding in wrong:
        click.echo(f"  {finding_line(finding)}")
    click.echo(f"  {summary_line(outcome)}")


@cli.command("extensions")
@click.option(
    "--once", is_flag=True, help="Run one round and exit (non-zero if a handler failed)."
)
@pass_options
@fail_cleanly
def extensions_command(options: Options, once: bool) -> None:
    """Run Azure VM extensions: poll the goal state, install/enable/report handlers."""
    from azprov.extensions.runner import run_extensions

    sys.exit(run_extensions(options.root(), options.config(), once=once))


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_options
@fail_cleanly
def status_command(options: Options, as_json: bool) -> None:
    """Show whether this VM is provisioned, when, and the last run's report and timings."""
    from azprov.status import render_status

    click.echo(render_status(options.root(), as_json))


def _check_ids(
    ctx: click.Context, param: click.Parameter, value: Optional[str]
) -> tuple[str, ...]:
    """`--only a,b`: every id must be a check id (one line naming the bad one, exit 2)."""
    from azprov.checks.model import CHECK_IDS

    ids = tuple(i.strip() for i in (value or "").split(",") if i.strip())
    for check_id in ids:
        if check_id not in CHECK_IDS:
            raise click.BadParameter(f"unknown check id {check_id!r}", ctx=ctx, param=param)
    return ids


@cli.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as a JSON list.")
@click.option("--only", callback=_check_ids, metavar="ID,...", help="Run only these checks.")
@click.option("--skip", callback=_check_ids, metavar="ID,...", help="Do not run these checks.")
@pass_options
@fail_cleanly
def check_command(
    options: Options, as_json: bool, only: tuple[str, ...], skip: tuple[str, ...]
) -> None:
    """Find what would make a VM from this image (or --root tree) fail on Azure; change nothing.

    Exit status: 0 no errors, 1 errors found, 2 the check could not run.
    """
    from azprov.checks import check_tree
    from azprov.checks.report import render_json, render_text

    outcome = check_tree(options.root(), only, skip)
    if as_json:
        click.echo(render_json(outcome))
    else:
        click.echo(render_text(outcome, colour=sys.stdout.isatty()), color=sys.stdout.isatty())
    sys.exit(outcome.exit_code)


@cli.command("simulate")
@click.option("--keep", is_flag=True, help="Keep the throwaway target root and print its path.")
@pass_options
@fail_cleanly
def simulate_command(options: Options, keep: bool) -> None:
    """Run `provision` against a simulated fabric on loopback in a throwaway root."""
    from azprov.simulate import run_simulation

    sys.exit(run_simulation(keep=keep, verbose=options.verbose))


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
