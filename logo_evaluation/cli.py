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
import sys
from typing import NoReturn

# Only the light settings module: the command line is checked before torch, transformers and datasets are imported.
from .settings import BASELINES, PHOTO_METHODS, RUNTIMES, SPLIT_SCHEMES, EvaluationSettings, check_inputs


PROG = "logo-eval"


def usage_error(message: str) -> NoReturn:
    """Exit with status 2 and `message` on one line of stderr: a mistake in the command line, not a traceback."""
    print(f"{PROG}: error: {message} (see {PROG} --help)", file=sys.stderr)
    raise SystemExit(2)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (and exit status 2) instead of the whole usage text."""

    def error(self, message: str):
        usage_error(message)


def parse_args(argv: list[str] | None = None) -> EvaluationSettings:
    """The command line of `logo-eval` as the settings of [`evaluate_model`]: a bad option or value exits at once
    (status 2) with one line on stderr. Reads no file; imports nothing heavy."""
    parser = _ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument(
        "--ways", nargs="+", type=_ways, default=[5, 20, "all"], help="N of the open-set N-way episodes, or 'all'"
    )
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
    parser.add_argument(
        "--out_of_world_dir",
        default=None,
        help="the cross-world test: the same brands drawn in other visual worlds (a set in the same layout)",
    )
    args = parser.parse_args(argv)
    try:
        settings = EvaluationSettings(
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
            ways=args.ways,
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
            out_of_world_dir=args.out_of_world_dir,
        )
    except ValueError as error:
        usage_error(str(error))
    return settings


def check_command_line(argv: list[str] | None = None) -> EvaluationSettings:
    """[`parse_args`], then [`~settings.check_inputs`] (the data folder, models and localiser on disk): what
    `logo-eval` runs before it imports torch, transformers or `datasets`; a problem exits (status 2) with one line."""
    settings = parse_args(argv)
    try:
        check_inputs(settings)
    except ValueError as error:
        usage_error(str(error))
    return settings


def _ways(value: str) -> int | str:
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number of brands nor 'all'") from None


def main(argv: list[str] | None = None) -> int:
    """The `logo-eval` command: check the command line, then import the models' libraries and evaluate."""
    settings = check_command_line(argv)
    from .runner import evaluate_model  # the heavy imports, once the command line is known to be right

    evaluate_model(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
