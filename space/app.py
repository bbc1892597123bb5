"""Gradio demo of few-shot logo recognition: register brands from 1-5 images, then recognise them in new photos.

Run locally with `python space/app.py [--model DIR_OR_HUB_ID]` (or `LOGO_MODEL=...`). Each visitor has their own
gallery of brands (kept in `gr.State`); the model is shared and only read.
"""

from __future__ import annotations

import os


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry

import argparse  # noqa: E402
import base64  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from modeling_logo import (  # noqa: E402
    InvalidImageError,
    LogoEmbeddingConfig,
    LogoEmbeddingModel,
    LogoGallery,
    LogoImageProcessor,
    open_image,
    to_rgb,
)
from modeling_logo.few_shot import GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME, load_model_and_processor  # noqa: E402


logger = logging.getLogger(__name__)

MAX_SHOTS = 5
TOP_K = 3
DEFAULT_THRESHOLD = 0.5
UNKNOWN = "unknown brand"
THUMBNAIL_SIZE = (96, 96)
MAX_GALLERY_ZIP_BYTES = 50 * 1024 * 1024  # uncompressed size of an uploaded gallery
# A model copied next to app.py (a Space), else the main job's output (the repository's runs/logo-model).
DEFAULT_MODEL_DIRS = (
    Path(__file__).resolve().parent / "logo-model",
    Path("runs/logo-model"),
    Path(__file__).resolve().parent.parent / "runs" / "logo-model",
)
UNTRAINED_WARNING = (
    "⚠️ **Untrained model.** No trained model was found (set `LOGO_MODEL` or `--model`, or run `python train.py` to "
    "create `runs/logo-model`), so this demo uses a randomly initialised network: its similarities are meaningless "
    "except for near-identical images."
)


# ---------------------------------------------------------------------------------------------------------------------
# Model


def load_model(name: str | os.PathLike | None = None) -> tuple[LogoEmbeddingModel, LogoImageProcessor, bool]:
    """The model and processor from `name` (a directory or Hub id), else the first of `DEFAULT_MODEL_DIRS` that holds
    a model, else an untrained model.

    Returns `(model, processor, untrained)`.
    """
    if name is None:
        name = next((str(d) for d in DEFAULT_MODEL_DIRS if (d / "config.json").is_file()), None)
    if name is not None:
        return (*load_model_and_processor(name), False)
    logger.warning("No trained model found: using an UNTRAINED resnet-small model.")
    config = LogoEmbeddingConfig(backbone="resnet-small", image_size=96)
    return LogoEmbeddingModel(config).eval(), LogoImageProcessor.from_model_config(config), True


# ---------------------------------------------------------------------------------------------------------------------
# Per-session state: plain data (brand -> shot embeddings and a thumbnail), never the model.


def _empty_state() -> dict[str, Any]:
    return {"brands": {}}


def _thumbnail_data(image: Image.Image) -> str:
    image = to_rgb(image)
    image.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumbnail_image(data: str | None) -> Image.Image:
    if data:
        try:
            return open_image(base64.b64decode(data))
        except (InvalidImageError, ValueError):
            pass
    return Image.new("RGB", THUMBNAIL_SIZE, "lightgrey")


def _file_path(item: Any) -> str:
    """A path from what gr.File / gradio_client hands over (a path string, a tempfile wrapper or a FileData dict)."""
    if isinstance(item, dict):
        item = item.get("path") or item.get("name")
    return str(getattr(item, "name", item))


class GalleryApp:
    """The demo's callbacks, bound to one shared (read-only) model and processor."""

    def __init__(self, model: LogoEmbeddingModel, processor: LogoImageProcessor, *, untrained: bool = False):
        self.model = model.eval()
        self.processor = processor
        self.untrained = untrained
        threshold = getattr(model.config, "similarity_threshold", None)
        self.default_threshold = float(threshold) if threshold is not None else DEFAULT_THRESHOLD

    def gallery_of(self, state: dict[str, Any] | None) -> LogoGallery:
        """A `LogoGallery` rebuilt from a session's stored embeddings (cheap: nothing is re-embedded)."""
        gallery = LogoGallery(self.model, self.processor, search_backend="torch")
        for brand, entry in (state or _empty_state())["brands"].items():
            gallery.add_brand(brand, torch.as_tensor(entry["shots"]), metadata={"thumbnail": entry.get("thumbnail")})
        return gallery

    @staticmethod
    def state_of(gallery: LogoGallery) -> dict[str, Any]:
        return {
            "brands": {
                brand: {"shots": gallery.shots(brand), "thumbnail": gallery.metadata(brand).get("thumbnail")}
                for brand in gallery.brands
            }
        }

    # -- views ----------------------------------------------------------------------------------------------------

    @staticmethod
    def views(state: dict[str, Any]) -> tuple[list[tuple[Image.Image, str]], Any, str]:
        """The brand gallery, the remove dropdown and a summary line for a state."""
        brands = state["brands"]
        items = [
            (_thumbnail_image(e.get("thumbnail")), f"{b} ({len(e['shots'])} shot{'s' * (len(e['shots']) != 1)})")
            for b, e in brands.items()
        ]
        names = list(brands)
        dropdown = gr.Dropdown(choices=names, value=names[-1] if names else None)
        summary = f"{len(names)} brand(s) registered: {', '.join(names)}" if names else "The gallery is empty."
        return items, dropdown, summary

    # -- callbacks ------------------------------------------------------------------------------------------------

    def add_brand(self, name: str | None, files: list[Any] | None, state: dict[str, Any] | None):
        state = state or _empty_state()
        name = (name or "").strip()
        if not name:
            raise gr.Error("Enter a brand name.")
        if name in state["brands"]:
            raise gr.Error(f"Brand {name!r} is already in the gallery: remove it first to replace it.")
        files = [f for f in (files or []) if f is not None]
        if not files:
            raise gr.Error(f"Upload 1 to {MAX_SHOTS} example images of {name!r}.")
        if len(files) > MAX_SHOTS:
            raise gr.Error(f"Upload at most {MAX_SHOTS} example images per brand ({len(files)} given).")
        images = []
        for item in files:
            path = _file_path(item)
            try:
                images.append(to_rgb(open_image(path)))  # to_rgb applies the EXIF orientation
            except InvalidImageError as error:
                raise gr.Error(f"{Path(path).name}: {error}") from None
            except FileNotFoundError:
                raise gr.Error(f"{Path(path).name} could not be read: upload it again.") from None
        gallery = LogoGallery(self.model, self.processor, search_backend="torch")
        gallery.add_brand(name, images)
        state = {"brands": dict(state["brands"])}
        state["brands"][name] = {"shots": gallery.shots(name), "thumbnail": _thumbnail_data(images[0])}
        return (state, *self.views(state))

    def remove_brand(self, name: str | None, state: dict[str, Any] | None):
        state = state or _empty_state()
        if not name or name not in state["brands"]:
            raise gr.Error(f"Brand {name!r} is not in the gallery." if name else "Choose a brand to remove.")
        state = {"brands": {b: e for b, e in state["brands"].items() if b != name}}
        return (state, *self.views(state))

    def search(self, image: Any, threshold: float | None, state: dict[str, Any] | None):
        state = state or _empty_state()
        if not state["brands"]:
            raise gr.Error("The gallery is empty: add at least one brand (1-5 example images) before searching.")
        if image is None:
            raise gr.Error("Upload a query image.")
        threshold = self.default_threshold if threshold is None else float(threshold)
        try:
            query = to_rgb(open_image(_file_path(image)))
        except (InvalidImageError, FileNotFoundError) as error:
            raise gr.Error(f"The query is not a readable image: {error}") from None
        matches = self.gallery_of(state).search(query, top_k=TOP_K)
        best = matches[0]
        if best.score >= threshold:
            verdict = f"{best.brand} (cosine {best.score:.3f} ≥ threshold {threshold:.2f})"
        else:
            verdict = f"{UNKNOWN} (best: {best.brand}, cosine {best.score:.3f} < threshold {threshold:.2f})"
        return {m.brand: round(m.score, 4) for m in matches}, verdict

    def download_gallery(self, state: dict[str, Any] | None) -> str:
        state = state or _empty_state()
        if not state["brands"]:
            raise gr.Error("The gallery is empty: there is nothing to download.")
        directory = Path(tempfile.mkdtemp(prefix="logo-gallery-"))
        self.gallery_of(state).save(directory / "gallery")
        archive = directory / "logo-gallery.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in (GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME):
                zf.write(directory / "gallery" / name, arcname=name)
        return str(archive)

    def upload_gallery(self, file: Any, state: dict[str, Any] | None):
        if file is None:
            raise gr.Error("Choose a gallery .zip downloaded from this demo.")
        path = _file_path(file)
        try:
            with tempfile.TemporaryDirectory(prefix="logo-gallery-") as directory:
                with zipfile.ZipFile(path) as zf:
                    members = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
                    if sum(info.file_size for info in members.values()) > MAX_GALLERY_ZIP_BYTES:
                        raise ValueError("the archive is too large for a gallery")
                    for name in (GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME):
                        if name not in members:
                            raise FileNotFoundError(f"the archive has no {name}")
                        Path(directory, name).write_bytes(zf.read(members[name]))
                gallery = LogoGallery.load(directory, self.model, self.processor, search_backend="torch")
        except zipfile.BadZipFile:
            raise gr.Error("This file is not a .zip gallery downloaded from this demo.") from None
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(f"Could not load the gallery: {error}") from None
        state = self.state_of(gallery)
        gr.Info(f"Loaded {len(gallery)} brand(s).")
        return (state, *self.views(state))


# ---------------------------------------------------------------------------------------------------------------------
# UI


def build_demo(
    model: LogoEmbeddingModel | None = None, processor: LogoImageProcessor | None = None, *, untrained: bool = False
) -> gr.Blocks:
    """The demo's `gr.Blocks` for a model and processor (by default: `load_model()`). Launch it with `.launch()`.

    API endpoints: `/add_brand`, `/remove_brand`, `/search`, `/download_gallery`, `/upload_gallery`.
    """
    if model is None:
        model, processor, untrained = load_model(os.environ.get("LOGO_MODEL") or None)
    if processor is None:
        processor = LogoImageProcessor.from_model_config(model.config)
    app = GalleryApp(model, processor, untrained=untrained)

    with gr.Blocks(title="Few-shot logo recognition") as demo:
        gr.Markdown(
            "# Few-shot logo recognition\n"
            f"Register a brand from 1 to {MAX_SHOTS} example images, then upload a photo: the demo ranks your brands "
            "by cosine similarity to their prototype (the mean embedding of their shots) and answers "
            f"*{UNKNOWN}* when the best similarity is under the threshold. Your brands are private to this browser "
            "session; download the gallery to keep them."
        )
        if untrained:
            gr.Markdown(UNTRAINED_WARNING, elem_id="untrained-warning")
        state = gr.State(_empty_state())

        with gr.Row():
            with gr.Column():
                gr.Markdown("## 1. Register brands")
                brand_name = gr.Textbox(label="Brand name", placeholder="Acme", elem_id="brand-name")
                shot_files = gr.File(
                    label=f"Example images (1-{MAX_SHOTS})",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="shot-files",
                )
                add_button = gr.Button("Add brand", variant="primary", elem_id="add-brand")
                with gr.Row():
                    remove_choice = gr.Dropdown(label="Brand to remove", choices=[], interactive=True)
                    remove_button = gr.Button("Remove brand")
                summary = gr.Markdown("The gallery is empty.", elem_id="summary")
                brand_gallery = gr.Gallery(label="Your brands (first shot)", columns=5, height="auto")
                with gr.Accordion("Save or restore the gallery", open=False):
                    download_button = gr.Button("Download gallery (.zip)")
                    download_file = gr.File(label="Gallery archive", interactive=False)
                    upload_file = gr.File(label="Upload a gallery .zip", file_types=[".zip"])
                    upload_button = gr.Button("Load uploaded gallery")
            with gr.Column():
                gr.Markdown("## 2. Recognise a logo")
                query = gr.Image(label="Query image", type="filepath", elem_id="query-image")
                threshold = gr.Slider(
                    -1.0, 1.0, value=app.default_threshold, step=0.01, label="Threshold (cosine similarity)"
                )
                search_button = gr.Button("Recognise", variant="primary", elem_id="search")
                verdict = gr.Textbox(label="Verdict", interactive=False, elem_id="verdict")
                ranking = gr.Label(
                    label=f"Top-{TOP_K} brands (cosine similarity)", num_top_classes=TOP_K, show_heading=False
                )

        views = [state, brand_gallery, remove_choice, summary]
        add_button.click(app.add_brand, [brand_name, shot_files, state], views, api_name="add_brand")
        remove_button.click(app.remove_brand, [remove_choice, state], views, api_name="remove_brand")
        search_button.click(app.search, [query, threshold, state], [ranking, verdict], api_name="search")
        download_button.click(app.download_gallery, [state], [download_file], api_name="download_gallery")
        upload_button.click(app.upload_gallery, [upload_file, state], views, api_name="upload_gallery")

    demo.queue(default_concurrency_limit=2)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("LOGO_MODEL") or None, help="model directory or Hub id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    model, processor, untrained = load_model(args.model)
    demo = build_demo(model, processor, untrained=untrained)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
