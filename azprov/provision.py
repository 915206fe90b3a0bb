"""First boot: gather → decide → apply → report → finish. Where fabric meets host.

Order matters and is deliberate:
- everything is validated before the first change, so bad input changes nothing;
- Ready is posted only after the user, their SSH keys and sshd's policy are in
  place; the SSH host keys are not on that path (they only matter to sshd,
  which is ordered after this unit, and they take seconds of CPU);
- the "provisioned" marker is written only after Ready was acknowledged and
  the host keys are installed, so a crash, a power loss or a key failure
  before that makes the next boot try again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
from typing import Any, Optional

from azprov.config import Config
from azprov.errors import (
    AzprovError,
    ConfigError,
    GoalStateUnavailable,
    HostError,
    InternalError,
    ReportableError,
)
from azprov.fabric.client import Fabric
from azprov.fabric.models import GoalState
from azprov.fabric.wireserver import Health
from azprov.gather import Gathered, background, gather
from azprov.host import hostkeys, state, users
from azprov.host.confined import Links
from azprov.host.identity import read_vm_id, try_vm_id
from azprov.host.root import TargetRoot
from azprov.host.ssh import install_keys
from azprov.host.sshd import reload_sshd, set_password_authentication
from azprov.host.units import disable_provisioning_unit
from azprov.host.users import ensure_user, lock_password, set_password, write_sudoers
from azprov.plan import Plan, decide
from azprov.pool_kind import pool_entry, pool_summary
from azprov.report import open_configured_fabric, report_failure, report_success
from azprov.run import RunRecord, publish_hostname_of_run, set_hostname_of_run, stop_on_sigterm
from azprov.timestamps import utc_timestamp

log = logging.getLogger(__name__)

CUSTOM_DATA = f"{state.STATE_DIR}/custom-data"


def provision(
    root: TargetRoot, config: Config, host_keys: Optional[hostkeys.PendingHostKeys] = None
) -> None:
    """Provision this VM once; raise a ReportableError (after reporting it) on failure.

    `host_keys`: SSH host keys already being made (the CLI starts that before its
    heavy imports). Ready does not wait for them: they are installed after it,
    and the unit (which sshd is ordered after) exits only once they are.
    """
    run = RunRecord()
    with contextlib.ExitStack() as cleanup:
        if host_keys is not None:
            cleanup.callback(host_keys.cancel)  # a no-op once they are installed
        fabric = cleanup.enter_context(open_configured_fabric(root, config))
        vm_id, goal_state = None, None
        try:
            vm_id = run.timed("identity", read_vm_id, root)
            if already_provisioned(root, vm_id):  # read only: a done VM is never reported
                return
            # Inside the reporting: a root that cannot hold the lock (read-only, full) is
            # a NotReady with its reason. SIGTERM is reported once the lock is ours only.
            cleanup.enter_context(state.run_lock(root))
            cleanup.enter_context(stop_on_sigterm())
            if already_provisioned(root, vm_id):  # by the run that held the lock
                return
            log.info("provisioning VM %s", vm_id)
            host_keys = host_keys or start_host_keys(cleanup, root, config)
            with run.phase("gather"):
                gathered = gather(fabric, root, config, run)
                goal_state = gathered.goal_state()  # kept for the report if the rest failed
                pooled = pool_entry(root, vm_id, gathered)
            if pooled is not None:  # a pre-provisioned pool VM: its customer's data comes later
                customer = wait_for_customer(fabric, root, config, run, pooled, goal_state)
                if customer is None:
                    return  # this boot ends in the pool (an OS-disk pool, or stopped)
                gathered, goal_state = customer, customer.goal_state()
            plan = decide(*gathered.inputs(), vm_id, config.provisioning.user_groups)
            publish = config.provisioning.publish_hostname
            applied = run.timed("apply", apply, root, plan, vm_id, run, publish)
            applied.update(pool=pool_summary(pooled) if pooled else None)
            run.timed("report", fabric.wireserver.report_health, Health.ready(), goal_state)
        except Exception as exc:
            raise failed(root, fabric, goal_state, vm_id, exc, run) from None
        # Ready is posted: from here on a failure goes to KVP and the journal only. sshd
        # waits for this unit's exit. Under systemd the DNS renewal was handed to a unit
        # of its own (see `apply`); otherwise it runs now, beside the host keys' install.
        with background() as pool:
            publishing = pool.submit(publish_hostname_of_run, root, run) if publish else None
            finish(root, vm_id, applied, host_keys, run, publishing)
    log.info("VM %s provisioned: %s", vm_id, run.summary(root))


def start_host_keys(
    cleanup: contextlib.ExitStack, root: TargetRoot, config: Config
) -> Optional[hostkeys.PendingHostKeys]:
    """Start making the SSH host keys (when the CLI has not), cancelled if the run fails."""
    host_keys = hostkeys.start_host_keys(root, config.provisioning.ssh_host_key_types)
    if host_keys is not None:
        cleanup.callback(host_keys.cancel)
    return host_keys


def wait_for_customer(
    fabric: Fabric,
    root: TargetRoot,
    config: Config,
    run: RunRecord,
    pooled: dict[str, Any],
    goal_state: GoalState,
) -> Optional[Gathered]:
    """A pool VM: Ready in the pool, then the customer's inputs (None: the boot ends in
    the pool). Its code is imported only here, off the path of every other VM."""
    from azprov.pool import wait_in_pool

    return wait_in_pool(fabric, root, config, run, pooled, goal_state)


def already_provisioned(root: TargetRoot, vm_id: str) -> bool:
    """True, with the unit disabled, when the marker says this VM is provisioned."""
    if state.provisioned_vm_id(root) != vm_id:
        return False
    log.info("VM %s is already provisioned; nothing to do", vm_id)
    disable_provisioning_unit(root)  # never raises: a failure is only logged
    return True


def finish(
    root: TargetRoot,
    vm_id: str,
    applied: dict[str, Any],
    host_keys: Optional[hostkeys.PendingHostKeys],
    run: RunRecord,
    publishing: Optional[concurrent.futures.Future[None]] = None,
) -> None:
    """After Ready: install the host keys (sshd waits for this unit), then remember the VM.

    The marker is written only once the keys are in place, so a key failure makes
    the next boot try again (re-posting Ready is harmless) instead of leaving a VM
    whose sshd has no host keys. The run record is saved once `publishing` (handing
    the DNS renewal over, or the renewal, beside this) is done, so it holds that too.
    """
    try:
        for fingerprint in run.timed("host_keys", install_host_keys, root, host_keys):
            log.info("SSH host key: %s", fingerprint)
    except Exception as exc:
        error = as_reportable(exc)
        log.error("after Ready: %s", error)
        line = report_failure(root, None, error, vm_id)
        settle(publishing)
        run.save(root, vm_id, "error", line)
        raise error from None
    with run.phase("remember"):  # still under the lock: no second run in between
        state.mark_provisioned(root, vm_id, utc_timestamp(), **applied)
        if applied.get("pool"):  # after the marker: a crash between the two stays provisioned
            state.remove_pool_record(root)
        disable_provisioning_unit(root)
        line = report_success(root, vm_id)
    settle(publishing)
    run.save(root, vm_id, "success", line)


def settle(publishing: Optional[concurrent.futures.Future[None]]) -> None:
    """Wait for the best-effort DNS renewal (or its hand-over). It logs its own failures;
    anything else it raised is a bug, logged here: it must not fail a provisioned VM."""
    if publishing is None:
        return
    error = publishing.exception()
    if error is not None:
        log.error("publishing the host name: internal error: %s: %s", type(error).__name__, error)


def install_host_keys(
    root: TargetRoot, host_keys: Optional[hostkeys.PendingHostKeys]
) -> list[str]:
    """Wait for the host keys being made, install them, and let a running sshd see them."""
    if host_keys is None:
        return []
    fingerprints = host_keys.install()
    reload_sshd(root)  # a running sshd must see the new keys
    return fingerprints


def failed(
    root: TargetRoot,
    fabric: Fabric,
    goal_state: Optional[GoalState],
    vm_id: Optional[str],
    exc: BaseException,
    run: RunRecord,
) -> ReportableError:
    """Report a failure before Ready to KVP and (when there is a goal state) the platform."""
    error = as_reportable(exc)
    log.error("provisioning failed: %s", error)
    if isinstance(error, GoalStateUnavailable):
        log.error("no goal state: cannot report the failure to the WireServer")
    line = report_failure(
        root, None if isinstance(error, GoalStateUnavailable) else fabric, error, vm_id, goal_state
    )
    run.save(root, vm_id, "error", line)
    return error


def apply(
    root: TargetRoot, plan: Plan, vm_id: str, run: RunRecord, publish: bool = False
) -> dict[str, Any]:
    """Make the machine match the plan, all before Ready. Each step is idempotent.

    The host name runs beside the user's steps (and, with `publish`, under systemd,
    queues the unit that publishes it once this run has ended). The SSH host keys
    are not here: Ready does not depend on them (see `finish`).
    """
    users.check_user_tools(root, plan.username)  # a hostile image: refused before any change
    state.remove_stale_temp_files(root)  # of an earlier run killed mid-write
    with background() as pool:
        hostname = pool.submit(set_hostname_of_run, root, plan.hostname, publish, run)
        with run.phase("user"):
            # On disk before useradd: a kill right after it leaves the user azprov's.
            intent = functools.partial(state.intend_to_create_user, root, vm_id, plan.username)
            account, created = ensure_user(root, plan.username, plan.groups, intent)
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
            reload_sshd(root)  # a running sshd (a re-run by hand) must apply the policy now
        if plan.custom_data is not None:
            save_custom_data(root, plan.custom_data)
        hostname.result()
    return {"admin_user": plan.username, "user_created": created, "sudoers_file": sudoers}


def save_custom_data(root: TargetRoot, custom_data: bytes) -> None:
    root.write(CUSTOM_DATA, custom_data, mode=0o600, dir_mode=0o700, links=Links.REFUSE)
    log.info("saved %d bytes of custom data to %s (not executed)", len(custom_data), CUSTOM_DATA)


def record_config_error(root: TargetRoot, error: ConfigError) -> None:
    """A broken config in the image: tell the host through KVP. No NotReady is sent, since
    the broken file is what says where the WireServer is, and guessing could reach the
    wrong endpoint; the unit fails with the one-line reason on the console."""
    reportable = ReportableError(str(error), reason="config_invalid")
    report_failure(root, None, reportable, try_vm_id(root))


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
