"""Data for few-shot logo recognition: the LogoDet-3K builder, the generated benchmark, batching and transforms.

Names are imported lazily, so that `python -m dataset_scripts.synthesize` and its worker processes do not pay for
importing `datasets`, `transformers` and `torch`.
"""

import importlib


_EXPORTS = {
    "CATEGORIES": "voc",
    "read_voc": "voc",
    "write_voc": "voc",
    "SKIP_REASONS": "logodet3k",
    "LogoDet3K": "logodet3k",
    "LogoDet3KConfig": "logodet3k",
    "export_parquet": "logodet3k",
    "load_logodet3k": "logodet3k",
    "brand_names": "logodet3k",
    "load_same_brands": "logodet3k",
    "select_brands": "logodet3k",
    "PKBatchSampler": "collators",
    "PairCollator": "collators",
    "TripletCollator": "collators",
    "collate_pk_batch": "collators",
    "AugmentedDataset": "transforms",
    "CachedFeatureDataset": "feature_cache",
    "compute_backbone_features": "feature_cache",
    "build_eval_transform": "transforms",
    "build_train_transform": "transforms",
    "with_image_transform": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dataset_scripts' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return __all__
