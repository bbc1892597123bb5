#!/usr/bin/env python
"""The frozen phase with cached backbone features vs the frozen backbone run every step (issue 8, part 3).

    python benchmarks/frozen_phase.py                    # the generated 300-brand benchmark, resnet-small at 96 px
    python benchmarks/frozen_phase.py --epochs 6 --views 4 --backbone resnet50 --image_size 224

Runs `train.py` three times with the whole backbone frozen for every epoch (the paper's first phase): twice running
the backbone every step (seeds 0 and 1: their difference is the seed-to-seed noise) and once with
`--frozen_feature_views`, which trains the head on cached features. Reports the training seconds per epoch (without
validation), the one-off cache build, and validation retrieval mAP and paper-protocol mAP on unseen brands after the
last epoch. Writes `benchmarks/results/frozen_phase.json`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import write_result

import train


def run(args: argparse.Namespace, seed: int, views: int, workdir: Path) -> dict:
    output = workdir / f"seed{seed}-views{views}"
    data = ["--data_dir", args.data_dir] if args.data_dir else []  # default: the benchmark, generated if missing
    state = train.main(
        [
            *data,
            "--init_from",
            "none",
            "--backbone",
            args.backbone,
            "--image_size",
            str(args.image_size),
            "--num_epochs",
            str(args.epochs),
            "--unfreeze",
            f"layer4:{args.epochs + 1}",
            "--freeze_other_stages",
            "true",
            "--frozen_feature_views",
            str(views),
            "--seed",
            str(seed),
            "--output_dir",
            str(output),
            "--report_to",
            "none",
            "--evaluate_on_test",
            "false",
            "--num_workers",
            str(args.num_workers),
            "--learning_rate",
            str(args.learning_rate),
        ]
    )
    history = state.history
    return {
        "seed": seed,
        "views": views,
        "train_seconds_per_epoch": [row["train_seconds"] for row in history],
        "feature_cache_seconds": sum(row["feature_cache_seconds"] for row in history),
        "retrieval_mAP": history[-1]["retrieval_mAP"],
        "paper_mAP": history[-1]["mAP"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help=f"default: {train.DEFAULT_DATA_DIR}, generated when missing")
    parser.add_argument("--backbone", default="resnet-small")
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--views", type=int, default=4, help="cached augmentations per image")
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/frozen_phase.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        runs = [
            run(args, 0, 0, Path(workdir)),
            run(args, 1, 0, Path(workdir)),
            run(args, 0, args.views, Path(workdir)),
        ]
    every_step, every_step_seed1, cached = runs
    # Epoch 0 of the uncached run also pays for first-use costs; compare steady epochs (1...) when there are any.
    steady = slice(1, None) if args.epochs > 1 else slice(None)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    speedup = mean(every_step["train_seconds_per_epoch"][steady]) / mean(cached["train_seconds_per_epoch"][steady])
    break_even = cached["feature_cache_seconds"] / mean(every_step["train_seconds_per_epoch"][steady])
    print(f"\n{args.backbone} at {args.image_size} px, backbone frozen for {args.epochs} epochs\n")
    print("| run | s/epoch (training) | cache build s | validation retrieval mAP | validation paper mAP |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in [
        ("backbone every step, seed 0", every_step),
        ("backbone every step, seed 1", every_step_seed1),
        (f"cached features ({args.views} views), seed 0", cached),
    ]:
        print(
            f"| {name} | {mean(row['train_seconds_per_epoch'][steady]):.2f} | {row['feature_cache_seconds']:.1f} | "
            f"{row['retrieval_mAP']:.4f} | {row['paper_mAP']:.4f} |"
        )
    noise = abs(every_step["retrieval_mAP"] - every_step_seed1["retrieval_mAP"])
    difference = abs(cached["retrieval_mAP"] - every_step["retrieval_mAP"])
    print(
        f"\nepochs {speedup:.1f}× faster; the cache costs {break_even:.1f} uncached epochs; retrieval mAP "
        f"difference {difference:.4f} vs seed-to-seed {noise:.4f}"
    )
    result = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "views": args.views,
        "runs": runs,
        "epoch_speedup": speedup,
        "cache_cost_in_epochs": break_even,
        "retrieval_mAP_difference": difference,
        "seed_noise": noise,
    }
    write_result("frozen_phase", result, args.output)
    return result


if __name__ == "__main__":
    main()
