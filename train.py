#!/usr/bin/env python
"""Train a few-shot logo embedding model with metric learning, on one CPU, one GPU or many, with Accelerate.

    python train.py                                   # the generated benchmark, a CPU-sized model
    accelerate launch train.py --config configs/paper-resnet50.yaml   # the paper's configuration, on GPUs
    python train.py --resume_from_checkpoint latest  # continue a run exactly where it stopped
    torchrun --nproc_per_node 2 train.py              # one run split across two processes (CPU or GPUs)

The loop reads top to bottom: data (brand-disjoint splits, P×K batches, augmentations), model (backbone frozen
first, stages unfrozen on schedule), loss and miner (pytorch-metric-learning), then epochs of training, validation on
unseen brands, checkpoints and the best model saved with `save_pretrained`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from dataset_scripts import (
    PairCollator,
    PKBatchSampler,
    TripletCollator,
    brand_names,
    build_train_transform,
    collate_pk_batch,
    load_logodet3k,
    load_same_brands,
)
from dataset_scripts.feature_cache import CachedFeatureDataset, compute_backbone_features
from dataset_scripts.transforms import BOX_JITTER_CONTEXT, AugmentedDataset
from logo_evaluation.settings import check_data_dir
from modeling_logo import BACKBONE_STAGES, LogoEmbeddingConfig, LogoEmbeddingModel, LogoImageProcessor
from modeling_logo.callbacks import (
    CollapseDetector,
    EarlyStopping,
    ProgressiveUnfreezing,
    TrainingCallback,
    TrainingState,
)
from modeling_logo.detection import CROP_MARGIN
from modeling_logo.evaluation import (
    EmbeddedSplit,
    by_design,
    calibrate_threshold,
    embed_split,
    paper_protocol,
    retrieval_protocol,
    seeded_sample,
)
from modeling_logo.losses import (
    CLASS_PROXY_LOSSES,
    DEFAULT_MINERS,
    LOSSES,
    MINERS,
    batch_statistics,
    build_loss,
    build_miner,
)
from modeling_logo.modeling_logo import is_local_path


logger = logging.getLogger("train")

DEFAULT_DATA_DIR = "data/synthetic-logos"
# The cross-world test of the default benchmark: its held-out brands drawn in visual worlds it has none of.
DEFAULT_OUT_OF_WORLD_DIR = "data/synthetic-logos-other-worlds"
# Where `python train.py` starts by default (found next to this script when run from elsewhere).
SHIPPED_CHECKPOINT = "checkpoints/logo-embedding-resnet-small"
# Default learning rates (AdamW): a new network, and a trained one continued with --init_from (a smaller step keeps
# what it knows: 5e-4 held the shipped checkpoint's validation mAP on the 300-brand benchmark, 0.63 after 4 epochs).
NEW_MODEL_LEARNING_RATE, CONTINUED_LEARNING_RATE = 2e-3, 5e-4


@dataclass
class EmbeddingTrainingArguments:
    """Arguments of `train.py`; also readable from a YAML or JSON file given as the only argument or `--config`."""

    # data
    data_dir: str | None = field(
        default=None, metadata={"help": f"LogoDet-3K layout. Default: the generated benchmark in {DEFAULT_DATA_DIR}."}
    )
    generate_brands: int = field(default=300, metadata={"help": "Brands of the generated benchmark, if generated."})
    generate_images_per_brand: int = field(default=12, metadata={"help": "Images per generated brand."})
    builder_config: str = field(default="crops", metadata={"help": "crops (one example per box) or images."})
    split_scheme: str = field(
        default="hash",
        metadata={"help": "hash (brand-disjoint by name: any generated set agrees), brands (stratified) or paper."},
    )
    train_fraction: float = field(default=0.8, metadata={"help": "Share of brands for training (hash, brands)."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of brands for validation."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache for the prepared splits."})
    crop_max_size: int | None = field(
        default=None,
        metadata={
            "help": "Longest side of the stored crops (shrunk once when the data is prepared, so that loading "
            "keeps up with training). Default: 2 × image_size; 0 keeps crops at full size."
        },
    )
    box_jitter: float = field(
        default=0.0,
        metadata={
            "help": "Train on the views a localiser's boxes give: each training box jittered (sides scaled by "
            "e^U(-j, j), centre moved by U(-j/2, j/2); 0.2 leaves a mean IoU of 0.78) before the usual augmentation, "
            "from crops prepared with more context. 0: the true boxes (crops config only)."
        },
    )
    # model
    init_from: str | None = field(
        default=SHIPPED_CHECKPOINT,
        metadata={
            "help": "Start from a saved model (directory or Hub id). Default: the shipped checkpoint, so that a short "
            "run ends with a model that beats the baselines; 'none' trains a new model from the architecture flags."
        },
    )
    backbone: str = field(default="resnet-small", metadata={"help": "timm ResNet name or a preset (resnet-small)."})
    image_size: int = field(
        default=96, metadata={"help": "Input side in pixels (a new model; --init_from keeps its own)."}
    )
    embedding_size: int = field(
        default=128, metadata={"help": "Dimension of the L2-normalised embedding (new model)."}
    )
    hidden_size: int = field(default=256, metadata={"help": "Width of the head's hidden layer (new model)."})
    head_dropout: float = field(default=0.3, metadata={"help": "Dropout in the head (new model; the paper: 0.3)."})
    pretrained_backbone: str | None = field(
        default=None, metadata={"help": "'imagenet' for timm's weights, or a state-dict file. Default: random init."}
    )
    # loss
    loss: str = field(default="multi-similarity", metadata={"help": f"One of {LOSSES}."})
    miner: str | None = field(default=None, metadata={"help": f"One of {MINERS}; default depends on the loss."})
    margin: float | None = field(default=None, metadata={"help": "Loss margin (the loss's default when unset)."})
    # optimisation
    optimizer: str = field(default="adamw", metadata={"help": "adamw, or sgd (momentum 0.9, the paper)."})
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": f"Head learning rate. Default: {NEW_MODEL_LEARNING_RATE} for a new model, "
            f"{CONTINUED_LEARNING_RATE} with --init_from."
        },
    )
    backbone_lr_factor: float = field(
        default=1.0, metadata={"help": "Backbone LR = factor × head LR (the paper: 0.03-0.5 for a pretrained one)."}
    )
    loss_lr_factor: float = field(
        default=100.0, metadata={"help": "Proxy LR = factor × head LR (proxy-anchor, normalized-softmax)."}
    )
    weight_decay: float = field(default=1e-4, metadata={"help": "Weight decay of the optimizer."})
    unfreeze: str = field(
        default="", metadata={"help": "stage:epoch list, e.g. 'layer4:15' (the paper); '' unfreezes nothing."}
    )
    unfreeze_lr_decay: float = field(default=0.2, metadata={"help": "LR factor at each unfreezing (the paper: 0.2)."})
    freeze_other_stages: bool = field(
        default=False, metadata={"help": "Freeze the stages the schedule does not unfreeze (the paper: true)."}
    )
    lr_scheduler: str = field(default="cosine", metadata={"help": "constant or cosine."})
    warmup_epochs: float = field(default=0.3, metadata={"help": "Linear LR warm-up, in epochs."})
    num_epochs: int = field(
        default=6, metadata={"help": "Epochs to train (an epoch: every training brand's images once)."}
    )
    max_steps_per_epoch: int | None = field(default=None, metadata={"help": "Cap steps per epoch (quick runs)."})
    brands_per_batch: int = field(default=32, metadata={"help": "P of the P×K batch."})
    images_per_brand: int = field(default=4, metadata={"help": "K of the P×K batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    max_grad_norm: float | None = field(default=5.0, metadata={"help": "Gradient clipping norm (None: no clipping)."})
    mixed_precision: str = field(
        default="auto", metadata={"help": "auto (bf16 where the hardware has it), no, bf16, or fp16 (GPU only)."}
    )
    channels_last: bool = field(
        default=True,
        metadata={
            "help": "Train in the channels-last memory layout: 1.25-1.3x the steps per second of the default layout "
            "on a 2-core AVX2 CPU (benchmarks/data_pipeline.py), the layout GPUs' tensor cores want too."
        },
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the model's initialisation, the batches and the augmentation."}
    )
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes."})
    frozen_feature_views: int = field(
        default=0,
        metadata={
            "help": "While the whole backbone is frozen, train the head on backbone features of N cached "
            "augmentations per image instead of running the backbone every step (much faster epochs); "
            "switches off at unfreezing. 0: off."
        },
    )
    # evaluation, checkpoints, outputs
    threshold_target: str = field(
        default="f1", metadata={"help": "How the saved open-set threshold is chosen: f1, precision@0.95, far@0.01."}
    )
    metric_for_best_model: str = field(
        default="retrieval_mAP",
        metadata={"help": "Validation metric that picks the best model (retrieval_mAP uses every pair: least noisy)."},
    )
    early_stopping_patience: int | None = None
    eval_on_start: bool | None = field(
        default=None,
        metadata={
            "help": "Also validate before training (epoch -1): where --init_from starts, which then stays the best "
            "model unless training beats it. Default: true with --init_from."
        },
    )
    train_sample: int = field(default=500, metadata={"help": "Training images for the memorisation mAP each epoch."})
    validation_sample: int | None = field(
        default=None,
        metadata={
            "help": "Validate each epoch on a fixed seeded sample of this many validation images (default: all)."
        },
    )
    out_of_world_dir: str | None = field(
        default="auto",
        metadata={
            "help": "The cross-world test: a set in the same layout whose brands are drawn in visual worlds (photo "
            "families, composition styles) held out of training; its validation brands are validated every epoch "
            "beside the in-world ones, by brand and by design, and its test brands in the final evaluation. Never "
            "used to pick the best model. 'auto': generated for the default benchmark (its held-out brands in "
            "dataset_scripts.synthesize.OTHER_WORLDS), off for other data; 'none': off."
        },
    )
    output_dir: str = field(
        default="runs/logo-model", metadata={"help": "Where the best model, checkpoints, logs and the report go."}
    )
    checkpointing_steps: int | None = field(default=None, metadata={"help": "Also checkpoint every N steps."})
    keep_last_checkpoints: int = field(default=2, metadata={"help": "Checkpoints kept (older ones are deleted)."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "A checkpoint folder or 'latest'."})
    evaluate_on_test: bool = field(
        default=True, metadata={"help": "At the end, run logo-eval on the test brands beside the untrained baseline."}
    )
    test_episodes: int = field(default=500, metadata={"help": "Open-set episodes per setting of that evaluation."})
    report_to: str = field(default="tensorboard", metadata={"help": "An Accelerate tracker, 'all' or 'none'."})
    push_to_hub: bool = False
    hub_model_id: str | None = None

    def __post_init__(self):
        if self.init_from in ("none", "None", ""):
            self.init_from = None
        elif self.init_from == SHIPPED_CHECKPOINT and not os.path.isdir(self.init_from):
            self.init_from = str(Path(__file__).resolve().parent / SHIPPED_CHECKPOINT)  # run from another folder
        if self.out_of_world_dir in ("none", "None", ""):
            self.out_of_world_dir = None
        if self.learning_rate is None:
            self.learning_rate = CONTINUED_LEARNING_RATE if self.init_from else NEW_MODEL_LEARNING_RATE
        if self.eval_on_start is None:
            self.eval_on_start = self.init_from is not None
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}.")
        self.miner = self.miner or DEFAULT_MINERS[self.loss]
        if self.miner not in MINERS:
            raise ValueError(f"--miner must be one of {MINERS}, got {self.miner!r}.")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"--optimizer must be sgd or adamw, got {self.optimizer!r}.")
        if self.lr_scheduler not in ("constant", "cosine"):
            raise ValueError(f"--lr_scheduler must be constant or cosine, got {self.lr_scheduler!r}.")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"--mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}.")
        if self.num_epochs < 1 or self.brands_per_batch < 2 or self.images_per_brand < 2:
            raise ValueError("Need --num_epochs >= 1, --brands_per_batch >= 2 and --images_per_brand >= 2.")
        if not 0 <= self.box_jitter <= 0.5:
            raise ValueError(f"--box_jitter must be in [0, 0.5], got {self.box_jitter}.")
        if self.box_jitter and self.builder_config != "crops":
            raise ValueError("--box_jitter jitters the boxes of the crops config; it needs --builder_config crops.")


class UsageError(ValueError):
    """A mistake in how the run was asked for (flags that contradict the model or the data): `python train.py`
    prints it as one line and exits with status 2, as argparse does for the arguments themselves."""


def check_paths(args) -> None:
    """The paths a run reads, checked when the arguments are parsed, before the data or a model is touched: a typo
    is one line at once, not a traceback minutes later."""
    if getattr(args, "data_dir", None) is not None:
        check_data_dir(args.data_dir)  # logo-eval's check: a folder in the LogoDet-3K layout
    if getattr(args, "out_of_world_dir", None) not in (None, "auto"):
        check_data_dir(args.out_of_world_dir)
    for flag in ("init_from", "pretrained_backbone"):
        value = getattr(args, flag, None)
        if value and value != "imagenet" and is_local_path(value) and not os.path.exists(value):
            raise ValueError(f"--{flag} {value}: no such file or directory.")
    checkpoint = getattr(args, "resume_from_checkpoint", None)
    if checkpoint and checkpoint != "latest" and not Path(checkpoint).is_dir():
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: no such checkpoint folder (or pass 'latest').")


def parse_args(argv: list[str] | None = None) -> EmbeddingTrainingArguments:
    return parse_arguments_with_config(EmbeddingTrainingArguments, argv)


def read_recipe(path: str, arguments_class) -> dict:
    """The options a YAML or JSON recipe sets, as written (defaults that depend on other options, such as the
    learning rate on --init_from, are resolved once the flags are in)."""
    import yaml

    with open(path, encoding="utf-8") as file:
        values = (json.load(file) if path.endswith(".json") else yaml.safe_load(file)) or {}
    known = {item.name for item in fields(arguments_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path} sets unknown options: {', '.join(unknown)}.")
    return values


def parse_arguments_with_config(arguments_class, argv: list[str] | None = None):
    """Parse `argv` into `arguments_class`: `script.py recipe.yaml --flag value` (or `--config recipe.yaml`) reads a
    YAML or JSON file first, and flags override it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(arguments_class)
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = ["--config", *argv]
    # Mistakes in the arguments (a bad value, a missing path) end in one line and exit status 2, as argparse's own.
    try:
        if "--config" in argv:
            position = argv.index("--config")
            if position + 1 == len(argv) or not Path(argv[position + 1]).is_file():
                parser.error(f"--config {' '.join(argv[position + 1 : position + 2])}: no such file.")
            path, rest = argv[position + 1], argv[:position] + argv[position + 2 :]
            parser.set_defaults(**read_recipe(path, arguments_class))  # the file's values; flags override them
            argv = rest
        (args,) = parser.parse_args_into_dataclasses(argv)
        check_paths(args)  # after the flags: a config file's paths may be overridden
    except ValueError as error:
        parser.error(str(error))
    return args


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it, bf16 autocast is emulated and
    about 10x *slower* than fp32 (measured on an AVX2 EPYC: ResNet-18 at 128 px, 56 vs 8 img/s)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_mixed_precision(requested: str, device_type: str) -> str:
    """The precision to run: `auto` picks the fastest correct one for the device; impossible requests are mapped
    (Accelerate accepts fp16 on CPU and silently runs fp32) with a warning."""
    if device_type == "cpu":
        native = cpu_has_native_bf16()
        if requested == "auto":
            return "bf16" if native else "no"
        if requested == "fp16":
            logger.warning("fp16 autocast does nothing on CPU; using %s instead.", "bf16" if native else "fp32")
            return "bf16" if native else "no"
        if requested == "bf16" and not native:
            logger.warning("This CPU has no native bf16: bf16 autocast runs about 10x slower than fp32 here.")
        return requested
    if requested == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
    return requested


def ensure_data(args: EmbeddingTrainingArguments, accelerator: Accelerator) -> str:
    """The data directory: the given one, or the generated benchmark (generated by the main process if missing)."""
    if args.data_dir:
        return args.data_dir
    if accelerator.is_main_process and not any(Path(DEFAULT_DATA_DIR).glob("*/*/*.xml")):
        from dataset_scripts.synthesize import synthesize

        print(f"Generating the default benchmark in {DEFAULT_DATA_DIR} (once) ...")
        print(
            synthesize(DEFAULT_DATA_DIR, args.generate_brands, args.generate_images_per_brand, seed=0, overwrite=True)
        )
    accelerator.wait_for_everyone()
    return DEFAULT_DATA_DIR


def ensure_out_of_world_data(args: EmbeddingTrainingArguments, accelerator: Accelerator, splits) -> str | None:
    """The cross-world test's data (`--out_of_world_dir`). With `auto` on the default benchmark: its held-out brands
    (those of `splits`' validation and test) drawn again in the worlds it has none of (`OTHER_WORLDS`), generated
    once by the main process; other data sets have worlds of their own, unknown here, so `auto` is off for them."""
    if args.out_of_world_dir != "auto":
        return args.out_of_world_dir
    if args.data_dir and Path(args.data_dir).resolve() != Path(DEFAULT_DATA_DIR).resolve():
        return None
    from dataset_scripts.synthesize import OTHER_WORLDS, PHOTO_FAMILIES, synthesize

    generated = any(Path(DEFAULT_OUT_OF_WORLD_DIR).glob("*/*/*.xml"))
    missing = [PHOTO_FAMILIES[name] for name in OTHER_WORLDS["photo_families"] if not PHOTO_FAMILIES[name].available]
    if missing and not generated:
        accelerator.print(
            f"The cross-world test is skipped: its photo family {missing[0].name!r} needs `{missing[0].install}`."
        )
        return None
    if accelerator.is_main_process and not generated:
        wanted = {name.casefold() for name in brand_names(splits["validation"]) + brand_names(splits["test"])}
        print(f"Generating the cross-world test in {DEFAULT_OUT_OF_WORLD_DIR} (once): {len(wanted)} held-out brands")
        summary = synthesize(
            DEFAULT_OUT_OF_WORLD_DIR,
            len(wanted),
            args.generate_images_per_brand,
            seed=0,
            overwrite=True,
            brand_filter=lambda brand: brand.folder.casefold() in wanted,
            **OTHER_WORLDS,
        )
        print(summary)
    accelerator.wait_for_everyone()
    return DEFAULT_OUT_OF_WORLD_DIR


def split_options(args: EmbeddingTrainingArguments) -> dict:
    """How the data set is split: the same for training and for the final evaluation."""
    return {
        "cache_dir": args.dataset_cache_dir,
        "split_scheme": args.split_scheme,
        "train_fraction": args.train_fraction,
        "validation_fraction": args.validation_fraction,
    }


# The flags that shape a new model; with --init_from the saved model has its own.
MODEL_FLAGS = ("backbone", "image_size", "embedding_size", "hidden_size", "head_dropout")


def check_model_flags(args: EmbeddingTrainingArguments, config: LogoEmbeddingConfig) -> None:
    """With `--init_from`, the saved model decides its architecture and sizes: a flag that asks for another one
    would be ignored, so it is an error (a flag left at its default, or equal to the model's value, is fine)."""
    defaults = {item.name: item.default for item in fields(EmbeddingTrainingArguments)}
    conflicts = [
        f"--{name} {getattr(args, name)} (the model has {getattr(config, name)})"
        for name in MODEL_FLAGS
        if getattr(args, name) != defaults[name] and getattr(args, name) != getattr(config, name)
    ]
    if args.pretrained_backbone:
        conflicts.append(f"--pretrained_backbone {args.pretrained_backbone} (the model's backbone is already trained)")
    if conflicts:
        raise UsageError(
            f"--init_from {args.init_from} keeps the saved model's architecture and sizes; remove "
            + ", ".join(conflicts)
            + ", or pass --init_from none to train a new model from them."
        )


def build_model(args: EmbeddingTrainingArguments) -> tuple[LogoEmbeddingModel, LogoImageProcessor]:
    """The model to train and its image processor: the saved ones with `--init_from` (the processor from its
    `preprocessor_config.json`), else a new model from the flags with the processor its config implies."""
    if args.init_from:
        model = LogoEmbeddingModel.from_pretrained(args.init_from)
        check_model_flags(args, model.config)
        try:
            return model, LogoImageProcessor.from_pretrained(args.init_from)
        except OSError:  # a model saved without its processor
            return model, LogoImageProcessor.from_model_config(model.config)
    config = LogoEmbeddingConfig(
        backbone=args.backbone,
        image_size=args.image_size,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        head_dropout=args.head_dropout,
    )
    pretrained = {None: False, "imagenet": True}.get(args.pretrained_backbone, args.pretrained_backbone)
    model = LogoEmbeddingModel(config, pretrained_backbone=pretrained)
    return model, LogoImageProcessor.from_model_config(model.config)


def gathered_criterion(loss_fn, miner, args: EmbeddingTrainingArguments, num_processes: int):
    """The loss and miner of the training step. Across processes, pair and triplet losses and their miners see the
    embeddings of every process (pytorch-metric-learning's distributed wrappers: each process computes the loss of
    the global batch, with gradients through its own part, times the number of processes to undo DDP's averaging),
    so a process mines negatives among the other processes' brands as in one big batch. Proxy losses
    (normalized-softmax, proxy-anchor) are left alone: their loss is a mean over examples, which DDP's gradient
    averaging already computes (exactly for normalized-softmax, approximately for proxy-anchor). The paper's random
    pairs and triplets (`--miner collator`) index each process's own batch, so their loss stays local too: DDP's
    averaging then gives the mean over every process's pairs, as one process on the global batch would."""
    if num_processes == 1 or args.loss in CLASS_PROXY_LOSSES or args.miner == "collator":
        return loss_fn, miner
    from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

    return DistributedLossWrapper(loss_fn), None if miner is None else DistributedMinerWrapper(miner)


def lr_multiplier(
    step: int, steps_per_epoch: int, args: EmbeddingTrainingArguments, unfreezing: ProgressiveUnfreezing
) -> float:
    """Warm-up, then constant or cosine decay, times the unfreezing decay of the step's epoch."""
    epoch = step // steps_per_epoch
    total, warmup = args.num_epochs * steps_per_epoch, args.warmup_epochs * steps_per_epoch
    if step < warmup:
        schedule = (step + 1) / warmup
    elif args.lr_scheduler == "cosine":
        schedule = 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    else:
        schedule = 1.0
    return schedule * unfreezing.lr_factor(epoch)


def has_accelerator_device() -> bool:
    """Whether torch sees a GPU (or another accelerator). Without one, every process of a multi-process launch must
    run on the CPU (Accelerate otherwise treats each `torchrun` process as a separate single-process run)."""
    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def freezes_parameters(unfreezing: ProgressiveUnfreezing, args: EmbeddingTrainingArguments) -> bool:
    """Whether some backbone stage is frozen in some epoch of this run (or skipped, in the cached-feature phase)."""
    return any(unfreezing.frozen_stages(epoch) for epoch in range(args.num_epochs))


def synchronize_buffers(model, accelerator: Accelerator) -> None:
    """Give every process the main process's BatchNorm statistics. Each process normalises its own batch, so their
    running statistics drift apart within a step; DDP broadcasts the main process's before every training forward,
    and this does it at the end of an epoch, so that every process then holds exactly the model that the main
    process validates and saves."""
    if accelerator.num_processes > 1:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def validate_on_main_process(accelerator: Accelerator, model, *arguments) -> dict:
    """[`validate`] once, on the main process, its metrics sent to every process, so that all processes record the
    same best model and take the same early-stopping decision (different decisions would hang the run)."""
    metrics = [validate(model, *arguments) if accelerator.is_main_process else None]
    return broadcast_object_list(metrics)[0]


@torch.no_grad()
def validate(model, processor, validation_split, train_sample, loss_fn, miner, args, out_of_world=None) -> dict:
    """Validation on unseen brands (loss, best-F1 threshold, mAP, J) and the training-brand mAP beside it; with
    `out_of_world` (the cross-world set's validation brands), their retrieval mAP in the other worlds too."""
    validation = embed_split(model, processor, validation_split, batch_size=64)
    paper = paper_protocol(validation, shots=1, seed=args.seed)
    metrics = {
        "f1": paper["f1"],
        "threshold": paper["threshold"],
        "mAP": paper["mAP"],
        "separation_fisher": paper["separation_fisher"],
        "separation_distance_ratio": paper["separation_distance_ratio"],
        "retrieval_mAP": retrieval_protocol(validation)["images/mAP"],
        "retrieval_mAP_by_design": retrieval_protocol(by_design(validation, validation_split["design"]))["images/mAP"],
        "similarity_threshold": calibrate_threshold(validation, args.threshold_target, seed=args.seed).threshold,
        "loss": validation_loss(validation, loss_fn, miner, args),
    }
    if len(train_sample):
        metrics["train_retrieval_mAP"] = retrieval_protocol(embed_split(model, processor, train_sample))["images/mAP"]
    if out_of_world is not None:
        other = embed_split(model, processor, out_of_world, batch_size=64)
        metrics["out_of_world_retrieval_mAP"] = retrieval_protocol(other)["images/mAP"]
        metrics["out_of_world_retrieval_mAP_by_design"] = retrieval_protocol(by_design(other, out_of_world["design"]))[
            "images/mAP"
        ]
        # The ratio compares the same brands in both worlds (galleries of the same size): the in-world validation
        # images of the brands the cross-world set has.
        wanted = {name.casefold() for name in brand_names(out_of_world)}
        names = validation_split.features["brand"].names
        same = np.isin(validation.labels, [i for i, name in enumerate(names) if name.casefold() in wanted])
        in_world = retrieval_protocol(EmbeddedSplit(validation.embeddings[same], validation.labels[same]))[
            "images/mAP"
        ]
        metrics["in_world_retrieval_mAP_same_brands"] = in_world
        metrics["out_of_world_ratio"] = metrics["out_of_world_retrieval_mAP"] / max(in_world, 1e-12)
    return metrics


def retrieval_summary(metrics: dict) -> str:
    """The retrieval mAPs of a validation, as printed after each epoch."""
    text = (
        f"validation {metrics['retrieval_mAP']:.3f} (by design {metrics['retrieval_mAP_by_design']:.3f}), "
        f"train brands {metrics.get('train_retrieval_mAP', float('nan')):.3f}"
    )
    if "out_of_world_retrieval_mAP" in metrics:
        text += (
            f", other worlds {metrics['out_of_world_retrieval_mAP']:.3f} "
            f"(by design {metrics['out_of_world_retrieval_mAP_by_design']:.3f}; "
            f"{metrics['out_of_world_ratio']:.2f} × the same brands in-world, "
            f"{metrics['in_world_retrieval_mAP_same_brands']:.3f})"
        )
    return text


def validation_loss(split: EmbeddedSplit, loss_fn, miner, args) -> float:
    """The training loss on P×K batches of validation embeddings (proxy losses have no proxies for new brands)."""
    if args.loss in CLASS_PROXY_LOSSES:
        return float("nan")
    usable = int(np.sum(np.unique(split.labels, return_counts=True)[1] >= 2))
    if usable < 2:
        return float("nan")
    # Validation holds fewer brands than training: smaller P, same K.
    sampler = PKBatchSampler(split.labels, min(args.brands_per_batch, usable), args.images_per_brand, seed=args.seed)
    values = []
    for batch in sampler:
        embeddings, labels = torch.from_numpy(split.embeddings[batch]), torch.from_numpy(split.labels[batch])
        values.append(float(loss_fn(embeddings, labels, miner(embeddings, labels) if miner else None)))
    return float(np.mean(values))


def save_checkpoint(accelerator: Accelerator, state: TrainingState, args: EmbeddingTrainingArguments) -> None:
    """`accelerator.save_state` into a temporary folder renamed when complete, so a kill never leaves half a
    checkpoint; keeps the last `keep_last_checkpoints`."""
    root = Path(args.output_dir) / "checkpoints"
    final = root / f"step_{state.global_step:08d}"
    if final.exists():
        return
    temporary = root / f".tmp_step_{state.global_step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()  # every process has written its part (e.g. its random states) before the rename
    if accelerator.is_main_process:
        (temporary / "training_state.json").write_text(json.dumps(state.to_dict(), indent=2))
        os.replace(temporary, final)
        for old in sorted(root.glob("step_*"))[: -args.keep_last_checkpoints]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def latest_checkpoint(args: EmbeddingTrainingArguments) -> Path | None:
    if args.resume_from_checkpoint in (None, ""):
        return None
    if args.resume_from_checkpoint != "latest":
        return Path(args.resume_from_checkpoint)
    checkpoints = sorted((Path(args.output_dir) / "checkpoints").glob("step_*"))
    if not checkpoints:
        logger.warning(
            "--resume_from_checkpoint latest: no checkpoint in %s, so training starts from the beginning.",
            Path(args.output_dir) / "checkpoints",
        )
        return None
    return checkpoints[-1]


def record_best(state: TrainingState, metrics: dict, args: EmbeddingTrainingArguments) -> bool:
    """Record a validation's `--metric_for_best_model` (lower is better only for the loss): whether it is a new best."""
    return state.record(metrics[args.metric_for_best_model], greater_is_better=args.metric_for_best_model != "loss")


def save_model(model, processor, metrics: dict, state: TrainingState, args: EmbeddingTrainingArguments) -> None:
    """The best model so far, loadable with `AutoModel.from_pretrained(output_dir)` (remote code included)."""
    model.config.similarity_threshold = metrics["similarity_threshold"]  # calibrated on validation brands
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    (Path(args.output_dir) / "README.md").write_text(model_card(model, metrics, state, args), encoding="utf-8")


def model_card_metadata(model, metrics: dict, args: EmbeddingTrainingArguments) -> str:
    """The card's YAML front matter, with the validation results as a `model-index` the Hub displays."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = Path(args.data_dir or DEFAULT_DATA_DIR).name
    results = [
        ("retrieval_mAP", "map", "Retrieval mAP, unseen validation brands", "validation"),
        ("mAP", "map", "Paper protocol 1-shot mAP, unseen validation brands", "validation"),
        ("f1", "f1", "Paper protocol 1-shot F1 at the best threshold, unseen validation brands", "validation"),
        ("train_retrieval_mAP", "map", "Retrieval mAP, training brands (memorisation)", "train"),
        (
            "out_of_world_retrieval_mAP",
            "map",
            "Retrieval mAP, unseen validation brands in visual worlds held out of training",
            "validation",
        ),
    ]
    data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=["logo-recognition", "few-shot", "metric-learning"],
        datasets=[dataset],
        model_name=Path(args.hub_model_id or args.output_dir).name,
        eval_results=[
            EvalResult(
                task_type="image-feature-extraction",
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=split,
                metric_type=kind,
                metric_name=name,
                metric_value=round(float(metrics[key]), 4),
            )
            for key, kind, name, split in results
            if isinstance(metrics.get(key), float) and math.isfinite(metrics[key])
        ]
        or None,
    )
    return data.to_yaml()


def model_card(model, metrics: dict, state: TrainingState, args: EmbeddingTrainingArguments) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in metrics.items() if isinstance(value, float))
    when = (
        f"epoch {state.best_epoch}"
        if state.best_epoch is None or state.best_epoch >= 0
        else f"before training: no epoch beat the model it started from, {args.init_from}"
    )
    config = json.dumps(asdict(args), indent=2)
    return f"""---
{model_card_metadata(model, metrics, args)}
---
# Logo embedding model ({model.config.backbone}, {model.config.image_size} px, {args.loss} loss)

Embeds an image of a logo into a {model.config.embedding_size}-d unit vector; images of the same brand are close,
also for brands never seen in training. Register a brand from 1-5 shots and recognise it with
`modeling_logo.LogoGallery`; the open-set threshold `config.similarity_threshold = {model.config.similarity_threshold:.3f}`
(cosine) was chosen on validation brands for `{args.threshold_target}` (`modeling_logo.evaluation.calibrate_threshold`).

```python
from transformers import AutoModel
model = AutoModel.from_pretrained("{args.hub_model_id or args.output_dir}", trust_remote_code=True)
```

## Validation (unseen brands, {when})

| metric | value |
| --- | --- |
{rows}

`train_retrieval_mAP` is measured on training brands: the gap to `retrieval_mAP` shows memorisation.
`retrieval_mAP` counts a brand's other designs as matches (by brand), `retrieval_mAP_by_design` only its own design.
{cross_world_note(metrics, args)}

## Training configuration

```json
{config}
```
"""


def cross_world_note(metrics: dict, args: EmbeddingTrainingArguments) -> str:
    """The card's sentence on the cross-world test: what the `out_of_world_*` rows are, or that it did not run."""
    if "out_of_world_retrieval_mAP" not in metrics:
        return (
            "The cross-world test did not run (`--out_of_world_dir`): no number here says how the model does in "
            "other visual worlds."
        )
    return (
        "`out_of_world_*` rows are the cross-world test: the same validation brands drawn in visual worlds held out "
        f"of training (`{args.out_of_world_dir}`), never used to pick the model; `out_of_world_ratio` is their "
        "retrieval mAP over that of the same brands' in-world images (`in_world_retrieval_mAP_same_brands`)."
    )


def write_metrics_csv(history: list[dict], output_dir: Path) -> None:
    """`metrics.csv`: one row per validation, the columns of the last row."""
    with open(output_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[-1]))
        writer.writeheader()
        writer.writerows(history)


def write_curves(history: list[dict], output_dir: Path) -> None:
    """`metrics.csv` and `curves.png` (loss, F1, threshold, mAP per epoch)."""
    if not history:
        return
    write_metrics_csv(history, output_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    panels = [("train_loss", "loss"), ("f1", "F1"), ("threshold", "threshold"), ("mAP", "mAP")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for axis, (key, title) in zip(axes, panels):
        axis.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", label=key)
        if key == "mAP":
            axis.plot(
                epochs,
                [row.get("train_retrieval_mAP", float("nan")) for row in history],
                marker="o",
                label="train brands (retrieval)",
            )
            axis.plot(
                epochs,
                [row.get("retrieval_mAP", float("nan")) for row in history],
                marker="o",
                label="validation (retrieval)",
            )
            if any("out_of_world_retrieval_mAP" in row for row in history):
                axis.plot(
                    epochs,
                    [row.get("out_of_world_retrieval_mAP", float("nan")) for row in history],
                    marker="o",
                    label="validation, other worlds (retrieval)",
                )
        if key == "train_loss":
            axis.plot(epochs, [row.get("loss", float("nan")) for row in history], marker="o", label="validation loss")
        axis.set(title=title, xlabel="epoch")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(output_dir / "curves.png", dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None, callbacks: list[TrainingCallback] | None = None) -> TrainingState:
    """Train as `python train.py ARGS` does; `callbacks` are called after the built-in ones (progressive unfreezing,
    collapse detection, early stopping) with the unwrapped model, on every process."""
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logger.setLevel(logging.INFO)
    output_dir = Path(args.output_dir)
    unfreezing = ProgressiveUnfreezing.from_string(
        args.unfreeze, lr_decay=args.unfreeze_lr_decay, freeze_others=args.freeze_other_stages
    )
    # Without a GPU, the processes of `torchrun`/`accelerate launch` form one CPU run (gloo), not N separate runs.
    cpu = not has_accelerator_device()
    # DDP expects a gradient for every parameter it synchronises; stages frozen (or skipped by the cached-feature
    # phase) after it wraps the model have none, so it must look for unused parameters. Their gradients stay None:
    # the optimizer leaves them alone, weight decay included. The cost is a walk of the autograd graph per step.
    ddp_options = DistributedDataParallelKwargs(find_unused_parameters=freezes_parameters(unfreezing, args))
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=resolve_mixed_precision(args.mixed_precision, PartialState(cpu=cpu).device.type),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir),
        kwargs_handlers=[ddp_options],
    )
    accelerator.print(
        f"{accelerator.num_processes} process(es) on {accelerator.device.type} "
        f"({accelerator.distributed_type.value}), mixed precision: {accelerator.mixed_precision}"
    )
    set_seed(args.seed)

    # ---- Model first (a bad --init_from fails before the data is prepared); its processor sizes the data
    model, processor = build_model(args)
    if args.init_from:
        accelerator.print(
            f"Starting from {args.init_from} (learning rate {args.learning_rate}); --init_from none trains a new "
            f"{args.backbone} from random weights instead."
        )

    # ---- Data: brand-disjoint splits, P×K batches of augmented images
    data_dir = ensure_data(args, accelerator)
    image_size = model.config.image_size
    crop_max_size = 2 * image_size if args.crop_max_size is None else args.crop_max_size or None
    crop_size = {"crop_max_size": crop_max_size} if args.builder_config == "crops" else {}
    splits = load_logodet3k(data_dir, args.builder_config, **split_options(args), **crop_size)
    train_split = splits["train"]
    train_rows = train_split
    if args.box_jitter:
        # The same training boxes with room around them to jitter in (the rows come in the same order), at the
        # resolution of the usual crops; evaluation keeps the usual crops.
        wider = (1 + 2 * BOX_JITTER_CONTEXT) / (1 + 2 * CROP_MARGIN)
        train_rows = load_logodet3k(
            data_dir,
            "crops",
            **split_options(args),
            crop_margin=BOX_JITTER_CONTEXT,
            crop_max_size=round(crop_max_size * wider) if crop_max_size else None,
        )["train"]
        if train_rows["brand"] != train_split["brand"]:
            raise RuntimeError("The crops prepared for box jitter are not the training crops' boxes.")
    train_transform = build_train_transform(processor, box_jitter=args.box_jitter)
    train_dataset = AugmentedDataset(train_rows, train_transform, seed=args.seed)
    try:
        sampler = PKBatchSampler(
            train_split["brand"],
            args.brands_per_batch,
            args.images_per_brand,
            designs=train_split["design"],
            seed=args.seed,
        )
    except ValueError as error:  # too few brands for P: say which flag sets it
        raise UsageError(f"{error} Lower --brands_per_batch (P) or --images_per_brand (K).") from error
    collate = collate_pk_batch
    if args.miner == "collator":
        collate = TripletCollator() if args.loss == "triplet" else PairCollator()
    train_loader = DataLoader(
        train_dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),  # worker seeds do not consume the global RNG
    )
    train_sample = seeded_sample(train_split, args.train_sample, args.seed)
    # A large scene pool has many validation images per brand; a fixed sample keeps epochs comparable and quick.
    validation_split = splits["validation"]
    if args.validation_sample:
        validation_split = seeded_sample(validation_split, args.validation_sample, args.seed)
    # The cross-world test: the same unseen brands drawn in worlds held out of training; reported, never selected on.
    out_of_world_dir = ensure_out_of_world_data(args, accelerator, splits)
    out_of_world = (
        load_same_brands(
            out_of_world_dir,
            splits,
            args.builder_config,
            names=("validation",),
            cache_dir=args.dataset_cache_dir,
            **crop_size,
        )["validation"]
        if out_of_world_dir
        else None
    )
    if out_of_world is not None and not len(out_of_world):
        raise UsageError(
            f"--out_of_world_dir {out_of_world_dir} has none of the {len(brand_names(validation_split))} validation brands."
        )
    if out_of_world is not None and args.validation_sample:
        out_of_world = seeded_sample(out_of_world, args.validation_sample, args.seed)
    if out_of_world is not None:
        accelerator.print(
            f"Cross-world test: {len(out_of_world)} images of {len(set(out_of_world['brand']))} validation brands in "
            f"other visual worlds ({out_of_world_dir})"
        )

    # ---- Model, loss, optimizer: every parameter is in a group from the start; unfreezing turns gradients on
    user_callbacks, callbacks = list(callbacks or []), [unfreezing, CollapseDetector()]
    if args.early_stopping_patience:
        callbacks.append(EarlyStopping(args.early_stopping_patience))
    callbacks += user_callbacks
    loss_fn = build_loss(
        args.loss,
        margin=args.margin,
        num_classes=train_split.features["brand"].num_classes,
        embedding_size=model.config.embedding_size,
    )
    miner = build_miner(args.miner, args.loss, margin=args.margin)
    train_loss_fn, train_miner = gathered_criterion(loss_fn, miner, args, accelerator.num_processes)
    loss_is_gathered = train_loss_fn is not loss_fn  # the distributed wrapper's loss is N × the global batch's
    groups = [
        {"params": list(model.head.parameters()), "lr": args.learning_rate, "name": "head"},
        {
            "params": model.backbone_parameters(),
            "lr": args.learning_rate * args.backbone_lr_factor,
            "name": "backbone",
        },
    ]
    if list(loss_fn.parameters()):
        groups.append(
            {"params": list(loss_fn.parameters()), "lr": args.learning_rate * args.loss_lr_factor, "name": "loss"}
        )
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    steps_per_epoch = len(sampler) // accelerator.num_processes // args.gradient_accumulation_steps
    if args.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(
            f"No full P×K batch per epoch: {len(sampler.brands)} usable training brands for P={args.brands_per_batch}."
            " Lower --brands_per_batch."
        )
    accelerator.print(
        f"{len(train_split)} training images of {len(sampler.brands)} brands: {steps_per_epoch} steps per epoch of "
        f"{accelerator.num_processes} × P={args.brands_per_batch} × K={args.images_per_brand} images"
        + (f" (--max_steps_per_epoch {args.max_steps_per_epoch})" if args.max_steps_per_epoch else "")
    )
    # Accelerate steps a prepared scheduler once per process at every optimizer step: count in those steps.
    scheduler_steps_per_epoch = steps_per_epoch * accelerator.num_processes
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, scheduler_steps_per_epoch, args, unfreezing)
    )
    # DDP synchronises only the parameters that require gradients when it wraps the model, and a model saved with
    # frozen stages loads them frozen: wrap it with every parameter trainable, so that stages unfrozen later stay in
    # sync across processes. The unfreezing callback freezes the schedule's stages right after.
    model.requires_grad_(True)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if any(param.requires_grad for param in train_loss_fn.parameters()):
        train_loss_fn = accelerator.prepare(train_loss_fn)  # learnt proxies: synchronised like the model's weights
    else:
        train_loss_fn = train_loss_fn.to(accelerator.device)  # DDP cannot wrap a module without parameters
    unwrapped = accelerator.unwrap_model(model)

    # ---- Resume
    state = TrainingState()
    checkpoint = latest_checkpoint(args)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = TrainingState(**json.loads((checkpoint / "training_state.json").read_text()))
        print(f"Resumed from {checkpoint} (epoch {state.epoch}, step {state.global_step}).")
    if accelerator.is_main_process and args.report_to != "none":
        accelerator.init_trackers("logs", config={k: v for k, v in asdict(args).items() if v is not None})
    for callback in callbacks:
        callback.on_train_begin(state, unwrapped)

    if args.eval_on_start and not state.history:
        model.eval()
        metrics = validate_on_main_process(
            accelerator, unwrapped, processor, validation_split, train_sample, loss_fn, miner, args, out_of_world
        )
        state.history.append({"epoch": -1, "step": 0, **metrics})
        accelerator.log({f"validation/{k}": v for k, v in metrics.items()}, step=0)
        accelerator.print(f"before training: retrieval mAP: {retrieval_summary(metrics)}")
        # The starting point is a candidate like any epoch: training must beat it to replace it as the best model.
        state.epoch = -1
        if record_best(state, metrics, args) and accelerator.is_main_process:
            save_model(unwrapped, processor, metrics, state, args)
        state.epoch = 0

    # ---- Train
    start = time.perf_counter()
    feature_loader = None
    while state.epoch < args.num_epochs and not state.should_stop:
        sampler.set_epoch(state.epoch)
        train_dataset.set_epoch(state.epoch)
        for callback in callbacks:
            callback.on_epoch_begin(state, unwrapped)
        # Frozen phase: the head trains on cached backbone features (built once, dropped at unfreezing).
        epoch_start, cache_seconds = time.perf_counter(), 0.0
        if args.frozen_feature_views and set(unwrapped.config.frozen_stages) == set(BACKBONE_STAGES):
            if feature_loader is None:
                features = compute_backbone_features(
                    unwrapped,
                    train_dataset,
                    args.frozen_feature_views,
                    num_workers=args.num_workers,
                    progress=accelerator.is_local_main_process,
                )
                feature_loader = accelerator.prepare(
                    DataLoader(
                        CachedFeatureDataset(features, train_split["brand"], seed=args.seed),
                        batch_sampler=sampler,
                        collate_fn=collate,
                    )
                )
                cache_seconds = time.perf_counter() - epoch_start
            epoch_loader = feature_loader
        else:
            epoch_loader, feature_loader = train_loader, None
        model.train()
        loader = accelerator.skip_first_batches(epoch_loader, state.step_in_epoch * args.gradient_accumulation_steps)
        loader.set_epoch(state.epoch)  # Accelerate's loaders otherwise reset the epoch to their own iteration count
        losses = []
        progress = tqdm(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {state.epoch}",
            disable=not accelerator.is_local_main_process,
        )
        for batch in loader:
            if state.step_in_epoch >= steps_per_epoch:
                break
            with accelerator.accumulate(model):
                inputs = {key: batch[key] for key in ("pixel_values", "pooled_features") if key in batch}
                if args.channels_last and "pixel_values" in inputs:
                    inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=torch.channels_last)
                embeddings = model(**inputs).embeddings
                labels = batch["labels"]
                if train_miner is not None:
                    indices_tuple = train_miner(embeddings, labels)
                else:
                    indices_tuple = batch.get("indices_tuple")
                # In fp32 also under autocast (the model's outputs are fp32): exp and cosine terms stay finite.
                loss = train_loss_fn(embeddings.float(), labels, indices_tuple)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            # The loss of the global batch, the same on every process.
            losses.append(accelerator.reduce(loss.detach(), reduction="mean").item())
            if loss_is_gathered:
                losses[-1] /= accelerator.num_processes
            if accelerator.sync_gradients:
                state.global_step += 1
                state.step_in_epoch += 1
                progress.update(1)
                logs = {"train/loss": losses[-1], "train/lr": scheduler.get_last_lr()[0]}
                # A gathered miner's indices address every process's embeddings; the statistics see this batch only.
                local_indices = indices_tuple if train_miner is miner else None
                logs.update({f"train/{k}": v for k, v in batch_statistics(embeddings, labels, local_indices).items()})
                progress.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", dist=f"{logs['train/mean_distance']:.2f}")
                accelerator.log(logs, step=state.global_step)
                for callback in callbacks:
                    callback.on_step_end(state, unwrapped, logs)
                if args.checkpointing_steps and state.global_step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, state, args)
        progress.close()
        train_seconds = time.perf_counter() - epoch_start - cache_seconds
        synchronize_buffers(unwrapped, accelerator)

        # ---- Validate on unseen brands (on the main process); keep the best model
        model.eval()
        metrics = validate_on_main_process(
            accelerator, unwrapped, processor, validation_split, train_sample, loss_fn, miner, args, out_of_world
        )
        metrics["train_loss"] = float(np.mean(losses)) if losses else float("nan")
        metrics.update(train_seconds=train_seconds, feature_cache_seconds=cache_seconds)
        improved = record_best(state, metrics, args)
        for callback in callbacks:
            callback.on_evaluate(state, unwrapped, metrics)
        state.history.append({"epoch": state.epoch, "step": state.global_step, **metrics})
        accelerator.log({f"validation/{k}": v for k, v in metrics.items()}, step=state.global_step)
        accelerator.print(
            f"epoch {state.epoch}: train loss {metrics['train_loss']:.4f} | validation (unseen brands) "
            f"mAP {metrics['mAP']:.3f} F1 {metrics['f1']:.3f} @ d={metrics['threshold']:.2f} | retrieval mAP: "
            f"{retrieval_summary(metrics)}"
        )
        if improved and accelerator.is_main_process:
            save_model(unwrapped, processor, metrics, state, args)
        for callback in callbacks:
            callback.on_epoch_end(state, unwrapped)
        state.epoch += 1
        state.step_in_epoch = 0
        save_checkpoint(accelerator, state, args)

    # ---- Summary
    accelerator.end_training()
    if accelerator.is_main_process:
        write_curves(state.history, output_dir)
        (output_dir / "training_state.json").write_text(json.dumps(state.to_dict(), indent=2))
        best = next((row for row in state.history if row["epoch"] == state.best_epoch), {})
        print(
            f"Done in {time.perf_counter() - start:.0f} s: best validation {args.metric_for_best_model} "
            f"{state.best_metric:.3f} at epoch {state.best_epoch} (train-brand retrieval mAP "
            f"{best.get('train_retrieval_mAP', float('nan')):.3f}). Model saved in {output_dir}."
        )
        if args.evaluate_on_test:
            evaluate_best_model(args, data_dir, out_of_world_dir)
        if args.push_to_hub:
            unwrapped.push_to_hub(args.hub_model_id or output_dir.name)
            processor.push_to_hub(args.hub_model_id or output_dir.name)
    return state


def evaluate_best_model(args: EmbeddingTrainingArguments, data_dir: str, out_of_world_dir: str | None = None) -> dict:
    """The saved best model on the held-out test brands, beside the model it started from (`--init_from`), the
    untrained baseline and a colour histogram (what logo-eval does), on the data split as in training, with the
    report in `output_dir/report`."""
    from logo_evaluation import EvaluationSettings, evaluate_model

    print("\nEvaluating the best model on the test brands (never seen in training) ...")
    started_from = (args.init_from,) if args.init_from else ()  # its row beside the new model's: what training added
    settings = EvaluationSettings(
        data_dir=data_dir,
        models=(args.output_dir, *started_from),
        baselines=("untrained", "histogram"),
        builder_config=args.builder_config,
        ways=(5, 20, "all"),
        episodes=args.test_episodes,
        train_sample=args.train_sample,
        seed=args.seed,
        report_dir=Path(args.output_dir) / "report",
        out_of_world_dir=out_of_world_dir,  # the cross-world test: report/cross_world.md
        **split_options(args),
    )
    return evaluate_model(settings)


if __name__ == "__main__":
    try:
        main()
    except UsageError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)
