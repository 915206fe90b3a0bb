"""What every command shares: the global options, logging, and one-line failures."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import click

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


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    # Under systemd the journal adds its own timestamp and unit name.
    handler.setFormatter(logging.Formatter("azprov: %(message)s"))
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [handler]
    root_logger.setLevel(level)


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
        except click.Abort:  # Ctrl-C or end of input at a question
            click.echo("azprov: cancelled: nothing was changed", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("azprov: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                log.exception("internal error")
            click.echo(f"azprov: internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(70)

    return wrapper  # type: ignore[return-value]


pass_options = click.make_pass_decorator(Options)
