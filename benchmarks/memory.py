#!/usr/bin/env python
"""Memory (issue 8, part 5): peak RSS of training per batch size, and of the Space with a 1,000-brand gallery.

    python benchmarks/memory.py                                  # resnet-small at 96 px, P×K = 8×4 ... 64×4; the Space
    python benchmarks/memory.py --backbone resnet50 --image_size 224 --batch_sizes 8 16 --skip_space
    python benchmarks/memory.py --skip_training --space_brands 300

Every measurement runs in a fresh Python process, so that its peak RSS (`VmHWM` in `/proc/self/status`) is its own.

- Training: a few real steps of `LogoEmbeddingModel` in train mode with the project's multi-similarity loss and miner
  and AdamW, on random pixels whose labels are P brands × K images. The baseline is the RSS before the first step
  (imports, model and optimizer); the steps add activations, gradients and AdamW's state.
- Space: `space/app.py`'s `GalleryApp` with an untrained resnet-small model (the size of the shipped one), brands
  registered one at a time through its `add_brand` callback from generated PNG files (a coloured shape on a coloured
  background, with pixel noise so that the thumbnails weigh what photos' do), then searches through its `search`
  callback, which reads the session's live gallery (`gallery_of`; edits go to a copy, `edited`). Brands left when the
  build budget runs out are stored from random unit embeddings in the same state (said so in the output).

Prints tables and writes `benchmarks/results/memory.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_result


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # space/ is a package of the repository, not installed
MIB = 1024 * 1024

# torch, gradio and the package are imported inside the children only: the parent measures nothing.


# ---------------------------------------------------------------------------------------------------------------------
# Helpers shared with scaling.py


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(f"{field} is not in /proc/self/status")


def rss_mib() -> float:
    """This process's resident set size now, in MiB."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """This process's peak resident set size (`VmHWM`: since it started, or since `reset_peak_rss`), in MiB."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Reset `VmHWM` to the current RSS (Linux 4.0+), so that the next peak is that of what runs next. Returns whether
    the kernel allowed it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_child(script: str | os.PathLike, arguments: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `script --_child ... --_result FILE` in a fresh interpreter and return the JSON it writes to FILE."""
    with tempfile.TemporaryDirectory(prefix="logo-benchmark-") as directory:
        result = Path(directory) / "result.json"
        command = [sys.executable, str(script), *arguments, "--_result", str(result)]
        process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
        if process.returncode != 0 or not result.is_file():
            raise RuntimeError(
                f"{' '.join(command[1:])} failed with exit status {process.returncode}:\n{process.stderr[-4000:]}"
            )
        return json.loads(result.read_text())


def median_seconds(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------------------------------
# Training (child)


def train_child(args) -> dict:
    import torch

    from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel
    from modeling_logo.losses import build_loss, build_miner

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    brands = args.batch_size // args.images_per_brand
    config = LogoEmbeddingConfig(backbone=args.backbone, image_size=args.image_size)
    model = LogoEmbeddingModel(config).train()
    loss_fn = build_loss("multi-similarity", embedding_size=config.embedding_size)
    miner = build_miner("multi-similarity", "multi-similarity")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    labels = torch.arange(brands).repeat_interleave(args.images_per_brand)
    baseline = rss_mib()
    step_seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size)  # a new batch, as a loader gives
        embeddings = model(pixels).embeddings
        loss = loss_fn(embeddings, labels, miner(embeddings, labels))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_seconds.append(time.perf_counter() - start)
    steady = step_seconds[1:] or step_seconds  # the first step also allocates AdamW's state
    return {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "brands_per_batch": brands,
        "images_per_brand": args.images_per_brand,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "parameters_millions": sum(p.numel() for p in model.parameters()) / 1e6,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
        "first_step_seconds": step_seconds[0],
        "seconds_per_step": statistics.mean(steady),
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Space (child)


def load_app_module():
    import space.app

    return space.app


def logo_image(rng, size: int = 160, noise: int = 12, design: tuple | None = None):
    """A generated logo photo: one shape (the brand's design) on a background, jittered, with pixel noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    background, colour, kind = design or (tuple(rng.integers(0, 256, 3)), tuple(rng.integers(0, 256, 3)), 0)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    x, y = rng.integers(size // 8, size // 3, 2)
    box = (int(x), int(y), int(x + size // 2), int(y + size // 2))
    draw = ImageDraw.Draw(image)
    fill = tuple(int(c) for c in colour)
    if kind == 0:
        draw.ellipse(box, fill=fill)
    elif kind == 1:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=fill)
    if noise:
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-noise, noise + 1, (size, size, 3), dtype=np.int16)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image


def brand_files(rng, directory: Path, brand: int, shots: int, noise: int) -> list[str]:
    design = (tuple(rng.integers(0, 256, 3)), tuple(rng.integers(0, 256, 3)), int(rng.integers(3)))
    paths = []
    for shot in range(shots):
        path = directory / f"brand-{brand}-{shot}.png"
        logo_image(rng, noise=noise, design=design).save(path)
        paths.append(str(path))
    return paths


def space_child(args) -> dict:
    import numpy as np
    import torch

    app_module = load_app_module()
    imports_rss = rss_mib()
    torch.manual_seed(0)  # the same untrained weights in every run: its ONNX export is cached (MODELING_LOGO_CACHE)
    embedder, untrained = app_module.load_embedder(app_module.UNTRAINED_CHOICE)
    app = app_module.GalleryApp(embedder, untrained=untrained)
    directory = Path(args.work_dir)
    warm_up = brand_files(np.random.default_rng(args.seed + 1), directory, -1, 1, args.noise)
    app.add_brand("warm-up", warm_up, app.empty_state())  # first image: lazy set-up
    model_rss, load_peak = rss_mib(), peak_rss_mib()
    reset_peak_rss()

    rng = np.random.default_rng(args.seed)
    state = app.empty_state()
    add_seconds, deadline = [], time.perf_counter() + args.space_build_budget_s
    for brand in range(args.space_brands):
        if time.perf_counter() > deadline:
            break
        files = brand_files(rng, directory, brand, args.space_shots, args.noise)
        start = time.perf_counter()
        state, *_ = app.add_brand(f"brand-{brand}", files, state)
        add_seconds.append(time.perf_counter() - start)
        for file in files:
            os.remove(file)
    through_images = len(add_seconds)
    if through_images < args.space_brands:  # out of time: the rest from random unit embeddings, same state format
        thumbnails = [app_module._thumbnail_data(logo_image(rng, noise=args.noise)) for _ in range(args.space_shots)]
        vectors = rng.standard_normal((args.space_brands - through_images, args.space_shots, 128), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
        gallery = app.edited(state)
        for offset, shots in enumerate(vectors):
            # Copies, so that each brand's thumbnails take their own memory, as distinct images' would.
            copies = [thumbnail[:1] + thumbnail[1:] for thumbnail in thumbnails]
            gallery.add_brand_embeddings(
                f"brand-{through_images + offset}", torch.from_numpy(shots), metadata={"thumbnails": copies}
            )
        state = app.state_of(gallery, state)
    built_rss = rss_mib()

    query = brand_files(rng, directory, args.space_brands, 1, args.noise)[0]
    gallery_of_seconds = median_seconds(lambda: app.gallery_of(state))
    views_seconds = median_seconds(lambda: app.views(state))
    search_seconds = median_seconds(lambda: app.search(query, None, state))
    final = app.gallery_of(state)
    thumbnails = [t for brand in final.brands for t in final.metadata(brand).get("thumbnails", [])]
    first, last = add_seconds[:100], add_seconds[-100:]
    return {
        "brands": args.space_brands,
        "shots_per_brand": args.space_shots,
        "registered_through_images": through_images,
        "registered_from_random_embeddings": args.space_brands - through_images,
        "imports_rss_mib": imports_rss,
        "model_rss_mib": model_rss,
        "model_only_mib": model_rss - imports_rss,
        "model_load_peak_mib": load_peak,
        "gallery_rss_mib": built_rss,
        "peak_after_model_mib": peak_rss_mib(),
        "state_mb": len(json.dumps(state.gallery.to_dict())) / 1e6,
        "state_shots_mb": len(json.dumps([final.shots(brand).tolist() for brand in final.brands])) / 1e6,
        "state_thumbnails_mb": len(json.dumps(thumbnails)) / 1e6,
        "mean_thumbnail_kb": sum(map(len, thumbnails)) / len(thumbnails) / 1e3,
        "build_seconds": sum(add_seconds),
        "add_brand_first_100_ms": 1000 * statistics.mean(first) if first else None,
        "add_brand_last_100_ms": 1000 * statistics.mean(last) if last else None,
        "gallery_of_seconds": gallery_of_seconds,
        "views_seconds": views_seconds,
        "search_seconds": search_seconds,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Parent


def print_training(rows: list[dict]) -> None:
    print(
        "\n| backbone | px | P×K | images | baseline RSS MiB | peak RSS MiB | peak − baseline MiB | s/step | threads |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['backbone']} | {row['image_size']} | {row['brands_per_batch']}×{row['images_per_brand']} | "
            f"{row['batch_size']} | {row['baseline_rss_mib']:.0f} | {row['peak_rss_mib']:.0f} | "
            f"{row['peak_rss_mib'] - row['baseline_rss_mib']:.0f} | {row['seconds_per_step']:.2f} | "
            f"{row['torch_threads']} |"
        )


def print_space(space: dict) -> None:
    brands, shots = space["brands"], space["shots_per_brand"]
    via_images = space["registered_through_images"]
    how = (
        "all through `add_brand` with images"
        if via_images == brands
        else (
            f"{via_images} through `add_brand` with images, {brands - via_images} from random unit embeddings "
            "(the image build ran out of its time budget)"
        )
    )
    rows = [
        ("brands × shots", f"{brands:,} × {shots} ({how})"),
        ("RSS after imports (torch, gradio, app)", f"{space['imports_rss_mib']:.0f} MiB"),
        (
            "RSS with the model loaded (+ its ONNX Runtime session)",
            f"{space['model_rss_mib']:.0f} MiB (model alone: {space['model_only_mib']:.0f} MiB)",
        ),
        ("peak RSS while loading the model", f"{space['model_load_peak_mib']:.0f} MiB"),
        ("RSS with the gallery built", f"{space['gallery_rss_mib']:.0f} MiB"),
        ("peak RSS after the model is loaded (build + searches)", f"{space['peak_after_model_mib']:.0f} MiB"),
        (
            "session state, JSON",
            f"{space['state_mb']:.1f} MB (shots {space['state_shots_mb']:.1f} MB, thumbnails "
            f"{space['state_thumbnails_mb']:.1f} MB at {space['mean_thumbnail_kb']:.1f} kB each)",
        ),
        ("building through `add_brand`", f"{space['build_seconds']:.1f} s for {via_images} brands"),
        (
            "one `add_brand`: first 100 / last 100 brands",
            f"{space['add_brand_first_100_ms'] or 0:.0f} / {space['add_brand_last_100_ms'] or 0:.0f} ms",
        ),
        ("`gallery_of` (the session's gallery)", f"{space['gallery_of_seconds'] * 1000:.0f} ms"),
        ("`views` (brand gallery, dropdown, summary)", f"{space['views_seconds'] * 1000:.0f} ms"),
        ("one `search` (localise + embed + rank)", f"{space['search_seconds'] * 1000:.0f} ms"),
    ]
    print("\n| Space | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet-small")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 64, 128, 256], help="images: P × K")
    parser.add_argument("--images_per_brand", type=int, default=4, help="K")
    parser.add_argument("--steps", type=int, default=3, help="training steps per batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of training; default: torch's")
    parser.add_argument("--space_brands", type=int, default=1000)
    parser.add_argument("--space_shots", type=int, default=3)
    parser.add_argument(
        "--space_build_budget_s",
        type=float,
        default=45.0,
        help="registering through images stops after this; the rest come from random embeddings",
    )
    parser.add_argument("--noise", type=int, default=12, help="pixel noise of the generated images (0: flat colours)")
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument("--skip_space", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/memory.json")
    parser.add_argument("--_child", choices=["train", "space"], help=argparse.SUPPRESS)
    parser.add_argument("--_result", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work_dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args._child:
        result = train_child(args) if args._child == "train" else space_child(args)
        Path(args._result).write_text(json.dumps(result))
        return result

    common = ["--backbone", args.backbone, "--image_size", str(args.image_size)]
    common += ["--threads", str(args.threads)] if args.threads else []
    start = time.perf_counter()
    training = []
    if not args.skip_training:
        for batch_size in args.batch_sizes:
            if batch_size % args.images_per_brand:
                raise ValueError(f"Batch size {batch_size} is not a multiple of K = {args.images_per_brand}.")
            training.append(
                run_child(
                    __file__,
                    [
                        "--_child",
                        "train",
                        *common,
                        "--batch_size",
                        str(batch_size),
                        "--images_per_brand",
                        str(args.images_per_brand),
                        "--steps",
                        str(args.steps),
                    ],
                )
            )
            print(f"training, batch {batch_size}: peak {training[-1]['peak_rss_mib']:.0f} MiB", flush=True)
        print_training(training)

    space = None
    if not args.skip_space:
        with tempfile.TemporaryDirectory(prefix="logo-space-benchmark-") as work_dir:
            # TMPDIR: the app's thumbnail files go to a folder removed afterwards; the ONNX export is cached in /tmp.
            env = {
                **os.environ,
                "TMPDIR": work_dir,
                "MODELING_LOGO_CACHE": str(Path(tempfile.gettempdir()) / "logo-benchmark-cache"),
            }
            space = run_child(
                __file__,
                [
                    "--_child",
                    "space",
                    "--space_brands",
                    str(args.space_brands),
                    "--space_shots",
                    str(args.space_shots),
                    "--noise",
                    str(args.noise),
                    "--space_build_budget_s",
                    str(args.space_build_budget_s),
                    "--seed",
                    str(args.seed),
                    "--work_dir",
                    work_dir,
                ],
                env=env,
            )
        print_space(space)
    print(f"\n{time.perf_counter() - start:.0f} s in all")

    result = {"training": training, "space": space}
    write_result("memory", result, args.output)
    return result


if __name__ == "__main__":
    main()
