#!/usr/bin/env python
"""Box jitter: what the embedder loses when it sees a localiser's boxes instead of hand-drawn ones (issue 17, part 4).

    python benchmarks/box_jitter.py                                   # the shipped embedder and localiser
    python benchmarks/box_jitter.py --model runs/logo-model --data_dir data/synthetic-logos

Every logo of the unseen test brands (the `hash` split of `--data_dir`, generated as the main job does when missing)
is cropped twice: as a registered brand's shot is (its true box, `crop_box`'s margin), the gallery side, and as a
query would come, the query side: the true box itself (jitter 0), the box jittered (`dataset_scripts.transforms.
jitter_boxes`: sides scaled by e^U(-j, j), centre moved by U(-j/2, j/2) of the size; the mean IoU with the true box is
printed), and the box the shipped localiser predicts for it (its best box at IoU >= 0.5; logos it misses are counted
and left out, and the true boxes of the logos it found are the fair comparison). Each query is searched against the true-box crops of every *other* logo (its own is excluded):
retrieval mAP by brand, for each model, the same network untrained and the colour histogram. Writes
`benchmarks/results/box_jitter.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
from torchvision.ops import box_iou


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import write_result

from dataset_scripts import load_logodet3k
from dataset_scripts.scenes import scene_boxes, split_scenes
from dataset_scripts.transforms import jitter_boxes
from logo_evaluation import build_embedders
from modeling_logo.detection import DEFAULT_LOCALIZER, LogoLocalizer, crop_box
from modeling_logo.metrics import retrieval_metrics


EMBEDDER = ROOT / "checkpoints" / "logo-embedding-resnet-small"
JITTERS = (0.0, 0.1, 0.2, 0.3)


def crops_dataset(crops: list, labels: list[int]) -> datasets.Dataset:
    """Crops as the rows an embedder takes (`image`, `brand`)."""
    return datasets.Dataset.from_dict(
        {"image": crops, "brand": labels},
        features=datasets.Features({"image": datasets.Image(), "brand": datasets.Value("int64")}),
    )


def localised_boxes(localizer: LogoLocalizer, images, true_boxes: list[np.ndarray], min_iou: float = 0.5):
    """For each true box, the localiser's best-overlapping box in its photo (at `min_iou` or more), else None."""
    found = []
    for image, boxes in zip(images, true_boxes):
        predicted = localizer(image)[0]["boxes"]
        if len(predicted) == 0:
            found += [None] * len(boxes)
            continue
        iou = box_iou(torch.as_tensor(boxes), predicted)
        best, index = iou.max(dim=1)
        found += [
            predicted[i].numpy() if value >= min_iou else None for value, i in zip(best.tolist(), index.tolist())
        ]
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, help=f"a saved model (default: {EMBEDDER})")
    parser.add_argument("--localizer", default=str(ROOT / DEFAULT_LOCALIZER), help="'none' to skip its boxes")
    parser.add_argument("--data_dir", default=str(ROOT / "data" / "synthetic-logos"))
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--seed", type=int, default=0, help="of the jitter")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/box_jitter.json")
    args = parser.parse_args(argv)
    models = args.model or [str(EMBEDDER)]

    if not any(Path(args.data_dir).glob("*/*/*.xml")):
        from dataset_scripts.synthesize import synthesize

        print(synthesize(args.data_dir, 300, 12, seed=0, overwrite=True))
    scenes = split_scenes(load_logodet3k(args.data_dir, "detection", split_scheme="hash")[args.split])
    images = [row["image"].convert("RGB") for row in scenes]
    true_boxes = [scene_boxes(row) for row in scenes]
    labels = [obj["brand"] for row in scenes for obj in row["objects"]]
    keep = np.asarray(labels) >= 0  # logos of no brand of the set have no brand to retrieve
    owners = [i for i, boxes in enumerate(true_boxes) for _ in boxes]
    flat_true = np.concatenate(true_boxes)

    def crops(boxes) -> list:
        return [crop_box(images[owner], box) for owner, box in zip(owners, boxes)]

    gallery = crops(flat_true)
    rng = np.random.default_rng(args.seed)
    query_sets: dict[str, tuple[list, np.ndarray]] = {}
    for amount in JITTERS:
        boxes = jitter_boxes(flat_true, amount, rng)
        iou = float(box_iou(torch.as_tensor(boxes), torch.as_tensor(flat_true)).diagonal()[keep].mean())
        query_sets[f"jitter {amount:.1f} (IoU {iou:.2f})"] = (crops(boxes), keep.copy())
    if args.localizer != "none":
        found = localised_boxes(LogoLocalizer.from_pretrained(args.localizer), images, true_boxes)
        located = keep & np.array([box is not None for box in found])
        boxes = np.stack([box if box is not None else true for box, true in zip(found, flat_true)])
        iou = float(box_iou(torch.as_tensor(boxes), torch.as_tensor(flat_true)).diagonal()[located].mean())
        name = f"localiser (IoU {iou:.2f}, {int(located.sum())}/{int(keep.sum())} found)"
        query_sets[name] = (crops(boxes), located)
        # The logos it finds are the easier ones: the true boxes of the same logos are the fair comparison.
        query_sets["jitter 0.0, the logos the localiser found"] = (gallery, located)
    print(f"{int(keep.sum())} logos of {len(set(np.asarray(labels)[keep]))} unseen {args.split} brands")

    gallery_labels = np.where(keep, np.asarray(labels), -1)
    embedders = build_embedders(models, ["untrained", "histogram"], batch_size=64, runtime="auto", seed=0)
    results: dict[str, dict[str, float]] = {}
    for name, embed in embedders.items():
        gallery_split = embed(crops_dataset(gallery, labels))
        for query_name, (query_crops, usable) in query_sets.items():
            query_split = embed(crops_dataset(query_crops, labels))
            similarity = query_split.embeddings @ gallery_split.embeddings.T
            # Queries and gallery are in the same order: exclude_self drops each logo's own true-box crop.
            query_labels = np.where(usable, np.asarray(labels), -2)  # -2 matches nothing: not a query
            metrics = retrieval_metrics(similarity, query_labels, gallery_labels, ks=(1,), exclude_self=True)
            results.setdefault(name, {})[query_name] = metrics["mAP"]
            print(f"{name} | {query_name}: retrieval mAP {metrics['mAP']:.3f}, recall@1 {metrics['recall@1']:.3f}")

    columns = list(query_sets)
    print("\n| model | " + " | ".join(columns) + " |")
    print("|" + " --- |" * (1 + len(columns)))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    output = {
        "data_dir": str(args.data_dir),
        "split": args.split,
        "logos": int(keep.sum()),
        "queries": columns,
        "results": results,
    }
    write_result("box_jitter", output, args.output)
    return output


if __name__ == "__main__":
    main()
