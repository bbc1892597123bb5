"""Backbone features cached for the frozen phase of training (`train.py --frozen_feature_views`).

While the whole backbone is frozen (the paper trains only the head for its first 15 epochs), every step would run the
same frozen network on the images again. Instead, [`compute_backbone_features`] embeds `views` augmentations of every
training image once, and [`CachedFeatureDataset`] serves one of them per image and epoch: an epoch then costs only the
head's forward and backward passes. The price is augmentation diversity (`views` fixed draws instead of a fresh one
per epoch) and the cache build (about `views` frozen epochs); `benchmarks/frozen_phase.py` measures both.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .collators import collate_pk_batch
from .transforms import AugmentedDataset, example_seed


@torch.inference_mode()
def compute_backbone_features(
    model, dataset: AugmentedDataset, views: int, *, batch_size: int = 64, num_workers: int = 0, progress: bool = True
) -> torch.Tensor:
    """Pooled backbone features of `views` augmentations of every image: a `(len(dataset), views, F)` tensor.

    Stored as float16 (half the memory: 190,000 LogoDet-3K crops × 4 views × 2,048 ResNet-50 features take 3 GB);
    the pooled features are non-negative averages, for which float16's 3 significant digits are plenty. View `v` is
    the augmentation `dataset` draws in epoch `v`, so the cache is reproducible. The backbone runs in eval mode (a
    frozen backbone keeps its BatchNorm statistics) and in channels-last layout, the fastest CPU path.
    """
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}.")
    backbone = model.backbone
    was_training, device = backbone.training, next(backbone.parameters()).device
    backbone.eval()
    features = torch.empty(len(dataset), views, backbone.num_features, dtype=torch.float16)
    epoch = dataset.epoch
    try:
        with tqdm(
            total=views * len(dataset), desc="Caching frozen backbone features", unit="image", disable=not progress
        ) as bar:
            for view in range(views):
                dataset.set_epoch(view)
                loader = DataLoader(
                    dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_pk_batch
                )
                start = 0
                for batch in loader:
                    pixels = batch["pixel_values"].to(device).contiguous(memory_format=torch.channels_last)
                    pooled = backbone.forward_head(backbone.forward_features(pixels), pre_logits=True)
                    features[start : start + len(pixels), view] = pooled.cpu().half()
                    start += len(pixels)
                    bar.update(len(pixels))
    finally:
        dataset.set_epoch(epoch)
        backbone.train(was_training)
    return features


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Rows `{"pooled_features": tensor, "labels": int}`: one of the cached views of each image, drawn from
    `(seed, epoch, index)` alone, like [`AugmentedDataset`]'s augmentations, so that a resumed run sees the same views.

    Args:
        features: `(num_images, views, F)` from [`compute_backbone_features`].
        labels: the brand of each image.
    """

    def __init__(self, features: torch.Tensor, labels, seed: int = 0):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} cached images but {len(labels)} labels.")
        self.features, self.labels, self.seed = features, list(labels), seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(example_seed(self.seed, self.epoch, index))
        view = int(torch.randint(self.features.shape[1], (1,), generator=generator))
        return {"pooled_features": self.features[int(index), view].float(), "labels": self.labels[int(index)]}


__all__ = ["CachedFeatureDataset", "compute_backbone_features"]
