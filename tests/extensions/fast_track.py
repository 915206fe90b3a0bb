"""Fast Track for the simulated fabric: a vmSettings document in the shape the HostGAPlugin
sends, built from the same `PluginSpec`s as the simulated ExtensionsConfig.

The shape follows a captured vmSettings document (reference §7; WALinuxAgent's test data
`vm_settings.json`): mixed-case keys (`failoverlocation`, `DependsOnExtension`), public
settings as a JSON *string*, one `settings` entry per single-config handler with the
handler's `settingsSeqNo` beside it, `extensionsLastModifiedTickCount` in .NET ticks,
`statusUploadBlob` as an object, `gaFamilies` the agent ignores, and `inVMMetadata`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from tests.extensions.simulated import PluginSpec, SimulatedExtensions

# .NET ticks (100 ns) from 0001-01-01 to the Unix epoch.
_EPOCH_TICKS = 621355968000000000
HOST_PLUGIN_VERSION = "1.0.8.143"


def ticks(at: Optional[float] = None) -> int:
    """A creation time as the platform writes it: .NET ticks, UTC."""
    return _EPOCH_TICKS + int((time.time() if at is None else at) * 10**7)


def freeze_extensions_config(ext: SimulatedExtensions) -> bytes:
    """From now on the WireServer serves the ExtensionsConfig it would serve now, whatever
    the test changes in `ext.plugins` (published through vmSettings only)."""
    frozen = ext.extensions_config_xml()
    ext.rewrite_config = lambda _: frozen.decode()
    return frozen


def _extension(ext: SimulatedExtensions, plugin: PluginSpec) -> dict[str, Any]:
    base = ext.storage_url
    entry: dict[str, Any] = {
        "name": plugin.name,
        "version": plugin.version,
        "location": f"{base}/manifests/{plugin.name}.xml",
        "failoverlocation": f"{base}/manifests/{plugin.name}.xml",
        "additionalLocations": [f"{base}/manifests/{plugin.name}.xml"],
        "state": plugin.state,
        "autoUpgrade": True,
        "runAsStartupTask": False,
        "isJson": True,
        "useExactVersion": True,
        "settingsSeqNo": plugin.seq_no if plugin.seq_no is not None else 0,
        "isMultiConfig": False,
    }
    if plugin.named is not None:
        entry["isMultiConfig"] = True
        entry["settings"] = []
        for named in plugin.named:
            each: dict[str, Any] = {"publicSettings": json.dumps(named.public_settings)}
            protected = ext._protected(named)
            if protected is not None:
                each["protectedSettingsCertThumbprint"] = ext.tenant.thumbprint
                each["protectedSettings"] = protected
            each.update(seqNo=named.seq_no, extensionName=named.name, extensionState=named.state)
            entry["settings"].append(each)
    elif plugin.seq_no is not None:
        settings: dict[str, Any] = {"publicSettings": json.dumps(plugin.public_settings)}
        protected = ext._protected(plugin)
        if protected is not None:
            settings["protectedSettingsCertThumbprint"] = ext.tenant.thumbprint
            settings["protectedSettings"] = protected
        entry["settings"] = [settings]
    if plugin.dependency_level:
        entry["dependsOn"] = [
            {
                "DependsOnExtension": [{"handler": d} for d in plugin.depends_on],
                "dependencyLevel": plugin.dependency_level,
            }
        ]
    return entry


def vm_settings_json(
    ext: SimulatedExtensions,
    plugins: Optional[list[PluginSpec]] = None,
    *,
    created: Optional[int] = None,
    source: str = "FastTrack",
    on_hold: bool = False,
    required_features: tuple[str, ...] = (),
    in_svd_seq_no: int = 1,
    host_plugin_version: str = HOST_PLUGIN_VERSION,
) -> bytes:
    """A vmSettings document asking for `plugins` (default: `ext.plugins`)."""
    spec = ext.fabric.spec
    asked = ext.plugins if plugins is None else plugins
    document = {
        "hostGAPluginVersion": host_plugin_version,
        "vmSettingsSchemaVersion": "0.0",
        "activityId": "a33f6f53-43d6-4625-b322-1a39651a00c9",
        "correlationId": "9a47a2a2-e740-4bfc-b11b-4f2f7cfe7d2e",
        "inSvdSeqNo": in_svd_seq_no,
        "extensionsLastModifiedTickCount": ticks() if created is None else created,
        "extensionGoalStatesSource": source,
        "onHold": on_hold,
        "statusUploadBlob": {"statusBlobType": ext.status_blob_type, "value": ext.status_blob_url},
        "inVMMetadata": {
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "resourceGroupName": "simulated-rg",
            "vmName": spec.name,
            "location": spec.location,
            "vmId": spec.vm_id,
            "vmSize": spec.vm_size,
            "osType": "Linux",
        },
        "requiredFeatures": [{"name": f} for f in required_features]
        + [{"name": "MultipleExtensionsPerHandler"} for p in asked if p.named is not None][:1],
        "gaFamilies": [{"name": "Prod", "uris": [f"{ext.storage_url}/ga/Prod_manifest.xml"]}],
        "extensionGoalStates": [_extension(ext, p) for p in asked],
    }
    return json.dumps(document, indent=4).encode()


def publish_vm_settings(ext: SimulatedExtensions, **options: Any) -> str:
    """Serve a vmSettings document for `ext.plugins` now; returns its ETag."""
    return ext.fabric.publish_vm_settings(vm_settings_json(ext, **options))
