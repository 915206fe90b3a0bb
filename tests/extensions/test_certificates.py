"""Certificates: transport pair, the encrypted document, tenant keys the extension can use."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from azprov.extensions.certificates import TRANSPORT_CERT, TRANSPORT_KEY, certificate_header
from azprov.simulator import Answer
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.simulated import STATUS_SIG, PluginSpec, SimulatedExtensions

NAME = "Sim.SecretExtension"
SECRET = {"password": "correct-horse-battery-staple-91", "token": "t0k3n-do-not-log"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_extension_decrypts_its_protected_settings_with_the_files_the_agent_wrote(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fabric.spec.certificates = True
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1, protected_settings=SECRET)]
    agent.lib().mkdir(mode=0o755, parents=True)  # an image that already has the folder

    assert agent.once() == 0

    folder = agent.lib(f"{NAME}-1.0.0")
    assert json.loads((folder / "decrypted.json").read_text()) == SECRET
    thumb = ext.tenant.thumbprint
    assert _mode(agent.lib(f"{thumb}.prv")) == 0o600
    assert agent.lib(f"{thumb}.crt").is_file()
    assert _mode(agent.lib()) == 0o700
    key = agent.root / TRANSPORT_KEY.lstrip("/")
    assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
    # The request carried the transport certificate the agent holds.
    sent = fabric.requests_to("wireserver", f"/machine/{fabric.spec.container_id}")
    certificates = [r for r in sent if "comp=certificates" in r.path]
    cert_pem = (agent.root / TRANSPORT_CERT.lstrip("/")).read_bytes()
    assert certificates[0].headers["x-ms-guest-agent-public-x509-cert"] == certificate_header(
        cert_pem
    )
    assert certificates[0].headers["x-ms-cipher-name"] == "AES128_CBC"

    # The settings file holds them still encrypted; nothing else holds them at all.
    settings = (folder / "config/1.settings").read_text()
    handler = json.loads(settings)["runtimeSettings"][0]["handlerSettings"]
    assert handler["protectedSettingsCertThumbprint"] == thumb
    for plaintext in SECRET.values():
        assert plaintext not in settings
    status = json.dumps(ext.status_document())
    for secret in (*SECRET.values(), handler["protectedSettings"], STATUS_SIG, "PRIVATE KEY"):
        assert secret not in status
        assert secret not in caplog.text
    assert handler_entries(ext.status_document())[NAME]["status"] == "Ready"


def test_certificates_are_fetched_once_per_goal_state_and_the_pair_is_kept(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    fabric.spec.certificates = True
    assert agent.once() == 0
    key = (agent.root / TRANSPORT_KEY.lstrip("/")).read_bytes()
    assert agent.once() == 0  # a new process, same goal state: nothing fetched again
    fetched = [r for r in fabric.requests if "comp=certificates" in r.path]
    assert len(fetched) == 1
    fabric.new_incarnation()
    assert agent.once() == 0  # a new Certificates URL: fetched again, same transport pair
    assert (agent.root / TRANSPORT_KEY.lstrip("/")).read_bytes() == key
    fetched = [r for r in fabric.requests if "comp=certificates" in r.path]
    assert len(fetched) == 2
    assert agent.lib(f"{ext.tenant.thumbprint}.prv").is_file()


def test_undecryptable_certificates_are_reported_and_handlers_without_secrets_still_run(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    fabric.spec.certificates = True
    machine = f"/machine/{fabric.spec.container_id}/{fabric.spec.role_name}?comp=certificates"
    fabric.wireserver.script(
        [
            Answer(
                200,
                b"<CertificateFile><Format>Pkcs7BlobWithPfxContents</Format><Data>AAAA</Data></CertificateFile>",
            )
        ],
        machine,
    )
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    assert agent.once() == 1
    assert (
        "certificates not installed: Certificates: decrypt the Certificates: openssl exited"
        in caplog.text
    )
    assert agent.op_names(NAME) == ["install@1.0.0", "enable@1.0.0"]


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        (
            "Pkcs12",
            "AAAA",
            "Certificates Format='Pkcs12' is invalid: expected Pkcs7BlobWithPfxContents",
        ),
        (
            "Pkcs7BlobWithPfxContents",
            "not*base64",
            "Certificates Data='not*base64' is invalid: not base64",
        ),
        ("Pkcs7BlobWithPfxContents", "", "Certificates Data='' is invalid: is empty"),
    ],
)
def test_an_unusable_certificates_document_is_refused_by_name(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric,
    caplog: pytest.LogCaptureFixture,
    fmt: str,
    data: str,
    message: str,
) -> None:
    fabric.spec.certificates = True
    document = f"<CertificateFile><Format>{fmt}</Format><Data>{data}</Data></CertificateFile>"
    fabric.wireserver.script(
        [Answer(200, document.encode())],
        f"/machine/{fabric.spec.container_id}/{fabric.spec.role_name}?comp=certificates",
    )
    assert agent.once() == 1
    assert message in caplog.text


def test_an_unusable_certificates_document_is_not_fetched_again_every_round(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    fabric.spec.certificates = True
    fabric.wireserver.script(
        [
            Answer(
                200,
                b"<CertificateFile><Format>Pkcs7BlobWithPfxContents</Format><Data>AAAA</Data></CertificateFile>",
            )
        ],
        f"/machine/{fabric.spec.container_id}/{fabric.spec.role_name}?comp=certificates",
    )
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        assert runner.round().exit_code == 0
        fabric.new_incarnation()  # a new Certificates URL: fetched (and usable) again
        assert runner.round().exit_code == 0
    fetched = [r for r in fabric.requests if "comp=certificates" in r.path]
    assert len(fetched) == 2
    assert agent.lib(f"{ext.tenant.thumbprint}.prv").is_file()
