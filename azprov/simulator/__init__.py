"""A simulated Azure fabric (WireServer, HostGAPlugin, IMDS) on loopback, for tests and demos."""

from azprov.simulator.documents import PublicKey, VmSpec
from azprov.simulator.fabric import HealthReport, SimulatedFabric
from azprov.simulator.service import Answer, Request, Service

__all__ = [
    "Answer",
    "HealthReport",
    "PublicKey",
    "Request",
    "Service",
    "SimulatedFabric",
    "VmSpec",
]
