"""A simulated Azure fabric (WireServer, HostGAPlugin, IMDS) on loopback, for tests and demos."""

from azprov.simulator.documents import PublicKey, VmSpec
from azprov.simulator.fabric import Answer, HealthReport, Request, Service, SimulatedFabric

__all__ = [
    "Answer",
    "HealthReport",
    "PublicKey",
    "Request",
    "Service",
    "SimulatedFabric",
    "VmSpec",
]
