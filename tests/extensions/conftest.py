"""Fixtures for the extension runner: the simulated fabric's extension side and a target root."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from azprov.config import load_config
from azprov.extensions.runner import Runner, run_extensions
from azprov.fabric.client import open_fabric
from azprov.host.leases import wireserver_endpoint
from azprov.host.root import TargetRoot
from azprov.simulator import SimulatedFabric
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

LIB = "var/lib/waagent"


@pytest.fixture
def ext(fabric: SimulatedFabric, tmp_path: Path) -> Iterator[SimulatedExtensions]:
    """The fabric's extension side: ExtensionsConfig, storage, HostGAPlugin routes."""
    simulated = SimulatedExtensions(fabric, tmp_path / "simulator").start()
    yield simulated
    simulated.stop()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def ext_config(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    """azprov.conf for the fabric, with short budgets so failure paths stay fast."""
    path = tmp_path / "azprov-ext.conf"
    path.write_text(
        fabric.config_text(total_timeout=15)
        + "[extensions]\nchannel_timeout = 2\npoll_interval = 0.2\n",
        encoding="utf-8",
    )
    return path


class Agent:
    """Runs rounds of the extension runner in-process against one root and config."""

    def __init__(self, root: Path, config: Path) -> None:
        self.root = root
        self.config = config

    def once(self, extra_config: str = "") -> int:
        if extra_config:
            self.config.write_text(self.config.read_text() + extra_config, encoding="utf-8")
        return run_extensions(
            TargetRoot(self.root), load_config(self.root, self.config), once=True
        )

    @contextlib.contextmanager
    def runner(self) -> Iterator[Runner]:
        """One runner kept across rounds, as the long-running loop keeps it."""
        config = load_config(self.root, self.config)
        with open_fabric(
            config, wireserver_endpoint(config.wireserver.endpoint, self.root)
        ) as clients:
            yield Runner(TargetRoot(self.root), config, clients)

    def lib(self, *parts: str) -> Path:
        return self.root.joinpath(LIB, *parts)

    def ops(self, name: str) -> list[dict[str, Any]]:
        """What the test extension recorded it was asked to do, in order."""
        log = self.lib(f"{name}.ops.log")
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def op_names(self, name: str) -> list[str]:
        return [f"{o['op']}@{o['version']}" for o in self.ops(name)]


@pytest.fixture
def agent(target: Path, ext_config: Path) -> Agent:
    return Agent(target, ext_config)


def handler_entries(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = document["aggregateStatus"]["handlerAggregateStatus"]
    return {e["handlerName"]: e for e in entries}


def enable_test_extension(ext: SimulatedExtensions, agent: Agent, name: str) -> None:
    """Publish the test extension 1.0.0, ask for "1.0" at seqNo 1, and run a round that enables it."""
    ext.publish_test_extension(name, "1.0.0")
    ext.plugins = [PluginSpec(name, "1.0", seq_no=1)]
    assert agent.once() == 0
    assert [o["op"] for o in agent.ops(name)][-1] == "enable"
