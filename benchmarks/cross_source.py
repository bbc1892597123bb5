#!/usr/bin/env python
"""Cross-source test: the same unseen brands drawn by two different mark sources (issue 10, part 3).

    python benchmarks/cross_source.py --model runs/cross-source --model checkpoints/logo-embedding-resnet-small

Real logos will not look like the renderer a model was trained on. This generates the unseen brands from each mark
source alone (`dataset_scripts.synthesize --source simple-icons` and `--source iconify`: 8 scenes per brand at
192 px, seed 7, into `--data_root`, reused when there) and keeps the validation and test brands of the `hash` split
that *both* sources can draw. Each test brand then appears twice: as its single-colour simple-icons glyph and as its
iconify colour logo, so the two columns of a row compare one model on the same brands, in galleries of the same
size, drawn two ways.

For every model, and the same network untrained, on each source's crops: retrieval mAP and recall@1 (every test
crop against the others of its source) and honest open-set 5-way 1-/5-shot F1 (500 seeded episodes, the threshold
tuned on the validation brands of the same source). A model trained on simple-icons designs only
(`configs/cross-source.yaml`) sees iconify's logos for the first time at test: its iconify column is the
cross-source result; the shipped checkpoint, trained on both sources, is the in-distribution comparison.
Writes `benchmarks/results/cross_source.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import datasets


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import write_result

from dataset_scripts import brand_names, load_logodet3k, select_brands, synthesize
from logo_evaluation import build_embedders, evaluate_embedder


SOURCES = ("simple-icons", "iconify")


def generate(source: str, out: Path, images_per_brand: int, seed: int) -> None:
    if not (out / "LICENSES.md").exists():
        synthesize.main(
            [
                "--out",
                str(out),
                "--source",
                source,
                "--brands",
                "all",
                "--images-per-brand",
                str(images_per_brand),
                "--image-size",
                "192",
                "--seed",
                str(seed),
                "--no-progress",
                "--overwrite",
            ]
        )


def paired_splits(data_dirs: dict[str, Path]) -> dict[str, datasets.DatasetDict]:
    """Each source's validation and test splits, cut to the brands every source has in that split."""
    loaded = {source: load_logodet3k(path, "crops", split_scheme="hash") for source, path in data_dirs.items()}
    paired = {source: datasets.DatasetDict() for source in loaded}
    for split in ("validation", "test"):
        common = set.intersection(*(set(brand_names(splits[split])) for splits in loaded.values()))
        for source, splits in loaded.items():
            paired[source][split] = select_brands(splits[split], common)
    for source in paired:
        paired[source]["train"] = loaded[source]["train"].select([])  # no memorisation measure here
    return paired


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a saved model (repeatable)")
    parser.add_argument("--data_root", type=Path, default=ROOT / "data", help="where the per-source sets go")
    parser.add_argument("--images_per_brand", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7, help="of the generated scenes")
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/cross_source.json")
    args = parser.parse_args(argv)

    data_dirs = {source: args.data_root / f"test-brands-{source}" for source in SOURCES}
    for source, path in data_dirs.items():
        generate(source, path, args.images_per_brand, args.seed)
    splits = paired_splits(data_dirs)
    sizes = {
        source: {split: len(data) for split, data in s.items() if split != "train"} for source, s in splits.items()
    }
    test_brands = len(brand_names(splits[SOURCES[0]]["test"]))
    print(f"{test_brands} test brands drawn by both sources; crops per split: {sizes}")

    # The models and the untrained baseline exactly as `logo-eval --baselines untrained` builds them.
    embedders = build_embedders(args.model, ["untrained"], batch_size=64, runtime="auto", seed=0)

    results: dict[str, dict] = {}
    for name, embed in embedders.items():
        for source in SOURCES:
            print(f"Evaluating {name} on {source} designs ...")
            result, _ = evaluate_embedder(
                embed, splits[source], shots=(1, 5), ways=(5,), episodes=args.episodes, train_sample=0
            )
            honest = {row["shots"]: row for row in result["honest"]}
            results.setdefault(name, {})[source] = {
                "retrieval_mAP": result["retrieval"]["images/mAP"],
                "recall@1": result["retrieval"]["images/recall@1"],
                "f1_5way_1shot": honest[1]["f1"],
                "f1_5way_5shot": honest[5]["f1"],
            }

    print(f"\nUnseen test brands drawn by both sources ({test_brands} brands); honest F1 ± 95% CI\n")
    columns = ("retrieval_mAP", "recall@1", "f1_5way_1shot", "f1_5way_5shot")
    print("| model | " + " | ".join(f"{source}: {column}" for source in SOURCES for column in columns) + " |")
    print("|" + " --- |" * (1 + len(SOURCES) * len(columns)))
    for name, by_source in results.items():
        cells = []
        for source in SOURCES:
            for column in columns:
                value = by_source[source][column]
                cells.append(f"{value[0]:.3f} ± {value[1]:.3f}" if isinstance(value, tuple) else f"{value:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    output = {
        "test_brands": test_brands,
        "crops": sizes,
        "images_per_brand": args.images_per_brand,
        "seed": args.seed,
        "episodes": args.episodes,
        "results": results,
    }
    write_result("cross_source", output, args.output)
    return output


if __name__ == "__main__":
    main()
