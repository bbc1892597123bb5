"""The on-disk format shared by the LogoDet-3K builder and the generator: Pascal VOC annotations and the categories.

Light on purpose (the standard library; lxml only to recover a damaged file), so that the generator's worker
processes start fast.
"""

from __future__ import annotations

import html.entities
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


#: LogoDet-3K's nine categories, spelled as its folders are.
CATEGORIES = (
    "Clothes",
    "Electronic",
    "Food",
    "Leisure",
    "Medical",
    "Necessities",
    "Others",
    "Sports",
    "Transportation",
)

#: The VOC object name of a logo of no brand of the data set (the generator's distractor marks): a localiser learns
#: to find it, a gallery must call it unknown, and the embedder never trains on it. No brand folder can be named so
#: without clashing, so the builder checks it before any brand name.
UNKNOWN_LOGO = "unknown-logo"

Box = tuple[float, float, float, float]

#: What [`parse_voc`] repairs in VOC files other tools write (annotation tools, exports, hand edits), by the name it
#: records in `VocAnnotation.repairs`. A file that is still unreadable after these is a `ParseError`.
REPAIR_KINDS = {
    "raw_ampersand": "an unescaped `&` (`Ben & Jerry's`) read as the character itself",
    "html_entity": "an HTML entity XML does not define (`&eacute;`) read as its character",
    "text_before_xml": "byte-order marks or white space before the XML declaration, removed",
    "not_utf8": "bytes that are not UTF-8, read as Windows-1252 (what Windows tools write)",
    "recovered_xml": "other damage (a stray `<`, a cut-off end) read by lxml's recovering parser",
    "missing_size": "no `<size>` (or a zero one): the image's own size is used instead",
}

# `&` that starts no character reference or XML entity (`&amp;`, `&#38;`, ...), or starts an HTML entity.
_AMPERSAND = re.compile(r"&(#[0-9]+;|#x[0-9A-Fa-f]+;|[A-Za-z][A-Za-z0-9]*;)?")
_XML_ENTITIES = ("amp", "lt", "gt", "quot", "apos")
_XML_DECLARATION = re.compile(r"^<\?xml[^>]*\?>")
_BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class VocAnnotation:
    """A parsed VOC file: the image size it states (`None` when missing), its `(name, box)` objects, and what had
    to be repaired to read it (names of [`REPAIR_KINDS`], empty for a well-formed, complete file)."""

    size: tuple[int, int] | None
    objects: list[tuple[str, Box]]
    repairs: tuple[str, ...] = ()


def parse_voc(path: str | Path) -> VocAnnotation:
    """Parse a VOC annotation as other tools write it: well-formed XML is read as it is; otherwise the damage
    listed in [`REPAIR_KINDS`] is repaired (and recorded) before giving up.

    Raises:
        `xml.etree.ElementTree.ParseError`: not readable as XML even by the recovering parser.
        `ValueError`/`TypeError`: an object without a name or a complete `bndbox`.
    """
    data = Path(path).read_bytes()
    try:
        root, repairs = ElementTree.fromstring(data), []
    except ElementTree.ParseError:
        root, repairs = _repaired_root(data, Path(path).name)
    size = root.find("size")
    image_size = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        image_size = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    if image_size is None or min(image_size) <= 0:
        image_size = None
        repairs.append("missing_size")
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        name = (obj.findtext("name") or "").strip()
        if box is None or not name:
            raise ValueError(f"an object without name or bndbox in {Path(path).name}")
        objects.append((name, tuple(float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax"))))
    return VocAnnotation(image_size, objects, tuple(repairs))


def read_voc(path: str | Path) -> tuple[tuple[int, int] | None, list[tuple[str, Box]]]:
    """Parse a VOC annotation: `((width, height) or None, [(object name, (xmin, ymin, xmax, ymax)), ...])`, with
    the repairs of [`parse_voc`] (which also says what was repaired).

    Raises:
        `xml.etree.ElementTree.ParseError`: not readable as XML.
        `ValueError`/`TypeError`: an object without a name or a complete `bndbox`.
    """
    annotation = parse_voc(path)
    return annotation.size, annotation.objects


def _repaired_root(data: bytes, name: str):
    """The root element of a VOC file that is not well-formed, and the repairs it took (see `REPAIR_KINDS`)."""
    repairs = []
    start = data.lstrip()
    while start.startswith(_BYTE_ORDER_MARKS[0]):  # doubled marks come from editors that add one on every save
        start = start[3:].lstrip()
    if start.startswith(_BYTE_ORDER_MARKS[1:]):  # UTF-16
        text = data.decode("utf-16", errors="replace").lstrip("\ufeff \t\r\n")
    else:
        if start != data.removeprefix(_BYTE_ORDER_MARKS[0]):
            repairs.append("text_before_xml")
        try:
            text = start.decode("utf-8")
        except UnicodeDecodeError:
            text = start.decode("cp1252", errors="replace")
            repairs.append("not_utf8")
    text = _XML_DECLARATION.sub("", text, count=1)  # it may name an encoding the text is no longer in

    def fix_ampersand(match: re.Match) -> str:
        reference = match.group(1)
        if reference is not None and (reference.startswith("#") or reference[:-1] in _XML_ENTITIES):
            return match.group(0)
        if reference is not None and reference[:-1] in html.entities.name2codepoint:
            repairs.append("html_entity")
            return f"&#{html.entities.name2codepoint[reference[:-1]]};"
        repairs.append("raw_ampersand")
        return "&amp;" + (reference or "")

    text = _AMPERSAND.sub(fix_ampersand, text)
    try:
        return ElementTree.fromstring(text), sorted(set(repairs))
    except ElementTree.ParseError as error:
        strict_error = error
    try:
        from lxml import etree
    except ImportError:  # lxml is a dependency; without it, only the repairs above are made
        raise strict_error from None
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, remove_comments=True)
    root = etree.fromstring(text.encode("utf-8"), parser)
    if root is None or root.tag != "annotation":
        raise ElementTree.ParseError(f"{name} is not a VOC annotation, even read leniently ({strict_error})")
    return root, sorted({*repairs, "recovered_xml"})


def write_voc(
    path: str | Path,
    folder: str,
    filename: str,
    size: tuple[int, int],
    objects: Iterable[tuple[str, Box]],
    world: Mapping[str, str] | None = None,
) -> None:
    """Write a Pascal VOC annotation (UTF-8) for an image of `size` (`width, height`) and its `(name, box)` objects.

    `world`, if given, becomes a `<world>` element after `<size>` with one child per item (the generator's photo
    family and style); readers of VOC ignore it.
    """
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = folder
    ElementTree.SubElement(root, "filename").text = filename
    size_element = ElementTree.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3)):
        ElementTree.SubElement(size_element, tag).text = str(value)
    if world is not None:
        world_element = ElementTree.SubElement(root, "world")
        for tag, value in world.items():
            ElementTree.SubElement(world_element, tag).text = value
    for name, box in objects:
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = name
        bndbox = ElementTree.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ElementTree.SubElement(bndbox, tag).text = str(value)
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


__all__ = ["CATEGORIES", "REPAIR_KINDS", "UNKNOWN_LOGO", "VocAnnotation", "parse_voc", "read_voc", "write_voc"]
