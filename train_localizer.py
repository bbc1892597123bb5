#!/usr/bin/env python
"""Train the class-agnostic logo localiser (torchvision FCOS, one "logo" class) on generated scenes, with Accelerate.

    python train_localizer.py                                        # the generated benchmark, a CPU-sized model
    python train_localizer.py --data_dir data/localizer-scenes --num_epochs 8   # a larger scene pool
    python train_localizer.py --resume_from_checkpoint latest        # continue a run exactly where it stopped
    python train_localizer.py --init_from checkpoints/logo-localizer-resnet-small   # go on from the shipped model

The loop reads top to bottom like `train.py`: scenes of training brands only (every logo boxed, distractors of no
brand included), box-aware augmentation, the localiser (its backbone started from the shipped embedder's by default),
AdamW with warm-up and cosine decay, then epochs of training, validation on scenes of unseen validation brands
(class-agnostic AP and recall at IoU 0.5), atomic checkpoints and the best model saved with `save_pretrained`, its
score threshold calibrated on those validation scenes (best F1).
"""

from __future__ import annotations

from training_arguments import LocalizerTrainingArguments, parse_arguments_with_config


def parse_args(argv: list[str] | None = None) -> LocalizerTrainingArguments:
    """The command line of `train_localizer.py` (flags, or a recipe then flags) as its arguments: a bad option, value
    or path exits (status 2) with one line on stderr."""
    return parse_arguments_with_config(LocalizerTrainingArguments, argv)


if __name__ == "__main__":
    # The command line first, with nothing heavy imported yet (`training_arguments`): `--help` and a mistake in it
    # come back at once, not after the 15-25 s that the imports below take; main() is given what it parsed.
    command_line = parse_args()

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dataset_scripts import load_logodet3k
from dataset_scripts.scenes import SceneDataset, build_localizer_train_transform, collate_scenes, split_scenes
from modeling_logo import (
    LogoEmbeddingModel,
    LogoLocalizerConfig,
    LogoLocalizerImageProcessor,
    LogoLocalizerModel,
)
from modeling_logo.callbacks import TrainingState
from modeling_logo.detection import LogoLocalizer
from modeling_logo.evaluation import localization_protocol, seeded_sample
from train import (
    ensure_data,
    latest_checkpoint,
    resolve_mixed_precision,
    save_checkpoint,
    write_metrics_csv,
)


def build_model(args: LocalizerTrainingArguments) -> LogoLocalizerModel:
    if args.init_from:
        return LogoLocalizerModel.from_pretrained(args.init_from)
    config = LogoLocalizerConfig(backbone=args.backbone, image_size=args.image_size, fpn_channels=args.fpn_channels)
    model = LogoLocalizerModel(config)
    if args.backbone_from_embedder:
        model.load_backbone_from(LogoEmbeddingModel.from_pretrained(args.backbone_from_embedder))
    return model


def lr_multiplier(step: int, total_steps: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def write_history(history: list[dict], output_dir: Path) -> None:
    """`metrics.csv` and `curves.png` (training loss, validation AP50 and recall per epoch)."""
    if not history:
        return
    write_metrics_csv(history, output_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    axes[0].plot(epochs, [row["train_loss"] for row in history], marker="o", label="training loss")
    for key in ("AP50", "recall50", "f1"):
        axes[1].plot(epochs, [row[key] for row in history], marker="o", label=f"validation {key}")
    for axis, title in zip(axes, ("loss", "validation scenes (unseen brands)")):
        axis.set(title=title, xlabel="epoch")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(output_dir / "curves.png", dpi=100)
    plt.close(figure)


def model_card(model: LogoLocalizerModel, metrics: dict, state: TrainingState, args) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in metrics.items() if isinstance(value, float))
    return f"""---
library_name: transformers
pipeline_tag: object-detection
license: apache-2.0
tags:
- logo-detection
- class-agnostic
- fcos
---
# Logo localiser ({model.config.backbone} + FPN, FCOS, {model.config.image_size} px)

Finds every logo in a photo, of any brand (one class: "logo"); `modeling_logo.LogoGallery.detect` then names each
box's brand with the logo embedder, or calls it unknown. Trained from random weights (backbone started from the
logo embedder's) on generated scenes of training brands only; validated on scenes of unseen validation brands.
The box score threshold `config.score_threshold = {model.config.score_threshold:.3f}` is the best-F1 one on those
validation scenes.

```python
from modeling_logo import LogoLocalizer
localizer = LogoLocalizer.from_pretrained("{args.output_dir}")
localizer("photo.jpg")  # [{{"boxes": (n, 4), "scores": (n,)}}]
```

## Validation (scenes of unseen brands, epoch {state.best_epoch}, IoU 0.5)

| metric | value |
| --- | --- |
{rows}

## Training configuration

```json
{json.dumps(asdict(args), indent=2)}
```
"""


def main(argv: list[str] | None = None, *, args: LocalizerTrainingArguments | None = None) -> TrainingState:
    """Train as `python train_localizer.py ARGS` does (`argv`, or `args` parsed already by `parse_args`)."""
    args = parse_args(argv) if args is None else args
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(args.mixed_precision, PartialState().device.type)
    )
    set_seed(args.seed)

    # ---- Model first: the data is prepared at its size
    model = build_model(args)
    processor = LogoLocalizerImageProcessor.from_model_config(model.config)

    # ---- Data: scenes whose every logo is of the split's own brands (or of none), box-aware augmentation
    data_dir = ensure_data(args, accelerator)
    splits = load_logodet3k(data_dir, "detection", split_scheme=args.split_scheme, cache_dir=args.dataset_cache_dir)
    train_scenes = split_scenes(splits["train"])
    validation_scenes = seeded_sample(split_scenes(splits["validation"]), args.validation_scenes, args.seed)
    train_dataset = SceneDataset(
        train_scenes, processor, build_localizer_train_transform(zoom_out=args.zoom_out), seed=args.seed
    )
    train_loader = DataLoader(
        train_dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_scenes,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    steps_per_epoch = len(train_loader) // accelerator.num_processes
    if args.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_scenes)} training scenes make no batch of --batch_size {args.batch_size}.")
    accelerator.print(
        f"{len(train_scenes)} training scenes, {len(validation_scenes)} validation scenes (unseen brands); "
        f"{steps_per_epoch} steps per epoch."
    )

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    total_steps = steps_per_epoch * args.num_epochs * accelerator.num_processes
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, args.warmup_steps * accelerator.num_processes)
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    # ---- Resume
    state = TrainingState()
    checkpoint = latest_checkpoint(args)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = TrainingState(**json.loads((checkpoint / "training_state.json").read_text()))
        accelerator.print(f"Resumed from {checkpoint} (epoch {state.epoch}, step {state.global_step}).")

    # ---- Train
    start = time.perf_counter()
    while state.epoch < args.num_epochs:
        train_dataset.set_epoch(state.epoch)
        model.train()
        loader = accelerator.skip_first_batches(train_loader, state.step_in_epoch)
        loader.set_epoch(state.epoch)
        losses = []
        progress = tqdm(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {state.epoch}",
            disable=not accelerator.is_local_main_process,
        )
        epoch_start = time.perf_counter()
        for batch in loader:
            if state.step_in_epoch >= steps_per_epoch:
                break
            outputs = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
            accelerator.backward(outputs.loss)
            if args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(outputs.loss.item())
            state.global_step += 1
            state.step_in_epoch += 1
            progress.update(1)
            progress.set_postfix(
                loss=f"{np.mean(losses[-20:]):.3f}",
                **{name[:5]: f"{value.item():.3f}" for name, value in outputs.loss_dict.items()},
            )
            if args.checkpointing_steps and state.global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, state, args)
        progress.close()
        train_seconds = time.perf_counter() - epoch_start

        # ---- Validate on scenes of unseen brands; keep the best model with its calibrated score threshold
        model.eval()
        # PyTorch, not an ONNX export: under mixed precision Accelerate wraps the model's forward in autocast, which an
        # export would trace into bf16 casts that ONNX Runtime cannot load (seen on an AVX512-BF16 CPU).
        metrics = localization_protocol(LogoLocalizer(unwrapped, processor, runtime="torch"), validation_scenes)
        metrics.update(train_loss=float(np.mean(losses)) if losses else float("nan"), train_seconds=train_seconds)
        improved = state.record(metrics["AP50"])
        state.history.append({"epoch": state.epoch, "step": state.global_step, **metrics})
        accelerator.print(
            f"epoch {state.epoch}: loss {metrics['train_loss']:.3f} | validation scenes (unseen brands): "
            f"AP50 {metrics['AP50']:.3f}, recall {metrics['recall50']:.3f}, best F1 {metrics['f1']:.3f} at score "
            f"{metrics['threshold']:.2f} | {train_seconds:.0f} s"
        )
        if improved and accelerator.is_main_process:
            unwrapped.config.score_threshold = metrics["threshold"]
            unwrapped.save_pretrained(output_dir)
            processor.save_pretrained(output_dir)
            (output_dir / "README.md").write_text(model_card(unwrapped, metrics, state, args), encoding="utf-8")
        state.epoch += 1
        state.step_in_epoch = 0
        save_checkpoint(accelerator, state, args)
        if accelerator.is_main_process:
            write_history(state.history, output_dir)

    accelerator.end_training()
    if accelerator.is_main_process:
        (output_dir / "training_state.json").write_text(json.dumps(state.to_dict(), indent=2))
        print(
            f"Done in {time.perf_counter() - start:.0f} s: best validation AP50 {state.best_metric:.3f} at epoch "
            f"{state.best_epoch}. Model saved in {output_dir}."
        )
    return state


if __name__ == "__main__":
    main(args=command_line)
