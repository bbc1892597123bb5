"""Data for few-shot logo recognition: the LogoDet-3K builder, the generated benchmark, batching and transforms."""

from .collators import PairCollator, PKBatchSampler, TripletCollator, collate_pk_batch
from .logodet3k import CATEGORIES, SKIP_REASONS, LogoDet3K, LogoDet3KConfig, load_logodet3k
from .transforms import build_eval_transform, build_train_transform, with_image_transform


__all__ = [
    "CATEGORIES",
    "SKIP_REASONS",
    "LogoDet3K",
    "LogoDet3KConfig",
    "PKBatchSampler",
    "PairCollator",
    "TripletCollator",
    "build_eval_transform",
    "build_train_transform",
    "collate_pk_batch",
    "load_logodet3k",
    "with_image_transform",
]
