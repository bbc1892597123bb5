"""Image transforms for training and evaluation, attached to a dataset with `with_transform`.

The eval transform *is* the model's [`LogoImageProcessor`]; the training transform adds the paper's augmentations
(RandomResizedCrop, perspective, horizontal flip, ±15° rotation, grayscale, colour jitter) and ends with the
processor's own size, mean and std, so there is no second copy of the preprocessing to drift.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from modeling_logo import LogoImageProcessor, to_rgb
from modeling_logo.detection import CROP_MARGIN, crop_box


def processor_output_size(image_processor: LogoImageProcessor) -> tuple[int, int]:
    """(height, width) of the processor's output images."""
    if image_processor.do_center_crop:
        return image_processor.crop_size.height, image_processor.crop_size.width
    size = image_processor.size
    if size.height and size.width:
        return size.height, size.width
    raise ValueError(f"Cannot derive a fixed training size from the processor's size {dict(size)}; set height/width.")


# A row of photometric parameters: the grayscale flag, the four colour-jitter factors, and the order in which the
# jitter applies them (a permutation of 0-3: brightness, contrast, saturation, hue, as torchvision's ColorJitter).
_GRAYSCALE, _BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(5)
_JITTER_ORDER = slice(5, 9)
PHOTOMETRIC_PARAMETERS = 9

# The uniform draws of one image, taken from torch's generator in one call (a call costs more than the arithmetic):
# 10 RandomResizedCrop attempts of (area, log aspect ratio), the crop's position, whether to distort the perspective
# and the 8 corner offsets, the flip, the angle, grayscale, the 4 jitter factors and 4 keys whose ranks order them.
_CROP_ATTEMPTS = 10
_DRAWS_PER_IMAGE = 2 * _CROP_ATTEMPTS + 2 + 1 + 8 + 1 + 1 + 1 + 4 + 4
# Images per photometric step: 8 float images of 96 px are 0.9 MB.
_PHOTOMETRIC_CHUNK = 8


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch's CPU operations on one thread meanwhile (DataLoader workers already do). The photometric stage's
    operations are too small for threads to pay: with two, they took 2-10x as long (and as much CPU time spinning),
    worse the busier the machine."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class AugmentationDraw:
    """The random choices of one image's training augmentation ([`TrainAugmentation.draw`]).

    Attributes:
        crop_box: `(left, top, right, bottom)` of the RandomResizedCrop, in the input image's pixels.
        perspective_endpoints: where the output's four corners (top-left, top-right, bottom-right, bottom-left) take
            the image's corners, or `None` for no perspective distortion (torchvision's `endpoints`).
        horizontal_flip: whether the image is flipped.
        angle: the rotation, in degrees counter-clockwise.
        photometric: the `(PHOTOMETRIC_PARAMETERS,)` row of [`TrainAugmentation.apply_photometric`]: grayscale
            (0 or 1), the brightness, contrast, saturation and hue factors, and the order of the four adjustments.
    """

    crop_box: tuple[int, int, int, int]
    perspective_endpoints: list[tuple[int, int]] | None
    horizontal_flip: bool
    angle: float
    photometric: torch.Tensor


def _blend(images: torch.Tensor, other: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """`ratio * images + (1 - ratio) * other` clamped to [0, 1] (torchvision's `_blend`), one ratio per image."""
    return torch.lerp(other, images, ratios.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return images.mul(factors.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


# torchvision's luma weights (F.rgb_to_grayscale).
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    # The mean of the gray image, as the weighted sum of the channels' means (one pass instead of building it).
    means = images.mean(dim=(-2, -1)) @ images.new_tensor(_GRAY_WEIGHTS)
    # _blend as a multiply-add: torch.lerp towards one value per image runs 3-4x slower than towards an image.
    factors = factors.view(-1, 1, 1, 1)
    return images.mul(factors).add_(means.view(-1, 1, 1, 1) * (1.0 - factors)).clamp_(0.0, 1.0)


def _adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return _blend(images, F.rgb_to_grayscale(images), factors)


def _adjust_hue(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by its `shift` (in turns) in HSV, as `F.adjust_hue` does (within 1e-5), with one shift
    per image and a third of torchvision's operations (it builds six candidate images per pixel). Only float
    arithmetic: on the CPU, torch's comparisons, `where` and `remainder` cost 4-12x as much as a subtraction."""
    red, green, blue = images.unbind(1)
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    # The hue in sixths of a turn, from the sector of the largest channel, red first, then green (torchvision's
    # _rgb_to_hsv). The sectors are 0/1 masks, from the sign of a non-negative difference, and select exactly.
    not_red = (value - red).sign_()
    blue_largest = (value - green).sign_().mul_(not_red)
    green_largest = not_red - blue_largest
    hue = (green - blue).mul_(not_red.neg_().add_(1.0))
    hue.addcmul_(torch.add(blue - red, chroma, alpha=2.0), green_largest)
    hue.addcmul_(torch.add(red - green, chroma, alpha=4.0), blue_largest)
    hue = hue.div_(chroma.clamp(min=torch.finfo(images.dtype).tiny)).add_(6.0 * shifts.view(-1, 1, 1))
    # Into [0, 6), up to rounding at the ends (-1e-7 or 6), where the ramps below give the same colour.
    hue = hue.sub_(torch.div(hue, 6.0).floor_().mul_(6.0))
    # Back to RGB: channel = value - chroma * ramp(hue), each channel's ramp a piecewise-linear function of the hue
    # that is 0 where the channel is the largest, 1 where it is the smallest (torchvision's _hsv_to_rgb, unrolled).
    ramps = torch.empty_like(images)
    torch.minimum(hue - 1.0, 5.0 - hue, out=ramps[:, 0])
    torch.maximum(1.0 - hue, hue - 3.0, out=ramps[:, 1])
    torch.maximum(3.0 - hue, hue - 5.0, out=ramps[:, 2])
    return torch.addcmul(value.unsqueeze(1), ramps.clamp_(0.0, 1.0), chroma.unsqueeze(1), value=-1.0)


_JITTER_ADJUSTMENTS = (  # indexed by ColorJitter's numbering of its four adjustments
    (_BRIGHTNESS, "brightness", _adjust_brightness),
    (_CONTRAST, "contrast", _adjust_contrast),
    (_SATURATION, "saturation", _adjust_saturation),
    (_HUE, "hue", _adjust_hue),
)


def jitter_boxes(boxes: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Boxes as a localiser might predict them around `boxes` (`(n, 4)` xyxy): each side's length scaled by
    `e^U(-amount, amount)` (a little too large or too small) and the centre moved by `U(-amount/2, amount/2)` of the
    length (shifted). `amount` 0.1 / 0.2 / 0.3 leave a mean IoU of about 0.88 / 0.78 / 0.68 with the true box; 0
    returns the boxes."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return _jitter_boxes(boxes, amount, rng.random(boxes[:, 2:].shape), rng.random(boxes[:, 2:].shape))


def _jitter_boxes(boxes: np.ndarray, amount: float, scale_draws: np.ndarray, shift_draws: np.ndarray) -> np.ndarray:
    """[`jitter_boxes`] from uniform [0, 1) draws, `(n, 2)` each: one formula for evaluation and training."""
    centres, sizes = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    scales = np.exp(-amount + 2 * amount * scale_draws).astype(np.float32)
    shifts = (-amount / 2 + amount * shift_draws).astype(np.float32)
    centres, sizes = centres + shifts * sizes, sizes * scales
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


# Context the builder keeps around a box for box-jittered training: a box grown by e^0.3 and moved by 0.15 of its
# size, plus the embedder's own CROP_MARGIN, still lies inside (0.5 of the box on each side).
BOX_JITTER_CONTEXT = 0.5


class TrainAugmentation:
    """The paper's training augmentation, ending in the processor's size and normalisation, in two stages.

    0. With `box_jitter`, first the view a localiser's box would give: the image is a crop with context around its
       box (the builder's `crops` with `crop_margin=BOX_JITTER_CONTEXT` and its `crop_bbox`), the box is jittered
       as [`jitter_boxes`] does (a little too large, too small, shifted) and cropped with the embedder's
       `CROP_MARGIN`, as [`~modeling_logo.detection.crop_box`] crops a predicted box at inference.
    1. [`~TrainAugmentation.apply_geometric`], per image: RandomResizedCrop straight to the output size (so every
       later step works on small images), perspective, horizontal flip and rotation, on the PIL image; and the draws
       of the photometric stage.
    2. [`~TrainAugmentation.apply_photometric`], on a batch: grayscale, colour jitter (brightness, contrast,
       saturation and hue, in each image's drawn order) and normalisation, as float tensor operations with one set
       of factors per image.

    The transforms and their parameters are torchvision's (`v2.RandomResizedCrop`, `RandomPerspective`,
    `RandomHorizontalFlip`, `RandomRotation`, `RandomGrayscale` and `ColorJitter` check the arguments and hold the
    ranges), and so are the distributions of the draws and the pixel operations: the geometric stage gives exactly
    the pixels of torchvision's PIL kernels for the same draws, the photometric stage those of its float-tensor colour
    adjustments within 1e-5. What differs is the cost: all the random numbers of an image come from one call to
    torch's default generator instead of about forty calls through `v2`'s dispatch, and the colour adjustments run on
    a batch of small float images instead of on one 8-bit PIL image at a time (so they no longer round to 8 bits
    between adjustments). Seeding the generator before `apply_geometric` fixes an image's augmentation, whatever
    batch it is finished in. Calling the object on a PIL image runs both stages on it alone; [`AugmentedDataset`]
    finishes whole batches (`benchmarks/data_pipeline.py` measures both).

    Args:
        output_size: `(height, width)` of the output images.
        image_mean, image_std: the normalisation, per channel.
        scale: RandomResizedCrop's range of crop areas, as fractions of the image.
        perspective: RandomPerspective's distortion scale, applied to half of the images (0: never).
        horizontal_flip: probability of a horizontal flip.
        rotation_degrees: rotations are drawn uniformly from ±this.
        grayscale: probability of turning an image gray.
        color_jitter: ColorJitter's `(brightness, contrast, saturation, hue)`.
        box_jitter: the `amount` of [`jitter_boxes`] for step 0 (0: none; the image is then the view itself).
    """

    def __init__(
        self,
        output_size: tuple[int, int],
        image_mean: Sequence[float],
        image_std: Sequence[float],
        *,
        scale: tuple[float, float] = (0.5, 1.0),
        perspective: float = 0.3,
        horizontal_flip: float = 0.5,
        rotation_degrees: float = 15.0,
        grayscale: float = 0.1,
        color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.05),
        box_jitter: float = 0.0,
    ):
        if not 0 <= box_jitter <= 0.5:
            raise ValueError(f"box_jitter must be in [0, 0.5] (0.3 leaves a mean IoU of 0.68), got {box_jitter}.")
        self.box_jitter = float(box_jitter)
        self.output_size = tuple(output_size)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.resized_crop = v2.RandomResizedCrop(self.output_size, scale=scale, antialias=True)
        self.perspective = v2.RandomPerspective(distortion_scale=perspective, p=0.5 if perspective else 0.0)
        self.horizontal_flip = v2.RandomHorizontalFlip(horizontal_flip)
        self.rotation = v2.RandomRotation(rotation_degrees)
        self.grayscale = v2.RandomGrayscale(grayscale)
        self.color_jitter = v2.ColorJitter(*color_jitter)

    def _crop_box(self, height: int, width: int, draws: Sequence[float]) -> tuple[int, int, int, int]:
        """`(left, top, right, bottom)` of a RandomResizedCrop, drawn as `v2.RandomResizedCrop.make_params` draws it."""
        (low, high), (log_low, log_high) = self.resized_crop.scale, [math.log(r) for r in self.resized_crop.ratio]
        for attempt in range(_CROP_ATTEMPTS):
            target_area = height * width * (low + (high - low) * draws[2 * attempt])
            aspect_ratio = math.exp(log_low + (log_high - log_low) * draws[2 * attempt + 1])
            crop_width = int(round(math.sqrt(target_area * aspect_ratio)))
            crop_height = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                top = int(draws[2 * _CROP_ATTEMPTS] * (height - crop_height + 1))
                left = int(draws[2 * _CROP_ATTEMPTS + 1] * (width - crop_width + 1))
                return left, top, left + crop_width, top + crop_height
        # No attempt fitted: the largest central crop within the aspect-ratio range, as torchvision falls back.
        ratio_low, ratio_high = min(self.resized_crop.ratio), max(self.resized_crop.ratio)
        crop_width, crop_height = width, height
        if width / height < ratio_low:
            crop_height = int(round(width / ratio_low))
        elif width / height > ratio_high:
            crop_width = int(round(height * ratio_high))
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
        return left, top, left + crop_width, top + crop_height

    def _perspective_endpoints(self, width: int, height: int, draws: Sequence[float]) -> list[tuple[int, int]]:
        """Where the image's corners go (top-left, top-right, bottom-right, bottom-left), each moved inwards by up to
        `distortion_scale` of half the side, as `v2.RandomPerspective.make_params` moves them."""
        bound_width = int(self.perspective.distortion_scale * (width // 2)) + 1
        bound_height = int(self.perspective.distortion_scale * (height // 2)) + 1
        inward_x = [int(draw * bound_width) for draw in draws[0::2]]
        inward_y = [int(draw * bound_height) for draw in draws[1::2]]
        return [
            (inward_x[0], inward_y[0]),
            (width - 1 - inward_x[1], inward_y[1]),
            (width - 1 - inward_x[2], height - 1 - inward_y[2]),
            (inward_x[3], height - 1 - inward_y[3]),
        ]

    def draw(self, height: int, width: int) -> AugmentationDraw:
        """The random choices of one image of `height` × `width` pixels, from torch's default generator (one call)."""
        draws = torch.rand(_DRAWS_PER_IMAGE, dtype=torch.float64).tolist()
        crop_box = self._crop_box(height, width, draws[: 2 * _CROP_ATTEMPTS + 2])
        draws = draws[2 * _CROP_ATTEMPTS + 2 :]
        out_height, out_width = self.output_size
        endpoints = None
        if draws[0] < self.perspective.p:
            endpoints = self._perspective_endpoints(out_width, out_height, draws[1:9])
        low, high = self.rotation.degrees
        photometric = [float(draws[11] < self.grayscale.p), 1.0, 1.0, 1.0, 0.0]
        for (position, name, _), draw in zip(_JITTER_ADJUSTMENTS, draws[12:16]):
            factor_range = getattr(self.color_jitter, name)
            if factor_range is not None:
                photometric[position] = factor_range[0] + (factor_range[1] - factor_range[0]) * draw
        keys = draws[16:20]
        photometric += sorted(range(4), key=keys.__getitem__)  # a uniformly random order of the four adjustments
        return AugmentationDraw(
            crop_box=crop_box,
            perspective_endpoints=endpoints,
            horizontal_flip=draws[9] < self.horizontal_flip.p,
            angle=low + (high - low) * draws[10],
            photometric=torch.tensor(photometric),
        )

    def warp(self, image: Image.Image, draw: AugmentationDraw) -> Image.Image:
        """The geometric part of `draw` on an RGB PIL image: crop and resize to the output size, perspective, flip and
        rotation, with the resampling of torchvision's PIL kernels (bilinear; nearest for the rotation)."""
        out_height, out_width = self.output_size
        image = image.crop(draw.crop_box).resize((out_width, out_height), Image.Resampling.BILINEAR)
        if draw.perspective_endpoints is not None:
            corners = [(0, 0), (out_width - 1, 0), (out_width - 1, out_height - 1), (0, out_height - 1)]
            # The homography taking each output corner (endpoint) to its input corner, solved as torchvision does.
            system = np.zeros((8, 8))
            for row, ((x, y), (u, v)) in enumerate(zip(draw.perspective_endpoints, corners)):
                system[2 * row] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
                system[2 * row + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
            coefficients = np.linalg.solve(system, np.asarray(corners, dtype=np.float64).reshape(8))
            image = image.transform(
                image.size,
                Image.Transform.PERSPECTIVE,
                coefficients.astype(np.float32).tolist(),
                Image.Resampling.BILINEAR,
            )
        if draw.horizontal_flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image.rotate(draw.angle, Image.Resampling.NEAREST)

    def jittered_view(self, image: Image.Image, box: Sequence[float]) -> Image.Image:
        """Step 0: `box` (in `image`'s pixels) jittered by `box_jitter`, cropped with `CROP_MARGIN` (four draws from
        torch's default generator)."""
        scale_draws, shift_draws = torch.rand(2, 1, 2, dtype=torch.float64).numpy()
        jittered = _jitter_boxes(np.asarray(box, np.float32).reshape(1, 4), self.box_jitter, scale_draws, shift_draws)
        return crop_box(image, jittered[0], CROP_MARGIN)

    def _warped_array(self, image: Image.Image, box: Sequence[float] | None = None) -> tuple[np.ndarray, torch.Tensor]:
        image = to_rgb(image)
        if self.box_jitter:
            if box is None:
                raise ValueError("box_jitter needs each image's box (the crops config's crop_bbox column).")
            image = self.jittered_view(image, box)
        draw = self.draw(image.height, image.width)
        return np.asarray(self.warp(image, draw)), draw.photometric

    def apply_geometric(
        self, image: Image.Image, box: Sequence[float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1 on one image (step 0 first, with `box_jitter` and its `box`): `(pixels, photometric_parameters)`,
        a `uint8` `(3, height, width)` tensor and the `(PHOTOMETRIC_PARAMETERS,)` draws that
        [`~TrainAugmentation.apply_photometric`] applies to it."""
        pixels, photometric = self._warped_array(image, box)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1), photometric

    def apply_photometric(
        self, pixels: torch.Tensor, parameters: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Stage 2 on a batch: `uint8` `(batch, 3, height, width)` pixels and their `(batch, PHOTOMETRIC_PARAMETERS)`
        draws -> normalised `float32` images. Runs on the pixels' device. The pixels may be in any layout (a
        channels-last view is read a few images at a time, never copied whole); `out`, a contiguous `float32` tensor
        of their shape, receives the images instead of a new one."""
        if out is not None and (out.shape != pixels.shape or out.dtype != torch.float32 or not out.is_contiguous()):
            raise ValueError(f"out must be a contiguous float32 tensor of shape {tuple(pixels.shape)}.")
        with _one_cpu_thread(pixels.device):
            return self._apply_photometric(pixels, parameters.to(pixels.device), out)

    def _apply_photometric(
        self, pixels: torch.Tensor, parameters: torch.Tensor, out: torch.Tensor | None
    ) -> torch.Tensor:
        order = parameters[:, _JITTER_ORDER].long()
        order_codes = order @ torch.tensor([64, 16, 4, 1], device=pixels.device)
        output = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device) if out is None else out
        # The images that share an order of adjustments, a few at a time: they go through the same operations, on
        # tensors small enough to stay in the CPU's cache (a whole batch at once is 2-3x slower).
        for code in order_codes.unique().tolist():
            for members in (order_codes == code).nonzero().flatten().split(_PHOTOMETRIC_CHUNK):
                images = pixels.index_select(0, members).to(torch.float32).div_(255.0)
                drawn = parameters.index_select(0, members)
                gray = drawn[:, _GRAYSCALE] > 0
                if gray.any():
                    images[gray] = F.rgb_to_grayscale(images[gray], num_output_channels=3)
                for adjustment in order[members[0]].tolist():
                    position, name, adjust = _JITTER_ADJUSTMENTS[adjustment]
                    if getattr(self.color_jitter, name) is not None:
                        images = adjust(images, drawn[:, position])
                output.index_copy_(0, members, F.normalize(images, self.image_mean, self.image_std, inplace=True))
        return output

    def augment_batch(
        self,
        images: Sequence[Image.Image],
        seeds: Sequence[int] | None = None,
        boxes: Sequence[Sequence[float]] | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Both stages on a batch of PIL images: a normalised `float32` `(batch, 3, height, width)` tensor (`out`,
        where given). With `seeds`, image `i` draws from torch's default generator seeded with `seeds[i]` (and the
        caller's generator state is kept); `augment_batch(images, seeds)[i]` equals `self(images[i])` seeded so.
        `boxes`: each image's box, for `box_jitter`."""
        if seeds is not None and len(seeds) != len(images):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds.")
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"{len(images)} images but {len(boxes)} boxes.")
        height, width = self.output_size
        pixels = np.empty((len(images), height, width, 3), dtype=np.uint8)  # filled in place: one copy per image
        photometric = []
        for position, image in enumerate(images):
            with seeded_cpu_generator(seeds[position]) if seeds is not None else nullcontext():
                pixels[position], parameters = self._warped_array(image, None if boxes is None else boxes[position])
            photometric.append(parameters)
        # A channels-last view: the photometric stage copies a few images at a time into its own layout.
        return self.apply_photometric(torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.stack(photometric), out)

    def __call__(self, image: Image.Image, box: Sequence[float] | None = None) -> torch.Tensor:
        """Both stages on one PIL image (and its `box`, for `box_jitter`): a normalised `float32` `(3, height,
        width)` tensor."""
        return self.augment_batch([image], boxes=None if box is None else [box])[0]

    def __repr__(self) -> str:
        parts = ", ".join(
            repr(transform)
            for transform in (
                self.resized_crop,
                self.perspective,
                self.horizontal_flip,
                self.rotation,
                self.grayscale,
                self.color_jitter,
            )
        )
        jitter = f", box_jitter={self.box_jitter}" if self.box_jitter else ""
        return f"{type(self).__name__}({parts}, mean={self.image_mean}, std={self.image_std}{jitter})"


def build_train_transform(image_processor: LogoImageProcessor, **augmentation) -> TrainAugmentation:
    """The paper's training augmentation at the processor's size and normalisation: a [`TrainAugmentation`], which
    maps a PIL image to a normalised tensor (and finishes whole batches at once inside [`AugmentedDataset`]).
    `augmentation`: [`TrainAugmentation`]'s keyword arguments (`scale`, `perspective`, ...), its defaults otherwise."""
    return TrainAugmentation(
        processor_output_size(image_processor), image_processor.image_mean, image_processor.image_std, **augmentation
    )


def build_eval_transform(image_processor: LogoImageProcessor) -> Callable[[Image.Image], torch.Tensor]:
    """The processor itself, one image at a time: PIL image -> normalised tensor."""
    return lambda image: image_processor(image, return_tensors="pt").pixel_values[0]


def with_image_transform(
    dataset: datasets.Dataset, transform: Callable[[Image.Image], torch.Tensor], label_column: str = "brand"
) -> datasets.Dataset:
    """A view of `dataset` whose rows are `{"pixel_values": tensor, "labels": int}`, transformed on access.

    It works with multi-worker DataLoaders and with the collators in `dataset_scripts.collators`.
    """

    def apply(batch: dict) -> dict:
        return {"pixel_values": [transform(image) for image in batch["image"]], "labels": batch[label_column]}

    return dataset.with_transform(apply)


def example_seed(seed: int, epoch: int, index: int, repeat: int = 0) -> int:
    """The random seed of example `index` in `epoch`: draws that depend on nothing else (not the DataLoader worker,
    not how many batches came before) make a run resumed mid-epoch see exactly what it would have seen. `repeat`
    counts earlier occurrences of the index in the same batch, so that a repeated example gets a view of its own."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + int(index) + repeat * 1_000_000_000_039


@contextmanager
def seeded_cpu_generator(seed: int) -> Iterator[None]:
    """Seed only the CPU generator the transforms draw from, and restore it after: the caller's random state is left
    as it was. (torch.random.fork_rng + torch.manual_seed did the same at 60x the cost, 0.3 ms per image.)"""
    generator = torch.random.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


# Where a crop's box lies in it (the builder's crops config): what box-jittered training jitters.
BOX_COLUMN = "crop_bbox"


class AugmentedDataset(torch.utils.data.Dataset):
    """A dataset whose random augmentation depends only on `(seed, epoch, index)`, not on which DataLoader worker
    draws it or how many batches came before: a run resumed mid-epoch sees exactly the images it would have seen.

    Rows are `{"pixel_values": tensor, "labels": int}`; call `set_epoch` before each epoch (Accelerate's prepared
    DataLoader does it too). A DataLoader that batches (a `batch_size` or a `batch_sampler`) fetches whole batches
    through `__getitems__`: with a [`TrainAugmentation`] as `transform`, the per-image geometric stage runs image by
    image and the photometric stage once for the batch, which gives the pixels of `dataset[index]` at a fraction of
    the cost. An index that comes again in the same batch ([`~dataset_scripts.collators.PKBatchSampler`] repeats the
    examples of a brand that has fewer than K) gets another augmentation each time, drawn from its repeat count too.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        transform: Callable[[Image.Image], torch.Tensor],
        seed: int = 0,
        label_column: str = "brand",
    ):
        self.dataset, self.transform, self.seed, self.label_column = dataset, transform, seed, label_column
        if getattr(transform, "box_jitter", 0) and BOX_COLUMN not in getattr(dataset, "column_names", ()):
            raise ValueError(
                f"box_jitter crops from each image's box: the dataset needs a {BOX_COLUMN!r} column (the crops "
                f"config of LogoDet3K, version 1.2.0 or later, prepared with crop_margin={BOX_JITTER_CONTEXT})."
            )
        self.epoch = 0
        # Rows read with their images still encoded: opening the bytes here costs a third less than `datasets`'
        # decoding (which runs its own checks per image).
        feature = getattr(dataset, "features", {}).get("image")
        self._encoded = None
        if isinstance(feature, datasets.Image) and feature.decode:
            self._encoded = dataset.cast_column("image", datasets.Image(decode=False))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        indices = [int(index) for index in indices]
        if self._encoded is not None:
            rows = self._encoded[indices]  # one columnar read for the batch
            images = [_open_encoded(encoded) for encoded in rows["image"]]
        else:
            rows = self.dataset[indices]
            images = rows["image"]
        occurrences = Counter()
        seeds = []
        for index in indices:
            seeds.append(example_seed(self.seed, self.epoch, index, repeat=occurrences[index]))
            occurrences[index] += 1
        if isinstance(self.transform, TrainAugmentation):
            boxes = rows[BOX_COLUMN] if self.transform.box_jitter else None
            batch = _batch_tensor((len(images), 3, *self.transform.output_size))
            pixel_values = list(self.transform.augment_batch(images, seeds, boxes, out=batch))
        else:
            pixel_values = []
            for seed, image in zip(seeds, images):
                with seeded_cpu_generator(seed):
                    pixel_values.append(self.transform(image))
        labels = rows[self.label_column]
        return [{"pixel_values": pixels, "labels": label} for pixels, label in zip(pixel_values, labels)]


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty `float32` tensor for a batch of images, in shared memory inside a DataLoader worker (as
    `default_collate` allocates its batches there): the batch reaches the main process without a copy, and its rows
    reach the collator as views that [`~dataset_scripts.collators.collate_pk_batch`] returns without stacking them.
    A 128-image batch copied into fresh memory costs 7-9 ms of page faults each time, 1.6 into memory in use."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * torch.float32.itemsize)
    return torch.empty(0).set_(storage, 0, shape)


def _open_encoded(encoded: dict) -> Image.Image:
    """A `datasets.Image(decode=False)` value (`{"bytes", "path"}`) as a PIL image."""
    if encoded.get("bytes") is not None:
        return Image.open(io.BytesIO(encoded["bytes"]))
    return Image.open(encoded["path"])


__all__ = [
    "AugmentationDraw",
    "AugmentedDataset",
    "BOX_COLUMN",
    "BOX_JITTER_CONTEXT",
    "PHOTOMETRIC_PARAMETERS",
    "TrainAugmentation",
    "build_eval_transform",
    "build_train_transform",
    "example_seed",
    "jitter_boxes",
    "seeded_cpu_generator",
    "processor_output_size",
    "with_image_transform",
]
