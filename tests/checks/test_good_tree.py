"""The reference tree passes; each check id is the fact sheet's."""

from __future__ import annotations

import re
from pathlib import Path

from azprov.checks import REGISTRY, check_tree
from azprov.checks.model import CHECK_IDS
from azprov.host.root import TargetRoot
from tests.checks.trees import good_tree

SHEET = Path("/work/shared/reference/image-checks.md")


def test_good_tree_has_no_errors_or_warnings(tmp_path: Path) -> None:
    outcome = check_tree(TargetRoot(good_tree(tmp_path / "root")))
    assert [f for f in outcome.findings if f.severity != "info"] == []
    assert outcome.exit_code == 0 and outcome.ran == 40


def test_every_sheet_check_is_registered() -> None:
    assert sorted(REGISTRY) == sorted(CHECK_IDS) and len(CHECK_IDS) == 40
    if SHEET.exists():  # the fact sheet, where this checkout sits next to it
        ids = re.findall(r"^\| ([a-z0-9-]+) \| (?:error|warn|info) \|", SHEET.read_text(), re.M)
        assert tuple(ids) == CHECK_IDS
