"""The command lines of `train.py` and `train_localizer.py`: their arguments, dataclasses that transformers'
`HfArgumentParser` fills from flags and from a YAML or JSON recipe, and the checks of the paths they name.

This module imports neither torch nor `datasets`, nor `modeling_logo` (whose `__init__` imports torch and
transformers to register the models): both scripts parse their command line with it before their heavy imports, so
that `--help` and a mistake in the command line (one line on stderr, exit status 2) come back in 2-3 s (transformers'
argument parser) instead of after 15-25 s of imports. The loss and miner names are the package's own, read from
`modeling_logo/names.py` without importing it (`logo_commands.checks.hub_names`).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from transformers.hf_argparser import HfArgumentParser  # transformers' argument parser alone: no torch

from logo_commands.checks import OneLineErrors, hub_names, is_missing_path
from logo_evaluation.settings import check_data_dir


#: `modeling_logo.names`: the losses and miners that `modeling_logo.losses` builds.
_NAMES = hub_names()

DEFAULT_DATA_DIR = "data/synthetic-logos"
# The cross-world test of the default benchmark: its held-out brands drawn in visual worlds it has none of.
DEFAULT_OUT_OF_WORLD_DIR = "data/synthetic-logos-other-worlds"
# Where `python train.py` starts by default (found next to train.py when run from elsewhere).
SHIPPED_CHECKPOINT = "checkpoints/logo-embedding-resnet-small"
# The embedder whose backbone starts a new localiser's (`train_localizer.py --backbone_from_embedder`).
SHIPPED_EMBEDDER = "checkpoints/logo-embedding-resnet-small"
# Default learning rates (AdamW): a new network, and a trained one continued with --init_from (a smaller step keeps
# what it knows: 5e-4 held the shipped checkpoint's validation mAP on the 300-brand benchmark, 0.63 after 4 epochs).
NEW_MODEL_LEARNING_RATE, CONTINUED_LEARNING_RATE = 2e-3, 5e-4


@dataclass
class DataArguments:
    """The data both trainers read: a folder in the LogoDet-3K layout, or the generated benchmark (generated where
    missing), split into brand-disjoint train, validation and test brands."""

    data_dir: str | None = field(
        default=None, metadata={"help": f"LogoDet-3K layout. Default: the generated benchmark in {DEFAULT_DATA_DIR}."}
    )
    generate_brands: int = field(default=300, metadata={"help": "Brands of the generated benchmark, if generated."})
    generate_images_per_brand: int = field(default=12, metadata={"help": "Images per generated brand."})
    split_scheme: str = field(
        default="hash",
        metadata={"help": "hash (brand-disjoint by name: any generated set agrees), brands (stratified) or paper."},
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache for the prepared splits."})


@dataclass
class EmbeddingTrainingArguments(DataArguments):
    """Arguments of `train.py`; also readable from a YAML or JSON file given as the only argument or `--config`."""

    # data (and `DataArguments`)
    builder_config: str = field(default="crops", metadata={"help": "crops (one example per box) or images."})
    train_fraction: float = field(default=0.8, metadata={"help": "Share of brands for training (hash, brands)."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of brands for validation."})
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
    loss: str = field(default="multi-similarity", metadata={"help": f"One of {_NAMES.LOSSES}."})
    miner: str | None = field(default=None, metadata={"help": f"One of {_NAMES.MINERS}; default depends on the loss."})
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
        if self.loss not in _NAMES.LOSSES:
            raise ValueError(f"--loss must be one of {_NAMES.LOSSES}, got {self.loss!r}.")
        self.miner = self.miner or _NAMES.DEFAULT_MINERS[self.loss]
        if self.miner not in _NAMES.MINERS:
            raise ValueError(f"--miner must be one of {_NAMES.MINERS}, got {self.miner!r}.")
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


@dataclass
class LocalizerTrainingArguments(DataArguments):
    """Arguments of `train_localizer.py` (the data: `DataArguments`); also readable from a YAML or JSON file (first
    argument, or `--config`)."""

    init_from: str | None = field(default=None, metadata={"help": "Start from a saved localiser (a new schedule)."})
    backbone: str = field(default="resnet-small", metadata={"help": "timm ResNet name or a preset."})
    image_size: int = field(default=320, metadata={"help": "Side of the letterboxed square (a multiple of 32)."})
    fpn_channels: int = field(default=64, metadata={"help": "Feature-pyramid and head width (a multiple of 32)."})
    backbone_from_embedder: str | None = field(
        default=SHIPPED_EMBEDDER,
        metadata={"help": "Start the backbone from this embedder's (same backbone); '' for random weights."},
    )
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    num_epochs: int = field(default=6, metadata={"help": "Epochs (each one pass over the training scenes)."})
    max_steps_per_epoch: int | None = field(default=None, metadata={"help": "Cap steps per epoch (quick runs)."})
    batch_size: int = 16
    max_grad_norm: float | None = 10.0
    zoom_out: float = field(default=3.0, metadata={"help": "Largest zoom-out of the augmentation (small logos)."})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 where native), no, bf16, fp16."})
    seed: int = 0
    num_workers: int = 1
    validation_scenes: int = field(default=400, metadata={"help": "Validation scenes (a fixed seeded sample)."})
    output_dir: str = "runs/logo-localizer"
    checkpointing_steps: int | None = field(default=200, metadata={"help": "Also checkpoint every N steps."})
    keep_last_checkpoints: int = 2
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "A checkpoint folder or 'latest'."})

    def __post_init__(self):
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"--mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}.")
        if self.num_epochs < 1 or self.batch_size < 1:
            raise ValueError("Need --num_epochs >= 1 and --batch_size >= 1.")


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
    for flag in ("init_from", "pretrained_backbone", "backbone_from_embedder"):
        value = getattr(args, flag, None)
        if value and value != "imagenet" and is_missing_path(value):
            raise ValueError(f"--{flag} {value}: no such file or directory.")
    checkpoint = getattr(args, "resume_from_checkpoint", None)
    if checkpoint and checkpoint != "latest" and not Path(checkpoint).is_dir():
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: no such checkpoint folder (or pass 'latest').")


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


class _ArgumentParser(OneLineErrors, HfArgumentParser):
    """transformers' parser of argument dataclasses, with a mistake on one line (and exit status 2) instead of the
    whole usage text of every option."""


def parse_arguments_with_config(arguments_class, argv: list[str] | None = None):
    """Parse `argv` into `arguments_class`: `script.py recipe.yaml --flag value` (or `--config recipe.yaml`) reads a
    YAML or JSON file first, and flags override it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _ArgumentParser(arguments_class)
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
