"""`logo-eval`: evaluate models and baselines side by side on brands never seen in training, and write a report.

    logo-eval --model runs/logo-model --data_dir data/synthetic-logos --shots 1 5 --report report/

Baselines in the same run: `untrained` (the same architecture, random weights), `imagenet` (ImageNet backbone and
a random head, the paper's baseline; skipped with a note when the weights cannot be had offline) and `histogram`
(a colour histogram, to show what the network adds).

A downloaded model on brands of one's own (a LogoDet-3K-layout folder of brands it never trained on):

    logo-eval --model user/logo-model --data_dir my-brands --split_scheme all-test --baselines histogram

Every brand is then a test brand, and the open-set protocol uses the model's calibrated
`config.similarity_threshold` (or `--threshold`) instead of one chosen on validation brands.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import datasets
import numpy as np
import torch
from PIL import Image

from .configuration_logo import LogoEmbeddingConfig
from .detection import LogoLocalizer
from .evaluation import (
    EmbeddedSplit,
    embed_photos,
    embed_split,
    honest_protocol,
    localization_protocol,
    paper_protocol,
    photo_protocol,
    retrieval_protocol,
    seeded_sample,
)
from .few_shot import RUNTIMES, LogoGallery, Runtime, load_model_and_processor, window_boxes
from .image_processing_logo import LogoImageProcessor, to_rgb
from .modeling_logo import LogoEmbeddingModel
from .report import (
    HONEST_THRESHOLD_CALIBRATED,
    HONEST_THRESHOLD_FROM_VALIDATION,
    honest_table,
    paper_table,
    photo_table,
    retrieval_table,
    write_report,
)


Embedder = Callable[[datasets.Dataset], EmbeddedSplit]

#: `--split_scheme` choices: those of `dataset_scripts.logodet3k.SPLIT_SCHEMES` (not imported here: modeling_logo
#: does not import dataset_scripts at import time).
SPLIT_SCHEMES = ("hash", "brands", "paper", "all-test")
#: Every brand a test brand: a trained model measured on brands of one's own, with its calibrated threshold.
ALL_TEST = "all-test"


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
    {...}}` and the test embeddings. Validation brands tune the honest threshold and serve as out-of-distribution
    queries for t-mAP; a sample of training brands measures memorisation.

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
            validation, test, ways=ways, shots=shots, episodes=episodes, seed=seed,
            threshold=threshold if validation is None else None,
        )  # fmt: skip
    result = {
        "paper": [_paper_or_skip(test, k, seed) for k in shots],
        "honest": honest,
        "retrieval": retrieval_protocol(test, ood=validation),
        "train_retrieval": retrieval_protocol(embed(train)) if len(train) else {},
    }
    return result, test


def _paper_or_skip(split: EmbeddedSplit, shots: int, seed: int) -> dict:
    try:
        return paper_protocol(split, shots, seed=seed)
    except ValueError as error:  # no brand has shots + 1 images
        return {"shots": shots, "skipped": str(error)}


def build_embedders(args: argparse.Namespace) -> dict[str, Embedder]:
    embedders: dict[str, Embedder] = {}
    config, processor = None, None
    for name_or_path in args.model:
        model, processor = load_model_and_processor(name_or_path)
        config = config or model.config
        embedders[str(name_or_path)] = model_embedder(model, processor, args.batch_size, args.runtime)
    if config is None:
        config = LogoEmbeddingConfig(backbone=args.backbone, image_size=args.image_size)
        processor = LogoImageProcessor.from_model_config(config)
    baseline_config = copy.deepcopy(config)
    baseline_config.frozen_stages, baseline_config.backbone_weights = [], None
    for baseline in args.baselines:
        if baseline == "untrained":
            torch.manual_seed(args.seed)
            embedders["untrained (random init)"] = model_embedder(
                LogoEmbeddingModel(baseline_config).eval(), processor, args.batch_size, args.runtime
            )
        elif baseline == "imagenet":
            torch.manual_seed(args.seed)
            try:
                model = LogoEmbeddingModel(baseline_config, pretrained_backbone=True)
            except OSError as error:
                print(f"Skipping the ImageNet baseline: {error}")
                continue
            embedders["ImageNet backbone + random head"] = model_embedder(
                model, processor, args.batch_size, args.runtime
            )
        elif baseline == "histogram":
            embedders["colour histogram"] = colour_histogram_split
    return embedders


PHOTO_TITLE = "## Whole photos (find the logos, then name their brand; box at IoU 0.5 required)"
PHOTO_METHODS = {
    "localizer": "localiser boxes, each embedded",
    "windows": "multi-scale window search (no localiser)",
    "whole-image": "the whole photo embedded as one crop",
}


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


def evaluate_photos(args: argparse.Namespace, crop_splits: datasets.DatasetDict, split_options: dict) -> dict:
    """Localisation (class-agnostic AP50, recall) on test-brand scenes, and whole-photo open-set recognition for
    each `--model` and photo method: `{"localization": {...}, model: {method: [rows]}}`."""
    from dataset_scripts import load_logodet3k
    from dataset_scripts.scenes import split_scenes

    scenes = load_logodet3k(args.data_dir, "detection", **split_options)
    scenes = {
        name: seeded_sample(split_scenes(scenes[name]), args.photo_scenes, args.seed)
        for name in ("validation", "test")
    }
    localizer = LogoLocalizer.from_pretrained(args.localizer, runtime=args.runtime) if args.localizer else None
    results = {}
    if localizer is not None:
        results["localization"] = localization_protocol(localizer, scenes["test"])
    for name_or_path in args.model:
        model, processor = load_model_and_processor(name_or_path)
        embed_crops = LogoGallery(model, processor, batch_size=args.batch_size, runtime=args.runtime).embed_boxes
        crops = {
            name: (model_embedder(model, processor, args.batch_size, args.runtime)(crop_splits[name]),
                   np.asarray(crop_splits[name]["source"]))
            for name in ("validation", "test")
        }  # fmt: skip
        results[str(name_or_path)] = {}
        for method, find_boxes in photo_finders(localizer, args.photo_methods).items():
            print(f"Whole photos: {name_or_path} with {PHOTO_METHODS[method]} ...")
            photos = {name: embed_photos(scenes[name], find_boxes, embed_crops) for name in scenes}
            results[str(name_or_path)][method] = photo_protocol(
                (photos["validation"], *crops["validation"]), (photos["test"], *crops["test"]),
                ways=tuple(w for w in args.ways if w != "all"), shots=tuple(args.shots),
                episodes=args.photo_episodes, seed=args.seed,
            )  # fmt: skip
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="logo-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], help="a saved model directory or Hub id (repeatable)")
    parser.add_argument("--data_dir", required=True, help="LogoDet-3K layout: <Category>/<Brand>/<n>.jpg + .xml")
    parser.add_argument("--config", default="crops", choices=["crops", "images"], help="builder config")
    parser.add_argument("--cache_dir", default=None, help="datasets cache for the prepared splits")
    parser.add_argument(
        "--split_scheme",
        default="hash",
        choices=SPLIT_SCHEMES,
        help="how brands are split (as in training; see LogoDet3KConfig); all-test: every brand is a test brand, "
        "to measure a model on brands of your own with its calibrated threshold",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="with --split_scheme all-test: the open-set cosine threshold (default: each --model's calibrated "
        "config.similarity_threshold)",
    )
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--ways", nargs="+", default=["5", "20", "all"], help="N of the open-set N-way episodes")
    parser.add_argument("--episodes", type=int, default=500, help="open-set episodes per setting")
    parser.add_argument("--baselines", nargs="*", default=["untrained", "imagenet", "histogram"],
                        choices=["untrained", "imagenet", "histogram"])  # fmt: skip
    parser.add_argument("--backbone", default="resnet50", help="baselines' backbone when no --model is given")
    parser.add_argument("--image_size", type=int, default=224, help="baselines' image size when no --model is given")
    parser.add_argument("--train_sample", type=int, default=1000, help="training images for the memorisation mAP")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=RUNTIMES,
        help="what runs the models: auto = ONNX Runtime when installed (the fastest), else torch",
    )
    parser.add_argument(
        "--localizer", default=None, help="a saved logo localiser: also evaluate localisation and whole photos"
    )
    parser.add_argument(
        "--photo_methods",
        nargs="*",
        default=None,
        choices=list(PHOTO_METHODS),
        help="whole-photo methods to compare (default with --localizer: all of them; without: none)",
    )
    parser.add_argument("--photo_scenes", type=int, default=150, help="scenes per split for the photo protocol")
    parser.add_argument("--photo_episodes", type=int, default=200, help="whole-photo open-set episodes per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", default="report", help="output folder of the report ('' for none)")
    args = parser.parse_args(argv)
    args.ways = [w if w == "all" else int(w) for w in args.ways]
    if not args.model and not args.baselines:
        parser.error("nothing to evaluate: give --model and/or --baselines")
    if args.split_scheme == ALL_TEST:
        if not args.model:
            parser.error("--split_scheme all-test measures trained models on your brands: give --model")
        if args.localizer or args.photo_methods:
            parser.error("--split_scheme all-test evaluates logo crops only: whole photos need validation brands")
    elif args.threshold is not None:
        parser.error("--threshold is for --split_scheme all-test; other schemes choose it on validation brands")
    return args


def calibrated_thresholds(args: argparse.Namespace) -> dict[str, float | None]:
    """The open-set threshold of each `--model` under `all-test`: `--threshold`, else its calibrated
    `config.similarity_threshold` (`None` where it has none; baselines have none)."""
    thresholds = {}
    for name_or_path in args.model:
        calibrated = LogoEmbeddingConfig.from_pretrained(name_or_path).similarity_threshold
        thresholds[str(name_or_path)] = args.threshold if args.threshold is not None else calibrated
        if thresholds[str(name_or_path)] is None:
            print(f"{name_or_path} has no calibrated config.similarity_threshold: pass --threshold for open-set rows.")
    return thresholds


def main(argv: list[str] | None = None) -> int:
    """The `logo-eval` command."""
    run(parse_args(argv))
    return 0


def run(args: argparse.Namespace, split_options: dict | None = None) -> dict:
    """Evaluate every model and baseline, print the tables, write the report; returns the results by model.

    `split_options` (keyword arguments of `load_logodet3k`) override how the data set is split, e.g. to evaluate
    on exactly the split a model was trained with."""
    from dataset_scripts import load_logodet3k

    options = {"cache_dir": args.cache_dir, "split_scheme": args.split_scheme, **(split_options or {})}
    splits = load_logodet3k(args.data_dir, args.config, **options)
    print({split: len(dataset) for split, dataset in splits.items()})
    all_test = options["split_scheme"] == ALL_TEST
    thresholds = calibrated_thresholds(args) if all_test else {}
    results, test_splits = {}, {}
    for name, embed in build_embedders(args).items():
        print(f"Evaluating {name} ...")
        results[name], test_splits[name] = evaluate_embedder(
            embed, splits, shots=tuple(args.shots), ways=tuple(args.ways), episodes=args.episodes, seed=args.seed,
            train_sample=args.train_sample, threshold=thresholds.get(name),
        )  # fmt: skip
    honest_threshold = HONEST_THRESHOLD_CALIBRATED if all_test else HONEST_THRESHOLD_FROM_VALIDATION
    print("\n## The paper's protocol (threshold tuned on test brands, as in the paper)\n")
    print(paper_table(results))
    print(f"\n## The honest protocol ({honest_threshold}, 95% CI)\n")
    print(honest_table(results))
    print("\n## Retrieval\n")
    print(retrieval_table(results))
    photo_results = None
    if args.photo_methods is None:
        args.photo_methods = list(PHOTO_METHODS) if args.localizer else []
    if args.photo_methods and (args.model or args.localizer):
        photo_results = evaluate_photos(args, splits, options)
        print(f"\n{PHOTO_TITLE}\n")
        print(photo_table(photo_results))
        for name in args.model:
            results[str(name)]["photos"] = photo_results[str(name)]
            results[str(name)]["localization"] = photo_results.get("localization")
    if args.report:
        test = splits["test"]
        directory = write_report(
            results, args.report, test_splits=test_splits, test_images=_LazyImages(test),
            brand_names=test.features["brand"].names, shots=tuple(args.shots), seed=args.seed,
            honest_threshold=honest_threshold,
        )  # fmt: skip
        if photo_results:
            with open(directory / "report.md", "a", encoding="utf-8") as report:
                report.write(f"\n\n{PHOTO_TITLE}\n\n{photo_table(photo_results)}\n")
        print(f"\nReport written to {directory}/report.md")
    return results


class _LazyImages:
    """Index a dataset's images without decoding the whole column."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset

    def __getitem__(self, index: int) -> Image.Image:
        return self.dataset[index]["image"]


if __name__ == "__main__":
    raise SystemExit(main())
