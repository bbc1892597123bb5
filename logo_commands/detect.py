"""`logo-detect`: find every logo in photos and name its brand from a saved gallery; one JSON line per photo.

    logo-detect --gallery my-gallery photos/ shelf.jpg --out results.jsonl --draw annotated/

Folders are searched recursively for images (and videos). A file that is not a readable image is reported on
stderr, written as `{"photo": ..., "error": ...}` and skipped; the run goes on. Each other line is `{"photo",
"width", "height", "detections": [{"box", "brand", "score", "box_score", "best_brand"}], "seconds"}`, with `brand`
null for a logo of no registered brand. A video file (with the `video` extra, PyAV) gives one line per sampled frame
(`--video_fps` frames per second of video), with its `frame` number and `time` in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .checks import ArgumentParser, hub_names, is_missing_path


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".svg", ".svgz")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def video_frames(path: Path, fps: float):
    """`(frame number, time in seconds, PIL image)` of a video, about `fps` frames per second of video (PyAV)."""
    try:
        import av
    except ImportError as error:
        raise ImportError('Reading videos needs PyAV: pip install "modeling-logo[video]".') from error
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        next_time = 0.0
        for number, frame in enumerate(container.decode(stream)):
            time_s = float(frame.time) if frame.time is not None else number / float(stream.average_rate or 1)
            if time_s + 1e-6 >= next_time:
                next_time = time_s + 1 / fps
                yield number, time_s, frame.to_image()


def _inputs(path: Path, fps: float):
    """What one input file holds: `(extra JSON fields, PIL image)` for each photo or sampled video frame."""
    from modeling_logo.detection import as_photo
    from modeling_logo.image_processing_logo import open_image

    if path.suffix.lower() in VIDEO_SUFFIXES:
        for number, time_s, frame in video_frames(path, fps):
            yield {"frame": number, "time": round(time_s, 3)}, as_photo(frame)
    else:
        yield {}, as_photo(open_image(path))  # upright (EXIF), RGB


def photo_paths(inputs: list[str]) -> list[Path]:
    """The photos named on the command line: files as given, folders searched recursively for images (sorted)."""
    paths = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
        else:
            paths.append(path)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `logo-detect`: a bad option, value or path exits at once (status 2) with one line on
    stderr. Imports nothing heavy."""
    parser = ArgumentParser(
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
        "--runtime", default="auto", choices=hub_names().RUNTIMES_WITHOUT_CALIBRATION, help="what runs the networks"
    )
    parser.add_argument("--threshold", type=float, default=None, help="cosine similarity to name a brand")
    parser.add_argument("--video_fps", type=float, default=1.0, help="frames searched per second of a video")
    parser.add_argument("--box_threshold", type=float, default=None, help="localiser score to keep a box")
    args = parser.parse_args(argv)
    gallery_config_name = hub_names().GALLERY_CONFIG_NAME
    if not Path(args.gallery).is_dir():
        parser.error(f"--gallery {args.gallery!r} is not a folder (write one with LogoGallery.save).")
    if not (Path(args.gallery) / gallery_config_name).is_file():
        parser.error(
            f"--gallery {args.gallery!r} holds no {gallery_config_name}: not a saved gallery (write one with "
            "`logo-gallery build` or LogoGallery.save)."
        )
    for flag in ("model", "localizer"):
        value = getattr(args, flag)
        if value and value != "none" and is_missing_path(value, folder=True):
            parser.error(f"--{flag} {value!r}: no such folder.")
    return args


def main(argv: list[str] | None = None) -> int:
    """The `logo-detect` command: returns 0, or 1 when no photo could be read."""
    args = parse_args(argv)
    from tqdm.auto import tqdm  # the heavy imports, once the command line is known to be right

    from modeling_logo.detection import DEFAULT_LOCALIZER, draw_detections
    from modeling_logo.embedder import LogoEmbedder
    from modeling_logo.few_shot import GALLERY_CONFIG_NAME, LogoGallery
    from modeling_logo.image_processing_logo import InvalidImageError

    manifest = json.loads((Path(args.gallery) / GALLERY_CONFIG_NAME).read_text(encoding="utf-8"))
    model_name = args.model or manifest.get("model")
    if not model_name:
        raise SystemExit("The gallery records no model: pass --model.")
    shipped = DEFAULT_LOCALIZER if Path(DEFAULT_LOCALIZER).is_dir() else None
    localizer = args.localizer or manifest.get("localizer") or shipped
    gallery = LogoGallery.load(args.gallery, LogoEmbedder.from_pretrained(model_name, runtime=args.runtime))
    if localizer and localizer != "none":
        from modeling_logo.detection import LogoLocalizer

        gallery.localizer = LogoLocalizer.from_pretrained(localizer, runtime=args.runtime)
    else:
        print("No localiser: searching windows of each photo (finds registered brands only).", file=sys.stderr)
    paths = photo_paths(args.photos)
    if args.draw:
        os.makedirs(args.draw, exist_ok=True)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    found = failed = 0
    try:
        for number, path in enumerate(tqdm(paths, desc="Photos", unit="file", file=sys.stderr)):
            try:
                for extra, photo in _inputs(path, args.video_fps):
                    start = time.perf_counter()
                    detections = gallery.detect(photo, args.threshold, box_threshold=args.box_threshold)
                    found += len(detections)
                    record = {
                        "photo": str(path),
                        **extra,
                        "width": photo.width,
                        "height": photo.height,
                        "detections": [asdict(detection) for detection in detections],
                        "seconds": round(time.perf_counter() - start, 4),
                    }
                    if args.draw:  # numbered: photos of one name in two folders do not overwrite each other
                        suffix = f"_{extra['frame']:06d}" if extra else ""
                        record["drawn"] = str(Path(args.draw) / f"{number:05d}_{path.stem}{suffix}.jpg")
                        draw_detections(photo, detections).save(record["drawn"], quality=92)
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            except (InvalidImageError, FileNotFoundError, IsADirectoryError, ImportError, OSError) as error:
                failed += 1
                print(f"Skipped {path}: {error}", file=sys.stderr)
                out.write(json.dumps({"photo": str(path), "error": str(error)}, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{len(paths) - failed} files searched, {found} logos found; {failed} files skipped.", file=sys.stderr)
    return 1 if paths and failed == len(paths) else 0


if __name__ == "__main__":
    raise SystemExit(main())
