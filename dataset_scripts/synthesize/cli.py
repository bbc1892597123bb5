"""`python -m dataset_scripts.synthesize`: the generator's command line."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from dataset_scripts.logo_sources import (
    MarkSourceError,
    default_cache_dir,
)

from .worlds import ALL_WORLDS, describe_worlds
from .write import SynthesisSummary, synthesize


def main(argv: Sequence[str] | None = None) -> SynthesisSummary | None:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_scripts.synthesize",
        description=importlib.import_module(__package__).__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", type=Path, help="output folder (LogoDet-3K layout); required unless --list-worlds")
    parser.add_argument(
        "--brands",
        type=lambda text: None if text == "all" else int(text),
        default=300,
        help="number of brands (default: 300), or 'all' (every usable brand but 64 distractors)",
    )
    parser.add_argument("--images-per-brand", type=int, default=12, help="images per brand, over its designs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--image-size", type=int, default=320, help="long side of the images in pixels")
    parser.add_argument("--source", choices=("simple-icons", "iconify", "both"), default="both")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"mark cache (default: {default_cache_dir()})")
    parser.add_argument("--preview", type=Path, default=None, help="also write a contact sheet to this PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier generated set in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--photo-families",
        default=None,
        help=f"comma-separated photo families to draw backgrounds from, or '{ALL_WORLDS}' (every installed one); "
        "default: the original scikit-image/surfaces mix. See --list-worlds",
    )
    parser.add_argument(
        "--styles",
        default=None,
        help=f"comma-separated composition styles, or '{ALL_WORLDS}'; default: the original 'pasted' only",
    )
    parser.add_argument(
        "--list-worlds", action="store_true", help="list the photo families (licences, availability) and styles"
    )
    args = parser.parse_args(argv)
    if args.list_worlds:
        print(describe_worlds())
        return None
    if args.out is None:
        parser.error("--out is required")
    try:
        summary = synthesize(
            args.out,
            num_brands=args.brands,
            images_per_brand=args.images_per_brand,
            seed=args.seed,
            workers=args.workers,
            image_size=args.image_size,
            source=args.source,
            cache_dir=args.cache_dir,
            preview=args.preview,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            photo_families=args.photo_families,
            styles=args.styles,
        )
    except (FileExistsError, MarkSourceError, ValueError) as error:
        parser.exit(1, f"error: {error}\n")
    print(summary)
    if args.preview is not None:
        print(f"Preview: {args.preview}")
    return summary
