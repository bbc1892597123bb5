"""The Gradio demo (`space.app`), launched in-process and driven by gradio_client. The servers run the shipped
embedder, as the Space does: whether an untrained network calls a brand it never saw unknown is the luck of its
random draw. Checks of the app's mechanics use a tiny random model.

Whole photos are searched either by the window fallback (no localiser: the `server` fixture) or, where a test
depends on where the logo is, by `ForegroundLocalizer`, a stand-in that boxes exactly the logo pasted on a plain
background (the `located_server` fixture): the assertions never depend on an untrained localiser's luck. A tiny
random `LogoLocalizerModel` is only used to check that a saved localiser loads and drives the same pipeline.
"""

import ast
import copy
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio
import httpx
import numpy as np
import pytest
import torch
from huggingface_hub import SpaceCard
from PIL import Image

from modeling_logo import (
    LogoEmbedder,
    LogoEmbeddingConfig,
    LogoEmbeddingModel,
    LogoGallery,
    LogoImageProcessor,
    LogoLocalizerConfig,
    LogoLocalizerImageProcessor,
    LogoLocalizerModel,
)
from modeling_logo.detection import KNOWN_COLOUR, UNKNOWN_COLOUR, LogoLocalizer, as_photo

from .conftest import make_logo_images


gradio_client = pytest.importorskip("gradio_client")
Client, handle_file = gradio_client.Client, gradio_client.handle_file


# gradio's queue uses pandas options that pandas 3 deprecates; not this project's concern.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

APP_PATH = Path(__file__).resolve().parent.parent / "space" / "app.py"  # read by the test of its imports
ORIENTATION_TAG = 0x0112
ACCEPT = 0.99  # a shot image is ~1.0 from its own 1-shot prototype
SCENE_SIZE = (320, 240)
SCENE_BACKGROUND = (128, 128, 128)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """PNG files of three distinct synthetic brands: A and B are registered, C never is."""
    directory = tmp_path_factory.mktemp("space-images")
    paths = {}
    for brand, seed in (("A", 10), ("B", 20), ("C", 30)):
        paths[brand] = []
        for i, image in enumerate(make_logo_images(2, seed=seed)):
            path = directory / f"{brand}-{i}.png"
            image.save(path)
            paths[brand].append(str(path))
    not_an_image = directory / "notes.png"
    not_an_image.write_text("this is a text file, not a PNG\n")
    paths["bad"] = str(not_an_image)
    return paths


class ForegroundLocalizer:
    """A stand-in logo localiser with the `LogoLocalizer` call: one box around the pixels that differ from the
    photo's top-left corner (a logo pasted on a plain background, exactly), none in a plain photo."""

    def __call__(self, photos, threshold=None, **kwargs):
        results = []
        for photo in photos if isinstance(photos, (list, tuple)) else [photos]:
            pixels = np.asarray(as_photo(photo), dtype=np.int32)
            ys, xs = np.nonzero(np.abs(pixels - pixels[0, 0]).sum(axis=-1) > 24)
            if len(xs):
                boxes = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
                results.append({"boxes": boxes, "scores": torch.tensor([0.9])})
            else:
                results.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)})
        return results


def _scene(logo_path: str, at: tuple[int, int], path: Path) -> tuple[str, tuple[int, int, int, int]]:
    """A whole photo: the logo image pasted on a plain background at `at`; returns its path and the logo's box."""
    logo = Image.open(logo_path).convert("RGB")
    scene = Image.new("RGB", SCENE_SIZE, SCENE_BACKGROUND)
    scene.paste(logo, at)
    scene.save(path)
    return str(path), (at[0], at[1], at[0] + logo.width, at[1] + logo.height)


@pytest.fixture(scope="module")
def scenes(images, tmp_path_factory):
    """Whole photos: logo A at two places, logo C (never registered), and a plain photo with no logo."""
    directory = tmp_path_factory.mktemp("space-scenes")
    plain = directory / "plain.png"
    Image.new("RGB", SCENE_SIZE, SCENE_BACKGROUND).save(plain)
    return {
        "A-left": _scene(images["A"][0], (20, 30), directory / "A-left.png"),
        "A-right": _scene(images["A"][0], (200, 150), directory / "A-right.png"),
        "C": _scene(images["C"][0], (110, 80), directory / "C.png"),
        "plain": str(plain),
    }


@pytest.fixture(scope="module")
def app_module():
    import space.app

    return space.app


def _tiny_embedder(seed: int = 0, **kwargs) -> LogoEmbedder:
    torch.manual_seed(seed)
    config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)
    return LogoEmbedder(LogoEmbeddingModel(config), LogoImageProcessor.from_model_config(config), **kwargs)


def _shipped_embedder(**kwargs) -> LogoEmbedder:
    return LogoEmbedder.from_pretrained(
        Path(__file__).resolve().parents[1] / "checkpoints" / "logo-embedding-resnet-small", **kwargs
    )


def _launch(demo):
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server(app_module):
    """The demo without a logo localiser (whole photos are searched with windows, the fallback), with the generated
    example brands where the mark packages are available."""
    demo = app_module.build_demo(_shipped_embedder(), example_brands=app_module.prepare_examples(), localizer=None)
    try:
        yield _launch(demo)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def located_server(app_module):
    """The demo with `ForegroundLocalizer`, which boxes exactly the logo of a `scenes` photo."""
    demo = app_module.build_demo(_shipped_embedder(), localizer=ForegroundLocalizer())
    try:
        yield _launch(demo)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def tiny_localizer_dir(tmp_path_factory):
    """A tiny random localiser saved as the Space loads one (only for checks that do not depend on its boxes)."""
    directory = tmp_path_factory.mktemp("tiny-localizer")
    torch.manual_seed(0)
    # A low box threshold, so that even random weights give boxes (up to max_detections) for the table to list.
    config = LogoLocalizerConfig(backbone="resnet-tiny", image_size=128, score_threshold=0.02, max_detections=5)
    LogoLocalizerModel(config).save_pretrained(directory)
    LogoLocalizerImageProcessor(size=128).save_pretrained(directory)
    return directory


def _client(url: str) -> Client:
    # A generous timeout: on a loaded 2-core machine 20 concurrent queries can outlast httpx's 5 s default.
    return Client(url, verbose=False, httpx_kwargs={"timeout": 120})


def _add(client: Client, name: str, paths: list[str], whole_photos: bool = False):
    return client.predict(
        name=name, files=[handle_file(p) for p in paths], whole_photos=whole_photos, api_name="/add_brand"
    )


def _search(client: Client, path: str, threshold: float = ACCEPT, with_shots: bool = False):
    label, verdict, best_shots, _annotated, _detections = client.predict(
        handle_file(path), threshold, api_name="/search"
    )
    return (label, verdict, best_shots) if with_shots else (label, verdict)


def _recognise(client: Client, path: str, threshold: float = ACCEPT):
    """`/search` on a whole photo: `(verdict, annotated image path, detection rows as dicts, label)`."""
    label, verdict, _best_shots, annotated, table = client.predict(handle_file(path), threshold, api_name="/search")
    rows = [dict(zip(table["headers"], row)) for row in table["data"]]
    return verdict, annotated, rows, label


def _box_of(row: dict) -> list[int]:
    return [int(value) for value in row["Box (xmin, ymin, xmax, ymax)"].split(",")]


@pytest.fixture
def client_ab(server, images):
    """A new session with brands A (1 shot) and B (2 shots) registered."""
    client = _client(server)
    _add(client, "A", images["A"][:1])
    _gallery, _dropdown, summary = _add(client, "B", images["B"])
    assert "A" in summary and "B" in summary
    return client


def test_api_endpoints_are_named(server):
    endpoints = _client(server).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {
        "/add_brand",
        "/remove_brand",
        "/rename_brand",
        "/search",
        "/select_model",
        "/load_examples",
        "/download_gallery",
        "/upload_gallery",
    } <= set(endpoints)


def test_search_recognises_registered_brand_and_rejects_unknown(client_ab, images):
    label, verdict, best_shots = _search(client_ab, images["B"][1], threshold=0.5, with_shots=True)
    assert verdict.startswith("B ") and re.findall(r"<figcaption>(.*?)</figcaption>", best_shots) == [
        "B shot 1",
        "B shot 2",
    ]
    # Inline thumbnails: the answer names no file of them, so nothing is copied or fetched for them.
    assert best_shots.count('<img src="data:image/png;base64,') == 2
    label, verdict = _search(client_ab, images["A"][0])
    assert label["confidences"][0]["label"] == "A"
    assert label["confidences"][0]["confidence"] > ACCEPT
    assert len(label["confidences"]) == 2  # top-3, but only two brands
    assert verdict.startswith("A ")

    label, verdict = _search(client_ab, images["C"][0])
    assert verdict.startswith("unknown brand")
    assert label["confidences"][0]["confidence"] < ACCEPT


def test_the_load_benchmark_searches_as_a_browser_does(client_ab, server, images):
    """`benchmarks/space_load.py` makes a browser's requests itself (upload, queue, event stream, files): they must
    keep giving the app's answer in the session of the client that registered the brands."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import space_load
    finally:
        sys.path.pop(0)
    search = space_load.BrowserSearch.in_session_of(client_ab, server)
    ranking, verdict, shots, annotated, table = search(images["B"][1], 0.5)
    assert verdict.startswith("B ") and ranking["confidences"][0]["label"] == "B"
    assert "B shot 2" in shots and table["headers"]
    assert space_load._file_urls([ranking, verdict, shots, annotated, table]) == [annotated["url"]]  # it was fetched
    with pytest.raises(RuntimeError, match="error"):  # another session has no brands: the app's error, not a hang
        space_load.BrowserSearch(server, "no-such-session", search.fn_index)(images["B"][1], 0.5)


def test_invalid_inputs_give_errors_and_the_app_keeps_answering(client_ab, images):
    with pytest.raises(Exception, match="not a readable image"):
        _add(client_ab, "Broken", [images["bad"]])
    with pytest.raises(Exception, match="at most 5"):
        _add(client_ab, "Too many", images["C"] * 3)
    with pytest.raises(Exception, match="brand name"):
        _add(client_ab, "   ", images["C"][:1])
    with pytest.raises(Exception, match="already in the gallery"):
        _add(client_ab, "A", images["C"][:1])
    _label, verdict = _search(client_ab, images["A"][0])
    assert verdict.startswith("A ")


def test_empty_gallery_search_is_a_clear_error(server, images):
    with pytest.raises(Exception, match="gallery is empty"):
        _search(_client(server), images["A"][0])


def test_sessions_are_isolated_and_brands_can_be_removed(client_ab, server, images):
    other = _client(server)
    _gallery, _dropdown, summary = _add(other, "C", images["C"][:1])
    assert "C" in summary and "A" not in summary and "B" not in summary
    _label, verdict = _search(other, images["A"][0])
    assert not verdict.startswith("A ")  # the other session's brand A is invisible here
    label, _verdict = _search(client_ab, images["C"][0])
    assert {c["label"] for c in label["confidences"]} == {"A", "B"}

    _gallery, _dropdown, summary = client_ab.predict("A", api_name="/remove_brand")
    assert "A" not in summary.split(":", 1)[-1] and "B" in summary
    label, _verdict = _search(client_ab, images["A"][0])
    assert [c["label"] for c in label["confidences"]] == ["B"]


def test_brands_can_be_renamed_keeping_their_shots(client_ab, images):
    gallery, _dropdown, summary = client_ab.predict("A", "Acme", api_name="/rename_brand")
    assert summary == "2 brand(s) registered: Acme, B"  # same place in the list
    assert [item["caption"] for item in gallery] == ["Acme (1/1)", "B (1/2)", "B (2/2)"]
    _label, verdict = _search(client_ab, images["A"][0])
    assert verdict.startswith("Acme ")
    with pytest.raises(Exception, match="already in the gallery"):
        client_ab.predict("Acme", "B", api_name="/rename_brand")


def test_too_large_images_are_refused_before_decoding(client_ab, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 6000)).save(huge)  # 48 megapixels, a few kB compressed
    with pytest.raises(Exception, match="too large"):
        _add(client_ab, "Huge", [str(huge)])
    with pytest.raises(Exception, match="too large"):
        _search(client_ab, str(huge))


def test_switching_model_empties_the_gallery_and_uses_its_threshold(server, images, tmp_path):
    torch.manual_seed(1)
    config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64, similarity_threshold=0.42)
    LogoEmbeddingModel(config).save_pretrained(tmp_path / "other-model")
    client = _client(server)
    _add(client, "A", images["A"][:1])
    _state_gallery, _dropdown, summary, threshold, note = client.predict(
        str(tmp_path / "other-model"), api_name="/select_model"
    )
    assert summary == "The gallery is empty." and threshold == pytest.approx(0.42) and "other-model" in note
    _add(client, "C", images["C"][:1])
    _label, verdict = _search(client, images["C"][0])
    assert verdict.startswith("C ")
    with pytest.raises(Exception, match="Could not load model"):
        client.predict(str(tmp_path / "missing"), api_name="/select_model")


def test_example_brands_are_unseen_test_brands(server, app_module):
    examples = app_module.prepare_examples()
    if examples is None:
        pytest.skip("the mark packages are not available")
    from dataset_scripts.logodet3k import hash_split_of

    brands = {brand for _, brand in examples.queries}
    assert len(examples.shots) == app_module.EXAMPLE_BRANDS and len(brands) == app_module.EXAMPLE_BRANDS + 1
    assert all(hash_split_of(b) == "test" for b in brands)
    assert all(len(shots) == app_module.EXAMPLE_SHOTS for shots in examples.shots.values())
    _gallery, _dropdown, summary = _client(server).predict(api_name="/load_examples")
    assert summary.startswith(f"{app_module.EXAMPLE_BRANDS} brand(s) registered")


def test_concurrent_queries_are_all_answered(client_ab, images):
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _search(client_ab, images["A"][0]), range(20)))
    assert len(results) == 20
    assert all(verdict.startswith("A ") for _label, verdict in results)


def test_gallery_download_then_upload_restores_brands(client_ab, server, images, tmp_path):
    archive = client_ab.predict(api_name="/download_gallery")
    with zipfile.ZipFile(archive) as zf:
        assert set(zf.namelist()) == {"gallery.json", "gallery.safetensors"}

    fresh = _client(server)
    _gallery, _dropdown, summary = fresh.predict(handle_file(archive), api_name="/upload_gallery")
    assert "A" in summary and "B" in summary
    for path in (images["A"][0], images["B"][1], images["C"][0]):
        assert _search(fresh, path) == _search(client_ab, path)  # same brands, same embeddings, same answers

    not_a_zip = tmp_path / "gallery.zip"
    not_a_zip.write_text("not a zip")
    with pytest.raises(Exception, match="not a .zip gallery"):
        fresh.predict(handle_file(str(not_a_zip)), api_name="/upload_gallery")
    incomplete = tmp_path / "incomplete.zip"
    with zipfile.ZipFile(incomplete, "w") as zf:
        zf.writestr("gallery.json", "{}")
    with pytest.raises(Exception, match="Could not load the gallery"):
        fresh.predict(handle_file(str(incomplete)), api_name="/upload_gallery")


def test_a_gallery_built_from_a_folder_uploads_as_a_zip(server, images, tmp_path):
    brands = tmp_path / "brands"
    for brand in ("A", "B"):
        (brands / brand).mkdir(parents=True)
        for path in images[brand]:
            Image.open(path).save(brands / brand / Path(path).name)
    embedder = _shipped_embedder(runtime="torch")  # the server's model: the gallery's embeddings belong to it
    LogoGallery.from_folder(brands, embedder).save(tmp_path / "my-gallery" / "gallery")
    archive = tmp_path / "my-gallery.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # as `zip -r` writes it: the files inside a folder
        for name in ("gallery.json", "gallery.safetensors"):
            zf.write(tmp_path / "my-gallery" / "gallery" / name, arcname=f"gallery/{name}")

    client = _client(server)
    gallery, _dropdown, summary = client.predict(handle_file(str(archive)), api_name="/upload_gallery")
    assert summary == "2 brand(s) registered: A, B"
    assert [item["caption"] for item in gallery] == ["A (1/2)", "A (2/2)", "B (1/2)", "B (2/2)"]  # placeholders
    # The uploaded embeddings answer: each brand's own marks rank it first (A's two shots are two different marks,
    # so a query is near the brand's prototype, not at ~1.0; rejecting unknown brands is tested above).
    for brand in ("A", "B"):
        for path in images[brand]:
            label, _verdict = _search(client, path)
            assert label["confidences"][0]["label"] == brand, (brand, path, label)


def test_svg_logos_are_shots_and_queries_and_a_broken_one_is_a_clear_error(server, images, tmp_path):
    mark = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 80"><circle cx="60" cy="40" r="35" fill="#0a7d3c"/></svg>'
    (tmp_path / "mark.svg").write_text(mark)
    (tmp_path / "broken.svg").write_text(mark[:60])
    client = _client(server)
    gallery, _dropdown, summary = _add(client, "Green", [str(tmp_path / "mark.svg")])
    _add(client, "B", images["B"])
    (item,) = [item for item in gallery if item["caption"].startswith("Green")]
    thumbnail = item["image"]["path"] if isinstance(item["image"], dict) else item["image"]
    assert Image.open(thumbnail).convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # rendered on white
    _label, verdict = _search(client, str(tmp_path / "mark.svg"))
    assert verdict.startswith("Green ")
    with pytest.raises(Exception, match="broken.svg.*not a readable SVG image"):
        _add(client, "Broken", [str(tmp_path / "broken.svg")])
    with pytest.raises(Exception, match="not a readable SVG image"):
        _search(client, str(tmp_path / "broken.svg"))
    label, _verdict = _search(client, images["B"][0])
    assert [c["label"] for c in label["confidences"]] == ["B", "Green"]  # nothing lost


def test_exif_orientation_is_applied_to_shots(server, images, tmp_path):
    upright = Image.open(images["C"][0]).convert("RGB")
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # "rotate 90° clockwise to display", as phones write it
    phone_photo = tmp_path / "phone.png"
    upright.rotate(90, expand=True).save(phone_photo, exif=exif)  # pixels stored sideways

    client = _client(server)
    gallery, _dropdown, _summary = _add(client, "Phone", [str(phone_photo)])
    _add(client, "Other", images["B"][:1])
    _label, verdict = _search(client, images["C"][0])
    assert verdict.startswith("Phone ")  # the upright query matches the EXIF-rotated shot
    (item,) = gallery
    thumbnail = item["image"]["path"] if isinstance(item["image"], dict) else item["image"]
    width, height = Image.open(thumbnail).size
    assert item["caption"] == "Phone (1/1)" and width > height  # shown upright (landscape), as the shot was used


def test_untrained_fallback_shows_a_warning(app_module, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app_module, "DEFAULT_MODEL_DIRS", (tmp_path / "missing",))
    embedder, untrained = app_module.load_embedder(None)
    assert untrained and embedder.config.backbone == "resnet-small"
    demo = app_module.build_demo(embedder, untrained=untrained)
    assert "Untrained model" in str(demo.config)


def test_the_session_state_is_a_gallery_that_callbacks_replace_never_change(app_module, images):
    embedder = _tiny_embedder(runtime="torch")
    app = app_module.GalleryApp(embedder, localizer=None)
    start = app.initial_state()
    first, *_views = app.add_brand("A", [images["A"][0]], None)
    state, *_views = app.add_brand("B", images["B"], first)
    assert isinstance(state, app_module.SessionGallery) and state.model == app.default_model
    assert start.brands == [] and first.brands == ["A"] and state.brands == ["A", "B"]  # earlier states unchanged
    assert isinstance(state.gallery, LogoGallery) and state.gallery.embedder is embedder  # the shared model
    assert len(state.gallery.metadata("B")["thumbnails"]) == 2
    by_hand = LogoGallery(embedder)
    by_hand.add_brand("B", images["B"])
    torch.testing.assert_close(state.gallery.shots("B"), by_hand.shots("B"), rtol=0, atol=0)
    torch.testing.assert_close(state.gallery.shots("A"), first.gallery.shots("A"), rtol=0, atol=0)  # not re-embedded
    assert copy.deepcopy(state) is state  # what gr.State does for a new session: an immutable state is shared
    with pytest.raises(AttributeError, match="immutable"):
        state.model = "other"

    renamed, *_views = app.rename_brand("A", "Acme", state)
    assert renamed.brands == ["Acme", "B"] and state.brands == ["A", "B"]
    removed, _items, _dropdown, summary = app.remove_brand("B", renamed)
    assert summary == "1 brand(s) registered: Acme" and renamed.brands == ["Acme", "B"]
    with pytest.raises(app_module.gr.Error, match="not in the gallery"):
        app.remove_brand("B", removed)
    with pytest.raises(app_module.gr.Error, match="already in the gallery"):
        app.rename_brand("Acme", "B", renamed)
    with pytest.raises(app_module.gr.Error, match="not a readable image"):
        app.add_brand("C", [images["C"][0], images["bad"]], state)
    assert state.brands == ["A", "B"]  # failed callbacks changed nothing


def test_sessions_of_a_demo_built_on_a_gallery_start_from_it_and_change_only_their_own(app_module, images):
    """Every new session shares the demo's initial state; one session's changes are its own."""
    gallery = LogoGallery(_shipped_embedder())
    gallery.add_brand("A", images["A"][:1])
    demo = app_module.build_demo(gallery, localizer=None)
    try:
        url = _launch(demo)
        first, second = _client(url), _client(url)
        _gallery, _dropdown, summary = first.predict("A", api_name="/remove_brand")
        assert summary == "The gallery is empty."
        _add(first, "B", images["B"][:1])
        label, _verdict = _search(second, images["A"][0])
        assert [c["label"] for c in label["confidences"]] == ["A"]  # the second session still has the demo's brand
        label, _verdict = _search(first, images["A"][0])
        assert [c["label"] for c in label["confidences"]] == ["B"]
        assert _client(url).predict("A", "Acme", api_name="/rename_brand")[2] == "1 brand(s) registered: Acme"
    finally:
        demo.close()
    assert gallery.brands == ["A"]  # the gallery the demo was built on is left as it was


def test_search_names_logos_as_the_gallery_detects_them_and_keeps_each_photos_analysis(
    app_module, images, scenes, tiny_localizer_dir, tmp_path, monkeypatch
):
    """The localiser path of `search` (boxes, then the photo and its crops embedded in one batch) gives what
    `LogoGallery.detect` gives; a photo searched again reuses its analysis, for that model only."""
    monkeypatch.setenv("LOGO_RUNTIME", "torch")  # the models loaded here: no ONNX exports
    embedder = _tiny_embedder(runtime="torch")
    localizer = app_module.load_localizer(tiny_localizer_dir)
    app = app_module.GalleryApp(embedder, localizer=localizer)
    state, *_views = app.add_brand("A", [images["A"][0]], None)
    state, *_views = app.add_brand("B", images["B"], state)
    path = scenes["A-right"][0]
    _ranking, _verdict, _shots, _annotated, rows = app.search(path, 0.5, state)
    expected = state.gallery.detect(Image.open(path).convert("RGB"), 0.5)
    assert expected and len(rows) == len(expected)  # the random localiser's boxes, whatever they are
    for row, detection in zip(rows, expected):
        assert row[1] == (detection.brand or "unknown") and row[4] == detection.best_brand
        assert row[2] == pytest.approx(round(detection.score, 3), abs=1.5e-3)
        assert row[5] == ", ".join(str(round(value)) for value in detection.box)
    assert len(app.photos) == 1

    copied = tmp_path / "same-photo.png"  # another upload of the same bytes
    copied.write_bytes(Path(path).read_bytes())
    assert app.search(str(copied), 0.5, state)[4] == rows and len(app.photos) == 1
    state, *_views = app.remove_brand("A", state)  # the analysis holds no brand: the new gallery ranks its own
    ranking, *_rest = app.search(str(copied), 0.5, state)
    assert set(ranking) == {"B"} and len(app.photos) == 1

    torch.manual_seed(7)
    config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)
    LogoEmbeddingModel(config).save_pretrained(tmp_path / "other-model")
    other, *_views = app.select_model(str(tmp_path / "other-model"), state)
    other, *_views = app.add_brand("B", images["B"], other)
    app.search(path, 0.5, other)
    assert len(app.photos) == 2  # another model: its own analysis


def test_requests_run_one_per_core_in_one_queue(app_module, monkeypatch, tmp_path):
    embedder = _tiny_embedder(runtime="torch")
    torch.set_num_threads(2)
    demo = app_module.build_demo(embedder, localizer=None, inference_threads=None)
    assert torch.get_num_threads() == 2  # None leaves the process's setting
    demo = app_module.build_demo(embedder, localizer=None)
    assert torch.get_num_threads() == app_module.INFERENCE_THREADS == 1
    assert demo._queue.default_concurrency_limit == app_module.available_cpus()
    assert {fn.concurrency_id for fn in demo.fns.values() if fn.api_name} == {"inference"}  # one queue for all
    assert app_module.build_demo(embedder, localizer=None, concurrency_limit=3)._queue.default_concurrency_limit == 3
    with pytest.raises(ValueError, match="at least 1"):
        app_module.build_demo(embedder, localizer=None, inference_threads=0)

    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(app_module, "CGROUP_CPU_MAX", quota)
    quota.write_text("max 100000\n")  # no quota: the CPU affinity
    cores = app_module.available_cpus()
    assert cores >= 1
    quota.write_text("100000 100000\n")  # a container allowed one core's time
    assert app_module.available_cpus() == 1


def test_a_demo_built_on_a_gallery_starts_every_session_with_its_brands(app_module, images):
    embedder = _tiny_embedder(runtime="torch")
    gallery = LogoGallery(embedder)
    gallery.add_brand("Acme", [images["A"][0]])
    demo = app_module.build_demo(gallery, localizer=None)
    assert demo.analytics_enabled is False  # no telemetry, without environment tricks before importing gradio
    assert "1 brand(s) registered: Acme" in str(demo.config)
    app = app_module.GalleryApp(embedder, gallery=gallery)
    _ranking, verdict, best_shots, _annotated, _rows = app.search(images["A"][0], ACCEPT, None)
    # A grey placeholder: the gallery has no thumbnail.
    assert verdict.startswith("Acme ") and best_shots.count("<img ") == 1
    assert app_module._placeholder_data() in best_shots
    with pytest.raises(ValueError, match="embedder"):
        app_module.build_demo(LogoGallery(), localizer=None)


def test_best_shots_are_inline_thumbnails_with_escaped_names(app_module, images):
    gallery = LogoGallery(_tiny_embedder(runtime="torch"))
    brand = "Ben & Jerry's <b>"
    good = app_module._thumbnail_data(Image.open(images["A"][0]))
    bad = 'x" onerror="alert(1)'  # a gallery file edited by hand must not write HTML
    gallery.add_brand(brand, images["A"][:2], metadata={"thumbnails": [good, bad]})
    shots = app_module.best_shots_html(gallery, brand)
    assert "<b>" not in shots and "onerror" not in shots
    assert re.findall(r"<figcaption>(.*?)</figcaption>", shots) == [
        "Ben &amp; Jerry&#x27;s &lt;b&gt; shot 1",
        "Ben &amp; Jerry&#x27;s &lt;b&gt; shot 2",
    ]
    sources = re.findall(r'src="data:image/png;base64,([^"]*)"', shots)
    assert sources == [good, app_module._placeholder_data()]


def test_annotated_photos_not_returned_for_an_hour_are_pruned(app_module, tmp_path):
    kept = app_module._write_once(tmp_path, b"kept", ".jpg", lambda f: f.write(b"kept"))
    stale = app_module._write_once(tmp_path, b"stale", ".jpg", lambda f: f.write(b"stale"))
    two_hours_ago = time.time() - 7200
    for path in (kept, stale):
        os.utime(path, (two_hours_ago, two_hours_ago))
    written = []
    # Returned again: not rewritten, but its time is refreshed so that the prune keeps it.
    assert app_module._write_once(tmp_path, b"kept", ".jpg", written.append) == kept and not written
    assert app_module._prune(tmp_path, app_module.ANNOTATED_KEEP_S) == 1
    assert os.path.exists(kept) and not os.path.exists(stale)
    assert app_module._prune(tmp_path / "missing", app_module.ANNOTATED_KEEP_S) == 0


def test_annotated_photos_are_pruned_by_a_thread_of_their_own(app_module, tmp_path):
    """Pruning runs off the requests' path, again and again, until stopped."""
    stale = [tmp_path / f"{i}.jpg" for i in range(2)]
    stale[0].write_bytes(b"old")
    os.utime(stale[0], (time.time() - 7200,) * 2)
    stop = app_module.start_pruning(tmp_path, app_module.ANNOTATED_KEEP_S, every_s=0.02)
    try:
        deadline = time.monotonic() + 10
        while stale[0].exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not stale[0].exists()
        stale[1].write_bytes(b"old")  # a file that grows old after the first prune goes at a later one
        os.utime(stale[1], (time.time() - 7200,) * 2)
        while stale[1].exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not stale[1].exists()
    finally:
        stop.set()


def test_the_layout_has_only_its_own_dropdowns(app_module, images):
    gallery = LogoGallery(_tiny_embedder(runtime="torch"))
    gallery.add_brand("Acme", [images["A"][0]])
    demo = app_module.build_demo(gallery, localizer=None)
    labels = [c["props"].get("label") for c in demo.config["components"] if c["type"] == "dropdown"]
    assert sorted(labels) == ["Brand", "Model: a local directory or a Hub id"]


def test_example_brands_are_passed_in(app_module, images):
    embedder = _tiny_embedder(runtime="torch")
    assert "add-examples" not in str(app_module.build_demo(embedder, localizer=None).config)  # none by default
    demo = app_module.build_demo(embedder, example_brands={"Acme": images["A"]}, localizer=None)
    assert "Add 1 example brands" in str(demo.config)
    app = app_module.GalleryApp(embedder, examples={"Acme": images["A"]})
    _state, _items, _dropdown, summary = app.load_examples(None)
    assert summary == "1 brand(s) registered: Acme"


def test_only_the_launcher_imports_dataset_scripts():
    """The demo's core takes its example brands as arguments; the launcher (`main`) generates them."""
    tree = ast.parse(APP_PATH.read_text(encoding="utf-8"))
    importers = set()
    for function in tree.body:
        for node in ast.walk(function):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "dataset_scripts" for name in names):
                importers.add(getattr(function, "name", "<module level>"))
    assert importers == {"prepare_examples", "_logo_box"}
    assert "GRADIO_ANALYTICS_ENABLED" not in APP_PATH.read_text(encoding="utf-8")


def _grey_fraction(image: Image.Image) -> float:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    return float((np.abs(pixels - np.array(SCENE_BACKGROUND)).sum(axis=-1) < 24).mean())


def _colour_near(image: Image.Image, xy: tuple[int, int], colour: tuple[int, int, int]) -> bool:
    return bool(np.abs(np.array(image.convert("RGB").getpixel(xy)) - np.array(colour)).max() < 48)  # JPEG


def test_whole_scene_logos_are_boxed_and_named(located_server, app_module, images, scenes):
    client = _client(located_server)
    gallery, _dropdown, _summary = _add(client, "A", [scenes["A-left"][0]], whole_photos=True)
    (item,) = gallery
    thumbnail = Image.open(item["image"]["path"] if isinstance(item["image"], dict) else item["image"])
    assert _grey_fraction(thumbnail) < 0.5  # the shot is the logo's crop (a 10% margin), not the mostly grey scene
    _add(client, "B", images["B"][:1])

    path, box = scenes["A-right"]  # the same logo elsewhere in another whole photo
    verdict, annotated, rows, label = _recognise(client, path)
    assert verdict.startswith("A (cosine") and "best of 1 logo found" in verdict
    assert label["confidences"][0]["label"] == "A"  # the top-3 of the logo's crop, not of the whole photo
    assert len(rows) == 1 and rows[0]["Brand"] == "A" and rows[0]["Cosine"] > ACCEPT
    assert rows[0]["Box score"] == pytest.approx(0.9) and _box_of(rows[0]) == list(box)
    image = Image.open(annotated)
    assert image.size == SCENE_SIZE
    assert _colour_near(image, ((box[0] + box[2]) // 2, box[3] - 1), KNOWN_COLOUR)  # its box, drawn
    assert _colour_near(image, (box[0] + 1, box[1] - 1), KNOWN_COLOUR)  # its caption, above the box
    assert not _colour_near(image, (5, 5), KNOWN_COLOUR)  # the rest of the photo is left as it was

    path, box = scenes["C"]  # a logo of an unregistered brand: boxed, called unknown
    verdict, annotated, rows, label = _recognise(client, path, threshold=0.999)
    assert verdict.startswith("unknown brand")
    assert len(rows) == 1 and rows[0]["Brand"] == "unknown" and rows[0]["Closest brand"] in {"A", "B"}
    assert _box_of(rows[0]) == list(box)
    image = Image.open(annotated)
    assert _colour_near(image, ((box[0] + box[2]) // 2, box[3] - 1), UNKNOWN_COLOUR)

    verdict, annotated, rows, _label = _recognise(client, scenes["plain"])  # nothing found: the whole photo is ranked
    assert rows == [] and "no logo found" in verdict and Image.open(annotated).size == SCENE_SIZE


def test_whole_photo_shots_need_a_localiser_and_a_logo(client_ab, located_server, images, scenes):
    with pytest.raises(Exception, match="needs a logo localiser"):
        _add(client_ab, "Whole", [scenes["A-left"][0]], whole_photos=True)
    _label, verdict = _search(client_ab, images["A"][0])
    assert verdict.startswith("A ")  # the gallery is kept
    _gallery, _dropdown, summary = _add(client_ab, "C", images["C"][:1])
    assert summary == "3 brand(s) registered: A, B, C"

    client = _client(located_server)
    _add(client, "A", [scenes["A-left"][0]], whole_photos=True)
    with pytest.raises(Exception, match="No logo was found in plain"):
        _add(client, "Plain", [scenes["A-right"][0], scenes["plain"]], whole_photos=True)
    _gallery, _dropdown, summary = _add(client, "B", images["B"][:1])
    assert summary == "2 brand(s) registered: A, B"  # nothing of "Plain" was registered, nothing was lost
    verdict, _annotated, rows, _label = _recognise(client, scenes["A-right"][0])
    assert verdict.startswith("A ") and [row["Brand"] for row in rows] == ["A"]


def _page_config(url: str) -> str:
    return httpx.get(url + "config", timeout=60).text


def test_window_search_note_shows_without_a_localiser(server, located_server, client_ab, scenes):
    assert "No logo localiser: window search" in _page_config(server)
    located = _page_config(located_server)
    assert "No logo localiser" not in located and "Logo localiser:" in located
    # The fallback still answers whole photos: the annotated photo, and only registered brands' logos.
    _verdict, annotated, rows, _label = _recognise(client_ab, scenes["A-right"][0], threshold=0.5)
    assert Image.open(annotated).size == SCENE_SIZE
    assert all(row["Brand"] in {"A", "B"} for row in rows)


def test_saved_localizer_is_used_by_default_by_path_or_env(
    app_module, tiny_localizer_dir, monkeypatch, images, scenes
):
    embedder = _tiny_embedder()
    monkeypatch.delenv("LOGO_LOCALIZER", raising=False)
    monkeypatch.setattr(app_module, "DEFAULT_LOCALIZER_DIRS", (tiny_localizer_dir.parent / "missing",))
    assert app_module.load_localizer() is None
    assert "No logo localiser" in str(app_module.build_demo(embedder).config)
    monkeypatch.setattr(
        app_module, "DEFAULT_LOCALIZER_DIRS", (tiny_localizer_dir.parent / "missing", tiny_localizer_dir)
    )
    config = str(app_module.build_demo(embedder).config)
    assert "No logo localiser" not in config and f"`{tiny_localizer_dir}`" in config  # the default directory
    monkeypatch.setenv("LOGO_LOCALIZER", "none")
    assert "No logo localiser" in str(app_module.build_demo(embedder).config)
    monkeypatch.setattr(app_module, "DEFAULT_LOCALIZER_DIRS", (tiny_localizer_dir.parent / "missing",))
    monkeypatch.setenv("LOGO_LOCALIZER", str(tiny_localizer_dir))
    assert f"`{tiny_localizer_dir}`" in str(app_module.build_demo(embedder).config)

    # A real (random) localiser drives the pipeline: one row and one box per logo box it finds, whatever they are.
    localizer = app_module.load_localizer(tiny_localizer_dir)
    assert isinstance(localizer, LogoLocalizer)
    app = app_module.GalleryApp(embedder, localizer=localizer)
    state, *_views = app.add_brand("A", [images["A"][0]], None)
    path = scenes["A-right"][0]
    _ranking, _verdict, _shots, annotated, rows = app.search(path, 0.5, state)
    expected = sorted(tuple(round(v) for v in box) for box in localizer(Image.open(path))[0]["boxes"].tolist())
    assert expected and sorted(tuple(int(v) for v in row[-1].split(",")) for row in rows) == expected
    assert Image.open(annotated).size == SCENE_SIZE


def test_cli_passes_the_localizer_option(app_module, monkeypatch):
    calls = []

    class FakeDemo:
        def launch(self, **kwargs):
            pass

    monkeypatch.setattr(app_module, "load_embedder", lambda name: (_tiny_embedder(), False))
    monkeypatch.setattr(app_module, "prepare_examples", lambda: {"Acme": ["acme.png"]})
    monkeypatch.setattr(app_module, "build_demo", lambda *args, **kwargs: calls.append(kwargs) or FakeDemo())
    monkeypatch.delenv("LOGO_LOCALIZER", raising=False)
    app_module.main(["--localizer", "some/localizer"])
    app_module.main([])
    monkeypatch.setenv("LOGO_LOCALIZER", "env/localizer")
    app_module.main([])
    assert [call["localizer"] for call in calls] == ["some/localizer", True, "env/localizer"]
    assert all(call["example_brands"] == {"Acme": ["acme.png"]} for call in calls)  # the launcher makes the examples


CHROMIUM = Path("/usr/bin/chromium")


def test_browser_add_brand_and_recognise(server, images, app_module, tmp_path):
    """The page itself, in headless Chromium: register a brand, recognise its image; no request leaves localhost."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from urllib.parse import urlparse

    requests = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(server, wait_until="load")
            page.locator("#add-brand").wait_for(timeout=30_000)
            assert "Untrained model" not in page.content()  # only shown for the untrained fallback

            page.locator("#brand-name textarea, #brand-name input").first.fill("Acme")
            page.locator("#shot-files input[type=file]").set_input_files(images["A"][:1])
            page.locator("#add-brand").click()
            sync_api.expect(page.locator("#summary")).to_contain_text("1 brand(s) registered: Acme", timeout=20_000)

            page.locator("#query-image input[type=file]").set_input_files(images["A"][0])
            page.locator("#query-image img").first.wait_for(timeout=20_000)  # uploaded: the preview shows
            page.locator("#search").click()
            sync_api.expect(page.locator("#verdict textarea, #verdict input").first).to_have_value(
                re.compile(r"^Acme \(cosine"), timeout=20_000
            )
            sync_api.expect(page.locator("#best-shots img")).to_have_count(1, timeout=20_000)

            examples = app_module.prepare_examples()
            if examples is not None:  # the example brands, and a click on an example query
                page.locator("#add-examples").click()
                sync_api.expect(page.locator("#summary")).to_contain_text(
                    f"{len(examples.shots) + 1} brand(s) registered", timeout=60_000
                )
                verdict = page.locator("#verdict textarea, #verdict input").first
                previous = verdict.input_value()
                _path, brand = examples.queries[0]
                query_preview = page.locator("#query-image img").first
                shown = query_preview.get_attribute("src")
                page.get_by_text(f"{brand} (query)").first.click()
                sync_api.expect(query_preview).not_to_have_attribute("src", shown, timeout=20_000)
                page.locator("#search").click()
                sync_api.expect(verdict).not_to_have_value(previous, timeout=20_000)  # a new answer, for the example
            page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
            assert (tmp_path / "space.png").stat().st_size > 10_000
        finally:
            browser.close()
    hosts = {urlparse(url).hostname for url in requests if url.startswith(("http:", "https:", "ws:", "wss:"))}
    assert hosts == {"127.0.0.1"}, f"requests outside localhost: {hosts}"


# ---------------------------------------------------------------------------------------------------------------------
# The exported Space folder (`python -m space.export`)

# Runs the folder's app.py with nothing of the repository importable: `python -I` leaves out the script's folder,
# PYTHONPATH and the user site; the editable install's import finder is removed; then only the folder is added.
ISOLATED_APP = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in (getattr(f, "__module__", "") or "").lower()]
sys.path.insert(0, ".")
import modeling_logo
print("modeling_logo:", modeling_logo.__file__, flush=True)
for name in ("dataset_scripts", "logo_evaluation", "space"):
    try:
        __import__(name)
        print("importable:", name, flush=True)
    except ImportError:
        pass
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
"""


def test_the_exported_space_folder_runs_on_its_own(saved_model_dir, images, tmp_path):
    from space.export import export_space

    folder = export_space(tmp_path / "space", model=saved_model_dir, localizer=None, examples=False).resolve()
    assert sorted(path.name for path in folder.iterdir()) == [
        "README.md",
        "app.py",
        "logo-model",
        "logo_commands",  # the launcher's command-line checks, imported before the models' libraries
        "modeling_logo",
        "requirements.txt",
    ]
    card = SpaceCard.load(folder / "README.md")
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", gradio.__version__, "app.py")
    assert card.data.license == "apache-2.0" and card.text.startswith("\n# Few-shot logo recognition")
    assert f"gradio=={gradio.__version__}" in (folder / "requirements.txt").read_text().splitlines()

    port = _free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("LOGO_")}
    # torch: no ONNX export at start-up (tested elsewhere), so that the app is up in seconds.
    environment.update(GRADIO_SERVER_PORT=str(port), LOGO_LOCALIZER="none", LOGO_RUNTIME="torch", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", ISOLATED_APP],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline, config = time.monotonic() + 120, None
        while config is None and time.monotonic() < deadline and process.poll() is None:
            try:
                config = httpx.get(url + "config", timeout=5).text
            except httpx.TransportError:
                time.sleep(0.5)
        assert config is not None, "".join(output)[-3000:]
        assert f"modeling_logo: {folder / 'modeling_logo' / '__init__.py'}\n" in output
        assert not [line for line in output if line.startswith("importable:")]  # nothing of the repository
        assert f"`{folder / 'logo-model'}`" in config  # the folder's model, found where app.py looks first
        assert "No logo localiser: window search" in config
        _gallery, _dropdown, summary = _add(_client(url), "A", images["A"][:1])
        assert summary == "1 brand(s) registered: A"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_export_copies_the_models_and_refuses_bad_folders(saved_model_dir, tmp_path, capsys):
    from space import export

    folder = export.export_space(tmp_path / "space", model=saved_model_dir)  # the shipped localiser, the examples
    assert {"dataset_scripts", "modeling_logo", "logo-model", "logo-localizer"} <= {p.name for p in folder.iterdir()}
    assert sorted(p.name for p in (folder / "logo-localizer").iterdir()) == [
        "config.json",
        "configuration_localizer.py",
        "configuration_logo.py",
        "image_processing_localizer.py",
        "image_processing_logo.py",
        "model.safetensors",
        "modeling_localizer.py",
        "preprocessor_config.json",
    ]  # no training leftovers (metrics, curves, model card)
    assert not list(folder.rglob("__pycache__"))
    assert (folder / "app.py").read_bytes() == (Path(export.__file__).parent / "app.py").read_bytes()

    with pytest.raises(SystemExit):
        export.main([str(folder)])
    assert "is not empty" in capsys.readouterr().err
    (folder / "my-notes.txt").write_text("kept")
    export.main([str(folder), "--model", str(saved_model_dir), "--localizer", "none", "--no_examples", "--overwrite"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "app.py",
        "logo-model",
        "logo_commands",
        "modeling_logo",
        "my-notes.txt",
        "requirements.txt",
    ]
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "other"), "--model", str(tmp_path)])
    assert "--model" in capsys.readouterr().err and not (tmp_path / "other").exists()  # nothing written


def test_logo_runtime_picks_what_runs_the_models(app_module, saved_model_dir, tiny_localizer_dir, monkeypatch):
    monkeypatch.setenv("LOGO_RUNTIME", "torch")  # no ONNX export at start-up
    embedder, untrained = app_module.load_embedder(str(saved_model_dir))
    assert not untrained and embedder.prepare() == "torch"
    assert app_module.load_localizer(tiny_localizer_dir).runtime == "torch"
    monkeypatch.setenv("LOGO_RUNTIME", "tpu")
    with pytest.raises(ValueError, match="runtime must be"):
        app_module.load_embedder(str(saved_model_dir))
