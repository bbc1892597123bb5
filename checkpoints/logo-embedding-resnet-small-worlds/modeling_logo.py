"""PyTorch logo embedding model: a ResNet backbone and the metric-learning head of "Few-Shot Logo Recognition"."""

import os
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hub_constants
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_logo import BACKBONE_PRESETS, BACKBONE_STAGES, LogoEmbeddingConfig


@dataclass
class LogoEmbeddingOutput(ModelOutput):
    r"""
    Output of [`LogoEmbeddingModel`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, embedding_size)`):
            The logo embeddings, L2-normalised when `config.normalize_embeddings` (the default): the dot product of
            two embeddings is their cosine similarity. Always float32, also under bf16/fp16 autocast.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, num_features)`):
            The globally average-pooled backbone features (2048 for a ResNet-50) the head projects.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_features, height, width)`):
            The backbone's last feature map, before pooling.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True` is passed or
        `config.output_hidden_states=True`):
            The backbone's feature maps, as for transformers' ResNet: the stem's output (after its max-pooling, 1/4 of
            the image's side) and the output of each of the four stages (1/4, 1/8, 1/16 and 1/32 of the side), each of
            shape `(batch_size, channels, height, width)`. The last is `last_hidden_state`.
    """

    # `embeddings` comes first: pipelines and `output[0]` return the first field.
    embeddings: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def create_backbone(
    config: LogoEmbeddingConfig, pretrained: bool = False, weights_file: str | None = None
) -> nn.Module:
    """Build the timm ResNet named by `config.backbone`, without its classifier (it returns pooled features).

    timm rather than torchvision: any ResNet variant by name, constructor arguments for narrow CPU-sized ResNets, and
    ImageNet weights from the Hugging Face Hub (honouring `HF_HUB_OFFLINE` and the local cache) or from a local file
    through the same loader. Its ResNets use torchvision's parameter names, so torchvision checkpoints load too.
    """
    architecture, kwargs = backbone_arguments(config)
    if not timm.is_model(architecture):
        raise ValueError(
            f"Unknown backbone {config.backbone!r}. Use a timm ResNet name ({', '.join(timm.list_models('resnet[0-9]*')[:6])}, "
            f"...) or one of the presets {sorted(BACKBONE_PRESETS)}."
        )
    overlay = {"file": os.fspath(weights_file)} if weights_file is not None else None
    backbone = timm.create_model(
        architecture, pretrained=pretrained, num_classes=0, pretrained_cfg_overlay=overlay, **kwargs
    )
    if not isinstance(backbone, timm.models.ResNet):
        raise ValueError(
            f"Backbone {config.backbone!r} is a {type(backbone).__name__}; the logo model needs a ResNet-family "
            "backbone (resnet18/34/50/101, resnext, ...) so that its stages can be frozen by name."
        )
    return backbone


def backbone_arguments(config: LogoEmbeddingConfig) -> tuple[str, dict]:
    """The timm architecture and constructor arguments of `config.backbone` (a preset's, then `backbone_kwargs`)."""
    preset = dict(BACKBONE_PRESETS.get(config.backbone, {"architecture": config.backbone}))
    architecture = preset.pop("architecture")
    return architecture, {**preset, **(config.backbone_kwargs or {})}


class LogoEmbeddingHead(nn.Module):
    """`Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear`, the paper's projection from backbone features to embeddings."""

    def __init__(self, in_features: int, config: LogoEmbeddingConfig):
        super().__init__()
        self.projection = nn.Linear(in_features, config.hidden_size)
        self.norm = nn.BatchNorm1d(config.hidden_size)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(config.head_dropout)
        self.output = nn.Linear(config.hidden_size, config.embedding_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.activation(self.norm(self.projection(features)))))


class LogoEmbeddingModel(PreTrainedModel):
    r"""
    A logo embedding network: ResNet backbone -> [`LogoEmbeddingHead`] -> L2 normalisation. Embeddings of two images
    of the same brand are close (high cosine similarity), also for brands never seen in training, which is what the
    few-shot [`~modeling_logo.LogoGallery`] builds on.

    Args:
        config ([`LogoEmbeddingConfig`]):
            The model configuration. Building a model from it gives random weights; use `from_pretrained` to load a
            trained model.
        pretrained_backbone (`bool` or `str`, *optional*, defaults to `False`):
            `True` to start the backbone from timm's ImageNet weights for `config.backbone` (downloaded from the Hub,
            or taken from its cache), or the path of a local state dict (`.safetensors`, `.pth`, `.bin`) with timm or
            torchvision ResNet parameter names. See [`~LogoEmbeddingModel.load_backbone_weights`].

    Example:

    ```python
    >>> import torch
    >>> from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel

    >>> model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)).eval()
    >>> model(torch.randn(2, 3, 64, 64)).embeddings.shape
    torch.Size([2, 128])
    ```
    """

    config: LogoEmbeddingConfig
    config_class = LogoEmbeddingConfig
    base_model_prefix = "logo"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: LogoEmbeddingConfig, pretrained_backbone: bool | str | os.PathLike = False):
        super().__init__(config)
        self.backbone = create_backbone(config)
        if backbone_arguments(config)[1].get("zero_init_last", True):  # timm's ResNet default
            # The last norm of each residual block starts at weight 0 (each block the identity), as timm does.
            for block in self.backbone.modules():
                if callable(getattr(block, "zero_init_last", None)):
                    last_norm = getattr(block, "bn3", None) or getattr(block, "bn2", None)
                    if last_norm is not None:
                        last_norm._zero_init_weight = True
        self.head = LogoEmbeddingHead(self.backbone.num_features, config)
        self.post_init()
        # After post_init(), which (re)initialises weights: pretrained backbone weights must not be overwritten.
        if pretrained_backbone:
            self.load_backbone_weights(None if pretrained_backbone is True else pretrained_backbone)
        self._apply_frozen_stages()

    def _init_weights(self, module: nn.Module):
        """Initialise one module the way timm initialises a new ResNet, and the head likewise.

        transformers calls this for every module of a new model (in `post_init()`) and, in `from_pretrained`, for the
        modules whose weights the checkpoint lacks; the `transformers.initialization` functions leave every tensor
        that was loaded (marked `_is_hf_initialized`) as it is. So a model built from a config, and the backbone
        weights a checkpoint does not have, get He-initialised convolutions, BatchNorm layers with weight 1, bias 0
        and fresh statistics (running mean 0, variance 1), and, as timm's `zero_init_last` does, a zero weight in the
        last BatchNorm of each residual block (each block starts as the identity). Pretrained backbone weights are
        loaded after `post_init()` ([`~LogoEmbeddingModel.load_backbone_weights`]), so they are never overwritten.
        """
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(module, "weight", None) is not None:
                (init.zeros_ if getattr(module, "_zero_init_weight", False) else init.ones_)(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        return_dict: bool | None = None,
        pooled_features: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> LogoEmbeddingOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
                Images normalised by [`LogoImageProcessor`].
            return_dict (`bool`, *optional*):
                Return a [`LogoEmbeddingOutput`] (default) or a plain tuple.
            pooled_features (`torch.FloatTensor` of shape `(batch_size, num_features)`, *optional*):
                Instead of `pixel_values`: pooled backbone features computed earlier (`pooler_output`). The backbone
                is skipped; training uses this to run only the head while the whole backbone is frozen.
            output_hidden_states (`bool`, *optional*):
                Also return the backbone's feature maps (`hidden_states`: the stem's and each stage's). Defaults to
                `config.output_hidden_states`.

        Returns:
            [`LogoEmbeddingOutput`] with `embeddings`, `pooler_output`, `last_hidden_state` and, when asked for,
            `hidden_states` (the last two are `None` when `pooled_features` were given).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if (pixel_values is None) == (pooled_features is None):
            raise ValueError("Pass either pixel_values or pooled_features.")
        hidden_states = None
        if pooled_features is not None:
            feature_map, pooled = None, pooled_features
        else:
            if output_hidden_states:
                hidden_states = self._backbone_feature_maps(pixel_values)
                feature_map = hidden_states[-1]
            else:
                feature_map = self.backbone.forward_features(pixel_values)
            pooled = self.backbone.forward_head(feature_map, pre_logits=True)
        # float32 for the normalisation and for every consumer (similarities, faiss), whatever the autocast dtype.
        embeddings = self.head(pooled).float()
        if self.config.normalize_embeddings:
            embeddings = F.normalize(embeddings, dim=-1)
        output = LogoEmbeddingOutput(
            embeddings=embeddings, pooler_output=pooled, last_hidden_state=feature_map, hidden_states=hidden_states
        )
        return output if return_dict else output.to_tuple()

    def _backbone_feature_maps(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The stem's output and each stage's: what timm's `forward_features` computes, keeping every step."""
        backbone = self.backbone
        features = backbone.maxpool(backbone.act1(backbone.bn1(backbone.conv1(pixel_values))))
        feature_maps = [features]
        for stage in BACKBONE_STAGES[1:]:
            features = getattr(backbone, stage)(features)
            feature_maps.append(features)
        return tuple(feature_maps)

    # ----------------------------------------------------------------------------------------------------------------
    # Backbone stages: progressive unfreezing (the paper unfreezes layer4 at epoch 15) works on these names.

    def backbone_stage_modules(self, stage: str) -> list[nn.Module]:
        """The backbone modules of one stage: `"stem"` (conv1, bn1) or `"layer1"` ... `"layer4"`."""
        if stage not in BACKBONE_STAGES:
            raise ValueError(f"Unknown backbone stage {stage!r}; valid stages are {BACKBONE_STAGES}.")
        if stage != "stem":
            return [getattr(self.backbone, stage)]
        rest = set(BACKBONE_STAGES[1:]) | {"global_pool", "fc"}
        return [module for name, module in self.backbone.named_children() if name not in rest]

    def backbone_parameters(self, stages: list[str] | tuple[str, ...] | None = None) -> list[nn.Parameter]:
        """Parameters of the given backbone stages (all stages when `None`), e.g. for an optimizer parameter group."""
        stages = BACKBONE_STAGES if stages is None else stages
        return [
            param for stage in stages for module in self.backbone_stage_modules(stage) for param in module.parameters()
        ]

    def freeze_backbone_stages(self, stages: list[str] | tuple[str, ...] | None = None) -> None:
        """Freeze backbone stages (all when `None`): no gradients, BatchNorm statistics kept, recorded in the config."""
        stages = BACKBONE_STAGES if stages is None else stages
        self.config.frozen_stages = [s for s in BACKBONE_STAGES if s in set(self.config.frozen_stages) | set(stages)]
        self._apply_frozen_stages()

    def unfreeze_backbone_stages(self, stages: list[str] | tuple[str, ...] | None = None) -> None:
        """Unfreeze backbone stages (all when `None`) so that they train again."""
        stages = set(BACKBONE_STAGES if stages is None else stages)
        for stage in stages:
            self.backbone_stage_modules(stage)  # validates the name
        self.config.frozen_stages = [s for s in self.config.frozen_stages if s not in stages]
        self._apply_frozen_stages()

    def _apply_frozen_stages(self) -> None:
        frozen = set(self.config.frozen_stages)
        for stage in BACKBONE_STAGES:
            for param in self.backbone_parameters([stage]):
                param.requires_grad_(stage not in frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        """Set train/eval mode; the BatchNorm layers of frozen stages stay in eval mode (their statistics are kept)."""
        super().train(mode)
        if mode:
            for stage in self.config.frozen_stages:
                for module in self.backbone_stage_modules(stage):
                    module.eval()
        return self

    # ----------------------------------------------------------------------------------------------------------------
    # Pretrained backbone weights (ImageNet), the paper's starting point.

    def load_backbone_weights(self, weights_file: str | os.PathLike | None = None) -> None:
        """Load pretrained weights into the backbone; the head is left as it is.

        Args:
            weights_file (`str` or `os.PathLike`, *optional*):
                A local state dict (`.safetensors`, `.pth`, `.bin`) for `config.backbone`, with timm or torchvision
                ResNet parameter names (a classifier `fc.*` is dropped). When `None`, timm's default ImageNet weights
                for `config.backbone` are downloaded from the Hugging Face Hub (or read from its local cache).

        Raises:
            `OSError`: the Hub cannot be reached and the weights are not cached (the message says what to do).
            `ValueError`: the file does not fit the backbone.
        """
        if weights_file is not None and not os.path.isfile(weights_file):
            raise FileNotFoundError(f"Backbone weights file {os.fspath(weights_file)!r} does not exist.")
        if weights_file is None and self.config.backbone in BACKBONE_PRESETS:
            raise ValueError(
                f"Backbone {self.config.backbone!r} is this project's own narrow ResNet: no ImageNet weights exist for "
                "it. Use a timm ResNet name (e.g. backbone='resnet50') for ImageNet weights, or pass a state dict of "
                "this architecture as weights_file."
            )
        try:
            pretrained = create_backbone(self.config, pretrained=True, weights_file=weights_file)
        except RuntimeError as error:  # torch's load_state_dict: missing/unexpected keys or shape mismatch
            raise ValueError(
                f"The weights in {os.fspath(weights_file) if weights_file else 'the timm checkpoint'} do not fit "
                f"backbone {self.config.backbone!r}: {error}"
            ) from error
        except OSError as error:
            raise OSError(
                f"Could not get ImageNet weights for backbone {self.config.backbone!r} from the Hugging Face Hub "
                f"({'HF_HUB_OFFLINE is set' if hub_constants.HF_HUB_OFFLINE else 'the Hub could not be reached'}: "
                f"{type(error).__name__}). On a machine with internet, save them once with "
                f"`timm.create_model({self.config.backbone!r}, pretrained=True, num_classes=0).state_dict()` "
                "(or use a torchvision ResNet state dict), copy the file here and pass its path: "
                "`model.load_backbone_weights('resnet50.pth')`."
            ) from error
        self.backbone.load_state_dict(pretrained.state_dict())
        self.config.backbone_weights = (
            os.fspath(weights_file) if weights_file is not None else pretrained.pretrained_cfg.get("hf_hub_id")
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a saved model (see `PreTrainedModel.from_pretrained`), with advice when a Hub id cannot be fetched."""
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (OSError, ValueError) as error:
            if os.path.isdir(pretrained_model_name_or_path):
                raise
            raise OSError(_not_found_advice(os.fspath(pretrained_model_name_or_path), error)) from error
        # Loading replaces the parameters (and with them requires_grad): freeze the configured stages again.
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True returns a tuple
        model._apply_frozen_stages()
        return loaded


def is_local_path(name: str) -> bool:
    """Whether `name` can only mean a path on this machine: a Hub id is `name` or `owner/name`, so anything starting
    with `.`, `/` or `~`, or with more than one `/` (or the platform's own separator), is a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _not_found_advice(name: str, error: Exception) -> str:
    if is_local_path(name):
        where = f"There is no directory {os.path.abspath(name)!r}."
    elif hub_constants.HF_HUB_OFFLINE:
        where = f"{name!r} is not a local directory, and the Hugging Face Hub is disabled (HF_HUB_OFFLINE=1)."
    else:
        where = f"{name!r} is not a local directory, and it could not be loaded from the Hugging Face Hub."
    return (
        f"{where} To load a model saved on this machine, pass the directory `save_pretrained` wrote (it holds "
        "config.json and model.safetensors), e.g. `AutoModel.from_pretrained('./logo-model')`. To use a Hub model "
        f"offline, download it once on a connected machine with `hf download {name} --local-dir ./logo-model` and "
        f"copy the folder. (Original error: {type(error).__name__}: {error})"
    )


__all__ = [
    "LogoEmbeddingModel",
    "LogoEmbeddingOutput",
    "LogoEmbeddingHead",
    "backbone_arguments",
    "create_backbone",
    "is_local_path",
]
