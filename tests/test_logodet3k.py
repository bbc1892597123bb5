"""The LogoDet-3K builder on a fixture tree with the real data set's quirks, built here."""

import io
import json
import shutil
from collections import Counter
from pathlib import Path
from xml.etree.ElementTree import ParseError

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_scripts import CATEGORIES, LogoDet3K, load_logodet3k
from dataset_scripts.logodet3k import (
    brand_and_design,
    export_parquet,
    hash_split_brands,
    scan_data_dir,
    split_brands,
)
from dataset_scripts.voc import parse_voc
from modeling_logo.detection import CROP_MARGIN, crop_box


BOX = (10, 8, 50, 40)  # where every fixture image has its logo rectangle
COLOUR = {"default": (200, 30, 30), "second": (30, 30, 200)}


def image(stem, objects=None, kind="ok", size=(80, 60)):
    """One fixture image: `objects` are (VOC name, box) pairs; `kind` makes it broken in one way."""
    return {"stem": stem, "objects": objects, "kind": kind, "size": size}


# (category, folder) -> images. Expected outcomes are spelled out in the tests below.
TREE = {
    ("Food", "McDonald's"): [
        image(1),
        image(2),
        image(3),
        image(4, objects=[("McDonald's", BOX), ("Ben & Jerry's", (55, 10, 75, 30))]),
    ],
    ("Food", "McDonald's-1"): [image(1)],  # another design of McDonald's
    ("Food", "Ben & Jerry's"): [image(1), image(2), image(3, kind="truncated")],
    ("Food", "Café Noir"): [image(1), image(2, kind="cp1252")],
    ("Food", "Pão de Açúcar"): [image(1), image(2)],
    ("Clothes", "Adidas"): [
        image(1, objects=[("Adidas Originals", BOX)]),  # XML name differs from the folder: the folder wins
        image(2),
        image(3, kind="no_xml"),
        image(4, objects=[]),  # an empty annotation
    ],
    ("Clothes", "Nike"): [
        image(1),
        image(2, kind="malformed_xml"),
        image(3, objects=[("Nike", (100, 100, 120, 120))]),  # its only box is outside the image
    ],
    ("Clothes", "Lacoste"): [image(1), image(2, objects=[("Lacoste", BOX), ("Lacoste", (20, 20, 20, 30))])],
    ("Clothes", "H&M"): [image(1, kind="raw_ampersand"), image(2, kind="raw_ampersand")],  # every file: raw `&`
    ("Electronic", "7-11"): [image(1), image(2, kind="no_size")],  # not a design of a brand "7"
    ("Electronic", "A.B.C. Corp."): [image(1), image(2, kind="text_as_jpg"), image(3, size=(300, 300))],
    ("Electronic", "Sony"): [image(1, kind="bom_crlf"), image(2), image(9, kind="orphan_xml")],
    ("Electronic", "東芝"): [image(1, kind="double_bom"), image(2)],
}
EXTRA_FILES = {("Electronic", "Sony"): ["notes.txt", ".DS_Store"]}

# Boxes labelled with the folder's own brand that survive validation.
OWN_CROPS = {
    "McDonald's": 5,
    "Ben & Jerry's": 2,
    "Café Noir": 2,
    "Pão de Açúcar": 2,
    "Adidas": 2,
    "Nike": 1,
    "Lacoste": 2,
    "H&M": 2,
    "7-11": 2,
    "A.B.C. Corp.": 1,
    "Sony": 2,
    "東芝": 2,
}
# Whole images (the `images` config) that survive validation.
GOOD_IMAGES = {**OWN_CROPS, "McDonald's": 5}
# Skips while generating, by the folder brand whose file caused them.
GENERATION_SKIPS = {
    "Ben & Jerry's": {"unreadable_image": 1},
    "Adidas": {"no_objects": 1},
    "Nike": {"malformed_xml": 1, "invalid_box": 1, "no_valid_boxes": 1},
    "Lacoste": {"invalid_box": 1},
    "A.B.C. Corp.": {"unreadable_image": 1, "too_large": 1},
}
SCAN_SKIPS = {"missing_xml": 1, "missing_image": 1, "not_an_image_file": 1}
# VOC files as other tools write them, read after a repair (a BOM with Windows line ends needs none).
REPAIRS = {"raw_ampersand": 2, "not_utf8": 1, "missing_size": 1, "text_before_xml": 1}
MAX_PIXELS = 200 * 200  # so that the 300×300 image counts as too large


def voc(folder, size, objects, escape=True, with_size=True):
    text = (lambda value: value.replace("&", "&amp;")) if escape else str
    boxes = "".join(
        f"<object><name>{text(name)}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    size_element = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation><folder>{text(folder)}</folder>{size_element if with_size else ''}{boxes}</annotation>"


def voc_bytes(folder, size, objects, kind="ok") -> bytes:
    """A VOC file as `kind` of tool writes it: most well-formed, some as annotation tools and editors leave them."""
    if kind == "raw_ampersand":  # hand-written, or tools that do not escape
        return voc(folder, size, objects, escape=False).encode()
    if kind == "no_size":
        return voc(folder, size, objects, with_size=False).encode()
    if kind == "bom_crlf":  # Windows editors: a byte-order mark, a declaration and CRLF line ends
        declared = "<?xml version='1.0' encoding='utf-8'?>\n" + voc(folder, size, objects).replace("><", ">\n<")
        return b"\xef\xbb\xbf" + declared.replace("\n", "\r\n").encode()
    if kind == "double_bom":  # a mark added on every save, and a blank line before the declaration
        return b"\xef\xbb\xbf\xef\xbb\xbf\r\n<?xml version='1.0'?>" + voc(folder, size, objects).encode()
    if kind == "cp1252":  # declared UTF-8, written in Windows-1252
        return ("<?xml version='1.0' encoding='utf-8'?>" + voc(folder, size, objects)).encode("cp1252")
    return voc(folder, size, objects).encode()


def write_tree(root: Path) -> Path:
    for (category, folder), images in TREE.items():
        directory = root / category / folder
        directory.mkdir(parents=True)
        for spec in images:
            stem, kind, size = spec["stem"], spec["kind"], spec["size"]
            objects = spec["objects"] if spec["objects"] is not None else [(folder, BOX)]
            picture = Image.new("RGB", size, (240, 240, 240))
            for number, (_, box) in enumerate(objects):
                colour = COLOUR["default"] if number == 0 else COLOUR["second"]
                if box[2] > box[0] and box[3] > box[1]:
                    picture.paste(colour, box)
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=95)
            data = buffer.getvalue()
            if kind == "truncated":
                data = data[: len(data) // 2]
            elif kind == "text_as_jpg":
                data = b"this is not a JPEG"
            if kind != "orphan_xml":
                (directory / f"{stem}.jpg").write_bytes(data)
            if kind == "malformed_xml":
                (directory / f"{stem}.xml").write_text("<annotation><object><name>Nike</name>", encoding="utf-8")
            elif kind != "no_xml":
                (directory / f"{stem}.xml").write_bytes(voc_bytes(folder, size, objects, kind))
    for (category, folder), names in EXTRA_FILES.items():
        for name in names:
            (root / category / folder / name).write_text("clutter")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("LogoDet-3K"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hf-datasets-cache")


def prepare(data_dir, cache_dir, config, **kwargs):
    builder = LogoDet3K(
        data_dir=str(data_dir),
        config_name=config,
        cache_dir=str(cache_dir),
        max_image_pixels=MAX_PIXELS,
        few_shot_k=2,
        # exact fractions unless a test asks otherwise: the default "hash" split can leave a split of 12 brands empty
        **{"split_scheme": "brands", **kwargs},
    )
    builder.download_and_prepare()
    return builder, builder.as_dataset()


def brand_split(data_dir, seed=0):
    return split_brands(scan_data_dir(data_dir).brand_categories, 0.8, 0.1, seed)


def test_design_folders_merge_only_beside_their_brand():
    assert brand_and_design("Brand-2", {"Brand", "Brand-2"}) == ("Brand", 2)
    assert brand_and_design("Brand-2", {"Brand-1", "Brand-2"}) == ("Brand", 2)
    assert brand_and_design("7-11", {"7-11", "Sony"}) == ("7-11", 0)
    assert brand_and_design("Coca-Cola", {"Coca-Cola"}) == ("Coca-Cola", 0)


def test_brands_and_categories_with_odd_names_round_trip(data_dir, cache_dir):
    _, splits = prepare(data_dir, cache_dir, "crops")
    features = splits["train"].features
    assert features["brand"].names == sorted(OWN_CROPS)
    assert features["category"].names == ["Clothes", "Electronic", "Food"]
    assert set(features["category"].names) <= set(CATEGORIES)
    everything = [row for split in splits.values() for row in split.select_columns(["brand", "design", "source"])]
    names = {features["brand"].int2str(row["brand"]) for row in everything}
    assert {"Ben & Jerry's", "Pão de Açúcar", "東芝", "A.B.C. Corp.", "7-11"} <= names
    designs = {row["source"]: row["design"] for row in everything}
    assert designs["Food/McDonald's-1/1.jpg"] == 1 and designs["Food/McDonald's/1.jpg"] == 0


def test_splits_are_brand_disjoint_stratified_and_seeded(data_dir):
    assignment = brand_split(data_dir)
    assert Counter(assignment.values()) == {"train": 6, "validation": 3, "test": 3}
    categories = scan_data_dir(data_dir).brand_categories
    for split in ("train", "validation", "test"):
        assert {categories[b] for b, s in assignment.items() if s == split} == {"Food", "Clothes", "Electronic"}
    assert brand_split(data_dir, seed=0) == assignment
    assert any(brand_split(data_dir, seed=seed) != assignment for seed in range(1, 6))


def test_crops_config_counts_per_split_and_per_skip_reason(data_dir, cache_dir):
    builder, splits = prepare(data_dir, cache_dir, "crops")
    assignment = brand_split(data_dir)
    # McDonald's image 4 also shows Ben & Jerry's: that crop exists only if both brands share a split.
    shared = assignment["McDonald's"] == assignment["Ben & Jerry's"]
    for split in ("train", "validation", "test"):
        expected = sum(count for brand, count in OWN_CROPS.items() if assignment[brand] == split)
        expected += int(shared and assignment["McDonald's"] == split)
        assert splits[split].num_rows == expected, split
        brand_names = set(splits[split].features["brand"].int2str(splits[split]["brand"]))
        assert brand_names == {brand for brand, s in assignment.items() if s == split}  # unseen means unseen

        expected_skips = Counter()
        for brand, skips in GENERATION_SKIPS.items():
            if assignment[brand] == split:
                expected_skips.update(skips)
        if not shared and assignment["McDonald's"] == split:
            expected_skips["box_of_other_split"] += 1
        assert builder.skipped[split] == expected_skips, split
    assert builder.skipped["scan"] == SCAN_SKIPS
    assert sum(builder.repaired.values(), Counter()) == REPAIRS


def test_crops_match_their_boxes(data_dir, cache_dir):
    _, splits = prepare(data_dir, cache_dir, "crops")
    row = next(row for split in splits.values() for row in split if row["source"] == "Food/Café Noir/1.jpg")
    assert row["bbox"] == list(map(float, BOX))
    crop = row["image"]
    width, height = BOX[2] - BOX[0], BOX[3] - BOX[1]
    assert crop.size == (round(width * 1.2), round(height * 1.2))  # 10% context on each side
    centre = np.asarray(crop)[crop.height // 2, crop.width // 2]
    assert np.abs(centre.astype(int) - COLOUR["default"]).max() < 12
    assert np.asarray(crop)[0, 0].min() > 200  # the margin shows the background


def test_images_config_keeps_whole_images_and_records_other_brands(data_dir, cache_dir):
    _, splits = prepare(data_dir, cache_dir, "images")
    assignment = brand_split(data_dir)
    for split in ("train", "validation", "test"):
        expected = sum(count for brand, count in GOOD_IMAGES.items() if assignment[brand] == split)
        assert splits[split].num_rows == expected
    rows = {row["source"]: row for split in splits.values() for row in split}
    multi = rows["Food/McDonald's/4.jpg"]
    assert multi["other_brands"] == ["Ben & Jerry's"] and multi["bbox"] == [list(map(float, BOX))]
    assert multi["image"].size == (80, 60)
    assert rows["Clothes/Adidas/1.jpg"]["other_brands"] == []  # a mismatched name is not another brand
    eligible = {row["source"].split("/")[1]: row["few_shot_eligible"] for row in rows.values()}
    assert eligible["McDonald's"] and eligible["Ben & Jerry's"] and not eligible["Café Noir"]


def test_detection_config_lists_every_valid_box(data_dir, cache_dir):
    _, splits = prepare(data_dir, cache_dir, "detection")
    rows = {row["source"]: row for split in splits.values() for row in split}
    names = splits["train"].features["objects"].feature["brand"].names
    multi = rows["Food/McDonald's/4.jpg"]["objects"]
    assert [names[obj["brand"]] for obj in multi] == ["McDonald's", "Ben & Jerry's"]
    assert multi[0]["bbox"] == list(map(float, BOX))
    assert len(rows["Clothes/Lacoste/2.jpg"]["objects"]) == 1  # the zero-area box is dropped


def test_hash_split_agrees_across_data_sets_of_any_size():
    """A brand's split depends on its name alone, so a large generated set never trains on a small set's test brands."""
    everything = [f"Brand {i}" for i in range(4000)]
    large = hash_split_brands(everything, 0.8, 0.1, seed=0)
    small = hash_split_brands(everything[::13], 0.8, 0.1, seed=0)
    assert all(large[brand] == split for brand, split in small.items())
    shares = Counter(large.values())
    assert abs(shares["train"] / 4000 - 0.8) < 0.03 and abs(shares["test"] / 4000 - 0.1) < 0.02
    case_blind = [hash_split_brands([name], 0.8, 0.1, seed=0)[name] for name in ("Café Z", "CAFÉ Z")]
    assert case_blind[0] == case_blind[1]
    assert hash_split_brands(everything, 0.8, 0.1, seed=1) != large


def test_hash_scheme_splits_the_builder_by_brand(data_dir, cache_dir):
    with pytest.raises(ValueError, match="left \\['test'\\] empty"):
        prepare(data_dir, cache_dir, "crops", split_scheme="hash")  # 12 brands: no test brand by chance
    _, splits = prepare(
        data_dir, cache_dir, "crops", split_scheme="hash", train_fraction=0.5, validation_fraction=0.25
    )
    names = splits["train"].features["brand"].names
    brands = {split: {names[b] for b in splits[split]["brand"]} for split in splits}
    assert not brands["train"] & brands["validation"] and not brands["train"] & brands["test"]
    expected = hash_split_brands(sorted(set().union(*brands.values())), 0.5, 0.25, seed=0)
    assert all(expected[brand] == split for split, names_ in brands.items() for brand in names_)


def test_paper_split_holds_out_ten_percent_of_brands(data_dir, cache_dir):
    _, splits = prepare(data_dir, cache_dir, "images", split_scheme="paper")
    names = splits["test"].features["brand"].names
    test_brands = {names[b] for b in splits["test"]["brand"]}
    seen = {names[b] for split in ("train", "validation") for b in splits[split]["brand"]}
    assert len(test_brands) == 1 and not test_brands & seen  # round(0.1 × 12 brands)
    assert splits["train"].num_rows == round(0.8 * (splits["train"].num_rows + splits["validation"].num_rows))


def test_all_test_scheme_makes_every_brand_a_test_brand(data_dir, cache_dir):
    builder, splits = prepare(data_dir, cache_dir, "crops", split_scheme="all-test")
    assert list(splits) == ["test"]
    names = splits["test"].features["brand"].names
    assert {names[b] for b in splits["test"]["brand"]} == set(OWN_CROPS)
    assert splits["test"].num_rows == sum(OWN_CROPS.values()) + 1  # and the Ben & Jerry's logo of a McDonald's photo
    assert builder.skipped["test"] == sum((Counter(skips) for skips in GENERATION_SKIPS.values()), Counter())


def test_rerun_hits_the_cache_and_keeps_the_skip_report(data_dir, cache_dir, monkeypatch):
    first, _ = prepare(data_dir, cache_dir, "crops")
    monkeypatch.setattr(LogoDet3K, "_generate_examples", lambda *args, **kwargs: pytest.fail("regenerated"))
    again, splits = prepare(data_dir, cache_dir, "crops")
    assert again.skipped == first.skipped and again.repaired == first.repaired
    assert again.skipped_files == first.skipped_files
    assert splits["train"].cache_files and Path(splits["train"].cache_files[0]["filename"]).is_file()


def test_load_logodet3k_one_liner(data_dir, cache_dir):
    splits = load_logodet3k(
        data_dir, "crops", cache_dir=cache_dir, max_image_pixels=MAX_PIXELS, few_shot_k=2, split_scheme="brands"
    )
    assert set(splits) == {"train", "validation", "test"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_logodet3k(data_dir / "missing", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="split_scheme"):
        load_logodet3k(data_dir, split_scheme="random", cache_dir=cache_dir)


def test_parquet_export_is_portable(tmp_path):
    source = write_tree(tmp_path / "source")
    _, splits = prepare(source, tmp_path / "cache", "images")
    exported = export_parquet(splits, tmp_path / "export", config_name="images")
    first_test_image = splits["test"][0]["image"]
    shutil.rmtree(source)  # the export must not point at the original files
    shutil.rmtree(tmp_path / "cache")

    reloaded = datasets.load_dataset(str(exported), cache_dir=str(tmp_path / "reload-cache"))
    assert {split: len(ds) for split, ds in reloaded.items()} == {split: len(ds) for split, ds in splits.items()}
    assert reloaded["train"].features["brand"].names == splits["train"].features["brand"].names
    assert np.array_equal(np.asarray(reloaded["test"][0]["image"]), np.asarray(first_test_image))
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert "config_name: images" in card and "Pão de Açúcar" in card


def test_crops_can_be_stored_shrunk_for_fast_loading(data_dir, cache_dir):
    options = {"cache_dir": cache_dir, "max_image_pixels": MAX_PIXELS, "split_scheme": "brands"}
    full = load_logodet3k(data_dir, "crops", **options)
    small = load_logodet3k(data_dir, "crops", **options, crop_max_size=24)
    for split in ("train", "validation", "test"):
        assert small[split]["bbox"] == full[split]["bbox"]  # the same examples, only smaller pixels
        for big, shrunk in zip(full[split]["image"], small[split]["image"]):
            if max(big.size) <= 24:
                assert shrunk.size == big.size
            else:
                assert max(shrunk.size) == 24
                assert abs(shrunk.width / shrunk.height - big.width / big.height) < 0.15  # aspect ratio kept
    with pytest.raises(ValueError, match="crop_max_size"):
        load_logodet3k(data_dir, "crops", cache_dir=cache_dir, crop_max_size=4, split_scheme="brands")


def test_crops_say_where_their_box_lies_so_that_it_can_be_cropped_again(data_dir, cache_dir):
    """`crop_bbox` is the box in the stored crop's pixels (what box-jittered training crops from): cropping a crop
    with more context at it gives the usual crop, also where the context was clipped and where the crop was shrunk."""
    options = {"cache_dir": cache_dir, "max_image_pixels": MAX_PIXELS, "split_scheme": "brands"}
    usual = load_logodet3k(data_dir, "crops", **options)
    wide = load_logodet3k(data_dir, "crops", **options, crop_margin=0.5)
    shrunk = load_logodet3k(data_dir, "crops", **options, crop_margin=0.5, crop_max_size=24)
    compared = 0
    for split in ("train", "validation", "test"):
        assert wide[split]["bbox"] == usual[split]["bbox"] and wide[split]["source"] == usual[split]["source"]
        for plain, context, small in zip(usual[split], wide[split], shrunk[split]):
            again = crop_box(context["image"], context["crop_bbox"], CROP_MARGIN)
            assert abs(again.width - plain["image"].width) <= 1 and abs(again.height - plain["image"].height) <= 1
            difference = np.abs(
                np.asarray(again.resize(plain["image"].size), np.int16) - np.asarray(plain["image"], np.int16)
            )
            assert difference.mean() < 8, plain["source"]
            scale = small["image"].width / context["image"].width
            np.testing.assert_allclose(small["crop_bbox"], np.asarray(context["crop_bbox"]) * scale, atol=1.0)
            compared += 1
    assert compared == sum(len(split) for split in usual.values()) > 10
    row = next(row for split in wide.values() for row in split if row["source"] == "Food/Café Noir/1.jpg")
    assert row["crop_bbox"] == list(map(float, BOX))  # the context is clipped at the image's left and top
    assert row["image"].size == (BOX[2] + 20, BOX[3] + 16)  # half the box's 40 x 32 on the right and below
    row = next(row for split in usual.values() for row in split if row["source"] == "Food/Café Noir/1.jpg")
    assert row["crop_bbox"] == [4.0, 3.0, 44.0, 35.0]  # the crop starts at (round(10 - 4), round(8 - 3.2))


def test_voc_files_other_tools_write_are_repaired_and_only_unreadable_ones_skipped_and_listed(data_dir, cache_dir):
    builder, splits = prepare(data_dir, cache_dir, "detection")
    rows = {row["source"]: row for split in splits.values() for row in split}
    names = splits["train"].features["objects"].feature["brand"].names
    # H&M, every file of which carries a raw `&`, is in the data set, its boxes named by the folder's brand
    assert {"Clothes/H&M/1.jpg", "Clothes/H&M/2.jpg"} <= set(rows)
    assert [names[obj["brand"]] for obj in rows["Clothes/H&M/1.jpg"]["objects"]] == ["H&M"]
    assert rows["Electronic/7-11/2.jpg"]["objects"][0]["bbox"] == list(map(float, BOX))  # no <size>: image's own
    assert {"Food/Café Noir/2.jpg", "Electronic/Sony/1.jpg", "Electronic/東芝/1.jpg"} <= set(rows)
    assert sum(builder.repaired.values(), Counter()) == REPAIRS
    assert {reason: sorted(files) for reason, files in builder.skipped_files.items()} == {
        "missing_xml": ["Clothes/Adidas/3.jpg"],
        "missing_image": ["Electronic/Sony/9.xml"],
        "not_an_image_file": ["Electronic/Sony/notes.txt"],
        "malformed_xml": ["Clothes/Nike/2.xml"],
        "no_objects": ["Clothes/Adidas/4.xml"],
        "no_valid_boxes": ["Clothes/Nike/3.jpg"],
        "unreadable_image": ["Electronic/A.B.C. Corp./2.jpg", "Food/Ben & Jerry's/3.jpg"],
        "too_large": ["Electronic/A.B.C. Corp./3.jpg"],
    }
    report = json.loads((Path(builder.cache_dir) / "skipped.json").read_text(encoding="utf-8"))
    assert report["skipped_files"]["malformed_xml"] == ["Clothes/Nike/2.xml"]
    assert sum((Counter(counts) for counts in report["repaired"].values()), Counter()) == REPAIRS


@pytest.mark.parametrize(
    ("data", "name", "repairs"),
    [
        (
            b"<annotation><object><name>Ben & Jerry's</name>{box}</object></annotation>",
            "Ben & Jerry's",
            ("raw_ampersand",),
        ),
        (
            b"<annotation><object><name>Caf&eacute; &amp; Co</name>{box}</object></annotation>",
            "Caf\u00e9 & Co",
            ("html_entity",),
        ),
        (
            b"\xef\xbb\xbf<?xml version='1.0'?>\r\n<annotation>\r\n<object><name>Nike</name>{box}</object></annotation>",
            "Nike",
            (),
        ),
        (
            b"  \n<?xml version='1.0'?><annotation><object><name>Nike</name>{box}</object></annotation>",
            "Nike",
            ("text_before_xml",),
        ),
        (b"<annotation><object><name>A<B</name>{box}</object></annotation>", "A", ("recovered_xml",)),
        (b"<annotation><object><name>Nike</name>{box}</object>", "Nike", ("recovered_xml",)),  # cut off
    ],
    ids=["raw-ampersand", "html-entity", "bom-crlf", "text-before-xml", "stray-lt", "cut-off"],
)
def test_parse_voc_repairs_and_says_what_it_repaired(tmp_path, data, name, repairs):
    box = b"<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox>"
    size = b"<size><width>8</width><height>6</height></size>"
    (tmp_path / "a.xml").write_bytes(data.replace(b"{box}", box).replace(b"<object>", size + b"<object>", 1))
    annotation = parse_voc(tmp_path / "a.xml")
    assert annotation.objects == [(name, (1.0, 2.0, 3.0, 4.0))] and annotation.size == (8, 6)
    assert annotation.repairs == repairs
    (tmp_path / "b.xml").write_bytes(b"GIF89a not xml at all")
    with pytest.raises(ParseError, match="not a VOC annotation"):
        parse_voc(tmp_path / "b.xml")


def test_select_brands_keeps_the_named_brands_of_another_set(data_dir, cache_dir, tmp_path):
    from dataset_scripts import brand_names, select_brands

    _, splits = prepare(data_dir, cache_dir, "crops")
    other = write_tree(tmp_path / "same-brands-elsewhere")
    _, everything = prepare(other, cache_dir, "crops", split_scheme="all-test")
    wanted = brand_names(splits["validation"])
    selected = select_brands(everything["test"], [name.upper() for name in wanted])  # names match case-folded
    assert wanted and brand_names(selected) == wanted
    assert len(selected) == len(splits["validation"])
