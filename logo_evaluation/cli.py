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

from dataset_scripts.logodet3k import SPLIT_SCHEMES
from modeling_logo.few_shot import RUNTIMES

from .runner import BASELINES, PHOTO_METHODS, EvaluationSettings, evaluate_model


def parse_args(argv: list[str] | None = None) -> EvaluationSettings:
    """The command line of `logo-eval` as the settings of [`evaluate_model`] (exits with a usage error on a bad one)."""
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
        "--train_fraction",
        type=float,
        default=None,
        help="training brands of the brands/hash schemes (as in training)",
    )
    parser.add_argument(
        "--validation_fraction",
        type=float,
        default=None,
        help="validation brands of the brands/hash schemes (as in training)",
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
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
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
    try:
        return EvaluationSettings(
            data_dir=args.data_dir,
            models=args.model,
            baselines=args.baselines,
            builder_config=args.config,
            cache_dir=args.cache_dir,
            split_scheme=args.split_scheme,
            train_fraction=args.train_fraction,
            validation_fraction=args.validation_fraction,
            threshold=args.threshold,
            shots=args.shots,
            ways=[w if w == "all" else int(w) for w in args.ways],
            episodes=args.episodes,
            backbone=args.backbone,
            image_size=args.image_size,
            train_sample=args.train_sample,
            batch_size=args.batch_size,
            runtime=args.runtime,
            localizer=args.localizer,
            photo_methods=args.photo_methods,
            photo_scenes=args.photo_scenes,
            photo_episodes=args.photo_episodes,
            seed=args.seed,
            report_dir=args.report,
        )
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    """The `logo-eval` command."""
    evaluate_model(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
