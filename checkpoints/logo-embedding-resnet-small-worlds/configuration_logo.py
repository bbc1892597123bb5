"""Configuration of the few-shot logo embedding model."""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)


IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

# Stages of a ResNet in the order they process an image; "stem" is conv1 + bn1 (timm and torchvision names).
BACKBONE_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")

# Named backbones that are not timm model names. Each maps to a timm architecture plus constructor arguments;
# `backbone_kwargs` in the config override them. "resnet-tiny" (0.3M parameters) is for tests; "resnet-small"
# (1.2M parameters, one block per stage at half ResNet-18's width) trains ~8x faster than ResNet-18 on a CPU.
BACKBONE_PRESETS: dict[str, dict] = {
    "resnet-tiny": {"architecture": "resnet18", "layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128]},
    "resnet-small": {"architecture": "resnet18", "layers": [1, 1, 1, 1], "channels": [32, 64, 128, 256]},
}


@strict
class LogoEmbeddingConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LogoEmbeddingModel`]: a ResNet backbone followed by the embedding head of "Few-Shot Logo
    Recognition" (LogoDet-3K): `Linear(features, hidden_size) -> BatchNorm1d -> ReLU -> Dropout -> Linear(hidden_size,
    embedding_size) -> L2 normalisation`.

    Args:
        backbone (`str`, *optional*, defaults to `"resnet50"`):
            A timm ResNet-family model name (`"resnet18"`, `"resnet34"`, `"resnet50"`, ...) or a preset of
            `BACKBONE_PRESETS` (`"resnet-tiny"`).
        backbone_kwargs (`dict`, *optional*):
            Extra constructor arguments for the timm backbone, e.g. `{"layers": [1, 1, 1, 1], "channels": [16, 32,
            64, 128]}` for a custom narrow ResNet. They override the preset's arguments.
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the hidden layer of the embedding head.
        embedding_size (`int`, *optional*, defaults to 128):
            Dimension of the output embedding.
        head_dropout (`float`, *optional*, defaults to 0.3):
            Dropout probability in the embedding head (active in training mode only).
        normalize_embeddings (`bool`, *optional*, defaults to `True`):
            Whether embeddings are L2-normalised, so that the dot product of two embeddings is their cosine
            similarity.
        image_size (`int`, *optional*, defaults to 224):
            Side of the square images the model is trained and evaluated on.
        frozen_stages (`list[str]`, *optional*, defaults to `()`):
            Backbone stages (names from `BACKBONE_STAGES`) whose parameters are frozen and whose BatchNorm layers stay
            in eval mode, e.g. the whole backbone during the first phase of the paper's progressive unfreezing.
        similarity_threshold (`float`, *optional*):
            Cosine similarity above which a query is accepted as a known brand, when calibrated on validation
            brands. `None` until a calibration sets it.
        backbone_weights (`str`, *optional*):
            Where the backbone's initial weights came from (a timm hub id or a file), recorded for the model card.
            It is provenance only: loading a saved model never downloads anything because of it.

    Normalising the images (`image_mean`, `image_std`) is the image processor's job alone ([`LogoImageProcessor`],
    saved in `preprocessor_config.json`). Configs saved by earlier versions also hold these two keys: they are dropped
    on loading, with a warning when their values are not ImageNet's.

    Example:

    ```python
    >>> from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel

    >>> config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)
    >>> model = LogoEmbeddingModel(config)
    ```
    """

    model_type = "logo-embedding"
    backbone_stages: ClassVar[tuple[str, ...]] = BACKBONE_STAGES

    backbone: str = "resnet50"
    backbone_kwargs: dict | None = None
    hidden_size: int = 256
    embedding_size: int = 128
    head_dropout: float = 0.3
    normalize_embeddings: bool = True
    image_size: int = 224
    frozen_stages: list[str] | tuple[str, ...] = ()
    similarity_threshold: float | None = None
    backbone_weights: str | None = None

    def __post_init__(self, **kwargs):
        # JSON has no tuples: store lists so that a saved and reloaded config compares equal.
        self.frozen_stages = list(self.frozen_stages)
        _drop_normalization(kwargs)
        super().__post_init__(**kwargs)
        self.validate()

    def validate_backbone(self):
        if not self.backbone:
            raise ValueError("`backbone` must be a timm ResNet name such as 'resnet50', or 'resnet-tiny'.")

    def validate_sizes(self):
        for name in ("hidden_size", "embedding_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.image_size < 32:
            raise ValueError(
                f"`image_size` must be at least 32 pixels (a ResNet downsamples 32x), got {self.image_size}."
            )

    def validate_head_dropout(self):
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"`head_dropout` must be in [0, 1), got {self.head_dropout}.")

    def validate_frozen_stages(self):
        unknown = [stage for stage in self.frozen_stages if stage not in BACKBONE_STAGES]
        if unknown:
            raise ValueError(
                f"Unknown backbone stage(s) {unknown} in `frozen_stages`; valid stages are {BACKBONE_STAGES}."
            )

    def validate_similarity_threshold(self):
        if self.similarity_threshold is not None and not -1.0 <= self.similarity_threshold <= 1.0:
            raise ValueError(
                f"`similarity_threshold` is a cosine similarity and must be in [-1, 1], got {self.similarity_threshold}."
            )


def _drop_normalization(kwargs: dict) -> None:
    """Drop `image_mean`/`image_std`, which configs saved by earlier versions of this package carry: normalising is the
    image processor's job, and its `preprocessor_config.json` holds the same values."""
    defaults = {"image_mean": list(IMAGENET_DEFAULT_MEAN), "image_std": list(IMAGENET_DEFAULT_STD)}
    old = {key: kwargs.pop(key) for key in defaults if key in kwargs}
    if any(_floats(value) != defaults[key] for key, value in old.items()):
        logger.warning_once(
            f"LogoEmbeddingConfig ignores {old}: the image processor normalises the images, not the model. Give these "
            "values to the processor (`LogoImageProcessor(image_mean=..., image_std=...)`, saved in "
            "preprocessor_config.json) if they are not there already."
        )
    elif old:
        logger.info(f"LogoEmbeddingConfig: dropped {sorted(old)} (deprecated; the image processor normalises).")


def _floats(value):
    try:
        return [float(item) for item in value]
    except (TypeError, ValueError):
        return value


__all__ = [
    "LogoEmbeddingConfig",
    "BACKBONE_STAGES",
    "BACKBONE_PRESETS",
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
]
