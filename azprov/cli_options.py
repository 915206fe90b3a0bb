"""What every click command shares: the global options, logging, and one-line failures
(the click-free part, shared with the first-boot entry, is in cli_common.py)."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional, TypeVar

import click
from click.core import ParameterSource

from azprov.cli_common import Options, log, run_cleanly, setup_logging

__all__ = ["Options", "fail_cleanly", "log", "pass_options", "root_option", "setup_logging"]

ROOT_HELP = "Target root: work on this directory tree instead of the running system."

F = TypeVar("F", bound=Callable[..., Any])


def fail_cleanly(func: F) -> F:
    """Turn any AzprovError into one line on stderr and its exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # click.Abort: Ctrl-C or end of input at a question.
        return run_cleanly(lambda: func(*args, **kwargs), cancelled=(click.Abort,))

    return wrapper  # type: ignore[return-value]


pass_options = click.make_pass_decorator(Options)


def root_option(command: F) -> F:
    """`azprov COMMAND --root DIR`: the same as `azprov --root DIR COMMAND`.

    The form after the command is the one people type first; both forms with
    different directories is a usage error, never a silent choice of one.
    """
    return click.option(
        "--root",
        "command_root_dir",
        metavar="DIR",
        type=click.Path(exists=True, file_okay=False),
        expose_value=False,
        callback=_take_command_root,
        help=f"{ROOT_HELP} The same as --root DIR before the command.",
    )(command)


def _take_command_root(ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> None:
    if value is None or ctx.resilient_parsing:
        return
    options = ctx.find_object(Options)
    if options is None:  # the command was run without the group (an embedding caller)
        raise click.UsageError("--root after the command needs the azprov command group", ctx)
    group = ctx.parent
    given_before = (
        group is not None and group.get_parameter_source("root_dir") is ParameterSource.COMMANDLINE
    )
    if given_before and not _same_directory(options.root_dir, value):
        from azprov.printable import quoted

        raise click.UsageError(
            f"--root given twice with different directories: '{quoted(options.root_dir)}'"
            f" before '{ctx.info_name}' and '{quoted(value)}' after it; give one",
            ctx,
        )
    options.root_dir = value


def _same_directory(first: str, second: str) -> bool:
    """Both exist (click checked): `/mnt/image` and `/mnt/image/` are one root."""
    try:
        return first == second or os.path.samefile(first, second)
    except OSError:
        return False
