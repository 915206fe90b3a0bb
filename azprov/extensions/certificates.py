"""Tenant certificates for extensions, fetched and decrypted with the openssl CLI.

The platform encrypts the Certificates document to our transport certificate
(a self-signed key pair kept 0600 under azprov's state directory). Decrypted,
it is a PKCS#12 of certificates and keys; each certificate is written as
`<THUMBPRINT>.crt` and its key as `<THUMBPRINT>.prv` in the extensions
directory, where extensions look for them to decrypt protected settings.
Key material travels only through pipes and 0600 files, never argv or logs,
and every file is read and written through the target root's door: azprov's
own transport pair with links refused, the tenant files in a folder opened
inside the root and replaced by rename, never written through a link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
from pathlib import Path

from azprov.confined import Confined, Links, write_at
from azprov.errors import CertificatesUndecryptable, HostError, InvalidInput
from azprov.fabric.wireserver import WireServer
from azprov.fabric.xmldoc import parse_xml, text
from azprov.host.root import TargetRoot
from azprov.host.state import STATE_DIR

log = logging.getLogger(__name__)

TRANSPORT_DIR = f"{STATE_DIR}/transport"
TRANSPORT_KEY = f"{TRANSPORT_DIR}/TransportPrivate.pem"
TRANSPORT_CERT = f"{TRANSPORT_DIR}/TransportCert.pem"
CIPHER = "AES128_CBC"
# A 2048-bit RSA certificate in PEM is about 1.1 KB; 64 KB is any certificate at all.
TRANSPORT_CERT_MAX_BYTES = 64 * 1024
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


def transport_pair(root: TargetRoot) -> tuple[Path, Path]:
    """(key, certificate) of the transport pair, created on first use: host paths, to
    name the files to openssl."""
    key_path, cert_path = root / TRANSPORT_KEY, root / TRANSPORT_CERT
    if all(_is_file(root, path) for path in (TRANSPORT_KEY, TRANSPORT_CERT)):
        return key_path, cert_path
    log.info("creating the transport key pair in %s", TRANSPORT_DIR)
    key = root.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        what="create the transport key",
    ).stdout
    cert = root.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            "/dev/stdin",
            "-subj",
            "/CN=LinuxTransport",
            "-days",
            "730",
            "-sha256",
        ],
        what="create the transport certificate",
        stdin=key,
    ).stdout
    # The key first: the certificate's presence says the pair is complete.
    for path, content in ((TRANSPORT_KEY, key), (TRANSPORT_CERT, cert)):
        root.write(path, content, mode=0o600, dir_mode=0o700, links=Links.REFUSE)
    return key_path, cert_path


def _is_file(root: TargetRoot, path: str) -> bool:
    """A regular file of azprov's own, not a link (UnsafePath for a link on the way)."""
    found = root.lstat(path, links=Links.REFUSE)
    return found is not None and stat.S_ISREG(found.st_mode)


def certificate_header(cert_pem: bytes) -> str:
    """The certificate as the x-ms-guest-agent-public-x509-cert header wants it."""
    lines = cert_pem.decode("ascii", "replace").strip().splitlines()
    return "".join(line.strip() for line in lines if not line.startswith("-----"))


def fetch_certificates(wireserver: WireServer, url: str, cert_path: Path) -> bytes:
    """The Certificates document's `Data` (base64 CMS encrypted to the transport certificate)."""
    cert_pem = Confined(cert_path.parent).read(
        cert_path.name, TRANSPORT_CERT_MAX_BYTES, links=Links.REFUSE
    )
    if cert_pem is None:
        raise HostError(f"{cert_path} is missing", path=str(cert_path))
    content = wireserver.fetch_document(
        "Certificates",
        url,
        headers={
            "x-ms-guest-agent-public-x509-cert": certificate_header(cert_pem),
            "x-ms-cipher-name": CIPHER,
        },
    )
    document = parse_xml(content, "Certificates")
    fmt = text(document, "Format")
    if fmt != "Pkcs7BlobWithPfxContents":
        raise InvalidInput("Certificates Format", fmt, "expected Pkcs7BlobWithPfxContents")
    data = "".join((text(document, "Data") or "").split())
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a character that is not ASCII
        raise InvalidInput("Certificates Data", data[:40], "not base64") from None
    if not data:
        raise InvalidInput("Certificates Data", "", "is empty")
    return data.encode("ascii")


def decrypt_pfx(root: TargetRoot, data: bytes, key_path: Path, cert_path: Path) -> bytes:
    """Decrypt the CMS envelope and unpack the PKCS#12 inside: PEM blocks, keys unencrypted."""
    # The document's base64 is the DER envelope; decoding it here (rather than
    # wrapping it as S/MIME) keeps openssl from treating the PKCS#12 as text.
    pfx = root.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-inkey",
            str(key_path),
            "-recip",
            str(cert_path),
        ],
        what="decrypt the Certificates",
        stdin=base64.b64decode(data),
    ).stdout
    unpack = ["openssl", "pkcs12", "-nodes", "-password", "pass:"]
    try:
        return root.run(unpack, what="unpack the certificates", stdin=pfx).stdout
    except HostError:
        # OpenSSL 3 refuses the RC2/3DES PKCS#12 older platforms send unless asked.
        return root.run([*unpack, "-legacy"], what="unpack the certificates", stdin=pfx).stdout


def thumbprint(cert_pem: bytes) -> str:
    """SHA-1 of the DER certificate, upper-case hex: the name extensions look for."""
    body = b"".join(line for line in cert_pem.splitlines() if not line.startswith(b"-----"))
    return hashlib.sha1(base64.b64decode(body)).hexdigest().upper()


def _public_key(root: TargetRoot, pem: bytes, is_key: bool) -> bytes:
    argv = ["openssl", "pkey", "-pubout"] if is_key else ["openssl", "x509", "-noout", "-pubkey"]
    return root.run(argv, what="read a public key", stdin=pem).stdout.strip()


def split_certificates(root: TargetRoot, pem: bytes) -> dict[str, tuple[bytes, bytes | None]]:
    """thumbprint -> (certificate PEM, its private key PEM or None)."""
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(pem)]
    certs = [block for kind, block in blocks if kind == b"CERTIFICATE"]
    keys = [block for kind, block in blocks if kind.endswith(b"PRIVATE KEY")]
    key_by_public = {_public_key(root, key, True): key for key in keys}
    return {
        thumbprint(cert): (cert, key_by_public.get(_public_key(root, cert, False)))
        for cert in certs
    }


def install_certificates(
    root: TargetRoot, wireserver: WireServer, url: str, lib_dir: str
) -> list[str]:
    """Fetch, decrypt and write every tenant certificate; returns the thumbprints written."""
    key_path, cert_path = transport_pair(root)
    data = fetch_certificates(wireserver, url, cert_path)
    try:
        pem = decrypt_pfx(root, data, key_path, cert_path)
    except HostError as exc:
        raise CertificatesUndecryptable(f"Certificates: {exc}") from None
    found = split_certificates(root, pem)
    with root.directory(lib_dir, mode=0o700) as folder:
        # Private keys land here: the folder is root's alone, whoever created it.
        os.fchmod(folder, 0o700)
        for thumb, (cert, key) in sorted(found.items()):
            _write_certificate(folder, lib_dir, f"{thumb}.crt", cert)
            if key is not None:
                _write_certificate(folder, lib_dir, f"{thumb}.prv", key)
    log.info(
        "wrote %d certificate(s) to %s: %s",
        len(found),
        lib_dir,
        ", ".join(sorted(found)) or "none",
    )
    return sorted(found)


def _write_certificate(folder: int, lib_dir: str, name: str, content: bytes) -> None:
    """Write one certificate file (0600) in the open `folder`; one line naming it when the
    disk refuses (full, read-only, a directory in its place)."""
    try:
        write_at(folder, name, content, mode=0o600)
    except OSError as exc:
        shown = f"{lib_dir.rstrip('/')}/{name}"
        raise HostError(f"cannot write {shown}: {exc.strerror or exc}", path=shown) from None
