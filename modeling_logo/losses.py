"""Metric-learning losses and miners by name, from pytorch-metric-learning.

| name | loss | default miner |
| --- | --- | --- |
| `triplet` | `TripletMarginLoss(margin=1.0)` (the paper) | semi-hard triplets |
| `contrastive` | `ContrastiveLoss` on Euclidean distance (the paper) | none (all pairs) |
| `contrastive-cosine` | `ContrastiveLoss` on cosine similarity | none |
| `multi-similarity` | `MultiSimilarityLoss` | `MultiSimilarityMiner` |
| `proxy-anchor` | `ProxyAnchorLoss` (the paper's future work; fastest from scratch) | none |

Miners: `none`, `semi-hard`, `hard` (batch-hard), `multi-similarity`; or `collator` to use the pairs/triplets drawn
by `dataset_scripts.collators` (passed to the loss as `indices_tuple`).
"""

from __future__ import annotations

from pytorch_metric_learning import distances, losses, miners
from torch import nn


LOSSES = ("triplet", "contrastive", "contrastive-cosine", "multi-similarity", "proxy-anchor")
MINERS = ("none", "semi-hard", "hard", "multi-similarity", "collator")
DEFAULT_MINERS = {
    "triplet": "semi-hard",
    "contrastive": "none",
    "contrastive-cosine": "none",
    "multi-similarity": "multi-similarity",
    "proxy-anchor": "none",
}


def build_loss(
    name: str,
    *,
    margin: float | None = None,
    num_classes: int | None = None,
    embedding_size: int = 128,
) -> nn.Module:
    """A pytorch-metric-learning loss by name (see the module table). `proxy-anchor` needs `num_classes`; its proxies
    are parameters that the optimizer must train."""
    if name == "triplet":
        return losses.TripletMarginLoss(margin=1.0 if margin is None else margin)
    if name == "contrastive":
        # On unit vectors distances lie in [0, 2]: pull positives together, push negatives beyond `margin`.
        return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0 if margin is None else margin)
    if name == "contrastive-cosine":
        return losses.ContrastiveLoss(
            pos_margin=1.0, neg_margin=0.5 if margin is None else margin, distance=distances.CosineSimilarity()
        )
    if name == "multi-similarity":
        return losses.MultiSimilarityLoss()
    if name == "proxy-anchor":
        if not num_classes:
            raise ValueError("The proxy-anchor loss needs num_classes (the number of training brands).")
        return losses.ProxyAnchorLoss(num_classes, embedding_size, margin=0.1 if margin is None else margin, alpha=32)
    raise ValueError(f"Unknown loss {name!r}; choose one of {LOSSES}.")


def build_miner(name: str, loss_name: str, margin: float | None = None) -> miners.BaseMiner | None:
    """A miner by name; `None` for `none` and `collator` (the loss then uses all pairs, or the collator's)."""
    if name == "semi-hard":
        return miners.TripletMarginMiner(margin=1.0 if margin is None else margin, type_of_triplets="semihard")
    if name == "hard":
        return miners.BatchHardMiner()
    if name == "multi-similarity":
        return miners.MultiSimilarityMiner()
    if name in ("none", "collator"):
        if name == "collator" and loss_name not in ("triplet", "contrastive", "contrastive-cosine"):
            raise ValueError(f"Collator pairs/triplets need a pair or triplet loss, not {loss_name!r}.")
        return None
    raise ValueError(f"Unknown miner {name!r}; choose one of {MINERS}.")


__all__ = ["DEFAULT_MINERS", "LOSSES", "MINERS", "build_loss", "build_miner"]
