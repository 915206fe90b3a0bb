"""The emulated-boot tests run only where qemu, mmdebstrap and root are available
(and in CI, where their absence is a failure)."""

from __future__ import annotations

import pytest

from tests.e2e.tools import DEB_TOOLS, E2E_TOOLS, require


@pytest.fixture(scope="session", autouse=True)
def e2e_prerequisites() -> None:
    require(E2E_TOOLS + DEB_TOOLS, root=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
