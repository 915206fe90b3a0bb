"""What every fuzz target shares: the property itself, and hostile values to build documents from.

The property, for every parser of outside input: it returns a value, or raises
one of azprov's own errors (`AzprovError`) whose message is one bounded line —
never any other exception, within the test's deadline, and (for the decoders
that could explode) within a memory bound proportional to the input.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import tracemalloc
from typing import Any, Callable, Optional, TypeVar

from hypothesis import strategies as st

from azprov.errors import AzprovError
from azprov.fabric.http import Deadline, FabricHttp, Reply, RetryPolicy

T = TypeVar("T")

# A message is a log line and the start of a report line: an error that quotes a
# megabyte of hostile input floods the journal even though the report is cut.
MESSAGE_MAX_CHARS = 2048

PROFILE = os.environ.get("AZPROV_FUZZ_PROFILE", "ci")


def examples(ci: int) -> int:
    """Examples per run of a target: `ci` in CI; in the long run, a few times more per
    round, and rounds repeat until the target's share of the time is spent."""
    return ci if PROFILE == "ci" else ci * 3


def typed_outcome(
    parse: Callable[..., T],
    *args: Any,
    signals: tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> Optional[T]:
    """`parse(*args, **kwargs)`, or None when it raised an AzprovError (or one of the
    parser's documented `signals`, e.g. the HTTP layer's Retry). Anything else
    propagates and fails the property."""
    try:
        return parse(*args, **kwargs)
    except AzprovError as exc:
        message = str(exc)
        assert "\n" not in message, f"{type(exc).__name__}: a message of more than one line"
        assert len(message) <= MESSAGE_MAX_CHARS, (
            f"{type(exc).__name__}: a message of {len(message)} characters: {message[:200]}..."
        )
        return None
    except signals:
        return None


def peak_allocation(call: Callable[[], object]) -> int:
    """Bytes allocated at the peak of `call()` (raising or not), above what was live before."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        # What the call raises is the other property's business.
        with contextlib.suppress(Exception):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


class CannedHttp(FabricHttp):
    """The real HTTP layer, whose every request is answered with one canned reply."""

    def __init__(self, status: int, content: bytes) -> None:
        super().__init__(RetryPolicy(max_attempts=1))
        self.reply = (status, content)

    def _send(self, request: Any, deadline: Deadline) -> Reply:
        status, content = self.reply
        return Reply(status, {}, content, request.url)


# -- hostile values ---------------------------------------------------------------------------

_CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from(
    ["\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\u200b", "\u202e"]
)
_NON_ASCII = st.characters(min_codepoint=0x80, exclude_categories=("Cs",))

# Values that have broken parsers before, or that sit on the edge of a rule.
EDGE_VALUES = st.sampled_from(
    [
        "",
        " ",
        "\t\r\n",
        "0",
        "-1",
        "+1",
        "1e9999",
        "NaN",
        "Infinity",
        "0x10",
        "²",  # str.isdigit() says yes, int() says no
        "٣",  # Arabic-Indic three: isdigit() and int() both say yes
        "１",  # fullwidth one
        "9" * 5000,
        "true",
        "TRUE",
        "yes",
        "null",
        "None",
        "..",
        "../../etc/shadow",
        "/",
        "a/../../b",
        "%00",
        "\x00",
        "https://",
        "https://x/?sig=SECRET",
        "file:///etc/shadow",
        "&amp;",
        "&#0;",
        "&#x110000;",
        "&undefined;",
        "]]>",
        "<![CDATA[x]]>",
        "<!-- -->",
        "<?pi x?>",
        '"',
        "'",
        "\\",
        "{}",
        "[]",
        "{",
        "[" * 64,
        "é" * 300,
        "\ud7ff\ue000\ufffd\U0010ffff",
    ]
)


@functools.cache  # one strategy object each: Hypothesis validates it once
def hostile_text(max_size: int = 64) -> st.SearchStrategy[str]:
    """Text a hostile sender might put in a field: edge values, control characters,
    non-ASCII, and short runs of any of them (for long ones, see `huge_text`)."""
    small = st.one_of(
        EDGE_VALUES,
        st.text(max_size=max_size),
        st.text(_CONTROL, max_size=max_size),
        st.text(_NON_ASCII, max_size=max_size),
        st.from_regex(r"[A-Za-z0-9._-]{0,40}", fullmatch=True),
    )
    return st.one_of(small, st.builds(said, small, st.integers(2, 64)))


# No one field larger than this: the fabric's replies are capped at 4 MiB anyway.
FIELD_MAX_CHARS = 512 * 1024


def said(part: str, times: int) -> str:
    """`part` repeated `times` times, or as often as fits in FIELD_MAX_CHARS."""
    return part * min(times, FIELD_MAX_CHARS // max(len(part), 1))


@functools.cache
def counts(most: int) -> st.SearchStrategy[int]:
    """How many times: small, or exactly huge (Hypothesis alone prefers small numbers)."""
    return st.one_of(
        st.integers(1, 64), st.sampled_from([1_000, 5_000, most // 2, most]), st.integers(1, most)
    )


def repeated(fragment: st.SearchStrategy[str], most: int = 50_000) -> st.SearchStrategy[str]:
    """`fragment` said many times: a cheap way to reach megabyte documents."""
    return st.builds(said, fragment, counts(most))


@functools.cache
def huge_text() -> st.SearchStrategy[str]:
    """One hostile value said up to FIELD_MAX_CHARS long: a document gets at most one."""
    return repeated(hostile_text(16), 100_000)


@functools.cache
def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary JSON: every type where a parser may expect one, nested."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text(32),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(hostile_text(16), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@functools.cache
def deep_json(most: int = 200_000) -> st.SearchStrategy[str]:
    """JSON (or nearly) nested deeper than any recursive decoder can go."""
    return st.builds(
        lambda opener, depth, closed: opener * depth + (_closer(opener) * depth if closed else ""),
        st.sampled_from(["[", '{"a":', '[{"a":']),
        counts(most),
        st.booleans(),
    )


def _closer(opener: str) -> str:
    return {"[": "]", '{"a":': "1}", '[{"a":': "1}]"}[opener]


# -- XML ---------------------------------------------------------------------------------------


def xml_escape(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def xml_field(huge: bool = False) -> st.SearchStrategy[str]:
    return _XML_FIELD[huge]


@st.composite
def _xml_field(draw: st.DrawFn, huge: bool = False) -> str:
    """A hostile value as it may reach element text: escaped, raw, in CDATA, or as
    markup; `huge`: long, deeply nested or many elements."""
    value = draw(huge_text() if huge else hostile_text())
    how = draw(st.sampled_from(["escaped", "escaped", "raw", "cdata", "deep", "many"]))
    if how == "escaped":
        return xml_escape(value)
    if how == "raw":
        return value
    if how == "cdata":
        return f"<![CDATA[{value}]]>"
    most = 50_000 if huge else 16
    if how == "deep":
        depth = draw(counts(most))
        return "<a>" * depth + xml_escape(value[:64]) + "</a>" * depth
    return f'<x y="{xml_escape(value[:20])}"/>' * draw(counts(most))


_XML_FIELD = {False: _xml_field(), True: _xml_field(huge=True)}


@st.composite
def xml_fields(draw: st.DrawFn, names: list[str]) -> dict[str, str]:
    """A hostile value for each of `names`; at most one of them huge."""
    huge = draw(st.sampled_from([None, None, *names]))
    return {name: draw(xml_field(huge=name == huge)) for name in names}


@functools.cache
def xml_prolog() -> st.SearchStrategy[str]:
    """What may precede the root: nothing, a declaration, a DTD, entities (all refused)."""
    return st.sampled_from(
        [
            "",
            '<?xml version="1.0" encoding="utf-8"?>\n',
            '<?xml version="1.0" encoding="utf-16"?>\n',
            '<?xml version="1.0" encoding="x-unknown"?>\n',
            '<?xml version="1.0" encoding="utf-7"?>\n',
            '<?xml version="1.0" encoding="rot13"?>\n',
            '<?xml version="1.0" encoding="hex"?>\n',
            '<?xml version="1.0" encoding="idna"?>\n',
            '<?xml version="1.1"?>\n',
            "\ufeff",
            '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>\n',
            '<!DOCTYPE x SYSTEM "file:///etc/shadow">\n',
            '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/shadow">]>\n',
            "<!-- a comment -->\n",
            "<?xml-stylesheet href='x'?>\n",
        ]
    )


@functools.cache
def xml_encodings() -> st.SearchStrategy[str]:
    """How the finished document is turned into bytes (a declaration may say otherwise)."""
    return st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1", "utf-32"])


def encode(document: str, encoding: str) -> bytes:
    return document.encode(
        encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace"
    )
