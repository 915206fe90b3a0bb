"""The floor: the seed sample's job done the shortest honest way on azprov's required libraries.

Imports click and defusedxml (azprov cannot start without them), makes one
`httpx.Client(trust_env=False)` as anyone would, GETs the goal state, parses
it with defusedxml, POSTs Ready, and nothing else: no retries, no logging, no
printing. `bench/report_ready.py` measures azprov against this. The endpoint
comes from argv (`HOST[:PORT]`) so it can point at the simulated fabric.
"""

import sys
from xml.etree.ElementTree import Element, SubElement, tostring

import click  # noqa: F401  (required by azprov: its import is part of the floor)
import httpx
from defusedxml.ElementTree import fromstring

HEADERS = {"x-ms-version": "2012-11-30"}


def main(endpoint: str) -> int:
    base = f"http://{endpoint}/machine"
    with httpx.Client(trust_env=False) as client:
        response = client.get(f"{base}?comp=goalstate", headers=HEADERS)
        if response.status_code != 200:
            return 1
        goal_state = fromstring(response.content)
        incarnation = goal_state.findtext("Incarnation") or ""
        container_id = goal_state.findtext("Container/ContainerId") or ""
        instance_id = goal_state.findtext("Container/RoleInstanceList/RoleInstance/InstanceId")

        health = Element("Health")
        SubElement(health, "GoalStateIncarnation").text = incarnation
        container = SubElement(health, "Container")
        SubElement(container, "ContainerId").text = container_id
        role = SubElement(SubElement(container, "RoleInstanceList"), "Role")
        SubElement(role, "InstanceId").text = instance_id or ""
        SubElement(SubElement(role, "Health"), "State").text = "Ready"

        response = client.post(
            f"{base}?comp=health",
            headers={**HEADERS, "Content-Type": "text/xml;charset=utf-8"},
            content=tostring(health, encoding="utf-8"),
        )
        return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
