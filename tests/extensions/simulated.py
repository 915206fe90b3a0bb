"""The extension side of the simulated fabric: ExtensionsConfig, storage, HostGAPlugin, Certificates.

Test-only (moved out of the package): the handlers it serves are in `fleet.py`.

`SimulatedExtensions(fabric)` adds to a `SimulatedFabric`:
- the ExtensionsConfig and Certificates documents on the WireServer;
- a fourth service, `storage`, holding manifests, packages and the status
  blob (BlockBlob and PageBlob semantics); by default it refuses direct
  access (403), as storage does for most VMs, so the HostGAPlugin is needed;
- the HostGAPlugin's `GET /extensionArtifact` and `PUT /status`.
Certificates and protected settings are encrypted with the real openssl CLI:
the Certificates to the agent's transport certificate (from its request
header), holding one tenant certificate; protected settings to that tenant
certificate. `fleet.extension_zip()` builds the test extension packages.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from azprov.simulator.documents import role_config_name
from azprov.simulator.fabric import SimulatedFabric
from azprov.simulator.service import Answer, Request, Service
from tests.extensions.fleet import extension_zip

STATUS_SIG = "SIMULATEDSASSIGNATURE0123456789"


def _openssl(*args: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=60
    ).stdout


@dataclasses.dataclass
class NamedSpec:
    """One named extension of a multi-config plugin (RunCommand v2's shape)."""

    name: str
    seq_no: int = 0
    state: str = "enabled"
    public_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    protected_settings: Optional[dict[str, Any]] = None


@dataclasses.dataclass
class PluginSpec:
    """One plugin in the simulated ExtensionsConfig; tests change fields between incarnations."""

    name: str
    version: str
    state: str = "enabled"
    seq_no: Optional[int] = 0
    public_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    protected_settings: Optional[dict[str, Any]] = None
    dependency_level: int = 0
    depends_on: tuple[str, ...] = ()
    failover: bool = False  # list a failover manifest location (the primary then 404s)
    multi_config: bool = False  # send settings as a multi-config handler's, named "first"
    raw_settings: Optional[str] = None  # RuntimeSettings text sent as it is (not JSON, say)
    # A multi-config plugin's named extensions, sent as the platform sends them
    # (ExtensionRuntimeSettings @seqNo @name @state, RequiredFeature MultipleExtensionsPerHandler).
    named: Optional[list[NamedSpec]] = None


class TenantCertificate:
    """A self-signed tenant certificate and key, as the platform would hold for a VM."""

    def __init__(self, folder: Path) -> None:
        self.key = folder / "tenant.key"
        self.cert = folder / "tenant.crt"
        _openssl(
            "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-subj", "/CN=SimulatedTenant",
            "-days", "30", "-keyout", str(self.key), "-out", str(self.cert),
        )  # fmt: skip
        self.thumbprint = (
            _openssl("x509", "-in", str(self.cert), "-noout", "-fingerprint", "-sha1")
            .decode()
            .split("=", 1)[1]
            .strip()
            .replace(":", "")
            .upper()
        )

    def encrypt(self, plaintext: bytes) -> str:
        """CMS-encrypt to this certificate, base64 DER: how protected settings arrive."""
        der = _openssl(
            "cms",
            "-encrypt",
            "-binary",
            "-aes256",
            "-outform",
            "DER",
            str(self.cert),
            stdin=plaintext,
        )
        return base64.b64encode(der).decode()

    def pfx(self) -> bytes:
        return _openssl(
            "pkcs12",
            "-export",
            "-inkey",
            str(self.key),
            "-in",
            str(self.cert),
            "-password",
            "pass:",
        )


class SimulatedExtensions:
    """Extension routes for `fabric`; call `start()` (starts storage) and `stop()`."""

    def __init__(
        self, fabric: SimulatedFabric, workdir: Path, storage_base: Optional[str] = None
    ) -> None:
        self.fabric = fabric
        # The storage address written into documents (the guest of an emulated
        # VM is given one it cannot reach); the service itself is on loopback.
        self.storage_base = storage_base
        self.in_svd_seq_no = 1
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.storage = Service("storage", fabric)
        self.storage_reachable = False
        self.plugins: list[PluginSpec] = []
        self.status_blob_type = "BlockBlob"
        self.required_features: list[str] = []
        # Changes the ExtensionsConfig text before it is served (a bad attribute, say).
        self.rewrite_config: Optional[Callable[[str], str]] = None
        self.blobs: dict[str, bytes] = {}
        self.blob_types: dict[str, str] = {}
        self.status_uploads: list[tuple[str, str]] = []  # (channel, request kind)
        self.status_log: list[tuple[float, dict[str, Any]]] = []  # (when, document) per upload
        # Blob path -> the answer every GET of it gets, on either channel, while it is set.
        self.artifact_faults: dict[str, Answer] = {}
        self._versions: dict[str, list[str]] = {}
        self._tenant: Optional[TenantCertificate] = None
        self._encrypted: dict[tuple[str, Optional[int], str], str] = {}
        self._lock = threading.Lock()
        fabric.spec.extensions_enabled = True
        self._install_routes()

    @property
    def storage_url(self) -> str:
        return self.storage_base or self.storage.base

    def start(self) -> SimulatedExtensions:
        self.storage.start()
        return self

    def stop(self) -> None:
        self.storage.stop()

    # -- what the platform holds -------------------------------------------------
    @property
    def tenant(self) -> TenantCertificate:
        if self._tenant is None:
            folder = self.workdir / "tenant"
            folder.mkdir(parents=True, exist_ok=True)
            self._tenant = TenantCertificate(folder)
        return self._tenant

    def publish(self, name: str, version: str, package: bytes) -> None:
        """Put a package in storage and list it in the handler's manifest."""
        self.blobs[f"/packages/{name}-{version}.zip"] = package
        self._versions.setdefault(name, []).append(version)
        self.blobs[f"/manifests/{name}.xml"] = self.manifest_xml(name)

    def publish_test_extension(self, name: str, version: str, **manifest: Any) -> None:
        """Publish the test extension (see `extension_zip`) as `name` `version`."""
        self.publish(name, version, extension_zip(name, version, **manifest))

    def manifest_xml(self, name: str) -> bytes:
        plugins = "".join(
            f"<Plugin><Version>{v}</Version><Uris><Uri>{xml_escape(self.storage_url)}"
            f"/packages/{name}-{v}.zip</Uri></Uris></Plugin>"
            for v in self._versions.get(name, [])
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<PluginVersionManifest>'
            f"<Plugins>{plugins}</Plugins><InternalPlugins/></PluginVersionManifest>"
        ).encode()

    @property
    def status_blob_url(self) -> str:
        return f"{self.storage_url}/status/vm.status?sv=2018-03-28&sr=b&sp=rw&sig={STATUS_SIG}"

    def _protected(self, plugin: PluginSpec | NamedSpec) -> Optional[str]:
        if plugin.protected_settings is None:
            return None
        plaintext = json.dumps(plugin.protected_settings, sort_keys=True)
        key = (plugin.name, plugin.seq_no, plaintext)
        with self._lock:
            if key not in self._encrypted:
                self._encrypted[key] = self.tenant.encrypt(plaintext.encode())
            return self._encrypted[key]

    def extensions_config_xml(self) -> bytes:
        base = self.storage_url
        plugins, settings = [], []
        for p in self.plugins:
            location = f"{base}/manifests/{p.name}.xml"
            failover = ""
            if p.failover:
                failover, location = location, f"{base}/missing/{p.name}.xml"
            plugins.append(
                f"<Plugin name={quoteattr(p.name)} version={quoteattr(p.version)} "
                f"location={quoteattr(location)} failoverlocation={quoteattr(failover)} "
                f'state="{p.state}" autoUpgrade="false" runAsStartupTask="false" isJson="true" />'
            )
            handler: dict[str, Any] = {"publicSettings": p.public_settings}
            protected = self._protected(p)
            if protected is not None:
                handler["protectedSettings"] = protected
                handler["protectedSettingsCertThumbprint"] = self.tenant.thumbprint
            depends = ""
            if p.dependency_level:
                depends = (
                    f'<DependsOn dependencyLevel="{p.dependency_level}">'
                    + "".join(
                        f"<DependsOnExtension handler={quoteattr(d)} />" for d in p.depends_on
                    )
                    + "</DependsOn>"
                )
            runtime = ""
            if p.named is not None:
                runtime = self._named_settings_xml(p.named)
            elif p.seq_no is not None:
                text = json.dumps({"runtimeSettings": [{"handlerSettings": handler}]})
                body = xml_escape(text if p.raw_settings is None else p.raw_settings)
                runtime = f'<RuntimeSettings seqNo="{p.seq_no}">{body}</RuntimeSettings>'
                if p.multi_config:
                    runtime = (
                        f'<ExtensionRuntimeSettings seqNo="{p.seq_no}" name="first" '
                        f'state="enabled">{body}</ExtensionRuntimeSettings>'
                    )
            settings.append(
                f"<Plugin name={quoteattr(p.name)} version={quoteattr(p.version)}>{depends}{runtime}</Plugin>"
            )
        required = self.required_features + (
            ["MultipleExtensionsPerHandler"]
            if any(p.named is not None for p in self.plugins)
            else []
        )
        features = "".join(
            f"<RequiredFeature><Name>{xml_escape(f)}</Name><Value>1.0</Value></RequiredFeature>"
            for f in dict.fromkeys(required)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<Extensions version="1.0.0.0" goalStateIncarnation="{self.fabric.spec.incarnation}">'
            "<GuestAgentExtension><GAFamilies/></GuestAgentExtension>"
            f"<Plugins>{''.join(plugins)}</Plugins><PluginSettings>{''.join(settings)}</PluginSettings>"
            + (f"<RequiredFeatures>{features}</RequiredFeatures>" if features else "")
            + f'<InVMGoalStateMetaData inSvdSeqNo="{self.in_svd_seq_no}" />'
            + f'<StatusUploadBlob statusBlobType="{self.status_blob_type}">'
            f"{xml_escape(self.status_blob_url)}</StatusUploadBlob></Extensions>"
        ).encode()

    def _named_settings_xml(self, named: list[NamedSpec]) -> str:
        """A multi-config plugin's settings: one ExtensionRuntimeSettings per name."""
        elements = []
        for n in named:
            handler: dict[str, Any] = {"publicSettings": n.public_settings}
            protected = self._protected(n)
            if protected is not None:
                handler["protectedSettings"] = protected
                handler["protectedSettingsCertThumbprint"] = self.tenant.thumbprint
            text = json.dumps({"runtimeSettings": [{"handlerSettings": handler}]}, indent=2)
            elements.append(
                f'<ExtensionRuntimeSettings seqNo="{n.seq_no}" name={quoteattr(n.name)} '
                f'state="{n.state}">{xml_escape(text)}</ExtensionRuntimeSettings>'
            )
        return "".join(elements)

    def certificates_xml(self, transport_header: str) -> bytes:
        body = "\n".join(textwrap.wrap(transport_header, 64))
        transport = self.workdir / "transport-seen.pem"
        transport.write_text(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        envelope = _openssl(
            "cms",
            "-encrypt",
            "-binary",
            "-aes128",
            "-outform",
            "DER",
            str(transport),
            stdin=self.tenant.pfx(),
        )
        data = base64.b64encode(envelope).decode()
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<CertificateFile><Version>2012-11-30</Version>'
            f"<Incarnation>{self.fabric.spec.incarnation}</Incarnation>"
            f"<Format>Pkcs7BlobWithPfxContents</Format><Data>{data}</Data></CertificateFile>"
        ).encode()

    # -- the status blob ------------------------------------------------------------
    def status_document(self) -> dict[str, Any]:
        """The last uploaded status, decoded (page-blob padding removed)."""
        document: dict[str, Any] = json.loads(self.blobs["/status/vm.status"].rstrip(b"\0"))
        return document

    def _put_blob(self, url: str, headers: dict[str, str], body: bytes, channel: str) -> Answer:
        parts = urlsplit(url)
        path, query = parts.path, parts.query
        headers = {k.lower(): v for k, v in headers.items()}
        if headers.get("x-ms-version") is None:
            return Answer(400, b"<Error><Code>MissingRequiredHeader</Code></Error>")
        if f"sig={STATUS_SIG}" not in query:
            return Answer(403, b"<Error><Code>AuthenticationFailed</Code></Error>")
        with self._lock:
            if "comp=page" in query:
                if self.blob_types.get(path) != "PageBlob":
                    return Answer(400, b"<Error><Code>InvalidBlobType</Code></Error>")
                first, _, last = (
                    headers.get("x-ms-range", "").removeprefix("bytes=").partition("-")
                )
                start, end = int(first), int(last)
                size = len(self.blobs[path])
                if start % 512 or (end + 1) % 512 or end >= size or len(body) != end - start + 1:
                    return Answer(416, b"<Error><Code>InvalidPageRange</Code></Error>")
                self.blobs[path] = self.blobs[path][:start] + body + self.blobs[path][end + 1 :]
                kind = "PageBlob page"
            elif headers.get("x-ms-blob-type") == "BlockBlob":
                self.blobs[path], self.blob_types[path], kind = body, "BlockBlob", "BlockBlob"
            elif headers.get("x-ms-blob-type") == "PageBlob":
                length = int(headers.get("x-ms-blob-content-length", "-1"))
                if length < 0 or length % 512 or body:
                    return Answer(400, b"<Error><Code>InvalidHeaderValue</Code></Error>")
                self.blobs[path], self.blob_types[path], kind = (
                    b"\0" * length,
                    "PageBlob",
                    "PageBlob create",
                )
            else:
                return Answer(400, b"<Error><Code>MissingRequiredHeader</Code></Error>")
            self.status_uploads.append((channel, kind))
            if kind != "PageBlob create":
                document = json.loads(self.blobs[path].rstrip(b"\0"))
                self.status_log.append((time.monotonic(), document))
        return Answer(201)

    # -- routes -----------------------------------------------------------------------
    def _install_routes(self) -> None:
        self.fabric.machine_document("comp=config&type=extensionsConfig", self._extensions_config)
        self.fabric.machine_document("comp=certificates", self._certificates)
        self.storage.route("GET", "/", self._storage_get)
        self.storage.route("PUT", "/", self._storage_put)
        self.fabric.hostplugin.route("GET", "/extensionArtifact", self._artifact)
        self.fabric.hostplugin.route("PUT", "/status", self._hostplugin_status)

    def _extensions_config(self, request: Request) -> Answer:
        if request.headers.get("x-ms-version") != "2012-11-30":
            return Answer(400, b"<Error><Code>MissingOrInvalidVersionHeader</Code></Error>")
        document = self.extensions_config_xml()
        if self.rewrite_config is not None:
            document = self.rewrite_config(document.decode()).encode()
        return Answer(200, document)

    def _certificates(self, request: Request) -> Answer:
        header = request.headers.get("x-ms-guest-agent-public-x509-cert")
        if not header or request.headers.get("x-ms-cipher-name") != "AES128_CBC":
            return Answer(400, b"<Error><Code>MissingTransportCertificate</Code></Error>")
        return Answer(200, self.certificates_xml(header))

    def _blob(self, path: str) -> Answer:
        fault = self.artifact_faults.get(path)
        if fault is not None:
            return fault
        content = self.blobs.get(path)
        if content is None:
            return Answer(404, b"<Error><Code>BlobNotFound</Code></Error>")
        return Answer(200, content, {"Content-Type": "application/octet-stream"})

    def _storage_get(self, request: Request) -> Answer:
        if not self.storage_reachable:
            return Answer(403, b"<Error><Code>AuthorizationFailure</Code></Error>")
        return self._blob(request.route)

    def _storage_put(self, request: Request) -> Answer:
        if not self.storage_reachable:
            return Answer(403, b"<Error><Code>AuthorizationFailure</Code></Error>")
        return self._put_blob(request.path, request.headers, request.body, "storage")

    def _hostplugin_refusal(self, request: Request) -> Optional[Answer]:
        if request.headers.get("x-ms-version") != "2015-09-01":
            return Answer(400, b"<Error><Code>MissingOrInvalidVersionHeader</Code></Error>")
        named = (
            request.headers.get("x-ms-containerid"),
            request.headers.get("x-ms-host-config-name"),
        )
        if named != (self.fabric.spec.container_id, role_config_name(self.fabric.spec)):
            return Answer(400, b"<Error><Code>InvalidContainerConfiguration</Code></Error>")
        return None

    def _artifact(self, request: Request) -> Answer:
        refusal = self._hostplugin_refusal(request)
        if refusal is not None:
            return refusal
        location = request.headers.get("x-ms-artifact-location", "")
        if not location.startswith(self.storage_url):
            return Answer(400, b"<Error><Code>InvalidArtifactLocation</Code></Error>")
        return self._blob(urlsplit(location).path)

    def _hostplugin_status(self, request: Request) -> Answer:
        refusal = self._hostplugin_refusal(request)
        if refusal is not None:
            return refusal
        try:
            body = json.loads(request.body)
            headers = {h["headerName"]: h["headerValue"] for h in body["headers"]}
            content = base64.b64decode(body["content"], validate=True)
            url = body["requestUri"]
        except (ValueError, KeyError, TypeError):
            return Answer(400, b"<Error><Code>InvalidStatusRequest</Code></Error>")
        answer = self._put_blob(url, headers, content, "HostGAPlugin")
        return Answer(200) if answer.status == 201 else answer


def publish_sample_and_access(
    ext: SimulatedExtensions, sample: str, access: str, password: str, access_seq_no: int
) -> None:
    """Two real-shaped handlers in service: `sample` (sample.py, with protected settings
    encrypted to the tenant certificate) and `access` (the shim-and-noop shape)."""
    from tests.extensions.fleet import extension_zip

    ext.fabric.spec.certificates = True
    ext.publish(sample, "1.0.0", extension_zip(sample, "1.0.0", style="sample"))
    ext.publish(access, "1.5.0", extension_zip(access, "1.5.0", style="access"))
    ext.plugins = [
        PluginSpec(sample, "1.0", seq_no=1, protected_settings={"password": password}),
        PluginSpec(access, "1.5", seq_no=access_seq_no),
    ]
