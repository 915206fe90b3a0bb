"""Review of multi-config handlers: a named extension's name as a goal may spell it."""

from __future__ import annotations

from azprov.simulator import SimulatedFabric
from tests.extensions.conftest import (  # noqa: F401  (fixtures used below)
    Agent,
    agent,
    ext,
    ext_config,
    target,
)
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import NamedSpec, PluginSpec, SimulatedExtensions

RUN_COMMAND = "Microsoft.CPlat.Core.RunCommandHandlerLinux"


def test_a_named_extension_spelled_in_another_case_is_not_enabled_again(
    ext: SimulatedExtensions,  # noqa: F811
    agent: Agent,  # noqa: F811
    fabric: SimulatedFabric,
) -> None:
    ext.publish(RUN_COMMAND, "1.3.2", extension_zip(RUN_COMMAND, "1.3.2", style="runcommand"))
    ext.plugins = [PluginSpec(RUN_COMMAND, "1.3", named=[NamedSpec("First", 1)])]
    assert agent.once() == 0
    ext.plugins[0].named = [NamedSpec("first", 1)]  # the same extension, as Azure names go
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    enables = [o for o in agent.ops(RUN_COMMAND) if o["op"] == "enable"]
    assert len(enables) == 1
