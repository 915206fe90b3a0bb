"""The door into the target root lives in `azprov.confined` (a base module, so the
config reader uses it too); this name stays for the modules that import it here."""

from azprov.confined import MAX_ENTRIES, Confined, InTree, Links, kind_of

__all__ = ["MAX_ENTRIES", "Confined", "InTree", "Links", "kind_of"]
