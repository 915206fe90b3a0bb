"""Pool documents for tests: an ovf-env.xml with exactly the PlatformSettings a test
names, and IMDS's instance document with the `extended` part it names."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

from azprov.fabric.ovf import OvfEnv, parse_ovf_env
from azprov.fabric.xmldoc import escape
from azprov.simulator import VmSpec
from azprov.simulator.documents import imds_instance, ovf_env_xml

KINDS = ("None", "Running", "Savable", "PreprovisionedOSDisk")
NIL = object()  # an element the platform sends as <… xsi:nil="true" />
ABSENT = object()  # no element at all
_SETTINGS = re.compile(rb"<ns1:PlatformSettings>.*</ns1:PlatformSettings>", re.DOTALL)


def _element(name: str, value: object) -> str:
    if value is ABSENT:
        return ""
    if value is NIL:
        return f'<ns1:{name} xsi:nil="true" />'
    return f"<ns1:{name}>{escape(str(value))}</ns1:{name}>"


def pool_ovf(flag: object = ABSENT, kind: object = ABSENT) -> bytes:
    """An ovf-env.xml whose PlatformSettings hold exactly the two pool elements given
    (text, NIL or ABSENT), beside the settings every document has."""
    settings_xml = (
        "<ns1:PlatformSettings>"
        "<ns1:KmsServerHostname>kms.core.windows.net</ns1:KmsServerHostname>"
        "<ns1:ProvisionGuestAgent>false</ns1:ProvisionGuestAgent>"
        '<ns1:GuestAgentPackageName xsi:nil="true" />'
        f"{_element('PreprovisionedVm', flag)}{_element('PreprovisionedVMType', kind)}"
        "</ns1:PlatformSettings>"
    )
    document, count = _SETTINGS.subn(lambda _: settings_xml.encode(), ovf_env_xml())
    assert count == 1, "the simulator's ovf-env.xml has no PlatformSettings to replace"
    return document


def pool_imds(extended: object = ABSENT) -> bytes:
    """IMDS's instance document; `extended` as given (ABSENT: asked without extended=true)."""
    document: dict[str, Any] = imds_instance(VmSpec())
    if extended is not ABSENT:
        document["extended"] = extended
    return json.dumps(document).encode()


def ovf(flag: object = ABSENT, kind: object = ABSENT) -> OvfEnv:
    return parse_ovf_env(pool_ovf(flag, kind))


# Any JSON value (numbers within what IMDS's parser reads at all), and `extended`
# objects built from it down to ppsType: what a property test puts under "extended".
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(KINDS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EXTENDED = st.one_of(
    JSON_VALUES,
    st.builds(lambda compute: {"compute": compute}, JSON_VALUES),
    st.builds(lambda pps: {"compute": {"ppsType": pps}}, JSON_VALUES),
)
