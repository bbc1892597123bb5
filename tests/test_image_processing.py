import base64
import gzip
import io

import numpy as np
import pytest
import resvg_py
import torch
from PIL import Image

from modeling_logo import InvalidImageError, LogoImageProcessor, open_image, to_rgb


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def pixels_to_rgb(pixel_values: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: 0..255 values, (3, H, W)."""
    return (pixel_values * STD + MEAN) * 255


def centre_rgb(processor, image) -> list[int]:
    pixel_values = processor(image, return_tensors="pt").pixel_values[0]
    return [round(v) for v in pixels_to_rgb(pixel_values)[:, 32, 32].tolist()]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("RGBA", (80, 60), (255, 0, 0, 0)), [255, 255, 255]),  # transparent -> white background
        (Image.new("RGBA", (80, 60), (255, 0, 0, 255)), [255, 0, 0]),
        (Image.new("LA", (80, 60), (0, 0)), [255, 255, 255]),
        (Image.new("L", (80, 60), 100), [100, 100, 100]),
        (Image.new("1", (80, 60), 1), [255, 255, 255]),
        (Image.new("CMYK", (80, 60), (0, 255, 255, 0)), [255, 0, 0]),
        (Image.fromarray(np.full((60, 80), 32896, dtype=np.uint16)), [128, 128, 128]),  # I;16 scaled, not clipped
        (Image.fromarray(np.full((60, 80), 65535, dtype=np.int32)), [255, 255, 255]),  # 32-bit "I"
        (Image.fromarray(np.full((60, 80), 0.5, dtype=np.float32)), [128, 128, 128]),  # "F" in [0, 1]
    ],
    ids=["RGBA-transparent", "RGBA-opaque", "LA", "L", "1", "CMYK", "I;16", "I", "F"],
)
def test_every_image_mode_becomes_rgb(processor, image, expected):
    assert centre_rgb(processor, image) == pytest.approx(expected, abs=1)


def test_palette_images_with_and_without_transparency(processor):
    palette = Image.new("P", (80, 60), 1)
    palette.putpalette([0, 0, 0, 0, 128, 255] + [0] * 762)
    assert centre_rgb(processor, palette) == [0, 128, 255]
    palette.info["transparency"] = 1
    assert centre_rgb(processor, palette) == [255, 255, 255]


def test_sixteen_bit_png_from_disk_keeps_its_contrast(tmp_path, processor):
    gradient = np.tile(np.linspace(0, 65535, 80).astype(np.uint16), (60, 1))
    Image.fromarray(gradient).save(tmp_path / "deep.png")
    pixels = pixels_to_rgb(processor(tmp_path / "deep.png", return_tensors="pt").pixel_values[0])
    assert pixels[0, 32, 0] < 10 and pixels[0, 32, -1] > 245


def half_red_half_blue(width=40, height=20) -> Image.Image:
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


def test_exif_orientation_is_applied(tmp_path, processor):
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was rotated: display the image rotated 90 degrees clockwise
    half_red_half_blue().save(tmp_path / "phone.png", exif=exif)

    upright = to_rgb(Image.open(tmp_path / "phone.png"))
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 5)) == (255, 0, 0) and upright.getpixel((10, 35)) == (0, 0, 255)

    expected = processor(half_red_half_blue().rotate(-90, expand=True), return_tensors="pt").pixel_values
    torch.testing.assert_close(processor(tmp_path / "phone.png", return_tensors="pt").pixel_values, expected)


def test_paths_bytes_arrays_and_tensors_give_the_same_pixels(tmp_path, processor):
    image = half_red_half_blue(96, 72)
    image.save(tmp_path / "logo.png")
    reference = processor(image, return_tensors="pt").pixel_values
    array = np.array(image)
    for same in (
        str(tmp_path / "logo.png"),
        tmp_path / "logo.png",
        (tmp_path / "logo.png").read_bytes(),
        array,
        torch.from_numpy(array).permute(2, 0, 1),
    ):
        torch.testing.assert_close(processor(same, return_tensors="pt").pixel_values, reference)


def test_batch_output_shape_and_normalisation(processor):
    white, black = Image.new("RGB", (30, 90), "white"), Image.new("RGB", (200, 40), "black")
    pixel_values = processor([white, black], return_tensors="pt").pixel_values
    assert pixel_values.shape == (2, 3, 64, 64)
    torch.testing.assert_close(pixel_values[0, :, 0, 0], ((1 - MEAN) / STD).flatten())
    torch.testing.assert_close(pixel_values[1, :, 0, 0], (-MEAN / STD).flatten())


def test_the_whole_logo_is_kept_by_default_and_centre_crop_is_optional(processor):
    wide = half_red_half_blue(300, 60)
    squashed = pixels_to_rgb(processor(wide, return_tensors="pt").pixel_values[0])
    assert squashed[0, 32, 2] > 250 and squashed[2, 32, -3] > 250  # both halves survive
    cropping = LogoImageProcessor(size={"shortest_edge": 64}, do_center_crop=True, crop_size=32)
    assert cropping(wide, return_tensors="pt").pixel_values.shape == (1, 3, 32, 32)


def test_not_an_image_is_a_clear_error(tmp_path, processor):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InvalidImageError, match=r"notes.txt.*not a readable image"):
        processor(tmp_path / "notes.txt")
    with pytest.raises(InvalidImageError, match="not a readable image"):
        processor(b"\x00\x01garbage")
    with pytest.raises(FileNotFoundError):
        processor(tmp_path / "missing.png")


def test_truncated_jpeg_is_a_clear_error(tmp_path, processor):
    buffer = io.BytesIO()
    half_red_half_blue(200, 200).save(buffer, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InvalidImageError, match="truncated.jpg"):
        processor(tmp_path / "truncated.jpg")


def test_from_model_config_and_save_load_round_trip(tmp_path, tiny_config):
    processor = LogoImageProcessor.from_model_config(tiny_config, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    assert (processor.size.height, processor.size.width) == (64, 64)
    processor.save_pretrained(tmp_path)
    reloaded = LogoImageProcessor.from_pretrained(tmp_path)
    image = half_red_half_blue()
    torch.testing.assert_close(
        reloaded(image, return_tensors="pt").pixel_values, processor(image, return_tensors="pt").pixel_values
    )
    assert reloaded(Image.new("RGB", (8, 8), "white"), return_tensors="pt").pixel_values[0, 0, 0, 0] == pytest.approx(
        2.0
    )


def test_augmentations_depend_only_on_seed_epoch_and_index(processor):
    import datasets

    from dataset_scripts.transforms import AugmentedDataset, build_train_transform

    from .conftest import make_logo_images

    rows = datasets.Dataset.from_dict({"image": make_logo_images(3), "brand": [0, 1, 2]})
    rows = rows.cast_column("image", datasets.Image())
    augmented = AugmentedDataset(rows, build_train_transform(processor), seed=5)
    first = [augmented[i]["pixel_values"] for i in range(3)]
    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    again = [augmented[i]["pixel_values"] for i in (2, 0, 1)]  # any order, any global random state
    assert torch.equal(torch.rand(4), expected_next)  # the caller's random stream is left untouched
    assert all(torch.equal(a, b) for a, b in zip(first, [again[1], again[2], again[0]]))
    augmented.set_epoch(1)
    assert not torch.equal(augmented[0]["pixel_values"], first[0])  # a new epoch draws new augmentations


# A two-colour mark, twice as wide as tall: as a brand's designer would export it.
MARK_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 100">'
    '<rect x="10" y="10" width="80" height="80" fill="#d01010"/><circle cx="150" cy="50" r="40" fill="#1030c0"/>'
    "</svg>"
)


def test_svg_files_and_bytes_render_on_white_keeping_their_aspect_ratio(tmp_path, processor):
    (tmp_path / "mark.svg").write_text(MARK_SVG)
    rendered = open_image(tmp_path / "mark.svg", svg_size=200)
    assert rendered.mode == "RGB" and rendered.size == (200, 100)
    assert rendered.getpixel((0, 0)) == (255, 255, 255)  # transparent canvas -> white
    assert rendered.getpixel((50, 50)) == (208, 16, 16) and rendered.getpixel((150, 50)) == (16, 48, 192)
    # recognised by content too: bytes, a BOM and an XML declaration, gzip (.svgz), an SVG under another name
    declared = b"\xef\xbb\xbf\n<?xml version='1.0' encoding='UTF-8'?>\n" + MARK_SVG.encode()
    (tmp_path / "upload.bin").write_bytes(declared)
    (tmp_path / "mark.svgz").write_bytes(gzip.compress(MARK_SVG.encode()))
    for same in (MARK_SVG.encode(), declared, tmp_path / "upload.bin", tmp_path / "mark.svgz"):
        assert np.array_equal(np.asarray(open_image(same, svg_size=200)), np.asarray(rendered))
    # the processor renders at its own size, then resizes like any image
    assert processor.svg_render_size == 64 and open_image(MARK_SVG.encode(), svg_size=64).size == (64, 32)
    assert processor(tmp_path / "mark.svg", return_tensors="pt").pixel_values.shape == (1, 3, 64, 64)


def test_an_svg_and_a_png_export_of_the_same_mark_give_nearly_the_same_pixels(tmp_path, processor):
    png = resvg_py.svg_to_bytes(svg_string=MARK_SVG, width=400)  # the designer's PNG export, transparent
    (tmp_path / "mark.png").write_bytes(bytes(png))
    (tmp_path / "mark.svg").write_text(MARK_SVG)
    from_svg, from_png = processor([tmp_path / "mark.svg", tmp_path / "mark.png"], return_tensors="pt").pixel_values
    assert (pixels_to_rgb(from_svg) - pixels_to_rgb(from_png)).abs().mean() < 3  # of 255


@pytest.mark.parametrize(
    "svg",
    [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="5"',  # cut off
        '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>',  # not an SVG document
        '<svg xmlns="http://www.w3.org/2000/svg" width="0" height="0"/>',  # nothing to render
    ],
    ids=["truncated", "not-svg-root", "zero-size"],
)
def test_a_malformed_svg_is_a_clear_error(tmp_path, processor, svg):
    (tmp_path / "broken.svg").write_text(svg)
    with pytest.raises(InvalidImageError, match=r"broken.svg.*not a readable SVG image"):
        processor(tmp_path / "broken.svg")
    with pytest.raises(InvalidImageError, match="not a readable"):
        processor(svg.encode())


def test_an_svg_cannot_make_the_renderer_read_local_files(tmp_path):
    Image.new("RGB", (20, 20), "red").save(tmp_path / "secret.png")
    linked = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="20" height="20">'
        f'<image href="{tmp_path / "secret.png"}" width="20" height="20"/>'
        f'<image xlink:href="file://{tmp_path / "secret.png"}" width="20" height="20"/></svg>'
    )
    assert open_image(linked.encode(), svg_size=20).getpixel((10, 10)) == (255, 255, 255)  # dropped: nothing drawn
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(buffer, format="PNG")
    embedded = linked.replace(
        str(tmp_path / "secret.png"), "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), 1
    )
    assert open_image(embedded.encode(), svg_size=20).getpixel((10, 10)) == (255, 0, 0)  # embedded data is drawn
