"""What every click command shares: the global options, logging, and one-line failures
(the click-free part, shared with the first-boot entry, is in cli_common.py)."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import click

from azprov.cli_common import Options, log, run_cleanly, setup_logging

__all__ = ["Options", "fail_cleanly", "log", "pass_options", "setup_logging"]

F = TypeVar("F", bound=Callable[..., Any])


def fail_cleanly(func: F) -> F:
    """Turn any AzprovError into one line on stderr and its exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # click.Abort: Ctrl-C or end of input at a question.
        return run_cleanly(lambda: func(*args, **kwargs), cancelled=(click.Abort,))

    return wrapper  # type: ignore[return-value]


pass_options = click.make_pass_decorator(Options)
