"""Visual worlds of the generator: photo families (from a fake Debian tree, so no package is needed), composition
styles and their boxes, name checks, the default left untouched, and determinism across workers."""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dataset_scripts.synthesize import main, synthesize, worlds
from dataset_scripts.synthesize.compose import _box, compose_scene
from dataset_scripts.voc import UNKNOWN_LOGO, parse_voc

from .test_synthesize import ring_and_bar


TINY = {"num_brands": 3, "images_per_brand": 4, "image_size": 96, "progress": False}
MATE = worlds.PHOTO_FAMILIES["mate-nature"]


def files_of(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture
def fake_debian(tmp_path, monkeypatch):
    """A fake /usr/share holding two of mate-nature's files (pure red and pure blue photos) and nothing else."""
    root = tmp_path / "share"
    for file, colour in zip(MATE.files[:2], ((220, 20, 20), (20, 20, 220))):
        (root / file.path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (1600, 1000), colour).save(root / file.path, quality=95)
    monkeypatch.setattr(worlds, "DATA_ROOT", root)
    worlds.family_images.cache_clear()
    yield root
    worlds.family_images.cache_clear()


@pytest.mark.parametrize("style", list(worlds.COMPOSITION_STYLES))
@pytest.mark.parametrize("seed", range(4))
def test_every_style_boxes_the_visible_mask(style, seed):
    """As in test_synthesize: the same scene twice with the logos recoloured. Boxes are exactly the masks' bounding
    boxes, the masks are where the logo changed the pixels, and nothing changed far from them."""
    scenes = []
    for colours in (((255, 255, 255), (255, 255, 0)), ((0, 0, 0), (0, 0, 255))):
        extras = [(ring_and_bar(colours[1]), "B")] if seed % 2 else []
        distractor = ring_and_bar(colours[1]) if seed % 3 == 0 else None
        rng = np.random.default_rng(seed)
        scenes.append(
            compose_scene(
                ring_and_bar(colours[0]), "A", rng, image_size=128, extras=extras, distractor=distractor, style=style
            )
        )
    light, dark = scenes
    assert [(o.name, o.box) for o in light.objects] == [(o.name, o.box) for o in dark.objects]
    assert light.objects[0].name == "A" and UNKNOWN_LOGO not in [o.name for o in light.objects][:-1]
    width, height = light.image.size
    difference = np.abs(np.asarray(light.image, float) - np.asarray(dark.image, float)).mean(-1)
    logos = np.zeros((height, width), bool)
    for obj in light.objects:
        assert obj.mask.shape == (height, width) and obj.mask.sum() > 0
        assert obj.box == _box(obj.mask)
        if style != "mark-variants":  # a one-colour or outline version does not keep the mark's colours
            assert difference[obj.mask].mean() > 25, style
        logos |= obj.mask
    spread = 12 if style == "motion-blur" else 6  # the smear below the 0.5 opacity of the mask
    # A logo of a few pixels has faint strokes (opacity < 0.5, so outside its box) further from its visible part;
    # they may show, but never as more than half the logo.
    limit = 128 if style == "small" else 16
    assert difference[~ndimage.binary_dilation(logos, iterations=spread)].max(initial=0) < limit


def test_small_style_makes_small_and_cut_logos():
    areas, cut = [], 0
    for seed in range(30):
        scene = compose_scene(ring_and_bar((200, 30, 30)), "A", np.random.default_rng(seed), style="small")
        x0, y0, x1, y1 = scene.objects[0].box
        width, height = scene.image.size
        areas.append((x1 - x0) * (y1 - y0) / (width * height))
        cut += x0 == 0 or y0 == 0 or x1 == width or y1 == height
    assert np.median(areas) < 0.03 and cut >= 5


def test_a_family_loads_from_its_package_files(fake_debian, tmp_path):
    assert MATE.available and len(MATE.available_files()) == 2
    photos = worlds.family_images("mate-nature", tmp_path / "cache")
    assert [photo.size for photo in photos] == [(768, 480)] * 2
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 2  # reduced copies cached...
    worlds.family_images.cache_clear()
    again = worlds.family_images("mate-nature", tmp_path / "cache")  # ...and read back with the same pixels
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(photos, again))
    # A scene of that family has a red or blue background.
    rng = np.random.default_rng(0)
    scene = compose_scene(ring_and_bar((0, 255, 0)), "A", rng, image_size=128, photo_family="mate-nature")
    pixels = np.asarray(scene.image, float)[~scene.objects[0].mask]
    red, blue = pixels[:, 0].mean(), pixels[:, 2].mean()
    assert max(red, blue) > 2 * min(red, blue) and pixels[:, 1].mean() < max(red, blue) / 2


def test_missing_family_is_a_note_by_default_and_an_error_when_named(tmp_path, monkeypatch):
    monkeypatch.setattr(worlds, "DATA_ROOT", tmp_path / "empty")
    families, notes = worlds.resolve_photo_families(worlds.ALL_WORLDS)
    assert families == ("scikit-image", "surfaces")
    assert any("mate-nature" in note and "apt-get install -y mate-backgrounds" in note for note in notes)
    assert len(notes) == len(worlds.PHOTO_FAMILIES) - 2
    with pytest.raises(ValueError, match=r"apt-get install -y mate-backgrounds"):
        worlds.resolve_photo_families("scikit-image,mate-nature")

    summary = synthesize(tmp_path / "out", seed=0, workers=1, photo_families="all", styles="pasted", **TINY)
    assert summary.notes == notes and sum(summary.photo_families.values()) == summary.images
    assert set(summary.photo_families) == {"scikit-image", "surfaces"}
    licences = (tmp_path / "out" / "LICENSES.md").read_text(encoding="utf-8")
    assert "apt-get install -y plasma-workspace-wallpapers" in licences and "`astronaut`: public domain" in licences
    assert "Note: photo family 'plasma' skipped" in str(summary)


def test_unknown_names_list_the_valid_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown photo family 'nope'; valid: scikit-image, surfaces, .*all"):
        synthesize(tmp_path / "a", photo_families="scikit-image,nope", **TINY)
    with pytest.raises(ValueError, match=r"unknown composition style 'glossy'; valid: pasted, printed, .*busy"):
        synthesize(tmp_path / "b", styles=["glossy"], **TINY)
    with pytest.raises(ValueError, match="unknown composition style"):
        compose_scene(ring_and_bar((0, 0, 0)), "A", np.random.default_rng(0), style="glossy")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # checked before any work
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "c"), "--styles", "glossy"])
    assert exit_info.value.code == 1 and "valid: pasted" in capsys.readouterr().err


def test_list_worlds(capsys, fake_debian):
    assert main(["--list-worlds"]) is None
    listing = capsys.readouterr().out
    for name in (*worlds.PHOTO_FAMILIES, *worlds.COMPOSITION_STYLES):
        assert name in listing
    assert "mate-nature   GPL-2+; photographs; 2 images, mate-backgrounds installed" in listing
    assert "not installed: apt-get install -y gnome-backgrounds" in listing


def test_worlds_are_deterministic_whatever_the_workers_and_recorded(fake_debian, tmp_path):
    options = {**TINY, "cache_dir": None, "photo_families": "scikit-image,surfaces,mate-nature", "styles": "all"}
    one = synthesize(tmp_path / "one", seed=0, workers=1, **options)
    synthesize(tmp_path / "two", seed=0, workers=2, **options)
    expected, actual = files_of(tmp_path / "one"), files_of(tmp_path / "two")
    assert expected.keys() == actual.keys() and [n for n in expected if expected[n] != actual[n]] == []
    assert sum(one.photo_families.values()) == sum(one.styles.values()) == one.images
    seen = set()
    for xml in sorted((tmp_path / "one").glob("*/*/*.xml")):
        world = ET.parse(xml).getroot().find("world")
        seen.add((world.findtext("photo_family"), world.findtext("style")))
        annotation = parse_voc(xml)
        assert annotation.repairs == () and annotation.objects  # the builder's reader skips the new element
    assert {family for family, _ in seen} <= {"scikit-image", "surfaces", "mate-nature"} and len(seen) > 3
    licences = (tmp_path / "one" / "LICENSES.md").read_text(encoding="utf-8")
    assert "`backgrounds/mate/nature/Aqua.jpg`: GPL-2+, Charles Barbin, 2008" in licences


def test_without_worlds_nothing_changes_and_pasted_alone_keeps_the_pixels(tmp_path):
    synthesize(tmp_path / "default", seed=0, workers=1, **TINY)
    synthesize(tmp_path / "pasted", seed=0, workers=1, styles="pasted", **TINY)
    default, pasted = files_of(tmp_path / "default"), files_of(tmp_path / "pasted")
    assert all(b"<world>" not in data for name, data in default.items() if name.endswith(".xml"))
    assert "Visual worlds" not in default["LICENSES.md"].decode()
    # The world is drawn from a generator of its own: asking for `pasted` alone changes the VOC files, not the images.
    assert default.keys() == pasted.keys()
    assert [name for name in default if name.endswith(".jpg") and default[name] != pasted[name]] == []
    assert all(b"<style>pasted</style>" in data for name, data in pasted.items() if name.endswith(".xml"))
