"""One fingerprint of a model: what a gallery's embeddings and an ONNX export belong to.

A digest of every parameter and buffer (names, dtypes, shapes and values) and of the few configuration fields that
change what the network computes but that the weights do not show. It is the `model_fingerprint` a saved gallery
records (a gallery refuses a model of another fingerprint: their embeddings are not comparable) and the key of the
cached ONNX exports ([`modeling_logo.onnx.cached_embedder`], [`~modeling_logo.onnx.cached_localizer`]).

This module imports nothing of the package, so that every other module may use it without an import cycle.
"""

from __future__ import annotations

import hashlib
import json

import torch


#: Configuration fields in the fingerprint: those that change what the network computes (or the exported graph's
#: input) without changing any weight. The architecture (backbone, widths, embedding size) shows in the weights'
#: names and shapes. Everything else is left out (a calibrated `similarity_threshold`, provenance, training settings,
#: transformers' bookkeeping such as `_name_or_path`), and so is any field a later version adds: a gallery of the same
#: weights stays loadable.
CONFIG_KEYS = ("image_size", "normalize_embeddings", "anchor_sizes")

#: Characters of the hexadecimal digest kept.
FINGERPRINT_LENGTH = 24
#: Galleries saved before this fingerprint recorded a 16-character hash of the head's output weights instead.
LEGACY_FINGERPRINT_LENGTH = 16


def _config_fields(config) -> dict:
    """`CONFIG_KEYS` of the config that has them, with the model type."""
    values = config.to_dict()
    return {
        "model_type": getattr(config, "model_type", None),
        **{key: values[key] for key in CONFIG_KEYS if key in values},
    }


def model_fingerprint(model) -> str:
    """The fingerprint of a model (any `PreTrainedModel` of this package): a 24-character hex digest of its parameters
    and buffers, its model type and its `CONFIG_KEYS`.

    The same for the same weights wherever the model was loaded from, and after `similarity_threshold` is
    calibrated; different as soon as one weight differs. Hashes every weight: 20 ms for resnet-small, a few hundred
    for ResNet-50 ([`~modeling_logo.LogoEmbedder.fingerprint`] computes it once per embedder).
    """
    digest = hashlib.sha256(json.dumps(_config_fields(model.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # bytes of any dtype (bf16 too)
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def legacy_head_fingerprint(model) -> str:
    """The fingerprint galleries recorded before [`model_fingerprint`]: a 16-character hash of the head's output
    weights. Only used to check galleries saved then."""
    weight = model.head.output.weight.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:LEGACY_FINGERPRINT_LENGTH]


__all__ = ["CONFIG_KEYS", "model_fingerprint", "legacy_head_fingerprint"]
