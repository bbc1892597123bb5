"""The training augmentation (`dataset_scripts.transforms.TrainAugmentation`): torchvision's transforms and
distributions, drawn per image and finished per batch."""

import math
from collections import Counter

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

from dataset_scripts.collators import PKBatchSampler, collate_pk_batch
from dataset_scripts.transforms import (
    PHOTOMETRIC_PARAMETERS,
    AugmentedDataset,
    TrainAugmentation,
    _adjust_hue,
    build_train_transform,
    example_seed,
    jitter_boxes,
    seeded_cpu_generator,
)
from modeling_logo.detection import CROP_MARGIN

from .conftest import make_logo_images


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


def augmentation(size=(32, 32), **options) -> TrainAugmentation:
    return TrainAugmentation(size, MEAN, STD, **options)


def random_pixels(count: int, seed: int = 0) -> torch.Tensor:
    """Random RGB images with the cases HSV treats apart: gray pixels, ties between channels, black and white."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 24, 24), dtype=torch.uint8, generator=generator)
    images[0] = images[0, :1]  # all gray
    images[1, :, :4] = torch.tensor([200, 200, 10], dtype=torch.uint8).view(3, 1, 1)  # red == green
    images[1, :, 4:8] = torch.tensor([10, 200, 200], dtype=torch.uint8).view(3, 1, 1)  # green == blue
    images[1, :, 8:12] = 0
    images[1, :, 12:16] = 255
    return images


def test_hue_shift_matches_torchvision_per_image():
    images = random_pixels(12).float() / 255
    shifts = torch.linspace(-0.5, 0.5, 12)
    expected = torch.stack([F.adjust_hue(image, float(shift)) for image, shift in zip(images, shifts)])
    torch.testing.assert_close(_adjust_hue(images, shifts), expected, atol=1e-5, rtol=0)


def reference_photometric(pixels: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """The photometric stage as torchvision's functional ops, one image at a time, in each image's drawn order."""
    image = pixels.float() / 255
    if parameters[0]:
        image = F.rgb_to_grayscale(image, num_output_channels=3)
    for adjustment in parameters[5:].long().tolist():
        name = JITTER_NAMES[adjustment]
        image = getattr(F, f"adjust_{name}")(image, float(parameters[1 + adjustment]))
    return F.normalize(image, MEAN, STD)


def test_photometric_stage_is_torchvisions_colour_ops_in_the_drawn_order_one_batch_at_a_time():
    augment = augmentation(grayscale=0.3)
    pixels = random_pixels(40, seed=1)
    torch.manual_seed(0)
    parameters = torch.stack([augment.draw(24, 24).photometric for _ in pixels])
    assert parameters.shape == (40, PHOTOMETRIC_PARAMETERS) and 0 < parameters[:, 0].sum() < 40
    batch = augment.apply_photometric(pixels, parameters)
    expected = torch.stack([reference_photometric(p, q) for p, q in zip(pixels, parameters)])
    assert batch.dtype == torch.float32 and batch.is_contiguous()
    torch.testing.assert_close(batch, expected, atol=2e-5, rtol=0)
    # an image comes out the same whatever batch it is finished in
    alone = torch.stack([augment.apply_photometric(p[None], q[None])[0] for p, q in zip(pixels, parameters)])
    assert torch.equal(batch, alone)
    # the warped images' (batch, h, w, 3) array, read through a channels-last view, and written into a given tensor
    channels_last = pixels.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    out = torch.full(pixels.shape, float("nan"))
    assert augment.apply_photometric(channels_last, parameters, out=out) is out
    assert torch.equal(out, batch)
    with pytest.raises(ValueError, match="contiguous float32 tensor of shape"):
        augment.apply_photometric(pixels, parameters, out=torch.empty(40, 3, 24, 23))


def test_geometric_stage_is_torchvisions_pil_kernels_with_the_drawn_parameters():
    augment = augmentation(size=(40, 48))
    image = make_logo_images(1, seed=3, size=(90, 70))[0]
    torch.manual_seed(0)
    draws = [augment.draw(image.height, image.width) for _ in range(30)]
    assert {draw.perspective_endpoints is None for draw in draws} == {True, False}
    assert {draw.horizontal_flip for draw in draws} == {True, False}
    for draw in draws:
        left, top, right, bottom = draw.crop_box
        expected = F.resized_crop(image, top, left, bottom - top, right - left, [40, 48], antialias=True)
        if draw.perspective_endpoints is not None:
            corners = [[0, 0], [47, 0], [47, 39], [0, 39]]
            endpoints = [list(point) for point in draw.perspective_endpoints]
            expected = F.perspective(expected, corners, endpoints, interpolation=F.InterpolationMode.BILINEAR)
        if draw.horizontal_flip:
            expected = F.horizontal_flip(expected)
        expected = F.rotate(expected, draw.angle)
        warped = augment.warp(image, draw)
        assert warped.size == (48, 40) and np.array_equal(np.asarray(warped), np.asarray(expected))


def test_draws_follow_torchvisions_distributions():
    augment = augmentation()
    torch.manual_seed(0)
    draws = [augment.draw(120, 90) for _ in range(3000)]
    boxes = np.array([draw.crop_box for draw in draws])  # left, top, right, bottom
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    areas, ratios = widths * heights / (120 * 90), widths / heights
    assert 0.49 < areas.min() and areas.max() <= 1.0 and 0.73 < ratios.min() and ratios.max() < 1.37
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 90).all() and (boxes[:, 3] <= 120).all()
    angles = [draw.angle for draw in draws]
    assert -15 <= min(angles) < -14.5 and 14.5 < max(angles) <= 15 and abs(np.mean(angles)) < 0.5

    def share(flags) -> float:
        return float(np.mean(list(flags)))

    assert share(draw.perspective_endpoints is not None for draw in draws) == pytest.approx(0.5, abs=0.04)
    assert share(draw.horizontal_flip for draw in draws) == pytest.approx(0.5, abs=0.04)
    photometric = torch.stack([draw.photometric for draw in draws])
    assert float(photometric[:, 0].mean()) == pytest.approx(0.1, abs=0.02)
    for column, (low, high) in zip(range(1, 5), [(0.6, 1.4)] * 3 + [(-0.05, 0.05)]):
        factors = photometric[:, column]
        assert low <= factors.min() < low + 0.01 and high - 0.01 < factors.max() <= high
    # corners move inwards by at most 0.3 of half a side (14 px of 32 + 1)
    offsets = [
        abs(x - cx) + abs(y - cy)
        for draw in draws
        if draw.perspective_endpoints
        for (x, y), (cx, cy) in zip(draw.perspective_endpoints, [(0, 0), (31, 0), (31, 31), (0, 31)])
    ]
    assert max(offsets) <= 2 * (int(0.3 * 16) + 1) - 2
    orders = Counter(tuple(row[5:].long().tolist()) for row in photometric)
    assert len(orders) == math.factorial(4) and all(sorted(order) == [0, 1, 2, 3] for order in orders)


def test_disabled_augmentations_leave_the_image_alone():
    augment = augmentation(
        size=(30, 40),
        scale=(1.0, 1.0),
        perspective=0.0,
        horizontal_flip=0.0,
        rotation_degrees=0.0,
        grayscale=0.0,
        color_jitter=(0.0, 0.0, 0.0, 0.0),
    )
    image = make_logo_images(1, seed=5, size=(40, 30))[0]
    torch.manual_seed(0)
    pixels, parameters = augment.apply_geometric(image)
    assert torch.equal(pixels, F.pil_to_tensor(image))
    assert parameters[:5].tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    torch.testing.assert_close(augment(image), F.normalize(F.pil_to_tensor(image).float() / 255, MEAN, STD))


def test_a_seed_fixes_an_images_augmentation_and_the_callers_random_state_is_kept(processor):
    augment = build_train_transform(processor)
    image = make_logo_images(1, seed=6)[0]
    with seeded_cpu_generator(11):
        first = augment(image)
    torch.manual_seed(3)
    expected_next = torch.rand(3)
    torch.manual_seed(3)
    with seeded_cpu_generator(11):
        again = augment(image)
    assert torch.equal(first, again) and torch.equal(torch.rand(3), expected_next)
    with seeded_cpu_generator(12):
        assert not torch.equal(augment(image), first)


def logo_rows(count: int, brands: int) -> datasets.Dataset:
    rows = datasets.Dataset.from_dict(
        {"image": make_logo_images(count, seed=7), "brand": [i % brands for i in range(count)]}
    )
    return rows.cast_column("image", datasets.Image())


def test_batches_fetched_whole_equal_the_rows_fetched_one_by_one(processor):
    dataset = AugmentedDataset(logo_rows(10, 5), build_train_transform(processor), seed=2)
    dataset.set_epoch(3)
    batch = dataset.__getitems__([4, 0, 7, 9])
    for index, row in zip([4, 0, 7, 9], batch):
        assert row["labels"] == index % 5 and row["pixel_values"].shape == (3, 64, 64)
        assert torch.equal(row["pixel_values"], dataset[index]["pixel_values"])


def test_an_index_repeated_in_a_batch_gets_a_new_augmentation_each_time(processor):
    dataset = AugmentedDataset(logo_rows(4, 2), build_train_transform(processor), seed=0)
    first, again, other, third = (row["pixel_values"] for row in dataset.__getitems__([1, 1, 2, 1]))
    assert torch.equal(first, dataset[1]["pixel_values"])  # the first occurrence is the index's own draw
    assert not torch.equal(first, again) and not torch.equal(again, third) and not torch.equal(first, third)
    assert torch.equal(other, dataset[2]["pixel_values"])
    assert torch.equal(dataset.__getitems__([1, 1])[1]["pixel_values"], again)  # still reproducible


def test_a_multi_worker_loader_finishes_batches_in_the_workers_with_the_same_pixels(processor):
    dataset = AugmentedDataset(logo_rows(12, 4), build_train_transform(processor), seed=0)
    sampler = PKBatchSampler([i % 4 for i in range(12)], p=2, k=3, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_pk_batch, num_workers=2)
    for indices, batch in zip(sampler, loader):
        assert batch["pixel_values"].shape == (6, 3, 64, 64)
        expected = torch.stack([dataset[index]["pixel_values"] for index in indices])
        assert torch.equal(batch["pixel_values"], expected)


def collate_and_check_the_batch_was_not_copied(examples: list[dict]) -> dict:
    """collate_pk_batch, run in a worker, with whether the batch is the tensor the rows are views of, in shared
    memory (so that neither the collator nor the trip to the main process copied it)."""
    batch = collate_pk_batch(examples)
    pixels = batch["pixel_values"]
    batch["not_copied"] = torch.tensor(
        pixels.is_shared() and pixels.data_ptr() == examples[0]["pixel_values"].data_ptr()
    )
    return batch


def test_a_workers_batch_is_augmented_into_shared_memory_and_not_copied_again(processor):
    dataset = AugmentedDataset(logo_rows(12, 4), build_train_transform(processor), seed=0)
    sampler = PKBatchSampler([i % 4 for i in range(12)], p=2, k=3, seed=0)
    loader = DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate_and_check_the_batch_was_not_copied, num_workers=1
    )
    batches = list(loader)
    assert batches and all(batch["not_copied"] for batch in batches)
    # in the main process (no workers) the batch is one ordinary tensor, not copied by the collator either
    rows = dataset.__getitems__([3, 1, 2])
    pixels = collate_pk_batch(rows)["pixel_values"]
    assert not pixels.is_shared() and pixels.data_ptr() == rows[0]["pixel_values"].data_ptr()


def test_a_plain_callable_transform_still_works_one_image_at_a_time():
    dataset = AugmentedDataset(logo_rows(4, 2), lambda image: torch.tensor(image.size), seed=0)
    assert [row["pixel_values"].tolist() for row in dataset.__getitems__([0, 1])] == [[96, 72], [96, 72]]


def test_images_stored_as_paths_and_with_transparency_are_read_and_augmented(tmp_path, processor):
    paths = []
    for number, image in enumerate(make_logo_images(3, seed=8)):
        rgba = image.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(tmp_path / f"{number}.png")
        paths.append(str(tmp_path / f"{number}.png"))
    rows = datasets.Dataset.from_dict({"image": paths, "brand": [0, 1, 1]}).cast_column("image", datasets.Image())
    dataset = AugmentedDataset(rows, build_train_transform(processor), seed=1)
    augment = build_train_transform(processor)
    for index, row in enumerate(dataset.__getitems__([0, 1, 2])):
        with seeded_cpu_generator(example_seed(1, 0, index)):
            expected = augment(rows[index]["image"])  # the transparent PNG, opened by datasets
        assert torch.equal(row["pixel_values"], expected)


def test_a_batch_needs_one_seed_per_image(processor):
    with pytest.raises(ValueError, match="2 images but 1 seeds"):
        build_train_transform(processor).augment_batch(make_logo_images(2), seeds=[0])


def test_the_photometric_stage_runs_on_one_thread_and_gives_the_callers_threads_back(processor, monkeypatch):
    augment = build_train_transform(processor)
    threads_seen, normalize = [], F.normalize

    def spy(*args, **kwargs):
        threads_seen.append(torch.get_num_threads())
        return normalize(*args, **kwargs)

    monkeypatch.setattr(F, "normalize", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        augment.augment_batch(make_logo_images(3))
        assert threads_seen and set(threads_seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def coordinate_image(width: int = 200, height: int = 200) -> Image.Image:
    """Each pixel's red value is its x and its green value its y: a crop's corners say where it was taken."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.uint8))


def box_iou(first, second) -> float:
    width = max(0.0, min(first[2], second[2]) - max(first[0], second[0]))
    height = max(0.0, min(first[3], second[3]) - max(first[1], second[1]))
    areas = [(corners[2] - corners[0]) * (corners[3] - corners[1]) for corners in (first, second)]
    return width * height / (sum(areas) - width * height)


def test_box_jitter_crops_the_box_a_localiser_might_give_with_the_embedders_margin():
    image, box = coordinate_image(), (60.0, 70.0, 140.0, 130.0)
    ious = {}
    for amount in (0.1, 0.2, 0.3):
        augment, values = augmentation(box_jitter=amount), []
        for seed in range(300):
            with seeded_cpu_generator(seed):
                view = np.asarray(augment.jittered_view(image, box), np.float64)
            (left, top), (right, bottom) = view[0, 0, :2], view[-1, -1, :2] + 1
            # the view is the jittered box plus CROP_MARGIN on each side: take the margin off again
            width, height = (right - left) / (1 + 2 * CROP_MARGIN), (bottom - top) / (1 + 2 * CROP_MARGIN)
            jittered = (left + CROP_MARGIN * width, top + CROP_MARGIN * height)
            values.append(box_iou((*jittered, jittered[0] + width, jittered[1] + height), box))
        ious[amount] = float(np.mean(values))
        # the same distribution as jitter_boxes, which the box-jitter benchmark evaluates with
        reference = jitter_boxes(np.tile(box, (300, 1)), amount, np.random.default_rng(0))
        expected = np.mean([box_iou(jittered, box) for jittered in reference])
        assert abs(ious[amount] - expected) < 0.02, amount
    assert 0.86 < ious[0.1] < 0.90 and 0.76 < ious[0.2] < 0.80 and 0.66 < ious[0.3] < 0.70
    augment = augmentation(box_jitter=0.2)
    with seeded_cpu_generator(3):
        first = augment(image, box)
    with seeded_cpu_generator(3):
        assert torch.equal(augment(image, box), first)
    with pytest.raises(ValueError, match="needs each image's box"):
        augment(image)
    with pytest.raises(ValueError, match="box_jitter must be in"):
        augmentation(box_jitter=0.8)


def test_a_box_jittered_dataset_reads_each_crops_box_and_needs_it(processor):
    rows = logo_rows(6, 3)
    augment = build_train_transform(processor, box_jitter=0.2)
    with pytest.raises(ValueError, match="crop_bbox"):
        AugmentedDataset(rows, augment)
    sizes = [image.size for image in make_logo_images(6, seed=7)]
    rows = rows.add_column("crop_bbox", [[w * 0.25, h * 0.25, w * 0.75, h * 0.75] for w, h in sizes])
    dataset = AugmentedDataset(rows, augment, seed=1)
    batch = dataset.__getitems__([5, 2, 0])
    for index, row in zip([5, 2, 0], batch):
        assert torch.equal(row["pixel_values"], dataset[index]["pixel_values"])
    plain = AugmentedDataset(rows, build_train_transform(processor), seed=1)
    assert not torch.equal(batch[0]["pixel_values"], plain[5]["pixel_values"])
