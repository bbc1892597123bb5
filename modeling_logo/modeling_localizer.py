"""PyTorch class-agnostic logo localiser: torchvision's FCOS with one "logo" class on a small timm ResNet + FPN."""

import math
from collections import OrderedDict
from dataclasses import dataclass

import timm
import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_localizer import LogoLocalizerConfig
from .configuration_logo import BACKBONE_PRESETS


@dataclass
class LogoLocalizerOutput(ModelOutput):
    r"""
    Output of [`LogoLocalizerModel`]: one candidate box per feature-pyramid location, before thresholding and NMS
    ([`LogoLocalizerImageProcessor.post_process_object_detection`] does those).

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            FCOS's loss (sigmoid focal + GIoU + centerness), when `labels` were given.
        scores (`torch.FloatTensor` of shape `(batch_size, num_locations)`):
            Logo confidence of each location's box, `sqrt(sigmoid(class logit) * sigmoid(centerness logit))`.
        pred_boxes (`torch.FloatTensor` of shape `(batch_size, num_locations, 4)`):
            Boxes as `(xmin, ymin, xmax, ymax)` in pixels of `pixel_values`.
        loss_dict (`dict[str, torch.FloatTensor]`, *optional*):
            The three terms of `loss`: `classification`, `bbox_regression`, `bbox_ctrness`.
    """

    loss: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    loss_dict: dict | None = None


class LocalizerBackbone(nn.Module):
    """A timm ResNet's stages 2-4 (strides 8, 16, 32) into torchvision's `FeaturePyramidNetwork` with P6/P7 on top.

    `body` keeps the timm ResNet's parameter names (`conv1`, `layer1.0.conv1`, ...), so an embedder's backbone of the
    same architecture loads into it ([`LogoLocalizerModel.load_backbone_from`]).
    """

    def __init__(self, config: LogoLocalizerConfig):
        super().__init__()
        preset = dict(BACKBONE_PRESETS.get(config.backbone, {"architecture": config.backbone}))
        architecture = preset.pop("architecture")
        if not timm.is_model(architecture):
            raise ValueError(
                f"Unknown backbone {config.backbone!r}: use a timm ResNet name or one of {sorted(BACKBONE_PRESETS)}."
            )
        self.body = timm.create_model(
            architecture, features_only=True, out_indices=(2, 3, 4), **{**preset, **(config.backbone_kwargs or {})}
        )
        self.out_channels = config.fpn_channels
        self.fpn = FeaturePyramidNetwork(
            self.body.feature_info.channels(),
            config.fpn_channels,
            extra_blocks=LastLevelP6P7(config.fpn_channels, config.fpn_channels),
        )

    def forward(self, pixel_values: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        features = self.body(pixel_values)
        return self.fpn(OrderedDict((str(level), feature) for level, feature in enumerate(features)))


class LogoLocalizerModel(PreTrainedModel):
    r"""
    Finds logos of any brand in a photo: torchvision's [FCOS](https://arxiv.org/abs/1904.01355) with a single class,
    so that brands never seen in training are found too; naming the brand of each box is the embedder's and the
    gallery's job ([`~modeling_logo.LogoGallery.detect`]).

    The torchvision detector supplies the head, the anchor points, the box coder, target matching and the loss;
    this class runs them on `pixel_values` already letterboxed by [`LogoLocalizerImageProcessor`] (so the same
    tensors feed PyTorch and the ONNX export) and returns every location's box and score.

    Args:
        config ([`LogoLocalizerConfig`]): the model configuration (random weights; `from_pretrained` loads trained ones).

    Example:

    ```python
    >>> import torch
    >>> from modeling_logo import LogoLocalizerConfig, LogoLocalizerModel

    >>> model = LogoLocalizerModel(LogoLocalizerConfig(backbone="resnet-tiny", image_size=128)).eval()
    >>> model(torch.randn(1, 3, 128, 128)).pred_boxes.shape
    torch.Size([1, 341, 4])
    ```
    """

    config: LogoLocalizerConfig
    config_class = LogoLocalizerConfig
    base_model_prefix = "localizer"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: LogoLocalizerConfig):
        super().__init__(config)
        backbone = LocalizerBackbone(config)
        anchors = AnchorGenerator(tuple((size,) for size in config.anchor_sizes), ((1.0,),) * len(config.anchor_sizes))
        self.detector = FCOS(
            backbone,
            num_classes=1,
            anchor_generator=anchors,
            head=FCOSHead(config.fpn_channels, num_anchors=1, num_classes=1, num_convs=config.head_num_convs),
            center_sampling_radius=config.center_sampling_radius,
            min_size=config.image_size,  # torchvision's own resize is not used: the image processor letterboxes
            max_size=config.image_size,
        )
        self.post_init()

    def _init_weights(self, module: nn.Module):
        # FCOS's own initialisation for the head (normal(0, 0.01), the classifier's bias at a 1% logo prior) and
        # He initialisation for the backbone and pyramid, so that weights missing from a checkpoint are sane too.
        head = self.detector.head
        if module is head.classification_head.cls_logits:
            init.normal_(module.weight, std=0.01)
            init.constant_(module.bias, -math.log((1 - 0.01) / 0.01))
        elif isinstance(module, nn.Conv2d) and any(module is m for m in head.modules()):
            init.normal_(module.weight, std=0.01)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: list[dict[str, torch.Tensor]] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> LogoLocalizerOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
                Photos letterboxed and normalised by [`LogoLocalizerImageProcessor`] (the `image_size` square in
                training; at inference padded to a multiple of 32).
            labels (`list[dict]`, *optional*):
                One dict per image with `"boxes"`: a `(num_logos, 4)` tensor of `(xmin, ymin, xmax, ymax)` in pixels
                of `pixel_values` (the processor's `boxes=` argument gives them so). Every box is a logo, whatever
                its brand. With labels, `loss` is computed.
            return_dict (`bool`, *optional*): return a [`LogoLocalizerOutput`] (default) or a tuple.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = list(self.detector.backbone(pixel_values).values())
        head_outputs = self.detector.head(features)
        head_outputs = {name: value.float() for name, value in head_outputs.items()}  # losses and decoding in fp32
        # Every image has the same size, so one image's anchor points serve the batch (and the batch axis stays
        # dynamic in the ONNX export).
        (anchors,) = self.detector.anchor_generator(
            ImageList(pixel_values[:1], [tuple(pixel_values.shape[-2:])]), [feature[:1] for feature in features]
        )
        loss = loss_dict = None
        if labels is not None:
            targets = [
                {
                    "boxes": target["boxes"].float().to(pixel_values.device),
                    "labels": torch.zeros(len(target["boxes"]), dtype=torch.long, device=pixel_values.device),
                }
                for target in labels
            ]
            num_anchors_per_level = [feature.shape[2] * feature.shape[3] for feature in features]
            loss_dict = self.detector.compute_loss(
                targets, head_outputs, [anchors] * len(targets), num_anchors_per_level
            )
            loss = sum(loss_dict.values())
        batch_anchors = anchors.expand(head_outputs["bbox_regression"].shape[0], -1, -1)
        pred_boxes = self.detector.box_coder.decode(head_outputs["bbox_regression"], batch_anchors)
        scores = torch.sqrt(
            torch.sigmoid(head_outputs["cls_logits"][..., 0]) * torch.sigmoid(head_outputs["bbox_ctrness"][..., 0])
        )
        output = LogoLocalizerOutput(loss=loss, scores=scores, pred_boxes=pred_boxes, loss_dict=loss_dict)
        return output if return_dict else output.to_tuple()

    def load_backbone_from(self, embedder: nn.Module) -> None:
        """Start the backbone from a [`~modeling_logo.LogoEmbeddingModel`]'s (same architecture): its features
        already respond to logos, which shortens the localiser's training from scratch."""
        source = {k: v for k, v in embedder.backbone.state_dict().items() if not k.startswith("fc.")}
        missing, unexpected = self.detector.backbone.body.load_state_dict(source, strict=False)
        if unexpected or missing:
            raise ValueError(
                f"The embedder's backbone does not fit the localiser's ({self.config.backbone!r}): "
                f"missing {missing[:3]}, unexpected {unexpected[:3]}."
            )


__all__ = ["LogoLocalizerModel", "LogoLocalizerOutput", "LocalizerBackbone"]
