"""Image preparation on the command line: `deprovision` (ask, list, change) and `check`."""

from __future__ import annotations

import sys
from typing import Optional

import click

from azprov.cli_options import Options, fail_cleanly, log, pass_options, root_option


@click.command("deprovision")
@click.option(
    "--user", "delete_user", is_flag=True, help="Also delete the admin user azprov created."
)
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only list what would be done.")
@root_option
@pass_options
@fail_cleanly
def deprovision_command(options: Options, delete_user: bool, force: bool, dry_run: bool) -> None:
    """Prepare this machine (or the image at --root DIR) for capture: the reverse of provision."""
    from azprov.deprovision import apply, plan
    from azprov.printable import quoted

    root = options.root()
    options.config()  # a broken config file is reported here too, before any change
    actions = plan(root, delete_user=delete_user)
    where = "this machine" if root.live else quoted(str(root.path))
    click.echo(f"azprov deprovision will change {where}:")
    for action in actions:
        click.echo(f"  - {action.description}")
    if dry_run:
        click.echo("dry run: nothing was changed")
        return
    if not force:
        _confirm_deprovision(where)
    apply(actions)
    click.echo(f"deprovisioned {where}: {len(actions)} changes; capture the image now")
    if root.live:
        click.echo("(shell history written after this point, by this session, is not removed)")
    _report_still_wrong(options)


def _confirm_deprovision(where: str) -> None:
    """Ask on the terminal; with no terminal refuse, so a script must say --force."""
    from azprov.deprovision import DeprovisionRefused

    if not sys.stdin.isatty():
        raise DeprovisionRefused(
            "refusing to deprovision without confirmation: stdin is not a terminal"
            " (pass --force to run unattended, or --dry-run to only list)"
        )
    if not click.confirm(f"Deprovision {where}?", default=False):
        raise DeprovisionRefused("deprovision cancelled: nothing was changed")


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


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as a JSON list.")
@click.option("--only", callback=_check_ids, metavar="ID,...", help="Run only these checks.")
@click.option("--skip", callback=_check_ids, metavar="ID,...", help="Do not run these checks.")
@root_option
@pass_options
@fail_cleanly
def check_command(
    options: Options, as_json: bool, only: tuple[str, ...], skip: tuple[str, ...]
) -> None:
    """Find what would make a VM from this image (or the tree at --root DIR) fail on Azure.

    Changes nothing.

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
