"""Import to refuse, in this process, every socket call aimed at the real Azure
endpoints (168.63.129.16, 169.254.169.254): the tests' own guard
(tests/guard/sitecustomize.py), loaded by path so the bench shares it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_GUARD = Path(__file__).resolve().parent.parent / "tests" / "guard" / "sitecustomize.py"
_spec = importlib.util.spec_from_file_location("azprov_real_azure_guard", _GUARD)
assert _spec is not None and _spec.loader is not None
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))
