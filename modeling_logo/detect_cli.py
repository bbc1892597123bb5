"""`logo-detect`: find every logo in photos and name its brand from a saved gallery; one JSON line per photo.

    logo-detect --gallery my-gallery photos/ shelf.jpg --out results.jsonl --draw annotated/

Folders are searched recursively for images. A file that is not a readable image is reported on stderr, written as
`{"photo": ..., "error": ...}` and skipped; the run goes on. Each other line is `{"photo", "width", "height",
"detections": [{"box", "brand", "score", "box_score", "best_brand"}], "seconds"}`, with `brand` null for a logo of
no registered brand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def photo_paths(inputs: list[str]) -> list[Path]:
    """The photos named on the command line: files as given, folders searched recursively for images (sorted)."""
    paths = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            paths.append(path)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="logo-detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photos", nargs="+", help="photo files or folders")
    parser.add_argument(
        "--gallery", required=True, help="a folder written by LogoGallery.save (or the Space's zip, unpacked)"
    )
    parser.add_argument("--out", default="-", help="the JSON-lines file to write (default: standard output)")
    parser.add_argument("--draw", default=None, help="also write each photo with its logos boxed to this folder")
    parser.add_argument("--model", default=None, help="the embedder (default: the one the gallery records)")
    parser.add_argument(
        "--localizer",
        default=None,
        help="a saved logo localiser (default: the gallery's, else the shipped one); 'none' searches windows instead",
    )
    parser.add_argument(
        "--runtime", default="auto", choices=["auto", "torch", "onnxruntime"], help="what runs the networks"
    )
    parser.add_argument("--threshold", type=float, default=None, help="cosine similarity to name a brand")
    parser.add_argument("--box_threshold", type=float, default=None, help="localiser score to keep a box")
    args = parser.parse_args(argv)
    if not Path(args.gallery).is_dir():
        parser.error(f"--gallery {args.gallery!r} is not a folder (write one with LogoGallery.save).")
    return args


def main(argv: list[str] | None = None) -> int:
    """The `logo-detect` command: returns 0, or 1 when no photo could be read."""
    args = parse_args(argv)
    from tqdm.auto import tqdm

    from .detection import DEFAULT_LOCALIZER, as_photo, draw_detections
    from .few_shot import GALLERY_CONFIG_NAME, LogoGallery, load_model_and_processor
    from .image_processing_logo import InvalidImageError, open_image

    manifest = json.loads((Path(args.gallery) / GALLERY_CONFIG_NAME).read_text(encoding="utf-8"))
    model_name = args.model or manifest.get("model")
    if not model_name:
        raise SystemExit("The gallery records no model: pass --model.")
    shipped = DEFAULT_LOCALIZER if Path(DEFAULT_LOCALIZER).is_dir() else None
    localizer = args.localizer or manifest.get("localizer") or shipped
    gallery = LogoGallery.load(args.gallery, *load_model_and_processor(model_name), runtime=args.runtime)
    if localizer and localizer != "none":
        from .detection import LogoLocalizer

        gallery.localizer = LogoLocalizer.from_pretrained(localizer, runtime=args.runtime)
    else:
        print("No localiser: searching windows of each photo (finds registered brands only).", file=sys.stderr)
    paths = photo_paths(args.photos)
    if args.draw:
        os.makedirs(args.draw, exist_ok=True)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    found = failed = 0
    try:
        for number, path in enumerate(tqdm(paths, desc="Photos", unit="photo", file=sys.stderr)):
            start = time.perf_counter()
            try:
                photo = as_photo(open_image(path))  # upright (EXIF), RGB
                detections = gallery.detect(photo, args.threshold, box_threshold=args.box_threshold)
            except (InvalidImageError, FileNotFoundError, IsADirectoryError) as error:
                failed += 1
                print(f"Skipped {path}: {error}", file=sys.stderr)
                out.write(json.dumps({"photo": str(path), "error": str(error)}, ensure_ascii=False) + "\n")
                continue
            found += len(detections)
            record = {
                "photo": str(path),
                "width": photo.width,
                "height": photo.height,
                "detections": [asdict(detection) for detection in detections],
                "seconds": round(time.perf_counter() - start, 4),
            }
            if args.draw:  # numbered: photos of one name in two folders do not overwrite each other
                record["drawn"] = str(Path(args.draw) / f"{number:05d}_{path.stem}.jpg")
                draw_detections(photo, detections).save(record["drawn"], quality=92)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{len(paths) - failed} photos, {found} logos found; {failed} files skipped.", file=sys.stderr)
    return 1 if paths and failed == len(paths) else 0


if __name__ == "__main__":
    raise SystemExit(main())
