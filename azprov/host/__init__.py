"""Changing the machine, always through the target root; never touches the network."""
