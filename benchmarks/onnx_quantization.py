#!/usr/bin/env python
"""int8 ONNX Runtime against fp32 (issue 22, item 3): speed and unseen-brand retrieval mAP, measured in one run.

    python benchmarks/onnx_quantization.py                       # the shipped checkpoint on data/synthetic-logos
    python benchmarks/onnx_quantization.py --rounds 3 --min_seconds 0.5      # quicker, noisier

The shipped checkpoint (`checkpoints/logo-embedding-resnet-small`) is exported to ONNX (fp32) and quantized by
ONNX Runtime in the ways it offers on CPU:

- dynamic (`quantize_dynamic`, int8 or uint8 weights; activations quantized per batch at run time, no calibration);
- static QDQ (`quantize_static`), activation ranges calibrated (MinMax) on `--calibration_images` box crops of
  *training* brands of the `hash` split (never a test brand): weights per output channel with 7-bit range (the
  package's `modeling_logo.onnx.quantize_onnx`), per channel with the full 8 bits, and per tensor.

Each file embeds the box crops of the test brands of the generated benchmark (`data/synthetic-logos`, made by
`python -m dataset_scripts.synthesize --out data/synthetic-logos --brands 300 --images-per-brand 12 --seed 0`; see
README "Data") and is scored as `logo-eval` scores a model: retrieval mAP and recall@1 of every test crop against
the others (`modeling_logo.evaluation.retrieval_protocol`), plus how far its embeddings are from fp32's. Speed:
images/s at each batch size, the files called in turn (a shared machine's load drifts), in several rounds, each
ratio to fp32 taken within a round and the median kept. A quantization is kept only where it loses at most 0.01 mAP and is
faster than fp32 at every batch size. bf16 is not an ONNX Runtime file here: where the CPU computes it natively
(AVX512-BF16/AMX) `embedding_throughput.py` measures it, elsewhere it is recorded as not applicable. Writes `benchmarks/results/onnx_quantization.json`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from _results import write_result
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from dataset_scripts import load_logodet3k
from modeling_logo import LogoEmbedder
from modeling_logo.evaluation import EmbeddedSplit, retrieval_protocol, seeded_sample
from modeling_logo.onnx import OnnxLogoEmbedder, _CalibrationReader, export_onnx, quantize_onnx


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from train import cpu_has_native_bf16  # noqa: E402  (the check train.py decides its precision by)


CHECKPOINT = ROOT / "checkpoints" / "logo-embedding-resnet-small"
KEPT = "int8 static QDQ, per channel, 7-bit weights (package)"
MAX_MAP_LOSS = 0.01


def quantized_files(fp32: Path, calibration_pixels: np.ndarray, directory: Path) -> dict[str, Path]:
    """fp32 and each quantization of it, by name."""
    prepared = directory / "prepared.onnx"
    quant_pre_process(fp32, prepared, skip_symbolic_shape=True)
    files = {"fp32": fp32}
    for name, weight_type in (
        ("int8 dynamic, int8 weights", QuantType.QInt8),
        ("int8 dynamic, uint8 weights", QuantType.QUInt8),
    ):
        files[name] = directory / f"dynamic-{weight_type.name}.onnx"
        quantize_dynamic(prepared, files[name], weight_type=weight_type)
    files[KEPT] = quantize_onnx(fp32, directory / "static-package.onnx", calibration_pixels)
    for name, per_channel in (
        ("int8 static QDQ, per channel, 8-bit weights", True),
        ("int8 static QDQ, per tensor", False),
    ):
        files[name] = directory / f"static-{per_channel}.onnx"
        quantize_static(
            prepared,
            files[name],
            _CalibrationReader(calibration_pixels, 32),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return files


def embed(runner: OnnxLogoEmbedder, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([runner(pixels[start : start + batch_size]) for start in range(0, len(pixels), batch_size)])


def nearest_brand(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The brand of each crop's nearest other crop (the top of its ranking)."""
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return labels[similarity.argmax(axis=1)]


def interleaved_images_per_second(runners: dict, pixels: torch.Tensor, min_seconds: float) -> dict[str, float]:
    """Each runner's images/s on `pixels`, the runners called in turn (one call each, repeated until about
    `min_seconds` per runner have passed, at least twice), so that a shared machine's drifting load falls on all of
    them alike."""
    for run in runners.values():
        run(pixels)  # warm-up
    elapsed, calls, start = dict.fromkeys(runners, 0.0), 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds * len(runners):
        for name, run in runners.items():
            began = time.perf_counter()
            run(pixels)
            elapsed[name] += time.perf_counter() - began
        calls += 1
    return {name: calls * len(pixels) / seconds for name, seconds in elapsed.items()}


def bf16_note(capability: str, native_bf16: bool) -> str:
    """What the result says of bf16. `native_bf16`: the CPU flags say AVX512-BF16 or AMX (`train.cpu_has_native_bf16`;
    `get_cpu_capability()` says "AVX512" with or without them)."""
    if native_bf16:
        return (
            f"not measured here: bf16 is native on this CPU ({capability} with AVX512-BF16 or AMX); its figures are "
            "embedding_throughput.py's (bf16 autocast in PyTorch; these files run ONNX Runtime's fp32 and int8 kernels)."
        )
    return (
        f"not measured: torch.backends.cpu.get_cpu_capability() is {capability}, without native bf16 arithmetic "
        "(AVX512-BF16 or AMX); bf16 would be emulated (embedding_throughput.json: bf16 autocast is far slower than "
        "fp32 there)."
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKPOINT))
    parser.add_argument("--data_root", default=str(ROOT / "data" / "synthetic-logos"))
    parser.add_argument("--calibration_images", type=int, default=256, help="training-brand crops")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds")
    parser.add_argument("--min_seconds", type=float, default=1.0, help="timing per file, batch size and round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--machine_note",
        default="",
        help="recorded with the figures, e.g. 'shared: other jobs ran on the same cores' (the load average is recorded too)",
    )
    parser.add_argument("--output", default=None, help="default: results/onnx_quantization.json")
    args = parser.parse_args(argv)

    capability = torch.backends.cpu.get_cpu_capability()
    load_before = os.getloadavg()
    print(
        f"CPU capability {capability}, {torch.get_num_threads()} threads (figures from a machine that may be shared)"
    )
    datasets.disable_progress_bars()
    embedder = LogoEmbedder.from_pretrained(args.model, runtime="torch")
    model, processor = embedder.model, embedder.image_processor
    splits = load_logodet3k(args.data_root, "crops", split_scheme="hash")
    test, calibration = splits["test"], seeded_sample(splits["train"], args.calibration_images, args.seed)
    brand_names = splits["train"].features["brand"].names
    calibration_brands = {brand_names[label] for label in set(calibration["brand"])}
    test_brands = {brand_names[label] for label in set(test["brand"])}
    if calibration_brands & test_brands:
        raise RuntimeError(f"calibration and test share brands: {sorted(calibration_brands & test_brands)}")
    calibration_pixels = processor(list(calibration["image"]), return_tensors="pt").pixel_values.numpy()
    test_pixels = processor(list(test["image"]), return_tensors="pt").pixel_values
    labels = np.asarray(test["brand"])

    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(model, Path(scratch) / "fp32.onnx")
        files = quantized_files(fp32, calibration_pixels, Path(scratch))
        runners = {name: OnnxLogoEmbedder(path) for name, path in files.items()}
        sizes = {name: path.stat().st_size for name, path in files.items()}

        reference = embed(runners["fp32"], test_pixels)
        reference_brand = nearest_brand(reference.numpy(), labels)
        quality = {}
        for name, runner in runners.items():
            embeddings = embed(runner, test_pixels)
            retrieval = retrieval_protocol(EmbeddedSplit(embeddings.numpy(), labels))
            cosine = (embeddings * reference).sum(-1)
            quality[name] = {
                "retrieval_mAP": retrieval["images/mAP"],
                "retrieval_recall@1": retrieval["images/recall@1"],
                "min_cosine_to_fp32": float(cosine.min()),
                "mean_cosine_to_fp32": float(cosine.mean()),
                "max_abs_difference_to_fp32": float((embeddings - reference).abs().max()),
                "same_top_brand_as_fp32": float((nearest_brand(embeddings.numpy(), labels) == reference_brand).mean()),
                "file_megabytes": sizes[name] / 1e6,
            }
            print(f"{name}: mAP {retrieval['images/mAP']:.4f}, min cosine to fp32 {cosine.min():.4f}")

        rates = {(name, batch): [] for name in runners for batch in args.batch_sizes}
        ratios = {(name, batch): [] for name in runners for batch in args.batch_sizes}
        for round_index in range(args.rounds):
            for batch in args.batch_sizes:
                pixels = torch.randn(batch, 3, model.config.image_size, model.config.image_size)
                measured = interleaved_images_per_second(runners, pixels, args.min_seconds)
                for name, rate in measured.items():
                    rates[name, batch].append(rate)
                    ratios[name, batch].append(rate / measured["fp32"])
            print(f"round {round_index + 1}/{args.rounds} timed")

    fp32_map = quality["fp32"]["retrieval_mAP"]
    rows = []
    for name in runners:
        speed = {
            str(batch): {
                "images_per_second": statistics.median(rates[name, batch]),
                "ratio_to_fp32": statistics.median(ratios[name, batch]),
                "ratio_to_fp32_per_round": ratios[name, batch],
            }
            for batch in args.batch_sizes
        }
        map_loss = fp32_map - quality[name]["retrieval_mAP"]
        faster = all(entry["ratio_to_fp32"] > 1 for entry in speed.values())
        if name == "fp32":
            verdict = "reference"
        elif map_loss <= MAX_MAP_LOSS and faster:
            verdict = "kept" if name == KEPT else "meets the bar (not the package's choice)"
        else:
            reasons = ([f"mAP loss {map_loss:.4f} > {MAX_MAP_LOSS}"] if map_loss > MAX_MAP_LOSS else []) + (
                [] if faster else ["not faster than fp32 at every batch size"]
            )
            verdict = "rejected: " + "; ".join(reasons)
        rows.append({"file": name, **quality[name], "mAP_loss": map_loss, "speed": speed, "verdict": verdict})

    print(
        f"\nCPU capability {capability}; {args.machine_note or 'no note'}; test crops: {len(test)}, calibration crops: {len(calibration)}"
    )
    header = " | ".join(f"b{batch} img/s (× fp32)" for batch in args.batch_sizes)
    print(f"| file | mAP | min cos | {header} | verdict |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in args.batch_sizes) + " | --- |")
    for row in rows:
        cells = " | ".join(
            f"{row['speed'][str(b)]['images_per_second']:.0f} ({row['speed'][str(b)]['ratio_to_fp32']:.2f})"
            for b in args.batch_sizes
        )
        print(
            f"| {row['file']} | {row['retrieval_mAP']:.4f} | {row['min_cosine_to_fp32']:.4f} | {cells} | {row['verdict']} |"
        )
    result = {
        "model": Path(args.model).name,
        "data": {
            "root": Path(args.data_root).name,
            "split_scheme": "hash",
            "test_crops": len(test),
            "test_brands": len(test_brands),
            "calibration_crops": len(calibration),
            "calibration_brands": len(calibration_brands),
            "calibration_split": "train",
        },
        "batch_sizes": args.batch_sizes,
        "rounds": args.rounds,
        "min_seconds": args.min_seconds,
        "max_map_loss": MAX_MAP_LOSS,
        "machine_note": args.machine_note,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "bf16": bf16_note(capability, cpu_has_native_bf16()),
        "rows": rows,
    }
    write_result("onnx_quantization", result, args.output)
    return result


if __name__ == "__main__":
    main()
