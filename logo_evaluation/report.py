"""Tables and figures of an evaluation run: Markdown in the paper's layout, the honest table, PR curves, distance
histograms, a t-SNE map of the test brands and a retrieval grid.

Figures are drawn on `matplotlib.figure.Figure` objects and saved to files: matplotlib is imported by the functions
that plot, and neither pyplot nor its global backend is touched (importing this module configures nothing)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import ImageOps

from modeling_logo.evaluation import EmbeddedSplit, verification_episodes
from modeling_logo.metrics import operating_curve


# mAP of the paper's Table (1-shot, 5-shot), for comparison only: LogoDet-3K test brands, ImageNet-pretrained start.
PUBLISHED_MAP = {
    "paper: triplet loss": (0.508, 0.588),
    "paper: contrastive loss": (0.551, 0.652),
    "paper: ImageNet baseline": (0.470, 0.602),
}
HONEST_THRESHOLD_FROM_VALIDATION = "threshold chosen on validation brands"
HONEST_THRESHOLD_CALIBRATED = "threshold: each model's calibrated config.similarity_threshold (or --threshold)"
PAPER_COLUMNS = ("accuracy", "precision", "recall", "f1", "recall_at_95_precision", "mAP", "separation_fisher")
PAPER_COLUMN_LABELS = {
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "recall_at_95_precision": "recall at 95% precision",
    "mAP": "mAP",
    "separation_fisher": "J (Fisher)",
}


def _fmt(value) -> str:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{value[0]:.3f} ± {value[1]:.3f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def paper_table(results: dict[str, dict]) -> str:
    """The paper's metrics, one Markdown table per number of shots (a `### K-shot` heading each, eight columns
    rather than one table of fifteen): one row per model, then the published rows (mAP only); threshold tuned on
    the test brands."""
    shots = sorted({row["shots"] for result in results.values() for row in result["paper"]})
    tables = []
    for k in shots:
        header = ["model", *(PAPER_COLUMN_LABELS[column] for column in PAPER_COLUMNS)]
        lines = [f"### {k}-shot", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for name, result in results.items():
            row = next((r for r in result["paper"] if r["shots"] == k and "skipped" not in r), None)
            cells = [_fmt(row[column]) if row else "—" for column in PAPER_COLUMNS]
            lines.append("| " + " | ".join([name, *cells]) + " |")
        for name, published in PUBLISHED_MAP.items():
            cells = [
                _fmt(published[(1, 5).index(k)]) if column == "mAP" and k in (1, 5) else "—"
                for column in PAPER_COLUMNS
            ]
            lines.append("| " + " | ".join([name, *cells]) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def honest_table(results: dict[str, dict]) -> str:
    """Open-set N-way K-shot results, threshold from validation brands, mean ± 95% CI over episodes; an "all"-way
    row says the N it came to, a skipped row which split could not support it and why."""
    columns = ("f1", "accuracy", "precision", "recall", "closed_set_accuracy", "unknown_auroc")
    header = ["model", "ways", "shots", "threshold", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, result in results.items():
        for row in result["honest"]:
            if "skipped" in row:
                lines.append(f"| {name} | {row['ways']} | {row['shots']} | skipped: {row['skipped']} |")
                continue
            cells = [_ways_cell(row), row["shots"], row["threshold"], *(row[c] for c in columns)]
            lines.append("| " + " | ".join([name, *map(_fmt, cells)]) + " |")
    return "\n".join(lines)


def _ways_cell(row: dict) -> str:
    """`5`, or `all (N=7)`: how many brands an "all"-way episode registered."""
    if row["ways"] == "all" and "brands_registered" in row:
        return f"all (N={row['brands_registered']})"
    return str(row["ways"])


def photo_table(results: dict[str, dict]) -> str:
    """Localisation on test-brand scenes, then whole-photo open-set recognition per model and photo method (a
    query is right only with the right brand and its box at IoU >= 0.5), mean ± 95% CI over episodes."""
    lines = []
    localization = results.get("localization")
    if localization:
        lines += [
            "| localiser on test-brand scenes | AP50 | recall50 | best F1 | at score | ms per photo |",
            "| --- | --- | --- | --- | --- | --- |",
            "| class-agnostic | "
            + " | ".join(_fmt(localization[k]) for k in ("AP50", "recall50", "f1", "threshold", "ms_per_photo"))
            + " |",
            "",
        ]
    columns = ("closed_set_accuracy", "crop_recall_at_1", "f1", "accuracy", "recall", "ms_per_photo")
    header = [
        "model",
        "photo method",
        "ways",
        "shots",
        "threshold",
        "photo recall@1",
        "crop recall@1",
        "f1",
        "accuracy",
        "recall",
        "ms per photo",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, methods in results.items():
        if name == "localization":
            continue
        for method, rows in methods.items():
            for row in rows:
                if "skipped" in row:
                    lines.append(f"| {name} | {method} | {row['ways']} | {row['shots']} | skipped: {row['skipped']} |")
                    continue
                cells = [row["ways"], row["shots"], row["threshold"], *(row[c] for c in columns)]
                lines.append("| " + " | ".join([name, method, *map(_fmt, cells)]) + " |")
    return "\n".join(lines)


def retrieval_table(results: dict[str, dict]) -> str:
    """Retrieval mAP on training brands (memorisation) beside unseen test brands (generalisation)."""
    columns = (
        "train/images/mAP",
        "images/mAP",
        "images/recall@1",
        "images/recall@5",
        "images/mAP@1",
        "images/mAP@5",
        "images/mAP@10",
        "images/t-mAP@1",
        "images/t-mAP@5",
        "prototypes/recall@1",
    )
    header = ["model", *(c.replace("images/", "").replace("train/", "train-brand ") for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, result in results.items():
        retrieval = {**result["retrieval"], **{f"train/{k}": v for k, v in result.get("train_retrieval", {}).items()}}
        lines.append("| " + " | ".join([name, *(_fmt(retrieval.get(c, "—")) for c in columns)]) + " |")
    return "\n".join(lines)


def cross_world_table(results: dict[str, dict[str, dict]]) -> str:
    """[`~logo_evaluation.runner.evaluate_across_worlds`]'s results: per model, the training brands' retrieval mAP
    where measured, each world's retrieval mAP by brand and by design and honest 5-way F1 (± 95% CI), then the
    out-of-world mAP as a fraction of the in-world one."""
    first = next(iter(results.values()))
    worlds = [world for world in first if world != "train brands"]
    columns = [("retrieval_mAP", "mAP"), ("retrieval_mAP_by_design", "mAP by design")]
    columns += sorted(
        {
            (key, key.replace("f1_", "F1 ").replace("way_", "-way "))
            for by_world in results.values()
            for row in by_world.values()
            for key in row
            if key.startswith("f1_")
        }
    )
    header = ["model", *(["train-brand mAP"] if "train brands" in first else [])]
    header += [f"{world}: {label}" for world in worlds for _, label in columns]
    if len(worlds) == 2:
        header.append(f"{worlds[1]} / {worlds[0]} mAP")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, by_world in results.items():
        cells = [_fmt(by_world["train brands"]["retrieval_mAP"])] if "train brands" in first else []
        cells += [_fmt(by_world[world].get(key, "—")) for world in worlds for key, _ in columns]
        if len(worlds) == 2:
            inside, outside = (by_world[world]["retrieval_mAP"] for world in worlds)
            cells.append(_fmt(outside / inside if inside else float("nan")))
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def _figure(figsize: tuple[float, float]):
    """A figure of its own, outside pyplot: nothing global (backend, open figures) is touched; saved by its
    `savefig`, it needs no `close`."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def short_label(name: str, width: int = 24, max_lines: int = 2) -> str:
    """A brand name for a plot: wrapped at `width` characters, at most `max_lines` lines, "…" where it had to be
    cut (the report lists the full names)."""
    return "\n".join(textwrap.wrap(name, width, max_lines=max_lines, placeholder="…")) or name


def plot_pr_curves(splits: dict[str, EmbeddedSplit], shots: tuple[int, ...], path: Path | None = None, seed: int = 0):
    """Precision-recall of the paper's episodes (pooled), per model (a legend) and number of shots (a panel each);
    the models are named in the title. Saved to `path` when given; returns the `Figure`."""
    figure = _figure(figsize=(5 * len(shots), 4.4))
    axes = figure.subplots(1, len(shots), squeeze=False)
    for axis, k in zip(axes[0], shots):
        for name, split in splits.items():
            episodes = verification_episodes(split, k, seed=seed)
            scores = -np.concatenate([e.distances for e in episodes])
            curve = operating_curve(scores, np.concatenate([e.is_positive for e in episodes]))
            axis.plot(curve.recall, curve.precision, label=name)
        axis.set(title=f"{k}-shot verification (pooled episodes)", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
        axis.legend(fontsize=8)
    figure.suptitle(textwrap.fill("Precision-recall: " + ", ".join(splits), 45 * len(shots)), fontsize=10)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_distance_histogram(
    split: EmbeddedSplit, shots: int, threshold: float, path: Path | None = None, seed: int = 0, model_name: str = ""
):
    """Query-to-prototype distances of positives and negatives, with the chosen threshold; `model_name` in the
    title. Saved to `path` when given; returns the `Figure`."""
    episodes = verification_episodes(split, shots, seed=seed)
    distances = np.concatenate([e.distances for e in episodes])
    positive = np.concatenate([e.is_positive for e in episodes])
    figure = _figure(figsize=(6, 4.4))
    axis = figure.subplots()
    bins = np.linspace(0, 2, 61)
    axis.hist(distances[~positive], bins=bins, alpha=0.6, density=True, label="other brand")
    axis.hist(distances[positive], bins=bins, alpha=0.6, density=True, label="same brand")
    axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    axis.set(title=f"{shots}-shot distances to the prototype", xlabel="Euclidean distance", ylabel="density")
    axis.legend()
    figure.suptitle(textwrap.fill(model_name, 70), fontsize=10)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def tsne_brands(split: EmbeddedSplit, max_brands: int = 20) -> np.ndarray:
    """The brands (labels) that [`plot_tsne`] maps: the first `max_brands` in label order."""
    return np.unique(split.labels)[:max_brands]


def plot_tsne(
    split: EmbeddedSplit,
    names: list[str],
    path: Path | None = None,
    max_brands: int = 20,
    seed: int = 0,
    model_name: str = "",
):
    """A t-SNE map of the test embeddings of up to `max_brands` brands ([`tsne_brands`]), `model_name` in the
    title; the legend's brand names are wrapped ([`short_label`]). Saved to `path` when given; returns the
    `Figure`."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    brands = tsne_brands(split, max_brands)
    keep = np.isin(split.labels, brands)
    embeddings = split.embeddings[keep]
    figure = _figure(figsize=(8, 6))
    axis = figure.subplots()
    too_few = len(embeddings) < 3  # t-SNE's perplexity must stay below the number of points
    # All points the same (a collapsed model): t-SNE divides by the spread of its start, and its Barnes-Hut tree
    # then crashes the whole process.
    collapsed = not too_few and np.ptp(embeddings, axis=0).max() < 1e-6
    if too_few or collapsed:
        reason = "every test embedding is the same point\n(a collapsed model)" if collapsed else "fewer than 3 images"
        axis.text(0.5, 0.5, f"t-SNE skipped: {reason}", ha="center", va="center")
    else:
        perplexity = min(30, max(2, len(embeddings) // 4))
        # One OpenMP thread: beside torch's spinning OpenMP pool, scikit-learn's threads run t-SNE 10x slower on
        # 2 cores (47 s instead of 4 s for 27 points, measured here).
        with threadpool_limits(limits=1, user_api="openmp"):
            points = TSNE(perplexity=perplexity, random_state=seed, init="pca").fit_transform(embeddings)
        from matplotlib import colormaps

        colours = colormaps["tab20"]
        for index, brand in enumerate(brands):
            members = split.labels[keep] == brand
            axis.scatter(*points[members].T, s=14, color=colours(index % 20), label=short_label(names[brand]))
        axis.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    axis.set(title="t-SNE of test-brand embeddings", xticks=[], yticks=[])
    figure.suptitle(textwrap.fill(model_name, 80), fontsize=10)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def retrieval_grid_rows(split: EmbeddedSplit, num_queries: int = 6, top_k: int = 5, seed: int = 0):
    """The queries of [`plot_retrieval_grid`] (a seeded sample) and, for each, its `top_k` nearest other test
    images and their cosine similarities: `(queries, neighbours, scores)`. Ties keep the split's order."""
    rng = np.random.default_rng(seed)
    queries = rng.choice(len(split.labels), min(num_queries, len(split.labels)), replace=False)
    similarity = split.embeddings[queries] @ split.embeddings.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :top_k]
    return queries, neighbours, np.take_along_axis(similarity, neighbours, axis=1)


GRID_COLOURS = {"query": "gray", "same brand": "green", "other brand": "red"}


def plot_retrieval_grid(
    split: EmbeddedSplit,
    images,
    path: Path | None = None,
    num_queries: int = 6,
    top_k: int = 5,
    seed: int = 0,
    model_name: str = "",
    brand_names: list[str] | None = None,
):
    """Queries (left column, grey frame) and their top-k neighbours among the other test images (green frame:
    the query's brand, red: another), each tile titled with its brand ([`short_label`]) and similarity; a legend
    explains the frames and `model_name` is in the title. Saved to `path` when given; returns the `Figure`."""
    from matplotlib.patches import Patch

    queries, neighbours, scores = retrieval_grid_rows(split, num_queries, top_k, seed)
    figure = _figure(figsize=(1.7 * (top_k + 1), 1.9 * len(queries) + 1.2))
    axes = figure.subplots(len(queries), top_k + 1, squeeze=False)
    for row, (query, found, found_scores) in enumerate(zip(queries, neighbours, scores)):
        for column, index in enumerate([query, *found]):
            axis = axes[row, column]
            axis.imshow(ImageOps.pad(images[int(index)].convert("RGB"), (96, 96), color="white"))
            axis.set(xticks=[], yticks=[])
            if column == 0:
                kind = "query"
            else:
                kind = "same brand" if split.labels[index] == split.labels[query] else "other brand"
            for spine in axis.spines.values():
                spine.set(color=GRID_COLOURS[kind], linewidth=4)
            brand = brand_names[int(split.labels[index])] if brand_names is not None else str(split.labels[index])
            caption = short_label(brand, width=18, max_lines=1)
            if column:
                caption += f"\n{found_scores[column - 1]:.2f}"
            axis.set_title(caption, fontsize=7)
    handles = [
        Patch(facecolor="white", edgecolor=colour, linewidth=3, label=kind) for kind, colour in GRID_COLOURS.items()
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.suptitle(textwrap.fill(f"{model_name}: test queries and their top-{top_k} neighbours", 80), fontsize=10)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def write_report(
    results: dict[str, dict],
    directory: str | Path,
    *,
    test_splits: dict[str, EmbeddedSplit],
    test_images,
    brand_names: list[str],
    shots: tuple[int, ...],
    seed: int = 0,
    honest_threshold: str = HONEST_THRESHOLD_FROM_VALIDATION,
) -> Path:
    """Write `report.md`, `results.json` and the figures; the first model is the one the single-model plots show.

    `honest_threshold` says where the honest protocol's threshold came from (the title of its section)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    main_model = next(iter(results))
    main_split = test_splits[main_model]
    main_paper = {row["shots"]: row for row in results[main_model]["paper"] if "skipped" not in row}
    shots = tuple(k for k in shots if k in main_paper)  # settings the test split can support
    if shots:  # none when no brand has a shot and a query
        plot_pr_curves(test_splits, shots, directory / "pr_curves.png", seed)
        plot_distance_histogram(
            main_split,
            shots[0],
            main_paper[shots[0]]["threshold"],
            directory / "distances.png",
            seed,
            model_name=main_model,
        )
    plot_tsne(main_split, brand_names, directory / "tsne.png", seed=seed, model_name=main_model)
    plot_retrieval_grid(
        main_split,
        test_images,
        directory / "retrieval_grid.png",
        seed=seed,
        model_name=main_model,
        brand_names=brand_names,
    )
    (directory / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    (directory / "report.md").write_text(
        f"""# Few-shot logo recognition: evaluation report

All numbers are on brands never seen in training (the test split), except the training-brand retrieval mAP, shown
beside it so that memorisation and generalisation can be told apart.

## The paper's protocol (threshold tuned on the test brands, as in the paper: optimistic)

{paper_table(results)}

The "paper:" rows are the published LogoDet-3K numbers (mAP only), for reference; they come from another data set
and an ImageNet-pretrained start, so they compare only in kind.

## The honest protocol (open set, {honest_threshold}, mean ± 95% CI)

{honest_table(results)}

## Retrieval

{retrieval_table(results)}

Every test image is a query against the other test images. mAP@k and t-mAP@k are FORB's (Wu et al. 2023): for
t-mAP@k the validation brands' images are the out-of-distribution database, whose best scores give the thresholds
and which stay among the answers as distractors. Equal scores keep the test split's order.

## Figures

- `pr_curves.png`: precision-recall of the paper's episodes, per model.
- `distances.png`: distances of same-brand and other-brand queries to the prototype ({main_model}), and the
  threshold.
- `tsne.png`: t-SNE of test-brand embeddings ({main_model}); its brands in full: {_tsne_names(main_split, brand_names)}.
- `retrieval_grid.png`: test queries and their top-5 neighbours ({main_model}); a green frame is the query's brand, a
  red one another brand. Row by row, in full:

{_grid_text(main_split, brand_names, seed)}
""",
        encoding="utf-8",
    )
    return directory


def _tsne_names(split: EmbeddedSplit, brand_names: list[str]) -> str:
    return "; ".join(brand_names[int(brand)] for brand in tsne_brands(split))


def _grid_text(split: EmbeddedSplit, brand_names: list[str], seed: int) -> str:
    queries, neighbours, scores = retrieval_grid_rows(split, seed=seed)
    lines = []
    for number, (query, found, found_scores) in enumerate(zip(queries, neighbours, scores), start=1):
        answers = ", ".join(
            f"{brand_names[int(split.labels[i])]} ({score:.2f}{'' if split.labels[i] == split.labels[query] else ', wrong'})"
            for i, score in zip(found, found_scores)
        )
        lines.append(f"  {number}. {brand_names[int(split.labels[query])]}: {answers}")
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"Cannot serialise {type(value).__name__}")


__all__ = [
    "PUBLISHED_MAP",
    "honest_table",
    "paper_table",
    "photo_table",
    "plot_distance_histogram",
    "plot_pr_curves",
    "plot_retrieval_grid",
    "plot_tsne",
    "retrieval_table",
    "short_label",
    "write_report",
]
