#!/usr/bin/env python
"""Data loading against the training step (issue 8, part 2), measured side by side in one run.

    python benchmarks/data_pipeline.py                     # photo-sized generated scenes, resnet-small at 96 px
    python benchmarks/data_pipeline.py --scene_size 1024 --backbone resnet50 --image_size 224

LogoDet-3K's images are photos of several hundred pixels a side, so its box crops are much larger than the 96-224 px
the network sees. This generates scenes of that size (`dataset_scripts.synthesize`, cached under the project cache),
prepares the builder's `crops` twice, with crops at full size and shrunk to `crop_max_size = 2 × image_size` (what
`train.py` stores), and measures:

- the training step rate (forward, backward, AdamW, on a P×K batch of the real loss), in images/s;
- decoding + augmentation in one process with one thread (what one DataLoader worker does), in images/s, as a
  multiple of the step rate: a worker that is ≥ 3× faster needs at most a third of a core;
- whole training steps fed by a DataLoader with 0, 1 and 2 workers, which is what decides `num_workers` on 2 cores.

Writes `benchmarks/results/data_pipeline.json`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
from _results import write_result
from torch.utils.data import DataLoader

from dataset_scripts.collators import PKBatchSampler, collate_pk_batch
from dataset_scripts.logodet3k import load_logodet3k
from dataset_scripts.transforms import AugmentedDataset, build_train_transform
from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel, LogoImageProcessor
from modeling_logo.cache import cache_root
from modeling_logo.losses import build_loss, build_miner


def scenes(directory: Path, brands: int, images_per_brand: int, size: int) -> Path:
    """Generated photo-sized scenes (once; reused while the folder is complete)."""
    from dataset_scripts.synthesize import synthesize

    if len(list(directory.glob("*/*/*.xml"))) < brands * images_per_brand:
        print(f"Generating {brands} brands × {images_per_brand} scenes of {size} px in {directory} ...")
        synthesize(directory, brands, images_per_brand, image_size=size, seed=0, overwrite=True)
    return directory


def training_step(model, batch: dict, loss_fn, miner, optimizer) -> None:
    embeddings = model(batch["pixel_values"]).embeddings
    loss = loss_fn(embeddings, batch["labels"], miner(embeddings, batch["labels"]) if miner else None)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def train_step_rate(model, batch: dict, loss_fn, miner, optimizer, steps: int) -> float:
    """Training images per second on a fixed batch (no data loading)."""
    training_step(model, batch, loss_fn, miner, optimizer)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        training_step(model, batch, loss_fn, miner, optimizer)
    return steps * len(batch["labels"]) / (time.perf_counter() - start)


def loading_rate(dataset: AugmentedDataset, count: int) -> float:
    """Decode + augment in this process on one thread, images per second."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset[0]
        start = time.perf_counter()
        for index in range(count):
            dataset[index % len(dataset)]
        return count / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def loader_step_rate(model, dataset, sampler, loss_fn, miner, optimizer, workers: int, steps: int) -> float:
    """Training images per second with a DataLoader of `workers` processes feeding the steps."""
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_pk_batch,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    def forever():  # as many epochs as the steps need
        for epoch in itertools.count():
            sampler.set_epoch(epoch)
            yield from loader

    batches, images, start = forever(), 0, None
    for step in range(steps + 1):
        batch = next(batches)
        training_step(model, batch, loss_fn, miner, optimizer)
        if step == 0:  # the first batch also pays for starting the workers
            start = time.perf_counter()
        else:
            images += len(batch["labels"])
    del batches
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet-small")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--scene_size", type=int, default=640, help="long side of the generated photos")
    parser.add_argument("--brands", type=int, default=32)
    parser.add_argument("--images_per_brand", type=int, default=6)
    parser.add_argument("--brands_per_batch", type=int, default=16)
    parser.add_argument("--images_per_brand_in_batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/data_pipeline.json")
    args = parser.parse_args(argv)

    # One folder per setting: the builder's Arrow cache is keyed by the folder, not by what is in it.
    folder = f"benchmark-scenes-{args.brands}x{args.images_per_brand}-{args.scene_size}px"
    data_dir = scenes(cache_root() / folder, args.brands, args.images_per_brand, args.scene_size)
    config = LogoEmbeddingConfig(backbone=args.backbone, image_size=args.image_size)
    processor = LogoImageProcessor.from_model_config(config)
    transform = build_train_transform(processor)
    torch.manual_seed(0)
    model = LogoEmbeddingModel(config).train()
    loss_fn, miner = build_loss("multi-similarity"), build_miner("multi-similarity", "multi-similarity")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch_size = args.brands_per_batch * args.images_per_brand_in_batch
    labels = torch.arange(args.brands_per_batch).repeat_interleave(args.images_per_brand_in_batch)
    fixed_batch = {"pixel_values": torch.randn(batch_size, 3, args.image_size, args.image_size), "labels": labels}
    step_rate = train_step_rate(model, fixed_batch, loss_fn, miner, optimizer, args.steps)
    print(
        f"{args.backbone} at {args.image_size} px: training step {step_rate:.1f} images/s "
        f"(batch {batch_size}, {torch.get_num_threads()} threads)\n"
    )

    rows = []
    for crop_max_size in (None, 2 * args.image_size):
        splits = load_logodet3k(
            data_dir,
            "crops",
            split_scheme="brands",
            train_fraction=0.8,
            validation_fraction=0.1,
            crop_max_size=crop_max_size,
        )
        train_split = splits["train"]
        sizes = [max(image.size) for image in train_split.select(range(min(64, len(train_split))))["image"]]
        dataset = AugmentedDataset(train_split, transform)
        rate = loading_rate(dataset, count=min(len(dataset), 300))
        sampler = PKBatchSampler(train_split["brand"], args.brands_per_batch, args.images_per_brand_in_batch)
        for workers in (0, 1, 2):
            fed = loader_step_rate(model, dataset, sampler, loss_fn, miner, optimizer, workers, args.steps)
            rows.append(
                {
                    "crops": f"≤ {crop_max_size} px" if crop_max_size else "full size",
                    "median_crop_px": sorted(sizes)[len(sizes) // 2],
                    "loading_images_per_second": rate,
                    "loading_over_step": rate / step_rate,
                    "workers": workers,
                    "fed_training_images_per_second": fed,
                    "fed_over_step": fed / step_rate,
                }
            )

    print(
        "| crops | median crop px | decode+augment img/s (1 thread) | × step rate | workers | "
        "training img/s fed by the loader | of the step rate |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['crops']} | {row['median_crop_px']} | {row['loading_images_per_second']:.0f} | "
            f"{row['loading_over_step']:.1f} | {row['workers']} | {row['fed_training_images_per_second']:.1f} | "
            f"{row['fed_over_step']:.0%} |"
        )
    result = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "scene_size": args.scene_size,
        "step_images_per_second": step_rate,
        "rows": rows,
    }
    write_result("data_pipeline", result, args.output)
    return result


if __name__ == "__main__":
    main()
