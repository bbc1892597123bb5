#!/usr/bin/env python
"""Whole-photo speed: the localiser per photo (ONNX Runtime vs PyTorch, and the photo's own padded canvas vs the
square) against the GEMM limit, and end to end photo -> brands (`LogoGallery.detect`: localise, crop, embed, match)
at 640 x 480, with peak memory, in one run.

    python benchmarks/photo_pipeline.py                  # the shipped localiser and embedder
    python benchmarks/photo_pipeline.py --photos 10      # fewer photos (a smoke run)

The limit: the fp32 GEMM rate (`embedding_throughput.gemm_gflops`) divided by the localiser's forward FLOPs per
photo. The canvas: `LogoLocalizerImageProcessor` pads a 4:3 photo's letterbox to 320 x 256 (`pad_size_divisor`),
measured beside the 320 x 320 square (`pad_size_divisor=None`) with the boxes both find. Photos are generated scenes
of test brands (never trained on; nothing is chosen on them), upscaled to 640 x 480. Writes
`benchmarks/results/photo_pipeline.json`.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from _results import write_result
from embedding_throughput import forward_gflops, gemm_gflops
from localizer_canvas import square_processor
from PIL import Image

from modeling_logo import LogoGallery
from modeling_logo.detection import DEFAULT_LOCALIZER, LogoLocalizer
from modeling_logo.metrics import match_detections


ROOT = Path(__file__).resolve().parents[1]
EMBEDDER = ROOT / "checkpoints" / "logo-embedding-resnet-small"
LOCALIZER = ROOT / DEFAULT_LOCALIZER
SQUARE = "onnxruntime, square canvas"


def test_photos(count: int, seed: int = 0) -> list[Image.Image]:
    """Scenes of test brands of the hash split, generated here and upscaled to 640 x 480."""
    import tempfile

    from dataset_scripts.logodet3k import hash_split_of
    from dataset_scripts.synthesize import synthesize

    directory = Path(tempfile.mkdtemp(prefix="photo-bench-"))
    brands = max(1, count // 4)
    synthesize(
        directory, brands, 4, seed=seed, progress=False, brand_filter=lambda b: hash_split_of(b.folder) == "test"
    )
    paths = sorted(directory.rglob("*.jpg"))[:count]
    return [Image.open(path).convert("RGB").resize((640, 480), Image.BILINEAR) for path in paths]


def seconds_per_call(run, repeats: int) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--localizer", default=str(LOCALIZER))
    parser.add_argument("--embedder", default=str(EMBEDDER))
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/photo_pipeline.json")
    args = parser.parse_args(argv)

    photos = test_photos(args.photos)
    localizers = {
        runtime: LogoLocalizer.from_pretrained(args.localizer, runtime=runtime) for runtime in ("torch", "onnxruntime")
    }
    model = localizers["torch"].model
    square = square_processor(localizers["torch"].image_processor)
    localizers[SQUARE] = LogoLocalizer(localizers["onnxruntime"].model, square, runtime="onnxruntime")
    size = model.config.image_size
    pixels = {
        runtime: localizer.image_processor(photos[:1])["pixel_values"] for runtime, localizer in localizers.items()
    }
    canvas = tuple(pixels["onnxruntime"].shape[-2:])
    limit = gemm_gflops() / forward_gflops(model, canvas)  # photos per second at the GEMM rate
    network = {
        runtime: seconds_per_call(lambda r=localizer, x=pixels[runtime]: r._network()(x), 10)
        for runtime, localizer in localizers.items()
    }
    whole = {
        runtime: seconds_per_call(lambda r=localizer: [r([photo]) for photo in photos], 1) / len(photos)
        for runtime, localizer in localizers.items()
    }
    # The same logos either way? Each canvas's boxes (at the calibrated threshold) matched to the square's, IoU 0.5.
    found = {runtime: [localizers[runtime]([photo])[0] for photo in photos] for runtime in ("onnxruntime", SQUARE)}
    agreeing = sum(
        int(match_detections(mine["boxes"], mine["scores"], theirs["boxes"].tolist()).sum())
        for mine, theirs in zip(found["onnxruntime"], found[SQUARE])
    )

    gallery = LogoGallery.from_pretrained(args.embedder, localizer=localizers["onnxruntime"], runtime="auto")
    rng = np.random.default_rng(0)
    gallery.add_brands({f"brand {i}": rng.normal(size=(5, gallery.embedding_size)) for i in range(100)})
    gallery.detect(photos[0])  # the embedder's ONNX export happens here, not in the timing
    start = time.perf_counter()
    logos = sum(len(gallery.detect(photo)) for photo in photos)
    end_to_end = (time.perf_counter() - start) / len(photos)
    result = {
        "photo_size": [640, 480],
        "localizer_input": size,
        "localizer_canvas": list(canvas),
        "localizer_gflops_per_photo": forward_gflops(model, canvas),
        "localizer_gflops_per_photo_square": forward_gflops(model, size),
        "gemm_limit_photos_per_second": limit,
        "network_ms": {runtime: 1000 * s for runtime, s in network.items()},
        "localize_ms_per_photo": {runtime: 1000 * s for runtime, s in whole.items()},
        "onnx_speedup": network["torch"] / network["onnxruntime"],
        "canvas_speedup": network[SQUARE] / network["onnxruntime"],
        "boxes": {runtime: sum(len(f["boxes"]) for f in found[runtime]) for runtime in found},
        "boxes_found_on_both_canvases": agreeing,
        "fraction_of_gemm_limit_onnx": (1 / network["onnxruntime"]) / limit,
        "end_to_end_ms_per_photo": 1000 * end_to_end,
        "logos_per_photo": logos / len(photos),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(write_result("photo_pipeline", result, args.out), indent=2))
    return result


if __name__ == "__main__":
    main()
