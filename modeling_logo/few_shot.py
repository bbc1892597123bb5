"""Few-shot brand gallery: register a brand from 1-5 example images and recognise it in new images (open set)."""

from __future__ import annotations

import json
import logging
import numbers
import os
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .detection import LogoDetection, LogoLocalizer, as_photo, crop_box
from .embedder import (
    RUNTIMES,
    ImageLike,
    LogoEmbedder,
    Runtime,
    _is_single_image,
    embed_images,
    embedding_function,
    load_model_and_processor,
)
from .fingerprint import LEGACY_FINGERPRINT_LENGTH, legacy_head_fingerprint, model_fingerprint
from .image_processing_logo import InvalidImageError, LogoImageProcessor
from .modeling_logo import LogoEmbeddingModel
from .names import GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME  # in a file the command lines read without torch


class SupportsThreshold(Protocol):
    """What a threshold may also be: anything with a `threshold`, such as the `OperatingPoint` that
    [`~modeling_logo.evaluation.calibrate_threshold`] returns (read by duck typing: this module does not import
    `evaluation`, which imports it)."""

    threshold: float


GALLERY_FORMAT = "logo-gallery"
GALLERY_FORMAT_VERSION = 1

# From this many brands on, "auto" search uses faiss; below it a matmul is as fast and needs no index.
FAISS_MIN_BRANDS = 10_000
#: From this many brands on, "auto" search uses the approximate "faiss-hnsw" index: there exact search of one query
#: passes 1 ms (`benchmarks/gallery_search.py`, one thread of the project's 2-core AVX2 machine: 0.45 ms at 20,000
#: brands, 1.5 ms at 30,000, 5.1 ms at 100,000, 53 ms at 1M), while HNSW stays about 1 ms at 1M.
HNSW_MIN_BRANDS = 30_000
SEARCH_BACKENDS = ("auto", "faiss", "torch", "faiss-ivf", "faiss-hnsw")
#: HNSW graph: links per node, and the candidates of an insertion (faiss's default). At 1M brands, 32 links reached
#: recall@10 0.986 in 0.9 ms where 16 reached 0.957 in 1.0 ms, in a build about as long; an efConstruction of 80 cost
#: 40% more build time for no better recall (`benchmarks/README.md`).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
#: Candidates an HNSW search keeps: at 1M brands, 128 return 99.2% of the exact top-10 in 1.0-1.3 ms for one query
#: (96: 98.6% in 0.9 ms; 192: 99.7% in 1.4-1.6 ms).
HNSW_EF_SEARCH = 128
#: Share of an HNSW index's entries that may be tombstones (removed or replaced prototypes) before it is rebuilt.
HNSW_MAX_STALE_FRACTION = 0.1

#: Images (shots and queries) with a side shorter than this many pixels are accepted with a warning: the embedder
#: upsamples them to its input size, and a logo that small carries little of its design.
MIN_IMAGE_SIDE = 16
#: Brands with more shots than this are accepted with a warning. The gallery is built for few shots (the paper's
#: regime is 1-5); a prototype is their mean, which barely moves after a few dozen, while every shot costs embedding
#: time and memory. Hundreds usually mean a whole data set registered as one brand.
MAX_SHOTS_PER_BRAND = 100
DETECTION_METHODS = ("auto", "localizer", "windows")

#: Operating-system clutter in image folders: neither data nor worth a warning (nor are hidden files).
IGNORED_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrandMatch:
    """A brand ranked for a query, with the cosine similarity of the query to the brand's prototype."""

    brand: str
    score: float


@dataclass(frozen=True)
class SkippedFile:
    """A file (or brand folder) that [`LogoGallery.from_folder`] could not use, and why."""

    path: Path
    reason: str


class LogoGallery:
    r"""
    A gallery of brands for few-shot logo recognition.

    Each brand keeps its shots (the L2-normalised embeddings of its 1..n example images) and a prototype, the mean of
    the shots renormalised to unit length (the paper's prototype). A query is compared with every prototype by cosine
    similarity; `predict` returns the best brand, or `None` ("unknown brand") when the best similarity is below the
    threshold, so that logos of brands outside the gallery are rejected rather than given the nearest brand.

    Adding, removing or renaming a brand touches only that brand: nothing else is re-embedded.

    Brand names are kept stripped of surrounding whitespace and in Unicode NFC, so `"red "` is the brand `"red"`
    (lookups strip too). What is accepted but probably a mistake is logged as a warning: a name equal to another
    brand's up to case, inner spacing or Unicode compatibility forms (`"Red"` next to `"red"`: two brands are kept),
    a shot or query image smaller than `MIN_IMAGE_SIDE` (16) pixels on a side, and a brand with more than
    `MAX_SHOTS_PER_BRAND` (100) shots (the gallery is built for 1-5, the paper's regime; more is allowed, since a
    prototype is a mean, but rarely helps). Arguments of the wrong type or range are a `TypeError` or `ValueError`
    naming the argument.

    Args:
        embedder ([`LogoEmbedder`], *optional*):
            What embeds images (a model, its processor and its runtime). Without one, the gallery works on
            embeddings only ([`~LogoGallery.add_brand_embeddings`], queries given as vectors).
        threshold (`float` or [`~modeling_logo.evaluation.OperatingPoint`], *optional*):
            Default cosine-similarity threshold of `predict`, in `[-1, 1]` (an `OperatingPoint` of
            [`~modeling_logo.evaluation.calibrate_threshold`] gives its `threshold`). Defaults to the model's
            calibrated `config.similarity_threshold`, if any.
        batch_size (`int`, *optional*):
            Images embedded per forward pass. Defaults to the embedder's (32).
        search_backend (`"auto"`, `"torch"`, `"faiss"`, `"faiss-hnsw"` or `"faiss-ivf"`, *optional*, defaults to `"auto"`):
            How queries are matched with the brands' prototypes.

            - `"torch"`: a matrix product, exact; the fastest for galleries of real brands (0.07 ms per query at
              3,000 brands).
            - `"faiss"`: an exact faiss `IndexFlatIP`, the same ranking; faster than torch from
              `FAISS_MIN_BRANDS` (10,000) brands on (53 vs 119 ms for one query among 1M brands).
            - `"faiss-hnsw"`: an approximate faiss HNSW graph (`HNSW_M` links per node), searched with
              `hnsw_ef_search` candidates: at 1M brands, 99.2% of the exact top-10 in 1.0-1.3 ms per query alone
              (exact search: 53 ms). It is built on the first search (1M brands: 500 CPU-seconds, 0.6 GB) and then
              kept in step: new brands are inserted; HNSW cannot delete, so a removed brand (or a brand's replaced
              prototype) becomes a tombstone that every search filters out with a faiss `IDSelector` (5% removed:
              the same recall), and the index is rebuilt once more than `HNSW_MAX_STALE_FRACTION` of it is stale;
              renaming relabels. It is not saved with the gallery: a loaded gallery builds it again.
            - `"faiss-ivf"`: an approximate inverted file of `4·sqrt(brands)` lists searched `ivf_nprobe` at a time
              (1M isotropic clustered vectors: 2.5 ms per query, 99% of the exact top-10), rebuilt after every
              change.
            - `"auto"`: `"torch"` below `FAISS_MIN_BRANDS` brands, `"faiss"` from there, `"faiss-hnsw"` from
              `HNSW_MIN_BRANDS` (30,000: where exact search of one query passes 1 ms).
              [`~LogoGallery.active_search_backend`] says which.

            `benchmarks/gallery_search.py` measures them.
        ivf_nprobe (`int`, *optional*, defaults to 128):
            Lists `"faiss-ivf"` searches per query: more is slower and closer to exact.
        hnsw_ef_search (`int`, *optional*, defaults to `HNSW_EF_SEARCH`):
            Candidates a `"faiss-hnsw"` search keeps (at least `top_k`): more is slower and closer to exact.
        localizer ([`~modeling_logo.detection.LogoLocalizer`], *optional*):
            Finds the logos of a whole photo for [`~LogoGallery.detect`] (and for shots registered with
            `locate=True`). Without one, `detect` falls back to a multi-scale window search with the embedder.

    The runtime (ONNX Runtime or torch) is the embedder's: `LogoEmbedder(model, runtime="torch")`, or
    `LogoGallery.from_pretrained(path, runtime="torch")`. `LogoGallery(model, processor, runtime=...)` still works,
    with a `DeprecationWarning`: it wraps them in a `LogoEmbedder`.

    Example:

    ```python
    >>> gallery = LogoGallery.from_pretrained("./logo-model")  # or LogoGallery(LogoEmbedder(model, processor))
    >>> gallery.add_brand("Acme", ["acme_1.jpg", "acme_2.jpg"])
    >>> gallery.add_brand_embeddings("Globex", globex_vectors)  # (n, D) embeddings made earlier
    >>> gallery.search("photo.jpg", top_k=3)
    [BrandMatch(brand='Acme', score=0.91), ...]
    >>> gallery.predict("photo.jpg", threshold=0.6)
    'Acme'
    >>> gallery.detect("shelf.jpg")  # every logo of a whole photo, with its brand or None (unknown)
    [LogoDetection(box=(12.0, 40.5, 96.2, 80.0), brand='Acme', score=0.83, box_score=0.91, best_brand='Acme'), ...]
    ```
    """

    def __init__(
        self,
        embedder: LogoEmbedder | None = None,
        image_processor: LogoImageProcessor | None = None,
        *,
        threshold: float | SupportsThreshold | None = None,
        batch_size: int | None = None,
        search_backend: Literal["auto", "faiss", "torch", "faiss-ivf", "faiss-hnsw"] = "auto",
        runtime: Runtime | None = None,
        ivf_nprobe: int = 128,
        hnsw_ef_search: int = HNSW_EF_SEARCH,
        localizer: LogoLocalizer | None = None,
    ):
        if search_backend not in SEARCH_BACKENDS:
            raise ValueError(f"search_backend must be one of {SEARCH_BACKENDS}, got {search_backend!r}.")
        for name, value in (
            ("batch_size", batch_size),
            ("ivf_nprobe", ivf_nprobe),
            ("hnsw_ef_search", hnsw_ef_search),
        ):
            if value is not None:
                _check_positive_int(name, value)
        self.embedder = _as_embedder(embedder, image_processor, runtime, batch_size, "LogoGallery")
        self.ivf_nprobe = ivf_nprobe
        self.hnsw_ef_search = hnsw_ef_search
        self.threshold = threshold
        self.batch_size = batch_size or (self.embedder.batch_size if self.embedder is not None else 32)
        self.search_backend = search_backend
        self.embedding_size: int | None = self.embedder.embedding_size if self.embedder is not None else None
        self._shots: dict[str, torch.Tensor] = {}
        self._prototypes: dict[str, torch.Tensor] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._prototype_matrix: torch.Tensor | None = None
        self._brand_list: list[str] | None = None
        self._faiss_index = None
        self._hnsw_index: _HnswIndex | None = None
        self._name_keys: dict[str, str] | None = None  # near-duplicate key -> a brand, built on demand
        self._shared_name_keys: set[str] = set()  # keys that more than one brand has had
        self.localizer = localizer

    @property
    def threshold(self) -> float | None:
        """The default cosine-similarity threshold of `predict` and `detect` (`None`: the model's calibrated one).
        Set it to a float in `[-1, 1]`, or to the `OperatingPoint` of
        [`~modeling_logo.evaluation.calibrate_threshold`] (its `threshold` is kept)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value) -> None:
        self._threshold = None if value is None else _threshold_value(value, "threshold")

    @property
    def model(self):
        """The embedder's model (`None` without an embedder)."""
        return self.embedder.model if self.embedder is not None else None

    @property
    def image_processor(self) -> LogoImageProcessor | None:
        """The embedder's image processor (`None` without an embedder)."""
        return self.embedder.image_processor if self.embedder is not None else None

    @property
    def runtime(self) -> Runtime | None:
        """The embedder's runtime (`None` without an embedder)."""
        return self.embedder.runtime if self.embedder is not None else None

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        *,
        localizer: str | os.PathLike | LogoLocalizer | None = None,
        runtime: Runtime = "auto",
        **kwargs,
    ) -> LogoGallery:
        """An empty gallery embedding with the model saved at `model_name_or_path` (a directory or Hub id; see
        [`LogoEmbedder.from_pretrained`]) on `runtime`, and optionally the logo localiser saved at `localizer` for
        whole photos. Further `kwargs` are [`LogoGallery`]'s."""
        if localizer is not None and not isinstance(localizer, LogoLocalizer):
            localizer = LogoLocalizer.from_pretrained(localizer)
        embedder = _as_embedder(model_name_or_path, None, runtime, kwargs.get("batch_size"), "from_pretrained")
        return cls(embedder, localizer=localizer, **kwargs)

    @classmethod
    def from_folder(
        cls,
        directory: str | os.PathLike,
        embedder: LogoEmbedder | str | os.PathLike,
        image_processor: LogoImageProcessor | None = None,
        *,
        progress: bool | None = None,
        on_skip: Callable[[SkippedFile], None] | None = None,
        runtime: Runtime | None = None,
        **kwargs,
    ) -> LogoGallery:
        """A gallery of the brands of a folder: one sub-folder per brand, named as the brand, holding 1-N example
        images of its logo (any format [`~modeling_logo.open_image`] reads, SVG included; folders inside a brand's
        folder are searched too). Each brand's metadata lists its files (`"files"`, relative to `directory`).

        A long build never stops for one bad file: files that are not readable images, files outside any brand
        folder and brand folders without a readable image are skipped, each reported to `on_skip` (by default a
        logged warning). Images are embedded in batches across brands, with a progress bar (shown by default when
        there is more than one batch).

        Args:
            embedder ([`LogoEmbedder`], `str` or `os.PathLike`): the embedder, or a saved model's directory or Hub id
                (loaded with its image processor, on `runtime`).
            **kwargs: further [`LogoGallery`] arguments (`threshold`, `batch_size`, ...).

        Raises:
            `FileNotFoundError`: `directory` is not a folder. `ValueError`: no brand folder holds a readable image.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{str(directory)!r} is not a folder: give a folder with one sub-folder per brand."
            )
        embedder = _as_embedder(embedder, image_processor, runtime, kwargs.get("batch_size"), "from_folder")
        gallery = cls(embedder, **kwargs)
        report = on_skip or (lambda skipped: logger.warning("Skipped %s: %s", skipped.path, skipped.reason))
        brand_files: dict[str, list[Path]] = {}
        for entry in sorted(directory.iterdir()):
            if _is_clutter(entry):
                continue
            if entry.is_dir():
                brand_files[entry.name] = sorted(
                    path
                    for path in entry.rglob("*")
                    if path.is_file() and not any(_is_clutter(part) for part in path.relative_to(entry).parts)
                )
            else:
                report(SkippedFile(entry, "not in a brand folder (put each brand's images in a folder of its name)"))
        total = sum(map(len, brand_files.values()))
        pending: dict[str, tuple[list[Image.Image], list[str]]] = {}
        show = total > gallery.batch_size if progress is None else progress
        with tqdm(total=total, desc="Brand images", unit="file", disable=not show) as bar:
            for brand, files in brand_files.items():
                images, names = [], []
                for path in files:
                    try:
                        images.append(gallery.image_processor.fetch_images(str(path)))
                        names.append(path.relative_to(directory).as_posix())
                    except (InvalidImageError, OSError) as error:  # OSError: unreadable (permissions, a bad disk)
                        report(SkippedFile(path, str(error)))
                    bar.update(1)
                if not images:
                    report(SkippedFile(directory / brand, "a brand folder without any readable image"))
                    continue
                pending[brand] = (images, names)
                if sum(len(images) for images, _ in pending.values()) >= gallery.batch_size:
                    gallery._add_decoded_brands(pending)
                    pending = {}
            gallery._add_decoded_brands(pending)
        if not len(gallery):
            raise ValueError(
                f"No brand folder in {str(directory)!r} holds a readable image: expected {directory}/<brand>/<images>."
            )
        return gallery

    def _add_decoded_brands(self, brands: Mapping[str, tuple[list[Image.Image], list[str]]]) -> None:
        """Embed the images of several brands in one pass and register each brand with its file names."""
        if not brands:
            return
        embeddings = self.embed([image for images, _ in brands.values() for image in images], progress=False)
        counts = [len(images) for images, _ in brands.values()]
        self.add_brands(
            dict(zip(brands, torch.split(F.normalize(embeddings, dim=-1), counts))),
            metadata={brand: {"files": names} for brand, (_, names) in brands.items()},
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Embedding

    def embed(self, images: Sequence[ImageLike], *, progress: bool | None = None) -> torch.Tensor:
        """Embed images (PIL images, paths, bytes or arrays) in batches with the gallery's embedder: a float32 tensor
        `(len(images), D)` ([`LogoEmbedder.encode`] at the gallery's `batch_size`).

        Args:
            progress (`bool`, *optional*): show a progress bar; by default when there is more than one batch.
        """
        if self.embedder is None:
            raise ValueError(
                "This gallery has no model: pass embeddings (add_brand_embeddings), or create it with a LogoEmbedder "
                "to embed images."
            )
        if _is_single_image(images):
            images = [images]
        return self.embedder.encode(images, batch_size=self.batch_size, show_progress_bar=progress)

    def _embeddings_of(self, items: ImageLike | Sequence[ImageLike]) -> tuple[torch.Tensor, bool]:
        """Embeddings (unit norm, float32, on CPU) of queries, images or ready embeddings; and whether one query was
        given. (Shots are never guessed: `add_brand` takes images, `add_brand_embeddings` embeddings.)

        A 1-D float tensor/array is one embedding, a 2-D one whose rows have the embedding size is several, and so is
        a list of 1-D float vectors; anything else is taken as images.
        """
        if isinstance(items, (np.ndarray, torch.Tensor)) and self._looks_like_embeddings(items):
            vectors = torch.as_tensor(items, dtype=torch.float32).cpu()
            single = vectors.ndim == 1
            vectors = vectors.reshape(-1, vectors.shape[-1])
        else:
            single = _is_single_image(items)
            images = [items] if single else list(items)
            if not images:
                raise ValueError("No images given.")
            if all(
                isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 1 and self._looks_like_embeddings(x)
                for x in images
            ):
                vectors = torch.stack([torch.as_tensor(x, dtype=torch.float32).cpu() for x in images])
            else:
                vectors = self.embed(self._checked_images(images, "query"))
        self._check_embeddings(vectors)
        return F.normalize(vectors, dim=-1), single

    def _checked_images(self, images: list[ImageLike], what: str) -> list[ImageLike]:
        """`images` decoded (paths and bytes opened once, here rather than by the embedder), with a warning for those
        smaller than `MIN_IMAGE_SIDE` on a side. Without an embedder they are returned as they are (`embed` says
        why it cannot embed them)."""
        if self.image_processor is None:
            return images
        images = self.image_processor.fetch_images(list(images))
        sizes = [size for size in map(_image_size, images) if size is not None and min(size) < MIN_IMAGE_SIDE]
        if sizes:
            width, height = min(sizes, key=min)
            logger.warning(
                "%d %s image(s) smaller than %d px on a side (the smallest %dx%d): the embedder upsamples them, and a "
                "logo that small carries little of its design; give larger images.",
                len(sizes),
                what,
                MIN_IMAGE_SIDE,
                width,
                height,
            )
        return images

    def _check_embeddings(self, vectors: torch.Tensor) -> None:
        """Finite, and of the gallery's size (which the first embeddings set)."""
        if not torch.isfinite(vectors).all():
            raise ValueError("Embeddings contain NaN or infinite values.")
        if self.embedding_size is None:
            self.embedding_size = vectors.shape[-1]
        elif vectors.shape[-1] != self.embedding_size:
            raise ValueError(
                f"Embeddings have size {vectors.shape[-1]}, this gallery holds size {self.embedding_size}."
            )

    def _check_new_brand(self, brand: str, overwrite: bool) -> str:
        """The name a new brand is kept under ([`_brand_name`]), refused when it exists (without `overwrite`)."""
        name = _brand_name(brand)
        if name in self._shots and not overwrite:
            raise ValueError(f"Brand {name!r} is already in the gallery: use add_shots() or overwrite=True.")
        return name

    def _note_new_names(self, names: Sequence[str]) -> None:
        """Warn about registered names equal to another brand's up to case, inner whitespace and Unicode compatibility
        forms ("Red" and "red", "ＡＣＭＥ" and "ACME"): probably one brand registered twice. They stay separate brands."""
        if self._name_keys is None:
            self._name_keys, new = {}, set(names)
            for brand in self._shots:
                if brand not in new:
                    self._name_keys.setdefault(_near_duplicate_key(brand), brand)
        clashes = []
        for name in names:
            key = _near_duplicate_key(name)
            other = self._name_keys.setdefault(key, name)
            if other != name:
                clashes.append((name, other))
                self._shared_name_keys.add(key)
        if clashes:
            logger.warning(
                "%d brand name(s) differ from another brand's only by case, spacing or Unicode form (%s): two brands "
                "are kept; if they are one, rename or remove one of them.",
                len(clashes),
                ", ".join(f"{name!r} and {other!r}" for name, other in clashes[:3])
                + (", ..." if len(clashes) > 3 else ""),
            )

    def _forget_name(self, brand: str) -> None:
        """Drop a removed (or renamed) brand's near-duplicate key; a key other brands share is rebuilt on demand."""
        if self._name_keys is None:
            return
        key = _near_duplicate_key(brand)
        if key in self._shared_name_keys:
            self._name_keys = None
        elif self._name_keys.get(key) == brand:
            del self._name_keys[key]

    def _note_shot_counts(self, counts: Mapping[str, int]) -> None:
        """Warn about brands with more than `MAX_SHOTS_PER_BRAND` shots."""
        many = {brand: count for brand, count in counts.items() if count > MAX_SHOTS_PER_BRAND}
        if many:
            most = max(many, key=many.get)
            logger.warning(
                "%d brand(s) have more than %d shots (%r: %d). A gallery expects few shots per brand (1-5 is the "
                "paper's regime): the prototype is their mean, which barely moves after a few dozen, and each costs "
                "embedding time and memory.",
                len(many),
                MAX_SHOTS_PER_BRAND,
                most,
                many[most],
            )

    def _looks_like_embeddings(self, array: np.ndarray | torch.Tensor) -> bool:
        # Images are never 1-D; a 2-D float array is a grayscale image unless its rows have the embedding size.
        floating = (
            array.dtype.is_floating_point
            if isinstance(array, torch.Tensor)
            else np.issubdtype(array.dtype, np.floating)
        )
        size = self.embedding_size if self.embedding_size is not None else array.shape[-1]
        return floating and (array.ndim == 1 or (array.ndim == 2 and array.shape[-1] == size))

    # ----------------------------------------------------------------------------------------------------------------
    # Brands

    @property
    def brands(self) -> list[str]:
        """Brand names, in the order they were added."""
        return list(self._shots)

    def __len__(self) -> int:
        return len(self._shots)

    def __contains__(self, brand: str) -> bool:
        return isinstance(brand, str) and unicodedata.normalize("NFC", brand.strip()) in self._shots

    def __repr__(self) -> str:
        shots = sum(len(s) for s in self._shots.values())
        return (
            f"{type(self).__name__}(brands={len(self)}, shots={shots}, embedding_size={self.embedding_size}, "
            f"threshold={self.threshold})"
        )

    def shots(self, brand: str) -> torch.Tensor:
        """The unit-norm shot embeddings of a brand, `(num_shots, D)`."""
        return self._shots[self._existing(brand)].clone()

    def prototype(self, brand: str) -> torch.Tensor:
        """The brand's prototype: the renormalised mean of its shots, `(D,)`."""
        return self._prototypes[self._existing(brand)].clone()

    def metadata(self, brand: str) -> dict[str, Any]:
        """Free-form JSON metadata stored with the brand (e.g. the source of its shots)."""
        return dict(self._metadata[self._existing(brand)])

    def add_brand(
        self,
        brand: str,
        images: ImageLike | Sequence[ImageLike],
        *,
        overwrite: bool = False,
        metadata: dict[str, Any] | None = None,
        boxes: Sequence[Sequence[float] | None] | None = None,
        locate: bool = False,
    ) -> None:
        """Register a brand from example images (PIL images, paths, bytes or arrays; SVG too); one image is a 1-shot
        brand. Embeddings go to [`~LogoGallery.add_brand_embeddings`].

        Args:
            boxes (*optional*): one `(xmin, ymin, xmax, ymax)` box (or `None`) per shot: the shot is cropped to it,
                with the embedder's margin of context, so a whole photo can be a shot.
            locate (`bool`, *optional*, defaults to `False`): crop each shot without a box to its most confident
                logo, found by the gallery's localiser (for shots that are whole photos; a tight logo image or an
                SVG render is used as it is when `False`).

        Raises:
            `TypeError`: embeddings were given (use `add_brand_embeddings`). `ValueError`: the brand exists (pass
            `overwrite=True` to replace it), the name is empty, or no images; with `locate=True`, a shot in which no
            logo is found.
        """
        brand = self._check_new_brand(brand, overwrite)
        metadata = _checked_metadata(metadata)
        images = self._images_of(images, "add_brand", "add_brand_embeddings(brand, vectors)")
        if boxes is not None or locate:
            images = self._crop_shots(images, boxes, locate)
        self._set_shots(brand, self._embed_shots(images))
        self._metadata[brand] = metadata
        self._note_new_names([brand])

    def add_brand_embeddings(
        self,
        brand: str,
        vectors: np.ndarray | torch.Tensor | Sequence[Sequence[float]],
        *,
        overwrite: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Register a brand from the embeddings of its shots: an `(n, D)` array, tensor or list of vectors (one
        `D`-vector is a 1-shot brand). They are normalised to unit length. Images go to [`~LogoGallery.add_brand`].

        Raises:
            `TypeError`: images were given (use `add_brand`). `ValueError`: the brand exists (without
            `overwrite=True`), the name is empty, no vectors, or vectors of the wrong size or not finite.
        """
        brand = self._check_new_brand(brand, overwrite)
        metadata = _checked_metadata(metadata)
        vectors = self._vectors_of(vectors, "add_brand_embeddings", "add_brand(brand, images)")
        self._check_embeddings(vectors)
        self._set_shots(brand, F.normalize(vectors, dim=-1))
        self._metadata[brand] = metadata
        self._note_new_names([brand])

    def _crop_shots(self, images: list[ImageLike], boxes, locate: bool) -> list[Image.Image]:
        photos = [as_photo(image) for image in images]
        boxes = [None] * len(photos) if boxes is None else list(boxes)
        if len(boxes) != len(photos):
            raise ValueError(f"{len(boxes)} boxes for {len(photos)} shots: give one box (or None) per shot.")
        crops = []
        for index, (photo, box) in enumerate(zip(photos, boxes)):
            if box is None and locate:
                box = self.locate(photo)
                if box is None:
                    raise ValueError(f"No logo was found in shot {index}: pass its box, or a tighter image.")
            crops.append(photo if box is None else crop_box(photo, box))
        return crops

    def add_brands(
        self,
        shots: Mapping[str, np.ndarray | torch.Tensor | Sequence[Sequence[float]]],
        *,
        metadata: Mapping[str, dict[str, Any]] | None = None,
        overwrite: bool = False,
    ) -> None:
        """Register many brands from their shot embeddings at once, e.g. `{"Acme": (n, D) array, ...}`.

        All prototypes are computed in one pass: 10,000 brands take a fraction of a second, where as many
        [`~LogoGallery.add_brand_embeddings`] calls take seconds. Unit shots are kept bit for bit; others are
        normalised.

        Raises:
            `TypeError`: a brand's shots are images (register those with `add_brand`). `ValueError`: a brand exists
            (without `overwrite=True`), a name is empty, a brand has no shots, or the embeddings have the wrong size
            or are not finite. Nothing is added then.
        """
        if not isinstance(shots, Mapping):
            raise TypeError(f"add_brands() takes a mapping {{brand: (n, D) embeddings}}, got {type(shots).__name__}.")
        given = list(shots)
        names = [self._check_new_brand(brand, overwrite) for brand in given]
        if len(set(names)) < len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"Brand {twice!r} is given twice (names are compared with surrounding spaces stripped).")
        metadata = metadata or {}
        metadata = {name: _checked_metadata(metadata.get(brand)) for brand, name in zip(given, names)}
        if not names:
            return
        values = [shots[brand] for brand in given]
        if all(isinstance(value, torch.Tensor) and value.ndim == 1 for value in values):
            # One vector per brand (prototypes, a million of them): one stack instead of a tensor per brand.
            stacked, counts = torch.stack(values).detach().to("cpu", torch.float32), [1] * len(values)
        else:
            arrays = [self._vectors_of(value, "add_brands", "add_brand(brand, images)") for value in values]
            counts = [len(array) for array in arrays]
            if any(count == 0 for count in counts):
                raise ValueError(f"Brand {names[counts.index(0)]!r} has no shots.")
            stacked = torch.cat(arrays)
        self._check_embeddings(stacked)
        norms = stacked.norm(dim=-1, keepdim=True)
        stacked = torch.where((norms - 1).abs() > 1e-4, stacked / norms.clamp_min(1e-12), stacked)
        owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long))
        sums = torch.zeros(len(counts), stacked.shape[1]).index_add_(0, owner, stacked)
        prototypes = F.normalize(sums, dim=-1)  # the mean's direction is the sum's
        for brand, brand_shots, prototype in zip(names, torch.split(stacked, counts), prototypes.unbind()):
            self._shots[brand], self._prototypes[brand] = brand_shots, prototype
            self._metadata[brand] = metadata[brand]
        self._invalidate(names)
        self._note_new_names(names)
        self._note_shot_counts(dict(zip(names, counts)))

    def add_shots(self, brand: str, images: ImageLike | Sequence[ImageLike]) -> None:
        """Add example images to an existing brand; its prototype is updated. Embeddings go to
        [`~LogoGallery.add_shot_embeddings`]."""
        brand = self._existing(brand)
        embeddings = self._embed_shots(self._images_of(images, "add_shots", "add_shot_embeddings(brand, vectors)"))
        self._set_shots(brand, torch.cat([self._shots[brand], embeddings]))

    def add_shot_embeddings(self, brand: str, vectors: np.ndarray | torch.Tensor | Sequence[Sequence[float]]) -> None:
        """Add shot embeddings (`(n, D)`, or one `D`-vector) to an existing brand; its prototype is updated."""
        brand = self._existing(brand)
        vectors = self._vectors_of(vectors, "add_shot_embeddings", "add_shots(brand, images)")
        self._check_embeddings(vectors)
        self._set_shots(brand, torch.cat([self._shots[brand], F.normalize(vectors, dim=-1)]))

    def _images_of(self, images: ImageLike | Sequence[ImageLike], method: str, instead: str) -> list[ImageLike]:
        """`images` as a non-empty list of images; a `TypeError` naming `instead` for what can only be embeddings
        (1-D vectors, a 2-D float array of rows of the embedding size, a list of vectors or of numbers)."""
        if isinstance(images, (np.ndarray, torch.Tensor)):
            if images.ndim == 1 or (images.ndim == 2 and self._looks_like_embeddings(images)):
                raise TypeError(f"{method}() takes images, not embeddings: use {instead} for embeddings.")
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes, bytearray)) and images:
            if all(isinstance(x, (int, float, np.number)) for x in images) or all(
                (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 1)
                or (isinstance(x, Sequence) and not isinstance(x, (str, bytes, bytearray)))
                for x in images
            ):
                raise TypeError(f"{method}() takes images, not embeddings: use {instead} for embeddings.")
        images = [images] if _is_single_image(images) else list(images)
        if not images:
            raise ValueError("No images given.")
        return images

    def _vectors_of(self, vectors, method: str, instead: str) -> torch.Tensor:
        """`vectors` as a float32 `(n, D)` tensor on the CPU (one `D`-vector: `n = 1`); a `TypeError` naming
        `instead` for images (PIL images, paths, bytes, arrays of more than two dimensions)."""
        if isinstance(vectors, torch.Tensor) and vectors.ndim in (1, 2):  # first: add_brands may pass a million
            array = vectors.detach().to("cpu", torch.float32)
            return array[None] if array.ndim == 1 else array
        image_types = (Image.Image, str, os.PathLike, bytes, bytearray)
        is_image = isinstance(vectors, image_types) or (
            isinstance(vectors, (np.ndarray, torch.Tensor)) and vectors.ndim >= 3
        )
        if not is_image and isinstance(vectors, Sequence):
            is_image = any(
                isinstance(x, image_types) or (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim >= 2)
                for x in vectors
            )
        if is_image:
            raise TypeError(f"{method}() takes embeddings, not images: use {instead} for images.")
        if isinstance(vectors, torch.Tensor):
            array = vectors.detach().to("cpu", torch.float32)
        else:
            try:
                array = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
            except (TypeError, ValueError) as error:
                raise TypeError(f"{method}() takes embeddings (an (n, D) array of floats): {error}") from None
        array = array[None] if array.ndim == 1 else array  # one shot given as a vector
        if array.ndim != 2:
            raise ValueError("Each brand's shots must be an (n, D) array of embeddings (or one D-vector).")
        return array

    def _embed_shots(self, images: list[ImageLike]) -> torch.Tensor:
        """Unit embeddings of shot images, checked against the gallery's embedding size."""
        vectors = self.embed(self._checked_images(images, "shot"))
        self._check_embeddings(vectors)
        return F.normalize(vectors, dim=-1)

    def remove_shot(self, brand: str, index: int) -> None:
        """Remove one shot of a brand by position; removing its last shot removes the brand."""
        brand = self._existing(brand)
        shots = self._shots[brand]
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__} {index!r}.")
        if not -len(shots) <= index < len(shots):
            raise IndexError(f"Brand {brand!r} has {len(shots)} shots; there is no shot {index}.")
        keep = torch.ones(len(shots), dtype=torch.bool)
        keep[index] = False
        if keep.any():
            self._set_shots(brand, shots[keep])
        else:
            self.remove_brand(brand)

    def remove_brand(self, brand: str) -> None:
        """Remove a brand and its shots."""
        brand = self._existing(brand)
        del self._shots[brand], self._prototypes[brand], self._metadata[brand]
        self._forget_name(brand)
        self._invalidate([brand])

    def rename_brand(self, brand: str, new_name: str) -> None:
        """Rename a brand, keeping its shots and its position in `brands` (the new name is stripped of surrounding
        spaces, as every brand name is)."""
        brand = self._existing(brand)
        new_name = _brand_name(new_name, "new_name")
        if new_name in self._shots and new_name != brand:
            raise ValueError(f"Brand {new_name!r} is already in the gallery.")
        if new_name == brand:
            return

        def rename(mapping: dict) -> dict:
            return {new_name if key == brand else key: value for key, value in mapping.items()}

        self._shots, self._prototypes, self._metadata = (
            rename(self._shots),
            rename(self._prototypes),
            rename(self._metadata),
        )
        if self._hnsw_index is not None:
            self._hnsw_index.rename(brand, new_name)
        self._forget_name(brand)
        self._invalidate()
        self._note_new_names([new_name])

    def _existing(self, brand: str) -> str:
        """The gallery's name of `brand` (surrounding spaces stripped); a `KeyError` when it is not a brand."""
        name = _brand_name(brand) if isinstance(brand, str) and brand.strip() else brand
        if not isinstance(name, str) or name not in self._shots:
            raise KeyError(f"Brand {brand!r} is not in the gallery (it has {len(self)} brands).")
        return name

    def _set_shots(self, brand: str, shots: torch.Tensor) -> None:
        self._shots[brand] = shots
        self._prototypes[brand] = F.normalize(shots.mean(dim=0), dim=-1)
        self._invalidate([brand])
        self._note_shot_counts({brand: len(shots)})

    def _invalidate(self, brands: Sequence[str] = ()) -> None:
        """Forget what search derived from the brands; the HNSW index, kept in step, notes which brands changed."""
        self._prototype_matrix = None
        self._brand_list = None
        self._faiss_index = None
        if self._hnsw_index is not None:
            self._hnsw_index.touch(brands)

    # ----------------------------------------------------------------------------------------------------------------
    # Recognition

    def search(
        self, queries: ImageLike | Sequence[ImageLike], top_k: int = 5
    ) -> list[BrandMatch] | list[list[BrandMatch]]:
        """Rank the gallery's brands for each query by cosine similarity to their prototypes.

        Args:
            queries: one image (or embedding), or a list of them.
            top_k (`int`, *optional*, defaults to 5): brands returned per query (at most the gallery size).

        Returns:
            For one query a list of [`BrandMatch`], best first; for several, one such list per query.
        """
        self._check_searchable(top_k)
        vectors, single = self._embeddings_of(queries)
        results = self._rank(vectors, top_k)
        return results[0] if single else results

    def predict(
        self, queries: ImageLike | Sequence[ImageLike], threshold: float | SupportsThreshold | None = None
    ) -> str | None | list[str | None]:
        """The recognised brand of each query, or `None` when its best similarity is below the threshold.

        Args:
            threshold (`float` or [`~modeling_logo.evaluation.OperatingPoint`], *optional*): cosine similarity in
                `[-1, 1]` needed to accept a brand, or the operating point
                [`~modeling_logo.evaluation.calibrate_threshold`] chose. Defaults to the gallery's `threshold`, then
                to the model's calibrated `config.similarity_threshold`.

        Raises:
            `TypeError`: a threshold that is not a number (e.g. the string `"0.5"`). `ValueError`: one outside
            `[-1, 1]`, or no threshold anywhere.
        """
        threshold = self._resolve_threshold(threshold)
        self._check_searchable(top_k=1)
        vectors, single = self._embeddings_of(queries)
        predictions = [best.brand if best.score >= threshold else None for (best,) in self._rank(vectors, 1)]
        return predictions[0] if single else predictions

    def _check_searchable(self, top_k: int) -> None:
        _check_positive_int("top_k", top_k)
        if not self._shots:
            raise ValueError("The gallery is empty: register brands with add_brand() first.")

    def _resolve_threshold(self, threshold: float | SupportsThreshold | None) -> float:
        """The threshold a call uses: the one it was given (a float, or an `OperatingPoint`'s), else the gallery's,
        else the model's calibrated one. Every method taking a threshold resolves it here."""
        if threshold is not None:
            return _threshold_value(threshold, "threshold")
        if self.threshold is not None:
            return self.threshold
        calibrated = getattr(getattr(self.model, "config", None), "similarity_threshold", None)
        if calibrated is not None:
            return _threshold_value(calibrated, "the model's config.similarity_threshold")
        raise ValueError(
            "No threshold: pass predict(..., threshold=t) with a cosine similarity in [-1, 1], set gallery.threshold, "
            "or use a model whose config has a calibrated similarity_threshold."
        )

    @property
    def active_search_backend(self) -> str:
        """The backend the next search uses: `search_backend`, or for `"auto"` the one the gallery's size picks
        (`"torch"` below `FAISS_MIN_BRANDS` brands, `"faiss"` from there, `"faiss-hnsw"` from `HNSW_MIN_BRANDS`)."""
        if self.search_backend != "auto":
            return self.search_backend
        if len(self) >= HNSW_MIN_BRANDS:
            return "faiss-hnsw"
        return "faiss" if len(self) >= FAISS_MIN_BRANDS else "torch"

    def _rank(self, queries: torch.Tensor, top_k: int) -> list[list[BrandMatch]]:
        k = min(top_k, len(self))
        if self.active_search_backend == "faiss-hnsw":
            if self._hnsw_index is None:
                self._hnsw_index = _HnswIndex()
            self._hnsw_index.sync(self._prototypes)
            scores, names = self._hnsw_index.search(queries.numpy(), k, self.hnsw_ef_search)
            return [[BrandMatch(b, s) for s, b in zip(row_s, row_b)] for row_s, row_b in zip(scores.tolist(), names)]
        scores, indices = self._top_k(queries, k)
        if self._brand_list is None:
            self._brand_list = self.brands
        brands = self._brand_list
        return [
            [BrandMatch(brands[i], float(s)) for s, i in zip(row_scores, row_indices) if i >= 0]  # IVF: -1 = none
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist())
        ]

    def _top_k(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and brand positions of the `k` best prototypes per query, by the exact or IVF backends."""
        if self._prototype_matrix is None:
            self._prototype_matrix = torch.stack(list(self._prototypes.values()))
        backend = self.active_search_backend
        if backend == "torch":
            return torch.topk(queries @ self._prototype_matrix.T, k, dim=1)
        import faiss  # imported here: only large galleries need it

        if self._faiss_index is None:
            prototypes, dim = self._prototype_matrix.numpy(), self._prototype_matrix.shape[1]
            if backend == "faiss-ivf":
                # k-means needs ~39 points per list; the training sample is capped for build time.
                lists = max(1, min(int(4 * np.sqrt(len(prototypes))), len(prototypes) // 39))
                self._faiss_index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
                sample = np.random.default_rng(0).permutation(len(prototypes))[: 50 * lists]
                self._faiss_index.train(prototypes[np.sort(sample)])
                self._faiss_index.nprobe = self.ivf_nprobe
            else:
                self._faiss_index = faiss.IndexFlatIP(dim)
            self._faiss_index.add(prototypes)
        scores, indices = self._faiss_index.search(np.ascontiguousarray(queries.numpy()), k)
        return torch.from_numpy(scores), torch.from_numpy(indices)

    # ----------------------------------------------------------------------------------------------------------------
    # Whole photos: find every logo, then name its brand.

    def locate(self, photo: ImageLike) -> tuple[float, float, float, float] | None:
        """The box of the most confident logo of a photo (by the localiser), or `None` when none is found."""
        if self.localizer is None:
            raise ValueError("This gallery has no localiser: pass LogoGallery(..., localizer=...) or give boxes.")
        (found,) = self.localizer([as_photo(photo)])
        return tuple(found["boxes"][0].tolist()) if len(found["boxes"]) else None

    def detect(
        self,
        photo: ImageLike,
        threshold: float | SupportsThreshold | None = None,
        *,
        box_threshold: float | None = None,
        method: Literal["auto", "localizer", "windows"] = "auto",
    ) -> list[LogoDetection]:
        """Every logo found in a whole photo, with its brand (`None`: a logo of no registered brand), best first.

        Args:
            photo: a PIL image, array, path or bytes.
            threshold (`float` or `OperatingPoint`, *optional*): cosine similarity needed to name a brand (as in
                [`~LogoGallery.predict`]).
            box_threshold (`float`, *optional*): localiser score needed for a box (default: its calibrated one).
            method (`"auto"`, `"localizer"` or `"windows"`): `"localizer"` finds boxes with the gallery's localiser
                and names each one; `"windows"` is the localiser-free baseline: square and 2:1 windows at four scales
                are embedded and matched, and the accepted ones, non-maximum suppressed, are the detections (it finds
                only logos of registered brands). `"auto"`: the localiser when the gallery has one.

        Returns:
            [`LogoDetection`]s sorted by `score`. An empty gallery names no brand (`score` 0.0).
        """
        if method not in DETECTION_METHODS:
            raise ValueError(f"method must be one of {DETECTION_METHODS}, got {method!r}.")
        photo = as_photo(photo)
        if method == "windows" or (method == "auto" and self.localizer is None):
            return self._detect_by_windows(photo, self._resolve_threshold(threshold))
        if self.localizer is None:
            raise ValueError('method="localizer" needs a gallery with a localiser (LogoGallery(..., localizer=...)).')
        if threshold is not None:
            threshold = self._resolve_threshold(threshold)  # a bad one is refused before the localiser runs
        (found,) = self.localizer([photo], threshold=box_threshold)
        return self.name_boxes(photo, found["boxes"].tolist(), found["scores"].tolist(), threshold)

    def embed_boxes(self, photo: ImageLike, boxes: Sequence[Sequence[float]]) -> torch.Tensor:
        """Unit embeddings `(len(boxes), D)` of the boxes of a photo, each cropped with the embedder's margin."""
        photo = as_photo(photo)
        return F.normalize(self.embed([crop_box(photo, box) for box in boxes], progress=False), dim=-1)

    def name_boxes(
        self,
        photo: ImageLike,
        boxes: Sequence[Sequence[float]],
        box_scores: Sequence[float] | None = None,
        threshold: float | SupportsThreshold | None = None,
    ) -> list[LogoDetection]:
        """Name the brand of each given box of a photo (cropped with the embedder's margin), best first; `threshold`
        as in [`~LogoGallery.predict`]."""
        if threshold is not None or (self._shots and len(boxes)):  # no brand to name: no threshold needed
            threshold = self._resolve_threshold(threshold)
        if not len(boxes):
            return []
        photo = as_photo(photo)
        box_scores = [1.0] * len(boxes) if box_scores is None else list(box_scores)
        if not self._shots:
            matches = [None] * len(boxes)
        else:
            vectors = self.embed_boxes(photo, boxes)
            matches = [best for (best,) in self._rank(vectors, 1)]
        detections = [
            LogoDetection(
                box=tuple(float(v) for v in box),
                brand=match.brand if match is not None and match.score >= threshold else None,
                score=match.score if match is not None else 0.0,
                box_score=float(box_score),
                best_brand=match.brand if match is not None else None,
            )
            for box, box_score, match in zip(boxes, box_scores, matches)
        ]
        return sorted(detections, key=lambda detection: -detection.score)

    def _detect_by_windows(self, photo: Image.Image, threshold: float) -> list[LogoDetection]:
        from torchvision.ops import nms

        self._check_searchable(top_k=1)
        windows = window_boxes(photo.width, photo.height)
        named = self.name_boxes(photo, windows, threshold=threshold)
        accepted = [detection for detection in named if detection.brand is not None]
        if not accepted:
            return []
        keep = nms(
            torch.tensor([detection.box for detection in accepted]),
            torch.tensor([detection.score for detection in accepted]),
            iou_threshold=0.3,
        )
        return [accepted[i] for i in keep[:20].tolist()]

    # ----------------------------------------------------------------------------------------------------------------
    # Persistence: safetensors + JSON, no pickle.

    def save(self, directory: str | os.PathLike) -> None:
        """Write the gallery to `directory`: `gallery.safetensors` (the shots) and `gallery.json` (brands, threshold,
        the embedder's name and [`~LogoEmbedder.fingerprint`])."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shots = torch.cat(list(self._shots.values())) if self._shots else torch.empty(0, self.embedding_size or 0)
        save_file({"shots": shots.contiguous()}, str(directory / GALLERY_WEIGHTS_NAME))
        manifest = {
            **self._header(),
            "brands": [
                {"name": brand, "num_shots": len(shots), "metadata": self._metadata[brand]}
                for brand, shots in self._shots.items()
            ],
        }
        (directory / GALLERY_CONFIG_NAME).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    def to_dict(self) -> dict[str, Any]:
        """The gallery as plain JSON-able data: the fields of `gallery.json` ([`~LogoGallery.save`]) with each brand's
        shots inline as lists of floats (float32 values, exact: [`~LogoGallery.from_dict`] gives the same shots bit
        for bit). The Space keeps a session's gallery in this form."""
        return {
            **self._header(),
            "brands": [
                {"name": brand, "shots": shots.tolist(), "metadata": dict(self._metadata[brand])}
                for brand, shots in self._shots.items()
            ],
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        embedder: LogoEmbedder | None = None,
        *,
        check_model: bool = True,
        **kwargs,
    ) -> LogoGallery:
        """The gallery of [`~LogoGallery.to_dict`]'s `data`, embedding new images with `embedder` (nothing is
        re-embedded). As [`~LogoGallery.load`], an embedder other than the one that embedded the shots is refused
        unless `check_model=False`; further `kwargs` are [`LogoGallery`]'s (the threshold defaults to the data's).

        Raises:
            `ValueError`: `data` is not a gallery's, or does not match the embedder.
        """
        try:
            if data.get("format") != GALLERY_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {GALLERY_FORMAT!r}")
            brands = [(entry["name"], entry["shots"], entry.get("metadata") or {}) for entry in data["brands"]]
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Not a gallery's data (LogoGallery.to_dict()): {error}") from None
        _check_version(data, "These data")
        embedder = _as_embedder(embedder, None, kwargs.pop("runtime", None), kwargs.get("batch_size"), "from_dict")
        _check_embedder(data, embedder, check_model, "This gallery")
        kwargs.setdefault("threshold", data.get("threshold"))
        gallery = cls(embedder, **kwargs)
        if data.get("embedding_size"):
            gallery.embedding_size = data["embedding_size"]
        gallery.add_brands({name: shots for name, shots, _ in brands}, metadata={name: m for name, _, m in brands})
        return gallery

    def _header(self) -> dict[str, Any]:
        """What `gallery.json` and `to_dict` say besides the brands."""
        config = self.embedder.config if self.embedder is not None else None
        return {
            "format": GALLERY_FORMAT,
            "version": GALLERY_FORMAT_VERSION,
            "embedding_size": self.embedding_size,
            "threshold": self.threshold,
            "model": config.name_or_path if config is not None else None,
            "model_fingerprint": self.embedder.fingerprint if self.embedder is not None else None,
            "localizer": getattr(getattr(self.localizer, "config", None), "name_or_path", None),
        }

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        embedder: LogoEmbedder | None = None,
        image_processor: LogoImageProcessor | None = None,
        *,
        check_model: bool = True,
        runtime: Runtime | None = None,
        **kwargs,
    ) -> LogoGallery:
        """Load a gallery written by [`~LogoGallery.save`].

        Args:
            embedder ([`LogoEmbedder`], *optional*): what embeds new images and queries (a saved model's directory
                or Hub id loads one, on `runtime`). Without one, the gallery works on embeddings only.
            check_model (`bool`, *optional*, defaults to `True`): refuse an embedder other than the one that embedded
                the shots (embeddings of different models are not comparable): its
                [`~LogoEmbedder.fingerprint`] must be the one the gallery recorded. Galleries saved by earlier
                versions recorded a hash of the head's output weights, which is checked instead.
            **kwargs: further [`LogoGallery`] arguments (the threshold defaults to the saved one).

        Raises:
            `FileNotFoundError`: a gallery file is missing. `ValueError`: a file is corrupt or does not match.
        """
        directory = Path(directory)
        config_path, weights_path = directory / GALLERY_CONFIG_NAME, directory / GALLERY_WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} does not exist: {directory} is not a gallery saved by LogoGallery.save()."
                )
        try:
            manifest = json.loads(config_path.read_text(encoding="utf-8"))
            brands = [
                (entry["name"], int(entry["num_shots"]), entry.get("metadata", {})) for entry in manifest["brands"]
            ]
            if manifest.get("format") != GALLERY_FORMAT:
                raise ValueError(f"format is {manifest.get('format')!r}, expected {GALLERY_FORMAT!r}")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{config_path} is corrupt or not a gallery manifest: {error}") from error
        _check_version(manifest, str(directory))
        try:
            shots = load_file(str(weights_path))["shots"]
        except (SafetensorError, KeyError, OSError) as error:
            raise ValueError(f"{weights_path} is corrupt or holds no 'shots' tensor: {error}") from error
        counts = [count for _, count, _ in brands]
        if sum(counts) != len(shots) or any(count < 1 for count in counts):
            raise ValueError(
                f"{directory} is inconsistent: the manifest lists {sum(counts)} shots, the file holds {len(shots)}."
            )
        embedder = _as_embedder(embedder, image_processor, runtime, kwargs.get("batch_size"), "LogoGallery.load")
        _check_embedder(manifest, embedder, check_model, f"The gallery in {directory}")
        kwargs.setdefault("threshold", manifest.get("threshold"))
        gallery = cls(embedder, **kwargs)
        gallery.embedding_size = manifest.get("embedding_size") or (shots.shape[1] if len(shots) else None)
        names = [brand for brand, _, _ in brands]
        gallery.add_brands(dict(zip(names, torch.split(shots, counts))), metadata={b: m for b, _, m in brands})
        return gallery


class _HnswIndex:
    """The `"faiss-hnsw"` index of a gallery: a faiss `IndexHNSWFlat` over the brands' prototypes, kept in step with
    the gallery's changes rather than rebuilt for each one.

    HNSW cannot delete a vector, so the vector of a removed brand, or the previous prototype of a brand whose shots
    changed, becomes a tombstone: its id stays in the graph (still a path to its neighbours) and every search filters
    it out with a faiss `IDSelector`. Renaming relabels an id. When tombstones exceed `HNSW_MAX_STALE_FRACTION` of the
    index, the next sync rebuilds it from the live prototypes, so that stale entries never crowd out the candidates of
    a search (each still costs a distance computation when reached) and the rebuild costs are amortised.
    """

    def __init__(self, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION):
        self.m, self.ef_construction = m, ef_construction
        self.index = None
        self.labels: list[str | None] = []  # faiss id -> brand; None: a tombstone
        self.indexed: dict[str, tuple[int, torch.Tensor]] = {}  # brand -> (its id, the prototype indexed)
        self.stale: list[int] = []
        self.changed: set[str] = set()  # brands added, changed or removed since the last sync
        self._selector = None

    def touch(self, brands: Sequence[str]) -> None:
        if self.index is not None:
            self.changed.update(brands)

    def rename(self, old: str, new: str) -> None:
        if self.index is None:
            return
        if new in self.indexed:  # a removed brand's entry not yet synced: it must not come back under the new name
            self._bury(new)
        if old in self.indexed:
            self.indexed[new] = self.indexed.pop(old)
            self.labels[self.indexed[new][0]] = new
        if old in self.changed:
            self.changed.discard(old)
            self.changed.add(new)

    def sync(self, prototypes: Mapping[str, torch.Tensor]) -> None:
        """Bring the index to `prototypes` (brand -> unit prototype, the gallery's own tensors)."""
        if self.index is None:
            self._build(prototypes)
            return
        added = []
        for brand in self.changed:
            current, entry = prototypes.get(brand), self.indexed.get(brand)
            if entry is not None and entry[1] is current:  # touched, but its prototype is the one indexed
                continue
            if entry is not None:
                self._bury(brand)
            if current is not None:
                added.append(brand)
        self.changed = set()
        if len(self.stale) > HNSW_MAX_STALE_FRACTION * max(len(self.labels), 1):
            self._build(prototypes)
        elif added:
            self._add(added, prototypes)

    def search(self, queries: np.ndarray, k: int, ef_search: int) -> tuple[np.ndarray, list[list[str]]]:
        """The scores and brands of the `k` best live entries per query."""
        import faiss

        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef_search, k)
        if self.stale:
            if self._selector is None:
                batch = faiss.IDSelectorBatch(np.asarray(self.stale, dtype="int64"))
                self._selector = (faiss.IDSelectorNot(batch), batch)  # the batch must outlive its negation
            params.sel = self._selector[0]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(queries) == 1:
            # faiss spreads queries over OpenMP threads: one query runs on one thread anyway, and a team of threads
            # only adds fork/join waits (milliseconds on a busy machine). This setting is the calling thread's own.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                scores, ids = self.index.search(queries, k, params=params)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            scores, ids = self.index.search(queries, k, params=params)
        names = [[self.labels[i] for i in row if i >= 0] for row in ids.tolist()]
        return scores, names

    def _build(self, prototypes: Mapping[str, torch.Tensor]) -> None:
        import faiss

        dim = len(next(iter(prototypes.values())))
        self.index = faiss.IndexHNSWFlat(dim, self.m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.ef_construction
        self.labels, self.indexed, self.stale, self.changed, self._selector = [], {}, [], set(), None
        self._add(list(prototypes), prototypes)

    def _add(self, brands: list[str], prototypes: Mapping[str, torch.Tensor]) -> None:
        first = len(self.labels)
        self.index.add(torch.stack([prototypes[brand] for brand in brands]).numpy())
        for offset, brand in enumerate(brands):
            self.indexed[brand] = (first + offset, prototypes[brand])
        self.labels.extend(brands)

    def _bury(self, brand: str) -> None:
        index, _ = self.indexed.pop(brand)
        self.labels[index] = None
        self.stale.append(index)
        self._selector = None


def _threshold_value(value: Any, argument: str) -> float:
    """A threshold as a float in `[-1, 1]`: a number, or the `threshold` of an object that has one (the
    `OperatingPoint` of `calibrate_threshold`; read by duck typing, so this module does not import evaluation)."""
    value = getattr(value, "threshold", value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{argument} must be a cosine similarity in [-1, 1] (a float, or an OperatingPoint of "
            f"calibrate_threshold), got {type(value).__name__} {value!r}."
        )
    if not -1.0 <= float(value) <= 1.0:  # NaN fails too
        raise ValueError(f"{argument} must be a cosine similarity in [-1, 1], got {value!r}.")
    return float(value)


def _check_positive_int(argument: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{argument} must be at least 1, got {value}.")


def _brand_name(name: Any, argument: str = "brand") -> str:
    """The name a brand is kept under: surrounding whitespace stripped (`"red "` is `"red"`: a trailing space from a
    folder or a form is invisible, never a second brand) and in Unicode NFC (a name typed with combining accents is the
    same text as the precomposed one). Case and inner spacing are kept: near-duplicates are warned about instead."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str (the brand's name), got {type(name).__name__} {name!r}.")
    normalised = name.strip()
    if not normalised.isascii():  # ASCII is its own NFC (a million names are checked when a gallery loads)
        normalised = unicodedata.normalize("NFC", normalised)
    if not normalised:
        raise ValueError(f"A brand name must be a non-empty string, got {name!r}.")
    return normalised


def _near_duplicate_key(name: str) -> str:
    """What two names share when they differ only by case, inner whitespace or Unicode compatibility forms."""
    return " ".join((name.lower() if name.isascii() else unicodedata.normalize("NFKC", name).casefold()).split())


def _checked_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict (JSON data kept with the brand), got {type(metadata).__name__}.")
    return dict(metadata)


def _image_size(image: Any) -> tuple[int, int] | None:
    """(width, height) of a decoded image or an image array (HWC, CHW or HW); `None` for what is neither."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim in (2, 3):
        shape = tuple(image.shape)
        if image.ndim == 3:
            shape = shape[:2] if shape[-1] in (1, 3, 4) else shape[1:]
        return shape[1], shape[0]
    return None


def _as_embedder(
    embedder: LogoEmbedder | LogoEmbeddingModel | str | os.PathLike | None,
    image_processor: LogoImageProcessor | None,
    runtime: Runtime | None,
    batch_size: int | None,
    where: str,
) -> LogoEmbedder | None:
    """The `LogoEmbedder` a gallery embeds with: the one given; one loaded from a saved model's directory or Hub id;
    or, deprecated, one wrapping a model (and its processor) passed the earlier way."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
    options = {"runtime": runtime or "auto", **({"batch_size": batch_size} if batch_size else {})}
    if embedder is None or isinstance(embedder, LogoEmbedder):
        if image_processor is not None or (embedder is not None and runtime not in (None, embedder.runtime)):
            raise TypeError(
                f"{where}: the image processor and the runtime are the embedder's: pass "
                "LogoEmbedder(model, image_processor, runtime=...)."
            )
        return embedder
    if isinstance(embedder, (str, os.PathLike)):
        if image_processor is not None:
            raise TypeError(f"{where}: a saved model brings its own processor: pass LogoEmbedder(model, processor).")
        return LogoEmbedder.from_pretrained(embedder, **options)
    if isinstance(embedder, torch.nn.Module):
        warnings.warn(
            f"{where}(model, image_processor, runtime=...) is deprecated: pass "
            "LogoEmbedder(model, image_processor, runtime=...) instead.",
            DeprecationWarning,
            stacklevel=3,
        )
        return LogoEmbedder(embedder, image_processor, **options)
    raise TypeError(f"{where} takes a LogoEmbedder, got {type(embedder).__name__}.")


def _check_version(manifest: Mapping[str, Any], source: str) -> None:
    if manifest.get("version", 0) > GALLERY_FORMAT_VERSION:
        raise ValueError(f"{source} uses gallery format version {manifest['version']}; upgrade modeling_logo.")


def _check_embedder(manifest: Mapping[str, Any], embedder: LogoEmbedder | None, check_model: bool, what: str) -> None:
    """Refuse an embedder of another embedding size, or (with `check_model`) of another fingerprint."""
    if embedder is None:
        return
    if manifest.get("embedding_size") not in (None, embedder.embedding_size):
        raise ValueError(
            f"The gallery holds {manifest['embedding_size']}-d embeddings, the model makes "
            f"{embedder.embedding_size}-d ones."
        )
    saved = manifest.get("model_fingerprint")
    if saved is None or not check_model:
        return
    legacy = len(saved) == LEGACY_FINGERPRINT_LENGTH  # saved before the full-weights fingerprint: the head's hash
    if saved != (legacy_head_fingerprint(embedder.model) if legacy else embedder.fingerprint):
        raise ValueError(
            f"{what} was embedded by another model ({manifest.get('model')!r}); its embeddings are not comparable "
            "with this model's. Rebuild it from the images, or pass check_model=False if you know better."
        )


def window_boxes(
    width: int, height: int, scales: Sequence[float] = (0.9, 0.6, 0.4, 0.25), overlap: float = 0.5
) -> list[tuple[float, float, float, float]]:
    """The windows of the localiser-free baseline: squares and 2:1 (wide) rectangles whose long side is each scale
    times the photo's short side, on a grid overlapping by `overlap`."""
    boxes = []
    for scale in scales:
        side = scale * min(width, height)
        for window_w, window_h in ((side, side), (side, side / 2)):
            step_x, step_y = max(1.0, window_w * (1 - overlap)), max(1.0, window_h * (1 - overlap))
            xs = np.arange(0, max(width - window_w, 0) + 1, step_x)
            ys = np.arange(0, max(height - window_h, 0) + 1, step_y)
            boxes += [(float(x), float(y), float(x + window_w), float(y + window_h)) for y in ys for x in xs]
    return boxes


def _is_clutter(path: Path | str) -> bool:
    name = Path(path).name
    return name.startswith(".") or name in IGNORED_FILES


__all__ = [
    "LogoGallery",
    "LogoEmbedder",
    "BrandMatch",
    "SkippedFile",
    "IGNORED_FILES",
    "RUNTIMES",
    "embed_images",
    "embedding_function",
    "load_model_and_processor",
    "model_fingerprint",
    "FAISS_MIN_BRANDS",
    "HNSW_MIN_BRANDS",
    "MAX_SHOTS_PER_BRAND",
    "MIN_IMAGE_SIDE",
    "window_boxes",
]
