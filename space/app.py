"""Gradio demo of few-shot logo recognition: register brands from 1-5 images, then find and name every logo of a
whole photo.

Run locally with `python space/app.py [--model DIR_OR_HUB_ID] [--localizer DIR_OR_HUB_ID]` (or `LOGO_MODEL=...`,
`LOGO_LOCALIZER=...`; `LOGO_RUNTIME=torch` skips the ONNX export), or from Python:
`from space.app import build_demo; build_demo(embedder).launch()`.

The demo is a thin layer over [`modeling_logo.LogoGallery`]: each visitor's state (`gr.State`) is a [`SessionGallery`],
the name of its model and its live gallery; adding, removing and renaming brands are the gallery's, on a copy that
becomes the new state (states are never changed, so sessions can share them). Loaded models
([`modeling_logo.LogoEmbedder`]s) and the logo localiser are shared and only read; what they make of a query photo
is kept for the photos searched last ([`PhotoCache`]). Each request runs on one thread, one request per core. Without a localiser, logos are found by a window search with the
embedding model (it only finds logos of registered brands). Example brands are passed in (`build_demo(...,
example_brands=...)`); only the launcher, `main()`, generates them with `dataset_scripts`.
"""

from __future__ import annotations

import argparse
import os

from logo_commands.checks import ArgumentParser, is_missing_path


#: `--localizer none` (or `LOGO_LOCALIZER=none`) runs without a localiser; the model picker's untrained model.
NO_LOCALIZER = "none"
UNTRAINED_CHOICE = "untrained resnet-small (random weights)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The launcher's command line, `--model` and `--localizer` (defaults: `LOGO_MODEL`, `LOGO_LOCALIZER`): one that
    is neither a folder here nor a possible Hub id exits at once (status 2) with one line on stderr."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("LOGO_MODEL") or None, help="model directory or Hub id")
    parser.add_argument(
        "--localizer",
        default=os.environ.get("LOGO_LOCALIZER") or None,
        help="logo localiser directory or Hub id (default: the first of space/logo-localizer and "
        f"checkpoints/logo-localizer-resnet-small that exists; '{NO_LOCALIZER}': the window search)",
    )
    args = parser.parse_args(argv)
    if args.model and args.model != UNTRAINED_CHOICE and is_missing_path(args.model, folder=True):
        parser.error(f"--model {args.model!r} (or LOGO_MODEL): no such folder, and not a Hub id.")
    localizer = args.localizer
    if localizer and localizer.strip().lower() != NO_LOCALIZER and is_missing_path(localizer, folder=True):
        parser.error(f"--localizer {localizer!r} (or LOGO_LOCALIZER): no such folder, and not a Hub id.")
    return args


if __name__ == "__main__":
    # The command line first, before gradio, torch and the models are imported: `--help` and a mistake in it come
    # back at once, not after the 20-30 s that the imports below take; main() is given what it parsed.
    command_line = parse_args()

import base64
import contextlib
import functools
import hashlib
import html
import io
import logging
import re
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from modeling_logo import (
    BrandMatch,
    InvalidImageError,
    LogoEmbedder,
    LogoEmbeddingConfig,
    LogoEmbeddingModel,
    LogoGallery,
    open_image,
    to_rgb,
)
from modeling_logo.cache import cache_root
from modeling_logo.detection import (
    LogoDetection,
    LogoLocalizer,
    crop_box,
    draw_detections,
)
from modeling_logo.few_shot import GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME


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
#: Threads one request's inference uses (torch's intra-op threads, which ONNX Runtime sessions made afterwards take
#: too). The queue runs one request per core side by side instead: a request's threads would otherwise wait for
#: cores the other requests hold (`benchmarks/space_load.py`).
INFERENCE_THREADS = 1
#: Events between two summaries of gradio's queue statistics (gradio's default: after every event).
ANALYTICS_SUMMARY_EVERY = 100
#: Seconds between the queue's updates of each waiting visitor's place. Gradio's default ("auto") sends every waiting
#: visitor an update each time a request starts: with 20 waiting, 20 messages to serialise, send and read a search.
QUEUE_STATUS_EVERY_S = 1.0


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" in µs, or "max <period>"


def available_cpus() -> int:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's CPU quota (a Space's container
    sees all of the host's cores but may use only its share)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return count


def use_inference_threads(threads: int | None = INFERENCE_THREADS) -> None:
    """Set the process's torch threads to `threads` (`None`: leave them) before the models' ONNX Runtime sessions are
    made, which take torch's count."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"inference_threads must be at least 1, got {threads}.")
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------------
# Model


def runtime_choice() -> str:
    """What runs the models: `LOGO_RUNTIME` (`auto`, `onnxruntime` or `torch`: no ONNX export at start-up), else
    `auto` (ONNX Runtime when installed)."""
    return os.environ.get("LOGO_RUNTIME") or "auto"


def load_embedder(name: str | os.PathLike | None = None) -> tuple[LogoEmbedder, bool]:
    """The embedder of the model `name` (a directory or Hub id), else of the first of `DEFAULT_MODEL_DIRS` that holds
    a model, else of an untrained model; on the runtime of [`runtime_choice`].

    Returns `(embedder, untrained)`.
    """
    if name is None:
        name = next((str(d) for d in DEFAULT_MODEL_DIRS if (d / "config.json").is_file()), None)
    if name is not None and name != UNTRAINED_CHOICE:
        embedder, untrained = LogoEmbedder.from_pretrained(name, runtime=runtime_choice()), False
    else:
        logger.warning("No trained model found: using an UNTRAINED resnet-small model.")
        config = LogoEmbeddingConfig(backbone="resnet-small", image_size=96)
        embedder, untrained = LogoEmbedder(LogoEmbeddingModel(config), runtime=runtime_choice()), True
    # Export it for ONNX Runtime now (cached on disk), rather than on the first visitor's first image.
    embedder.prepare()
    return embedder, untrained


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
    localizer = LogoLocalizer.from_pretrained(name, runtime=runtime_choice())
    localizer(Image.new("RGB", (64, 64), "white"))  # warm up now, rather than on the first visitor's photo
    return localizer


# ---------------------------------------------------------------------------------------------------------------------
# Example brands


@dataclass
class ExampleSet:
    """Example brands: `shots` (image paths) of the brands to register, `queries` as (image path, true brand), the
    box of each shot's logo (`None` where it has none: the whole shot is used), and whether the brands are ones no
    model of this project trained on (`unseen`: so the generated ones of [`prepare_examples`] are)."""

    shots: dict[str, list[str]]
    queries: list[tuple[str, str]]
    boxes: dict[str, list[tuple[float, float, float, float] | None]] = field(default_factory=dict)
    unseen: bool = False


def as_example_set(examples: ExampleSet | Mapping[str, Sequence[str]] | None) -> ExampleSet | None:
    """Example brands as the demo takes them: an `ExampleSet`, or a plain `{brand: [shot paths]}` (no example
    queries then), or `None` (no examples)."""
    if examples is None or isinstance(examples, ExampleSet):
        return examples
    return ExampleSet({brand: [str(path) for path in paths] for brand, paths in examples.items()}, [])


# ---------------------------------------------------------------------------------------------------------------------
# Per-session state: a `SessionGallery`, the name of the session's model and its live `LogoGallery` (each brand's
# thumbnails, one base64 PNG per shot, in its metadata). Callbacks never change a session's gallery: they edit a copy
# and return a new state, so states can be shared (a new session starts with the demo's own) and a search never
# sees a half-made change.


class SessionGallery:
    """A session's state (`gr.State`): the name of its model (a key of the demo's loaded models) and its gallery,
    whose embedder is that model's and whose localiser is the demo's. Immutable: a callback that changes the brands
    returns a new `SessionGallery` ([`GalleryApp.edited`] copies the gallery first).

    Not a dataclass: gradio serialises dataclass values of components (`dataclasses.asdict`) into the page's config.
    """

    __slots__ = ("model", "gallery")

    def __init__(self, model: str, gallery: LogoGallery):
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "gallery", gallery)

    def __setattr__(self, name: str, value: Any):
        raise AttributeError("A SessionGallery is immutable: make a new one (GalleryApp.state_of).")

    def __deepcopy__(self, memo: dict) -> SessionGallery:
        # gr.State deep-copies its initial value for every new session; an immutable state is shared instead (a
        # deep copy would also copy the shared model).
        return self

    def __repr__(self) -> str:
        return f"SessionGallery(model={self.model!r}, brands={self.brands!r})"

    @property
    def brands(self) -> list[str]:
        return self.gallery.brands


def copy_gallery(gallery: LogoGallery, embedder: LogoEmbedder, localizer: LogoLocalizer | None) -> LogoGallery:
    """A new gallery of `embedder` and `localizer` with `gallery`'s brands, shots (bit for bit, nothing re-embedded),
    metadata and threshold; searched with a matrix product (a visitor's gallery is small)."""
    copy = LogoGallery(embedder, threshold=gallery.threshold, search_backend="torch", localizer=localizer)
    brands = gallery.brands
    if brands:
        copy.add_brands({b: gallery.shots(b) for b in brands}, metadata={b: gallery.metadata(b) for b in brands})
    return copy


def _brand_thumbnails(gallery: LogoGallery, brand: str) -> list[str | None]:
    """A brand's thumbnails: one per shot; galleries of earlier versions of the demo kept one per brand, those built
    elsewhere (`logo-gallery build`, `LogoGallery.from_folder`) none: a grey placeholder (`None`) per shot."""
    metadata = gallery.metadata(brand)
    return metadata.get("thumbnails") or (
        [metadata["thumbnail"]] if metadata.get("thumbnail") else [None] * len(gallery.shots(brand))
    )


def _thumbnail_data(image: Image.Image) -> str:
    image = to_rgb(image)
    image.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_THUMBNAIL_DIR = Path(tempfile.gettempdir()) / "logo-space-thumbnails"
_ANNOTATED_DIR = Path(tempfile.gettempdir()) / "logo-space-annotated"


#: Annotated photos older than this are deleted (by a thread of their own every `PRUNE_EVERY_S` seconds, off the
#: requests' path): the browser fetches one right after its answer, and a Space that runs for months would otherwise
#: fill its disk.
ANNOTATED_KEEP_S = 3600
PRUNE_EVERY_S = 600


@functools.cache
def _serve_app_files_in_place() -> None:
    """Have gradio serve the app's own files where they are written (once, under names of their content, never
    changed: `_write_once`) instead of copying every answer's into its cache, and start pruning the annotated photos
    (once per process)."""
    gr.set_static_paths([_THUMBNAIL_DIR, _ANNOTATED_DIR])
    start_pruning(_ANNOTATED_DIR, ANNOTATED_KEEP_S, PRUNE_EVERY_S)


def start_pruning(directory: Path, max_age_s: float, every_s: float) -> threading.Event:
    """Run `_prune(directory, max_age_s)` now and every `every_s` seconds in a daemon thread (a prune lists and stats
    every file: in a request's thread it held up that request and, on the interpreter lock, the others); set the
    returned event to stop it."""
    stop = threading.Event()

    def prune_until_stopped() -> None:
        while not stop.is_set():
            try:
                _prune(directory, max_age_s)
            except OSError as error:  # an unreadable directory: try again next time
                logger.warning("Could not prune %s: %s", directory, error)
            stop.wait(every_s)

    threading.Thread(target=prune_until_stopped, name=f"prune {directory.name}", daemon=True).start()
    return stop


def _write_once(directory: Path, key: bytes, suffix: str, write) -> str:
    """The file `directory/<hash of key><suffix>`, written once (by `write(file)`) and atomically. Gradio rewrites
    its cache file for every returned PIL image, so concurrent answers with the same image could serve it
    half-written; a file is written only once (and its time refreshed when it is returned again, so that `_prune`
    keeps it)."""
    path = directory / f"{hashlib.sha256(key).hexdigest()[:32]}{suffix}"
    try:
        os.utime(path)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, path)
    return str(path)


def _prune(directory: Path, max_age_s: float) -> int:
    """Delete the files of `directory` not written or returned for `max_age_s` seconds; returns how many."""
    deadline, removed = time.time() - max_age_s, 0
    for entry in os.scandir(directory) if directory.is_dir() else ():
        with contextlib.suppress(OSError):  # a file removed or replaced meanwhile (another app's prune, a write)
            if entry.is_file() and entry.stat().st_mtime < deadline:
                os.unlink(entry.path)
                removed += 1
    return removed


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def best_shots_html(gallery: LogoGallery, brand: str) -> str:
    """A brand's shots as inline thumbnails (PNG data URIs), each captioned `<brand> shot <n>`. A thumbnail is a few
    KB: sent within the answer, it costs neither a file copied into gradio's cache nor a request of the browser's
    (together about 11 ms of the server's CPU and 12 ms of a search's wait for two shots, `benchmarks/space_load.py`).
    Thumbnails that are not plain base64 (a gallery file edited by hand) show as the grey placeholder."""
    figures = []
    for i, data in enumerate(_brand_thumbnails(gallery, brand)):
        if not (data and _BASE64.fullmatch(data)):
            data = _placeholder_data()
        caption = html.escape(f"{brand} shot {i + 1}")
        figures.append(
            f'<figure style="margin:0;text-align:center"><img src="data:image/png;base64,{data}" alt="{caption}" '
            f'style="max-height:{THUMBNAIL_SIZE[1]}px"><figcaption>{caption}</figcaption></figure>'
        )
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(figures)}</div>'


def _placeholder_image() -> Image.Image:
    """The grey thumbnail shown for a shot without a usable one."""
    return Image.new("RGB", THUMBNAIL_SIZE, "lightgrey")


@functools.cache
def _placeholder_data() -> str:
    return _thumbnail_data(_placeholder_image())


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
    return _placeholder_image()


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


@dataclass(frozen=True)
class PhotoAnalysis:
    """What the models make of a query photo, whatever the gallery: the localiser's logo boxes and their scores, and
    the unit embeddings of the whole photo (row 0) and of each box's crop (rows 1...)."""

    boxes: list[list[float]]
    box_scores: list[float]
    embeddings: torch.Tensor


class PhotoCache:
    """The `PhotoAnalysis` of the last `size` query photos, by model and photo bytes (thread-safe). Visitors search
    the same photos again (the example scenes, a photo searched again at another threshold or after adding a brand):
    then only the session's ranking is computed. It holds boxes and embeddings, no brand of any session."""

    def __init__(self, size: int = 256):
        self.size = size
        self._entries: OrderedDict[tuple[str, str], PhotoAnalysis] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> PhotoAnalysis | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
            return self._entries.get(key)

    def put(self, key: tuple[str, str], analysis: PhotoAnalysis) -> None:
        with self._lock:
            self._entries[key] = analysis
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class GalleryApp:
    """The demo's callbacks. Loaded embedders are shared and read-only (cached by model name); a session's state, a
    [`SessionGallery`], names the model it uses and holds its `LogoGallery`, whose shot embeddings belong to that
    model. The logo localiser (class-agnostic, so the same for every model) is loaded once and attached to every
    session's gallery; without one, whole photos are searched with windows of the embedding model.

    Args:
        embedder ([`LogoEmbedder`]): the default model's embedder.
        gallery ([`LogoGallery`], *optional*): brands every new session starts with (its embedder's).
        examples (`ExampleSet`, *optional*): example brands and queries (see `main`, which generates them).
    """

    def __init__(
        self,
        embedder: LogoEmbedder,
        *,
        untrained: bool = False,
        model_name: str | None = None,
        examples: ExampleSet | Mapping[str, Sequence[str]] | None = None,
        localizer: LogoLocalizer | None = None,
        localizer_name: str | None = None,
        gallery: LogoGallery | None = None,
    ):
        self.default_model = model_name or (UNTRAINED_CHOICE if untrained else embedder.config.name_or_path or "model")
        self._models = {self.default_model: (embedder, untrained)}
        self._loading = threading.Lock()
        self.examples = as_example_set(examples)
        self.localizer = localizer
        self.localizer_name = localizer_name or (
            getattr(getattr(localizer, "model", None), "name_or_path", "") or "logo localiser"
            if localizer is not None
            else None
        )
        if (
            gallery is not None
            and gallery.embedder is not None
            and gallery.embedder.fingerprint != embedder.fingerprint
        ):
            raise ValueError("The gallery's brands were embedded by another model than `embedder`.")
        initial = copy_gallery(gallery if gallery is not None else LogoGallery(), embedder, localizer)
        self._initial = SessionGallery(self.default_model, initial)
        self.photos = PhotoCache()

    def initial_state(self) -> SessionGallery:
        """A new session's state: the default model, and the brands of the gallery the demo was built with."""
        return self._initial

    def empty_state(self, model: str | None = None) -> SessionGallery:
        """The state of a session of `model` (a loaded one; default: the default model) with no brands."""
        model = model or self.default_model
        embedder, _ = self._models[model]
        return SessionGallery(model, LogoGallery(embedder, search_backend="torch", localizer=self.localizer))

    def localizer_note(self) -> str:
        """What finds the logos of a query photo: the localiser, or the window search (`WINDOW_SEARCH_NOTE`)."""
        if self.localizer is None:
            return WINDOW_SEARCH_NOTE
        threshold = getattr(getattr(self.localizer, "config", None), "score_threshold", None)
        at = f" (box threshold {threshold:.2f})" if threshold is not None else ""
        return f"**Logo localiser:** `{self.localizer_name}`{at}: every logo of the photo is boxed, then named."

    # -- models ---------------------------------------------------------------------------------------------------

    def model_of(self, state: SessionGallery | None) -> tuple[LogoEmbedder, bool]:
        """`(embedder, untrained)` of a session's model."""
        return self._models[(state or self.initial_state()).model]

    def threshold_of(self, state: SessionGallery | None) -> float:
        threshold = getattr(self.model_of(state)[0].config, "similarity_threshold", None)
        return float(threshold) if threshold is not None else DEFAULT_THRESHOLD

    def model_note(self, state: SessionGallery | None) -> str:
        embedder, untrained = self.model_of(state)
        name = (state or self.initial_state()).model
        config = embedder.config
        note = f"**Model:** `{name}` ({config.backbone}, {config.image_size} px, threshold {self.threshold_of(state):.2f})"
        return f"{UNTRAINED_WARNING}\n\n{note}" if untrained else note

    def select_model(self, name: str | None, state: SessionGallery | None):
        """Switch this session to another model (loaded once, then shared); the gallery is emptied, because shot
        embeddings of one model mean nothing to another."""
        name = (name or "").strip()
        if not name:
            raise gr.Error("Choose a model: a local directory or a Hub id.")
        with self._loading:
            if name not in self._models:
                try:
                    self._models[name] = load_embedder(name)
                except (OSError, ValueError) as error:
                    raise gr.Error(f"Could not load model {name!r}: {error}") from None
        had_brands = bool(self.brands_of(state))
        state = self.empty_state(name)
        if had_brands:
            gr.Info("The gallery was emptied: its embeddings belonged to the previous model.")
        return (state, *self.views(state), self.threshold_of(state), self.model_note(state))

    # -- the session's gallery ------------------------------------------------------------------------------------

    def gallery_of(self, state: SessionGallery | None) -> LogoGallery:
        """The session's `LogoGallery` (the state's own: read it, do not change it; see [`GalleryApp.edited`])."""
        return (state or self.initial_state()).gallery

    def edited(self, state: SessionGallery | None) -> LogoGallery:
        """A copy of the session's gallery to change (nothing is re-embedded); [`GalleryApp.state_of`] makes it the
        session's. The state's own gallery stays as it was: shared states and concurrent searches never see a change
        in progress, and a callback that fails changes nothing."""
        state = state or self.initial_state()
        embedder, _ = self.model_of(state)
        return copy_gallery(state.gallery, embedder, self.localizer)

    def state_of(self, gallery: LogoGallery, state: SessionGallery | None) -> SessionGallery:
        """The state of a session (of `state`'s model) whose gallery is now `gallery`."""
        return SessionGallery((state or self.initial_state()).model, gallery)

    def brands_of(self, state: SessionGallery | None) -> list[str]:
        """The brands of a session's gallery, in order."""
        return self.gallery_of(state).brands

    # -- views ----------------------------------------------------------------------------------------------------

    def views(self, state: SessionGallery | None) -> tuple[list[tuple[str, str]], Any, str]:
        """The brand gallery (every shot), the brand dropdown and a summary line for a state."""
        gallery = self.gallery_of(state)
        items = []
        for brand in gallery.brands:
            thumbnails = _brand_thumbnails(gallery, brand)
            items += [
                (_thumbnail_file(thumbnail), f"{brand} ({i + 1}/{len(thumbnails)})")
                for i, thumbnail in enumerate(thumbnails)
            ]
        names = gallery.brands
        # An update, not a component: a `gr.Dropdown` made while the layout is built would be drawn (unlabelled).
        dropdown = gr.update(choices=names, value=names[-1] if names else None)
        summary = f"{len(names)} brand(s) registered: {', '.join(names)}" if names else "The gallery is empty."
        return items, dropdown, summary

    # -- callbacks ------------------------------------------------------------------------------------------------

    def add_brand(
        self,
        name: str | None,
        files: list[Any] | None,
        state: SessionGallery | None,
        webcam: Any = None,
        whole_photos: bool = False,
    ):
        """Register a brand from its shots; with `whole_photos`, each shot is cropped to its most confident logo (as
        `LogoGallery.add_brand(..., locate=True)`, the crop shown as its thumbnail)."""
        state = state or self.initial_state()
        name = (name or "").strip()
        if not name:
            raise gr.Error("Enter a brand name.")
        if name in self.brands_of(state):
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

    def _locate_logos(self, state: SessionGallery, images: list[Image.Image], names: list[str]) -> list[Any]:
        """The most confident logo box of each whole-photo shot, or a `gr.Error` (nothing registered) naming the
        shot where none is found."""
        if self.localizer is None:
            raise gr.Error(
                f"“{WHOLE_PHOTOS_LABEL}” needs a logo localiser, and this demo runs without one: upload crops of the "
                "logo and untick it (or start the demo with --localizer). The gallery is unchanged."
            )
        gallery, boxes = LogoGallery(localizer=self.localizer), []
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
        state: SessionGallery,
        brands: dict[str, list[Image.Image]],
        boxes: dict[str, list[Any] | None] | None = None,
    ):
        """Add brands (each shot cropped to its box, where `boxes` gives one) to the session's gallery, each with a
        thumbnail per shot (the crop) in its metadata."""
        gallery = self.edited(state)
        for name, images in brands.items():
            shot_boxes = (boxes or {}).get(name)
            crops = [
                image if box is None else crop_box(image, box)
                for image, box in zip(images, shot_boxes or [None] * len(images))
            ]
            thumbnails = [_thumbnail_data(crop) for crop in crops]
            gallery.add_brand(name, images, boxes=shot_boxes, metadata={"thumbnails": thumbnails})
        state = self.state_of(gallery, state)
        return (state, *self.views(state))

    def remove_brand(self, name: str | None, state: SessionGallery | None):
        state = state or self.initial_state()
        if not name:
            raise gr.Error("Choose a brand to remove.")
        gallery = self.edited(state)
        try:
            gallery.remove_brand(name)
        except KeyError:
            raise gr.Error(f"Brand {name!r} is not in the gallery.") from None
        state = self.state_of(gallery, state)
        return (state, *self.views(state))

    def rename_brand(self, name: str | None, new_name: str | None, state: SessionGallery | None):
        state = state or self.initial_state()
        new_name = (new_name or "").strip()
        if not name:
            raise gr.Error("Choose a brand to rename.")
        if not new_name:
            raise gr.Error("Enter the new name.")
        gallery = self.edited(state)
        try:
            gallery.rename_brand(name, new_name)  # keeps its place in the list
        except KeyError:
            raise gr.Error(f"Brand {name!r} is not in the gallery.") from None
        except ValueError as error:
            raise gr.Error(str(error)) from None
        state = self.state_of(gallery, state)
        return (state, *self.views(state))

    def load_examples(self, state: SessionGallery | None):
        """Register the example brands (test brands of the generated benchmark, unseen in training)."""
        state = state or self.initial_state()
        if self.examples is None:
            raise gr.Error("No example brands: none were given to this demo (the data generator is not available).")
        registered = set(self.brands_of(state))
        missing = {
            b: [open_image(p) for p in paths] for b, paths in self.examples.shots.items() if b not in registered
        }
        shots = {len(paths) for paths in self.examples.shots.values()}
        gr.Info(f"Registered {len(missing)} example brand(s) from {'/'.join(map(str, sorted(shots)))} shots each.")
        return self._register(state, missing, {b: self.examples.boxes.get(b) for b in missing})

    def search(self, image: Any, threshold: float | None, state: SessionGallery | None):
        """Find every logo of a query photo and name its brand.

        Returns the top-`TOP_K` brands and the verdict for the best logo's crop (or for the whole photo, when no
        logo is found or when it matches better: a query that is itself a logo), the best brand's shots (HTML:
        [`best_shots_html`]), the photo
        annotated with every logo's box and label, and the table of logos found (`DETECTION_HEADERS`).
        """
        state = state or self.initial_state()
        if not self.brands_of(state):
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
            if gallery.localizer is not None:
                analysis = self.analyse_photo(state, query, _file_path(image))
                detections, rankings = self.name_logos(gallery, analysis, threshold)
            else:  # the window search: which windows are logos depends on the brands, so nothing is kept
                detections = gallery.detect(query, threshold)
                crops = [crop_box(query, detections[0].box)] if detections else []
                rankings = gallery.search([query, *crops], top_k=TOP_K)
        except ValueError as error:
            raise gr.Error(f"Could not search the photo: {error}") from None
        # The verdict: the better of the whole photo's ranking and the best logo's.
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
        best_shots = best_shots_html(gallery, best.brand)
        annotated = _annotated_file(draw_detections(query, detections))
        ranking = {m.brand: round(m.score, 4) for m in matches}
        return ranking, verdict, best_shots, annotated, detection_rows(detections)

    @staticmethod
    def name_logos(
        gallery: LogoGallery, analysis: PhotoAnalysis, threshold: float
    ) -> tuple[list[LogoDetection], list[list[BrandMatch]]]:
        """The session's part of a search, as `LogoGallery.detect` names logos: each box of `analysis` named by its
        best brand (`None` under `threshold`), best first; and the top-`TOP_K` brands of the whole photo and, when a
        logo was found, of the best one."""
        photo_matches, *box_matches = gallery.search(analysis.embeddings, top_k=TOP_K)
        named = sorted(
            (
                (
                    LogoDetection(
                        box=tuple(float(v) for v in box),
                        brand=matches[0].brand if matches[0].score >= threshold else None,
                        score=matches[0].score,
                        box_score=float(box_score),
                        best_brand=matches[0].brand,
                    ),
                    matches,
                )
                for box, box_score, matches in zip(analysis.boxes, analysis.box_scores, box_matches)
            ),
            key=lambda pair: -pair[0].score,
        )
        return [detection for detection, _ in named], [photo_matches, *([named[0][1]] if named else [])]

    def analyse_photo(
        self, state: SessionGallery | None, photo: Image.Image, path: str | None = None
    ) -> PhotoAnalysis:
        """The [`PhotoAnalysis`] of a query photo with the session's model and the demo's localiser: its logo boxes
        and, in one batch, the embeddings of the whole photo and of each box's crop (with the embedder's margin, as
        `LogoGallery.detect` crops them). Kept in `self.photos` by model and by the bytes of the file at `path`."""
        state = state or self.initial_state()
        key = None
        if path is not None:
            with open(path, "rb") as file:
                key = (state.model, hashlib.sha256(file.read()).hexdigest())
            if (analysis := self.photos.get(key)) is not None:
                return analysis
        (found,) = self.localizer([photo])
        boxes, box_scores = found["boxes"].tolist(), found["scores"].tolist()
        embedder, _ = self.model_of(state)
        crops = [crop_box(photo, box) for box in boxes]
        embeddings = torch.nn.functional.normalize(embedder.encode([photo, *crops]), dim=-1)
        analysis = PhotoAnalysis(boxes, box_scores, embeddings)
        if key is not None:
            self.photos.put(key, analysis)
        return analysis

    def download_gallery(self, state: SessionGallery | None) -> str:
        state = state or self.initial_state()
        if not self.brands_of(state):
            raise gr.Error("The gallery is empty: there is nothing to download.")
        directory = Path(tempfile.mkdtemp(prefix="logo-gallery-"))
        self.gallery_of(state).save(directory / "gallery")
        archive = directory / "logo-gallery.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in (GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME):
                zf.write(directory / "gallery" / name, arcname=name)
        return str(archive)

    def upload_gallery(self, file: Any, state: SessionGallery | None):
        """Replace the session's gallery with an uploaded zip of the `LogoGallery.save` format: this demo's download,
        or a zipped folder written by `logo-gallery build` / `LogoGallery.save` (the files may sit in a folder
        inside the zip). Its embeddings must come from this session's model."""
        state = state or self.initial_state()
        if file is None:
            raise gr.Error(
                "Choose a gallery .zip: downloaded from this demo, or a zipped `logo-gallery build` folder."
            )
        path = _file_path(file)
        embedder, _ = self.model_of(state)
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
                gallery = LogoGallery.load(directory, embedder, search_backend="torch", localizer=self.localizer)
        except zipfile.BadZipFile:
            raise gr.Error(
                "This file is not a .zip gallery (this demo's download, or a zipped gallery folder)."
            ) from None
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(f"Could not load the gallery: {error}") from None
        state = self.state_of(gallery, state)
        gr.Info(f"Loaded {len(gallery)} brand(s).")
        return (state, *self.views(state))


# ---------------------------------------------------------------------------------------------------------------------
# UI


def build_demo(
    gallery_or_embedder: LogoGallery | LogoEmbedder | None = None,
    *,
    example_brands: ExampleSet | Mapping[str, Sequence[str]] | None = None,
    untrained: bool = False,
    model_name: str | None = None,
    localizer: LogoLocalizer | str | os.PathLike | bool | None = True,
    inference_threads: int | None = INFERENCE_THREADS,
    concurrency_limit: int | None = None,
) -> gr.Blocks:
    """The demo's `gr.Blocks` (launch it with `.launch()`).

    Args:
        gallery_or_embedder ([`LogoEmbedder`] or [`LogoGallery`], *optional*): the embedder of the default model
            (by default [`load_embedder`]: `LOGO_MODEL`, else the first of `DEFAULT_MODEL_DIRS`), or a gallery whose
            embedder it is and whose brands every session starts with (and whose localiser it uses, if any).
        example_brands (`ExampleSet` or `{brand: [shot paths]}`, *optional*): the example brands (and example
            queries) offered by *Add example brands*; none by default. `main` generates unseen test brands
            ([`prepare_examples`]).
        localizer: `True` loads the logo localiser named by `LOGO_LOCALIZER`, else the first of
            `DEFAULT_LOCALIZER_DIRS` ([`load_localizer`]); a path or Hub id loads that one, a `LogoLocalizer` is used
            as it is, `None`/`False` runs without one (window search, with a note).
        inference_threads (`int`, *optional*, defaults to `INFERENCE_THREADS`, 1): torch threads of the process (set
            here, before any model is loaded: ONNX Runtime sessions take torch's count when they are made; an
            embedder already run keeps its session's). `None` leaves the process's setting.
        concurrency_limit (`int`, *optional*): requests run side by side by the queue; defaults to the cores
            available ([`available_cpus`]) over `inference_threads`.

    API endpoints: `/add_brand`, `/remove_brand`, `/rename_brand`, `/search`, `/select_model`, `/load_examples`,
    `/download_gallery`, `/upload_gallery`.
    """
    use_inference_threads(inference_threads)
    gallery = gallery_or_embedder if isinstance(gallery_or_embedder, LogoGallery) else None
    embedder = gallery.embedder if gallery is not None else gallery_or_embedder
    if gallery is not None and embedder is None:
        raise ValueError("build_demo needs a gallery with an embedder (LogoGallery(LogoEmbedder(...))).")
    if embedder is None:
        model_name = model_name or os.environ.get("LOGO_MODEL") or None
        embedder, untrained = load_embedder(model_name)
    localizer_name = None
    if localizer is True and gallery is not None and gallery.localizer is not None:
        localizer = gallery.localizer
    if localizer is True:
        localizer = os.environ.get("LOGO_LOCALIZER") or default_localizer()
        if localizer is None:
            logger.warning("No logo localiser found: whole photos are searched with windows of the embedding model.")
    if isinstance(localizer, (str, os.PathLike)):
        localizer_name, localizer = str(localizer), load_localizer(localizer)
    app = GalleryApp(
        embedder,
        untrained=untrained,
        model_name=model_name,
        examples=example_brands,
        localizer=localizer or None,
        localizer_name=localizer_name,
        gallery=gallery,
    )
    initial = app.initial_state()
    _serve_app_files_in_place()

    with gr.Blocks(title="Few-shot logo recognition", analytics_enabled=False) as demo:
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
        initial_items, _dropdown, initial_summary = app.views(initial)
        initial_names = app.brands_of(initial)
        with gr.Accordion("Model", open=False):
            with gr.Row():
                model_choice = gr.Dropdown(
                    model_choices(app.default_model),
                    value=app.default_model,
                    allow_custom_value=True,
                    label="Model: a local directory or a Hub id",
                    scale=4,
                )
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
                    value=False,
                    label=WHOLE_PHOTOS_LABEL,
                    elem_id="whole-photos",
                    info="Each shot is cropped to the logo the localiser is most confident of"
                    + ("." if app.localizer is not None else " (needs a logo localiser: none is loaded)."),
                )
                add_button = gr.Button("Add brand", variant="primary", elem_id="add-brand")
                if app.examples is not None:
                    examples_button = gr.Button(
                        f"Add {len(app.examples.shots)} example brands"
                        + (" (never seen in training)" if app.examples.unseen else ""),
                        elem_id="add-examples",
                    )
                with gr.Row():
                    brand_choice = gr.Dropdown(
                        label="Brand",
                        choices=initial_names,
                        value=initial_names[-1] if initial_names else None,
                        interactive=True,
                    )
                    new_name = gr.Textbox(label="New name")
                with gr.Row():
                    rename_button = gr.Button("Rename brand")
                    remove_button = gr.Button("Remove brand")
                summary = gr.Markdown(initial_summary, elem_id="summary")
                brand_gallery = gr.Gallery(
                    initial_items or None, label="Your brands and their shots", columns=5, height="auto"
                )
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
                    image_mode=None,  # the upload as it is: the app turns it upright and RGB (gradio would re-encode it)
                    sources=["upload", "webcam", "clipboard"],
                    elem_id="query-image",
                )
                if app.examples is not None and app.examples.queries:
                    gr.Examples(
                        [[path] for path, _ in app.examples.queries],
                        inputs=[query],
                        example_labels=[f"{brand} (query)" for _, brand in app.examples.queries],
                        label="Example scenes (click one; the last brand is unregistered: its logo should be unknown)",
                    )
                threshold = gr.Slider(
                    -1.0, 1.0, value=app.threshold_of(initial), step=0.01, label="Threshold (cosine similarity)"
                )
                search_button = gr.Button("Recognise", variant="primary", elem_id="search")
                annotated = gr.Image(
                    label="Logos found (brand and cosine, or unknown)",
                    type="filepath",
                    interactive=False,
                    elem_id="annotated",
                )
                verdict = gr.Textbox(label="Verdict (best logo)", interactive=False, elem_id="verdict")
                ranking = gr.Label(
                    label=f"Top-{TOP_K} brands of the best logo (cosine similarity)",
                    num_top_classes=TOP_K,
                    show_heading=False,
                )
                detections = gr.Dataframe(
                    headers=DETECTION_HEADERS,
                    label="Logos found, best first",
                    interactive=False,
                    elem_id="detections",
                    wrap=True,
                )
                best_shots = gr.HTML(
                    label="Shots of the best match",
                    show_label=True,
                    container=True,
                    padding=True,
                    elem_id="best-shots",
                )

        # All events wait in one queue: at most `concurrency_limit` of them run at once in all (one core each).
        one_queue = {"concurrency_id": "inference"}
        views = [state, brand_gallery, brand_choice, summary]
        add_button.click(
            app.add_brand,
            [brand_name, shot_files, state, webcam_shot, whole_photos],
            views,
            api_name="add_brand",
            **one_queue,
        )
        remove_button.click(app.remove_brand, [brand_choice, state], views, api_name="remove_brand", **one_queue)
        rename_button.click(
            app.rename_brand, [brand_choice, new_name, state], views, api_name="rename_brand", **one_queue
        )
        search_button.click(
            app.search,
            [query, threshold, state],
            [ranking, verdict, best_shots, annotated, detections],
            api_name="search",
            **one_queue,
        )
        model_button.click(
            app.select_model,
            [model_choice, state],
            [*views, threshold, model_note],
            api_name="select_model",
            **one_queue,
        )
        if app.examples is not None:
            examples_button.click(app.load_examples, [state], views, api_name="load_examples", **one_queue)
        download_button.click(app.download_gallery, [state], [download_file], api_name="download_gallery", **one_queue)
        upload_button.click(app.upload_gallery, [upload_file, state], views, api_name="upload_gallery", **one_queue)

    if concurrency_limit is None:
        concurrency_limit = max(1, available_cpus() // (inference_threads or torch.get_num_threads()))
    # Gradio's queue summarises its last 10,000 events with pandas after every event by default (about 9 ms, 21 ms at
    # 10,000 events, of every request's CPU); every 100 events is enough for its monitoring page.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_SUMMARY_EVERY))
    demo.queue(default_concurrency_limit=concurrency_limit, status_update_rate=QUEUE_STATUS_EVERY_S)
    return demo


# ---------------------------------------------------------------------------------------------------------------------
# The launcher: the example brands are generated here (with dataset_scripts), not by the demo itself.


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
            synthesize(
                directory,
                EXAMPLE_BRANDS + 1,
                per_brand,
                seed=seed,
                workers=1,
                progress=False,
                brand_filter=lambda brand: hash_split_of(brand.folder) == "test",
                overwrite=True,
            )
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
    return ExampleSet(shots, queries, boxes, unseen=True)


def main(argv: list[str] | None = None, *, args: argparse.Namespace | None = None) -> None:
    """Launch the Space as `python space/app.py ARGS` does (`argv`, or `args` parsed already by `parse_args`)."""
    args = parse_args(argv) if args is None else args
    logging.basicConfig(level=logging.INFO)
    use_inference_threads()  # before the models are loaded (and exported for ONNX Runtime)
    embedder, untrained = load_embedder(args.model)
    demo = build_demo(
        embedder,
        example_brands=prepare_examples(),
        untrained=untrained,
        model_name=args.model,
        localizer=args.localizer or True,
    )
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        ssr_mode=False,
    )


if __name__ == "__main__":
    main(args=command_line)
