import pytest
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

from modeling_logo import BACKBONE_STAGES, LogoEmbeddingConfig, LogoEmbeddingModel


def test_defaults_are_the_papers_architecture():
    config = LogoEmbeddingConfig()
    assert config.model_type == "logo-embedding"
    assert config.backbone == "resnet50"
    assert (config.hidden_size, config.embedding_size, config.head_dropout) == (256, 128, 0.3)
    assert config.normalize_embeddings is True
    assert config.image_size == 224
    assert config.image_mean == [0.485, 0.456, 0.406] and config.image_std == [0.229, 0.224, 0.225]
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
        ({"image_mean": [0.5, 0.5]}, "one value per RGB channel"),
        ({"image_std": [0.2, 0.0, 0.2]}, "positive"),
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
