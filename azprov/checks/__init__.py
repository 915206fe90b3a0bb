"""Pre-capture image checks (`azprov check`): read-only over the target root.

Importing the package registers every check; each area module holds the
checks for one part of the system.
"""

from __future__ import annotations

from azprov.checks import (  # noqa: F401  (imported for their registrations)
    accounts,
    bootcfg,
    duties,
    homes,
    identity,
    kernel,
    leftovers,
    modprobe,
    network,
    packages,
    services,
    sshd,
    storage,
)
from azprov.checks.model import CHECK_IDS, REGISTRY, Finding, Outcome, run_checks
from azprov.checks.tree import Tree
from azprov.errors import AzprovError
from azprov.host.root import TargetRoot

__all__ = [
    "CHECK_IDS",
    "REGISTRY",
    "CannotCheck",
    "Finding",
    "Outcome",
    "Tree",
    "check_tree",
    "run_checks",
]


class CannotCheck(AzprovError):
    """The tree is not something the checks can judge (exit status 2)."""

    exit_code = 2


def check_tree(
    root: TargetRoot, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> Outcome:
    """Run the selected checks (all by default) over `root`."""
    # An unmounted mount point or a wrong path would otherwise "fail" every check.
    if not Tree(root).is_dir("etc"):
        raise CannotCheck(f"{root.path} does not look like a root file system: it has no etc/")
    selected = [i for i in (only or CHECK_IDS) if i not in skip]
    return run_checks(Tree(root), selected)
