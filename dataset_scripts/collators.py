"""Batching for metric learning: a P×K batch sampler, and collators that add the paper's pairs or triplets.

The collators return `indices_tuple` in pytorch-metric-learning's format, so a loss takes them directly::

    loss = ContrastiveLoss()(embeddings, batch["labels"], indices_tuple=batch["indices_tuple"])

Random pairs/triplets are what the paper's collators formed. Hard or semi-hard mining needs the embeddings, so it is
done in the training step with a pytorch-metric-learning miner (`TripletMarginMiner(type_of_triplets="semihard")`,
`BatchHardMiner`) on the plain P×K batch instead.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """Batches of P brands × K examples each, so that every example in a batch has positives and negatives.

    An epoch has about as many examples as the data set (`len(labels) // (p * k)` batches, at least one pass over
    the brands); brands come in seeded random passes, each pass visiting every brand with two or more examples once,
    so a batch never holds a brand twice. A brand's K examples alternate between its designs (`Brand`, `Brand-1`,
    ...) where it has several, so positives include other designs. A brand with fewer than K examples repeats some
    (with different augmentations they are still useful positives).

    Use it as a DataLoader's `batch_sampler`. Under `accelerate`, `accelerator.prepare(dataloader)` gives each process
    its own share of the batches; without accelerate, pass `num_replicas`/`rank` to shard it yourself.

    Args:
        labels: the brand id of each example (e.g. `dataset["brand"]`).
        p: brands per batch. k: examples per brand.
        designs: the design of each example (e.g. `dataset["design"]`), to mix a brand's designs.
        seed: seed of the order; call `set_epoch(epoch)` before each epoch for a new one.
        batches_per_epoch: batches in an epoch, over all processes (default: see above).
        num_replicas, rank: manual sharding across processes (each gets `len(self)` distinct batches).
    """

    def __init__(
        self,
        labels: Sequence[int],
        p: int,
        k: int,
        *,
        designs: Sequence[int] | None = None,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if p < 2 or k < 2:
            raise ValueError(f"A P×K batch needs p >= 2 brands and k >= 2 examples per brand, got p={p}, k={k}.")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank={rank}, num_replicas={num_replicas}.")
        designs = designs if designs is not None else [0] * len(labels)
        by_brand: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, (label, design) in enumerate(zip(labels, designs, strict=True)):
            by_brand[int(label)][int(design)].append(index)
        self.by_brand = {brand: dict(groups) for brand, groups in sorted(by_brand.items())}
        self.brands = [brand for brand, groups in self.by_brand.items() if sum(map(len, groups.values())) >= 2]
        if len(self.brands) < p * num_replicas:
            raise ValueError(
                f"Only {len(self.brands)} brands have 2+ examples; a P×K batch needs p={p} of them"
                + (f" for each of {num_replicas} processes." if num_replicas > 1 else ".")
            )
        self.p, self.k, self.seed, self.num_replicas, self.rank = p, k, seed, num_replicas, rank
        self.batches_per_epoch = batches_per_epoch or max(len(self.brands) // p, len(labels) // (p * k))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of `epoch` (call it before iterating, as with `DistributedSampler`)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.seed}/{self.epoch}")
        wanted = len(self) * self.num_replicas
        batches: list[list[int]] = []
        while len(batches) < wanted:
            brands = rng.sample(self.brands, len(self.brands))  # one pass: each brand once
            batches += [brands[start : start + self.p] for start in range(0, len(brands) - self.p + 1, self.p)]
        # Every process draws every batch, then keeps its own: the same RNG sequence on all ranks.
        picked = [
            [index for brand in batch_brands for index in self._pick(brand, rng)] for batch_brands in batches[:wanted]
        ]
        yield from picked[self.rank :: self.num_replicas]

    def _pick(self, brand: int, rng: random.Random) -> list[int]:
        """K examples of a brand, taken in turn from each of its designs, repeating only when it has fewer than K."""
        queues = [rng.sample(indices, len(indices)) for _, indices in sorted(self.by_brand[brand].items())]
        rng.shuffle(queues)
        interleaved = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
        repeats = -(-self.k // len(interleaved))  # ceil
        return (interleaved * repeats)[: self.k]


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """`torch.stack(tensors)`, or the tensor whose rows they are, in order, without a copy: the batches of
    [`~dataset_scripts.transforms.AugmentedDataset`] are augmented into one tensor (in shared memory inside a
    DataLoader worker), and stacking a 128-image batch again into fresh memory took 5-9 ms, a fifth of the time of
    its photometric stage."""
    base = tensors[0]._base
    if (
        base is not None
        and base.is_contiguous()
        and base.shape == (len(tensors), *tensors[0].shape)
        and all(
            tensor._base is base and tensor.data_ptr() == base.data_ptr() + row * base.stride(0) * base.element_size()
            for row, tensor in enumerate(tensors)
        )
    ):
        return base
    return torch.stack(tensors)


def collate_pk_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack examples into `pixel_values` (or `pooled_features`, cached by [`~dataset_scripts.feature_cache`]) and
    `labels` (for losses that mine their own pairs or triplets)."""
    key = "pooled_features" if "pooled_features" in examples[0] else "pixel_values"
    return {
        key: _stack([torch.as_tensor(example[key]) for example in examples]),
        "labels": torch.tensor([int(example["labels"]) for example in examples]),
    }


def _pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive pairs, negative pairs) as `(n, 2)` index tensors, each unordered pair once."""
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    return (same & upper).nonzero(), (~same & upper).nonzero()


class PairCollator:
    """Stack examples into a batch and draw positive/negative pairs from it, for a contrastive loss.

    Returns `pixel_values`, `labels` and `indices_tuple = (anchors_pos, positives, anchors_neg, negatives)`.

    Args:
        positive_fraction: share of positive pairs among the drawn pairs (less when the batch has too few).
        pairs_per_batch: pairs drawn per batch (default: the batch size).
    """

    def __init__(self, positive_fraction: float = 0.5, pairs_per_batch: int | None = None):
        if not 0.0 < positive_fraction < 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}.")
        self.positive_fraction = positive_fraction
        self.pairs_per_batch = pairs_per_batch

    def __call__(self, examples: list[dict]) -> dict:
        batch = collate_pk_batch(examples)
        positives, negatives = _pairs(batch["labels"])
        total = self.pairs_per_batch or len(examples)
        n_positive = min(len(positives), round(total * self.positive_fraction))
        n_negative = min(len(negatives), total - n_positive)
        # The global torch RNG: DataLoader seeds it per worker, torch.manual_seed makes it reproducible.
        positives = positives[torch.randperm(len(positives))[:n_positive]]
        negatives = negatives[torch.randperm(len(negatives))[:n_negative]]
        batch["indices_tuple"] = (positives[:, 0], positives[:, 1], negatives[:, 0], negatives[:, 1])
        return batch


class TripletCollator:
    """Stack examples into a batch and draw random (anchor, positive, negative) triplets from it, as the paper did.

    Every example that has a positive and a negative in the batch anchors `triplets_per_anchor` triplets. Returns
    `pixel_values`, `labels` and `indices_tuple = (anchors, positives, negatives)`. For semi-hard or hard triplets,
    collate plain P×K batches and mine in the training step (see the module docstring).
    """

    def __init__(self, triplets_per_anchor: int = 1):
        if triplets_per_anchor < 1:
            raise ValueError(f"triplets_per_anchor must be at least 1, got {triplets_per_anchor}.")
        self.triplets_per_anchor = triplets_per_anchor

    def __call__(self, examples: list[dict]) -> dict:
        batch = collate_pk_batch(examples)
        labels = batch["labels"]
        same = labels[:, None] == labels[None, :]
        positive_mask = same & ~torch.eye(len(labels), dtype=torch.bool)
        negative_mask = ~same
        anchors = torch.nonzero(positive_mask.any(1) & negative_mask.any(1)).flatten()
        anchors = anchors.repeat_interleave(self.triplets_per_anchor)
        # One uniformly random positive and negative per anchor: sample from the masks' rows.
        positives = torch.multinomial(positive_mask[anchors].float(), 1).flatten() if len(anchors) else anchors
        negatives = torch.multinomial(negative_mask[anchors].float(), 1).flatten() if len(anchors) else anchors
        batch["indices_tuple"] = (anchors, positives, negatives)
        return batch


__all__ = ["PKBatchSampler", "PairCollator", "TripletCollator", "collate_pk_batch"]
