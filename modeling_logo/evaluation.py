"""Few-shot evaluation protocols on brands never seen in training.

- [`paper_protocol`]: the paper's 1-way verification episodes, with its threshold tuned on the *test* brands, to
  compare with the published table (labelled as such in every output).
- [`honest_protocol`]: N-way K-shot open-set episodes whose threshold is chosen on the *validation* brands only,
  then fixed for test; reported with 95% confidence intervals.
- [`retrieval_protocol`]: every image as a query against all the others and against brand prototypes (mAP,
  recall@k, FORB's mAP@k, and FORB's t-mAP@k with an out-of-distribution database).

All protocols take an [`EmbeddedSplit`] (unit-norm embeddings and brand labels), so a model is run once per split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from .metrics import (
    average_precision,
    detection_metrics,
    distance_ratio,
    f1_at_thresholds,
    f1_score,
    fisher_separation,
    mean_confidence_interval,
    operating_curve,
    recall_at_precision,
    retrieval_metrics,
    roc_auc,
    threshold_metrics,
    thresholded_map_at_k,
)


@dataclass
class EmbeddedSplit:
    """Unit-norm embeddings `(N, D)` of a split's images and their brand labels `(N,)`."""

    embeddings: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.labels = np.asarray(self.labels)
        if len(self.embeddings) != len(self.labels):
            raise ValueError(f"{len(self.embeddings)} embeddings but {len(self.labels)} labels.")

    def indices_by_brand(self) -> dict[int, np.ndarray]:
        return {int(brand): np.flatnonzero(self.labels == brand) for brand in np.unique(self.labels)}

    def eligible_brands(self, shots: int) -> list[int]:
        """Brands with at least `shots + 1` images: K support shots and at least one query."""
        return [brand for brand, indices in self.indices_by_brand().items() if len(indices) >= shots + 1]


def embed_split(
    model, image_processor, dataset, *, batch_size: int = 64, label_column: str = "brand", runtime: str = "torch"
):
    """Embed a `datasets.Dataset` with `image` and `brand` columns, batch by batch: an [`EmbeddedSplit`].
    `runtime`: see [`~modeling_logo.few_shot.embedding_function`]."""
    from .few_shot import embed_images

    images = (row["image"] for row in dataset.select_columns(["image"]))
    embeddings = embed_images(
        model.eval(),
        image_processor,
        images,
        batch_size=batch_size,
        progress=len(dataset) > batch_size,
        runtime=runtime,
    )
    return EmbeddedSplit(embeddings.numpy(), np.asarray(dataset[label_column]))


def by_design(split: EmbeddedSplit, designs) -> EmbeddedSplit:
    """The same images labelled by design (LogoDet-3K's `Brand`, `Brand-1`, ... folders apart, the builder's `design`
    column). Retrieval by design asks a query to find its own design; by brand (the split's own labels), also its
    brand's other designs, which may look nothing alike."""
    designs = np.asarray(designs)
    if designs.shape != split.labels.shape:
        raise ValueError(f"{len(designs)} designs for {len(split.labels)} images.")
    _, labels = np.unique(np.stack([split.labels, designs], axis=1), axis=0, return_inverse=True)
    return EmbeddedSplit(split.embeddings, labels.reshape(-1))


def seeded_sample(dataset, size: int, seed: int = 0):
    """A fixed random sample of `size` rows of a `datasets.Dataset` (all of them if it has fewer), the same for the
    same seed: the training-brand sample that measures memorisation, or a validation sample of a large pool."""
    return dataset.shuffle(seed=seed).select(range(min(size, len(dataset))))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------------------------
# The paper's protocol


@dataclass
class VerificationEpisode:
    """One 1-way episode: queries scored against one brand's prototype (`distances`, Euclidean) and their truth."""

    brand: int
    support: np.ndarray
    queries: np.ndarray
    distances: np.ndarray
    is_positive: np.ndarray


def verification_episodes(
    split: EmbeddedSplit,
    shots: int,
    *,
    queries_per_episode: int = 50,
    max_positives: int = 5,
    repeats: int = 1,
    seed: int = 0,
) -> list[VerificationEpisode]:
    """The paper's episodes: for each brand with enough images, K support images form the prototype (mean of unit
    embeddings); 1..`max_positives` other images of the brand and negatives from other brands make 50 queries."""
    rng = np.random.default_rng(seed)
    by_brand = split.indices_by_brand()
    episodes = []
    for _ in range(repeats):
        for brand in split.eligible_brands(shots):
            own = rng.permutation(by_brand[brand])
            support, rest = own[:shots], own[shots:]
            n_positive = int(min(len(rest), rng.integers(1, max_positives + 1)))
            others = np.flatnonzero(split.labels != brand)
            n_negative = min(len(others), queries_per_episode - n_positive)
            queries = np.r_[rest[:n_positive], rng.choice(others, n_negative, replace=False)]
            prototype = _normalise(split.embeddings[support].mean(axis=0))
            distances = np.linalg.norm(split.embeddings[queries] - prototype, axis=1)
            is_positive = np.r_[np.ones(n_positive, bool), np.zeros(n_negative, bool)]
            episodes.append(VerificationEpisode(brand, support, queries, distances, is_positive))
    if not episodes:
        raise ValueError(f"No brand has the {shots + 1} images a {shots}-shot episode needs.")
    return episodes


def paper_protocol(
    split: EmbeddedSplit, shots: int, *, repeats: int = 1, seed: int = 0, threshold_grid: np.ndarray | None = None
) -> dict:
    """The paper's protocol, reproduced: 1-way episodes, Euclidean distance, and the distance threshold grid-searched
    for the best mean F1 **on the test episodes themselves** (optimistic; see `honest_protocol`). Metrics are
    averaged per episode; `mAP` is the mean of the episodes' average precisions; J is computed on the whole split."""
    episodes = verification_episodes(split, shots, repeats=repeats, seed=seed)
    grid = np.linspace(0.0, 2.0, 201) if threshold_grid is None else threshold_grid  # unit vectors: d in [0, 2]

    mean_f1 = np.mean([f1_at_thresholds(-e.distances, e.is_positive, -grid) for e in episodes], axis=0)
    threshold = float(grid[np.argmax(mean_f1)])  # the first best, smallest distance
    per_episode = [threshold_metrics(-e.distances, e.is_positive, -threshold) for e in episodes]
    results = {name: float(np.mean([m[name] for m in per_episode])) for name in per_episode[0]}
    results.update(
        mAP=float(np.mean([average_precision(-e.distances, e.is_positive) for e in episodes])),
        recall_at_95_precision=float(
            np.mean([recall_at_precision(-e.distances, e.is_positive, 0.95) for e in episodes])
        ),
        separation_fisher=fisher_separation(split.embeddings, split.labels),
        separation_distance_ratio=distance_ratio(split.embeddings, split.labels),
        threshold=threshold,
        threshold_tuned_on="test brands (the paper's protocol)",
        shots=shots,
        episodes=len(episodes),
        positive_fraction=float(np.mean(np.concatenate([e.is_positive for e in episodes]))),
    )
    return results


# ----------------------------------------------------------------------------------------------------------------
# The honest protocol: open-set N-way K-shot episodes, threshold from validation brands


@dataclass
class OpenSetEpisode:
    """Queries scored against N brand prototypes: the best prototype, its cosine similarity, and the truth
    (`target` is the index of the query's brand among the N, or -1 for a brand outside the support)."""

    support: np.ndarray
    queries: np.ndarray
    best: np.ndarray
    best_score: np.ndarray
    target: np.ndarray


def open_set_episodes(
    split: EmbeddedSplit,
    ways: int | str,
    shots: int,
    *,
    episodes: int = 500,
    queries_per_brand: int = 2,
    seed: int = 0,
) -> Iterator[OpenSetEpisode]:
    """N-way K-shot episodes with as many unknown queries (brands outside the support) as known ones.

    `ways="all"` registers every eligible brand but a held-out fifth, whose images are the unknown queries.
    """
    rng = np.random.default_rng(seed)
    by_brand = split.indices_by_brand()
    eligible = split.eligible_brands(shots)
    if ways == "all":
        held_out = int(max(1, round(0.2 * len(eligible))))
        ways = len(eligible) - held_out
    if ways < 2 or ways >= len(by_brand) or ways > len(eligible):
        raise ValueError(
            f"a {ways}-way {shots}-shot episode needs {ways} brands with {shots + 1}+ images and one brand more for "
            f"the unknown queries; the split has {len(eligible)} such brands of {len(by_brand)}"
        )
    for _ in range(episodes):
        known = rng.choice(eligible, ways, replace=False)
        supports, queries, targets = [], [], []
        for position, brand in enumerate(known):
            own = rng.permutation(by_brand[brand])
            supports.append(own[:shots])
            picked = own[shots : shots + queries_per_brand]
            queries.append(picked)
            targets.append(np.full(len(picked), position))
        outside = np.flatnonzero(~np.isin(split.labels, known))
        unknown = rng.choice(outside, min(len(outside), sum(map(len, queries))), replace=False)
        queries, targets = np.concatenate([*queries, unknown]), np.concatenate([*targets, np.full(len(unknown), -1)])
        prototypes = _normalise(np.stack([split.embeddings[s].mean(axis=0) for s in supports]))
        similarity = split.embeddings[queries] @ prototypes.T
        yield OpenSetEpisode(
            np.concatenate(supports), queries, similarity.argmax(axis=1), similarity.max(axis=1), targets
        )


def open_set_metrics(episode: OpenSetEpisode, threshold: float) -> dict[str, float]:
    """Decisions at `threshold`: accept the best brand if its similarity reaches it, else answer "unknown".

    `accuracy`: right brand or rightly unknown. `precision`: accepted answers that are right. `recall`: known
    queries answered with their brand. `closed_set_accuracy`: top-1 on known queries, no threshold. `unknown_auroc`:
    how well the best score separates known from unknown queries.
    """
    accepted = episode.best_score >= threshold
    known = episode.target >= 0
    right = accepted & (episode.best == episode.target)
    precision = right.sum() / accepted.sum() if accepted.any() else 0.0
    recall = right.sum() / known.sum()
    return {
        "accuracy": float(np.mean(right | (~accepted & ~known))),
        "precision": float(precision),
        "recall": float(recall),
        "f1": f1_score(precision, recall),
        "closed_set_accuracy": float(np.mean(episode.best[known] == episode.target[known])),
        "unknown_auroc": roc_auc(episode.best_score, known) if (~known).any() else float("nan"),
    }


def open_set_threshold(episodes: list[OpenSetEpisode]) -> tuple[float, float]:
    """The similarity threshold with the best pooled open-set F1 over the episodes, and that F1."""
    scores = np.concatenate([e.best_score for e in episodes])
    right = np.concatenate([e.best == e.target for e in episodes])
    num_known = int(sum((e.target >= 0).sum() for e in episodes))
    curve = operating_curve(scores, right)  # true positives: accepted and right; precision: right / accepted
    recall = curve.true_positives / num_known
    f1 = f1_score(curve.precision, recall)
    best = int(np.argmax(f1))
    return float(curve.thresholds[best]), float(f1[best])


def _mean_and_interval(per_episode: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Each metric's mean and 95% CI half-width over the episodes where it is defined."""
    return {
        name: mean_confidence_interval([m[name] for m in per_episode if not np.isnan(m[name])])
        for name in per_episode[0]
    }


def honest_protocol(
    validation: EmbeddedSplit | None,
    test: EmbeddedSplit,
    *,
    ways: tuple[int | str, ...] = (5, 20, "all"),
    shots: tuple[int, ...] = (1, 5),
    episodes: int = 500,
    seed: int = 0,
    threshold: float | None = None,
) -> list[dict]:
    """Open-set N-way K-shot results on test brands with a threshold chosen on validation brands only, or fixed
    beforehand: with `threshold` (e.g. a model's calibrated `config.similarity_threshold`), `validation` is not
    used and may be `None`; nothing is tuned on the test brands either way.

    Returns one row per (ways, shots): the threshold, its validation F1 (`None` for a given threshold),
    `brands_registered` (N; for `ways="all"`, the number it came to on the test brands) and the test metrics as
    `{name: (mean, 95% CI half-width)}` over the episodes; or, where a split cannot support the setting, `skipped`
    with the split and the reason.
    """
    if validation is None and threshold is None:
        raise ValueError("The honest protocol needs validation brands to choose its threshold, or a threshold.")
    splits = {"test": (test, seed + 1)}
    if threshold is None:
        splits = {"validation": (validation, seed), **splits}  # validation first: its reason is the one given
    rows = []
    for n_ways in ways:
        for k_shots in shots:
            drawn, skipped = {}, None
            for name, (split, split_seed) in splits.items():
                try:
                    drawn[name] = list(open_set_episodes(split, n_ways, k_shots, episodes=episodes, seed=split_seed))
                except ValueError as error:  # the split has too few brands for this setting
                    skipped = f"{name} brands: {error}"
                    break
            if skipped:
                rows.append({"ways": n_ways, "shots": k_shots, "skipped": skipped})
                continue
            tuning, testing = drawn.get("validation", []), drawn["test"]
            row_threshold, validation_f1 = (
                (float(threshold), None) if threshold is not None else open_set_threshold(tuning)
            )
            per_episode = [open_set_metrics(episode, row_threshold) for episode in testing]
            metrics = _mean_and_interval(per_episode)
            rows.append(
                {
                    "ways": n_ways,
                    "shots": k_shots,
                    "brands_registered": len(testing[0].support) // k_shots,
                    "episodes": len(testing),
                    "threshold": row_threshold,
                    "threshold_tuned_on": "validation brands" if threshold is None else "none: given beforehand",
                    "validation_f1": validation_f1,
                    **metrics,
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Retrieval


def retrieval_protocol(
    split: EmbeddedSplit, ood: EmbeddedSplit | None = None, ks=(1, 5, 10), thresholded_ks=(1, 5)
) -> dict:
    """Every image as a query against all the others, and against leave-one-out brand prototypes.

    Returns `images/mAP`, `images/recall@k` and `images/mAP@k` (FORB's mAP@k) of the images against the others,
    `prototypes/mAP` and `prototypes/recall@k` against the brand prototypes (see [`retrieval_metrics`]; ties keep
    the split's order). With `ood` (images of brands outside the split, e.g. the validation brands), also
    `images/t-mAP@k` for `thresholded_ks`, FORB's rule ([`~metrics.thresholded_map_at_k`]): each image is searched
    against the `ood` images alone for the thresholds, then against the other images *and* the `ood` images (kept
    as distractors); an image whose brand has no other image in the split is a query with no relevant item (1 when
    nothing is returned above the threshold, else 0).
    """
    similarity = split.embeddings @ split.embeddings.T
    results = {
        f"images/{name}": value
        for name, value in retrieval_metrics(similarity, split.labels, split.labels, ks, exclude_self=True).items()
    }

    # Prototypes of every brand; a query's own brand uses the prototype of its *other* images.
    brands = np.unique(split.labels)
    sums = np.stack([split.embeddings[split.labels == brand].sum(axis=0) for brand in brands])
    counts = np.array([(split.labels == brand).sum() for brand in brands])
    prototype_similarity = split.embeddings @ _normalise(sums).T
    own = np.searchsorted(brands, split.labels)
    leave_one_out = _normalise(sums[own] - split.embeddings)
    own_similarity = np.sum(split.embeddings * leave_one_out, axis=1)
    has_others = counts[own] > 1
    prototype_similarity[np.arange(len(own)), own] = own_similarity
    prototype_results = retrieval_metrics(
        prototype_similarity[has_others], own[has_others], np.arange(len(brands)), ks
    )
    results.update(
        {f"prototypes/{name}": value for name, value in prototype_results.items() if not name.startswith("mAP@")}
    )
    if ood is not None and len(ood.labels):
        ood_similarity = split.embeddings @ ood.embeddings.T  # the queries against the OOD images alone
        thresholded = thresholded_map_at_k(
            similarity, split.labels, split.labels, ood_similarity, ks=thresholded_ks, exclude_self=True
        )
        results.update({f"images/{name}": value for name, value in thresholded.items()})
    return results


# ----------------------------------------------------------------------------------------------------------------
# Threshold calibration


@dataclass(frozen=True)
class OperatingPoint:
    """A cosine-similarity threshold and what it gives on the calibration brands' verification episodes."""

    threshold: float
    precision: float
    recall: float
    false_accept_rate: float
    target: str


def calibrate_threshold(
    split: EmbeddedSplit, target: str = "f1", *, shots: int = 1, repeats: int = 3, seed: int = 0
) -> OperatingPoint:
    """Choose the cosine-similarity threshold of `LogoGallery.predict` on held-out (validation) brands.

    Queries are scored against K-shot prototypes as in the paper's episodes (pooled); the threshold meets `target`:

    - `"f1"`: the best F1 between accepting the brand and rejecting other brands;
    - `"precision@0.95"`: the lowest threshold whose precision is at least 0.95 (most recall at that precision);
    - `"far@0.01"`: the lowest threshold whose false-accept rate (other brands accepted) is at most 0.01.

    Use brands the model was not trained on, and never the test brands you report on.
    """
    episodes = verification_episodes(split, shots, repeats=repeats, seed=seed)
    # On unit vectors, cosine = 1 - d²/2: the same ranking as the paper's Euclidean distance.
    scores = np.concatenate([1 - e.distances**2 / 2 for e in episodes])
    curve = operating_curve(scores, np.concatenate([e.is_positive for e in episodes]))
    precision, recall, far = curve.precision, curve.recall, curve.false_positive_rate
    name, _, value = target.partition("@")
    if name == "f1" and not value:
        f1 = f1_score(precision, recall)
        best = int(np.argmax(f1))
    elif name == "precision" and value:
        meets = np.flatnonzero(precision >= float(value))
        best = int(meets[-1]) if len(meets) else 0
    elif name == "far" and value:
        meets = np.flatnonzero(far <= float(value))
        best = int(meets[-1]) if len(meets) else 0
    else:
        raise ValueError(f"target must be 'f1', 'precision@P' or 'far@F' (e.g. 'precision@0.95'), got {target!r}.")
    return OperatingPoint(
        float(curve.thresholds[best]), float(precision[best]), float(recall[best]), float(far[best]), target
    )


__all__ = [
    "by_design",
    "EmbeddedSplit",
    "OperatingPoint",
    "calibrate_threshold",
    "OpenSetEpisode",
    "VerificationEpisode",
    "embed_split",
    "honest_protocol",
    "open_set_episodes",
    "open_set_metrics",
    "open_set_threshold",
    "paper_protocol",
    "retrieval_protocol",
    "verification_episodes",
]


# ---------------------------------------------------------------------------------------------------------------------
# Whole photos: where the logos are (class-agnostic), then which brand each one is.


def localization_protocol(localizer, scenes, *, iou_threshold: float = 0.5, min_score: float = 0.05) -> dict:
    """Class-agnostic localisation quality on scenes: `AP50`, `recall50` (every box found at any score above
    `min_score`), the best-F1 score threshold (`threshold`, `f1`, `precision`, `recall_at_threshold`) and the mean
    `ms_per_photo` of the localiser.

    Args:
        localizer: a [`~modeling_logo.detection.LogoLocalizer`] (or any `photos -> [{"boxes", "scores"}]` callable).
        scenes: a `datasets.Dataset` (or list of rows) with `image` and `objects` (`[{"bbox": xyxy}, ...]`), the
            builder's `detection` config: every box is a logo, whatever its brand (-1: of no brand).
    """
    import time

    images, seconds = [], 0.0
    for row in scenes:
        start = time.perf_counter()
        (found,) = localizer([row["image"]], threshold=min_score)
        seconds += time.perf_counter() - start
        images.append((found["boxes"].numpy(), found["scores"].numpy(), [obj["bbox"] for obj in row["objects"]]))
    metrics = detection_metrics(images, iou_threshold)
    return {
        "AP50": metrics["AP"],
        "recall50": metrics["recall"],
        "f1": metrics["f1"],
        "threshold": metrics["threshold"],
        "precision": metrics["precision"],
        "recall_at_threshold": metrics["recall_at_threshold"],
        "ms_per_photo": 1000 * seconds / max(1, len(images)),
    }


@dataclass
class PhotoSplit:
    """Whole scenes of a split with the logos a method found in them, embedded.

    Per scene: its folder brand (`labels`), its `sources` path, the found `boxes` `(m, 4)` and their unit
    `embeddings` `(m, D)`, and its labelled ground truth `truth` (`[(brand, box), ...]`, unknown logos left out).
    `seconds_per_photo` is the method's mean time for finding and embedding.
    """

    labels: np.ndarray
    sources: np.ndarray
    boxes: list[np.ndarray]
    embeddings: list[np.ndarray]
    truth: list[list[tuple[int, np.ndarray]]]
    seconds_per_photo: float = float("nan")


def embed_photos(scenes, find_boxes, embed_crops) -> PhotoSplit:
    """Run a whole-photo method over the scenes of a `detection` split.

    Args:
        scenes: rows with `image`, `brand`, `source` and `objects` (`[{"bbox", "brand"}]`, brand -1 = unknown logo).
        find_boxes: `photo -> (m, 4)` boxes (a localiser, the window grid, or the whole image).
        embed_crops: `(photo, boxes) -> (m, D)` unit embeddings of those boxes' crops.
    """
    import time

    labels, sources, boxes, embeddings, truth, seconds = [], [], [], [], [], 0.0
    for row in scenes:
        photo = row["image"]
        start = time.perf_counter()
        found = np.asarray(find_boxes(photo), np.float32).reshape(-1, 4)
        vectors = np.asarray(embed_crops(photo, found), np.float32) if len(found) else np.empty((0, 0), np.float32)
        seconds += time.perf_counter() - start
        labels.append(row["brand"])
        sources.append(row["source"])
        boxes.append(found)
        embeddings.append(vectors)
        truth.append(
            [(obj["brand"], np.asarray(obj["bbox"], np.float32)) for obj in row["objects"] if obj["brand"] >= 0]
        )
    return PhotoSplit(np.asarray(labels), np.asarray(sources), boxes, embeddings, truth, seconds / max(1, len(labels)))


def photo_episodes(
    photos: PhotoSplit,
    crops: EmbeddedSplit,
    crop_sources,
    ways: int,
    shots: int,
    *,
    episodes: int = 200,
    queries_per_brand: int = 2,
    iou_threshold: float = 0.5,
    seed: int = 0,
) -> Iterator[tuple[OpenSetEpisode, float]]:
    """Open-set N-way K-shot episodes on whole photos: brands are registered from K box crops (`crops`, the same
    split's `crops` config), queries are whole scenes, as many of unregistered brands as of registered ones.

    A query's answer is its best-scoring found logo: its best brand and cosine similarity. It is right only when
    that brand is in the scene *and* the found box overlaps one of that brand's boxes at IoU >= `iou_threshold`;
    an unknown-brand scene (no registered brand in it) is right when it is rejected. Scenes that gave a shot are
    never queries. Yields each episode (for [`open_set_metrics`]) with the closed-set accuracy of the same known
    queries' ground-truth crops against the same prototypes (the crop-level recall@1 to compare with).
    """
    rng = np.random.default_rng(seed)
    crop_sources = np.asarray(crop_sources)
    crop_of_scene = {}  # the scene's own-brand crop, for the crop-level comparison
    for index, (source, label) in enumerate(zip(crop_sources, crops.labels)):
        crop_of_scene.setdefault((source, int(label)), index)
    crops_by_brand = crops.indices_by_brand()
    scenes_by_brand = {int(b): np.flatnonzero(photos.labels == b) for b in np.unique(photos.labels)}
    eligible = [b for b in scenes_by_brand if len(crops_by_brand.get(b, ())) >= shots + 1]
    if ways < 2 or ways > len(eligible) or ways >= len(scenes_by_brand):
        raise ValueError(f"A {ways}-way photo episode needs more brands than the split has ({len(eligible)} usable).")
    present = [{brand for brand, _ in truth} for truth in photos.truth]
    for _ in range(episodes):
        known = [int(b) for b in rng.choice(eligible, ways, replace=False)]
        position = {brand: i for i, brand in enumerate(known)}
        supports, queries = [], []
        for brand in known:
            support = rng.choice(crops_by_brand[brand], shots, replace=False)
            supports.append(support)
            used = set(crop_sources[support])
            candidates = [s for s in scenes_by_brand[brand] if photos.sources[s] not in used]
            queries += list(rng.permutation(candidates)[:queries_per_brand])
        unknown_pool = [
            s for s in range(len(photos.labels)) if not present[s] & set(known) and photos.labels[s] not in position
        ]
        unknown = list(rng.permutation(unknown_pool)[: len(queries)]) if unknown_pool else []
        prototypes = _normalise(np.stack([crops.embeddings[s].mean(axis=0) for s in supports]))
        best, best_score, target = [], [], []
        for number, scene in enumerate(queries + unknown):
            is_known = number < len(queries)
            folder_target = position[int(photos.labels[scene])] if is_known else -1
            if not len(photos.boxes[scene]):
                best.append(-2), best_score.append(-1.0), target.append(folder_target)  # nothing found
                continue
            similarity = photos.embeddings[scene] @ prototypes.T
            detection, brand_position = np.unravel_index(np.argmax(similarity), similarity.shape)
            brand = known[brand_position]
            gt = [box for b, box in photos.truth[scene] if b == brand]
            found_box = torch.as_tensor(photos.boxes[scene][detection : detection + 1])
            hit = bool(gt) and float(box_iou(found_box, torch.as_tensor(np.stack(gt))).max()) >= iou_threshold
            best.append(int(brand_position) if hit else -2)
            best_score.append(float(similarity[detection, brand_position]))
            target.append(int(brand_position) if hit else folder_target)
        known_crops = [crop_of_scene.get((photos.sources[s], int(photos.labels[s]))) for s in queries]
        known_crops = [index for index in known_crops if index is not None]
        crop_best = (crops.embeddings[known_crops] @ prototypes.T).argmax(axis=1)
        crop_truth = np.asarray([position[int(crops.labels[i])] for i in known_crops])
        episode = OpenSetEpisode(
            np.concatenate(supports),
            np.asarray(queries + unknown),
            np.asarray(best),
            np.asarray(best_score),
            np.asarray(target),
        )
        yield episode, float(np.mean(crop_best == crop_truth)) if len(known_crops) else float("nan")


def photo_protocol(
    validation: tuple[PhotoSplit, EmbeddedSplit, np.ndarray],
    test: tuple[PhotoSplit, EmbeddedSplit, np.ndarray],
    *,
    ways: tuple[int, ...] = (5,),
    shots: tuple[int, ...] = (1, 5),
    episodes: int = 200,
    seed: int = 0,
) -> list[dict]:
    """Whole-photo open-set recognition ([`photo_episodes`]) on test brands, the threshold chosen on validation
    brands' photos (best F1, as [`honest_protocol`]). Each of `validation` and `test` is `(photos, crops,
    crop_sources)`. Rows hold the metrics of [`open_set_metrics`] (`closed_set_accuracy` is the photo recall@1,
    box required) with 95% CIs, `crop_recall_at_1` on the same queries and gallery, and `ms_per_photo`.
    """
    rows = []
    for n_ways in ways:
        for k_shots in shots:
            try:
                tuning = [e for e, _ in photo_episodes(*validation, n_ways, k_shots, episodes=episodes, seed=seed)]
                testing = list(photo_episodes(*test, n_ways, k_shots, episodes=episodes, seed=seed + 1))
            except ValueError as error:
                rows.append({"ways": n_ways, "shots": k_shots, "skipped": str(error)})
                continue
            threshold, validation_f1 = open_set_threshold(tuning)
            per_episode = [open_set_metrics(episode, threshold) for episode, _ in testing]
            metrics = _mean_and_interval(per_episode)
            rows.append(
                {
                    "ways": n_ways,
                    "shots": k_shots,
                    "episodes": len(testing),
                    "threshold": threshold,
                    "threshold_tuned_on": "validation brands' photos",
                    "validation_f1": validation_f1,
                    **metrics,
                    "crop_recall_at_1": mean_confidence_interval([c for _, c in testing if not np.isnan(c)]),
                    "ms_per_photo": 1000 * test[0].seconds_per_photo,
                }
            )
    return rows
