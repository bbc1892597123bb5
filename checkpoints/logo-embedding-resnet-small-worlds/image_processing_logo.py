"""Image processor of the logo embedding model: the one eval transform used by inference, evaluation and the Space."""

import io
import os
import re
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import PILImageResampling, load_image

from .configuration_logo import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, LogoEmbeddingConfig


class InvalidImageError(ValueError):
    """An input that is not a readable image (not an image file, truncated, corrupt, or too large to decode)."""


# 16- and 32-bit single-channel modes: PIL's convert("RGB") clips them to 255 (a white image) instead of scaling.
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


#: File name endings read as SVG (`.svgz` is gzip-compressed SVG) whatever their content looks like.
SVG_SUFFIXES = (".svg", ".svgz")
#: Longest side of an SVG rendered by [`open_image`] when no size is asked for: twice the 224 px of the paper's
#: processor, so that a resize to any processor of this project only ever shrinks it.
SVG_RENDER_SIZE = 512
#: Larger SVG documents (after gunzip) are refused: a logo is a few kB to a few MB.
MAX_SVG_BYTES = 32 * 2**20
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
# Embedded raster images an SVG may carry; any other reference (a file path, a URL, a nested SVG) is dropped, so that
# an uploaded SVG cannot make the renderer read files of the machine it runs on.
_ALLOWED_HREF = re.compile(r"^\s*(#|data:image/(png|jpeg|jpg|gif|webp)[;,])", re.IGNORECASE)
_SVG_START = re.compile(rb"<svg[\s>/]")
_LENGTH = re.compile(r"^\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*(px|pt|pc|mm|cm|in)?\s*$")
_PIXELS_PER_UNIT = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}


def is_svg(data: bytes) -> bool:
    """Whether `data` is an SVG document (or gzip-compressed SVG): it starts, after an optional byte-order mark and
    white space, with `<svg`, or with an XML declaration, comment or doctype followed by an `<svg` element."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = zlib.decompressobj(wbits=31).decompress(data[:65536], 65536)
        except zlib.error:
            return False
    head = data[:65536].removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<svg"):
        return True
    return head.startswith((b"<?xml", b"<!--", b"<!DOCTYPE", b"<!doctype")) and bool(_SVG_START.search(head))


def render_svg(data: bytes | str, size: int = SVG_RENDER_SIZE, *, name: str = "The SVG") -> Image.Image:
    """Render an SVG document (text or bytes, optionally gzip-compressed) with resvg: an RGB image of the SVG's own
    aspect ratio whose longest side is `size` pixels, drawn on white (the background logos are designed for).

    References to files or URLs (`<image href="...">`, `<use href="other.svg#...">`) are dropped: only embedded PNG,
    JPEG, GIF or WebP data and references inside the document are drawn. Text is drawn with the system's fonts.

    Raises:
        [`InvalidImageError`]: not well-formed XML, not an `<svg>` document, too large, or nothing resvg can render.
        `ImportError`: `resvg-py` or `lxml` is missing (both are dependencies of this package; a model loaded as
            remote code without it needs `pip install resvg-py lxml`).
    """
    try:
        import resvg_py
        from lxml import etree
    except ImportError as error:
        raise ImportError(f"Reading SVG logos needs resvg-py and lxml: pip install resvg-py lxml ({error}).") from None

    def invalid(reason: str) -> InvalidImageError:
        return InvalidImageError(f"{name} is not a readable SVG image ({reason}).")

    if isinstance(data, str):
        data = data.encode("utf-8")
    if data[:2] == b"\x1f\x8b":
        try:
            inflater = zlib.decompressobj(wbits=31)
            data = inflater.decompress(data, MAX_SVG_BYTES + 1)
        except zlib.error as error:
            raise invalid(f"a broken gzip stream: {error}") from None
    if len(data) > MAX_SVG_BYTES:
        raise invalid(f"more than {MAX_SVG_BYTES // 2**20} MB of SVG")
    data = data.removeprefix(b"\xef\xbb\xbf").lstrip()  # white space before `<?xml` is common and harmless
    # Internal entities only (Illustrator exports use them for namespaces); libxml2 caps entity expansion.
    parser = etree.XMLParser(
        resolve_entities="internal", no_network=True, load_dtd=False, remove_comments=True, remove_pis=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise invalid(f"XMLSyntaxError: {error}") from None
    if root is None or etree.QName(root).localname != "svg":
        raise invalid("its root element is not <svg>")
    for element in root.iter():
        for attribute in ("href", _XLINK_HREF):
            href = element.get(attribute)
            if href is not None and not _ALLOWED_HREF.match(href):
                del element.attrib[attribute]
    text = etree.tostring(root, encoding="unicode")
    aspect = _svg_aspect(root)
    # dpi: resvg-py's default of 0 makes sizes in mm, cm or in invalid; system fonts only where there is text (slow).
    options = {"svg_string": text, "background": "#ffffff", "dpi": 96.0, "skip_system_fonts": "<text" not in text}
    try:
        if aspect is None:  # e.g. sizes in percent: render by width, then again by height if it came out tall
            png = resvg_py.svg_to_bytes(width=size, **options)
            with Image.open(io.BytesIO(bytes(png))) as probe:
                if probe.height > probe.width:
                    png = resvg_py.svg_to_bytes(height=size, **options)
        else:
            png = resvg_py.svg_to_bytes(**({"width": size} if aspect >= 1 else {"height": size}), **options)
    except (ValueError, OSError) as error:
        raise invalid(f"resvg: {error}") from None
    image = Image.open(io.BytesIO(bytes(png)))
    image.load()
    return to_rgb(image)


def _svg_aspect(root) -> float | None:
    """Width / height of an SVG's canvas from its `width`/`height` (absolute units) or its `viewBox`; `None` when
    neither says (sizes in percent or em and no viewBox)."""

    def length(value: str | None) -> float | None:
        match = _LENGTH.match(value or "")
        return float(match[1]) * _PIXELS_PER_UNIT[match[2]] if match and float(match[1]) > 0 else None

    width, height = length(root.get("width")), length(root.get("height"))
    if width and height:
        return width / height
    try:
        box = [float(v) for v in (root.get("viewBox") or "").replace(",", " ").split()]
    except ValueError:
        return None
    return box[2] / box[3] if len(box) == 4 and box[2] > 0 and box[3] > 0 else None


def open_image(source: str | os.PathLike | bytes, *, svg_size: int = SVG_RENDER_SIZE) -> Image.Image:
    """Open and fully decode an image file, its bytes, or an http(s) URL.

    SVG logos (a `.svg`/`.svgz` file, or data that [`is_svg`]) are rendered with resvg on white, the longest side
    `svg_size` pixels ([`render_svg`]); every other format is decoded by PIL.

    Raises:
        `FileNotFoundError`: the path does not exist.
        [`InvalidImageError`]: the data is not an image PIL can decode or an SVG resvg can render, is truncated, or is
            a decompression bomb.
    """
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return load_image(source)
    in_memory = isinstance(source, (bytes, bytearray))
    name = "The given bytes" if in_memory else repr(os.fspath(source))
    if in_memory and is_svg(bytes(source)):
        return render_svg(bytes(source), svg_size, name=name)
    if not in_memory and Path(source).suffix.lower() in SVG_SUFFIXES:
        return render_svg(Path(source).read_bytes(), svg_size, name=name)
    try:
        image = Image.open(io.BytesIO(source) if in_memory else source)
        image.load()  # decode now, so a truncated file fails here rather than deep inside preprocessing
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, UnidentifiedImageError) and not in_memory and _file_is_svg(source):
            return render_svg(Path(source).read_bytes(), svg_size, name=name)  # an SVG under another file name
        raise InvalidImageError(
            f"{name} is not a readable image ({type(error).__name__}: {error}). Use a JPEG, PNG, WebP, GIF, BMP, "
            "TIFF or SVG file."
        ) from error
    return image


def _file_is_svg(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as file:
            return is_svg(file.read(65536))
    except OSError:
        return False


def to_rgb(image: Image.Image) -> Image.Image:
    """Return an upright 8-bit RGB copy of a PIL image, whatever its mode.

    Applies the EXIF orientation (phone photos), scales 16-bit and 32-bit grayscale to 8 bits, composites
    transparency (RGBA, LA, palette with a transparent colour) onto white, the background logos are designed for,
    and converts palette, CMYK, grayscale and 1-bit images.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            scale = 255.0 if array.max(initial=0.0) <= 1.0 else 1.0
        elif image.mode.startswith("I;16") or array.max(initial=0) > 255:
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        image = Image.fromarray(np.clip(np.rint(array * scale), 0, 255).astype(np.uint8))
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class LogoImageProcessor(TorchvisionBackend):
    r"""
    Prepares images for [`LogoEmbeddingModel`]: any PIL mode or EXIF orientation to upright RGB, resize, optional
    centre crop, rescale to [0, 1] and ImageNet normalisation, with torchvision's functional ops (the same ops the
    training augmentations use).

    The default resize squashes the whole image to `size` (224 x 224), as the paper does: a logo crop is usually
    wide, and a centre crop of a short side would cut letters off a wordmark. For photos, set
    `size={"shortest_edge": 256}, do_center_crop=True, crop_size=224` instead.

    Accepts PIL images, NumPy arrays and tensors (HWC or CHW), file paths (`str` or `pathlib.Path`), raw image bytes
    and http(s) URLs; SVG files and bytes are rendered on white at the processor's size (`svg_render_size`). A
    non-image input raises [`InvalidImageError`] with the file named.

    Example:

    ```python
    >>> from PIL import Image
    >>> from modeling_logo import LogoImageProcessor

    >>> processor = LogoImageProcessor(size={"height": 64, "width": 64})
    >>> processor(Image.new("RGBA", (120, 40)), return_tensors="pt").pixel_values.shape
    torch.Size([1, 3, 64, 64])
    ```
    """

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    @classmethod
    def from_model_config(cls, config: LogoEmbeddingConfig, **kwargs) -> "LogoImageProcessor":
        """The processor for a new model: images resized to the configuration's `image_size`, normalised with the
        ImageNet mean and standard deviation (the processor's own defaults; `kwargs` override any attribute)."""
        side = config.image_size
        defaults = {"size": {"height": side, "width": side}, "crop_size": {"height": side, "width": side}}
        return cls(**{**defaults, **kwargs})

    def fetch_images(self, images):
        """Open paths, bytes and URLs as PIL images (with a clear error for non-images); pass other inputs through."""
        if isinstance(images, (list, tuple)):
            return [self.fetch_images(image) for image in images]
        if isinstance(images, (str, Path, bytes, bytearray)):
            return open_image(images, svg_size=self.svg_render_size)
        return super().fetch_images(images)

    @property
    def svg_render_size(self) -> int:
        """The longest side SVG inputs are rendered at: the largest side this processor resizes or crops to."""
        targets = [self.size, self.crop_size if self.do_center_crop else None]
        sides = [
            getattr(target, key, None) or 0
            for target in targets
            if target is not None
            for key in ("height", "width", "shortest_edge", "longest_edge")
        ]
        return int(max(sides)) if any(sides) else SVG_RENDER_SIZE

    def process_image(self, image, *args, **kwargs):
        if isinstance(image, Image.Image):
            image = to_rgb(image)
        return super().process_image(image, *args, **kwargs)


__all__ = [
    "LogoImageProcessor",
    "InvalidImageError",
    "SVG_SUFFIXES",
    "is_svg",
    "open_image",
    "render_svg",
    "to_rgb",
]
