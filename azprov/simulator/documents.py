"""The documents a simulated fabric serves, written from the public descriptions.

`VmSpec` is what the platform knows about the simulated VM; the functions turn
it into a goal state, an IMDS instance document and an ovf-env.xml.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from typing import Optional
from xml.sax.saxutils import escape

# A real, well-formed ed25519 public key (no private half exists anywhere).
EXAMPLE_SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAyryGS2tf9pozXd5RuBQCVqcvOOGUhFSEeSgAC7rUY "
    "azureuser@example"
)


@dataclasses.dataclass
class PublicKey:
    key_data: str
    path: str


@dataclasses.dataclass
class VmSpec:
    """What the simulated platform says about the VM. Tests change fields freely."""

    vm_id: str = "d0c2b7e9-8d5c-4f1e-9a43-5b6f0e4a3c21"
    name: str = "simvm"
    computer_name: str = "simvm"
    admin_username: str = "azureuser"
    public_keys: list[PublicKey] = dataclasses.field(
        default_factory=lambda: [
            PublicKey(EXAMPLE_SSH_KEY, "/home/azureuser/.ssh/authorized_keys")
        ]
    )
    # IMDS sends the string "true"/"false"; a test may set a JSON boolean instead.
    disable_password_authentication: object = "true"
    user_data: str = ""
    location: str = "westeurope"
    vm_size: str = "Standard_B2s"
    container_id: str = "7b324f53-983a-43bc-b919-1775d6077608"
    role_name: str = "_simvm"
    incarnation: int = 1
    extensions_enabled: bool = False
    certificates: bool = False

    @property
    def instance_id(self) -> str:
        return f"{self.vm_id}.{self.role_name}"


def role_config_name(spec: VmSpec) -> str:
    """The goal state's ConfigName, which the HostGAPlugin wants as x-ms-host-config-name."""
    return f"{spec.container_id}.0.{spec.container_id}.0.{spec.role_name}.1.xml"


def goal_state_xml(spec: VmSpec, base: str) -> bytes:
    """A goal state like the WireServer's; config URLs point at `base` (the WireServer)."""
    inc = spec.incarnation
    query = f"incarnation={inc}"
    machine = escape(f"{base}/machine/{spec.container_id}/{spec.role_name}")
    optional = ""
    if spec.extensions_enabled:
        optional += (
            "\n          <ExtensionsConfig>"
            f"{machine}"
            f"?comp=config&amp;type=extensionsConfig&amp;{query}</ExtensionsConfig>"
        )
    if spec.certificates:
        optional += (
            f"\n          <Certificates>{machine}?comp=certificates&amp;{query}</Certificates>"
        )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2010-12-15</Version>
  <Incarnation>{inc}</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
    <LBProbePorts>
      <Port>16001</Port>
    </LBProbePorts>
    <ExpectHealthReport>FALSE</ExpectHealthReport>
  </Machine>
  <Container>
    <ContainerId>{escape(spec.container_id)}</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>{escape(spec.instance_id)}</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>{machine}?comp=config&amp;type=hostingEnvironmentConfig&amp;{query}</HostingEnvironmentConfig>
          <SharedConfig>{machine}?comp=config&amp;type=sharedConfig&amp;{query}</SharedConfig>{optional}
          <FullConfig>{machine}?comp=config&amp;type=fullConfig&amp;{query}</FullConfig>
          <ConfigName>{escape(role_config_name(spec))}</ConfigName>
        </Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
""".encode()


def versions_xml() -> bytes:
    return b"""<?xml version="1.0" encoding="utf-8"?>
<Versions>
  <Preferred>
    <Version>2015-04-05</Version>
  </Preferred>
  <Supported>
    <Version>2015-04-05</Version>
    <Version>2012-11-30</Version>
    <Version>2012-09-15</Version>
    <Version>2012-03-01</Version>
  </Supported>
</Versions>
"""


def imds_instance(spec: VmSpec) -> dict[str, object]:
    """The IMDS `instance` document (api-version 2021-08-01 shape, trimmed)."""
    return {
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": spec.location,
            "name": spec.name,
            "osType": "Linux",
            "osProfile": {
                "adminUsername": spec.admin_username,
                "computerName": spec.computer_name,
                "disablePasswordAuthentication": spec.disable_password_authentication,
            },
            "provider": "Microsoft.Compute",
            "publicKeys": [{"keyData": k.key_data, "path": k.path} for k in spec.public_keys],
            "resourceGroupName": "simulated-rg",
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "userData": spec.user_data,
            "vmId": spec.vm_id,
            "vmSize": spec.vm_size,
        },
        "network": {
            "interface": [
                {
                    "ipv4": {
                        "ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}]
                    },
                    "macAddress": "000D3A000001",
                }
            ]
        },
    }


def imds_json(spec: VmSpec, pps_type: Optional[str] = None) -> bytes:
    """The instance document; with `pps_type`, the `extended` part IMDS adds when asked
    with `&extended=true` (its `compute.ppsType`: "None" for a VM in no pool)."""
    document = imds_instance(spec)
    if pps_type is not None:
        document["extended"] = {"compute": {"ppsType": pps_type}}
    return json.dumps(document).encode()


def ovf_env_xml(
    hostname: str = "simvm",
    username: str = "azureuser",
    password: Optional[str] = None,
    custom_data: Optional[bytes] = None,
    disable_ssh_password_auth: bool = True,
    public_keys: tuple[tuple[str, str], ...] = (),
    preprovisioned_vm: bool = False,
    preprovisioned_vm_type: Optional[str] = None,
) -> bytes:
    """An ovf-env.xml as the provisioning media carries it. `public_keys`: (path, value).

    `preprovisioned_vm`/`preprovisioned_vm_type`: the PlatformSettings of a VM created
    for a pool ("Running", "Savable" or "PreprovisionedOSDisk"), spelled as in production.
    """
    keys = "".join(
        f"<ns1:PublicKey><ns1:Fingerprint>{uuid.uuid4().hex.upper()}</ns1:Fingerprint>"
        f"<ns1:Path>{escape(path)}</ns1:Path><ns1:Value>{escape(value)}</ns1:Value></ns1:PublicKey>"
        for path, value in public_keys
    )
    password_xml = f"<ns1:UserPassword>{escape(password)}</ns1:UserPassword>" if password else ""
    custom = (
        f"<ns1:CustomData>{base64.b64encode(custom_data).decode()}</ns1:CustomData>"
        if custom_data is not None
        else ""
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ns0:Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" xmlns:ns1="http://schemas.microsoft.com/windowsazure" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <ns1:ProvisioningSection>
    <ns1:Version>1.0</ns1:Version>
    <ns1:LinuxProvisioningConfigurationSet>
      <ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>
      <ns1:HostName>{escape(hostname)}</ns1:HostName>
      <ns1:UserName>{escape(username)}</ns1:UserName>
      {password_xml}
      <ns1:DisableSshPasswordAuthentication>{str(disable_ssh_password_auth).lower()}</ns1:DisableSshPasswordAuthentication>
      <ns1:SSH><ns1:PublicKeys>{keys}</ns1:PublicKeys></ns1:SSH>
      {custom}
    </ns1:LinuxProvisioningConfigurationSet>
  </ns1:ProvisioningSection>
{_platform_settings(preprovisioned_vm, preprovisioned_vm_type)}</ns0:Environment>
""".encode()


def _platform_settings(preprovisioned_vm: bool, preprovisioned_vm_type: Optional[str]) -> str:
    """The PlatformSettingsSection; a VM in no pool has PreprovisionedVMType xsi:nil."""
    pool_type = (
        f"<ns1:PreprovisionedVMType>{escape(preprovisioned_vm_type)}</ns1:PreprovisionedVMType>"
        if preprovisioned_vm_type is not None
        else '<ns1:PreprovisionedVMType xsi:nil="true" />'
    )
    return f"""  <ns1:PlatformSettingsSection>
    <ns1:Version>1.0</ns1:Version>
    <ns1:PlatformSettings>
      <ns1:KmsServerHostname>kms.core.windows.net</ns1:KmsServerHostname>
      <ns1:ProvisionGuestAgent>false</ns1:ProvisionGuestAgent>
      <ns1:GuestAgentPackageName xsi:nil="true" />
      <ns1:PreprovisionedVm>{str(preprovisioned_vm).lower()}</ns1:PreprovisionedVm>
      {pool_type}
    </ns1:PlatformSettings>
  </ns1:PlatformSettingsSection>
"""
