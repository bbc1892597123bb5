"""Logos in whole photos: the localiser at run time, the found logos, and the crops the embedder names.

The pipeline of every peer (Logodetect, PP-ShiTu, open-set logo detectors): a class-agnostic localiser finds every
logo box; each box is cropped as the embedder was trained (with a margin of context) and embedded; the gallery names
its brand, or `None` under the threshold ([`~modeling_logo.LogoGallery.detect`]).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .embedder import quiet_weight_loading
from .image_processing_localizer import LogoLocalizerImageProcessor
from .image_processing_logo import open_image, to_rgb
from .modeling_localizer import LogoLocalizerModel


#: Context kept around a logo box when it is cropped for the embedder, as a fraction of the box's width and height
#: on each side: the crops the embedder trains on (`dataset_scripts.logodet3k`) and the crops of found logos agree.
CROP_MARGIN = 0.1

#: Where this repository ships its trained localiser; the Space and `logo-detect` use it when nothing else is given.
DEFAULT_LOCALIZER = "checkpoints/logo-localizer-resnet-small"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class LogoDetection:
    """A logo found in a photo.

    Attributes:
        box: `(xmin, ymin, xmax, ymax)` in the photo's pixels.
        brand: the registered brand it shows, or `None`: a logo of a brand the gallery does not hold.
        score: cosine similarity of the logo's embedding to the best brand's prototype (the brand is accepted when it
            is at least the gallery's threshold).
        box_score: the localiser's confidence that the box holds a logo (1.0 for a box given by hand).
        best_brand: the closest registered brand even when it was not accepted (`brand` is `None`).
    """

    box: Box
    brand: str | None
    score: float
    box_score: float
    best_brand: str | None = None


def crop_origin(box: Sequence[float], margin: float = CROP_MARGIN) -> tuple[int, int]:
    """`(left, top)` of [`crop_box`]'s crop in the image: where the crop's pixel (0, 0) was."""
    xmin, ymin, xmax, ymax = (float(value) for value in box)
    return max(0, round(xmin - (xmax - xmin) * margin)), max(0, round(ymin - (ymax - ymin) * margin))


def crop_box(image: Image.Image, box: Sequence[float], margin: float = CROP_MARGIN) -> Image.Image:
    """The box plus `margin` of its size on each side, clipped to the image (the embedder's view of a logo)."""
    xmin, ymin, xmax, ymax = (float(value) for value in box)
    margin_x, margin_y = (xmax - xmin) * margin, (ymax - ymin) * margin
    left, top = crop_origin(box, margin)
    right, bottom = min(image.width, round(xmax + margin_x)), min(image.height, round(ymax + margin_y))
    return image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def as_photo(image) -> Image.Image:
    """An upright RGB PIL image from a path, bytes, array or PIL image (a clear error for non-images)."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        image = open_image(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    elif isinstance(image, torch.Tensor):
        raise TypeError("Give photos as PIL images, arrays, paths or bytes; tensors are ambiguous (normalised?).")
    return to_rgb(image)


KNOWN_COLOUR, UNKNOWN_COLOUR = (22, 163, 74), (220, 38, 38)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def detection_label(detection: LogoDetection) -> str:
    """A found logo's caption on the annotated photo: `"Acme 0.83"`, or `"unknown 0.41"` under the threshold."""
    return f"{detection.brand or 'unknown'} {detection.score:.2f}"


def draw_detections(photo: Image.Image, detections: Sequence[LogoDetection], max_side: int = 1280) -> Image.Image:
    """A copy of the photo (at most `max_side` pixels) with every detection boxed and captioned: green for
    a registered brand, red for an unknown logo; the best is drawn last, on top."""
    scale = min(1.0, max_side / max(photo.size))
    image = to_rgb(photo).copy()
    if scale < 1.0:
        image = image.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))))
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width, font, pad = max(2, round(side / 300)), _font(max(11, round(side / 40))), max(2, round(side / 300))
    for detection in reversed(detections):
        colour = KNOWN_COLOUR if detection.brand is not None else UNKNOWN_COLOUR
        xmin, ymin, xmax, ymax = (value * scale for value in detection.box)
        draw.rectangle((xmin, ymin, max(xmax, xmin + 1), max(ymax, ymin + 1)), outline=colour, width=width)
        text = detection_label(detection)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
        x = min(max(0.0, xmin), max(0.0, image.width - label_w))
        y = ymin - label_h if ymin - label_h >= 0 else min(ymin, max(0.0, image.height - label_h))  # above, else in
        draw.rectangle((x, y, x + label_w, y + label_h), fill=colour)
        draw.text((x + pad - left, y + pad - top), text, fill="white", font=font)
    return image


class LogoLocalizer:
    r"""
    Finds logo boxes in photos with a [`LogoLocalizerModel`]: letterbox, run the network, threshold, NMS, and map
    boxes back to each photo's pixels.

    Args:
        model ([`LogoLocalizerModel`]): the localiser (put in eval mode).
        image_processor ([`LogoLocalizerImageProcessor`], *optional*): defaults to the one for `model.config`.
        batch_size (`int`, *optional*, defaults to 8): photos per forward pass.
        runtime (`"auto"`, `"onnxruntime"` or `"torch"`, *optional*, defaults to `"auto"`): what runs the network.
            `"auto"` uses ONNX Runtime (exported once per set of weights, checked against PyTorch, cached on disk;
            `modeling_logo.onnx.cached_localizer`) when the `onnx` extra is installed and the model is on the CPU.
            Thresholding and NMS are torchvision's in both cases.

    Example:

    ```python
    >>> localizer = LogoLocalizer.from_pretrained("checkpoints/logo-localizer-resnet-small")
    >>> localizer("shelf.jpg")[0]
    {'boxes': tensor([[ 12.0, 40.5, 96.2, 80.0], ...]), 'scores': tensor([0.81, ...])}
    ```
    """

    def __init__(
        self,
        model: LogoLocalizerModel,
        image_processor: LogoLocalizerImageProcessor | None = None,
        *,
        batch_size: int = 8,
        runtime: str = "auto",
    ):
        if runtime not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"runtime must be auto, torch or onnxruntime, got {runtime!r}.")
        self.model = model.eval()
        self.image_processor = image_processor or LogoLocalizerImageProcessor.from_model_config(model.config)
        self.batch_size = batch_size
        self.runtime = runtime
        self._forward = None

    def _network(self):
        """`pixel_values -> {"scores", "pred_boxes"}` on the chosen runtime (the ONNX export is made on first use)."""
        if self._forward is None:
            self._forward = self._torch_forward
            if self.runtime != "torch":
                from . import onnx

                usable = onnx.is_available() and self.model.device.type == "cpu"
                if self.runtime == "onnxruntime" and not usable:
                    raise ValueError('runtime="onnxruntime" needs the onnx extra and a model on the CPU.')
                if usable:
                    self._forward = onnx.cached_localizer(self.model)
        return self._forward

    @torch.inference_mode()
    def _torch_forward(self, pixel_values: torch.Tensor):
        return self.model(pixel_values.to(self.model.device))

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | os.PathLike, **kwargs) -> LogoLocalizer:
        """A saved localiser (directory or Hub id) with its image processor."""
        with quiet_weight_loading():
            model = LogoLocalizerModel.from_pretrained(model_name_or_path)
        try:
            processor = LogoLocalizerImageProcessor.from_pretrained(model_name_or_path)
        except OSError:
            processor = None
        return cls(model, processor, **kwargs)

    @property
    def config(self):
        return self.model.config

    def __call__(
        self, photos, threshold: float | None = None, *, max_detections: int | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Logo boxes of each photo, best first: `[{"boxes": (n, 4), "scores": (n,)}, ...]` in the photo's pixels.

        Args:
            photos: one photo or a list (PIL images, arrays, paths or bytes).
            threshold (`float`, *optional*): box score needed; defaults to the calibrated `config.score_threshold`.
        """
        photos = [photos] if not isinstance(photos, (list, tuple)) else list(photos)
        threshold = self.config.score_threshold if threshold is None else float(threshold)
        results = []
        for start in range(0, len(photos), self.batch_size):
            inputs = self.image_processor([as_photo(photo) for photo in photos[start : start + self.batch_size]])
            outputs = self._network()(inputs["pixel_values"])
            results += self.image_processor.post_process_object_detection(
                outputs,
                threshold=threshold,
                nms_threshold=self.config.nms_threshold,
                max_detections=max_detections or self.config.max_detections,
                scales=inputs["scales"],
                original_sizes=inputs["original_sizes"],
            )
        return results


__all__ = [
    "CROP_MARGIN",
    "DEFAULT_LOCALIZER",
    "LogoDetection",
    "LogoLocalizer",
    "as_photo",
    "crop_box",
    "crop_origin",
    "draw_detections",
]
