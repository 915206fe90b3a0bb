"""ovf-env.xml parsed directly: the fields provisioning uses, secrets kept secret."""

from __future__ import annotations

import pytest

from azprov.errors import HostileDocument, InvalidInput, NotWellFormed
from azprov.fabric.ovf import parse_ovf_env
from azprov.simulator.documents import EXAMPLE_SSH_KEY, ovf_env_xml


def test_every_field_is_read() -> None:
    ovf = parse_ovf_env(
        ovf_env_xml(
            hostname="vm1",
            username="alice",
            password="Pa55-word",
            custom_data=b"#!/bin/sh\necho hi\n",
            disable_ssh_password_auth=False,
            public_keys=(("/home/alice/.ssh/authorized_keys", EXAMPLE_SSH_KEY),),
        )
    )
    assert (ovf.hostname, ovf.username) == ("vm1", "alice")
    assert ovf.password is not None and ovf.password.reveal() == "Pa55-word"
    assert "Pa55-word" not in repr(ovf)
    assert ovf.custom_data == b"#!/bin/sh\necho hi\n"
    assert ovf.disable_ssh_password_auth is False
    (key,) = ovf.public_keys
    assert (key.path, key.value) == ("/home/alice/.ssh/authorized_keys", EXAMPLE_SSH_KEY)


def test_custom_data_that_is_not_base64_names_the_field() -> None:
    document = ovf_env_xml(custom_data=b"x").replace(b"eA==", b"!!not base64!!")
    with pytest.raises(InvalidInput, match=r"ovf-env\.CustomData"):
        parse_ovf_env(document)


def test_a_password_flag_that_is_not_a_boolean_names_the_field() -> None:
    document = ovf_env_xml().replace(b">true<", b">maybe<")
    with pytest.raises(InvalidInput, match="DisableSshPasswordAuthentication='maybe'"):
        parse_ovf_env(document)


def test_cut_short_and_hostile_documents_are_typed() -> None:
    with pytest.raises(NotWellFormed):
        parse_ovf_env(ovf_env_xml()[:40])
    with pytest.raises(HostileDocument):
        parse_ovf_env(b'<!DOCTYPE x [<!ENTITY a "b">]><Environment>&a;</Environment>')
