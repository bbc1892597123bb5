"""The logo localiser: config, model, processor, loading, ONNX, and that it learns to find a logo."""

import json

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from PIL import Image, ImageDraw
from transformers import AutoImageProcessor, AutoModel

from modeling_logo import (
    LogoLocalizerConfig,
    LogoLocalizerImageProcessor,
    LogoLocalizerModel,
)
from modeling_logo.detection import LogoLocalizer, crop_box
from modeling_logo.metrics import detection_metrics, match_detections

from .test_hub_loading import run_python


SIZE = 128


def tiny_localizer(seed: int = 0) -> LogoLocalizerModel:
    torch.manual_seed(seed)
    return LogoLocalizerModel(LogoLocalizerConfig(backbone="resnet-tiny", image_size=SIZE))


def scene(box=(60, 40, 140, 90), size=(200, 150), seed=0) -> Image.Image:
    """A noisy grey photo with one logo, a red plate with a yellow bar, filling `box`."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.normal(128, 20, (size[1], size[0], 3))).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(200, 20, 30))
    draw.rectangle(
        (x0 + (x1 - x0) // 4, (y0 + y1) // 2 - 4, x1 - (x1 - x0) // 4, (y0 + y1) // 2 + 4), fill=(250, 220, 0)
    )
    return image


def test_config_validates_and_round_trips(tmp_path):
    config = LogoLocalizerConfig(backbone="resnet-tiny", image_size=SIZE, score_threshold=0.4)
    config.save_pretrained(tmp_path)
    assert LogoLocalizerConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()
    for bad in ({"image_size": 100}, {"fpn_channels": 48}, {"score_threshold": 1.5}, {"anchor_sizes": [8, 16]}):
        with pytest.raises(StrictDataclassClassValidationError):
            LogoLocalizerConfig(**bad)


def test_processor_letterboxes_and_boxes_map_back():
    processor = LogoLocalizerImageProcessor(size=SIZE, pad_size_divisor=None)  # the square, as training stacks it
    photo = Image.new("RGB", (400, 200), "white")
    inputs = processor([photo], boxes=[[[40, 20, 200, 100]]])
    assert inputs["pixel_values"].shape == (1, 3, SIZE, SIZE)
    assert inputs["scales"].tolist() == [pytest.approx(SIZE / 400)]
    assert inputs["original_sizes"].tolist() == [[200, 400]]
    assert inputs["labels"][0]["boxes"].tolist() == [[pytest.approx(v * SIZE / 400) for v in (40, 20, 200, 100)]]
    # the padding below the photo is the normalised mean colour, zero
    assert float(inputs["pixel_values"][0, :, SIZE // 2 + 2 :, :].abs().max()) == 0.0
    assert torch.equal(inputs["pixel_values"][0], processor.letterbox(photo)[0])
    # a raw box in tensor pixels comes back in photo pixels, clipped to the photo
    outputs = {
        "scores": torch.tensor([[0.9, 0.2]]),
        "pred_boxes": torch.tensor([[[12.8, 6.4, 64.0, 80.0], [0, 0, 5, 5]]]),
    }
    (result,) = processor.post_process_object_detection(
        outputs, threshold=0.5, scales=inputs["scales"], original_sizes=inputs["original_sizes"]
    )
    assert result["boxes"].tolist() == [[pytest.approx(40), pytest.approx(20), pytest.approx(200), 200.0]]
    assert result["scores"].tolist() == [pytest.approx(0.9)]


def test_processor_pads_only_to_a_multiple_of_the_divisor():
    """By default the canvas is the photo's own letterbox padded to a multiple of 32 (a batch: to its largest), not
    the square: less to compute for the same photo pixels, which sit where they sit in the square."""
    processor = LogoLocalizerImageProcessor(size=SIZE)
    square = LogoLocalizerImageProcessor(size=SIZE, pad_size_divisor=None)
    wide, tall = Image.new("RGB", (400, 200), "white"), Image.new("RGB", (300, 400), "red")  # 128 x 64, 96 x 128
    assert processor(wide)["pixel_values"].shape == (1, 3, 64, SIZE)
    assert processor(Image.new("RGB", (400, 210)))["pixel_values"].shape == (1, 3, 96, SIZE)  # 67 rows -> 96
    inputs = processor([wide, tall])
    assert (
        inputs["pixel_values"].shape == (2, 3, SIZE, SIZE) and inputs["scales"].tolist() == [pytest.approx(0.32)] * 2
    )
    alone = processor(tall)["pixel_values"][0]
    assert alone.shape == (3, SIZE, 96) and torch.equal(alone, inputs["pixel_values"][1, :, :, :96])
    assert torch.equal(processor(wide)["pixel_values"][0], square(wide)["pixel_values"][0, :, :64])
    assert processor.canvas_size([(1, 1)]) == (32, 32)
    with pytest.raises(ValueError, match="pad_size_divisor"):
        LogoLocalizerImageProcessor(size=SIZE, pad_size_divisor=0)


def test_forward_shapes_and_loss():
    model = tiny_localizer()
    pixels = torch.randn(2, 3, SIZE, SIZE)
    output = model.eval()(pixels)
    locations = sum((SIZE // stride) ** 2 for stride in (8, 16, 32)) + 2 * 2 + 1  # P3-P5, then P6 (2x2), P7 (1x1)
    assert output.scores.shape == (2, locations) and output.pred_boxes.shape == (2, locations, 4)
    assert ((output.scores >= 0) & (output.scores <= 1)).all()
    labels = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 40.0]])}, {"boxes": torch.zeros(0, 4)}]
    output = model.train()(pixels, labels=labels)
    assert set(output.loss_dict) == {"classification", "bbox_regression", "bbox_ctrness"}
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_it_learns_to_find_a_logo_it_has_never_seen_at_that_place():
    """A few dozen steps on a handful of scenes: the box of a logo at a new position in a new scene is found."""
    torch.manual_seed(0)
    model = LogoLocalizerModel(LogoLocalizerConfig(backbone="resnet-tiny", image_size=64))
    processor = LogoLocalizerImageProcessor(size=64)
    boxes = [(20, 20, 90, 70), (100, 60, 180, 120), (40, 80, 120, 140), (110, 10, 190, 60)]
    photos = [scene(box, seed=i) for i, box in enumerate(boxes)]
    inputs = processor(photos, boxes=[[box] for box in boxes])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(inputs["pixel_values"], labels=inputs["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    localizer = LogoLocalizer(model, processor, runtime="torch")
    held_out = (70, 30, 150, 80)
    (found,) = localizer([scene(held_out, seed=9)], threshold=0.05)
    assert match_detections(found["boxes"][:1], found["scores"][:1], [held_out]).all()


def test_missing_weights_are_initialised_sanely(tmp_path):
    """A checkpoint without backbone keys loads He-initialised convs and unit BatchNorm, not zeros or garbage."""
    from safetensors.torch import load_file, save_file

    model = tiny_localizer()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".body." not in k}, tmp_path / "model.safetensors")
    loaded = LogoLocalizerModel.from_pretrained(tmp_path)
    body = loaded.detector.backbone.body
    assert float(body.bn1.weight.min()) == 1.0 and float(body.bn1.running_var.max()) == 1.0
    conv = body.conv1.weight.detach()
    fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3]
    assert float(conv.std()) == pytest.approx((2 / fan_out) ** 0.5, rel=0.2)  # He (fan-out), as a fresh model
    head = loaded.detector.head.classification_head.cls_logits
    torch.testing.assert_close(head.bias, model.detector.head.classification_head.cls_logits.bias)


def test_saved_localizer_loads_with_auto_classes_and_as_remote_code(tmp_path):
    model, processor = tiny_localizer().eval(), LogoLocalizerImageProcessor(size=SIZE)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_localizer.py").is_file() and "auto_map" in json.loads(
        (tmp_path / "config.json").read_text()
    )
    loaded, loaded_processor = AutoModel.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, LogoLocalizerModel) and loaded_processor.size == SIZE
    pixels = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(pixels).scores
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    np.save(tmp_path / "expected.npy", expected.numpy())
    run_python(
        f"""
        import numpy as np, torch
        from transformers import AutoModel, AutoImageProcessor
        model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        processor = AutoImageProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        with torch.no_grad():
            scores = model(torch.from_numpy(np.load({str(tmp_path / "pixels.npy")!r}))).scores.numpy()
        assert np.abs(scores - np.load({str(tmp_path / "expected.npy")!r})).max() < 1e-5
        """,
        cwd=tmp_path,
        block_package=True,
    )


def test_onnx_export_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from modeling_logo.onnx import OnnxLogoLocalizer, export_localizer_onnx

    model = tiny_localizer().eval()
    path = export_localizer_onnx(model, tmp_path / "localizer.onnx")  # verified against torch inside
    runner = OnnxLogoLocalizer(path)
    for height, width in ((SIZE, SIZE), (64, SIZE), (SIZE, 96), (32, 64)):  # any canvas the processor pads to
        pixels = torch.randn(2, 3, height, width)
        with torch.no_grad():
            expected = model(pixels)
        got = runner(pixels)
        assert got["scores"].shape == expected.scores.shape
        torch.testing.assert_close(got["scores"], expected.scores, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got["pred_boxes"], expected.pred_boxes, atol=1e-2, rtol=1e-4)


def test_match_detections_and_detection_metrics():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    predictions = [[0, 0, 10, 11], [1, 0, 10, 10], [20, 20, 31, 30], [50, 50, 60, 60]]
    scores = [0.9, 0.8, 0.7, 0.95]
    # the duplicate of the first box is a false positive; the far box too
    assert match_detections(predictions, scores, gt).tolist() == [True, False, True, False]
    metrics = detection_metrics([(predictions, scores, gt), ([], [], [[0, 0, 5, 5]])])
    # ranked: far (FP), first (TP), duplicate (FP), third (TP); 3 boxes in all
    # AP = recall steps 1/3 at precision 1/2, and 1/3 at precision 2/4
    assert metrics["AP"] == pytest.approx(1 / 3 * 1 / 2 + 1 / 3 * 2 / 4)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["threshold"] == pytest.approx(0.7) and metrics["f1"] == pytest.approx(
        2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)
    )


def test_crop_box_keeps_the_embedders_margin():
    photo = Image.new("RGB", (100, 100))
    assert crop_box(photo, (10, 20, 60, 40)).size == (60, 24)  # 10% of 50 and of 20 on each side
    assert crop_box(photo, (0, 0, 100, 100)).size == (100, 100)  # clipped to the photo
