"""Optional runner for Azure VM extensions."""
