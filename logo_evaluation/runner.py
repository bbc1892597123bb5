"""What `logo-eval` runs, as functions: [`evaluate_model`] with its [`EvaluationSettings`] (`settings`), and its
parts (the embedders of models and baselines, every protocol for one embedder, whole photos)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from dataset_scripts import brand_names, load_logodet3k, load_same_brands, select_brands
from dataset_scripts.scenes import split_scenes
from modeling_logo.configuration_logo import LogoEmbeddingConfig
from modeling_logo.detection import LogoLocalizer
from modeling_logo.evaluation import (
    EmbeddedSplit,
    by_design,
    embed_photos,
    embed_split,
    honest_protocol,
    localization_protocol,
    paper_protocol,
    photo_protocol,
    retrieval_protocol,
    seeded_sample,
)
from modeling_logo.few_shot import LogoGallery, Runtime, load_model_and_processor, window_boxes
from modeling_logo.image_processing_logo import LogoImageProcessor, to_rgb
from modeling_logo.modeling_logo import LogoEmbeddingModel

from .report import (
    HONEST_THRESHOLD_CALIBRATED,
    HONEST_THRESHOLD_FROM_VALIDATION,
    cross_world_table,
    honest_table,
    paper_table,
    photo_table,
    retrieval_table,
    write_report,
)
from .settings import ALL_TEST, BASELINES, PHOTO_METHODS, EvaluationSettings, check_inputs


Embedder = Callable[[datasets.Dataset], EmbeddedSplit]

PHOTO_TITLE = "## Whole photos (find the logos, then name their brand; box at IoU 0.5 required)"
CROSS_WORLD_TITLE = "## The cross-world test (the same unseen brands in the data's worlds and in other worlds)"


def colour_histogram_split(dataset: datasets.Dataset, bins: int = 8, label_column: str = "brand") -> EmbeddedSplit:
    """A classical baseline: the square-rooted HSV colour histogram of each image, L2-normalised."""
    vectors = []
    for row in dataset.select_columns(["image"]):
        hsv = np.asarray(to_rgb(row["image"]).resize((64, 64), Image.BILINEAR).convert("HSV")).reshape(-1, 3)
        histogram, _ = np.histogramdd(hsv, bins=(bins, bins, bins), range=((0, 256),) * 3)
        vector = np.sqrt(histogram.ravel())
        vectors.append(vector / max(np.linalg.norm(vector), 1e-12))
    return EmbeddedSplit(np.stack(vectors), np.asarray(dataset[label_column]))


def model_embedder(
    model: LogoEmbeddingModel, image_processor: LogoImageProcessor, batch_size: int = 64, runtime: Runtime = "auto"
) -> Embedder:
    return lambda dataset: embed_split(model, image_processor, dataset, batch_size=batch_size, runtime=runtime)


def evaluate_embedder(
    embed: Embedder,
    splits: datasets.DatasetDict,
    *,
    shots: tuple[int, ...] = (1, 5),
    ways: tuple[int | str, ...] = (5, 20, "all"),
    episodes: int = 500,
    seed: int = 0,
    train_sample: int = 1000,
    threshold: float | None = None,
) -> tuple[dict, EmbeddedSplit]:
    """All protocols for one embedder: `{"paper": [...], "honest": [...], "retrieval": {...}, "train_retrieval":
    {...}}` and the test embeddings. Validation brands tune the honest threshold and are FORB's out-of-distribution
    database of t-mAP (the test queries searched against them, and kept among the answers); a sample of training brands measures memorisation.

    Splits with only `test` (`--split_scheme all-test`) get the honest protocol at the given `threshold` (its rows
    are skipped, with the reason, without one), no t-mAP and no training-brand mAP."""
    test = embed(splits["test"])
    validation = embed(splits["validation"]) if "validation" in splits else None
    train = seeded_sample(splits["train"], train_sample, seed) if "train" in splits else []
    if validation is None and threshold is None:
        reason = "no calibrated threshold (config.similarity_threshold) and no validation brands to choose one"
        honest = [{"ways": n, "shots": k, "skipped": reason} for n in ways for k in shots]
    else:
        honest = honest_protocol(
            validation,
            test,
            ways=ways,
            shots=shots,
            episodes=episodes,
            seed=seed,
            threshold=threshold if validation is None else None,
        )
    result = {
        "paper": [_paper_or_skip(test, k, seed) for k in shots],
        "honest": honest,
        "retrieval": retrieval_protocol(test, ood=validation),
        "train_retrieval": retrieval_protocol(embed(train)) if len(train) else {},
    }
    return result, test


def evaluate_across_worlds(
    embedders: dict[str, Embedder],
    worlds: dict[str, datasets.DatasetDict],
    *,
    shots: tuple[int, ...] = (1, 5),
    ways: int = 5,
    episodes: int = 500,
    seed: int = 0,
) -> dict[str, dict[str, dict]]:
    """The cross-world test: each embedder on the unseen test brands of each world (e.g. `{"in-world": ...,
    "out-of-world": ...}`, the same brands drawn in visual worlds a model trained in and in worlds held out of its
    training), each world's validation brands tuning its own honest threshold.

    Returns `{embedder: {world: {"retrieval_mAP", "retrieval_mAP_by_design", "recall@1", "f1_<ways>way_<k>shot"
    (mean, 95% CI half-width)}}}`. By design, a query must find its own design (`Brand-1` apart from `Brand`); by
    brand, also its brand's other designs.
    """
    results: dict[str, dict[str, dict]] = {}
    for name, embed in embedders.items():
        for world, splits in worlds.items():
            result, test = evaluate_embedder(
                embed, splits, shots=shots, ways=(ways,), episodes=episodes, seed=seed, train_sample=0
            )
            row = {
                "retrieval_mAP": result["retrieval"]["images/mAP"],
                "retrieval_mAP_by_design": retrieval_protocol(by_design(test, splits["test"]["design"]))["images/mAP"],
                "recall@1": result["retrieval"]["images/recall@1"],
                "test_brands": len(set(splits["test"]["brand"])),
                "test_images": len(splits["test"]),
            }
            for honest in result["honest"]:
                if "f1" in honest:
                    row[f"f1_{ways}way_{honest['shots']}shot"] = honest["f1"]
            results.setdefault(name, {})[world] = row
    return results


def _paper_or_skip(split: EmbeddedSplit, shots: int, seed: int) -> dict:
    try:
        return paper_protocol(split, shots, seed=seed)
    except ValueError as error:  # no brand has shots + 1 images
        return {"shots": shots, "skipped": str(error)}


def build_embedders(
    models: Iterable[str | Path],
    baselines: Iterable[str],
    *,
    batch_size: int = 64,
    runtime: Runtime = "auto",
    seed: int = 0,
    backbone: str = "resnet50",
    image_size: int = 224,
) -> dict[str, Embedder]:
    """An embedder per model (named by its path or id) and per baseline (`BASELINES`). The baselines take the first
    model's architecture, else `backbone` at `image_size`, with random weights seeded by `seed`."""
    embedders: dict[str, Embedder] = {}
    config, processor = None, None
    for name_or_path in models:
        model, processor = load_model_and_processor(name_or_path)
        config = config or model.config
        embedders[str(name_or_path)] = model_embedder(model, processor, batch_size, runtime)
    if config is None:
        config = LogoEmbeddingConfig(backbone=backbone, image_size=image_size)
        processor = LogoImageProcessor.from_model_config(config)
    baseline_config = copy.deepcopy(config)
    baseline_config.frozen_stages, baseline_config.backbone_weights = [], None
    for baseline in baselines:
        if baseline == "untrained":
            torch.manual_seed(seed)
            embedders["untrained (random init)"] = model_embedder(
                LogoEmbeddingModel(baseline_config).eval(), processor, batch_size, runtime
            )
        elif baseline == "imagenet":
            torch.manual_seed(seed)
            try:
                model = LogoEmbeddingModel(baseline_config, pretrained_backbone=True)
            except (OSError, ValueError) as error:  # offline, or a preset backbone that has no ImageNet weights
                print(f"Skipping the ImageNet baseline: {error}")
                continue
            embedders["ImageNet backbone + random head"] = model_embedder(model, processor, batch_size, runtime)
        elif baseline == "histogram":
            embedders["colour histogram"] = colour_histogram_split
    return embedders


def photo_finders(localizer: LogoLocalizer | None, methods) -> dict[str, Callable]:
    """`photo -> boxes` for each whole-photo method."""
    finders = {}
    for method in methods:
        if method == "localizer":
            if localizer is None:
                continue
            finders[method] = lambda photo: localizer([photo])[0]["boxes"].numpy()
        elif method == "windows":
            finders[method] = lambda photo: np.asarray(window_boxes(photo.width, photo.height), np.float32)
        else:
            finders[method] = lambda photo: np.asarray([[0, 0, photo.width, photo.height]], np.float32)
    return finders


def evaluate_photos(
    settings: EvaluationSettings, crop_splits: datasets.DatasetDict, methods: Iterable[str] | None = None
) -> dict:
    """Localisation (class-agnostic AP50, recall) on test-brand scenes, and whole-photo open-set recognition for
    each model and photo method (`methods`, default `settings.photo_methods`): `{"localization": {...}, model:
    {method: [rows]}}`."""
    methods = settings.photo_methods if methods is None else methods
    scenes = load_logodet3k(settings.data_dir, "detection", **settings.split_options())
    scenes = {
        name: seeded_sample(split_scenes(scenes[name]), settings.photo_scenes, settings.seed)
        for name in ("validation", "test")
    }
    localizer = (
        LogoLocalizer.from_pretrained(settings.localizer, runtime=settings.runtime) if settings.localizer else None
    )
    batch_size, runtime = settings.batch_size, settings.runtime
    results = {}
    if localizer is not None:
        results["localization"] = localization_protocol(localizer, scenes["test"])
    for name_or_path in settings.models:
        model, processor = load_model_and_processor(name_or_path)
        embed_crops = LogoGallery(model, processor, batch_size=batch_size, runtime=runtime).embed_boxes
        crops = {
            name: (
                model_embedder(model, processor, batch_size, runtime)(crop_splits[name]),
                np.asarray(crop_splits[name]["source"]),
            )
            for name in ("validation", "test")
        }
        results[str(name_or_path)] = {}
        for method, find_boxes in photo_finders(localizer, methods or ()).items():
            print(f"Whole photos: {name_or_path} with {PHOTO_METHODS[method]} ...")
            photos = {name: embed_photos(scenes[name], find_boxes, embed_crops) for name in scenes}
            results[str(name_or_path)][method] = photo_protocol(
                (photos["validation"], *crops["validation"]),
                (photos["test"], *crops["test"]),
                ways=tuple(w for w in settings.ways if w != "all"),
                shots=settings.shots,
                episodes=settings.photo_episodes,
                seed=settings.seed,
            )
    return results


def calibrated_thresholds(settings: EvaluationSettings) -> dict[str, float | None]:
    """The open-set threshold of each model under `all-test`: `settings.threshold`, else its calibrated
    `config.similarity_threshold` (`None` where it has none; baselines have none)."""
    thresholds = {}
    for name_or_path in settings.models:
        calibrated = LogoEmbeddingConfig.from_pretrained(name_or_path).similarity_threshold
        thresholds[str(name_or_path)] = settings.threshold if settings.threshold is not None else calibrated
        if thresholds[str(name_or_path)] is None:
            print(f"{name_or_path} has no calibrated config.similarity_threshold: pass --threshold for open-set rows.")
    return thresholds


def evaluate_model(settings: EvaluationSettings) -> dict:
    """Evaluate every model and baseline on the test brands, print the tables, write the report (unless
    `settings.report_dir` is empty); returns the results by model name (`results.json` of the report).

    The inputs are checked first ([`~settings.check_inputs`]): a missing data folder or model is a `ValueError`
    before anything is loaded."""
    check_inputs(settings)
    options = settings.split_options()
    splits = load_logodet3k(settings.data_dir, settings.builder_config, **options)
    print({split: len(dataset) for split, dataset in splits.items()})
    all_test = settings.split_scheme == ALL_TEST
    thresholds = calibrated_thresholds(settings) if all_test else {}
    embedders = build_embedders(
        settings.models,
        settings.baselines,
        batch_size=settings.batch_size,
        runtime=settings.runtime,
        seed=settings.seed,
        backbone=settings.backbone,
        image_size=settings.image_size,
    )
    results, test_splits = {}, {}
    for name, embed in embedders.items():
        print(f"Evaluating {name} ...")
        results[name], test_splits[name] = evaluate_embedder(
            embed,
            splits,
            shots=settings.shots,
            ways=settings.ways,
            episodes=settings.episodes,
            seed=settings.seed,
            train_sample=settings.train_sample,
            threshold=thresholds.get(name),
        )
    honest_threshold = HONEST_THRESHOLD_CALIBRATED if all_test else HONEST_THRESHOLD_FROM_VALIDATION
    print("\n## The paper's protocol (threshold tuned on test brands, as in the paper)\n")
    print(paper_table(results))
    print(f"\n## The honest protocol ({honest_threshold}, 95% CI)\n")
    print(honest_table(results))
    print("\n## Retrieval\n")
    print(retrieval_table(results))
    photo_results = None
    photo_methods = settings.photo_methods
    if photo_methods is None:
        photo_methods = tuple(PHOTO_METHODS) if settings.localizer else ()
    if photo_methods and (settings.models or settings.localizer):
        photo_results = evaluate_photos(settings, splits, photo_methods)
        print(f"\n{PHOTO_TITLE}\n")
        print(photo_table(photo_results))
        for name in settings.models:
            results[str(name)]["photos"] = photo_results[str(name)]
            results[str(name)]["localization"] = photo_results.get("localization")
    cross_world = None
    if settings.out_of_world_dir:
        cross_world = evaluate_cross_world(settings, splits, embedders, results)
        for name in results:
            results[name]["cross_world"] = cross_world[name]
    if settings.report_dir:
        test = splits["test"]
        directory = write_report(
            results,
            settings.report_dir,
            test_splits=test_splits,
            test_images=_LazyImages(test),
            brand_names=test.features["brand"].names,
            shots=settings.shots,
            seed=settings.seed,
            honest_threshold=honest_threshold,
        )
        if photo_results:
            with open(directory / "report.md", "a", encoding="utf-8") as report:
                report.write(f"\n\n{PHOTO_TITLE}\n\n{photo_table(photo_results)}\n")
        if cross_world:
            table = f"{CROSS_WORLD_TITLE}\n\n{cross_world_table(cross_world)}\n"
            with open(directory / "report.md", "a", encoding="utf-8") as report:
                report.write(f"\n\n{table}")
            (directory / "cross_world.md").write_text(table, encoding="utf-8")
            (directory / "cross_world.json").write_text(json.dumps(cross_world, indent=2), encoding="utf-8")
        print(f"\nReport written to {directory}/report.md")
    return results


def evaluate_cross_world(
    settings: EvaluationSettings, splits: datasets.DatasetDict, embedders: dict[str, Embedder], results: dict
) -> dict:
    """The cross-world test of `evaluate_model`: every embedder on the validation and test brands that
    `settings.out_of_world_dir` draws in other worlds, beside the same brands of the data set, with the training
    brands' mAP that `results` (`evaluate_embedder`'s, by embedder) already holds; prints the table."""
    other = load_same_brands(settings.out_of_world_dir, splits, settings.builder_config, **settings.split_options())
    in_world = {name: select_brands(splits[name], brand_names(other[name])) for name in other}
    print(f"\n{CROSS_WORLD_TITLE}\n")
    cross_world = evaluate_across_worlds(
        embedders,
        {"in-world": in_world, "out-of-world": other},
        shots=settings.shots,
        episodes=settings.episodes,
        seed=settings.seed,
    )
    for name, by_world in cross_world.items():
        memorisation = results[name].get("train_retrieval", {})
        if "images/mAP" in memorisation:  # the same training-brand sample, embedded once
            by_world["train brands"] = {"retrieval_mAP": memorisation["images/mAP"]}
    print(cross_world_table(cross_world))
    return cross_world


class _LazyImages:
    """Index a dataset's images without decoding the whole column."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset

    def __getitem__(self, index: int) -> Image.Image:
        return self.dataset[index]["image"]


__all__ = [
    "ALL_TEST",
    "BASELINES",
    "PHOTO_METHODS",
    "EvaluationSettings",
    "build_embedders",
    "colour_histogram_split",
    "evaluate_embedder",
    "evaluate_model",
    "evaluate_photos",
]
