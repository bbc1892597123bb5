"""Gradio demo of few-shot logo recognition: register brands from 1-5 images, then find and name every logo of a
whole photo.

Run locally with `python space/app.py [--model DIR_OR_HUB_ID] [--localizer DIR_OR_HUB_ID]` (or `LOGO_MODEL=...`,
`LOGO_LOCALIZER=...`). Each visitor has their own gallery of brands and their own choice of model (kept in
`gr.State`); loaded models, and the logo localiser, are shared and only read. Without a localiser, logos are found by
a window search with the embedding model (it only finds logos of registered brands).
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
from dataclasses import dataclass, field  # noqa: E402
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
from modeling_logo.detection import (  # noqa: E402
    LogoDetection,
    LogoLocalizer,
    crop_box,
    draw_detections,
)
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
#: Logo localisers tried in order when none is named: one copied next to app.py (a Space), then the one shipped with
#: the repository. `--localizer none` (or `LOGO_LOCALIZER=none`) runs without one.
DEFAULT_LOCALIZER_DIRS = (
    _HERE / "logo-localizer",
    _HERE.parent / "checkpoints" / "logo-localizer-resnet-small",
)
NO_LOCALIZER = "none"
UNTRAINED_CHOICE = "untrained resnet-small (random weights)"
# Example brands: generated at start-up from real CC0 marks, among the *test* brands of the hash split that every
# model of this project holds out, so the demo shows brands the model never saw.
EXAMPLE_BRANDS, EXAMPLE_SHOTS, EXAMPLE_QUERIES = 6, 5, 2
UNTRAINED_WARNING = (
    "⚠️ **Untrained model.** No trained model was found (set `LOGO_MODEL` or `--model`, or run `python train.py` to "
    "create `runs/logo-model`), so this demo uses a randomly initialised network: its similarities are meaningless "
    "except for near-identical images."
)
WINDOW_SEARCH_NOTE = (
    "ℹ️ **No logo localiser: window search.** No localiser was found (set `LOGO_LOCALIZER` or `--localizer`, or "
    "train `checkpoints/logo-localizer-resnet-small` with `python train_localizer.py`), so logos are found by "
    "embedding windows of the photo at four scales: slower, and it only finds logos of *registered* brands (no "
    "*unknown* boxes)."
)
WHOLE_PHOTOS_LABEL = "Shots are whole photos (crop the most confident logo)"
#: Columns of the table of logos found in a query photo (one row per logo, best first).
DETECTION_HEADERS = ["#", "Brand", "Cosine", "Box score", "Closest brand", "Box (xmin, ymin, xmax, ymax)"]


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


def default_localizer() -> str | None:
    """The first of `DEFAULT_LOCALIZER_DIRS` that holds a saved localiser, else `None`."""
    return next((str(d) for d in DEFAULT_LOCALIZER_DIRS if (d / "config.json").is_file()), None)


def load_localizer(name: str | os.PathLike | None = None) -> LogoLocalizer | None:
    """The logo localiser saved at `name` (a directory or Hub id), else the first of `DEFAULT_LOCALIZER_DIRS` that
    holds one, else `None` (logos are then found by the window search). `name="none"` gives `None`."""
    name = name if name is not None else default_localizer()
    if name is None:
        logger.warning("No logo localiser found: whole photos are searched with windows of the embedding model.")
    if name is None or str(name).strip().lower() == NO_LOCALIZER:
        return None
    localizer = LogoLocalizer.from_pretrained(name)
    localizer(Image.new("RGB", (64, 64), "white"))  # warm up now, rather than on the first visitor's photo
    return localizer


# ---------------------------------------------------------------------------------------------------------------------
# Example brands


@dataclass
class ExampleSet:
    """Generated example scenes: `shots` of the brands to register, `queries` as (image path, true brand), and the
    annotated box of each shot's logo (`None` where it has none: the whole shot is used)."""

    shots: dict[str, list[str]]
    queries: list[tuple[str, str]]
    boxes: dict[str, list[tuple[float, float, float, float] | None]] = field(default_factory=dict)


def _logo_box(record) -> tuple[float, float, float, float] | None:
    """The largest annotated logo of a generated scene's own brand folder (a scene may hold other brands' logos)."""
    from dataset_scripts.voc import read_voc

    try:
        _size, objects = read_voc(record.xml_path)
    except (OSError, ValueError, TypeError, SyntaxError):  # ElementTree's ParseError is a SyntaxError
        return None
    own = [box for name, box in objects if name == record.image_path.parent.name]
    return max(own, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)


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
    records = defaultdict(list)
    for record in sorted(scan_data_dir(directory).records, key=lambda r: (r.brand, r.design, int(r.image_path.stem))):
        records[record.brand].append(record)
    brands = sorted(records)
    shots = {brand: [str(r.image_path) for r in records[brand][:EXAMPLE_SHOTS]] for brand in brands[:EXAMPLE_BRANDS]}
    boxes = {brand: [_logo_box(r) for r in records[brand][:EXAMPLE_SHOTS]] for brand in shots}
    queries = [(str(r.image_path), brand) for brand in brands for r in records[brand][-EXAMPLE_QUERIES:]]
    return ExampleSet(shots, queries, boxes)


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
_ANNOTATED_DIR = Path(tempfile.gettempdir()) / "logo-space-annotated"


def _write_once(directory: Path, key: bytes, suffix: str, write) -> str:
    """The file `directory/<hash of key><suffix>`, written once (by `write(file)`) and atomically. Gradio rewrites
    its cache file for every returned PIL image, so concurrent answers with the same image could serve it
    half-written; a file is copied only once."""
    path = directory / f"{hashlib.sha256(key).hexdigest()[:32]}{suffix}"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, path)
    return str(path)


def _thumbnail_file(data: str | None) -> str:
    """A thumbnail as a PNG file, written once and atomically (see `_write_once`)."""
    return _write_once(
        _THUMBNAIL_DIR, (data or "").encode(), ".png", lambda f: _thumbnail_image(data).save(f, format="PNG")
    )


def _thumbnail_image(data: str | None) -> Image.Image:
    if data:
        try:
            return open_image(base64.b64decode(data))
        except (InvalidImageError, ValueError):
            pass
    return Image.new("RGB", THUMBNAIL_SIZE, "lightgrey")


def _annotated_file(image: Image.Image) -> str:
    """The annotated photo as a JPEG file, written once and atomically (see `_write_once`)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, subsampling=0)  # 4:4:4: thin boxes keep their colour
    data = buffer.getvalue()
    return _write_once(_ANNOTATED_DIR, data, ".jpg", lambda f: f.write(data))


def detection_rows(detections: list[LogoDetection]) -> list[list[Any]]:
    """The table of logos found: one row per detection (`DETECTION_HEADERS`), best first."""
    return [
        [
            i + 1,
            detection.brand or "unknown",
            round(detection.score, 3),
            round(detection.box_score, 3),
            detection.best_brand or "",
            ", ".join(str(round(value)) for value in detection.box),
        ]
        for i, detection in enumerate(detections)
    ]


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
    model it uses and holds its brands' shot embeddings, which belong to that model. The logo localiser (class-
    agnostic, so the same for every model) is loaded once and attached to every session's gallery; without one,
    whole photos are searched with windows of the embedding model."""

    def __init__(
        self,
        model: LogoEmbeddingModel,
        processor: LogoImageProcessor,
        *,
        untrained: bool = False,
        model_name: str | None = None,
        examples: ExampleSet | None = None,
        localizer: LogoLocalizer | None = None,
        localizer_name: str | None = None,
    ):
        self.default_model = model_name or (
            UNTRAINED_CHOICE if untrained else getattr(model, "name_or_path", "") or "model"
        )
        self._models = {self.default_model: (model.eval(), processor, untrained)}
        self._loading = threading.Lock()
        self.examples = examples
        self.localizer = localizer
        self.localizer_name = localizer_name or (
            getattr(getattr(localizer, "model", None), "name_or_path", "") or "logo localiser"
            if localizer is not None
            else None
        )

    def localizer_note(self) -> str:
        """What finds the logos of a query photo: the localiser, or the window search (`WINDOW_SEARCH_NOTE`)."""
        if self.localizer is None:
            return WINDOW_SEARCH_NOTE
        threshold = getattr(getattr(self.localizer, "config", None), "score_threshold", None)
        at = f" (box threshold {threshold:.2f})" if threshold is not None else ""
        return f"**Logo localiser:** `{self.localizer_name}`{at}: every logo of the photo is boxed, then named."

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

    def new_gallery(self, state: dict[str, Any] | None) -> LogoGallery:
        """An empty `LogoGallery` of a session's model, with the shared localiser."""
        model, processor, _ = self.model_of(state)
        return LogoGallery(model, processor, search_backend="torch", localizer=self.localizer)

    def gallery_of(self, state: dict[str, Any] | None) -> LogoGallery:
        """A `LogoGallery` rebuilt from a session's stored embeddings (cheap: nothing is re-embedded)."""
        gallery = self.new_gallery(state)
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
            metadata, shots = gallery.metadata(brand), gallery.shots(brand).tolist()
            # Galleries of earlier versions kept one thumbnail per brand; those built elsewhere (`logo-gallery
            # build`, `LogoGallery.from_folder`) none: a grey placeholder per shot.
            thumbnails = metadata.get("thumbnails") or (
                [metadata["thumbnail"]] if metadata.get("thumbnail") else [None] * len(shots)
            )
            brands[brand] = {"shots": shots, "thumbnails": thumbnails}
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

    def add_brand(
        self,
        name: str | None,
        files: list[Any] | None,
        state: dict[str, Any] | None,
        webcam: Any = None,
        whole_photos: bool = False,
    ):
        """Register a brand from its shots; with `whole_photos`, each shot is cropped to its most confident logo (as
        `LogoGallery.add_brand(..., locate=True)`, the crop shown as its thumbnail)."""
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
        images = [_open_upload(item) for item in files]
        boxes = (
            self._locate_logos(state, images, [Path(_file_path(item)).name for item in files])
            if whole_photos
            else None
        )
        return self._register(state, {name: images}, {name: boxes})

    def _locate_logos(self, state: dict[str, Any], images: list[Image.Image], names: list[str]) -> list[Any]:
        """The most confident logo box of each whole-photo shot, or a `gr.Error` (nothing registered) naming the
        shot where none is found."""
        if self.localizer is None:
            raise gr.Error(
                f"“{WHOLE_PHOTOS_LABEL}” needs a logo localiser, and this demo runs without one: upload crops of the "
                "logo and untick it (or start the demo with --localizer). The gallery is unchanged."
            )
        gallery, boxes = self.new_gallery(state), []
        for image, name in zip(images, names):
            box = gallery.locate(image)
            if box is None:
                raise gr.Error(
                    f"No logo was found in {name}: upload a crop of the logo (and untick “{WHOLE_PHOTOS_LABEL}”) or "
                    "a photo where it is clearer. The gallery is unchanged."
                )
            boxes.append(box)
        return boxes

    def _register(
        self,
        state: dict[str, Any],
        brands: dict[str, list[Image.Image]],
        boxes: dict[str, list[Any] | None] | None = None,
    ):
        """Embed and add brands (each shot cropped to its box, where `boxes` gives one) to a copy of the state."""
        gallery = self.new_gallery(state)
        state = {"model": state.get("model") or self.default_model, "brands": dict(state["brands"])}
        for name, images in brands.items():
            shot_boxes = (boxes or {}).get(name)
            gallery.add_brand(name, images, boxes=shot_boxes)
            crops = [
                image if box is None else crop_box(image, box)
                for image, box in zip(images, shot_boxes or [None] * len(images))
            ]
            state["brands"][name] = {
                "shots": gallery.shots(name).tolist(),
                "thumbnails": [_thumbnail_data(crop) for crop in crops],
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
        return self._register(state, missing, {b: self.examples.boxes.get(b) for b in missing})

    def search(self, image: Any, threshold: float | None, state: dict[str, Any] | None):
        """Find every logo of a query photo and name its brand.

        Returns the top-`TOP_K` brands and the verdict for the best logo's crop (or for the whole photo, when no
        logo is found or when it matches better: a query that is itself a logo), the best brand's shots, the photo
        annotated with every logo's box and label, and the table of logos found (`DETECTION_HEADERS`).
        """
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
        gallery = self.gallery_of(state)
        try:
            detections = gallery.detect(query, threshold)
        except ValueError as error:
            raise gr.Error(f"Could not search the photo: {error}") from None
        # Rank the brands for the best logo's crop and for the whole photo; the better of the two is the verdict.
        candidates = [query, *([crop_box(query, detections[0].box)] if detections else [])]
        rankings = gallery.search(candidates, top_k=TOP_K)
        use_crop = len(rankings) > 1 and rankings[1][0].score >= rankings[0][0].score
        matches = rankings[1] if use_crop else rankings[0]
        found = f"{len(detections)} logo{'s' if len(detections) != 1 else ''} found"
        if use_crop:
            source = f"the best of {found}"
        else:
            source = f"the whole photo ({found if detections else 'no logo found'})"
        best = matches[0]
        if best.score >= threshold:
            verdict = f"{best.brand} (cosine {best.score:.3f} ≥ threshold {threshold:.2f}) · {source}"
        else:
            verdict = f"{UNKNOWN} (best: {best.brand}, cosine {best.score:.3f} < threshold {threshold:.2f}) · {source}"
        best_shots = [
            (_thumbnail_file(t), f"{best.brand} shot {i + 1}")
            for i, t in enumerate(state["brands"][best.brand]["thumbnails"])
        ]
        annotated = _annotated_file(draw_detections(query, detections))
        ranking = {m.brand: round(m.score, 4) for m in matches}
        return ranking, verdict, best_shots, annotated, detection_rows(detections)

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
        """Replace the session's gallery with an uploaded zip of the `LogoGallery.save` format: this demo's download,
        or a zipped folder written by `logo-gallery build` / `LogoGallery.save` (the files may sit in a folder
        inside the zip). Its embeddings must come from this session's model."""
        state = state or _empty_state(self.default_model)
        if file is None:
            raise gr.Error(
                "Choose a gallery .zip: downloaded from this demo, or a zipped `logo-gallery build` folder."
            )
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
            raise gr.Error(
                "This file is not a .zip gallery (this demo's download, or a zipped gallery folder)."
            ) from None
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
    localizer: LogoLocalizer | str | os.PathLike | bool | None = True,
) -> gr.Blocks:
    """The demo's `gr.Blocks` for a model and processor (by default: `load_model()`). Launch it with `.launch()`.

    `examples=True` generates the example brands and queries ([`prepare_examples`]; skipped where the generator is
    unavailable), `False` leaves them out, an `ExampleSet` uses it. `localizer=True` loads the logo localiser named
    by `LOGO_LOCALIZER`, else the first of `DEFAULT_LOCALIZER_DIRS` ([`load_localizer`]); a path or Hub id loads
    that one, a `LogoLocalizer` is used as it is, `None`/`False` runs without one (window search, with a note).
    API endpoints: `/add_brand`, `/remove_brand`, `/rename_brand`, `/search`, `/select_model`, `/load_examples`,
    `/download_gallery`, `/upload_gallery`.
    """
    if model is None:
        model_name = model_name or os.environ.get("LOGO_MODEL") or None
        model, processor, untrained = load_model(model_name)
    if processor is None:
        processor = LogoImageProcessor.from_model_config(model.config)
    localizer_name = None
    if localizer is True:
        localizer = os.environ.get("LOGO_LOCALIZER") or default_localizer()
        if localizer is None:
            logger.warning("No logo localiser found: whole photos are searched with windows of the embedding model.")
    if isinstance(localizer, (str, os.PathLike)):
        localizer_name, localizer = str(localizer), load_localizer(localizer)
    example_set = prepare_examples() if examples is True else (examples or None)
    app = GalleryApp(
        model, processor, untrained=untrained, model_name=model_name, examples=example_set,
        localizer=localizer or None, localizer_name=localizer_name,
    )  # fmt: skip
    initial = _empty_state(app.default_model)

    with gr.Blocks(title="Few-shot logo recognition") as demo:
        gr.Markdown(
            "# Few-shot logo recognition\n"
            f"Register a brand from 1 to {MAX_SHOTS} example images (crops of its logo, or whole photos), then upload "
            "a photo: the demo finds every logo in it, boxes each one and names its brand by cosine similarity to "
            "the brands' prototypes (the mean embedding of their shots), or *unknown* when the similarity is under "
            "the threshold. Your brands are private to this browser session; download the gallery to keep them."
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
                    label=f"Example images (1-{MAX_SHOTS}, SVG too; remove one with its ×)",
                    file_count="multiple",
                    file_types=["image", ".svg", ".svgz"],
                    elem_id="shot-files",
                )
                webcam_shot = gr.Image(label="… or a webcam snapshot", sources=["webcam"], type="filepath", height=160)
                whole_photos = gr.Checkbox(
                    value=False, label=WHOLE_PHOTOS_LABEL, elem_id="whole-photos",
                    info="Each shot is cropped to the logo the localiser is most confident of"
                    + ("." if app.localizer is not None else " (needs a logo localiser: none is loaded)."),
                )  # fmt: skip
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
                    upload_file = gr.File(
                        label="Upload a gallery .zip (downloaded here, or a zipped `logo-gallery build` folder)",
                        file_types=[".zip"],
                    )
                    upload_button = gr.Button("Load uploaded gallery")
            with gr.Column():
                gr.Markdown("## 2. Recognise the logos of a photo")
                gr.Markdown(app.localizer_note(), elem_id="localizer-note")
                query = gr.Image(
                    label="Query photo",
                    type="filepath",
                    sources=["upload", "webcam", "clipboard"],
                    elem_id="query-image",
                )
                if app.examples is not None:
                    gr.Examples(
                        [[path] for path, _ in app.examples.queries], inputs=[query],
                        example_labels=[f"{brand} (query)" for _, brand in app.examples.queries],
                        label="Example scenes (click one; the last brand is unregistered: its logo should be unknown)",
                    )  # fmt: skip
                threshold = gr.Slider(
                    -1.0, 1.0, value=app.threshold_of(initial), step=0.01, label="Threshold (cosine similarity)"
                )
                search_button = gr.Button("Recognise", variant="primary", elem_id="search")
                annotated = gr.Image(
                    label="Logos found (brand and cosine, or unknown)", type="filepath", interactive=False,
                    elem_id="annotated",
                )  # fmt: skip
                verdict = gr.Textbox(label="Verdict (best logo)", interactive=False, elem_id="verdict")
                ranking = gr.Label(
                    label=f"Top-{TOP_K} brands of the best logo (cosine similarity)", num_top_classes=TOP_K,
                    show_heading=False,
                )  # fmt: skip
                detections = gr.Dataframe(
                    headers=DETECTION_HEADERS, label="Logos found, best first", interactive=False,
                    elem_id="detections", wrap=True,
                )  # fmt: skip
                best_shots = gr.Gallery(
                    label="Shots of the best match", columns=5, height="auto", elem_id="best-shots"
                )

        views = [state, brand_gallery, brand_choice, summary]
        add_button.click(
            app.add_brand, [brand_name, shot_files, state, webcam_shot, whole_photos], views, api_name="add_brand"
        )
        remove_button.click(app.remove_brand, [brand_choice, state], views, api_name="remove_brand")
        rename_button.click(app.rename_brand, [brand_choice, new_name, state], views, api_name="rename_brand")
        search_button.click(
            app.search, [query, threshold, state], [ranking, verdict, best_shots, annotated, detections],
            api_name="search",
        )  # fmt: skip
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
    parser.add_argument(
        "--localizer",
        default=os.environ.get("LOGO_LOCALIZER") or None,
        help="logo localiser directory or Hub id (default: the first of space/logo-localizer and "
        f"checkpoints/logo-localizer-resnet-small that exists; '{NO_LOCALIZER}': the window search)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    model, processor, untrained = load_model(args.model)
    demo = build_demo(model, processor, untrained=untrained, model_name=args.model, localizer=args.localizer or True)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
