"""System tools a few checks need (zstd, lz4, lsinitramfs, lsinitrd, rpm), found on the PATH.

A missing tool is not an error of the image: the check then says `unknown:`.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_tool(name: str) -> Optional[str]:
    """The tool's absolute path on the caller's PATH (the usual dirs when PATH is unset)."""
    return shutil.which(name, path=os.environ.get("PATH", _DEFAULT_PATH))
