"""A pre-provisioned VM pool in the simulated fabric (azure-fabric.md §7).

The VM starts as the pool's placeholder (the fabric's `spec`, and IMDS's
extended `compute.ppsType` naming the pool kind). `GET /metadata/reprovisiondata`
answers 404 until the VM is handed over; from then on it serves the customer's
ovf-env.xml, IMDS serves the customer's VM with `ppsType` "None", and the goal
state moves to a new incarnation (the one the final Ready is for).

A test hands over with `hand_over()` when its scenario is ready (after it has
flipped the NIC, say); `hand_over_after_ready` does it by itself a given time
after the pool's Ready report (for `azprov simulate --pool` and flow tests).
Faults on reprovisiondata are the service's own: `fabric.imds.script([...],
REPROVISION_DATA)` answers in order first, `fabric.imds.down_for(seconds)`
refuses connections.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Optional

from azprov.simulator.documents import VmSpec
from azprov.simulator.fabric import SimulatedFabric
from azprov.simulator.service import Answer, Request

REPROVISION_DATA = "/metadata/reprovisiondata"
# `--pool` names, and the ppsType/PreprovisionedVMType value each stands for.
POOL_KINDS = {"running": "Running", "savable": "Savable", "os-disk": "PreprovisionedOSDisk"}


@dataclasses.dataclass
class Pool:
    """The pool one simulated VM waits in, and its hand-over to the customer."""

    fabric: SimulatedFabric
    kind: str  # a ppsType value: "Running", "Savable" or "PreprovisionedOSDisk"
    customer: VmSpec
    customer_ovf: bytes
    hand_over_after_ready: Optional[float] = None
    handed_over_at: Optional[float] = None  # time.monotonic(), once handed over
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @property
    def handed_over(self) -> bool:
        return self.handed_over_at is not None

    def hand_over(self) -> None:
        """The customer asked for a VM: this one becomes theirs (once; later calls do nothing)."""
        fabric = self.fabric
        with self._lock:
            if self.handed_over:
                return
            customer = dataclasses.replace(
                self.customer,
                container_id=fabric.spec.container_id,
                role_name=fabric.spec.role_name,
                incarnation=fabric.spec.incarnation + 1,
            )
            fabric.spec = customer
            fabric.pps_type = "None"
            self.handed_over_at = time.monotonic()

    def _reprovision_data(self, request: Request) -> Answer:
        if request.headers.get("metadata", "").lower() != "true":
            return Answer(400, b'{"error": "Bad request. Required metadata header not specified"}')
        if not request.query.get("api-version"):
            return Answer(400, b'{"error": "Bad request. api-version was not specified"}')
        if not self.handed_over:
            return Answer(404, b'{"error": "Not found"}')
        return Answer(200, self.customer_ovf, {"Content-Type": "text/xml"})

    def _health(self, request: Request) -> Answer:
        seen = len(self.fabric.health_reports)
        answer = self.fabric._health(request)
        reports = self.fabric.health_reports[seen:]
        ready = any(report.state == "Ready" for report in reports)
        if ready and self.hand_over_after_ready is not None and not self.handed_over:
            timer = threading.Timer(self.hand_over_after_ready, self.hand_over)
            timer.daemon = True
            timer.start()
        return answer


def park_in_pool(
    fabric: SimulatedFabric,
    kind: str,
    customer: VmSpec,
    customer_ovf: bytes,
    *,
    hand_over_after_ready: Optional[float] = None,
) -> Pool:
    """Make `fabric`'s VM a pool VM of `kind` (a ppsType value) until it is handed over."""
    if kind not in POOL_KINDS.values():
        raise ValueError(f"unknown pool kind {kind!r} (known: {', '.join(POOL_KINDS.values())})")
    pool = Pool(fabric, kind, customer, customer_ovf, hand_over_after_ready)
    fabric.pps_type = kind
    fabric.imds.route("GET", REPROVISION_DATA, pool._reprovision_data)
    for path in ("/machine?comp=health", "/machine/?comp=health"):
        fabric.wireserver.route("POST", path, pool._health)
    return pool
