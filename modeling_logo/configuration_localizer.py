"""Configuration of the class-agnostic logo localiser: it finds every logo in a photo, of any brand."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_logo import BACKBONE_PRESETS


@strict
class LogoLocalizerConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LogoLocalizerModel`]: torchvision's FCOS (anchor-free, one "logo" class) on a timm ResNet
    with a feature pyramid, run on a photo letterboxed to a long side of `image_size` (trained on `image_size`
    squares; at inference the canvas is padded only to a multiple of 32, see [`LogoLocalizerImageProcessor`]).

    Args:
        backbone (`str`, *optional*, defaults to `"resnet-small"`):
            A timm ResNet-family name or a preset of `BACKBONE_PRESETS` (the embedder's names, so an embedder's
            backbone can initialise the localiser's).
        backbone_kwargs (`dict`, *optional*):
            Extra constructor arguments of the timm backbone; they override the preset's.
        fpn_channels (`int`, *optional*, defaults to 64):
            Channels of every feature-pyramid level and of the head.
        head_num_convs (`int`, *optional*, defaults to 2):
            3x3 conv + GroupNorm + ReLU blocks in each head branch (FCOS uses 4; 2 halves the head's cost on a CPU).
        image_size (`int`, *optional*, defaults to 384):
            The long side a photo is scaled to (and the side of the training squares). Logos smaller than about 8
            pixels after this scaling are not found.
        anchor_sizes (`list[int]`, *optional*, defaults to `[8, 16, 32, 64, 128]`):
            One anchor point size per pyramid level (P3-P7, their strides); FCOS assigns a box to the level whose
            size range (4-8x the anchor size) holds its longest side.
        center_sampling_radius (`float`, *optional*, defaults to 1.5):
            How far from a box centre (in strides) a location counts as a positive in training.
        score_threshold (`float`, *optional*, defaults to 0.3):
            Boxes scoring below it are dropped after detection (score = sqrt(class prob x centerness)). Training
            calibrates it on validation scenes (best F1 at IoU 0.5).
        nms_threshold (`float`, *optional*, defaults to 0.5):
            IoU above which the lower-scoring of two boxes is suppressed.
        max_detections (`int`, *optional*, defaults to 20):
            Boxes kept per photo, best first.

    Example:

    ```python
    >>> from modeling_logo import LogoLocalizerConfig, LogoLocalizerModel
    >>> model = LogoLocalizerModel(LogoLocalizerConfig(backbone="resnet-tiny", image_size=128))
    ```
    """

    model_type = "logo-localizer"

    backbone: str = "resnet-small"
    backbone_kwargs: dict | None = None
    fpn_channels: int = 64
    head_num_convs: int = 2
    image_size: int = 384
    anchor_sizes: list[int] | tuple[int, ...] = (8, 16, 32, 64, 128)
    center_sampling_radius: float = 1.5
    score_threshold: float = 0.3
    nms_threshold: float = 0.5
    max_detections: int = 20

    def __post_init__(self, **kwargs):
        self.anchor_sizes = [int(size) for size in self.anchor_sizes]  # JSON has no tuples
        super().__post_init__(**kwargs)
        self.validate()

    def validate_backbone(self):
        if not self.backbone:
            raise ValueError(f"`backbone` must be a timm ResNet name or one of {sorted(BACKBONE_PRESETS)}.")

    def validate_sizes(self):
        if self.image_size < 64 or self.image_size % 32:
            raise ValueError(f"`image_size` must be a multiple of 32 and at least 64, got {self.image_size}.")
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"`anchor_sizes` needs one size per level P3-P7 (5), got {self.anchor_sizes}.")
        if self.fpn_channels % 32:
            raise ValueError(
                f"`fpn_channels` must be a multiple of 32 (the head's GroupNorm), got {self.fpn_channels}."
            )
        for name in ("fpn_channels", "head_num_convs", "max_detections"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")

    def validate_thresholds(self):
        for name in ("score_threshold", "nms_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}.")


__all__ = ["LogoLocalizerConfig"]
