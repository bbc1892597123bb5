"""Image processor of the logo embedding model: the one eval transform used by inference, evaluation and the Space."""

import io
import os
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


def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Open and fully decode an image file, its bytes, or an http(s) URL.

    Raises:
        `FileNotFoundError`: the path does not exist.
        [`InvalidImageError`]: the data is not an image PIL can decode, is truncated, or is a decompression bomb.
    """
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return load_image(source)
    name = "The given bytes" if isinstance(source, (bytes, bytearray)) else repr(os.fspath(source))
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        image.load()  # decode now, so a truncated file fails here rather than deep inside preprocessing
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidImageError(
            f"{name} is not a readable image ({type(error).__name__}: {error}). Use a JPEG, PNG, WebP, GIF, BMP or "
            "TIFF file."
        ) from error
    return image


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
    and http(s) URLs; a non-image input raises [`InvalidImageError`] with the file named.

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
        """The processor matching a model configuration: its `image_size`, `image_mean` and `image_std`."""
        side = config.image_size
        defaults = {"size": {"height": side, "width": side}, "crop_size": {"height": side, "width": side}}
        return cls(**{**defaults, "image_mean": config.image_mean, "image_std": config.image_std, **kwargs})

    def fetch_images(self, images):
        """Open paths, bytes and URLs as PIL images (with a clear error for non-images); pass other inputs through."""
        if isinstance(images, (list, tuple)):
            return [self.fetch_images(image) for image in images]
        if isinstance(images, (str, Path, bytes, bytearray)):
            return open_image(images)
        return super().fetch_images(images)

    def process_image(self, image, *args, **kwargs):
        if isinstance(image, Image.Image):
            image = to_rgb(image)
        return super().process_image(image, *args, **kwargs)


__all__ = ["LogoImageProcessor", "InvalidImageError", "open_image", "to_rgb"]
