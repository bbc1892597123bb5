"""The on-disk format shared by the LogoDet-3K builder and the generator: Pascal VOC annotations and the categories.

Light on purpose (standard library only), so that the generator's worker processes start fast.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
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


def read_voc(path: str | Path) -> tuple[tuple[int, int] | None, list[tuple[str, Box]]]:
    """Parse a VOC annotation: `((width, height) or None, [(object name, (xmin, ymin, xmax, ymax)), ...])`.

    Raises:
        `xml.etree.ElementTree.ParseError`: not well-formed XML.
        `ValueError`/`TypeError`: an object without a name or a complete `bndbox`.
    """
    root = ElementTree.parse(path).getroot()
    size = root.find("size")
    image_size = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        image_size = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        name = (obj.findtext("name") or "").strip()
        if box is None or not name:
            raise ValueError(f"an object without name or bndbox in {Path(path).name}")
        objects.append((name, tuple(float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax"))))
    return image_size, objects


def write_voc(
    path: str | Path, folder: str, filename: str, size: tuple[int, int], objects: Iterable[tuple[str, Box]]
) -> None:
    """Write a Pascal VOC annotation (UTF-8) for an image of `size` (`width, height`) and its `(name, box)` objects."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = folder
    ElementTree.SubElement(root, "filename").text = filename
    size_element = ElementTree.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3)):
        ElementTree.SubElement(size_element, tag).text = str(value)
    for name, box in objects:
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = name
        bndbox = ElementTree.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ElementTree.SubElement(bndbox, tag).text = str(value)
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


__all__ = ["CATEGORIES", "UNKNOWN_LOGO", "read_voc", "write_voc"]
