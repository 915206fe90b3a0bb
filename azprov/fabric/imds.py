"""The Instance Metadata Service: what the platform says this VM should look like."""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

from azprov.errors import HttpStatusError, InvalidInput
from azprov.fabric.http import RETRYABLE_STATUS, Deadline, FabricHttp, Reply, Retry
from azprov.fabric.retry import RetryPolicy
from azprov.jsondoc import UnusableJson, parse_json

API_VERSION = "2021-08-01"  # osProfile (2020-07-15), disablePasswordAuthentication, userData
# `extended=true` adds `extended.compute.ppsType`: which pre-provisioned pool, if any.
INSTANCE_QUERY = f"api-version={API_VERSION}&extended=true"
REPROVISION_QUERY = "api-version=2019-06-01"
# IMDS answers 404 and 410 while it is still being set up for a new VM, and a pool VM's
# reprovisiondata 404 until a customer takes the VM.
IMDS_RETRY_STATUS = frozenset(RETRYABLE_STATUS | {404, 410})
# The values of ppsType (and of ovf-env's PreprovisionedVMType) the platform sends.
PPS_TYPES = frozenset({"None", "Running", "Savable", "PreprovisionedOSDisk"})
# Polling reprovisiondata: 30 s per request (as the platform's own agents), and two
# or three requests a second while it answers 404 (IMDS allows five): a handed-over VM
# is seen within half a second.
REPROVISION_POLICY = RetryPolicy(
    read_timeout=30.0, first_delay=0.25, max_delay=0.5, log_retries=False
)
# The body is the customer's ovf-env.xml: the provisioning media's cap (host/media.py
# MAX_OVF_BYTES; a test holds them equal, the layers keep them apart).
REPROVISION_MAX_BYTES = 1 << 20


class ImdsPublicKey(NamedTuple):
    key_data: str
    path: Optional[str]


class InstanceMetadata(NamedTuple):
    """The fields of `compute` that provisioning uses, type-checked but not yet validated."""

    vm_id: Optional[str]
    name: Optional[str]
    computer_name: Optional[str]
    admin_username: Optional[str]
    disable_password_authentication: Optional[bool]
    public_keys: tuple[ImdsPublicKey, ...]
    user_data: Optional[str]
    pps_type: Optional[str] = None  # extended.compute.ppsType; None when IMDS gave none


def _string(data: dict[str, Any], key: str, field: str) -> Optional[str]:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"imds.{field}", value, "is not a string")
    # keyData may end in "\r\n" (a known IMDS quirk, handled by the key check);
    # anywhere else a control character is an attempt to smuggle in a second line.
    if not value.rstrip("\r\n").isprintable():
        raise InvalidInput(f"imds.{field}", value, "contains control characters")
    return value


def _flag(value: object, field: str) -> Optional[bool]:
    """IMDS sends "true"/"false" strings; accept JSON booleans the same way."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInput(f"imds.{field}", value, 'is neither "true" nor "false"')


def parse_instance_metadata(content: bytes) -> InstanceMetadata:
    """Parse the `instance` document; a body that is not JSON is worth another try."""
    try:
        document = parse_json(content, "instance metadata")
    except UnusableJson:
        raise Retry(f"instance metadata is not valid JSON ({len(content)} bytes)") from None
    compute = document.get("compute") if isinstance(document, dict) else None
    if not isinstance(compute, dict):
        raise Retry("instance metadata has no 'compute' object")
    profile = compute.get("osProfile")
    profile = {} if profile is None else profile
    if not isinstance(profile, dict):
        raise InvalidInput("imds.compute.osProfile", profile, "is not an object")
    raw_keys = compute.get("publicKeys")
    raw_keys = [] if raw_keys is None else raw_keys
    if not isinstance(raw_keys, list):
        raise InvalidInput("imds.compute.publicKeys", raw_keys, "is not a list")
    keys = []
    for index, entry in enumerate(raw_keys):
        field = f"compute.publicKeys[{index}]"
        if not isinstance(entry, dict):
            raise InvalidInput(f"imds.{field}", entry, "is not an object")
        key_data = _string(entry, "keyData", f"{field}.keyData")
        if key_data is None:
            raise InvalidInput(f"imds.{field}.keyData", entry.get("keyData"), "is empty")
        keys.append(ImdsPublicKey(key_data, _string(entry, "path", f"{field}.path")))
    return InstanceMetadata(
        pps_type=_pps_type(document),
        vm_id=_string(compute, "vmId", "compute.vmId"),
        name=_string(compute, "name", "compute.name"),
        computer_name=_string(profile, "computerName", "compute.osProfile.computerName"),
        admin_username=_string(profile, "adminUsername", "compute.osProfile.adminUsername"),
        disable_password_authentication=_flag(
            profile.get("disablePasswordAuthentication"),
            "compute.osProfile.disablePasswordAuthentication",
        ),
        public_keys=tuple(keys),
        user_data=_string(compute, "userData", "compute.userData"),
    )


def _pps_type(document: dict[str, Any]) -> Optional[str]:
    extended = document.get("extended")
    if extended is None:
        return None
    if not isinstance(extended, dict):  # not "no pool": that would provision the placeholder
        raise InvalidInput("imds.extended", extended, "is not an object")
    compute = extended.get("compute")
    if compute is None:
        return None
    if not isinstance(compute, dict):
        raise InvalidInput("imds.extended.compute", compute, "is not an object")
    value = compute.get("ppsType")
    if value is None:
        return None
    if not isinstance(value, str) or value not in PPS_TYPES:
        raise InvalidInput(
            "imds.extended.compute.ppsType", value, f"is not one of {', '.join(sorted(PPS_TYPES))}"
        )
    return value


def request_id() -> str:
    """A random (version 4) UUID, without importing `uuid` (which imports `platform`)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Imds:
    """Reads instance metadata from `url` (…/metadata), retrying as IMDS needs."""

    def __init__(self, http: FabricHttp, url: str, total_timeout: float) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.total_timeout = total_timeout

    def instance_metadata(self, deadline: Deadline | None = None) -> InstanceMetadata:
        def parse(reply: Reply) -> InstanceMetadata:
            return parse_instance_metadata(reply.content)

        result: InstanceMetadata = self.http.call(
            "instance metadata",
            "GET",
            f"{self.url}/instance?{INSTANCE_QUERY}",
            deadline or Deadline(self.total_timeout),
            headers={"Metadata": "true"},
            parse=parse,
            retry_status=IMDS_RETRY_STATUS,
        )
        return result

    def reprovision_data(self, deadline: Deadline) -> bytes:
        """A pool VM's handed-over ovf-env.xml, polled until `deadline`: IMDS answers 404
        (or 410, 429, 5xx) until a customer takes the VM. FabricUnreachable when the last
        try got no reply at all (the network may have changed under the VM: renew DHCP)."""
        url = f"{self.url}/reprovisiondata?{REPROVISION_QUERY}"
        try:
            reply: Reply = self.http.call(
                "reprovision data",
                "GET",
                url,
                deadline,
                headers={"Metadata": "true"},
                fresh_headers=lambda: {"x-ms-client-request-id": request_id()},
                retry_status=IMDS_RETRY_STATUS,
                max_bytes=REPROVISION_MAX_BYTES,
                policy=REPROVISION_POLICY,
            )
        except HttpStatusError as exc:
            # Without the body: for this request any body may be a customer's ovf-env.xml,
            # password included, and the error reaches the report, KVP and the journal.
            raise HttpStatusError(
                f"reprovision data: GET {url} answered HTTP {exc.status}",
                status=exc.status,
                url=url,
            ) from None
        return reply.content
