#!/usr/bin/env python
"""Data loading against the training step (issue 8, part 2; issue 22, item 1), measured side by side in one run.

    python benchmarks/data_pipeline.py                     # photo-sized generated scenes, train.py's default recipe
    python benchmarks/data_pipeline.py --scene_size 1024 --backbone resnet50 --image_size 224

LogoDet-3K's images are photos of several hundred pixels a side, so its box crops are much larger than the 96-224 px
the network sees. This generates scenes of that size (`dataset_scripts.synthesize`, cached under the project cache),
prepares the builder's `crops` twice, with crops at full size and shrunk to `crop_max_size = 2 × image_size` (what
`train.py` stores), and measures, for `train.py`'s default recipe (resnet-small at 96 px, multi-similarity loss and
miner, AdamW, P×K = 32×4):

- the training step rate (forward, backward, AdamW, on a P×K batch of the real loss), in images/s, with the model and
  batch in PyTorch's default layout and in channels-last layout, at the precision `train.py --mixed_precision auto`
  trains at on this machine (bf16 autocast where the CPU computes bf16 natively, else fp32; `--mixed_precision`);
  loading and the DataLoader-fed steps are measured against the layout `train.py` trains in (`--channels_last`,
  on by default);
- decoding + augmentation of whole P×K batches in one process with one thread (what one DataLoader worker does:
  `AugmentedDataset.__getitems__` and the collator), in images/s, as a multiple of the step rate: a worker that is
  ≥ 3× faster needs at most a third of a core. The same for the torchvision `v2` pipeline that augmented one image
  at a time before (`TrainAugmentation` replaced it), as a reference;
- whole training steps fed by a DataLoader with 0, 1 and 2 workers, which is what decides `num_workers` on 2 cores,
  each as a share of the step rate measured right before it; every setting once per round in `--fed_rounds`
  alternating rounds (medians: one measurement of a few steps varies by ±15%).

The step rates and loading rates are measured in alternating rounds, so that drift in a shared machine's speed hits
all of them; ratios are the medians of each round's ratio. Other processes slow a two-thread step far more than
one-thread loading, so the rounds also time both by CPU time, with the step on one thread: loading's rate over
`threads` × that step rate (as if the step used every core perfectly) is a lower bound of the ratio on an idle
machine, whatever else ran meanwhile. Writes `benchmarks/results/data_pipeline.json` (with the load average).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from _results import write_result
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from dataset_scripts.collators import PKBatchSampler, collate_pk_batch
from dataset_scripts.logodet3k import load_logodet3k
from dataset_scripts.transforms import AugmentedDataset, build_train_transform
from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel, LogoImageProcessor, to_rgb
from modeling_logo.cache import cache_root
from modeling_logo.losses import build_loss, build_miner


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train import resolve_mixed_precision  # noqa: E402  (the precision train.py picks: one place decides it)
from training_arguments import EmbeddingTrainingArguments  # noqa: E402


# The layout train.py trains in unless told otherwise: what loading must keep up with.
TRAIN_LAYOUT = "channels_last" if EmbeddingTrainingArguments().channels_last else "default"


def scenes(directory: Path, brands: int, images_per_brand: int, size: int) -> Path:
    """Generated photo-sized scenes (once; reused while the folder is complete)."""
    from dataset_scripts.synthesize import synthesize

    if len(list(directory.glob("*/*/*.xml"))) < brands * images_per_brand:
        print(f"Generating {brands} brands × {images_per_brand} scenes of {size} px in {directory} ...")
        synthesize(directory, brands, images_per_brand, image_size=size, seed=0, overwrite=True)
    return directory


def per_image_v2_transform(processor: LogoImageProcessor):
    """The training transform `TrainAugmentation` replaced: torchvision `v2` transforms on one PIL image at a time,
    with the same parameters (kept here to measure the two side by side)."""
    augment = v2.Compose(
        [
            v2.RandomResizedCrop((processor.size.height, processor.size.width), scale=(0.5, 1.0), antialias=True),
            v2.RandomPerspective(distortion_scale=0.3, p=0.5),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomRotation(15.0),
            v2.RandomGrayscale(0.1),
            v2.ColorJitter(0.4, 0.4, 0.4, 0.05),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(processor.image_mean), list(processor.image_std)),
        ]
    )
    return lambda image: augment(to_rgb(image))


class Trainer:
    """A model, its loss and optimizer, in PyTorch's default or channels-last layout."""

    def __init__(self, model, loss_fn, miner, channels_last: bool, mixed_precision: str = "no"):
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if mixed_precision == "bf16" else nullcontext()
        )  # as Accelerate's autocast: forward and loss in bf16, the optimizer's step in fp32
        self.model = model.to(memory_format=self.memory_format)
        self.loss_fn, self.miner = loss_fn, miner
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)

    def step(self, batch: dict) -> float:
        pixels = batch["pixel_values"].contiguous(memory_format=self.memory_format)
        with self.autocast:
            embeddings = self.model(pixels).embeddings
        embeddings = embeddings.float()  # train.py's loss also runs in fp32
        pairs = self.miner(embeddings, batch["labels"]) if self.miner else None
        loss = self.loss_fn(embeddings, batch["labels"], pairs)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def step_rate(self, batch: dict, steps: int) -> float:
        """Training images per second on a fixed batch (no data loading), by the wall clock."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step(batch)
        return steps * len(batch["labels"]) / (time.perf_counter() - start)

    def one_thread_cpu_step_rate(self, batch: dict, steps: int) -> float:
        """Training images per second of CPU time on one thread: what other processes on the machine take does not
        count, and no thread waits for another (which would count as CPU time too)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            start = time.thread_time()
            for _ in range(steps):
                self.step(batch)
            return steps * len(batch["labels"]) / (time.thread_time() - start)
        finally:
            torch.set_num_threads(threads)


def loading_rate(dataset: AugmentedDataset, batches: list[list[int]]) -> tuple[float, float]:
    """Decode + augment + collate whole batches in this process on one thread (as one DataLoader worker): images
    per second by the wall clock and per second of the thread's CPU time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        collate_pk_batch(dataset.__getitems__(batches[0][:4]))  # warm-up
        start, cpu_start = time.perf_counter(), time.thread_time()
        for batch in batches:
            collate_pk_batch(dataset.__getitems__(batch))
        images = sum(map(len, batches))
        return images / (time.perf_counter() - start), images / (time.thread_time() - cpu_start)
    finally:
        torch.set_num_threads(threads)


def loader_step_rate(trainer: Trainer, dataset, sampler, workers: int, steps: int) -> float:
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
        trainer.step(batch)
        if step == 0:  # the first batch also pays for starting the workers
            start = time.perf_counter()
        else:
            images += len(batch["labels"])
    del batches
    return images / (time.perf_counter() - start)


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet-small")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--scene_size", type=int, default=640, help="long side of the generated photos")
    parser.add_argument("--brands", type=int, default=64, help="generated brands (80%% train; a batch takes P)")
    parser.add_argument("--images_per_brand", type=int, default=5)
    parser.add_argument("--brands_per_batch", type=int, default=32, help="P (train.py's default)")
    parser.add_argument("--images_per_brand_in_batch", type=int, default=4, help="K (train.py's default)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per measurement")
    parser.add_argument("--cpu_steps", type=int, default=2, help="one-thread steps per CPU-time measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of steps and loading")
    parser.add_argument("--loading_batches", type=int, default=2, help="P×K batches loaded per round and pipeline")
    parser.add_argument("--fed_steps", type=int, default=6, help="timed steps per DataLoader-fed measurement")
    parser.add_argument("--fed_rounds", type=int, default=3, help="alternating rounds of the DataLoader-fed settings")
    parser.add_argument(
        "--mixed_precision", default="auto", choices=["auto", "no", "bf16"], help="the step's, as train.py's flag"
    )
    parser.add_argument("--output", default=None, help="default: benchmarks/results/data_pipeline.json")
    args = parser.parse_args(argv)
    precision = resolve_mixed_precision(args.mixed_precision, "cpu")
    print(f"training step precision: {precision} (--mixed_precision {args.mixed_precision})")

    # One folder per setting: the builder's Arrow cache is keyed by the folder, not by what is in it.
    folder = f"benchmark-scenes-{args.brands}x{args.images_per_brand}-{args.scene_size}px"
    data_dir = scenes(cache_root() / folder, args.brands, args.images_per_brand, args.scene_size)
    config = LogoEmbeddingConfig(backbone=args.backbone, image_size=args.image_size)
    processor = LogoImageProcessor.from_model_config(config)
    torch.manual_seed(0)
    model = LogoEmbeddingModel(config).train()
    loss_fn, miner = build_loss("multi-similarity"), build_miner("multi-similarity", "multi-similarity")
    trainers = {
        "default": Trainer(model, loss_fn, miner, channels_last=False, mixed_precision=precision),
        "channels_last": Trainer(copy.deepcopy(model), loss_fn, miner, channels_last=True, mixed_precision=precision),
    }
    batch_size = args.brands_per_batch * args.images_per_brand_in_batch
    labels = torch.arange(args.brands_per_batch).repeat_interleave(args.images_per_brand_in_batch)
    fixed_batch = {"pixel_values": torch.randn(batch_size, 3, args.image_size, args.image_size), "labels": labels}
    # Same weights, batch and dropout: the two layouts compute the same first loss (this step is also the warm-up).
    losses = []
    for trainer in trainers.values():
        torch.manual_seed(1)
        losses.append(trainer.step(fixed_batch))

    crops = {}
    for crop_max_size in (2 * args.image_size, None):
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
        sampler = PKBatchSampler(train_split["brand"], args.brands_per_batch, args.images_per_brand_in_batch)
        name = f"≤ {crop_max_size} px" if crop_max_size else "full size"
        crops[name] = {"split": train_split, "median_crop_px": sorted(sizes)[len(sizes) // 2], "sampler": sampler}
    shrunk = next(iter(crops))
    pipelines = {
        f"TrainAugmentation, {name}": AugmentedDataset(setting["split"], build_train_transform(processor))
        for name, setting in crops.items()
    }
    pipelines[f"v2 per image (before), {shrunk}"] = AugmentedDataset(
        crops[shrunk]["split"], per_image_v2_transform(processor)
    )

    threads, load_before = torch.get_num_threads(), os.getloadavg()
    step_rates = {name: [] for name in trainers}
    cpu_step_rates = {name: [] for name in trainers}
    loading_rates = {name: [] for name in pipelines}
    cpu_loading_rates = {name: [] for name in pipelines}
    for round_ in range(args.rounds):
        for name, trainer in trainers.items():
            step_rates[name].append(trainer.step_rate(fixed_batch, args.steps))
            cpu_step_rates[name].append(trainer.one_thread_cpu_step_rate(fixed_batch, args.cpu_steps))
        for name, dataset in pipelines.items():
            sampler = crops[name.rsplit(", ", 1)[1]]["sampler"]
            sampler.set_epoch(round_)
            batches = list(itertools.islice(itertools.cycle(sampler), args.loading_batches))
            wall, cpu = loading_rate(dataset, batches)
            loading_rates[name].append(wall)
            cpu_loading_rates[name].append(cpu)
        print(
            f"round {round_ + 1}/{args.rounds}: step "
            + ", ".join(f"{name} {rates[-1]:.1f}" for name, rates in step_rates.items())
            + " img/s; loading "
            + ", ".join(f"{name} {rates[-1]:.0f}" for name, rates in loading_rates.items())
            + " img/s"
        )
    step_rate = statistics.median(step_rates["default"])
    channels_last_speedup = median_ratio(step_rates["channels_last"], step_rates["default"])
    cpu_channels_last_speedup = median_ratio(cpu_step_rates["channels_last"], cpu_step_rates["default"])
    print(
        f"\n{args.backbone} at {args.image_size} px, batch {batch_size}, {threads} threads, {precision}: training step "
        f"{step_rate:.1f} images/s; channels-last {channels_last_speedup:.2f}× that ({cpu_channels_last_speedup:.2f}× "
        f"on one thread's CPU time; first-step losses {losses[0]:.6f} / {losses[1]:.6f}); load average "
        f"{load_before[0]:.1f} → {os.getloadavg()[0]:.1f}\n"
    )

    # By CPU time, the step may use all `threads` cores perfectly (at most `threads` × its one-thread rate): the
    # ratio is a lower bound of the idle machine's, whatever else ran meanwhile.
    loading = [
        {
            "pipeline": name,
            "loading_images_per_second": statistics.median(rates),
            "loading_over_step": median_ratio(rates, step_rates[TRAIN_LAYOUT]),
            "cpu_loading_images_per_second": statistics.median(cpu_loading_rates[name]),
            "cpu_loading_over_step_bound": median_ratio(
                cpu_loading_rates[name], [threads * rate for rate in cpu_step_rates[TRAIN_LAYOUT]]
            ),
        }
        for name, rates in loading_rates.items()
    ]
    print(
        f"| pipeline, crops | decode + augment img/s (1 thread) | × step rate ({TRAIN_LAYOUT}) | img/s of CPU time | "
        f"× {threads} × one-thread step rate (CPU time) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in loading:
        print(
            f"| {row['pipeline']} | {row['loading_images_per_second']:.0f} | {row['loading_over_step']:.1f} | "
            f"{row['cpu_loading_images_per_second']:.0f} | {row['cpu_loading_over_step_bound']:.1f} |"
        )

    # Fed steps, every setting once per round, alternately: one measurement of a few steps varied by ±15% here.
    trainer = trainers[TRAIN_LAYOUT]
    settings = [(name, workers) for name in crops for workers in (0, 1, 2)]
    fed_rates, adjacent_rates = {key: [] for key in settings}, {key: [] for key in settings}
    for _round in range(args.fed_rounds):
        for name, workers in settings:
            # Each against the step rate measured right before it: the machine may have changed since the rounds.
            adjacent_rates[name, workers].append(trainer.step_rate(fixed_batch, args.steps))
            dataset = pipelines[f"TrainAugmentation, {name}"]
            fed_rates[name, workers].append(
                loader_step_rate(trainer, dataset, crops[name]["sampler"], workers, args.fed_steps)
            )
    rows = []
    for name, workers in settings:
        load = next(row for row in loading if row["pipeline"] == f"TrainAugmentation, {name}")
        fed, adjacent = fed_rates[name, workers], adjacent_rates[name, workers]
        rows.append(
            {
                "crops": name,
                "median_crop_px": crops[name]["median_crop_px"],
                "loading_images_per_second": load["loading_images_per_second"],
                "loading_over_step": load["loading_over_step"],
                "workers": workers,
                "fed_training_images_per_second": statistics.median(fed),
                "adjacent_step_images_per_second": statistics.median(adjacent),
                "fed_over_step": median_ratio(fed, adjacent),
                "fed_rounds": fed,
            }
        )

    print(
        "\n| crops | median crop px | decode+augment img/s (1 thread) | × step rate | workers | "
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
        "batch": f"{args.brands_per_batch}×{args.images_per_brand_in_batch}",
        "mixed_precision": precision,
        "train_layout": TRAIN_LAYOUT,
        "step_images_per_second": step_rate,
        "channels_last_step_images_per_second": statistics.median(step_rates["channels_last"]),
        "channels_last_over_default": channels_last_speedup,
        "one_thread_cpu_step_images_per_second": statistics.median(cpu_step_rates["default"]),
        "one_thread_cpu_channels_last_over_default": cpu_channels_last_speedup,
        "first_step_losses": {"default": losses[0], "channels_last": losses[1]},
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "step_rounds": step_rates,
        "one_thread_cpu_step_rounds": cpu_step_rates,
        "loading_rounds": loading_rates,
        "cpu_loading_rounds": cpu_loading_rates,
        "loading": loading,
        "rows": rows,
    }
    write_result("data_pipeline", result, args.output)
    return result


if __name__ == "__main__":
    main()
