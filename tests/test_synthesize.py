"""The generated logo benchmark: layout, VOC files, reproducibility, true boxes, licence filtering, CLI.

The mark packages are really fetched with `npm pack` (once, into the default cache) and a small set is generated
once per session.
"""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dataset_scripts.logo_sources import (
    Brand,
    Design,
    MarkSourceError,
    NpmPackage,
    fetch_package,
    folder_name,
    is_cc0,
    load_marks,
)
from dataset_scripts.synthesize import (
    BACKGROUNDS,
    InvisibleMarkError,
    SceneObject,
    category_of,
    compose_scene,
    main,
    plan_designs,
    split_images,
    synthesize,
)
from dataset_scripts.synthesize import write as synthesize_write
from dataset_scripts.synthesize.compose import _background_images
from dataset_scripts.synthesize.warp import _Warp
from dataset_scripts.voc import CATEGORIES, UNKNOWN_LOGO, read_voc, write_voc


REPO = Path(__file__).resolve().parents[1]
SMALL = {"num_brands": 8, "images_per_brand": 4, "image_size": 160, "progress": False}
# With seed 0 the 8 brands include one with two designs (Claude: the simple-icons mark and the iconify logo).
SEED = 0


def files_of(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="session")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = synthesize(root / "two-workers", seed=SEED, workers=2, preview=root / "preview.png", **SMALL)
    return root, summary


def test_layout_and_annotations(small_set):
    root, summary = small_set
    out = root / "two-workers"
    assert summary.brands == 8 and summary.images == 8 * 4 and summary.images_per_second > 0
    assert {p.name for p in out.iterdir()} <= {*CATEGORIES, "LICENSES.md"}
    folders = {p.name: p for p in out.glob("*/*") if p.is_dir()}
    assert len(folders) == summary.designs
    total = 0
    for folder, path in folders.items():
        names = {p.name for p in path.iterdir()}
        count = len(names) // 2
        assert count >= 1 and names == {f"{n}.{ext}" for n in range(1, count + 1) for ext in ("jpg", "xml")}
        for n in range(1, count + 1):
            root_element = ET.parse(path / f"{n}.xml").getroot()
            assert root_element.findtext("folder") == folder and root_element.findtext("filename") == f"{n}.jpg"
            with Image.open(path / f"{n}.jpg") as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                width, height = image.size
            assert (int(root_element.findtext("size/width")), int(root_element.findtext("size/height"))) == (
                width,
                height,
            )
            _, objects = read_voc(path / f"{n}.xml")
            assert objects[0][0] == folder  # the folder's own logo comes first
            for name, (x0, y0, x1, y1) in objects:
                assert name in folders or name == UNKNOWN_LOGO  # another brand of the set, or a distractor
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        total += count
    assert total == summary.images
    licences = (out / "LICENSES.md").read_text(encoding="utf-8")
    assert "simple-icons@16.37.0" in licences and "@iconify-json/logos@1.2.19" in licences
    assert "trademarks of their owners" in licences


def test_brand_with_two_designs_gets_brand_and_brand_1(small_set):
    root, summary = small_set
    assert summary.brands_with_several_designs >= 1
    folders = {p.name for p in (root / "two-workers").glob("*/*")}
    several = [name for name in folders if f"{name}-1" in folders]
    assert several, folders
    # Both designs of a brand share its category, as in LogoDet-3K.
    for name in several:
        assert len({p.parent.name for p in (root / "two-workers").glob(f"*/{name}*")}) == 1


def test_same_seed_same_bytes_whatever_the_workers(small_set, tmp_path):
    root, _ = small_set
    synthesize(tmp_path / "one-worker", seed=SEED, workers=1, **SMALL)
    expected, actual = files_of(root / "two-workers"), files_of(tmp_path / "one-worker")
    assert expected.keys() == actual.keys()
    assert [name for name in expected if expected[name] != actual[name]] == []

    synthesize(tmp_path / "other-seed", seed=SEED + 1, workers=2, **SMALL)
    other = files_of(tmp_path / "other-seed")
    assert [name for name in other if name.endswith(".jpg")] != [name for name in expected if name.endswith(".jpg")]


def test_a_transparent_mark_is_an_invisible_mark_error():
    with pytest.raises(InvisibleMarkError, match="could not make 'Ghost' visible"):
        compose_scene(np.zeros((40, 40, 4), np.uint8), "Ghost", np.random.default_rng(0), image_size=96)


def test_an_image_whose_mark_stays_invisible_is_skipped_and_counted(small_set, tmp_path, monkeypatch):
    """One scene the compositor cannot make visible (seed 4 of the 4,066-brand pool has one) loses that image only:
    the others are the bytes of an undisturbed run, and the summary counts it."""
    root, summary = small_set
    compose = synthesize_write.compose_scene

    def compose_or_fail(mark, label, rng, **options):
        if label == first_folder and not failed:
            failed.append(label)
            raise InvisibleMarkError(f"could not make {label!r} visible in 20 scenes")
        return compose(mark, label, rng, **options)

    expected = files_of(root / "two-workers")
    first_folder = next(name for name in expected if name.endswith("1.jpg")).split("/")[1]
    failed = []
    monkeypatch.setattr(synthesize_write, "compose_scene", compose_or_fail)
    skipped_run = synthesize(tmp_path / "skipped", seed=SEED, workers=1, **SMALL)
    actual = files_of(tmp_path / "skipped")

    assert failed == [first_folder]
    assert skipped_run.images == summary.images - 1
    assert skipped_run.skipped[synthesize_write._INVISIBLE_MARK] == 1
    assert "1 × image with its mark invisible" in str(skipped_run)
    lost = sorted(set(expected) - set(actual))
    assert len(lost) == 2 and {Path(name).suffix for name in lost} == {".jpg", ".xml"}  # the image and its VOC file
    assert [name for name in actual if actual[name] != expected[name] and name != "LICENSES.md"] == []


def test_existing_output_needs_overwrite(small_set):
    root, _ = small_set
    with pytest.raises(FileExistsError, match="overwrite"):
        synthesize(root / "two-workers", seed=SEED, workers=1, **SMALL)


def test_preview_is_written(small_set):
    root, _ = small_set
    with Image.open(root / "preview.png") as preview:
        assert preview.format == "PNG" and preview.width >= 6 * 200 and preview.height >= 200


def test_background_photos_ship_with_scikit_image():
    photos = _background_images()  # no download: pooch is not even installed here
    assert len(photos) == len(BACKGROUNDS)
    for photo in photos:
        assert min(photo.size) >= 150 and np.asarray(photo).std() > 10  # a real photo, not a strip or a flat colour


def ring_and_bar(colour) -> np.ndarray:
    """A test mark: a ring and a bar in one colour on transparency."""
    ys, xs = np.mgrid[0:120, 0:200]
    radius = (xs - 60) ** 2 + (ys - 60) ** 2
    alpha = ((radius < 55**2) & (radius > 30**2)) | ((xs > 110) & (xs < 195) & (ys > 45) & (ys < 75))
    mark = np.zeros((120, 200, 4), np.uint8)
    mark[..., :3] = colour
    mark[..., 3] = alpha * 255
    return mark


@pytest.mark.parametrize("seed", range(24))
def test_boxes_are_the_visible_extent_of_the_pasted_logos(seed):
    """Compose the same scene twice with the logos recoloured: pixels change exactly under the reported masks."""
    scenes = []
    for colours in (((255, 255, 255), (255, 255, 0)), ((0, 0, 0), (0, 0, 255))):
        extras = [(ring_and_bar(colours[1]), "B")] if seed % 3 == 0 else []
        distractor = ring_and_bar(colours[1]) if seed % 2 else None  # boxed as a logo of no brand
        rng = np.random.default_rng(seed)
        scenes.append(
            compose_scene(ring_and_bar(colours[0]), "A", rng, image_size=160, extras=extras, distractor=distractor)
        )
    light, dark = scenes
    assert [(o.name, o.box) for o in light.objects] == [(o.name, o.box) for o in dark.objects]
    assert light.objects[0].name == "A"
    names = [o.name for o in light.objects]
    # A placed distractor is the last object; the pixel check below fails if it changed pixels without a box.
    assert UNKNOWN_LOGO not in names[:-1] and (seed % 2 or UNKNOWN_LOGO not in names)
    width, height = light.image.size
    difference = np.abs(np.asarray(light.image, float) - np.asarray(dark.image, float)).mean(-1)
    logos = np.zeros((height, width), bool)
    for obj in light.objects:
        ys, xs = np.nonzero(obj.mask)
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert np.abs(np.array(obj.box) - (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)).max() <= 1
        assert difference[obj.mask].mean() > 60  # the mask is where the logo is...
        logos |= obj.mask
    # ...and nothing else changed, up to blur and the soft edges just outside the masks.
    assert difference[~ndimage.binary_dilation(logos, iterations=6)].max(initial=0) < 16


def test_a_warp_with_part_of_the_mark_behind_the_camera_leaves_that_part_empty_not_nan():
    """A steep tilt puts scene pixels behind the camera (NaN coordinates); a cylinder's shading there must not turn the
    empty patch into NaN, which would show as black pixels in the scene."""
    tilt = np.array([[1, 0, 0], [0, 1, 0], [0.02, 0, 1]], np.float64)  # depth <= 0 from x = 50 on
    warp = _Warp(tilt, (20, 20), cylinder=0.5, cylinder_axis=0, ripple=None)
    patch = warp.apply(np.ones((20, 20, 5), np.float32), 1.0, np.zeros(2), (0, -10, 100, 10))
    assert np.isfinite(patch).all()
    assert patch[:, :5].any() and not patch[:, 50:].any()


def test_voc_round_trip_keeps_unusual_names(tmp_path):
    names = ["AT&T", "McDonald's", "Café", "Node.js", "Ünïcødé 日本 <&>"]
    mask = np.zeros((10, 20), bool)
    objects = [SceneObject(name, (1, 2, 3 + i, 4 + i), mask) for i, name in enumerate(names)]
    write_voc(tmp_path / "1.xml", "AT&T", "1.jpg", (20, 10), [(o.name, o.box) for o in objects])
    assert read_voc(tmp_path / "1.xml") == ((20, 10), [(o.name, o.box) for o in objects])
    assert "AT&amp;T" in (tmp_path / "1.xml").read_text(encoding="utf-8")


def test_folder_names_stay_readable_and_legal():
    for title in ["AT&T", "McDonald's", "Café", "Node.js", "Metro de la Ciudad de México", "L'Équipe"]:
        assert folder_name(title) == title
    assert folder_name("Google Pub/Sub") == "Google Pub_Sub"
    assert folder_name('a\\b:c*d?e"f<g>h|i') == "a_b_c_d_e_f_g_h_i"
    assert folder_name(".NET") == "_NET"  # not a hidden folder
    assert folder_name("Ferrari N.V.") == "Ferrari N.V_"  # Windows drops trailing dots


def test_categories_are_stable_and_all_used():
    # Fixed values: a salted hash() would change them from run to run.
    assert category_of("nodedotjs") == "Leisure"
    assert category_of("google") == "Medical"
    assert set(map(category_of, (f"brand{i}" for i in range(200)))) == set(CATEGORIES)


def test_images_are_split_over_designs():
    assert split_images(12, 1) == [12]
    assert split_images(12, 2) == [6, 6]
    assert split_images(4, 3) == [2, 1, 1]
    assert split_images(2, 3) == [1, 1]  # never an empty design folder


def test_only_cc0_simple_icons_are_used(tmp_path):
    assert is_cc0({"title": "A"}) and is_cc0({"title": "B", "license": {"type": "CC0-1.0"}})
    assert not is_cc0({"title": "C", "license": {"type": "MIT"}})
    assert not is_cc0({"title": "D", "license": {"type": "custom", "url": "https://example.com"}})

    # A fake, already extracted simple-icons package in a fresh cache: only the CC0 entries come out.
    package = tmp_path / "simple-icons-16.37.0" / "package"
    (package / "icons").mkdir(parents=True)
    (package / "data").mkdir()
    (package / "package.json").write_text(json.dumps({"name": "simple-icons", "version": "16.37.0"}))
    entries = [
        {"title": "Plain", "slug": "plain", "hex": "FF0000"},
        {"title": "Waived", "slug": "waived", "hex": "00FF00", "license": {"type": "CC0-1.0"}},
        {"title": "Copyleft", "slug": "copyleft", "hex": "0000FF", "license": {"type": "GPL-3.0-only"}},
        {"title": "Attribution", "hex": "000000", "license": {"type": "CC-BY-4.0"}},
    ]
    (package / "data" / "simple-icons.json").write_text(json.dumps(entries))
    for slug in ("plain", "waived", "copyleft", "attribution"):
        svg = '<svg role="img" viewBox="0 0 24 24" xmlns="http://www.w3.org/2000/svg"><path d="M2 2h20v20H2z"/></svg>'
        (package / "icons" / f"{slug}.svg").write_text(svg)
    brands, skipped = load_marks(tmp_path, source="simple-icons")
    assert [brand.title for brand in brands] == ["Plain", "Waived"]
    assert skipped == Counter({"licence GPL-3.0-only": 1, "licence CC-BY-4.0": 1})
    assert 'fill="#FF0000"' in brands[0].designs[0].svg


def svg_design(name: str, shape: str, colour: str) -> Design:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><{shape} fill="{colour}"/></svg>'
    return Design("test", name, "test@1", "CC0-1.0", svg)


def test_designs_become_numbered_folders_and_look_alikes_merge(tmp_path):
    circle, triangle = 'circle cx="50" cy="50" r="45"', 'path d="M50 5L95 95H5z"'
    brand = Brand(
        "cafe-co",
        "Café & Co",
        (
            svg_design("round", circle, "red"),
            svg_design("pointy", triangle, "red"),
            svg_design("blue", circle, "blue"),
        ),
    )
    others = [Brand(f"other{i}", f"Other {i}", (svg_design(f"other{i}", circle, "green"),)) for i in range(3)]
    skipped = Counter()
    plans, distractors = plan_designs([brand, *others], 4, 5, seed=0, cache_dir=tmp_path, skipped=skipped)
    mine = [plan for plan in plans if plan.brand == "cafe-co"]
    assert [(plan.folder, plan.name, plan.num_images) for plan in mine] == [
        ("Café & Co", "round", 3),
        ("Café & Co-1", "pointy", 2),
    ]
    assert skipped["duplicate design"] == 1  # the blue circle is the red circle recoloured
    assert len({plan.category for plan in mine}) == 1 and distractors == []


def test_unrenderable_designs_are_skipped_and_counted(tmp_path):
    broken = Design("test", "broken", "test@1", "CC0-1.0", "<svg>not closed")
    empty = svg_design("empty", 'rect width="0" height="0"', "red")
    good = svg_design("good", 'circle cx="50" cy="50" r="45"', "red")
    brands = [Brand("a", "A", (broken,)), Brand("b", "B", (empty, good))]
    skipped = Counter()
    plans, _ = plan_designs(brands, 1, 2, seed=0, cache_dir=tmp_path, skipped=skipped)
    assert [plan.folder for plan in plans] == ["B"]
    assert skipped["brand without a renderable design"] == 1
    assert sum(n for reason, n in skipped.items() if reason.startswith("render failed")) == 2


def test_failed_npm_fetch_says_what_to_run(tmp_path):
    missing = NpmPackage("simple-icons@0.0.0-missing", "simple-icons-0.0.0-missing.tgz", "0" * 40)
    with pytest.raises(MarkSourceError, match=r"npm pack simple-icons@0\.0\.0-missing"):
        fetch_package(missing, tmp_path)


def test_without_npm_the_tarball_comes_from_the_registry_and_is_checked(tmp_path, monkeypatch):
    """Where npm is missing (a Space), the pinned tarball is downloaded from the registry; its sha1 is still checked."""
    import shutil
    import urllib.request

    from dataset_scripts.logo_sources import ICONIFY_LOGOS, default_cache_dir

    tarball = fetch_package(ICONIFY_LOGOS, default_cache_dir()).parent.parent / ICONIFY_LOGOS.tarball
    requested = []

    class Response:
        def __init__(self, url, timeout):
            requested.append(url)

        def read(self):
            return tarball.read_bytes()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(urllib.request, "urlopen", Response)
    package = fetch_package(ICONIFY_LOGOS, tmp_path / "fresh")
    assert requested == ["https://registry.npmjs.org/@iconify-json/logos/-/logos-1.2.19.tgz"]
    assert (package / "package.json").is_file()
    corrupt = NpmPackage(ICONIFY_LOGOS.spec, ICONIFY_LOGOS.tarball, "0" * 40)
    with pytest.raises(MarkSourceError, match="sha1"):
        fetch_package(corrupt, tmp_path / "other")


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--brands", "2", "--images-per-brand", "2", "--image-size", "96", "--workers", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "dataset_scripts.synthesize", *args, "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote 4 images" in result.stdout and "images/s" in result.stdout
    assert len(list(out.glob("*/*/*.jpg"))) == 4

    # A second run into the same folder stops with a message, not a traceback (in-process: imports are slow).
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1 and "--overwrite" in capsys.readouterr().err


def test_the_builder_reads_the_generated_set(small_set, tmp_path):
    from dataset_scripts import LogoDet3K, load_logodet3k

    root, summary = small_set
    out = root / "two-workers"
    # a handful of brands: exact fractions ("brands"), since the default "hash" split may leave one empty
    options = {"cache_dir": tmp_path / "cache", "few_shot_k": 1, "split_scheme": "brands"}
    builder_splits = load_logodet3k(out, "detection", **options)
    brands = builder_splits["train"].features["brand"].names
    assert len(brands) == summary.brands  # Brand-1 folders merged into their brand
    assert sum(len(split) for split in builder_splits.values()) == summary.images  # nothing skipped
    labelled = unknown = 0
    for split in builder_splits.values():
        for row in split:
            folder = Path(row["source"]).parent
            _, objects = read_voc(out / folder / Path(row["source"]).with_suffix(".xml").name)
            assert [tuple(obj["bbox"]) for obj in row["objects"]] == [box for _, box in objects]
            # a distractor is a logo of no brand: ClassLabel's "no label"
            assert [obj["brand"] == -1 for obj in row["objects"]] == [name == UNKNOWN_LOGO for name, _ in objects]
            labelled += sum(obj["brand"] >= 0 for obj in row["objects"])
            unknown += sum(obj["brand"] == -1 for obj in row["objects"])
    assert labelled == summary.objects and unknown > 0
    crops = load_logodet3k(out, "crops", **options)
    assert sum(len(split) for split in crops.values()) <= summary.objects  # no crop of an unknown logo
    builder = LogoDet3K(data_dir=str(out), config_name="crops", **{**options, "cache_dir": str(tmp_path / "cache")})
    builder.download_and_prepare()
    assert sum(counts.get("unknown_logo", 0) for counts in builder.skipped.values()) == unknown
    split_brands = [set(split["brand"]) for split in builder_splits.values()]
    assert not split_brands[0] & split_brands[1] and not split_brands[0] & split_brands[2]
