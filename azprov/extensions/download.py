"""Getting a handler: its version from the manifests, its package from storage, whole.

The version manifest is fetched from the plugin's location, then its failover
and additional locations; the package from each of its URIs in turn, each on
every channel (`Artifacts`). A package is checked as soon as it has arrived —
its end record, its central directory, every member read to its end against its
CRC (`packages.verify_zip`) — before anything is unpacked, so a download cut
short or damaged on the way is that channel's failure and the next one is asked;
when none gives it whole, the handler's download failed and is tried again next
round, never reported as a package that is invalid for good.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO

from azprov.errors import (
    FabricError,
    InvalidInput,
    ManifestUnavailable,
    PackageUnavailable,
    ReplyTooLarge,
    TransientFabricError,
    TransientManifestUnavailable,
    TransientPackageUnavailable,
)
from azprov.extensions.artifacts import Artifacts
from azprov.extensions.goal import Plugin
from azprov.extensions.manifest import PackageVersion, choose_version, parse_version_manifest
from azprov.extensions.packages import unpack_zip, verify_zip

MANIFEST_MAX_BYTES = 1024 * 1024
UNPACKED_PER_PACKED = 8  # an unpacked package may be this many times its size cap


def resolve_version(artifacts: Artifacts, plugin: Plugin) -> PackageVersion:
    """The highest manifest version matching the requested prefix (location → failover → …)."""
    failures = []
    transient = False
    for url in plugin.manifest_urls:
        try:
            content = artifacts.fetch(
                f"manifest of {plugin.name}",
                url,
                max_bytes=MANIFEST_MAX_BYTES,
                verify_from_artifacts_blob=plugin.fast_track,
            )
            available = parse_version_manifest(content, plugin.name)
        except (FabricError, InvalidInput) as exc:
            failures.append(str(exc))
            transient = transient or isinstance(exc, TransientFabricError)
            continue
        chosen = choose_version(plugin.version, available)
        if chosen is None:
            listed = ", ".join(v.version for v in available) or "none"
            raise InvalidInput(
                f"{plugin.name} version",
                plugin.version,
                f"not in the manifest (it lists {listed})",
            )
        return chosen
    kind = TransientManifestUnavailable if transient else ManifestUnavailable
    raise kind(
        f"no usable manifest for {plugin.name}: {' | '.join(failures) or 'no location given'}",
        handler=plugin.name,
    )


def install_package(
    artifacts: Artifacts,
    name: str,
    package: PackageVersion,
    target: Path,
    max_bytes: int,
    *,
    verify_from_artifacts_blob: bool = False,
) -> None:
    """Download `package` (trying each URI, each on every channel, until one gives a whole
    zip) and unpack it as the folder `target`; `verify_from_artifacts_blob` for a Fast
    Track goal's handler, as for its manifest."""
    failures = []
    transient = False
    max_unpacked = max_bytes * UNPACKED_PER_PACKED

    def whole_zip(download: IO[bytes]) -> None:
        verify_zip(download, name, max_unpacked=max_unpacked)

    with tempfile.TemporaryFile(dir=target.parent) as download:
        for uri in package.uris:
            try:
                artifacts.fetch(
                    f"package {name} {package.version}",
                    uri,
                    max_bytes=max_bytes,
                    sink=download,
                    check=whole_zip,
                    verify_from_artifacts_blob=verify_from_artifacts_blob,
                )
            except ReplyTooLarge:
                raise
            except FabricError as exc:
                failures.append(str(exc))
                transient = transient or isinstance(exc, TransientFabricError)
                continue
            download.seek(0)
            unpack_zip(download, target, max_unpacked=max_unpacked, name=name)
            return
    kind = TransientPackageUnavailable if transient else PackageUnavailable
    raise kind(
        f"cannot download {name} {package.version}: {' | '.join(failures)}",
        handler=name,
    )
