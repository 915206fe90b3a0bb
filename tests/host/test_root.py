"""The target root: what counts as the running system, and no way out of an offline one."""

from __future__ import annotations

import pytest

from azprov.errors import HostError
from azprov.host.root import TargetRoot


def test_a_root_that_is_slash_in_disguise_is_live(tmp_path):
    assert TargetRoot("//").live and TargetRoot("/.").live
    link = tmp_path / "slash"
    link.symlink_to("/")
    assert TargetRoot(link).live


def test_symlink_out_of_an_offline_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/sudoers.d").symlink_to(outside)
    with pytest.raises(HostError, match="leads outside it"):
        TargetRoot(root) / "/etc/sudoers.d/90-azprov-x"
    # the link itself may be named (deprovision removes links, never their targets)
    assert TargetRoot(root) / "/etc/sudoers.d" == root / "etc/sudoers.d"
