"""What `logo-eval` evaluates and on what: [`EvaluationSettings`], and the checks of its inputs on disk.

This module imports neither torch, transformers nor `datasets` (nor `modeling_logo` and `dataset_scripts`, which
import them): the command line is parsed and checked in a fraction of a second, before the heavy imports, so that a
mistake in it is a one-line message instead of a traceback 20 s later. The few names it needs from those packages
are copied here; `tests/test_eval_cli.py` checks that the copies stay equal to the originals.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from logo_commands.checks import hub_names, is_missing_path


#: Every brand a test brand: a trained model measured on brands of one's own, with its calibrated threshold.
ALL_TEST = "all-test"
BASELINES = ("untrained", "imagenet", "histogram")
PHOTO_METHODS = {
    "localizer": "localiser boxes, each embedded",
    "windows": "multi-scale window search (no localiser)",
    "whole-image": "the whole photo embedded as one crop",
}
# Copies, so that checking the command line needs no heavy import: dataset_scripts.logodet3k.SPLIT_SCHEMES and
# IMAGE_EXTENSIONS (tests/test_eval_cli.py checks that they agree).
SPLIT_SCHEMES = ("brands", "hash", "paper", ALL_TEST)
RUNTIMES = hub_names().RUNTIMES
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class EvaluationSettings:
    """What [`evaluate_model`] evaluates, on which data, and how: the options of `logo-eval`, with its defaults.

    Args:
        data_dir: a LogoDet-3K-layout folder, `<Category>/<Brand>/<n>.jpg` + `.xml`.
        models: saved model directories or Hub ids (`--model`, repeatable).
        baselines: any of `"untrained"` (the same architecture, random weights), `"imagenet"` (ImageNet backbone
            and a random head; skipped with a note when its weights cannot be had) and `"histogram"` (a colour
            histogram).
        builder_config: the builder config of the crops, `"crops"` or `"images"` (`--config`).
        cache_dir: the `datasets` cache of the prepared splits.
        split_scheme: how brands are split (one of `dataset_scripts.logodet3k.SPLIT_SCHEMES`, as in training);
            `"all-test"`: every brand a test brand, to measure trained models on brands of one's own.
        train_fraction, validation_fraction: brand fractions of the `"brands"` and `"hash"` schemes; `None`: the
            builder's default (`LogoDet3KConfig`).
        threshold: with `"all-test"`, the open-set cosine threshold (default: each model's calibrated
            `config.similarity_threshold`).
        shots, ways, episodes: the K, the N (ints or `"all"`) and the number of the open-set N-way K-shot episodes.
        backbone, image_size: the baselines' network when no model is given.
        train_sample: training images for the memorisation mAP.
        batch_size, runtime: how images are embedded (`runtime`: one of `RUNTIMES`, e.g. `"auto"` or `"torch"`).
        localizer: a saved logo localiser: also evaluate localisation and whole photos.
        photo_methods: the whole-photo methods to compare (keys of `PHOTO_METHODS`); `None`: all of them with a
            localizer, none without.
        photo_scenes, photo_episodes: scenes per split and open-set episodes per setting of the photo protocol.
        seed: of every sampled episode and of the baselines' random weights.
        report_dir: the folder of the report (`report.md`, `results.json`, figures); `None` or `""`: no report.
        out_of_world_dir: the cross-world test: a set in the same layout holding the same brands drawn in other
            visual worlds (`train.py` generates one); its rows of the validation and test brands are evaluated
            beside the same brands of `data_dir` (`cross_world.md` in the report).

    Values that cannot work (an unknown baseline, 0 shots, a threshold where none is used, ...) raise a
    `ValueError` with one line that names the option; [`check_inputs`] checks the files and folders.
    """

    data_dir: str | Path
    models: tuple[str | Path, ...] = ()
    baselines: tuple[str, ...] = BASELINES
    builder_config: str = "crops"
    cache_dir: str | Path | None = None
    split_scheme: str = "hash"
    train_fraction: float | None = None
    validation_fraction: float | None = None
    threshold: float | None = None
    shots: tuple[int, ...] = (1, 5)
    ways: tuple[int | str, ...] = (5, 20, "all")
    episodes: int = 500
    backbone: str = "resnet50"
    image_size: int = 224
    train_sample: int = 1000
    batch_size: int = 64
    runtime: str = "auto"
    localizer: str | Path | None = None
    photo_methods: tuple[str, ...] | None = None
    photo_scenes: int = 150
    photo_episodes: int = 200
    seed: int = 0
    report_dir: str | Path | None = "report"
    out_of_world_dir: str | Path | None = None

    def __post_init__(self):
        for name in ("models", "baselines", "shots", "ways"):  # lists, from argparse or a caller, as tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.photo_methods is not None:
            object.__setattr__(self, "photo_methods", tuple(self.photo_methods))
        _check_choices("baselines", self.baselines, BASELINES)
        _check_choices("photo_methods", self.photo_methods or (), tuple(PHOTO_METHODS))
        _check_choices("split_scheme", (self.split_scheme,), SPLIT_SCHEMES)
        _check_choices("runtime", (self.runtime,), RUNTIMES)
        if self.runtime == "onnxruntime-int8":  # it needs calibration images of training brands, which logo-eval lacks
            raise ValueError(
                "--runtime onnxruntime-int8 needs calibration images: benchmarks/onnx_quantization.py measures it "
                "against fp32 on unseen brands; logo-eval runs onnxruntime (fp32) or torch."
            )
        _check_choices("builder_config", (self.builder_config,), ("crops", "images"))
        if any(not (isinstance(n, int) and n >= 2) and n != "all" for n in self.ways):
            raise ValueError(f"ways are numbers of brands (2 or more) or 'all', got {list(self.ways)}.")
        if not self.shots or any(not isinstance(k, int) or k < 1 for k in self.shots):
            raise ValueError(f"shots are numbers of support images (1 or more), got {list(self.shots)}.")
        for name in ("episodes", "batch_size", "image_size", "photo_scenes", "photo_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.train_sample < 0:
            raise ValueError(f"train_sample must be 0 or more, got {self.train_sample}.")
        train, validation = self.train_fraction, self.validation_fraction  # the builder's rule, checked early
        if (
            (train is not None and not 0 < train < 1)
            or (validation is not None and not 0 <= validation < 1)
            or (train is not None and validation is not None and validation >= 1 - train)
        ):
            raise ValueError(
                "need 0 < train_fraction < 1 and 0 <= validation_fraction < 1 - train_fraction (test brands left), "
                f"got {train} and {validation}."
            )
        if not self.models and not self.baselines:
            raise ValueError("nothing to evaluate: give --model and/or --baselines")
        if self.split_scheme == ALL_TEST:
            if not self.models:
                raise ValueError("--split_scheme all-test measures trained models on your brands: give --model")
            if self.localizer or self.photo_methods:
                raise ValueError(
                    "--split_scheme all-test evaluates logo crops only: whole photos need validation brands"
                )
            if self.out_of_world_dir:
                raise ValueError("--out_of_world_dir needs validation brands: not with --split_scheme all-test")
        elif self.threshold is not None:
            raise ValueError(
                "--threshold is for --split_scheme all-test; other schemes choose it on validation brands"
            )

    def split_options(self) -> dict:
        """Keyword arguments of `load_logodet3k`: the cache and how the brands are split."""
        options = {"cache_dir": self.cache_dir, "split_scheme": self.split_scheme}
        for name in ("train_fraction", "validation_fraction"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options


def _check_choices(name: str, values: Iterable[str], choices: tuple[str, ...]) -> None:
    unknown = [value for value in values if value not in choices]
    if unknown:
        raise ValueError(f"{name}: unknown {unknown}; choose from {list(choices)}.")


def check_inputs(settings: EvaluationSettings) -> None:
    """Check what `settings` reads from disk before anything heavy is loaded; a `ValueError` (one line) names the
    first problem.

    - `data_dir`: a folder holding at least one `<Category>/<Brand>/<n>.<image>` with its `<n>.xml` (the builder
      reads every file later; this stops at the first).
    - each of `models`: a saved model folder (with `config.json`), or a Hub id; offline (`HF_HUB_OFFLINE=1`), a
      Hub id must be in the local Hub cache.
    - `localizer`: a saved localiser folder (with `config.json`).
    - `report_dir`: not an existing file.
    """
    check_data_dir(settings.data_dir)
    if settings.out_of_world_dir:
        check_data_dir(settings.out_of_world_dir, "--out_of_world_dir")
    for model in settings.models:
        _check_saved_or_hub(str(model), "--model")
    if settings.localizer:
        path = Path(settings.localizer)
        if not (path / "config.json").is_file():
            reason = "no config.json in it" if path.is_dir() else "no such folder"
            raise ValueError(f"--localizer {str(path)!r}: not a saved localiser ({reason})")
    if settings.report_dir and Path(settings.report_dir).is_file():
        raise ValueError(f"--report {str(settings.report_dir)!r}: a file, not a folder")


def check_data_dir(data_dir: str | os.PathLike, option: str = "--data_dir") -> None:
    """A `ValueError` (one line) unless `data_dir` is a folder holding at least one `<Category>/<Brand>/<n>.<image>`
    with its `<n>.xml` (the builder reads every file later; this stops at the first). `train.py` checks its
    `--data_dir` with it too."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise ValueError(f"{option} {str(data_dir)!r}: no such folder")
    if not data_dir.is_dir():
        raise ValueError(f"{option} {str(data_dir)!r}: not a folder")
    if not _has_an_annotated_image(data_dir):
        raise ValueError(
            f"{option} {str(data_dir)!r}: no annotated image in the LogoDet-3K layout "
            "(<Category>/<Brand>/<n>.jpg with <n>.xml beside it)"
        )


def _has_an_annotated_image(data_dir: Path) -> bool:
    for category in _visible_folders(data_dir):
        for brand in _visible_folders(category):
            for path in brand.iterdir():
                if path.suffix.lower() in IMAGE_EXTENSIONS and path.with_suffix(".xml").is_file():
                    return True
    return False


def _visible_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_saved_or_hub(name_or_path: str, option: str) -> None:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{option} {name_or_path!r}: not a saved model (no config.json in it)")
        return
    if path.exists() or is_missing_path(name_or_path, folder=True):  # a file, or a name the Hub cannot have
        raise ValueError(f"{option} {name_or_path!r}: no such model folder, and not a Hub id")
    if _offline():
        from huggingface_hub import try_to_load_from_cache  # no torch: a second at most, and only offline

        if not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            raise ValueError(
                f"{option} {name_or_path!r}: no such model folder, and not in the local Hub cache (HF_HUB_OFFLINE is set)"
            )


def _offline() -> bool:
    return any(
        os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


__all__ = [
    "ALL_TEST",
    "BASELINES",
    "EvaluationSettings",
    "PHOTO_METHODS",
    "RUNTIMES",
    "SPLIT_SCHEMES",
    "check_data_dir",
    "check_inputs",
]
