"""`logo-gallery`: build a brand gallery from a folder of logo images, for `logo-detect`, the Space or Python.

    logo-gallery build my-brands/ my-gallery/ --model runs/logo-model

`my-brands/` holds one sub-folder per brand, named as the brand, with 1-N example images of its logo (JPEG, PNG,
WebP, ... or SVG). Files that are not readable images are reported on stderr and skipped; the build goes on. The
output is the `LogoGallery.save` format (`gallery.json` + `gallery.safetensors`): `LogoGallery.load(out, embedder)`,
`logo-detect --gallery out`, or zip it and upload it to the Space.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checks import ArgumentParser, hub_names, is_missing_path


#: The embedder used when `--model` is not given (the checkpoint shipped in a clone of the repository).
SHIPPED_MODEL = "checkpoints/logo-embedding-resnet-small"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `logo-gallery`: a bad option, value or path exits at once (status 2) with one line on
    stderr. Imports nothing heavy."""
    parser = ArgumentParser(
        prog="logo-gallery", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build",
        help="embed a folder of brand folders into a gallery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("brands_dir", help="a folder with one sub-folder of logo images per brand")
    build.add_argument("out_dir", help="the gallery folder to write (gallery.json + gallery.safetensors)")
    build.add_argument(
        "--model", default=None, help=f"the embedder: a saved model or Hub id (default: {SHIPPED_MODEL})"
    )
    build.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="the gallery's cosine threshold (default: the model's calibrated config.similarity_threshold)",
    )
    build.add_argument("--batch_size", type=int, default=32, help="images embedded per forward pass")
    build.add_argument(
        "--runtime", default="auto", choices=hub_names().RUNTIMES_WITHOUT_CALIBRATION, help="what runs the network"
    )
    build.add_argument("--overwrite", action="store_true", help="replace a gallery already in OUT_DIR")
    args = parser.parse_args(argv)
    if not Path(args.brands_dir).is_dir():
        build.error(f"{args.brands_dir!r} is not a folder: give a folder with one sub-folder per brand.")
    if args.model is None:
        if not Path(SHIPPED_MODEL).is_dir():
            build.error(f"no --model given and {SHIPPED_MODEL} is not here: pass --model DIR_OR_HUB_ID.")
        args.model = SHIPPED_MODEL
    elif is_missing_path(args.model, folder=True):
        build.error(f"--model {args.model!r}: no such folder.")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        build.error(f"{args.out_dir!r} is a file: give a folder to write the gallery into.")
    if (out / hub_names().GALLERY_CONFIG_NAME).exists() and not args.overwrite:
        build.error(f"{args.out_dir!r} already holds a gallery: pass --overwrite to replace it.")
    if args.batch_size < 1:
        build.error("--batch_size must be at least 1.")
    return args


def main(argv: list[str] | None = None) -> int:
    """The `logo-gallery` command: returns 0, or 1 when no brand could be built."""
    args = parse_args(argv)
    from tqdm.auto import tqdm  # the heavy imports, once the command line is known to be right

    from modeling_logo.embedder import LogoEmbedder
    from modeling_logo.few_shot import LogoGallery, SkippedFile

    try:
        embedder = LogoEmbedder.from_pretrained(args.model, runtime=args.runtime, batch_size=args.batch_size)
    except OSError as error:
        print(f"logo-gallery: could not load the model {args.model!r}: {error}", file=sys.stderr)
        return 1
    skipped: list[SkippedFile] = []

    def report(item: SkippedFile) -> None:
        skipped.append(item)
        tqdm.write(f"Skipped {item.path}: {item.reason}", file=sys.stderr)

    try:
        gallery = LogoGallery.from_folder(
            args.brands_dir, embedder, progress=True, on_skip=report, threshold=args.threshold
        )
    except ValueError as error:
        print(f"logo-gallery: {error}", file=sys.stderr)
        return 1
    gallery.save(args.out_dir)
    shots = sum(len(gallery.shots(brand)) for brand in gallery.brands)
    print(
        f"Wrote {len(gallery)} brands ({shots} shots) to {args.out_dir}; {len(skipped)} files or folders skipped.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
