"""First boot: gather → decide → apply → report → remember. The only place fabric meets host.

Order matters and is deliberate:
- everything is validated before the first change, so bad input changes nothing;
- Ready is posted only after the user, keys and sshd policy are in place;
- the "provisioned" marker is written only after Ready was acknowledged, so a
  crash or power loss before that makes the next boot report again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import logging
import signal
import threading
import time
from typing import Any, Iterator, Optional

from azprov.config import Config
from azprov.errors import (
    AzprovError,
    ConfigError,
    GoalStateUnavailable,
    HostError,
    InternalError,
    ReportableError,
    Terminated,
    report_line,
)
from azprov.fabric.client import Fabric, open_fabric
from azprov.fabric.imds import InstanceMetadata
from azprov.fabric.models import GoalState
from azprov.fabric.ovf import OvfEnv, parse_ovf_env
from azprov.fabric.wireserver import Health
from azprov.host import hostkeys, state
from azprov.host.files import write_atomic
from azprov.host.hostname import publish_hostname, set_hostname
from azprov.host.identity import read_vm_id, try_vm_id
from azprov.host.kvp import write_kvp
from azprov.host.leases import wireserver_endpoint
from azprov.host.media import read_media
from azprov.host.root import TargetRoot
from azprov.host.ssh import install_keys
from azprov.host.sshd import reload_sshd, set_password_authentication
from azprov.host.units import disable_provisioning_unit
from azprov.host.users import (
    ensure_user,
    lock_password,
    read_accounts,
    set_password,
    write_sudoers,
)
from azprov.plan import Plan, decide

log = logging.getLogger(__name__)

CUSTOM_DATA = f"{state.STATE_DIR}/custom-data"


def provision(
    root: TargetRoot, config: Config, host_keys: Optional[hostkeys.PendingHostKeys] = None
) -> None:
    """Provision this VM once; raise an AzprovError (after reporting it) on failure.

    `host_keys`: SSH host keys already being made (the CLI starts that before its
    heavy imports); installed only if provisioning gets as far as applying.
    """
    run = RunRecord()
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(state.run_lock(root))
        cleanup.enter_context(stop_on_sigterm())
        fabric = cleanup.enter_context(
            open_fabric(config, wireserver_endpoint(config.wireserver.endpoint, root.path))
        )
        if host_keys is not None:
            cleanup.callback(host_keys.cancel)  # a no-op once they are installed
        vm_id, goal_state = None, None
        try:
            with run.phase("identity"):
                vm_id = read_vm_id(root)
            if state.provisioned_vm_id(root) == vm_id:
                log.info("VM %s is already provisioned; nothing to do", vm_id)
                disable_provisioning_unit(root)
                return
            log.info("provisioning VM %s", vm_id)
            if host_keys is None:
                host_keys = hostkeys.start_host_keys(root, config.provisioning.ssh_host_key_types)
                if host_keys is not None:
                    cleanup.callback(host_keys.cancel)
            with run.phase("gather"):
                gathered = gather(fabric, root, config, run)
                goal_state = gathered.goal_state()  # kept for the report if the rest failed
                metadata, media = gathered.metadata(), gathered.media()
            with run.phase("validate"):
                plan = decide(
                    metadata, media, read_accounts(root), vm_id, config.provisioning.user_groups
                )
            with run.phase("apply"):
                applied = apply(root, config, plan, vm_id, run, host_keys)
            with run.phase("report"):
                fabric.wireserver.report_health(Health.ready(), goal_state)
        except Exception as exc:
            error = as_reportable(exc)
            fail(root, fabric, goal_state, vm_id, error, run)
            raise error from None
        with run.phase("remember"):  # still under the lock: no second run in between
            state.mark_provisioned(root, vm_id, now_iso(), **applied)
            disable_provisioning_unit(root)
            line = report_line("success", {}, vm_id)
            write_kvp(root, "PROVISIONING_REPORT", line)
    if config.provisioning.publish_hostname:
        with run.phase("publish_hostname"):
            publish_hostname(root)  # after Ready: DNS registration must not delay it
    run.save(root, vm_id, "success", line)
    log.info("VM %s provisioned: %s", vm_id, run.summary())


@contextlib.contextmanager
def background() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """Threads for the parallel parts of the run; leaving waits for all of them."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="azprov") as pool:
        yield pool


@dataclasses.dataclass(frozen=True)
class Gathered:
    """The three fetches, all finished; each accessor returns its value or raises its error."""

    goal: concurrent.futures.Future[GoalState]
    imds: concurrent.futures.Future[InstanceMetadata]
    ovf: concurrent.futures.Future[Optional[OvfEnv]]

    def goal_state(self) -> GoalState:
        try:
            return self.goal.result()
        except ReportableError as exc:
            raise GoalStateUnavailable(exc) from exc

    def metadata(self) -> InstanceMetadata:
        return self.imds.result()

    def media(self) -> Optional[OvfEnv]:
        return self.ovf.result()


def gather(fabric: Fabric, root: TargetRoot, config: Config, run: RunRecord) -> Gathered:
    """Goal state, IMDS and the media at the same time, all finished when this returns."""
    with background() as pool:
        gathered = Gathered(
            pool.submit(run.timed, "goal_state", fabric.wireserver.goal_state),
            pool.submit(run.timed, "imds", fabric.imds.instance_metadata),
            pool.submit(run.timed, "media", provisioning_media, root, config.media.path),
        )
    return gathered


def provisioning_media(root: TargetRoot, configured_path: Optional[str]) -> Optional[OvfEnv]:
    data = read_media(root, configured_path)
    return parse_ovf_env(data) if data is not None else None


def apply(
    root: TargetRoot,
    config: Config,
    plan: Plan,
    vm_id: str,
    run: RunRecord,
    host_keys: Optional[hostkeys.PendingHostKeys],
) -> dict[str, Any]:
    """Make the machine match the plan. Each step is idempotent.

    SSH host keys (CPU-bound: RSA takes seconds on a small VM) and the host name
    (a D-Bus round trip to hostnamed) run beside the user's steps; all of it is
    done before this returns, so Ready is never sent for a VM sshd cannot serve.
    """
    with background() as pool:
        made_keys = pool.submit(run.timed, "host_keys", host_keys.install) if host_keys else None
        hostname = pool.submit(run.timed, "hostname", set_hostname, root, plan.hostname)
        with run.phase("user"):
            account, created = ensure_user(root, plan.username, plan.groups)
            created = state.remember_created_user(root, vm_id, plan.username, created)
            if plan.password is not None:
                set_password(root, plan.username, plan.password)
            else:
                lock_password(root, plan.username)
            sudoers = write_sudoers(root, plan.username, nopasswd=plan.password is None)
        with run.phase("ssh_keys"):
            install_keys(root, account, plan.keys)
        with run.phase("sshd"):
            set_password_authentication(root, allow=not plan.disable_password_auth)
        if plan.custom_data is not None:
            write_atomic(root / CUSTOM_DATA, plan.custom_data, mode=0o600, dir_mode=0o700)
            log.info(
                "saved %d bytes of custom data to %s (not executed)",
                len(plan.custom_data),
                CUSTOM_DATA,
            )
        hostname.result()
        for fingerprint in made_keys.result() if made_keys else ():
            log.info("SSH host key: %s", fingerprint)
    reload_sshd(root)  # after the host keys exist: a running sshd must see both
    return {"admin_user": plan.username, "user_created": created, "sudoers_file": sudoers}


def fail(
    root: TargetRoot,
    fabric: Fabric,
    goal_state: Optional[GoalState],
    vm_id: Optional[str],
    error: ReportableError,
    run: RunRecord,
) -> None:
    """Tell the host (KVP) and the platform (NotReady) why, as far as each can be reached."""
    line = error.report_line(vm_id)
    log.error("provisioning failed: %s", error)
    write_kvp(root, "PROVISIONING_REPORT", line)
    if isinstance(error, GoalStateUnavailable):
        log.error("no goal state: cannot report the failure to the WireServer")
    else:
        try:
            fabric.wireserver.report_health(Health.failed(line), goal_state)
        except AzprovError as report_error:
            log.error("could not report the failure: %s", report_error)
    run.save(root, vm_id, "error", line)


def record_config_error(root: TargetRoot, error: ConfigError) -> None:
    """A broken config in the image: tell the host through KVP. No NotReady is sent, since
    the broken file is what says where the WireServer is, and guessing could reach the
    wrong endpoint; the unit fails with the one-line reason on the console."""
    reportable = ReportableError(str(error), reason="config_invalid")
    write_kvp(root, "PROVISIONING_REPORT", reportable.report_line(try_vm_id(root)))


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into a reported failure instead of a silent death (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated("stopped by SIGTERM before provisioning finished")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def as_reportable(exc: BaseException) -> ReportableError:
    """Any failure as a ReportableError with a one-line message (no traceback reaches users)."""
    if isinstance(exc, ReportableError):
        return exc
    if isinstance(exc, AzprovError):
        return ReportableError(str(exc))
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return HostError(f"{exc.strerror or exc}{where}", errno=exc.errno or 0)
    log.debug("unexpected error", exc_info=exc)
    return InternalError(f"{type(exc).__name__}: {exc}")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class RunRecord:
    """How long each phase took, kept for `azprov status`."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    started_at: str = dataclasses.field(default_factory=now_iso)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - began, 4)

    def timed(self, name: str, func: Any, *args: Any) -> Any:
        with self.phase(name):
            return func(*args)

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())

    def save(self, root: TargetRoot, vm_id: Optional[str], result: str, line: str) -> None:
        state.save_run(
            root,
            {
                "vm_id": vm_id,
                "result": result,
                "report": line,
                "started_at": self.started_at,
                "finished_at": now_iso(),
                "seconds": round(time.monotonic() - self.started, 4),
                "phases": self.phases,
            },
        )
