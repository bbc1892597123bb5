#!/usr/bin/env python
"""Embedding throughput against this machine's limit (issue 8, part 1), measured side by side in one run.

    python benchmarks/embedding_throughput.py                       # the shipped checkpoint (resnet-small, 96 px)
    python benchmarks/embedding_throughput.py --backbone resnet50 --image_size 224 --batch_sizes 1 16

The limit: the CPU's fp32 GEMM rate (the faster of a large `torch.matmul` and `numpy.matmul`) divided by the model's forward FLOPs per image (counted
by `torch.utils.flop_counter`). Every path is checked against eager fp32 before it is timed. Prints a table and writes
`benchmarks/results/embedding_throughput_<backbone>.json`.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import write_result
from torch.utils.flop_counter import FlopCounterMode

from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel


CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "logo-embedding-resnet-small"


def gemm_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The best fp32 matrix-multiply rate reached here, in GFLOP/s: the faster of torch's and NumPy's BLAS (best of
    `repeats` each), with torch's thread count. ONNX Runtime's convolutions can beat torch's own GEMM, so torch's
    rate alone would understate the limit."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for multiply, x, y in ((torch.matmul, a, b), (np.matmul, a.numpy(), b.numpy())):
        multiply(x, y)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            multiply(x, y)
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def forward_gflops(model: torch.nn.Module, image_size: int | tuple[int, int]) -> float:
    """GFLOPs of one forward pass on one image of `image_size` (a square's side, or `(height, width)`)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, height, width))
    return counter.get_total_flops() / 1e9


def images_per_second(run, pixels: torch.Tensor, min_seconds: float) -> float:
    """Steady-state rate: one warm-up call, then repeat until `min_seconds` have passed (at least twice)."""
    run(pixels)
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds:
        run(pixels)
        calls += 1
    return calls * len(pixels) / (time.perf_counter() - start)


def paths(model: LogoEmbeddingModel) -> dict:
    """The inference paths, each a function pixels -> embeddings (ONNX Runtime when the `onnx` extra is installed)."""
    channels_last = LogoEmbeddingModel(model.config).eval()
    channels_last.load_state_dict(model.state_dict())
    channels_last = channels_last.to(memory_format=torch.channels_last)

    def eager(pixels):
        return model(pixels).embeddings

    def eager_channels_last(pixels):
        return channels_last(pixels.contiguous(memory_format=torch.channels_last)).embeddings

    def bf16_autocast(pixels):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(pixels).embeddings.float()

    compiled = torch.compile(model)

    def torch_compile(pixels):
        return compiled(pixels).embeddings

    runs = {
        "eager fp32": eager,
        "channels_last fp32": eager_channels_last,
        "bf16 autocast": bf16_autocast,
        "torch.compile fp32": torch_compile,
    }
    try:
        from modeling_logo.onnx import OnnxLogoEmbedder, export_onnx

        onnx_file = Path(tempfile.mkdtemp()) / "logo.onnx"
        runs["onnxruntime fp32"] = OnnxLogoEmbedder(export_onnx(model, onnx_file))
    except ImportError as error:
        print(f"skipping ONNX Runtime: {error}")
    return runs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None, help="default: the shipped checkpoint's model")
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--min_seconds", type=float, default=3.0, help="timing per path and batch size")
    parser.add_argument("--output", default=None, help="default: results/embedding_throughput_<backbone>.json")
    args = parser.parse_args(argv)

    if args.backbone is None:
        model = LogoEmbeddingModel.from_pretrained(CHECKPOINT)
    else:
        model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone=args.backbone, image_size=args.image_size or 224))
    model.eval()
    size = model.config.image_size
    gflops_per_image = forward_gflops(model, size)
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    gemm_before = gemm_gflops()
    rows = []
    with torch.inference_mode():
        reference_pixels = torch.randn(4, 3, size, size)
        reference = model(reference_pixels).embeddings
        for name, run in paths(model).items():
            error = float((run(reference_pixels).float() - reference).abs().max())
            for batch_size in args.batch_sizes:
                rate = images_per_second(run, torch.randn(batch_size, 3, size, size), args.min_seconds)
                rows.append(
                    {"path": name, "batch_size": batch_size, "images_per_second": rate, "max_abs_error": error}
                )
    # The CPU's rate drifts on a shared machine: the limit is the best GEMM rate seen before or after the paths.
    gemm = max(gemm_before, gemm_gflops())
    limit = gemm / gflops_per_image
    for row in rows:
        row["fraction_of_limit"] = row["images_per_second"] / limit
    print(
        f"fp32 GEMM: {gemm:.1f} GFLOP/s (before the paths {gemm_before:.1f}); {model.config.backbone} at {size} px: "
        f"{gflops_per_image:.3f} GFLOP/image; limit: {limit:.1f} images/s\n"
    )

    print("| path | batch | images/s | × eager | of the limit | max |Δ| vs eager |")
    print("| --- | --- | --- | --- | --- | --- |")
    eager = {row["batch_size"]: row["images_per_second"] for row in rows if row["path"] == "eager fp32"}
    for row in rows:
        print(
            f"| {row['path']} | {row['batch_size']} | {row['images_per_second']:.1f} | "
            f"{row['images_per_second'] / eager[row['batch_size']]:.2f} | {row['fraction_of_limit']:.0%} | "
            f"{row['max_abs_error']:.1e} |"
        )
    result = {
        "backbone": model.config.backbone,
        "image_size": size,
        "gemm_gflops": gemm,
        "gflops_per_image": gflops_per_image,
        "limit_images_per_second": limit,
        "rows": rows,
    }
    write_result(f"embedding_throughput_{model.config.backbone}", result, args.output)
    return result


if __name__ == "__main__":
    main()
