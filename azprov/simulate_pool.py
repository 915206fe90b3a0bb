"""`azprov simulate --pool KIND`: a pre-provisioned pool VM, for real, in a throwaway root.

The simulated fabric parks the VM in a pool of KIND (running, savable or
os-disk) with a placeholder identity, and hands it over to a customer a
second after the pool's Ready. The run shows both Ready reports, what the
root held at the hand-over (nothing of anyone's identity) and what changed
once the customer's data was applied. A throwaway root is not the running
system, so the network changes a real pool VM waits for (its NIC going down
and up, or being replaced) are skipped, with a log line saying so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from azprov.errors import AzprovError
from azprov.simulate import _indented, _run_provision, describe_changes, prepare_root, snapshot
from azprov.simulator import PublicKey, SimulatedFabric, VmSpec
from azprov.simulator.documents import EXAMPLE_SSH_KEY, ovf_env_xml
from azprov.simulator.pool import POOL_KINDS, Pool, park_in_pool

HAND_OVER_AFTER = 1.0  # seconds after the pool's Ready


def run_pool_simulation(name: str, keep: bool = False, verbose: int = 0) -> int:
    """A pool VM of kind `name` (a key of POOL_KINDS) from its first boot to the customer's
    Ready, narrated on stdout."""
    if os.geteuid() != 0:
        raise AzprovError(
            "azprov simulate needs root: it runs the real useradd --prefix and chown "
            "inside its throwaway root (nothing outside it changes); run it with sudo"
        )
    kind = POOL_KINDS[name]
    workdir = Path(tempfile.mkdtemp(prefix="azprov-simulate-pool-"))
    root, media = workdir / "root", workdir / "media"
    placeholder = VmSpec(name="pool-vm", computer_name="pool-placeholder", admin_username="pool")
    customer = VmSpec(
        vm_id=placeholder.vm_id,
        name="contoso-web",
        computer_name="contoso-web",
        admin_username="contoso",
        public_keys=[PublicKey(EXAMPLE_SSH_KEY, "/home/contoso/.ssh/authorized_keys")],
    )
    try:
        prepare_root(root, placeholder.vm_id)
        media.mkdir()
        write_media(media, placeholder, kind)
        with SimulatedFabric(placeholder) as fabric:
            config = workdir / "azprov.conf"
            config.write_text(fabric.config_text() + f"[media]\npath = {media}\n", "utf-8")
            customer_ovf = ovf_env_xml(hostname="contoso-web", username="contoso")
            after = None if kind == "PreprovisionedOSDisk" else HAND_OVER_AFTER
            pool = park_in_pool(fabric, kind, customer, customer_ovf, hand_over_after_ready=after)
            print(
                f"azprov simulate --pool {name}: a {kind} pool VM (placeholder user "
                f"{placeholder.admin_username!r}), handed over to user {customer.admin_username!r}"
                f" {'when the host has stopped it' if after is None else f'{after:g} s after its Ready'}"
                f"; simulated fabric on 127.0.0.1, throwaway root {root}"
            )
            code = _boots(fabric, pool, config, root, media, verbose)
        if keep:
            print(f"\nThe target root is kept at {root}")
        return code
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def write_media(media: Path, spec: VmSpec, kind: str) -> None:
    ovf = ovf_env_xml(
        hostname=spec.computer_name,
        username=spec.admin_username,
        preprovisioned_vm=True,
        preprovisioned_vm_type=kind,
    )
    (media / "ovf-env.xml").write_bytes(ovf)


def _boots(
    fabric: SimulatedFabric, pool: Pool, config: Path, root: Path, media: Path, verbose: int
) -> int:
    before = snapshot(root)
    at_hand_over: dict[str, tuple[str, str]] = {}
    pool.hand_over = _snapshotting(pool.hand_over, root, at_hand_over)  # type: ignore[method-assign]
    code, log_text, seconds = _run_provision(config, root, verbose)
    print(f"\n== Boot in the pool: azprov provision (exit status {code}, {seconds:.2f} s) ==")
    print(_indented(log_text))
    if not pool.handed_over:  # an OS-disk pool VM: the host stops it, then hands it over
        print("\n== The host stops the VM and attaches the customer's media ==")
        pool.hand_over()
        (media / "ovf-env.xml").write_bytes(pool.customer_ovf)
        code, log_text, seconds = _run_provision(config, root, verbose)
        print(f"\n== Next boot: azprov provision (exit status {code}, {seconds:.2f} s) ==")
        print(_indented(log_text))
    print("\n== Requests the fabric saw ==")
    print("\n".join(f"  {line}" for line in fabric.transcript()) or "  none")
    print("\n== Health reports ==")
    handed = pool.handed_over_at
    for report in fabric.health_reports:
        when = "before" if handed is None or report.at < handed else "after"
        print(f"  {report.state} for incarnation {report.incarnation} ({when} the hand-over)")
    print("\n== What changed in the target root by the hand-over ==")
    print("\n".join(describe_changes(before, at_hand_over)) or "  nothing")
    print("\n== What changed after it ==")
    print("\n".join(describe_changes(at_hand_over, snapshot(root))) or "  nothing")
    return code


def _snapshotting(
    hand_over: Callable[[], None], root: Path, into: dict[str, tuple[str, str]]
) -> Callable[[], None]:
    def snapshot_then_hand_over() -> None:
        into.update(snapshot(root))  # the root as the hand-over finds it
        hand_over()

    return snapshot_then_hand_over
