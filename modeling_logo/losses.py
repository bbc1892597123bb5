"""Metric-learning losses and miners by name, from pytorch-metric-learning.

| name | loss | default miner |
| --- | --- | --- |
| `triplet` | `TripletMarginLoss(margin=1.0)` (the paper) | semi-hard triplets |
| `contrastive` | `ContrastiveLoss` on Euclidean distance (the paper) | none (all pairs) |
| `contrastive-cosine` | `ContrastiveLoss` on cosine similarity | none |
| `multi-similarity` | `MultiSimilarityLoss` | `MultiSimilarityMiner` |
| `proxy-anchor` | `ProxyAnchorLoss` (the paper's future work; fast from scratch) | none |
| `normalized-softmax` | `NormalizedSoftmaxLoss` (a cosine classifier over the training brands) | none |

Miners: `none`, `semi-hard`, `hard` (batch-hard), `multi-similarity`; or `collator` to use the pairs/triplets drawn
by `dataset_scripts.collators` (passed to the loss as `indices_tuple`).
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, miners
from torch import nn

# The names are in a file without imports: train.py checks --loss and --miner against it before importing torch.
from .names import CLASS_PROXY_LOSSES, DEFAULT_MINERS, LOSSES, MINERS


def build_loss(
    name: str,
    *,
    margin: float | None = None,
    num_classes: int | None = None,
    embedding_size: int = 128,
) -> nn.Module:
    """A pytorch-metric-learning loss by name (see the module table). `proxy-anchor` and `normalized-softmax` need
    `num_classes`; their proxies are parameters that the optimizer must train."""
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
    if name in CLASS_PROXY_LOSSES and not num_classes:
        raise ValueError(f"The {name} loss needs num_classes (the number of training brands).")
    if name == "proxy-anchor":
        return losses.ProxyAnchorLoss(num_classes, embedding_size, margin=0.1 if margin is None else margin, alpha=32)
    if name == "normalized-softmax":
        return losses.NormalizedSoftmaxLoss(num_classes, embedding_size, temperature=0.05)
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


@torch.no_grad()
def batch_statistics(embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple=None) -> dict[str, float]:
    """What the loss sees in a batch of unit embeddings, to catch a collapse early.

    `mean_distance` is the mean Euclidean distance over all pairs (√2 for random unit vectors, 0 when collapsed),
    `distance_ratio` the mean negative-pair distance over the mean positive-pair distance (1 when brands do not
    separate), and `active_fraction` the share of all pairs (or triplets) that the miner kept, when there is one.
    """
    embeddings = embeddings.detach().float()
    distance = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & off_diagonal, ~same
    stats = {"mean_distance": float(distance[off_diagonal].mean())}
    if positive.any() and negative.any():
        stats["distance_ratio"] = float(distance[negative].mean() / distance[positive].mean().clamp_min(1e-8))
    if indices_tuple is not None:
        if len(indices_tuple) == 3:  # triplets (anchor, positive, negative)
            possible = int(positive.sum(1).mul(negative.sum(1)).sum())
            mined = len(indices_tuple[0])
        else:  # pairs (anchor, positive, anchor, negative)
            possible = int(positive.sum() + negative.sum())
            mined = len(indices_tuple[0]) + len(indices_tuple[2])
        stats["active_fraction"] = mined / max(1, possible)
    return stats


__all__ = ["CLASS_PROXY_LOSSES", "DEFAULT_MINERS", "LOSSES", "MINERS", "batch_statistics", "build_loss", "build_miner"]
