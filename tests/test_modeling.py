import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file

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


def test_imagenet_weights_offline_give_advice():
    resnet18 = LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet18", image_size=32))
    with pytest.raises(OSError, match=r"HF_HUB_OFFLINE is set.*load_backbone_weights\('resnet50.pth'\)"):
        resnet18.load_backbone_weights()


def test_presets_have_no_imagenet_weights_and_say_so(tiny_model):
    with pytest.raises(ValueError, match="'resnet-tiny' is this project's own narrow ResNet: no ImageNet weights"):
        tiny_model.load_backbone_weights()


def test_hidden_states_are_the_stem_and_stage_feature_maps(tiny_model):
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = tiny_model(pixels)
        output = tiny_model(pixels, output_hidden_states=True)
    assert plain.hidden_states is None
    shapes = [tuple(feature_map.shape) for feature_map in output.hidden_states]
    # stem (after max-pooling) and layer1 at 1/4 of the side, then 1/8, 1/16, 1/32; "resnet-tiny" stage widths
    assert shapes == [(2, 64, 16, 16), (2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    assert output.hidden_states[-1] is output.last_hidden_state
    torch.testing.assert_close(output.last_hidden_state, plain.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(output.embeddings, plain.embeddings, rtol=0, atol=0)
    with torch.no_grad():
        stem = tiny_model.backbone.maxpool(
            tiny_model.backbone.act1(tiny_model.backbone.bn1(tiny_model.backbone.conv1(pixels)))
        )
    torch.testing.assert_close(output.hidden_states[0], stem, rtol=0, atol=0)

    as_tuple = tiny_model(pixels, output_hidden_states=True, return_dict=False)
    assert len(as_tuple) == 4 and len(as_tuple[3]) == 5
    tiny_model.config.output_hidden_states = True  # the config's setting is the default
    assert len(tiny_model(pixels).hidden_states) == 5
    assert tiny_model(pixels, output_hidden_states=False).hidden_states is None
    assert tiny_model(pooled_features=plain.pooler_output).hidden_states is None


def _backbone_norms(model):
    """(name, BatchNorm2d, whether it is a residual block's last norm) for every norm of the backbone."""
    last = {
        f"{stage}.{index}.bn2" for stage in BACKBONE_STAGES[1:] for index in range(len(getattr(model.backbone, stage)))
    }
    return [
        (name, module, name in last)
        for name, module in model.backbone.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    ]


def _trained_like(model):
    """Give every parameter and BatchNorm statistic a value no initialisation gives (as a trained model has)."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *(b for n, b in model.named_buffers() if "running" in n)]:
            tensor.copy_(torch.rand_like(tensor) + 0.5)
        for name, buffer in model.named_buffers():
            if name.endswith("num_batches_tracked"):
                buffer.fill_(7)
    return model


def test_checkpoint_missing_backbone_weights_initialises_them_like_a_new_model(tmp_path, tiny_config):
    """transformers initialises the weights a checkpoint lacks with `_init_weights`: the backbone's too, not left as
    uninitialised memory (zero BatchNorm weights, variances up to 1e31), and without touching the weights it has."""
    torch.manual_seed(0)
    model = _trained_like(LogoEmbeddingModel(tiny_config))
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    kept = {key: value for key, value in weights.items() if not key.startswith("backbone.")}
    save_file(kept, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})

    loaded, info = LogoEmbeddingModel.from_pretrained(tmp_path, output_loading_info=True)
    assert set(info["missing_keys"]) == {key for key in weights if key.startswith("backbone.")}
    for name, norm, last_of_block in _backbone_norms(loaded):
        assert torch.all(norm.weight == (0.0 if last_of_block else 1.0)), name  # timm's zero_init_last
        assert torch.all(norm.bias == 0) and torch.all(norm.running_mean == 0), name
        assert torch.all(norm.running_var == 1) and norm.num_batches_tracked == 0, name
    for name, conv in loaded.backbone.named_modules():
        if isinstance(conv, torch.nn.Conv2d):  # He initialisation, fan-out mode
            expected = (2 / (conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1])) ** 0.5
            assert conv.weight.std().item() == pytest.approx(expected, rel=0.35), name
    state = loaded.state_dict()
    for key, value in kept.items():  # the head as saved
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    output = loaded.eval()(torch.randn(2, 3, 64, 64))
    assert torch.isfinite(output.embeddings).all() and torch.isfinite(output.last_hidden_state).all()


def test_checkpoint_missing_some_keys_keeps_every_key_it_has(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = _trained_like(LogoEmbeddingModel(tiny_config))
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = {"backbone.layer2.0.bn1.weight", "backbone.layer2.0.bn1.running_var", "backbone.conv1.weight"}
    save_file({k: v for k, v in weights.items() if k not in dropped}, str(tmp_path / "model.safetensors"))

    loaded = LogoEmbeddingModel.from_pretrained(tmp_path)
    state = loaded.state_dict()
    for key, value in weights.items():
        if key not in dropped:
            torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    assert torch.all(state["backbone.layer2.0.bn1.weight"] == 1) and torch.all(
        state["backbone.layer2.0.bn1.running_var"] == 1
    )
    assert 0 < state["backbone.conv1.weight"].std() < 1


def test_complete_checkpoint_loads_bit_exact(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = _trained_like(LogoEmbeddingModel(tiny_config))
    model.save_pretrained(tmp_path)
    loaded = LogoEmbeddingModel.from_pretrained(tmp_path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_new_models_are_initialised_like_timm_resnets_and_deterministic(tiny_config):
    torch.manual_seed(3)
    model = LogoEmbeddingModel(tiny_config)
    torch.manual_seed(3)
    same = LogoEmbeddingModel(tiny_config)
    other = LogoEmbeddingModel(tiny_config)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(same.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert not torch.equal(other.backbone.conv1.weight, model.backbone.conv1.weight)
    for name, norm, last_of_block in _backbone_norms(model):
        assert torch.all(norm.weight == (0.0 if last_of_block else 1.0)), name
        assert torch.all(norm.running_var == 1), name
    assert torch.all(model.head.norm.weight == 1) and torch.all(model.head.projection.bias == 0)

    tiny_config.backbone_kwargs = {"zero_init_last": False}  # timm's switch, honoured by `_init_weights`
    assert all(torch.all(norm.weight == 1) for _, norm, _ in _backbone_norms(LogoEmbeddingModel(tiny_config)))
