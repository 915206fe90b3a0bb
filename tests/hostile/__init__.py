"""Hostile target trees for the `--root` commands, run as real processes under strace."""
