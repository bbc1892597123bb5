#!/usr/bin/env python
"""The localiser's canvas: a photo's letterbox padded only to a multiple of 32 against the full square (quality and
time, in one run).

    python benchmarks/localizer_canvas.py                        # the shipped localiser, 400 validation scenes
    python benchmarks/localizer_canvas.py --scenes 100 --split test

`LogoLocalizerImageProcessor` pads each photo's letterbox to a multiple of `pad_size_divisor` (32) instead of the
`image_size` square the localiser was trained on (`pad_size_divisor=None`): fewer pixels for the same photo. This
runs the shipped localiser (ONNX Runtime, one thread, as the Space does) both ways on the scenes of the *validation*
brands of the generated benchmark (`data/synthetic-logos`, `hash` split; the choice is made on them, never on test
brands) and reports `modeling_logo.evaluation.localization_protocol`'s AP50, recall, best F1 and milliseconds per
photo for each, and the mean canvas area. Writes `benchmarks/results/localizer_canvas.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import write_result

from dataset_scripts import load_logodet3k
from dataset_scripts.scenes import split_scenes
from modeling_logo import LogoLocalizerImageProcessor
from modeling_logo.detection import DEFAULT_LOCALIZER, LogoLocalizer
from modeling_logo.evaluation import localization_protocol, seeded_sample


def square_processor(processor: LogoLocalizerImageProcessor) -> LogoLocalizerImageProcessor:
    """`processor` as it was before the padded canvas: every photo on the `size` x `size` square it was trained on."""
    return LogoLocalizerImageProcessor(
        size=processor.size, image_mean=processor.image_mean, image_std=processor.image_std, pad_size_divisor=None
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--localizer", default=str(ROOT / DEFAULT_LOCALIZER))
    parser.add_argument("--data_dir", default=str(ROOT / "data" / "synthetic-logos"))
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--scenes", type=int, default=400, help="scenes sampled from the split")
    parser.add_argument("--rounds", type=int, default=2, help="each canvas measured this often, alternately")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/localizer_canvas.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the Space runs a request

    if not any(Path(args.data_dir).glob("*/*/*.xml")):
        from dataset_scripts.synthesize import synthesize

        print(synthesize(args.data_dir, 300, 12, seed=0, overwrite=True))
    split = load_logodet3k(args.data_dir, "detection", split_scheme="hash")[args.split]
    scenes = seeded_sample(split_scenes(split), args.scenes, args.seed)
    padded = LogoLocalizer.from_pretrained(args.localizer, runtime="onnxruntime")
    localizers = {
        f"padded to a multiple of {padded.image_processor.pad_size_divisor}": padded,
        "square (as trained)": LogoLocalizer(
            padded.model, square_processor(padded.image_processor), runtime="onnxruntime"
        ),
    }
    padded(scenes[0]["image"])  # the ONNX export, once, before any timing
    areas = {
        name: float(np.mean([localizer.image_processor(row["image"])["pixel_values"][0, 0].numel() for row in scenes]))
        for name, localizer in localizers.items()
    }
    runs = {name: [] for name in localizers}
    for _ in range(args.rounds):
        for name, localizer in localizers.items():
            runs[name].append(localization_protocol(localizer, scenes))
    rows = []
    for name, measured in runs.items():
        row = {key: value for key, value in measured[0].items() if key != "ms_per_photo"}  # the same every round
        row.update(
            canvas=name,
            ms_per_photo=float(np.median([m["ms_per_photo"] for m in measured])),
            ms_per_photo_rounds=[m["ms_per_photo"] for m in measured],
            mean_canvas_pixels=areas[name],
        )
        rows.append(row)
    print(f"\n{len(scenes)} {args.split} scenes, {args.localizer}, ONNX Runtime on one thread\n")
    print(
        "| canvas | AP50 | recall50 | best F1 | ms per photo | mean canvas pixels |\n| --- | --- | --- | --- | --- | --- |"
    )
    for row in rows:
        print(
            f"| {row['canvas']} | {row['AP50']:.4f} | {row['recall50']:.4f} | {row['f1']:.4f} | "
            f"{row['ms_per_photo']:.1f} | {row['mean_canvas_pixels']:,.0f} |"
        )
    result = {"localizer": args.localizer, "split": args.split, "scenes": len(scenes), "rows": rows}
    write_result("localizer_canvas", result, args.output)
    return result


if __name__ == "__main__":
    main()
