import json

import pytest
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig
from transformers.testing_utils import CaptureLogger

from modeling_logo import BACKBONE_STAGES, LogoEmbeddingConfig, LogoEmbeddingModel
from modeling_logo.configuration_logo import logger as configuration_logger


def test_defaults_are_the_papers_architecture():
    config = LogoEmbeddingConfig()
    assert config.model_type == "logo-embedding"
    assert config.backbone == "resnet50"
    assert (config.hidden_size, config.embedding_size, config.head_dropout) == (256, 128, 0.3)
    assert config.normalize_embeddings is True
    assert config.image_size == 224
    assert not hasattr(config, "image_mean") and not hasattr(config, "image_std")  # the processor normalises
    assert config.frozen_stages == [] and config.similarity_threshold is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head_dropout": 1.0}, "head_dropout"),
        ({"head_dropout": -0.1}, "head_dropout"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"hidden_size": -3}, "hidden_size"),
        ({"image_size": 16}, "image_size"),
        ({"frozen_stages": ["layer5"]}, "layer5"),
        ({"similarity_threshold": 1.5}, "similarity_threshold"),
        ({"backbone": ""}, "backbone"),
        ({"embedding_size": "128"}, "embedding_size"),
    ],
)
def test_invalid_values_raise_a_clear_error(kwargs, message):
    with pytest.raises(StrictDataclassError, match=message):
        LogoEmbeddingConfig(**kwargs)


def test_unknown_backbone_name_lists_valid_choices():
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnet5O'.*resnet-tiny"):
        LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet5O"))


def test_non_resnet_backbone_is_refused():
    with pytest.raises(ValueError, match="ResNet-family"):
        LogoEmbeddingModel(LogoEmbeddingConfig(backbone="mobilenetv3_small_050", image_size=64))


def test_save_and_load_round_trip(tmp_path):
    config = LogoEmbeddingConfig(
        backbone="resnet18",
        frozen_stages=("stem", "layer1"),
        similarity_threshold=0.42,
        image_size=128,
        backbone_kwargs={"drop_rate": 0.1},
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LogoEmbeddingConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.frozen_stages == ["stem", "layer1"]


def test_stage_names_are_ordered_from_input_to_output():
    assert BACKBONE_STAGES == ("stem", "layer1", "layer2", "layer3", "layer4")


def test_configs_saved_with_normalisation_keys_still_load_without_them(tmp_path):
    """Earlier versions saved `image_mean`/`image_std` in config.json; the processor's config holds them now."""
    LogoEmbeddingConfig(image_size=96).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "image_mean" not in saved and "image_std" not in saved
    saved.update(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with CaptureLogger(configuration_logger) as captured:
        loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.image_size == 96 and not hasattr(loaded, "image_mean") and not hasattr(loaded, "image_std")
    assert "image_mean" not in loaded.to_dict() and captured.out == ""  # the ImageNet values: nothing is lost
    loaded.save_pretrained(tmp_path / "resaved")
    assert "image_mean" not in json.loads((tmp_path / "resaved" / "config.json").read_text())

    with CaptureLogger(configuration_logger) as captured:
        config = LogoEmbeddingConfig(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    assert not hasattr(config, "image_mean")
    assert "ignores" in captured.out and "preprocessor_config.json" in captured.out
