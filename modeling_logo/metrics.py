"""Metrics of few-shot logo recognition, one implementation each (NumPy), checked against scikit-learn in the tests.

Conventions: `scores` are "higher means more likely the same brand" (cosine similarities; pass `-distance` for
distances) and `labels` are 1 for a positive (same brand) and 0 for a negative. A threshold `t` accepts `score >= t`.

Ties (equal scores), metric by metric:

- [`operating_curve`] and what is built on it ([`average_precision`], [`roc_auc`], [`best_f1_threshold`],
  [`recall_at_precision`], [`equal_error_rate`], [`detection_metrics`]): a threshold accepts all equal scores at
  once, so tied items form one operating point and their order does not matter (scikit-learn's rule).
- [`retrieval_metrics`] and [`thresholded_map_at_k`] rank each query's gallery by a stable sort of descending score:
  equal scores keep the gallery's order (an earlier gallery item ranks first), so a relevant item tied with an
  irrelevant one before it in the gallery ranks second.
- [`match_detections`] matches predictions in a stable order of descending score: tied predictions in their given
  order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {labels.shape[0]}.")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values.")
    return scores, labels


def f1_score(precision, recall):
    """F1, the harmonic mean `2 * precision * recall / (precision + recall)`, and 0 where precision + recall is 0.

    Scalars give a `float`; arrays (of the same or broadcastable shapes) give a float64 array, element by element."""
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(total.shape), where=total > 0)
    return float(f1) if f1.ndim == 0 else f1


def threshold_metrics(scores, labels, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of accepting `score >= threshold` (precision is 0 when nothing is accepted)."""
    scores, labels = _as_arrays(scores, labels)
    accepted = scores >= threshold
    tp = np.sum(accepted & labels)
    fp = np.sum(accepted & ~labels)
    fn = np.sum(~accepted & labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = f1_score(precision, recall)
    return {
        "accuracy": float(np.mean(accepted == labels)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def f1_at_thresholds(scores, labels, thresholds) -> np.ndarray:
    """F1 of accepting `score >= threshold` for every threshold at once: [`threshold_metrics`]'s F1, vectorised."""
    scores, labels = _as_arrays(scores, labels)
    accepted = scores[None, :] >= np.asarray(thresholds, dtype=np.float64)[:, None]
    tp = (accepted & labels).sum(axis=1)
    fp = accepted.sum(axis=1) - tp
    positives = labels.sum()
    precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=tp + fp > 0)
    recall = tp / positives if positives else np.zeros(len(tp))
    return f1_score(precision, recall)


@dataclass(frozen=True)
class Curve:
    """Operating points at every distinct score, from the highest threshold to the lowest."""

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    positives: int
    negatives: int

    @property
    def precision(self) -> np.ndarray:
        return self.true_positives / np.maximum(self.true_positives + self.false_positives, 1)

    @property
    def recall(self) -> np.ndarray:
        return self.true_positives / max(self.positives, 1)

    @property
    def false_positive_rate(self) -> np.ndarray:
        return self.false_positives / max(self.negatives, 1)


def operating_curve(scores, labels) -> Curve:
    """Cumulative true/false positives when accepting the top-scored items, one point per distinct score."""
    scores, labels = _as_arrays(scores, labels)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_each_score]
    false_positives = (last_of_each_score + 1) - true_positives
    return Curve(scores[last_of_each_score], true_positives, false_positives, int(labels.sum()), int((~labels).sum()))


def best_f1_threshold(scores, labels) -> tuple[float, float]:
    """The threshold (one of the scores) with the best F1, and that F1."""
    curve = operating_curve(scores, labels)
    precision, recall = curve.precision, curve.recall
    f1 = f1_score(precision, recall)
    best = int(np.argmax(f1))
    return float(curve.thresholds[best]), float(f1[best])


def recall_at_precision(scores, labels, min_precision: float = 0.95) -> float:
    """The highest recall reached at a precision of at least `min_precision` (0 if never reached)."""
    curve = operating_curve(scores, labels)
    reached = curve.precision >= min_precision
    return float(curve.recall[reached].max()) if reached.any() else 0.0


def average_precision(scores, labels) -> float:
    """Average precision, the area under the step precision-recall curve: sum of (R_n - R_n-1) * P_n."""
    curve = operating_curve(scores, labels)
    if curve.positives == 0:
        return 0.0
    recall = np.r_[0.0, curve.recall]
    return float(np.sum(np.diff(recall) * curve.precision))


def match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold: float = 0.5) -> np.ndarray:
    """Which predicted boxes are true positives (PASCAL VOC's rule): in order of score, a prediction matches the
    unmatched ground-truth box it overlaps most if their IoU is at least `iou_threshold`; each box matches once.

    Boxes are `(xmin, ymin, xmax, ymax)`. Returns a boolean array in the predictions' given order.
    """
    pred_boxes = torch.as_tensor(np.asarray(pred_boxes, np.float32).reshape(-1, 4))
    gt_boxes = torch.as_tensor(np.asarray(gt_boxes, np.float32).reshape(-1, 4))
    hits = np.zeros(len(pred_boxes), bool)
    if not len(pred_boxes) or not len(gt_boxes):
        return hits
    iou = box_iou(pred_boxes, gt_boxes).numpy()
    taken = np.zeros(len(gt_boxes), bool)
    for index in np.argsort(-np.asarray(pred_scores, np.float64).ravel(), kind="stable"):
        overlaps = np.where(taken, -1.0, iou[index])
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold:
            hits[index], taken[best] = True, True
    return hits


def detection_metrics(images, iou_threshold: float = 0.5) -> dict[str, float]:
    """Class-agnostic detection quality over many images: `AP` (area under the step precision-recall curve, the same
    rule as [`average_precision`], recall counted over *all* ground-truth boxes), `recall` (of every box found at any
    score), and the best-F1 operating point (`f1`, `threshold`, `precision` and `recall_at_threshold` there).

    Args:
        images: an iterable of `(pred_boxes, pred_scores, gt_boxes)`, one per image.
    """
    scores, hits, num_boxes = [], [], 0
    for pred_boxes, pred_scores, gt_boxes in images:
        scores.append(np.asarray(pred_scores, np.float64).ravel())
        hits.append(match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold))
        num_boxes += len(np.asarray(gt_boxes).reshape(-1, 4))
    scores, hits = np.concatenate(scores or [np.empty(0)]), np.concatenate(hits or [np.empty(0, bool)])
    if not len(scores) or not num_boxes:
        return {"AP": 0.0, "recall": 0.0, "f1": 0.0, "threshold": 1.0, "precision": 0.0, "recall_at_threshold": 0.0}
    curve = operating_curve(scores, hits)
    precision, recall = curve.precision, curve.true_positives / num_boxes
    f1 = f1_score(precision, recall)
    best = int(np.argmax(f1))
    return {
        "AP": float(np.sum(np.diff(np.r_[0.0, recall]) * precision)),
        "recall": float(recall[-1]),
        "f1": float(f1[best]),
        "threshold": float(curve.thresholds[best]),
        "precision": float(precision[best]),
        "recall_at_threshold": float(recall[best]),
    }


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoids between distinct thresholds, ties counted half)."""
    curve = operating_curve(scores, labels)
    if curve.positives == 0 or curve.negatives == 0:
        raise ValueError("ROC-AUC needs both positives and negatives.")
    return float(np.trapezoid(np.r_[0.0, curve.recall], np.r_[0.0, curve.false_positive_rate]))


def equal_error_rate(scores, labels) -> tuple[float, float]:
    """The equal error rate (false accepts = false rejects, interpolated on the ROC curve) and its threshold."""
    curve = operating_curve(scores, labels)
    if curve.positives == 0 or curve.negatives == 0:
        raise ValueError("The equal error rate needs both positives and negatives.")
    false_accept = np.r_[0.0, curve.false_positive_rate]
    false_reject = 1.0 - np.r_[0.0, curve.recall]
    thresholds = np.r_[np.inf, curve.thresholds]
    gap = false_reject - false_accept  # decreasing from 1 to -1
    crossing = int(np.argmax(gap <= 1e-12))  # a tolerance: 1 - 2/3 and 1/3 differ in the last bit
    if crossing == 0:
        return float(false_accept[0]), float(thresholds[0])
    before, after = gap[crossing - 1], gap[crossing]
    weight = before / (before - after)
    eer = false_accept[crossing - 1] + weight * (false_accept[crossing] - false_accept[crossing - 1])
    return float(eer), float(thresholds[crossing])


def fisher_separation(embeddings, labels) -> float:
    """Fisher's ratio tr(S_B) / tr(S_W) of between-class to within-class scatter (what the authors' code computes
    as the separation J): larger means brands form tighter, farther-apart clusters."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    overall = embeddings.mean(axis=0)
    between = within = 0.0
    for label in np.unique(labels):
        members = embeddings[labels == label]
        centre = members.mean(axis=0)
        between += len(members) * np.sum((centre - overall) ** 2)
        within += np.sum((members - centre) ** 2)
    return float(between / within) if within > 0 else float("inf")


# Rows of an N×N pairwise computation processed at once: temporaries stay at a few hundred MB whatever N is.
CHUNK_ELEMENTS = 4_000_000


def _row_chunks(num_rows: int, num_columns: int):
    step = max(1, CHUNK_ELEMENTS // max(1, num_columns))
    for start in range(0, num_rows, step):
        yield slice(start, min(num_rows, start + step))


def distance_ratio(embeddings, labels) -> float:
    """Mean Euclidean distance between images of different brands over the mean between images of the same brand
    (the separation J as the paper's text defines it): larger is better, 1 means no separation.

    Computed in row chunks: memory grows linearly with the number of images, time quadratically.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    squared = np.sum(embeddings**2, axis=1)
    positive_sum = negative_sum = 0.0
    positive_count = negative_count = 0
    for rows in _row_chunks(len(labels), len(labels)):
        distances = np.sqrt(
            np.maximum(squared[rows, None] + squared[None, :] - 2 * embeddings[rows] @ embeddings.T, 0)
        )
        same = labels[rows, None] == labels[None, :]
        same[np.arange(same.shape[0]), np.arange(rows.start, rows.stop)] = False  # not an image with itself
        different = labels[rows, None] != labels[None, :]
        positive_sum += float(distances[same].sum())
        positive_count += int(same.sum())
        negative_sum += float(distances[different].sum())
        negative_count += int(different.sum())
    if positive_count == 0 or negative_count == 0:
        raise ValueError("The distance ratio needs at least two images of one brand and two brands.")
    positive_mean, negative_mean = positive_sum / positive_count, negative_sum / negative_count
    return negative_mean / positive_mean if positive_mean > 0 else float("inf")


def retrieval_metrics(
    similarity, query_labels, gallery_labels, ks: tuple[int, ...] = (1, 5, 10), exclude_self: bool = False
) -> dict[str, float]:
    """Ranking metrics of queries against a gallery.

    Args:
        similarity: `(num_queries, num_gallery)` scores, higher is more similar.
        exclude_self: the queries are the gallery (same order): ignore each query's own entry.

    Returns `mAP` (average precision over the full ranking), `recall@k` (a relevant item in the top k) and FORB's
    `mAP@k` (precision at each relevant rank within the top k, summed and divided by the number of relevant items;
    FORB's `get_map_at_k`), averaged over the queries that have at least one relevant item. Ties: the gallery is
    ranked by a stable sort of descending score, so equal scores keep the gallery's order (and `mAP` is not
    scikit-learn's tie-grouped average precision where a relevant and an irrelevant item tie). Queries are ranked
    in chunks, so memory beyond `similarity` itself stays bounded.
    """
    similarity = np.asarray(similarity)
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    sums = {"mAP": 0.0, **{f"recall@{k}": 0.0 for k in ks}, **{f"mAP@{k}": 0.0 for k in ks}}
    num_valid = 0
    for rows in _row_chunks(len(query_labels), len(gallery_labels)):
        scores = similarity[rows].astype(np.float64)  # a copy: the caller's matrix is left as it is
        relevant = query_labels[rows, None] == gallery_labels[None, :]
        if exclude_self:
            own = (np.arange(scores.shape[0]), np.arange(rows.start, rows.stop))
            scores[own], relevant[own] = -np.inf, False
        order = np.argsort(-scores, axis=1, kind="stable")
        ranked = np.take_along_axis(relevant, order, axis=1)
        if exclude_self:
            ranked = ranked[:, :-1]  # the query itself, ranked last
        num_relevant = ranked.sum(axis=1)
        valid = num_relevant > 0
        ranked, num_relevant = ranked[valid], num_relevant[valid]
        num_valid += len(ranked)
        if not len(ranked):
            continue
        hits = np.cumsum(ranked, axis=1)
        precise_hits = hits / np.arange(1, ranked.shape[1] + 1) * ranked  # precision at each relevant rank
        sums["mAP"] += float(np.sum(precise_hits.sum(axis=1) / num_relevant))
        for k in ks:
            sums[f"recall@{k}"] += float(ranked[:, :k].any(axis=1).sum())
            sums[f"mAP@{k}"] += float(np.sum(precise_hits[:, :k].sum(axis=1) / num_relevant))
    if not num_valid:
        raise ValueError("No query has a relevant item in the gallery.")
    return {name: total / num_valid for name, total in sums.items()}


#: FORB's false-positive rates (`eval_tmap.py`'s `FPR_LIST`): the eleven thresholds of its t-mAP.
FORB_FALSE_POSITIVE_RATES = np.linspace(0, 1.0, num=11, endpoint=True)


def ood_thresholds(ood_best_scores, false_positive_rates=FORB_FALSE_POSITIVE_RATES) -> np.ndarray:
    """FORB's score thresholds from out-of-distribution searches, one per false-positive rate.

    With the `n` best scores sorted ascending (`s[0] <= ... <= s[n-1]`), the threshold at a rate `f < 1` is the order
    statistic `s[ceil((1 - f) * n) - 1]` (no interpolation: the largest score for `f = 0`), so that about a
    fraction `f` of the out-of-distribution searches still return something; at `f = 1` it is -1, the lowest
    cosine similarity, and everything is returned. `(1 - f) * n` is rounded up in floating point exactly as FORB's
    `math.ceil` does.

    Args:
        ood_best_scores: the best score of each search against out-of-distribution images only (one per query).
        false_positive_rates: rates in [0, 1]; FORB's are 0, 0.1, ..., 1.
    """
    scores = np.sort(np.asarray(ood_best_scores, dtype=np.float64).ravel())
    rates = np.asarray(false_positive_rates, dtype=np.float64).ravel()
    if not len(scores):
        raise ValueError("Thresholds from out-of-distribution searches need at least one search.")
    if ((rates < 0) | (rates > 1)).any():
        raise ValueError(f"false-positive rates are in [0, 1], got {rates.tolist()}.")
    positions = np.ceil((1 - rates) * len(scores)).astype(np.int64) - 1
    return np.where(rates == 1, -1.0, scores[np.clip(positions, 0, len(scores) - 1)])


def thresholded_map_at_k(
    similarity,
    query_labels,
    gallery_labels,
    ood_similarity,
    ks: tuple[int, ...] = (1, 5),
    false_positive_rates=FORB_FALSE_POSITIVE_RATES,
    exclude_self: bool = False,
) -> dict[str, float]:
    """FORB's t-mAP@k (Wu et al. 2023, "FORB: A Flat Object Retrieval Benchmark for Universal Image Embedding";
    `baselines/eval_tmap.py` of github.com/pxiangwu/FORB), for cosine similarities.

    1. Each query is searched against the out-of-distribution images alone (`ood_similarity`); its best score is a
       false positive. [`ood_thresholds`] turns those best scores into one threshold per false-positive rate.
    2. Each query is searched against the whole database: the gallery *and* the out-of-distribution images (never
       relevant, they stay in as distractors). At each threshold, the items scored below it are not returned, and
       FORB's mAP@k is computed on what is: the precision at each relevant rank within the top k, summed and
       divided by the query's number of relevant items in the database. A query with no relevant item scores 1
       when nothing is returned and 0 otherwise.
    3. t-mAP@k is the mean of the mAP@k over the thresholds.

    Ties: the database is ranked by a stable sort of descending score, so equal scores keep the database order
    (gallery items in their order, then the out-of-distribution images). FORB's `np.argsort` leaves the order of
    equal scores unspecified; with continuous scores there are none.

    Args:
        similarity: `(num_queries, num_gallery)` cosine similarities of the queries to the gallery.
        query_labels, gallery_labels: their classes; a gallery item is relevant to a query of its class.
        ood_similarity: `(num_queries, num_ood)` cosine similarities of the same queries to the images of classes
            outside the gallery (FORB's "OOD" database).
        ks: the k of each t-mAP@k (FORB reports 1 and 5).
        false_positive_rates: see [`ood_thresholds`].
        exclude_self: the queries are the gallery (same order): each query's own entry is not in its database.

    Returns `{"t-mAP@k": value}` for each k. Queries are ranked in row chunks, so memory beyond the inputs stays
    bounded.
    """
    similarity, ood_similarity = np.asarray(similarity), np.asarray(ood_similarity)
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    num_queries, num_gallery = similarity.shape
    if ood_similarity.shape[0] != num_queries or ood_similarity.shape[1] == 0:
        raise ValueError(
            f"ood_similarity must score the same {num_queries} queries against at least one out-of-distribution "
            f"image, got shape {ood_similarity.shape}."
        )
    thresholds = ood_thresholds(ood_similarity.max(axis=1), false_positive_rates)
    depth = max(ks)
    sums = np.zeros((len(thresholds), len(ks)))
    for rows in _row_chunks(num_queries, num_gallery + ood_similarity.shape[1]):
        scores = np.concatenate([similarity[rows], ood_similarity[rows]], axis=1).astype(np.float64)
        relevant = np.zeros(scores.shape, bool)
        relevant[:, :num_gallery] = query_labels[rows, None] == gallery_labels[None, :]
        if exclude_self:
            own = (np.arange(scores.shape[0]), np.arange(rows.start, rows.stop))
            scores[own], relevant[own] = -np.inf, False  # below every threshold: never returned
        num_relevant = relevant.sum(axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        top_scores = np.take_along_axis(scores, order, axis=1)
        top_relevant = np.take_along_axis(relevant, order, axis=1)
        for row, threshold in enumerate(thresholds):
            returned = top_scores >= threshold  # a prefix of each ranking: scores are sorted
            hits = top_relevant & returned
            precise_hits = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1) * hits
            for column, k in enumerate(ks):
                average_precision_at_k = precise_hits[:, :k].sum(axis=1) / np.maximum(num_relevant, 1)
                scored = np.where(num_relevant > 0, average_precision_at_k, ~returned[:, 0])
                sums[row, column] += float(scored.sum())
    maps = sums / num_queries  # mAP@k at each threshold
    return {f"t-mAP@{k}": float(maps[:, column].mean()) for column, k in enumerate(ks)}


def mean_confidence_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its normal-approximation confidence interval (episodes are independent draws)."""
    from statistics import NormalDist

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return float(values.mean()), float(z * values.std(ddof=1) / np.sqrt(len(values)))


__all__ = [
    "Curve",
    "average_precision",
    "best_f1_threshold",
    "detection_metrics",
    "distance_ratio",
    "equal_error_rate",
    "f1_at_thresholds",
    "f1_score",
    "FORB_FALSE_POSITIVE_RATES",
    "fisher_separation",
    "match_detections",
    "mean_confidence_interval",
    "ood_thresholds",
    "operating_curve",
    "recall_at_precision",
    "retrieval_metrics",
    "roc_auc",
    "thresholded_map_at_k",
    "threshold_metrics",
]
