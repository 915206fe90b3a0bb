"""A pool VM's wait for IMDS reprovisiondata when IMDS misbehaves (azure-fabric.md §7):
"not yet" and server trouble are asked again quietly, a refused connection renews
the DHCP lease, a body that is not a whole ovf-env.xml and a refusal are reported.
Real processes, real HTTP to the simulated fabric's pool."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from azprov.simulate import snapshot
from azprov.simulator import Answer
from azprov.simulator.pool import REPROVISION_DATA
from azprov.simulator.service import Request
from tests.conftest import needs_root
from tests.pool_scenario import (
    CUSTOMER_USER,
    PoolVm,
    customer_ovf,
    machine,
    polling,
    pool_vm,
    wait_for,
)

pytestmark = needs_root


def users(vm: PoolVm) -> set[str]:
    return {line.split(":")[0] for line in (vm.root / "etc/passwd").read_text().splitlines()}


def assert_handed_over_and_provisioned(vm: PoolVm, stderr: str) -> None:
    assert vm.reports() == [("Ready", "1"), ("Ready", "2")], stderr
    assert CUSTOMER_USER in users(vm)
    assert vm.marker() is None
    assert "Traceback" not in stderr


def assert_fresh_ids(requests: list[Request]) -> None:
    """Each request asks as IMDS wants, with a request id of its own (a random UUID)."""
    ids = [r.headers.get("x-ms-client-request-id", "") for r in requests]
    assert len(set(ids)) == len(ids), "a request id was sent twice"
    for request, value in zip(requests, ids):
        assert request.headers.get("metadata") == "true"
        assert request.query.get("api-version") == ["2019-06-01"]
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4, value


@pytest.mark.parametrize(
    "answers",
    [
        [Answer(404)] * 6,
        [Answer(410)] * 2,
        [Answer(500, b"oops")] * 2,
        [Answer(503, b"busy")] * 2,
        [Answer(429, b"slow down", {"Retry-After": "1"})],
    ],
    ids=["404x6", "410", "500", "503", "429-retry-after"],
)
def test_not_yet_and_server_trouble_are_asked_again_quietly(
    tmp_path: Path, answers: list[Answer]
) -> None:
    with pool_vm(tmp_path, "Running") as vm:
        vm.fabric.imds.script(answers, REPROVISION_DATA)
        run = vm.provision()
        assert run.returncode == 0, run.stderr
        assert_handed_over_and_provisioned(vm, run.stderr)
        requests = vm.reprovision_requests()
        statuses = [r.status for r in requests]
        assert statuses[: len(answers)] == [a.status for a in answers]
        assert statuses[-1] == 200 and statuses.count(200) == 1
        assert_fresh_ids(requests)
        assert f"HTTP {answers[0].status}" not in run.stderr  # a poll's "not yet" is no news
        if answers[0].status == 429:
            waited = requests[1].at - requests[0].at
            assert waited >= 0.95, f"Retry-After: 1 was not honoured ({waited:.2f} s)"


def test_a_refused_connection_renews_the_lease_then_polls_on(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Running", after=None) as vm:
        process = vm.start(window=0.5)
        try:
            wait_for(lambda: polling(vm), what="the pool's Ready and the first poll")
            # The next poll is answered and its connection closed; IMDS then refuses
            # connections for longer than a window, and has the customer's data after.
            imds = vm.fabric.imds
            imds.script([Answer(404, close_delimited=True)], REPROVISION_DATA)
            imds.on_next(REPROVISION_DATA, lambda: imds.down_for(1.5))
            vm.pool.hand_over()
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 0, stderr
        assert "renewing the DHCP lease" in stderr
        # A throwaway root is not the running system: the renewal says it was skipped.
        assert "skipping renewing the DHCP leases: the target root is" in stderr
        assert_handed_over_and_provisioned(vm, stderr)
        assert_fresh_ids(vm.reprovision_requests())


def test_a_cut_ovf_env_is_reported_and_a_later_boot_resumes(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Savable") as vm:
        whole = customer_ovf()
        cut = whole[: len(whole) // 2]

        def cut_once_handed_over(request: Request) -> Answer:
            if not vm.pool.handed_over:
                return Answer(404)
            return Answer(200, cut, {"Content-Type": "text/xml"})  # a whole HTTP reply

        vm.fabric.imds.route("GET", REPROVISION_DATA, cut_once_handed_over)
        run = vm.provision()
        assert run.returncode != 0
        assert "Traceback" not in run.stderr
        assert "ovf-env" in run.stderr
        reports = vm.fabric.health_reports
        assert [(r.state, r.incarnation) for r in reports] == [("Ready", "1"), ("NotReady", "2")]
        assert reports[-1].description is not None and "ovf-env" in reports[-1].description
        assert machine(snapshot(vm.root)) == machine(vm.before)  # nothing of the customer's
        marker = vm.marker()
        assert marker is not None and marker["kind"] == "Savable" and "ready_at" in marker

        vm.fabric.imds.route("GET", REPROVISION_DATA, lambda _: Answer(200, whole))
        again = vm.provision()
        assert again.returncode == 0, again.stderr
        assert "resuming in the Savable pool" in again.stderr
        # No second Ready in the pool: the final one only.
        assert vm.reports() == [("Ready", "1"), ("NotReady", "2"), ("Ready", "2")]
        assert CUSTOMER_USER in users(vm) and vm.marker() is None
        done = json.loads((vm.root / "var/lib/azprov/provisioned.json").read_text())
        assert done["pool"]["kind"] == "Savable"


def test_a_refusal_is_not_asked_again_and_is_reported(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Running", after=None) as vm:
        vm.fabric.imds.script([Answer(403, b'{"error": "Forbidden"}')], REPROVISION_DATA)
        run = vm.provision()
        assert run.returncode != 0
        assert "Traceback" not in run.stderr
        assert [r.status for r in vm.reprovision_requests()] == [403]
        reports = vm.fabric.health_reports
        assert [(r.state, r.incarnation) for r in reports] == [("Ready", "1"), ("NotReady", "1")]
        assert reports[-1].description is not None and "403" in reports[-1].description
        assert machine(snapshot(vm.root)) == machine(vm.before)
        assert vm.marker() is not None  # a later boot asks again


def test_a_refusal_whose_body_holds_a_password_never_quotes_it(tmp_path: Path) -> None:
    """Any reprovisiondata body may be a customer's ovf-env.xml: an error quotes none of it."""
    secret = "Pool-Handover-Secret-9"
    # Its start, where an error message's snippet of the body would come from.
    body = f"<Environment><UserPassword>{secret}</UserPassword>".encode()
    with pool_vm(tmp_path, "Running", after=None) as vm:
        vm.fabric.imds.script([Answer(400, body)], REPROVISION_DATA)
        run = vm.provision()
        assert run.returncode != 0 and "HTTP 400" in run.stderr
        description = vm.fabric.health_reports[-1].description or ""
        assert "HTTP 400" in description
        kept = [run.stderr, description]
        kept += [
            p.read_text("utf-8", "replace")
            for p in (vm.root / "var/lib").rglob("*")
            if p.is_file()
        ]
        assert all(secret not in text for text in kept)
