"""Gathering what provisioning weighs: the goal state, IMDS, the media and the
image's accounts, fetched and read at the same time."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
from typing import Callable, Iterator, NamedTuple, Optional

from azprov.config import Config
from azprov.errors import GoalStateUnavailable, ReportableError
from azprov.fabric.client import Fabric
from azprov.fabric.imds import InstanceMetadata
from azprov.fabric.models import GoalState
from azprov.fabric.ovf import OvfEnv, parse_ovf_env
from azprov.host.media import read_media
from azprov.host.root import TargetRoot
from azprov.host.users import Accounts, read_accounts
from azprov.run import RunRecord


@contextlib.contextmanager
def background() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """Threads for the parallel parts of the run; leaving waits for all of them."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="azprov") as pool:
        yield pool


class Gathered(NamedTuple):
    """The three fetches, all finished; each accessor returns its value or raises its error."""

    goal: concurrent.futures.Future[GoalState]
    imds: concurrent.futures.Future[InstanceMetadata]
    ovf: concurrent.futures.Future[Optional[OvfEnv]]
    accounts: concurrent.futures.Future[Accounts]

    def goal_state(self) -> GoalState:
        try:
            return self.goal.result()
        except ReportableError as exc:
            raise GoalStateUnavailable(exc) from exc

    def metadata(self) -> InstanceMetadata:
        return self.imds.result()

    def media(self) -> Optional[OvfEnv]:
        return self.ovf.result()

    def inputs(self) -> tuple[InstanceMetadata, Optional[OvfEnv], Accounts]:
        """What `decide` weighs: IMDS, the media and the accounts the image has."""
        return self.metadata(), self.media(), self.accounts.result()


def gather(
    fabric: Fabric,
    root: TargetRoot,
    config: Config,
    run: RunRecord,
    media: Optional[Callable[[], Optional[OvfEnv]]] = None,
) -> Gathered:
    """Goal state, IMDS, the media and the accounts at the same time, all finished when
    this returns: the disk work overlaps the network round trips. `media`, if given,
    replaces the provisioning media (a pool VM's handed-over ovf-env.xml)."""
    if media is None:
        media = functools.partial(provisioning_media, root, config.media.path)
    with background() as pool:
        gathered = Gathered(
            pool.submit(run.timed, "goal_state", fabric.wireserver.goal_state),
            pool.submit(run.timed, "imds", fabric.imds.instance_metadata),
            pool.submit(run.timed, "media", media),
            pool.submit(read_accounts, root),
        )
    return gathered


def provisioning_media(root: TargetRoot, configured_path: Optional[str]) -> Optional[OvfEnv]:
    data = read_media(root, configured_path)
    return parse_ovf_env(data) if data is not None else None
