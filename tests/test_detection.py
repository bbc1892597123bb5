"""Whole photos: LogoGallery.detect with a localiser or the window baseline, shots from photos, the logo-detect
command, the photo protocol, and the localiser's scene data."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_logo import LogoEmbedder, LogoGallery
from modeling_logo.detection import LogoDetection, crop_box, draw_detections
from modeling_logo.evaluation import EmbeddedSplit, PhotoSplit, open_set_metrics, photo_episodes
from modeling_logo.few_shot import window_boxes

from .conftest import make_logo_images


SHIPPED_EMBEDDER = Path(__file__).resolve().parents[1] / "checkpoints" / "logo-embedding-resnet-small"
LOGO_BOX = (120, 60, 216, 132)  # where `photo_with` pastes its logo (96 x 72)


def photo_with(logo: Image.Image | None, seed: int = 0, size=(320, 240)) -> Image.Image:
    """A textured grey photo with the logo pasted at LOGO_BOX."""
    rng = np.random.default_rng(seed)
    photo = Image.fromarray(rng.normal(120, 25, (size[1], size[0], 3)).clip(0, 255).astype(np.uint8))
    if logo is not None:
        photo.paste(logo.resize((LOGO_BOX[2] - LOGO_BOX[0], LOGO_BOX[3] - LOGO_BOX[1])), LOGO_BOX[:2])
    return photo


class ExactLocalizer:
    """A stand-in localiser that finds the pasted logo exactly (and a second, empty box of background)."""

    def __init__(self, boxes=(LOGO_BOX, (10, 10, 60, 50))):
        self.boxes = torch.tensor(boxes, dtype=torch.float32)
        self.calls = 0

    def __call__(self, photos, threshold=None):
        self.calls += 1
        return [{"boxes": self.boxes.clone(), "scores": torch.linspace(0.9, 0.5, len(self.boxes))} for _ in photos]

    @property
    def config(self):
        return type("Config", (), {"name_or_path": "exact-stand-in"})()


@pytest.fixture
def logos():
    return make_logo_images(3, seed=11)


@pytest.fixture
def gallery(shipped_embedder, logos):
    # The shipped embedder at its calibrated threshold: whether an untrained network calls a background box or an
    # unregistered logo unknown depends on the luck of its random draw.
    gallery = LogoGallery(shipped_embedder, localizer=ExactLocalizer())
    # shots as a user would crop them from other photos of the brand
    gallery.add_brand("Acme", [crop_box(photo_with(logos[0], seed=1), LOGO_BOX)])
    gallery.add_brand("Bolt", [crop_box(photo_with(logos[1], seed=1), LOGO_BOX)])
    return gallery


def test_detect_names_the_logo_in_a_whole_photo_and_calls_background_unknown(gallery, logos):
    detections = gallery.detect(photo_with(logos[0]))
    assert [d.box for d in detections][0] == pytest.approx(LOGO_BOX)
    best = detections[0]
    assert best.brand == "Acme" and best.box_score == pytest.approx(0.9) and best.score >= 0.9
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    assert all(d.brand is None for d in detections[1:])  # the background box is no registered brand
    # the same photo embedded whole does not reach the logo's similarity: cropping is what makes it work
    whole = gallery.search(photo_with(logos[0]), top_k=1)[0]
    assert whole.score < best.score


def test_an_unregistered_logo_is_found_but_named_unknown(gallery, logos):
    detections = gallery.detect(photo_with(logos[2]))
    assert detections and all(d.brand is None for d in detections)
    assert {d.best_brand for d in detections} <= {"Acme", "Bolt"}  # the closest brand is still reported


def test_shots_from_whole_photos_are_cropped(tiny_model, processor, logos):
    gallery = LogoGallery(LogoEmbedder(tiny_model, processor, runtime="torch"), localizer=ExactLocalizer())
    gallery.add_brand("Acme", [photo_with(logos[0], seed=3)], locate=True)  # the most confident box: the logo
    gallery.add_brand("Acme-box", [photo_with(logos[0], seed=4)], boxes=[LOGO_BOX])
    gallery.add_brand("Acme-crop", [crop_box(photo_with(logos[0], seed=5), LOGO_BOX)])
    gallery.add_brand("Acme-whole", [photo_with(logos[0], seed=6)])
    crop = gallery.prototype("Acme-crop")
    assert float(gallery.prototype("Acme") @ crop) > float(gallery.prototype("Acme-whole") @ crop)
    assert float(gallery.prototype("Acme-box") @ crop) > float(gallery.prototype("Acme-whole") @ crop)
    with pytest.raises(ValueError, match="one box"):
        gallery.add_brand("Two", [logos[0], logos[1]], boxes=[LOGO_BOX])
    nothing = LogoGallery(
        LogoEmbedder(tiny_model, processor, runtime="torch"), localizer=ExactLocalizer(boxes=torch.zeros(0, 4))
    )
    with pytest.raises(ValueError, match="No logo was found in shot 0"):
        nothing.add_brand("Acme", [photo_with(None)], locate=True)
    assert "Acme" not in nothing
    with pytest.raises(ValueError, match="no localiser"):
        LogoGallery(LogoEmbedder(tiny_model, processor)).add_brand("Acme", [logos[0]], locate=True)


@pytest.fixture(scope="module")
def shipped_embedder():
    """The shipped embedder: a random tiny one finds every crop alike, so search quality needs a trained one."""
    return LogoEmbedder.from_pretrained(SHIPPED_EMBEDDER, runtime="torch")


def test_window_search_finds_a_registered_logo_without_a_localiser(shipped_embedder, logos):
    gallery = LogoGallery(shipped_embedder)
    gallery.add_brand("Acme", [crop_box(photo_with(logos[0], seed=1), LOGO_BOX)])
    detections = gallery.detect(photo_with(logos[0], seed=2))  # no localiser: "auto" searches windows
    assert detections and detections[0].brand == "Acme"
    x0, y0, x1, y1 = detections[0].box
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    assert LOGO_BOX[0] < centre[0] < LOGO_BOX[2] and LOGO_BOX[1] < centre[1] < LOGO_BOX[3]  # on the logo
    assert all(d.brand is not None for d in detections)  # windows report registered brands only
    with pytest.raises(ValueError, match="localiser"):
        gallery.detect(photo_with(logos[0]), method="localizer")


def test_window_boxes_cover_the_photo_at_every_scale():
    boxes = np.asarray(window_boxes(320, 240))
    assert boxes[:, :2].min() == 0 and boxes[:, 2].max() <= 320 and boxes[:, 3].max() <= 240
    sides = sorted({round(float(b[2] - b[0])) for b in boxes})
    assert sides == [round(s * 240) for s in (0.25, 0.4, 0.6, 0.9)]


def test_empty_gallery_still_reports_logos(tiny_model, processor, logos):
    gallery = LogoGallery(LogoEmbedder(tiny_model, processor, runtime="torch"), localizer=ExactLocalizer())
    detections = gallery.detect(photo_with(logos[0]))
    assert len(detections) == 2 and all(d.brand is None and d.best_brand is None for d in detections)


def test_gallery_records_its_localizer(gallery, tmp_path):
    gallery.save(tmp_path)
    assert json.loads((tmp_path / "gallery.json").read_text())["localizer"] == "exact-stand-in"


def test_draw_detections_boxes_known_and_unknown_logos():
    photo = Image.new("RGB", (200, 120), "white")
    known = LogoDetection((20, 40, 80, 90), "Acme", 0.9, 0.8, "Acme")
    unknown = LogoDetection((120, 40, 180, 90), None, 0.2, 0.7, "Acme")
    drawn = np.asarray(draw_detections(photo, [known, unknown]))
    assert tuple(drawn[89, 50]) != (255, 255, 255) and tuple(drawn[89, 150]) != (255, 255, 255)  # bottom edges
    assert tuple(drawn[65, 50]) == (255, 255, 255)  # inside a box, untouched
    assert drawn[89, 50, 1] > drawn[89, 50, 0] and drawn[89, 150, 0] > drawn[89, 150, 1]  # green vs red


def test_logo_detect_writes_one_json_line_per_photo_and_skips_bad_files(shipped_embedder, logos, tmp_path):
    from logo_commands import detect as detect_cli

    saved = LogoGallery(shipped_embedder)
    saved.add_brand("Acme", [crop_box(photo_with(logos[0], seed=1), LOGO_BOX)])
    saved.save(tmp_path / "gallery")
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    photo_with(logos[0]).save(photos / "a.jpg")
    photo_with(None).save(photos / "sub" / "b.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "results.jsonl"
    status = detect_cli.main(
        [
            str(photos),
            "--gallery",
            str(tmp_path / "gallery"),
            "--out",
            str(out),
            "--draw",
            str(tmp_path / "drawn"),
            "--localizer",
            "none",
            "--runtime",
            "torch",
        ]
    )
    assert status == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(line["photo"]).name for line in lines] == ["a.jpg", "broken.jpg", "b.png"]
    assert "error" in lines[1] and "not a readable image" in lines[1]["error"]
    assert lines[0]["detections"][0]["brand"] == "Acme" and lines[2]["detections"] == []
    assert len(list((tmp_path / "drawn").glob("*.jpg"))) == 2


def _photo_split(found_boxes, truth_boxes, labels, embeddings):
    return PhotoSplit(
        labels=np.asarray(labels),
        sources=np.asarray([f"scene{i}" for i in range(len(labels))]),
        boxes=[np.asarray(b, np.float32).reshape(-1, 4) for b in found_boxes],
        embeddings=[np.asarray(e, np.float32).reshape(len(b), -1) for e, b in zip(embeddings, found_boxes)],
        truth=[[(label, np.asarray(box, np.float32))] for label, box in zip(labels, truth_boxes)],
    )


def test_photo_episodes_need_the_right_brand_and_the_right_box():
    """Three brands with orthogonal embeddings: the found box's brand is right in every scene, but only some boxes
    overlap their logo; only those count, and the crop-level recall is perfect."""
    directions = np.eye(3, dtype=np.float32)
    labels = [0, 0, 1, 1, 2, 2]
    truth = [(0, 0, 10, 10)] * 6
    good, bad = [(0, 0, 10, 10)], [(50, 50, 60, 60)]
    found = [good, bad, good, good, bad, good]
    photos = _photo_split(found, truth, labels, [directions[label] for label in labels])
    crops = EmbeddedSplit(np.repeat(directions, 3, axis=0), np.repeat([0, 1, 2], 3))
    crop_sources = [f"shot{i}" for i in range(9)]  # the shots come from other scenes
    for episode, crop_recall in photo_episodes(photos, crops, crop_sources, 2, 1, episodes=20, queries_per_brand=2):
        known = episode.target >= 0
        queries = episode.queries[known]
        expected = np.asarray([found[q] is good for q in queries])
        assert ((episode.best[known] == episode.target[known]) == expected).all()
        assert crop_recall == 1.0 or np.isnan(crop_recall)
        metrics = open_set_metrics(episode, threshold=0.5)
        assert metrics["closed_set_accuracy"] == pytest.approx(expected.mean())


def test_split_scenes_keeps_only_scenes_of_the_splits_own_brands():
    import datasets

    from dataset_scripts.scenes import split_scenes

    rows = {
        "brand": [0, 1, 0],
        "objects": [
            [{"bbox": [0, 0, 5, 5], "brand": 0}, {"bbox": [5, 5, 9, 9], "brand": -1}],  # own brand + unknown logo
            [{"bbox": [0, 0, 5, 5], "brand": 1}],
            [{"bbox": [0, 0, 5, 5], "brand": 0}, {"bbox": [5, 5, 9, 9], "brand": 7}],  # a brand of another split
        ],
    }
    kept = split_scenes(datasets.Dataset.from_dict(rows))
    assert [len(objects) for objects in kept["objects"]] == [2, 1]


def test_scene_augmentation_is_seeded_by_epoch_and_index_and_keeps_boxes_on_the_canvas(logos):
    from dataset_scripts.scenes import SceneDataset, build_localizer_train_transform
    from modeling_logo import LogoLocalizerImageProcessor

    rows = [
        {"image": photo_with(logos[0], seed=i), "objects": [{"bbox": list(LOGO_BOX), "brand": 0}]} for i in range(3)
    ]
    dataset = SceneDataset(rows, LogoLocalizerImageProcessor(size=128), build_localizer_train_transform(), seed=5)
    first = [dataset[i] for i in range(3)]
    again = [dataset[i] for i in range(3)]
    dataset.set_epoch(1)
    other = [dataset[i] for i in range(3)]
    for a, b in zip(first, again):
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["boxes"], b["boxes"])
    assert any(not torch.equal(a["pixel_values"], c["pixel_values"]) for a, c in zip(first, other))
    for row in first + other:
        boxes = row["boxes"]
        assert ((boxes >= 0) & (boxes <= 128)).all() and (boxes[:, 2:] > boxes[:, :2]).all()


def test_logo_detect_searches_sampled_frames_of_a_video(shipped_embedder, logos, tmp_path):
    av = pytest.importorskip("av")
    from logo_commands import detect as detect_cli

    saved = LogoGallery(shipped_embedder)
    saved.add_brand("Acme", [crop_box(photo_with(logos[0], seed=1), LOGO_BOX)])
    saved.save(tmp_path / "gallery")
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:  # 3 s at 2 frames per second
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(6):
            frame = av.VideoFrame.from_image(photo_with(logos[0], seed=index))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    out = tmp_path / "results.jsonl"
    assert (
        detect_cli.main(
            [
                str(video),
                "--gallery",
                str(tmp_path / "gallery"),
                "--out",
                str(out),
                "--localizer",
                "none",
                "--runtime",
                "torch",
                "--video_fps",
                "1",
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["frame"], line["time"]) for line in lines] == [(0, 0.0), (2, 1.0), (4, 2.0)]
    assert all(line["detections"] and line["detections"][0]["brand"] == "Acme" for line in lines)


@pytest.mark.parametrize(
    "make_gallery, flags, message",
    [
        (lambda root: root / "missing", [], "is not a folder"),
        (lambda root: root, [], "holds no gallery.json: not a saved gallery"),
        (None, ["--model", "./no-such-model"], "--model './no-such-model': no such folder."),
    ],
)
def test_logo_detect_argument_mistakes_are_one_line_and_exit_status_2(
    make_gallery, flags, message, shipped_embedder, tmp_path, capsys
):
    from logo_commands import detect as detect_cli

    if make_gallery is None:
        LogoGallery(shipped_embedder).save(tmp_path / "gallery")
        gallery = tmp_path / "gallery"
    else:
        gallery = make_gallery(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        detect_cli.main(["photo.jpg", "--gallery", str(gallery), *flags])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("logo-detect: error: ") and message in last_line


def test_jitter_boxes_moves_and_resizes_boxes_by_the_amount_asked():
    from torchvision.ops import box_iou

    from dataset_scripts.transforms import jitter_boxes

    rng = np.random.default_rng(0)
    boxes = np.tile(np.array([[10.0, 20.0, 110.0, 70.0]], np.float32), (4000, 1))
    np.testing.assert_array_equal(jitter_boxes(boxes, 0.0, rng), boxes)
    ious = {}
    for amount in (0.1, 0.2, 0.3):
        jittered = jitter_boxes(boxes, amount, np.random.default_rng(1))
        assert (jittered[:, 2:] > jittered[:, :2]).all()
        sizes, true_size = jittered[:, 2:] - jittered[:, :2], boxes[0, 2:] - boxes[0, :2]
        assert (sizes > true_size).any() and (sizes < true_size).any()  # too large and too small
        assert np.abs(np.log(sizes / true_size)).max() <= amount + 1e-5
        ious[amount] = float(box_iou(torch.from_numpy(jittered), torch.from_numpy(boxes[:1])).mean())
    # What the docstring promises, and the same draws for the same generator.
    assert ious[0.1] == pytest.approx(0.88, abs=0.02) and ious[0.2] == pytest.approx(0.78, abs=0.02)
    assert ious[0.3] == pytest.approx(0.68, abs=0.02)
    np.testing.assert_array_equal(
        jitter_boxes(boxes, 0.2, np.random.default_rng(5)), jitter_boxes(boxes, 0.2, np.random.default_rng(5))
    )
