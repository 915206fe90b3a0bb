"""What every command shares, without click: the global options, logging, one-line
failures, and the first-boot command itself.

Kept free of click because the first-boot unit's exact command line runs from
here without it (see cli_entry.py); click is the biggest import azprov itself
adds to a first boot.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Optional, TypeVar

if TYPE_CHECKING:
    from azprov.config import Config
    from azprov.host.root import TargetRoot

log = logging.getLogger("azprov")

T = TypeVar("T")


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


def run_cleanly(action: Callable[[], T], cancelled: tuple[type[BaseException], ...] = ()) -> T:
    """Run a command: any AzprovError becomes one line on stderr and its exit code,
    never a traceback. `cancelled`: what a question's Ctrl-C raises (click.Abort)."""
    from azprov.errors import AzprovError

    try:
        return action()
    except AzprovError as exc:
        _fail(f"azprov: error: {exc}", exc.exit_code)
    except cancelled:
        _fail("azprov: cancelled: nothing was changed", 1)
    except KeyboardInterrupt:
        _fail("azprov: interrupted", 130)
    except Exception as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            log.exception("internal error")
        _fail(f"azprov: internal error: {type(exc).__name__}: {exc}", 70)


def _fail(line: str, code: int) -> NoReturn:
    print(line, file=sys.stderr, flush=True)
    sys.exit(code)


def provision_command(options: Options) -> None:
    """`azprov provision`: first boot, once per VM."""
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
