"""Emulated-boot tests: a real Debian 12 image under qemu against the simulated fabric."""
