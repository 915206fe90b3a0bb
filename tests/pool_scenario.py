"""A pre-provisioned pool VM for tests: the simulated fabric parks it in a pool with a
placeholder identity, azprov runs as a real process in a throwaway root, and the
root is snapshotted at the moment of the hand-over to the customer."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from azprov.simulate import prepare_root, snapshot
from azprov.simulator import PublicKey, SimulatedFabric, VmSpec
from azprov.simulator.documents import EXAMPLE_SSH_KEY, ovf_env_xml
from azprov.simulator.pool import REPROVISION_DATA, Pool, park_in_pool
from azprov.simulator.service import Request
from tests.conftest import REPO, Run, run_azprov

PLACEHOLDER_USER, PLACEHOLDER_HOST = "pooluser", "pool-placeholder"
CUSTOMER_USER, CUSTOMER_HOST = "alice", "alice-vm"
HAND_OVER_AFTER = 0.3  # seconds after the pool's Ready
# azprov's own records and the KVP pool: the only places a pool VM may write in.
OWN_STATE = ("/var/lib/azprov", "/var/lib/hyperv")
POOL_MARKER = "var/lib/azprov/pool.json"
PROVISIONED = "var/lib/azprov/provisioned.json"


def placeholder_spec() -> VmSpec:
    return VmSpec(
        name="pool-vm",
        computer_name=PLACEHOLDER_HOST,
        admin_username=PLACEHOLDER_USER,
        public_keys=[PublicKey(EXAMPLE_SSH_KEY, f"/home/{PLACEHOLDER_USER}/.ssh/authorized_keys")],
    )


def customer_spec(vm_id: str) -> VmSpec:
    return VmSpec(
        vm_id=vm_id,
        name="alice-web",
        computer_name=CUSTOMER_HOST,
        admin_username=CUSTOMER_USER,
        public_keys=[PublicKey(EXAMPLE_SSH_KEY, f"/home/{CUSTOMER_USER}/.ssh/authorized_keys")],
    )


def customer_ovf() -> bytes:
    return ovf_env_xml(hostname=CUSTOMER_HOST, username=CUSTOMER_USER)


def machine(entries: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """A snapshot without azprov's own records."""
    return {p: v for p, v in entries.items() if not p.startswith(OWN_STATE)}


@dataclasses.dataclass
class PoolVm:
    fabric: SimulatedFabric
    pool: Pool
    root: Path
    config: Path
    media: Path
    before: dict[str, tuple[str, str]]
    at_hand_over: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    marker_at_hand_over: Optional[dict[str, Any]] = None

    def argv(self, *extra: str) -> list[str]:
        return ["--config", str(self.config), "--root", str(self.root), *extra, "provision"]

    def command(self, window: Optional[float] = None, trigger: str = "") -> list[str]:
        """`python -m azprov … provision`; with `window`, through a probe that shortens
        azprov.pool.POLL_WINDOW (35 s) first, so a test sees a window end; `trigger`:
        more Python the probe runs first (patching a function to die there, say)."""
        if window is None and not trigger:
            return [sys.executable, "-m", "azprov", *self.argv()]
        probe = self.root.parent / "probe.py"
        probe.write_text(
            "import os, runpy, signal, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "import azprov.pool\n"
            f"azprov.pool.POLL_WINDOW = {window or 35.0!r}\n"
            f"{trigger}\n"
            "sys.argv = ['azprov', *sys.argv[1:]]\n"
            "runpy.run_module('azprov', run_name='__main__')\n"
        )
        return [sys.executable, str(probe), *self.argv()]

    def provision(self, env: Optional[dict[str, str]] = None, trigger: str = "") -> Run:
        if trigger:
            done = subprocess.run(
                self.command(trigger=trigger),
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return Run(done.returncode, done.stdout, done.stderr, 0.0)
        return run_azprov(*self.argv(), env=env, timeout=60)

    def start(
        self, env: Optional[dict[str, str]] = None, window: Optional[float] = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(window),
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def marker(self) -> Optional[dict[str, Any]]:
        path = self.root / POOL_MARKER
        return json.loads(path.read_text()) if path.exists() else None

    def reports(self) -> list[tuple[str, str]]:
        """(state, incarnation) of every health report the WireServer took."""
        return [(r.state, r.incarnation) for r in self.fabric.health_reports]

    def reprovision_requests(self) -> list[Request]:
        return self.fabric.requests_to("imds", REPROVISION_DATA)

    def status(self, *extra: str) -> Run:
        return run_azprov("--root", str(self.root), "status", *extra)

    def hand_over_with_media(self) -> None:
        """An OS-disk pool VM: the host stops it, hands it over and attaches the customer's CD."""
        self.pool.hand_over()
        (self.media / "ovf-env.xml").write_bytes(self.pool.customer_ovf)


@contextlib.contextmanager
def pool_vm(
    tmp_path: Path,
    kind: str,
    *,
    after: Optional[float] = HAND_OVER_AFTER,
    media_kind: Optional[str] = None,
) -> Iterator[PoolVm]:
    """A VM in a `kind` pool (a ppsType value) whose media name `media_kind` (default:
    `kind`), handed over `after` seconds after the pool's Ready (None: by the test)."""
    with SimulatedFabric(placeholder_spec()) as fabric:
        root, media = tmp_path / "root", tmp_path / "media"
        prepare_root(root, fabric.spec.vm_id)
        media.mkdir()
        (media / "ovf-env.xml").write_bytes(
            ovf_env_xml(
                hostname=PLACEHOLDER_HOST,
                username=PLACEHOLDER_USER,
                preprovisioned_vm=True,
                preprovisioned_vm_type=media_kind or kind,
            )
        )
        config = tmp_path / "azprov.conf"
        config.write_text(fabric.config_text(total_timeout=30) + f"[media]\npath = {media}\n")
        customer = customer_spec(fabric.spec.vm_id)
        pool = park_in_pool(fabric, kind, customer, customer_ovf(), hand_over_after_ready=after)
        vm = PoolVm(fabric, pool, root, config, media, snapshot(root))
        pool.hand_over = _snapshot_first(pool.hand_over, vm)  # type: ignore[method-assign]
        yield vm


def _snapshot_first(hand_over: Callable[[], None], vm: PoolVm) -> Callable[[], None]:
    def snapshot_then_hand_over() -> None:
        if not vm.pool.handed_over:
            vm.at_hand_over = snapshot(vm.root)
            vm.marker_at_hand_over = vm.marker()
        hand_over()

    return snapshot_then_hand_over


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def polling(vm: PoolVm) -> bool:
    """The pool's Ready is acknowledged, the marker says so, and IMDS is being asked."""
    marker = vm.marker()
    return (
        marker is not None
        and marker.get("phase") == "polling"
        and vm.reports() == [("Ready", "1")]
        and bool(vm.reprovision_requests())
    )
