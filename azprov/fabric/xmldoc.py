"""Parsing fabric XML safely: no DTDs, no entities, no external references, and a
bounded tree.

A document with a DTD is refused before anything is expanded, so an entity
bomb costs microseconds, not memory. A parsed element costs a hundred bytes or
more (more under namespaces), so a reply of nothing but tags would cost a
hundred times its size: the tree's depth and element count are capped while
parsing, and a document past either is refused at that point.
"""

from __future__ import annotations

from typing import Optional
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

from azprov.errors import HostileDocument, MalformedDocument, NotWellFormed

# Far above any fabric document (a goal state nests 6 deep in some 30 elements; a
# version manifest listing every release of an extension has a few thousand) and
# far below what would cost more than a few megabytes.
MAX_DEPTH = 64
MAX_ELEMENTS = 20_000


class _TreeTooLarge(Exception):
    pass


class _BoundedTreeBuilder(TreeBuilder):
    """The standard tree builder, stopping the parse once the tree passes a cap."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.elements = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_DEPTH:
            raise _TreeTooLarge(f"elements nested more than {MAX_DEPTH} deep")
        if self.elements > MAX_ELEMENTS:
            raise _TreeTooLarge(f"more than {MAX_ELEMENTS} elements")
        return super().start(tag, attrs)

    def end(self, tag: str) -> Element:
        self.depth -= 1
        return super().end(tag)


def parse_xml(content: bytes, document: str) -> Element:
    """Parse `content` or raise a MalformedDocument naming the document and the problem."""
    try:
        parser = DefusedXMLParser(
            target=_BoundedTreeBuilder(),
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        parser.feed(content)
        root: Element = parser.close()
    except _TreeTooLarge as exc:
        raise MalformedDocument(f"{document}: refused, {exc}", document=document) from None
    except defusedxml.DTDForbidden:
        raise HostileDocument(
            f"{document}: refused, it carries a DTD", document=document
        ) from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise HostileDocument(
            f"{document}: refused, it declares entities", document=document
        ) from None
    except ParseError as exc:
        raise NotWellFormed(
            f"{document}: not well-formed XML ({exc})", document=document
        ) from None
    except (LookupError, ValueError) as exc:  # an encoding expat cannot read, e.g. x-foo, utf-7
        raise MalformedDocument(
            f"{document}: unreadable XML encoding ({exc})", document=document
        ) from None
    return root


def local_name(tag: str) -> str:
    """`{namespace}Name` -> `Name`."""
    return tag.rsplit("}", 1)[-1]


def child(element: Element, *path: str) -> Optional[Element]:
    """Follow child names, ignoring namespaces; None where one is missing."""
    node: Optional[Element] = element
    for name in path:
        if node is None:
            return None
        node = next((c for c in node if local_name(c.tag) == name), None)
    return node


def children(element: Optional[Element], name: str) -> list[Element]:
    if element is None:
        return []
    return [c for c in element if local_name(c.tag) == name]


def text(element: Element, *path: str) -> Optional[str]:
    """The stripped text at `path`, or None when the element is missing or empty."""
    node = child(element, *path)
    if node is None or node.text is None:
        return None
    value = node.text.strip()
    return value or None


def escape(value: str) -> str:
    """Escape element text, dropping characters XML 1.0 cannot carry at all."""
    cleaned = "".join(
        ch
        for ch in value
        if ch in "\t\n\r"
        or ("\x20" <= ch <= "\ud7ff")
        or ("\ue000" <= ch <= "\ufffd")
        or ch > "\uffff"
    )
    return (
        cleaned.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
        # A parser turns a raw CR (and CR LF) into LF; a reference keeps it as sent.
        .replace("\r", "&#13;")
    )
