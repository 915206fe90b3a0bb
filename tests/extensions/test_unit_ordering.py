"""The extension runner starts after first-boot provisioning and after the image's own
first-boot package jobs (cloud-init's final stage), so a handler that installs packages
does not race them for the package manager's lock (WALinuxAgent #1938)."""

from __future__ import annotations

from collections import defaultdict

from tests.conftest import REPO

UNIT = REPO / "units" / "azprov-extensions.service"
# Dependencies that would pull a unit in or fail without it; ordering alone does neither.
PULLING = ("Wants", "Requires", "Requisite", "BindsTo", "PartOf", "Upholds")


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every word given for it, as systemd reads a unit: a key may be
    given on many lines and each adds to the list (an empty value would reset it)."""
    settings: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        words = value.split()
        if words:
            settings[section][key.strip()] += words
        else:
            settings[section][key.strip()] = []
    return settings


def test_the_runner_is_ordered_after_provisioning_and_cloud_inits_final_stage() -> None:
    unit = unit_settings(UNIT.read_text())["Unit"]
    assert {"azure-provisioning.service", "cloud-final.service"} <= set(unit["After"])
    assert "network-online.target" in unit["After"]


def test_cloud_final_is_only_an_ordering_so_an_image_without_cloud_init_is_fine() -> None:
    """After= a unit that does not exist is ignored; Wants= or Requires= it would pull
    cloud-init in, or fail the runner where it is not installed."""
    unit = unit_settings(UNIT.read_text())["Unit"]
    for key in PULLING:
        assert "cloud-final.service" not in unit.get(key, []), key
        assert "azure-provisioning.service" not in unit.get(key, []), key


def test_the_reader_keeps_every_line_of_a_key() -> None:
    settings = unit_settings("[Unit]\nAfter=a.service b.service\nAfter=c.service\n# After=d\n")
    assert settings["Unit"]["After"] == ["a.service", "b.service", "c.service"]
    assert unit_settings("[Unit]\nAfter=a.service\nAfter=\n")["Unit"]["After"] == []
