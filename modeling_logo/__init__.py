"""Few-shot logo recognition as a Hugging Face model: an embedding network, its image processor and a brand gallery.

Importing the package registers the model with the `Auto*` classes (`AutoModel.from_pretrained(dir)` then needs no
`trust_remote_code`), and makes `save_pretrained` copy the model's code next to its weights, so that a process
without this package can load it with `AutoModel.from_pretrained(dir, trust_remote_code=True)`.
"""

from pathlib import Path

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_localizer import LogoLocalizerConfig
from .configuration_logo import BACKBONE_PRESETS, BACKBONE_STAGES, LogoEmbeddingConfig
from .embedder import LogoEmbedder
from .few_shot import BrandMatch, LogoGallery
from .fingerprint import model_fingerprint
from .image_processing_localizer import LogoLocalizerImageProcessor
from .image_processing_logo import InvalidImageError, LogoImageProcessor, open_image, to_rgb
from .modeling_localizer import LogoLocalizerModel, LogoLocalizerOutput
from .modeling_logo import LogoEmbeddingModel, LogoEmbeddingOutput
from .onnx import OnnxLogoEmbedder, export_int8_onnx, export_onnx  # onnxruntime itself is imported on first use


__version__ = "0.1.0"

# `evaluate.load(EVALUATE_METRIC_PATH)` (or with config "separation") gives the verification metrics as an evaluate module.
EVALUATE_METRIC_PATH = str(Path(__file__).parent / "evaluate_metric" / "logo_verification")

AutoConfig.register(LogoEmbeddingConfig.model_type, LogoEmbeddingConfig, exist_ok=True)
AutoModel.register(LogoEmbeddingConfig, LogoEmbeddingModel, exist_ok=True)
AutoImageProcessor.register(
    LogoEmbeddingConfig, image_processor_classes={"torchvision": LogoImageProcessor}, exist_ok=True
)
LogoEmbeddingConfig.register_for_auto_class()
LogoEmbeddingModel.register_for_auto_class("AutoModel")
LogoImageProcessor.register_for_auto_class("AutoImageProcessor")

AutoConfig.register(LogoLocalizerConfig.model_type, LogoLocalizerConfig, exist_ok=True)
AutoModel.register(LogoLocalizerConfig, LogoLocalizerModel, exist_ok=True)
AutoImageProcessor.register(
    LogoLocalizerConfig, image_processor_classes={"pil": LogoLocalizerImageProcessor}, exist_ok=True
)
LogoLocalizerConfig.register_for_auto_class()
LogoLocalizerModel.register_for_auto_class("AutoModel")
LogoLocalizerImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "EVALUATE_METRIC_PATH",
    "BACKBONE_PRESETS",
    "BACKBONE_STAGES",
    "BrandMatch",
    "InvalidImageError",
    "LogoEmbedder",
    "LogoEmbeddingConfig",
    "LogoEmbeddingModel",
    "LogoEmbeddingOutput",
    "LogoGallery",
    "LogoImageProcessor",
    "LogoLocalizerConfig",
    "LogoLocalizerImageProcessor",
    "LogoLocalizerModel",
    "LogoLocalizerOutput",
    "OnnxLogoEmbedder",
    "export_int8_onnx",
    "export_onnx",
    "model_fingerprint",
    "open_image",
    "to_rgb",
]
