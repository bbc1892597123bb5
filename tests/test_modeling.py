import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from modeling_logo import BACKBONE_STAGES, LogoEmbeddingConfig, LogoEmbeddingModel, LogoEmbeddingOutput


def test_output_shapes_and_unit_norm(tiny_model):
    output = tiny_model(torch.randn(3, 3, 64, 64))
    assert isinstance(output, LogoEmbeddingOutput)
    assert output.embeddings.shape == (3, 128)
    assert output.embeddings.dtype == torch.float32
    torch.testing.assert_close(output.embeddings.norm(dim=-1), torch.ones(3))
    assert output.pooler_output.shape == (3, tiny_model.backbone.num_features)
    assert output.last_hidden_state.shape[:2] == (3, tiny_model.backbone.num_features)
    assert output[0] is output.embeddings  # pipelines read the first field


def test_tuple_output_and_unnormalised_option(tiny_config):
    tiny_config.normalize_embeddings = False
    model = LogoEmbeddingModel(tiny_config).eval()
    embeddings, pooled, feature_map = model(torch.randn(2, 3, 64, 64), return_dict=False)
    assert embeddings.shape == (2, 128)
    assert not torch.allclose(embeddings.norm(dim=-1), torch.ones(2))


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(tiny_model):
    pixels = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        first, second = tiny_model(pixels).embeddings, tiny_model(pixels).embeddings
        assert torch.equal(first, second)
        tiny_model.train()
        torch.manual_seed(0)
        train_a = tiny_model(pixels).embeddings
        torch.manual_seed(1)
        train_b = tiny_model(pixels).embeddings
    assert not torch.allclose(train_a, train_b)


def test_bf16_autocast_returns_unit_norm_float32(tiny_model):
    pixels = torch.randn(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        embeddings = tiny_model(pixels).embeddings
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))
    reference = tiny_model(pixels).embeddings
    assert torch.nn.functional.cosine_similarity(embeddings, reference).min() > 0.98


@pytest.mark.parametrize(("backbone", "features"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_backbones_by_name_feed_the_head(backbone, features):
    model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone=backbone, image_size=64))
    assert model.backbone.num_features == features
    assert model.head.projection.in_features == features
    assert (model.head.projection.out_features, model.head.output.out_features) == (256, 128)


def test_backbone_kwargs_configure_a_custom_resnet():
    config = LogoEmbeddingConfig(backbone="resnet-tiny", backbone_kwargs={"channels": [8, 16, 32, 48]}, image_size=64)
    model = LogoEmbeddingModel(config)
    assert model.backbone.num_features == 48


def test_freezing_stages_stops_gradients_and_keeps_batchnorm_statistics(tiny_model):
    tiny_model.freeze_backbone_stages(["stem", "layer1", "layer2", "layer3"])
    tiny_model.train()
    assert tiny_model.config.frozen_stages == ["stem", "layer1", "layer2", "layer3"]
    frozen_stats = tiny_model.backbone.layer1[0].bn1.running_mean.clone()
    free_stats = tiny_model.backbone.layer4[0].bn1.running_mean.clone()

    tiny_model(torch.randn(4, 3, 64, 64)).embeddings.sum().backward()

    assert all(p.grad is None for p in tiny_model.backbone_parameters(["stem", "layer1", "layer2", "layer3"]))
    assert all(p.grad is not None for p in tiny_model.backbone_parameters(["layer4"]))
    assert all(p.grad is not None for p in tiny_model.head.parameters())
    assert torch.equal(tiny_model.backbone.layer1[0].bn1.running_mean, frozen_stats)
    assert not torch.equal(tiny_model.backbone.layer4[0].bn1.running_mean, free_stats)
    assert not tiny_model.backbone.bn1.training and tiny_model.backbone.layer4.training


def test_unfreezing_is_progressive_and_validated(tiny_model):
    tiny_model.freeze_backbone_stages()
    assert tiny_model.config.frozen_stages == list(BACKBONE_STAGES)
    assert not any(p.requires_grad for p in tiny_model.backbone.parameters())
    tiny_model.unfreeze_backbone_stages(["layer4"])
    assert tiny_model.config.frozen_stages == ["stem", "layer1", "layer2", "layer3"]
    assert all(p.requires_grad for p in tiny_model.backbone.layer4.parameters())
    with pytest.raises(ValueError, match="Unknown backbone stage"):
        tiny_model.unfreeze_backbone_stages(["layer7"])
    tiny_model.unfreeze_backbone_stages()
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_stage_parameters_partition_the_backbone(tiny_model):
    by_stage = [set(map(id, tiny_model.backbone_parameters([stage]))) for stage in BACKBONE_STAGES]
    assert sum(len(ids) for ids in by_stage) == len(list(tiny_model.backbone.parameters()))
    assert set().union(*by_stage) == set(map(id, tiny_model.backbone.parameters()))


def test_frozen_stages_in_config_apply_at_construction_and_survive_saving(tmp_path, tiny_config):
    tiny_config.frozen_stages = ["stem", "layer1"]
    model = LogoEmbeddingModel(tiny_config)
    assert not any(p.requires_grad for p in model.backbone.layer1.parameters())
    model.save_pretrained(tmp_path)
    reloaded = LogoEmbeddingModel.from_pretrained(tmp_path)
    assert reloaded.config.frozen_stages == ["stem", "layer1"]
    assert not any(p.requires_grad for p in reloaded.backbone.conv1.parameters())
    assert all(p.requires_grad for p in reloaded.backbone.layer2.parameters())


def test_pretrained_backbone_weights_survive_post_init(tmp_path, tiny_config):
    torch.manual_seed(123)
    reference = timm.create_model("resnet18", num_classes=0, layers=[1, 1, 1, 1], channels=[16, 32, 64, 128])
    weights = tmp_path / "backbone.safetensors"
    save_file(reference.state_dict(), str(weights))

    model = LogoEmbeddingModel(tiny_config, pretrained_backbone=str(weights))

    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], tensor, rtol=0, atol=0)
    assert model.config.backbone_weights == str(weights)
    # and they are what gets saved and reloaded
    model.save_pretrained(tmp_path / "model")
    reloaded = LogoEmbeddingModel.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(reloaded.backbone.conv1.weight, reference.conv1.weight, rtol=0, atol=0)


def test_torchvision_resnet_checkpoint_loads_into_the_backbone(tmp_path):
    torch.manual_seed(7)
    torchvision_resnet = torchvision.models.resnet18()  # random weights; same key names as the ImageNet ones
    weights = tmp_path / "resnet18-torchvision.pth"
    torch.save(torchvision_resnet.state_dict(), weights)
    model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet18", image_size=64))
    model.load_backbone_weights(weights)
    torch.testing.assert_close(model.backbone.layer3[1].conv2.weight, torchvision_resnet.layer3[1].conv2.weight)
    torch.testing.assert_close(model.backbone.bn1.running_var, torchvision_resnet.bn1.running_var)


def test_backbone_weights_that_do_not_fit_are_refused(tmp_path, tiny_model):
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), weights)  # full-width, not tiny
    before = tiny_model.backbone.conv1.weight.clone()
    with pytest.raises(ValueError, match="do not fit backbone 'resnet-tiny'"):
        tiny_model.load_backbone_weights(weights)
    assert torch.equal(tiny_model.backbone.conv1.weight, before)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny_model.load_backbone_weights(tmp_path / "missing.pth")


def test_imagenet_weights_offline_give_advice(tiny_model):
    with pytest.raises(OSError, match=r"HF_HUB_OFFLINE is set.*load_backbone_weights\('resnet50.pth'\)"):
        tiny_model.load_backbone_weights()
