"""Image processor of the logo localiser: letterbox a photo, and turn raw boxes into detections."""

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.ops import clip_boxes_to_image, nms
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .configuration_localizer import LogoLocalizerConfig
from .configuration_logo import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from .image_processing_logo import open_image, to_rgb


class LogoLocalizerImageProcessor(BaseImageProcessor):
    r"""
    Prepares photos for [`LogoLocalizerModel`] and turns its raw output into boxes in the photo's own pixels.

    A photo (any PIL mode, EXIF orientation, path or bytes) is scaled so that its long side is `size` pixels, keeping
    its aspect ratio (up or down), placed at the top-left of a canvas, normalised, and padded with zeros (the mean
    colour); the scale is returned so that boxes map back. The canvas of [`~LogoLocalizerImageProcessor.preprocess`]
    is the photo's own letterbox padded to a multiple of `pad_size_divisor` on each side (a batch: to its largest),
    so that a 4:3 photo at `size=320` runs at 320 x 256 and a 16:9 one at 320 x 192, instead of the 320 x 320 square
    of [`~LogoLocalizerImageProcessor.letterbox`], which training stacks. The network is fully convolutional: on the
    validation brands' generated scenes the shipped localiser finds logos as well either way (AP50 0.8402 against
    0.8403 on the square; benchmarks/README.md, "Whole photos") in less time.

    Args:
        size (`int`, *optional*, defaults to 384): the long side, and the side of the square (the model's
            `config.image_size`).
        image_mean, image_std (`list[float]`, *optional*): normalisation, ImageNet's by default.
        pad_size_divisor (`int` or `None`, *optional*, defaults to 32): the multiple each side of `preprocess`'s canvas
            is padded to (at most `size`); `None` pads every photo to the `size` x `size` square.

    Example:

    ```python
    >>> from PIL import Image
    >>> from modeling_logo import LogoLocalizerImageProcessor

    >>> processor = LogoLocalizerImageProcessor(size=128)
    >>> inputs = processor(Image.new("RGB", (640, 480)), return_tensors="pt")
    >>> inputs.pixel_values.shape, [round(scale, 4) for scale in inputs.scales.tolist()]
    (torch.Size([1, 3, 96, 128]), [0.2])
    >>> LogoLocalizerImageProcessor(size=128, pad_size_divisor=None)(Image.new("RGB", (640, 480))).pixel_values.shape
    torch.Size([1, 3, 128, 128])

    ```
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 384,
        image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        pad_size_divisor: int | None = 32,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean = [float(value) for value in image_mean]
        self.image_std = [float(value) for value in image_std]
        if pad_size_divisor is not None and int(pad_size_divisor) < 1:
            raise ValueError(f"pad_size_divisor must be a positive number of pixels or None, got {pad_size_divisor}.")
        self.pad_size_divisor = None if pad_size_divisor is None else int(pad_size_divisor)

    @classmethod
    def from_model_config(cls, config: LogoLocalizerConfig, **kwargs) -> "LogoLocalizerImageProcessor":
        """The processor for a localiser configuration (its `image_size`)."""
        return cls(size=config.image_size, **kwargs)

    def letterbox(self, image: Image.Image) -> tuple[torch.Tensor, float, tuple[int, int]]:
        """One photo as a normalised `(3, size, size)` tensor (the square training stacks), the scale from photo to
        tensor pixels, and the upright photo's `(height, width)`."""
        resized, scale, original_size = self._resized(image)
        return _on_canvas([resized], (self.size, self.size))[0], scale, original_size

    def _resized(self, image: Image.Image) -> tuple[torch.Tensor, float, tuple[int, int]]:
        """The photo scaled to a long side of `size` and normalised, `(3, h, w)`; the scale; its `(height, width)`."""
        photo = to_rgb(image)
        scale = self.size / max(photo.size)
        width, height = (max(1, min(self.size, round(side * scale))) for side in photo.size)
        resized = photo if (width, height) == photo.size else photo.resize((width, height), Image.Resampling.BILINEAR)
        # (pixel / 255 - mean) / std, channel by channel over (3, h, w) memory: a tenth of the time of numpy's
        # broadcasting over (h, w, 3), whose innermost loop is 3 long
        mean, std = torch.tensor(self.image_mean).view(3, 1, 1), torch.tensor(self.image_std).view(3, 1, 1)
        pixels = torch.from_numpy(np.array(resized)).permute(2, 0, 1)
        normalised = pixels.to(torch.float32, memory_format=torch.contiguous_format).mul_(1 / (255 * std))
        return normalised.sub_(mean / std), scale, (photo.height, photo.width)

    def canvas_size(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """The `(height, width)` canvas that holds letterboxed photos of these `(height, width)` sizes: each side
        padded to a multiple of `pad_size_divisor` (at most `size`), or the square without one."""
        if self.pad_size_divisor is None:
            return self.size, self.size
        divisor = self.pad_size_divisor
        return tuple(min(self.size, divisor * math.ceil(max(side) / divisor)) for side in zip(*sizes))

    def preprocess(
        self,
        images,
        boxes: Sequence[Sequence[Sequence[float]]] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Letterbox photos (PIL images, paths or bytes; one or a list).

        Args:
            boxes (*optional*): per photo, its logo boxes `(xmin, ymin, xmax, ymax)` in the photo's pixels; they
                come back as `labels` (`[{"boxes": tensor}]`, in the tensor's pixels), the model's training targets.

        Returns:
            `BatchFeature` with `pixel_values` `(batch, 3, height, width)` (the canvas of [`canvas_size`]), `scales`
            `(batch,)` and `original_sizes` `(batch, 2)` as `(height, width)`, plus `labels` when `boxes` were given.
        """
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        if boxes is not None and single:
            boxes = [boxes]
        opened = [open_image(image) if isinstance(image, (str, os.PathLike, bytes)) else image for image in images]
        resized, scales, sizes = zip(*(self._resized(image) for image in opened))
        data = {
            "pixel_values": _on_canvas(resized, self.canvas_size([pixels.shape[1:] for pixels in resized])),
            "scales": torch.tensor(scales),
            "original_sizes": torch.tensor(sizes),
        }
        if boxes is not None:
            data["labels"] = [
                {"boxes": torch.as_tensor(np.asarray(photo_boxes, np.float32).reshape(-1, 4)) * scale}
                for photo_boxes, scale in zip(boxes, scales)
            ]
        return BatchFeature(data, tensor_type=None)

    def post_process_object_detection(
        self,
        outputs,
        threshold: float = 0.3,
        nms_threshold: float = 0.5,
        max_detections: int = 20,
        scales: torch.Tensor | Sequence[float] | None = None,
        original_sizes: torch.Tensor | Sequence[Sequence[int]] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Boxes of each photo: score above `threshold`, non-maximum suppressed, best first, in the photo's pixels.

        Args:
            outputs: a [`LogoLocalizerOutput`] (or anything with `scores` and `pred_boxes`, e.g. ONNX Runtime's).
            scales, original_sizes: the processor's outputs for the same photos; without them boxes stay in the
                tensor's pixels.

        Returns:
            One dict per photo: `scores` `(n,)` and `boxes` `(n, 4)` as `(xmin, ymin, xmax, ymax)` floats.
        """
        all_scores = torch.as_tensor(outputs["scores"]).float()
        all_boxes = torch.as_tensor(outputs["pred_boxes"]).float()
        results = []
        for index, (scores, boxes) in enumerate(zip(all_scores, all_boxes)):
            keep = scores > threshold
            scores, boxes = scores[keep], boxes[keep]
            scale = 1.0 if scales is None else float(scales[index])
            size = (self.size, self.size) if original_sizes is None else tuple(int(v) for v in original_sizes[index])
            boxes = clip_boxes_to_image(boxes / scale, size)
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            scores, boxes = scores[valid], boxes[valid]
            keep = nms(boxes, scores, nms_threshold)[:max_detections]  # sorted by score
            results.append({"scores": scores[keep], "boxes": boxes[keep]})
        return results


def _on_canvas(images: Sequence[torch.Tensor], canvas_size: tuple[int, int]) -> torch.Tensor:
    """`(3, h, w)` images at the top-left of zero (mean-colour) canvases of `canvas_size`, as one `(n, 3, H, W)`."""
    canvases = torch.zeros(len(images), 3, *canvas_size)
    for canvas, image in zip(canvases, images):
        canvas[:, : image.shape[1], : image.shape[2]] = image
    return canvases


__all__ = ["LogoLocalizerImageProcessor"]
