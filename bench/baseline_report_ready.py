"""The baseline: what the seed document's Python sample does, stdlib only.

One goal-state GET and one health POST over one http.client connection,
parsing and building the XML with ElementTree, printing as the sample does.
The endpoint comes from argv (`HOST[:PORT]`) so it can point at the
simulated fabric; written for this benchmark, not copied.
"""

import http.client
import sys
from xml.etree import ElementTree


def main(endpoint: str) -> int:
    connection = http.client.HTTPConnection(endpoint)
    print("Retrieving goal state from the Wireserver")
    connection.request("GET", "/machine?comp=goalstate", headers={"x-ms-version": "2012-11-30"})
    response = connection.getresponse()
    if response.status != 200:
        print("Unable to connect with wireserver")
        return 1
    goal_state = ElementTree.fromstring(response.read().decode("utf-8"))
    container_id = goal_state.findtext("Container/ContainerId")
    instance_id = goal_state.findtext("Container/RoleInstanceList/RoleInstance/InstanceId")
    incarnation = goal_state.findtext("Incarnation")
    print(f"ContainerId: {container_id}")
    print(f"InstanceId: {instance_id}")
    print(f"Incarnation: {incarnation}")

    health = ElementTree.Element("Health")
    ElementTree.SubElement(health, "GoalStateIncarnation").text = incarnation
    container = ElementTree.SubElement(health, "Container")
    ElementTree.SubElement(container, "ContainerId").text = container_id
    role = ElementTree.SubElement(ElementTree.SubElement(container, "RoleInstanceList"), "Role")
    ElementTree.SubElement(role, "InstanceId").text = instance_id
    ElementTree.SubElement(ElementTree.SubElement(role, "Health"), "State").text = "Ready"
    body = ElementTree.tostring(health, encoding="unicode", method="xml")
    print("Sending the following data to Wireserver:")
    print(body)

    connection.request(
        "POST",
        "/machine?comp=health",
        headers={
            "x-ms-version": "2012-11-30",
            "Content-Type": "text/xml;charset=utf-8",
            "x-ms-agent-name": "custom-provisioning",
        },
        body=body,
    )
    response = connection.getresponse()
    print(f"Response: {response.status} {response.reason}")
    response.read()
    connection.close()
    return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
