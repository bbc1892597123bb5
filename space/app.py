"""Gradio demo of few-shot logo recognition: register brands from 1-5 images, then recognise them in new photos.

Run locally with `python space/app.py [--model DIR_OR_HUB_ID]` (or `LOGO_MODEL=...`). Each visitor has their own
gallery of brands and their own choice of model (kept in `gr.State`); loaded models are shared and only read.
"""

from __future__ import annotations

import os


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry

import argparse  # noqa: E402
import base64  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import zipfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
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
from modeling_logo.cache import cache_root  # noqa: E402
from modeling_logo.few_shot import (  # noqa: E402
    GALLERY_CONFIG_NAME,
    GALLERY_WEIGHTS_NAME,
    embedding_function,
    load_model_and_processor,
)


logger = logging.getLogger(__name__)

MAX_SHOTS = 5
TOP_K = 3
DEFAULT_THRESHOLD = 0.5
UNKNOWN = "unknown brand"
THUMBNAIL_SIZE = (96, 96)
MAX_GALLERY_ZIP_BYTES = 50 * 1024 * 1024  # uncompressed size of an uploaded gallery
MAX_IMAGE_PIXELS = 40_000_000  # larger uploads are refused before decoding
_HERE = Path(__file__).resolve().parent
#: Models tried in order when none is named: one copied next to app.py (a Space), the checkpoint shipped with the
#: repository, then the main job's output.
DEFAULT_MODEL_DIRS = (
    _HERE / "logo-model",
    _HERE.parent / "checkpoints" / "logo-embedding-resnet-small",
    Path("runs/logo-model"),
    _HERE.parent / "runs" / "logo-model",
)
UNTRAINED_CHOICE = "untrained resnet-small (random weights)"
# Example brands: generated at start-up from real CC0 marks, among the *test* brands of the hash split that every
# model of this project holds out, so the demo shows brands the model never saw.
EXAMPLE_BRANDS, EXAMPLE_SHOTS, EXAMPLE_QUERIES = 6, 5, 2
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
    if name is not None and name != UNTRAINED_CHOICE:
        model, processor = load_model_and_processor(name)
        untrained = False
    else:
        logger.warning("No trained model found: using an UNTRAINED resnet-small model.")
        config = LogoEmbeddingConfig(backbone="resnet-small", image_size=96)
        model, processor, untrained = (
            LogoEmbeddingModel(config).eval(),
            LogoImageProcessor.from_model_config(config),
            True,
        )
    # Export it for ONNX Runtime now (cached on disk), rather than on the first visitor's first image.
    embedding_function(model)
    return model, processor, untrained


def model_choices(current: str) -> list[str]:
    """The models offered in the picker: `current`, the default directories that hold a model, the untrained one."""
    found = [str(d) for d in DEFAULT_MODEL_DIRS if (d / "config.json").is_file()]
    return list(dict.fromkeys([current, *found, UNTRAINED_CHOICE]))


# ---------------------------------------------------------------------------------------------------------------------
# Example brands


@dataclass
class ExampleSet:
    """Generated example scenes: `shots` of the brands to register, and `queries` as (image path, true brand)."""

    shots: dict[str, list[str]]
    queries: list[tuple[str, str]]


def prepare_examples(directory: str | os.PathLike | None = None, seed: int = 0) -> ExampleSet | None:
    """Generate (once, cached in `directory`) scenes of `EXAMPLE_BRANDS + 1` test brands: `EXAMPLE_SHOTS` shots of the
    first ones to register and `EXAMPLE_QUERIES` queries each; the last brand only gives queries, to be rejected.

    Returns `None` (and logs why) when the generator or its marks are unavailable: the demo works without examples.
    """
    try:
        from dataset_scripts.logo_sources import MarkSourceError
        from dataset_scripts.logodet3k import hash_split_of, scan_data_dir
        from dataset_scripts.synthesize import synthesize
    except ImportError as error:
        logger.info("No example brands: the data generator is not installed (%s).", error)
        return None
    directory = Path(directory or cache_root() / f"space-examples-{seed}")
    per_brand = EXAMPLE_SHOTS + EXAMPLE_QUERIES
    if not any(directory.glob("*/*/*.xml")):
        try:
            synthesize(directory, EXAMPLE_BRANDS + 1, per_brand, seed=seed, workers=1, progress=False,
                       brand_filter=lambda brand: hash_split_of(brand.folder) == "test", overwrite=True)  # fmt: skip
        except (MarkSourceError, OSError, ValueError) as error:
            logger.warning("No example brands: %s", error)
            return None
    images = defaultdict(list)
    for record in sorted(scan_data_dir(directory).records, key=lambda r: (r.brand, r.design, int(r.image_path.stem))):
        images[record.brand].append(str(record.image_path))
    brands = sorted(images)
    shots = {brand: images[brand][:EXAMPLE_SHOTS] for brand in brands[:EXAMPLE_BRANDS]}
    queries = [(path, brand) for brand in brands for path in images[brand][-EXAMPLE_QUERIES:]]
    return ExampleSet(shots, queries)


# ---------------------------------------------------------------------------------------------------------------------
# Per-session state: plain data (the model's name; brand -> shot embeddings and thumbnails), never the model itself.


def _empty_state(model: str = "") -> dict[str, Any]:
    return {"model": model, "brands": {}}


def _thumbnail_data(image: Image.Image) -> str:
    image = to_rgb(image)
    image.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_THUMBNAIL_DIR = Path(tempfile.gettempdir()) / "logo-space-thumbnails"


def _thumbnail_file(data: str | None) -> str:
    """A thumbnail as a PNG file, written once and atomically. Gradio rewrites its cache file for every returned PIL
    image, so concurrent answers with the same thumbnail could serve it half-written; a file is copied only once."""
    path = _THUMBNAIL_DIR / f"{hashlib.sha256((data or '').encode()).hexdigest()[:32]}.png"
    if not path.exists():
        _THUMBNAIL_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=_THUMBNAIL_DIR, suffix=".tmp", delete=False) as tmp:
            _thumbnail_image(data).save(tmp, format="PNG")
        os.replace(tmp.name, path)
    return str(path)


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


def _open_upload(item: Any) -> Image.Image:
    """An uploaded image, upright (EXIF) and RGB, or a `gr.Error` that names the file and says what is wrong."""
    path = _file_path(item)
    try:
        with Image.open(path) as probe:  # reads the header only
            size = probe.size
    except (OSError, ValueError, Image.DecompressionBombError):
        size = None  # open_image gives the precise message below
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise gr.Error(
            f"{Path(path).name} is too large ({size[0]}×{size[1]} pixels; at most "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels): downscale it first."
        )
    try:
        return to_rgb(open_image(path))  # to_rgb applies the EXIF orientation
    except InvalidImageError as error:
        raise gr.Error(f"{Path(path).name}: {error}") from None
    except FileNotFoundError:
        raise gr.Error(f"{Path(path).name} could not be read: upload it again.") from None


class GalleryApp:
    """The demo's callbacks. Loaded models are shared and read-only (cached by name); a session's state names the
    model it uses and holds its brands' shot embeddings, which belong to that model."""

    def __init__(
        self,
        model: LogoEmbeddingModel,
        processor: LogoImageProcessor,
        *,
        untrained: bool = False,
        model_name: str | None = None,
        examples: ExampleSet | None = None,
    ):
        self.default_model = model_name or (
            UNTRAINED_CHOICE if untrained else getattr(model, "name_or_path", "") or "model"
        )
        self._models = {self.default_model: (model.eval(), processor, untrained)}
        self._loading = threading.Lock()
        self.examples = examples

    # -- models ---------------------------------------------------------------------------------------------------

    def model_of(self, state: dict[str, Any] | None) -> tuple[LogoEmbeddingModel, LogoImageProcessor, bool]:
        return self._models[(state or {}).get("model") or self.default_model]

    def threshold_of(self, state: dict[str, Any] | None) -> float:
        threshold = getattr(self.model_of(state)[0].config, "similarity_threshold", None)
        return float(threshold) if threshold is not None else DEFAULT_THRESHOLD

    def model_note(self, state: dict[str, Any] | None) -> str:
        model, _, untrained = self.model_of(state)
        name = (state or {}).get("model") or self.default_model
        config = model.config
        note = f"**Model:** `{name}` ({config.backbone}, {config.image_size} px, threshold {self.threshold_of(state):.2f})"
        return f"{UNTRAINED_WARNING}\n\n{note}" if untrained else note

    def select_model(self, name: str | None, state: dict[str, Any] | None):
        """Switch this session to another model (loaded once, then shared); the gallery is emptied, because shot
        embeddings of one model mean nothing to another."""
        name = (name or "").strip()
        if not name:
            raise gr.Error("Choose a model: a local directory or a Hub id.")
        with self._loading:
            if name not in self._models:
                try:
                    self._models[name] = load_model(name)
                except (OSError, ValueError) as error:
                    raise gr.Error(f"Could not load model {name!r}: {error}") from None
        had_brands = bool((state or {}).get("brands"))
        state = _empty_state(name)
        if had_brands:
            gr.Info("The gallery was emptied: its embeddings belonged to the previous model.")
        return (state, *self.views(state), self.threshold_of(state), self.model_note(state))

    def gallery_of(self, state: dict[str, Any] | None) -> LogoGallery:
        """A `LogoGallery` rebuilt from a session's stored embeddings (cheap: nothing is re-embedded)."""
        model, processor, _ = self.model_of(state)
        gallery = LogoGallery(model, processor, search_backend="torch")
        brands = (state or _empty_state())["brands"]
        gallery.add_brands(
            {brand: entry["shots"] for brand, entry in brands.items()},
            metadata={brand: {"thumbnails": entry["thumbnails"]} for brand, entry in brands.items()},
        )
        return gallery

    @staticmethod
    def state_of(gallery: LogoGallery, model: str) -> dict[str, Any]:
        brands = {}
        for brand in gallery.brands:
            metadata = gallery.metadata(brand)
            thumbnails = metadata.get("thumbnails") or [metadata.get("thumbnail")]  # galleries of earlier versions
            brands[brand] = {"shots": gallery.shots(brand).tolist(), "thumbnails": thumbnails}
        return {"model": model, "brands": brands}

    # -- views ----------------------------------------------------------------------------------------------------

    @staticmethod
    def views(state: dict[str, Any]) -> tuple[list[tuple[Image.Image, str]], Any, str]:
        """The brand gallery (every shot), the brand dropdown and a summary line for a state."""
        brands = state["brands"]
        items = [
            (_thumbnail_file(thumbnail), f"{brand} ({i + 1}/{len(entry['thumbnails'])})")
            for brand, entry in brands.items()
            for i, thumbnail in enumerate(entry["thumbnails"])
        ]
        names = list(brands)
        dropdown = gr.Dropdown(choices=names, value=names[-1] if names else None)
        summary = f"{len(names)} brand(s) registered: {', '.join(names)}" if names else "The gallery is empty."
        return items, dropdown, summary

    # -- callbacks ------------------------------------------------------------------------------------------------

    def add_brand(self, name: str | None, files: list[Any] | None, state: dict[str, Any] | None, webcam: Any = None):
        state = state or _empty_state(self.default_model)
        name = (name or "").strip()
        if not name:
            raise gr.Error("Enter a brand name.")
        if name in state["brands"]:
            raise gr.Error(f"Brand {name!r} is already in the gallery: remove it first to replace it.")
        files = [f for f in [*(files or []), webcam] if f is not None]
        if not files:
            raise gr.Error(f"Upload 1 to {MAX_SHOTS} example images of {name!r} (or take a webcam snapshot).")
        if len(files) > MAX_SHOTS:
            raise gr.Error(f"Upload at most {MAX_SHOTS} example images per brand ({len(files)} given).")
        return self._register(state, {name: [_open_upload(item) for item in files]})

    def _register(self, state: dict[str, Any], brands: dict[str, list[Image.Image]]):
        model, processor, _ = self.model_of(state)
        gallery = LogoGallery(model, processor, search_backend="torch")
        state = {"model": state.get("model") or self.default_model, "brands": dict(state["brands"])}
        for name, images in brands.items():
            gallery.add_brand(name, images)
            state["brands"][name] = {
                "shots": gallery.shots(name).tolist(),
                "thumbnails": [_thumbnail_data(image) for image in images],
            }
        return (state, *self.views(state))

    def remove_brand(self, name: str | None, state: dict[str, Any] | None):
        state = state or _empty_state(self.default_model)
        if not name or name not in state["brands"]:
            raise gr.Error(f"Brand {name!r} is not in the gallery." if name else "Choose a brand to remove.")
        state = {**state, "brands": {b: e for b, e in state["brands"].items() if b != name}}
        return (state, *self.views(state))

    def rename_brand(self, name: str | None, new_name: str | None, state: dict[str, Any] | None):
        state = state or _empty_state(self.default_model)
        new_name = (new_name or "").strip()
        if not name or name not in state["brands"]:
            raise gr.Error(f"Brand {name!r} is not in the gallery." if name else "Choose a brand to rename.")
        if not new_name:
            raise gr.Error("Enter the new name.")
        if new_name in state["brands"] and new_name != name:
            raise gr.Error(f"Brand {new_name!r} is already in the gallery.")
        brands = {new_name if b == name else b: e for b, e in state["brands"].items()}  # keeps the order
        state = {**state, "brands": brands}
        return (state, *self.views(state))

    def load_examples(self, state: dict[str, Any] | None):
        """Register the example brands (test brands of the generated benchmark, unseen in training)."""
        state = state or _empty_state(self.default_model)
        if self.examples is None:
            raise gr.Error("No example brands: the data generator or its marks are not available here.")
        missing = {
            b: [open_image(p) for p in paths] for b, paths in self.examples.shots.items() if b not in state["brands"]
        }
        gr.Info(f"Registered {len(missing)} example brand(s) from {EXAMPLE_SHOTS} shots each.")
        return self._register(state, missing)

    def search(self, image: Any, threshold: float | None, state: dict[str, Any] | None):
        state = state or _empty_state(self.default_model)
        if not state["brands"]:
            raise gr.Error("The gallery is empty: add at least one brand (1-5 example images) before searching.")
        if image is None:
            raise gr.Error("Upload a query image.")
        threshold = self.threshold_of(state) if threshold is None else float(threshold)
        try:
            query = _open_upload(image)
        except gr.Error as error:
            raise gr.Error(f"The query is not a usable image: {error.message}") from None
        matches = self.gallery_of(state).search(query, top_k=TOP_K)
        best = matches[0]
        if best.score >= threshold:
            verdict = f"{best.brand} (cosine {best.score:.3f} ≥ threshold {threshold:.2f})"
        else:
            verdict = f"{UNKNOWN} (best: {best.brand}, cosine {best.score:.3f} < threshold {threshold:.2f})"
        best_shots = [
            (_thumbnail_file(t), f"{best.brand} shot {i + 1}")
            for i, t in enumerate(state["brands"][best.brand]["thumbnails"])
        ]
        return {m.brand: round(m.score, 4) for m in matches}, verdict, best_shots

    def download_gallery(self, state: dict[str, Any] | None) -> str:
        state = state or _empty_state(self.default_model)
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
        state = state or _empty_state(self.default_model)
        if file is None:
            raise gr.Error("Choose a gallery .zip downloaded from this demo.")
        path = _file_path(file)
        model, processor, _ = self.model_of(state)
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
                gallery = LogoGallery.load(directory, model, processor, search_backend="torch")
        except zipfile.BadZipFile:
            raise gr.Error("This file is not a .zip gallery downloaded from this demo.") from None
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(f"Could not load the gallery: {error}") from None
        state = self.state_of(gallery, state.get("model") or self.default_model)
        gr.Info(f"Loaded {len(gallery)} brand(s).")
        return (state, *self.views(state))


# ---------------------------------------------------------------------------------------------------------------------
# UI


def build_demo(
    model: LogoEmbeddingModel | None = None,
    processor: LogoImageProcessor | None = None,
    *,
    untrained: bool = False,
    model_name: str | None = None,
    examples: bool | ExampleSet | None = True,
) -> gr.Blocks:
    """The demo's `gr.Blocks` for a model and processor (by default: `load_model()`). Launch it with `.launch()`.

    `examples=True` generates the example brands and queries ([`prepare_examples`]; skipped where the generator is
    unavailable), `False` leaves them out, an `ExampleSet` uses it. API endpoints: `/add_brand`, `/remove_brand`,
    `/rename_brand`, `/search`, `/select_model`, `/load_examples`, `/download_gallery`, `/upload_gallery`.
    """
    if model is None:
        model_name = model_name or os.environ.get("LOGO_MODEL") or None
        model, processor, untrained = load_model(model_name)
    if processor is None:
        processor = LogoImageProcessor.from_model_config(model.config)
    example_set = prepare_examples() if examples is True else (examples or None)
    app = GalleryApp(model, processor, untrained=untrained, model_name=model_name, examples=example_set)
    initial = _empty_state(app.default_model)

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
        state = gr.State(initial)
        with gr.Accordion("Model", open=False):
            with gr.Row():
                model_choice = gr.Dropdown(
                    model_choices(app.default_model), value=app.default_model, allow_custom_value=True,
                    label="Model: a local directory or a Hub id", scale=4,
                )  # fmt: skip
                model_button = gr.Button("Load model", scale=1)
            model_note = gr.Markdown(app.model_note(initial), elem_id="model-note")

        with gr.Row():
            with gr.Column():
                gr.Markdown("## 1. Register brands")
                brand_name = gr.Textbox(label="Brand name", placeholder="Acme", elem_id="brand-name")
                shot_files = gr.File(
                    label=f"Example images (1-{MAX_SHOTS}; remove one with its ×)",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="shot-files",
                )
                webcam_shot = gr.Image(label="… or a webcam snapshot", sources=["webcam"], type="filepath", height=160)
                add_button = gr.Button("Add brand", variant="primary", elem_id="add-brand")
                if app.examples is not None:
                    examples_button = gr.Button(
                        f"Add {len(app.examples.shots)} example brands (never seen in training)",
                        elem_id="add-examples",
                    )
                with gr.Row():
                    brand_choice = gr.Dropdown(label="Brand", choices=[], interactive=True)
                    new_name = gr.Textbox(label="New name")
                with gr.Row():
                    rename_button = gr.Button("Rename brand")
                    remove_button = gr.Button("Remove brand")
                summary = gr.Markdown("The gallery is empty.", elem_id="summary")
                brand_gallery = gr.Gallery(label="Your brands and their shots", columns=5, height="auto")
                with gr.Accordion("Save or restore the gallery", open=False):
                    download_button = gr.Button("Download gallery (.zip)")
                    download_file = gr.File(label="Gallery archive", interactive=False)
                    upload_file = gr.File(label="Upload a gallery .zip", file_types=[".zip"])
                    upload_button = gr.Button("Load uploaded gallery")
            with gr.Column():
                gr.Markdown("## 2. Recognise a logo")
                query = gr.Image(
                    label="Query image",
                    type="filepath",
                    sources=["upload", "webcam", "clipboard"],
                    elem_id="query-image",
                )
                if app.examples is not None:
                    gr.Examples(
                        [[path] for path, _ in app.examples.queries], inputs=[query],
                        example_labels=[f"{brand} (query)" for _, brand in app.examples.queries],
                        label="Example queries (click one; the last brand is not registered: it should be unknown)",
                    )  # fmt: skip
                threshold = gr.Slider(
                    -1.0, 1.0, value=app.threshold_of(initial), step=0.01, label="Threshold (cosine similarity)"
                )
                search_button = gr.Button("Recognise", variant="primary", elem_id="search")
                verdict = gr.Textbox(label="Verdict", interactive=False, elem_id="verdict")
                ranking = gr.Label(
                    label=f"Top-{TOP_K} brands (cosine similarity)", num_top_classes=TOP_K, show_heading=False
                )
                best_shots = gr.Gallery(
                    label="Shots of the best match", columns=5, height="auto", elem_id="best-shots"
                )

        views = [state, brand_gallery, brand_choice, summary]
        add_button.click(app.add_brand, [brand_name, shot_files, state, webcam_shot], views, api_name="add_brand")
        remove_button.click(app.remove_brand, [brand_choice, state], views, api_name="remove_brand")
        rename_button.click(app.rename_brand, [brand_choice, new_name, state], views, api_name="rename_brand")
        search_button.click(app.search, [query, threshold, state], [ranking, verdict, best_shots], api_name="search")
        model_button.click(
            app.select_model, [model_choice, state], [*views, threshold, model_note], api_name="select_model"
        )
        if app.examples is not None:
            examples_button.click(app.load_examples, [state], views, api_name="load_examples")
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
    demo = build_demo(model, processor, untrained=untrained, model_name=args.model)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
