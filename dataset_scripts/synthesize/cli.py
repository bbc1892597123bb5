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

from .write import SynthesisSummary, synthesize


def main(argv: Sequence[str] | None = None) -> SynthesisSummary:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_scripts.synthesize",
        description=importlib.import_module(__package__).__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (LogoDet-3K layout)")
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
    args = parser.parse_args(argv)
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
        )
    except (FileExistsError, MarkSourceError) as error:
        parser.exit(1, f"error: {error}\n")
    print(summary)
    if args.preview is not None:
        print(f"Preview: {args.preview}")
    return summary
