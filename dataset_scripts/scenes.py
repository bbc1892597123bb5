"""Whole scenes for the logo localiser: brand-disjoint scene splits, box-aware augmentation, letterboxed batches.

A localiser learns *where* logos are, whatever their brand, so every box of a scene is a target: the scene's own
brand, other brands pasted beside it, and logos of no brand of the set (`UNKNOWN_LOGO`, brand -1 in the builder's
`detection` config). A scene only belongs to a split when every brand in it does: a training scene that shows a
test brand beside its own would let the localiser see that test brand.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from modeling_logo import LogoLocalizerImageProcessor, to_rgb

from .transforms import example_seed, seeded_cpu_generator


def split_scenes(split: datasets.Dataset) -> datasets.Dataset:
    """The scenes of a `detection` split (from `load_logodet3k(..., "detection")`) whose every logo is of one of the
    split's own brands or of no brand at all (-1)."""
    own_brands = set(split.unique("brand")) | {-1}
    return split.filter(
        lambda objects: all(obj["brand"] in own_brands for obj in objects),
        input_columns="objects",
        desc="Scenes of this split's brands only",
    )


def scene_boxes(row: dict) -> np.ndarray:
    """A scene row's logo boxes as a float32 `(n, 4)` array of `(xmin, ymin, xmax, ymax)`."""
    return np.asarray([obj["bbox"] for obj in row["objects"]], np.float32).reshape(-1, 4)


def build_localizer_train_transform(
    *, zoom_out: float = 3.0, iou_crop: float = 0.3, horizontal_flip: float = 0.5
) -> Callable[[Image.Image, np.ndarray], tuple[Image.Image, np.ndarray]]:
    """Box-aware augmentation of a whole scene (torchvision's detection recipe): photometric distortion, zoom out
    (up to `zoom_out`x, so that logos also come small, as in a wide photo), sometimes a crop that keeps part of a
    logo (RandomIoUCrop, with probability `iou_crop`), a horizontal flip; boxes that end up degenerate are dropped.

    Returns a function `(PIL image, boxes) -> (PIL image, boxes)`; the localiser's processor letterboxes after it.
    """
    augment = v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill=(124, 116, 104), side_range=(1.0, zoom_out), p=0.5),
            v2.RandomApply([v2.RandomIoUCrop()], p=iou_crop),
            v2.RandomHorizontalFlip(horizontal_flip),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=2),
        ]
    )

    def transform(image: Image.Image, boxes: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        image = to_rgb(image)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(image.height, image.width)),
            "labels": torch.zeros(len(boxes), dtype=torch.long),
        }
        image, target = augment(image, target)
        return image, target["boxes"].numpy().astype(np.float32)

    return transform


class SceneDataset(torch.utils.data.Dataset):
    """Scenes as the localiser's training or validation rows: `{"pixel_values": (3, S, S), "boxes": (n, 4)}`, boxes
    in the letterboxed tensor's pixels.

    With a `transform` ([`build_localizer_train_transform`]), its draws depend only on `(seed, epoch, index)`, as in
    [`~dataset_scripts.transforms.AugmentedDataset`], so a run resumed mid-epoch sees exactly the same scenes.
    """

    def __init__(
        self,
        scenes: datasets.Dataset,
        processor: LogoLocalizerImageProcessor,
        transform: Callable[[Image.Image, np.ndarray], tuple[Image.Image, np.ndarray]] | None = None,
        seed: int = 0,
    ):
        self.scenes, self.processor, self.transform, self.seed = scenes, processor, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        row = self.scenes[int(index)]
        image, boxes = row["image"], scene_boxes(row)
        if self.transform is not None:
            with seeded_cpu_generator(example_seed(self.seed, self.epoch, index)):
                image, boxes = self.transform(image, boxes)
        pixel_values, scale, _ = self.processor.letterbox(image)
        return {"pixel_values": pixel_values, "boxes": torch.from_numpy(boxes) * scale}


def collate_scenes(rows: list[dict]) -> dict:
    """A batch for [`~modeling_logo.LogoLocalizerModel`]: stacked `pixel_values` and `labels` `[{"boxes": ...}]`."""
    return {
        "pixel_values": torch.stack([row["pixel_values"] for row in rows]),
        "labels": [{"boxes": row["boxes"]} for row in rows],
    }


__all__ = [
    "SceneDataset",
    "build_localizer_train_transform",
    "collate_scenes",
    "scene_boxes",
    "split_scenes",
]
