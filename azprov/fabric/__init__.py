"""Talking to Azure: reads and reports only, never changes the machine."""
