"""azprov: a small, exact provisioning agent for Azure Linux VMs."""

__version__ = "0.1.0"
AGENT_NAME = f"azprov/{__version__}"
