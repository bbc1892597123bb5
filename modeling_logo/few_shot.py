"""Few-shot brand gallery: register a brand from 1-5 example images and recognise it in new images (open set)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .detection import LogoDetection, LogoLocalizer, as_photo, crop_box
from .image_processing_logo import InvalidImageError, LogoImageProcessor
from .modeling_logo import LogoEmbeddingModel


GALLERY_FORMAT = "logo-gallery"
GALLERY_FORMAT_VERSION = 1
GALLERY_CONFIG_NAME = "gallery.json"
GALLERY_WEIGHTS_NAME = "gallery.safetensors"

# From this many brands on, "auto" search uses faiss; below it a matmul is as fast and needs no index.
FAISS_MIN_BRANDS = 10_000
SEARCH_BACKENDS = ("auto", "faiss", "torch", "faiss-ivf")
DETECTION_METHODS = ("auto", "localizer", "windows")

ImageLike = Image.Image | str | os.PathLike | bytes | np.ndarray | torch.Tensor

#: Operating-system clutter in image folders: neither data nor worth a warning (nor are hidden files).
IGNORED_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")

#: What runs the network when embedding images: `"onnxruntime"` (an ONNX export of the model, cached), `"torch"`,
#: or `"auto"`: ONNX Runtime when the `onnx` extra is installed and the model is on the CPU in eval mode, else torch.
Runtime = Literal["auto", "torch", "onnxruntime"]
RUNTIMES = ("auto", "torch", "onnxruntime")

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


def model_fingerprint(model: LogoEmbeddingModel) -> str:
    """A short hash of the head's output weights: embeddings of two models are only comparable when it matches."""
    weight = model.head.output.weight.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:16]


def load_model_and_processor(model_name_or_path: str | os.PathLike) -> tuple[LogoEmbeddingModel, LogoImageProcessor]:
    """A saved model (directory or Hub id) in eval mode and its image processor; a model saved without its processor
    gets the one derived from its config.

    The model's weights are put in channels-last layout, torch's fastest correct path on CPU (1.3-1.4× eager here,
    equal within 1e-7; `benchmarks/embedding_throughput.py`); [`embed_images`] feeds it channels-last pixels. With
    `runtime="auto"` (the gallery's default) an ONNX Runtime export is faster still, when installed.
    """
    model = LogoEmbeddingModel.from_pretrained(model_name_or_path).eval().to(memory_format=torch.channels_last)
    try:
        image_processor = LogoImageProcessor.from_pretrained(model_name_or_path)
    except OSError:
        image_processor = LogoImageProcessor.from_model_config(model.config)
    return model, image_processor


def embedding_function(model: LogoEmbeddingModel, runtime: Runtime = "auto") -> Callable[[torch.Tensor], torch.Tensor]:
    """The function `pixel_values -> embeddings` (float32, on the CPU) that runs `model` on `runtime`.

    ONNX Runtime is the fastest correct CPU path measured (1.4× channels-last torch at batch 64, 2.9× at batch 1;
    `benchmarks/embedding_throughput.py`). Its export is checked against torch within 1e-4 and cached per weights
    ([`modeling_logo.onnx.cached_embedder`]): the function embeds what the model computed when it was made, so make a
    new one after changing the weights. With `"auto"`, a model that cannot be exported falls back to torch, with a
    warning.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
    if runtime != "torch":
        from . import onnx

        usable = onnx.is_available() and model.device.type == "cpu" and not model.training
        if runtime == "onnxruntime" and not usable:
            raise ValueError(
                'runtime="onnxruntime" needs the onnx extra (pip install "modeling-logo[onnx]") and a model on the CPU '
                "in eval mode."
            )
        if usable:
            try:
                return onnx.cached_embedder(model)
            except Exception as error:
                if runtime == "onnxruntime":
                    raise
                logger.warning("ONNX export of %s failed (%s); embedding with torch.", model.config.backbone, error)
    first_conv = next((m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    channels_last = first_conv is not None and first_conv.is_contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run_torch(pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(model.device)
        if channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        return model(pixel_values).embeddings.float().cpu()

    return run_torch


def embed_images(
    model: LogoEmbeddingModel,
    image_processor: LogoImageProcessor,
    images: Iterable[ImageLike],
    *,
    batch_size: int = 32,
    progress: bool | None = None,
    runtime: Runtime | Callable[[torch.Tensor], torch.Tensor] = "torch",
) -> torch.Tensor:
    """Embed images in batches with `model`: a float32 `(num_images, D)` tensor.

    `images` may be any iterable (a list, a generator over a `datasets.Dataset`, ...): it is consumed batch by batch.
    A progress bar shows by default when there is more than one batch (or the length is unknown). `runtime` (see
    [`embedding_function`]) defaults to torch, which runs the model in the mode it is in (use eval mode); it may also
    be a function made by [`embedding_function`].
    """
    total = len(images) if isinstance(images, Sized) else None
    if progress is None:
        progress = total is None or total > batch_size
    forward = runtime if callable(runtime) else embedding_function(model, runtime)
    iterator, outputs = iter(images), []
    with tqdm(total=total, desc="Embedding images", unit="image", disable=not progress) as bar:
        while chunk := list(islice(iterator, batch_size)):
            outputs.append(forward(image_processor(chunk, return_tensors="pt").pixel_values))
            bar.update(len(chunk))
    return torch.cat(outputs) if outputs else torch.empty(0, model.config.embedding_size)


class LogoGallery:
    r"""
    A gallery of brands for few-shot logo recognition.

    Each brand keeps its shots (the L2-normalised embeddings of its 1..n example images) and a prototype, the mean of
    the shots renormalised to unit length (the paper's prototype). A query is compared with every prototype by cosine
    similarity; `predict` returns the best brand, or `None` ("unknown brand") when the best similarity is below the
    threshold, so that logos of brands outside the gallery are rejected rather than given the nearest brand.

    Adding, removing or renaming a brand touches only that brand: nothing else is re-embedded.

    Args:
        model ([`LogoEmbeddingModel`], *optional*):
            The model that embeds images. Without one, the gallery works on embeddings only.
        image_processor ([`LogoImageProcessor`], *optional*):
            Defaults to the processor matching `model.config`.
        threshold (`float`, *optional*):
            Default cosine-similarity threshold of `predict`. Defaults to the model's calibrated
            `config.similarity_threshold`, if any.
        batch_size (`int`, *optional*, defaults to 32):
            Images embedded per forward pass.
        search_backend (`"auto"`, `"faiss"`, `"torch"` or `"faiss-ivf"`, *optional*, defaults to `"auto"`):
            `"faiss"` searches an exact `IndexFlatIP`, `"torch"` a matrix product; both give the same ranking.
            `"auto"` uses faiss from `FAISS_MIN_BRANDS` brands on (faster than torch there: 90 vs 200 ms for one
            query among 1M brands). `"faiss-ivf"` is approximate, for galleries of a million brands: an inverted
            file of `4·sqrt(brands)` lists searched `ivf_nprobe` at a time (1M brands: 2.5 ms per query, 99% of the
            exact top-10; `benchmarks/gallery_search.py`).
        ivf_nprobe (`int`, *optional*, defaults to 128):
            Lists `"faiss-ivf"` searches per query: more is slower and closer to exact.
        runtime (`"auto"`, `"onnxruntime"` or `"torch"`, *optional*, defaults to `"auto"`):
            What runs the model when images are embedded (see [`embedding_function`]): `"auto"` uses ONNX Runtime,
            the fastest correct CPU path, when the `onnx` extra is installed. The model is exported once, on the
            first image embedded; the gallery's embeddings belong to the weights the model had then.
        localizer ([`~modeling_logo.detection.LogoLocalizer`], *optional*):
            Finds the logos of a whole photo for [`~LogoGallery.detect`] (and for shots registered with
            `locate=True`). Without one, `detect` falls back to a multi-scale window search with the embedder.

    Example:

    ```python
    >>> gallery = LogoGallery.from_pretrained("./logo-model")
    >>> gallery.add_brand("Acme", ["acme_1.jpg", "acme_2.jpg"])
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
        model: LogoEmbeddingModel | None = None,
        image_processor: LogoImageProcessor | None = None,
        *,
        threshold: float | None = None,
        batch_size: int = 32,
        search_backend: Literal["auto", "faiss", "torch", "faiss-ivf"] = "auto",
        runtime: Runtime = "auto",
        ivf_nprobe: int = 128,
        localizer: LogoLocalizer | None = None,
    ):
        if search_backend not in SEARCH_BACKENDS:
            raise ValueError(f"search_backend must be one of {SEARCH_BACKENDS}, got {search_backend!r}.")
        self.ivf_nprobe = ivf_nprobe
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
        self.runtime = runtime
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.model = model.eval() if model is not None else None
        if image_processor is None and model is not None:
            image_processor = LogoImageProcessor.from_model_config(model.config)
        self.image_processor = image_processor
        self.threshold = threshold
        self.batch_size = batch_size
        self.search_backend = search_backend
        self.embedding_size: int | None = model.config.embedding_size if model is not None else None
        self._shots: dict[str, torch.Tensor] = {}
        self._prototypes: dict[str, torch.Tensor] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._prototype_matrix: torch.Tensor | None = None
        self._faiss_index = None
        self.localizer = localizer

    @classmethod
    def from_pretrained(
        cls, model_name_or_path: str | os.PathLike, *, localizer: str | os.PathLike | None = None, **kwargs
    ) -> LogoGallery:
        """An empty gallery with the model (and its image processor, when saved) from a directory or Hub id, and
        optionally the logo localiser saved at `localizer` for whole photos."""
        if localizer is not None and not isinstance(localizer, LogoLocalizer):
            localizer = LogoLocalizer.from_pretrained(localizer)
        return cls(*load_model_and_processor(model_name_or_path), localizer=localizer, **kwargs)

    @classmethod
    def from_folder(
        cls,
        directory: str | os.PathLike,
        model: LogoEmbeddingModel | str | os.PathLike,
        image_processor: LogoImageProcessor | None = None,
        *,
        progress: bool | None = None,
        on_skip: Callable[[SkippedFile], None] | None = None,
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
            model ([`LogoEmbeddingModel`], `str` or `os.PathLike`): the embedder, or a saved model's directory or
                Hub id (loaded with its image processor).
            **kwargs: further [`LogoGallery`] arguments (`threshold`, `batch_size`, `runtime`, ...).

        Raises:
            `FileNotFoundError`: `directory` is not a folder. `ValueError`: no brand folder holds a readable image.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{str(directory)!r} is not a folder: give a folder with one sub-folder per brand."
            )
        if isinstance(model, (str, os.PathLike)):
            model, saved_processor = load_model_and_processor(model)
            image_processor = image_processor or saved_processor
        gallery = cls(model, image_processor, **kwargs)
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
        """Embed images (PIL images, paths, bytes or arrays) in batches: a float32 tensor `(len(images), D)`.

        Args:
            progress (`bool`, *optional*): show a progress bar; by default when there is more than one batch.
        """
        if self.model is None:
            raise ValueError("This gallery has no model: pass embeddings, or create it with a model to embed images.")
        if self._forward is None:
            self._forward = embedding_function(self.model, self.runtime)
        return embed_images(
            self.model,
            self.image_processor,
            images,
            batch_size=self.batch_size,
            progress=progress,
            runtime=self._forward,
        )

    def _embeddings_of(self, items: ImageLike | Sequence[ImageLike]) -> tuple[torch.Tensor, bool]:
        """Embeddings (unit norm, float32, on CPU) of images or of ready embeddings; and whether one item was given.

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
                vectors = self.embed(images)
        self._check_embeddings(vectors)
        return F.normalize(vectors, dim=-1), single

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

    def _check_new_brand(self, brand: str, overwrite: bool) -> None:
        if not isinstance(brand, str) or not brand.strip():
            raise ValueError(f"A brand name must be a non-empty string, got {brand!r}.")
        if brand in self._shots and not overwrite:
            raise ValueError(f"Brand {brand!r} is already in the gallery: use add_shots() or overwrite=True.")

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
        return brand in self._shots

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
        shots: ImageLike | Sequence[ImageLike],
        *,
        overwrite: bool = False,
        metadata: dict[str, Any] | None = None,
        boxes: Sequence[Sequence[float] | None] | None = None,
        locate: bool = False,
    ) -> None:
        """Register a brand from example images (or their embeddings); one image is a 1-shot brand.

        Args:
            boxes (*optional*): one `(xmin, ymin, xmax, ymax)` box (or `None`) per shot: the shot is cropped to it,
                with the embedder's margin of context, so a whole photo can be a shot.
            locate (`bool`, *optional*, defaults to `False`): crop each shot without a box to its most confident
                logo, found by the gallery's localiser (for shots that are whole photos; a tight logo image or an
                SVG render is used as it is when `False`).

        Raises:
            `ValueError`: the brand exists (pass `overwrite=True` to replace it), the name is empty, or no shots;
            with `locate=True`, a shot in which no logo is found.
        """
        self._check_new_brand(brand, overwrite)
        if boxes is not None or locate:
            shots = self._crop_shots(shots, boxes, locate)
        embeddings, _ = self._embeddings_of(shots)
        self._set_shots(brand, embeddings)
        self._metadata[brand] = dict(metadata or {})

    def _crop_shots(self, shots, boxes, locate: bool) -> list[Image.Image]:
        photos = [as_photo(shot) for shot in ([shots] if _is_single_image(shots) else list(shots))]
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
        [`~LogoGallery.add_brand`] calls take seconds. Unit shots are kept bit for bit; others are normalised.

        Raises:
            `ValueError`: a brand exists (without `overwrite=True`), a name is empty, a brand has no shots, or the
            embeddings have the wrong size or are not finite. Nothing is added then.
        """
        names = list(shots)
        for brand in names:
            self._check_new_brand(brand, overwrite)
        arrays = [torch.as_tensor(np.asarray(shots[brand], dtype=np.float32)) for brand in names]
        arrays = [array[None] if array.ndim == 1 else array for array in arrays]  # one shot given as a vector
        if any(array.ndim != 2 for array in arrays):
            raise ValueError("Each brand's shots must be an (n, D) array of embeddings (or one D-vector).")
        counts = [len(array) for array in arrays]
        if any(count == 0 for count in counts):
            raise ValueError(f"Brand {names[counts.index(0)]!r} has no shots.")
        if not names:
            return
        stacked = torch.cat(arrays)
        self._check_embeddings(stacked)
        norms = stacked.norm(dim=-1, keepdim=True)
        stacked = torch.where((norms - 1).abs() > 1e-4, stacked / norms.clamp_min(1e-12), stacked)
        owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long))
        sums = torch.zeros(len(counts), stacked.shape[1]).index_add_(0, owner, stacked)
        prototypes = F.normalize(sums, dim=-1)  # the mean's direction is the sum's
        for index, (brand, brand_shots) in enumerate(zip(names, torch.split(stacked, counts))):
            self._shots[brand], self._prototypes[brand] = brand_shots, prototypes[index]
            self._metadata[brand] = dict((metadata or {}).get(brand) or {})
        self._invalidate()

    def add_shots(self, brand: str, shots: ImageLike | Sequence[ImageLike]) -> None:
        """Add example images (or embeddings) to an existing brand; its prototype is updated."""
        embeddings, _ = self._embeddings_of(shots)
        self._set_shots(brand, torch.cat([self._shots[self._existing(brand)], embeddings]))

    def remove_shot(self, brand: str, index: int) -> None:
        """Remove one shot of a brand by position; removing its last shot removes the brand."""
        shots = self._shots[self._existing(brand)]
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
        del self._shots[self._existing(brand)], self._prototypes[brand], self._metadata[brand]
        self._invalidate()

    def rename_brand(self, brand: str, new_name: str) -> None:
        """Rename a brand, keeping its shots and its position in `brands`."""
        self._existing(brand)
        if new_name in self._shots and new_name != brand:
            raise ValueError(f"Brand {new_name!r} is already in the gallery.")
        if not isinstance(new_name, str) or not new_name.strip():
            raise ValueError(f"A brand name must be a non-empty string, got {new_name!r}.")
        rename = lambda mapping: {new_name if key == brand else key: value for key, value in mapping.items()}  # noqa: E731
        self._shots, self._prototypes, self._metadata = (
            rename(self._shots),
            rename(self._prototypes),
            rename(self._metadata),
        )
        self._invalidate()

    def _existing(self, brand: str) -> str:
        if brand not in self._shots:
            raise KeyError(f"Brand {brand!r} is not in the gallery (it has {len(self)} brands).")
        return brand

    def _set_shots(self, brand: str, shots: torch.Tensor) -> None:
        self._shots[brand] = shots
        self._prototypes[brand] = F.normalize(shots.mean(dim=0), dim=-1)
        self._invalidate()

    def _invalidate(self) -> None:
        self._prototype_matrix = None
        self._faiss_index = None

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
        self, queries: ImageLike | Sequence[ImageLike], threshold: float | None = None
    ) -> str | None | list[str | None]:
        """The recognised brand of each query, or `None` when its best similarity is below the threshold.

        Args:
            threshold (`float`, *optional*): cosine similarity needed to accept a brand. Defaults to the gallery's
                `threshold`, then to the model's calibrated `config.similarity_threshold`.
        """
        threshold = self._resolve_threshold(threshold)
        self._check_searchable(top_k=1)
        vectors, single = self._embeddings_of(queries)
        predictions = [best.brand if best.score >= threshold else None for (best,) in self._rank(vectors, 1)]
        return predictions[0] if single else predictions

    def _check_searchable(self, top_k: int) -> None:
        if not self._shots:
            raise ValueError("The gallery is empty: register brands with add_brand() first.")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")

    def _rank(self, queries: torch.Tensor, top_k: int) -> list[list[BrandMatch]]:
        scores, indices = self._top_k(queries, min(top_k, len(self)))
        brands = self.brands
        return [
            [BrandMatch(brands[i], float(s)) for s, i in zip(row_scores, row_indices) if i >= 0]  # IVF: -1 = none
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist())
        ]

    def _resolve_threshold(self, threshold: float | None) -> float:
        for candidate in (
            threshold,
            self.threshold,
            getattr(getattr(self.model, "config", None), "similarity_threshold", None),
        ):
            if candidate is not None:
                return float(candidate)
        raise ValueError(
            "No threshold: pass predict(..., threshold=t) with a cosine similarity in [-1, 1], set gallery.threshold, "
            "or use a model whose config has a calibrated similarity_threshold."
        )

    def _top_k(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._prototype_matrix is None:
            self._prototype_matrix = torch.stack(list(self._prototypes.values()))
        use_faiss = self.search_backend in ("faiss", "faiss-ivf") or (
            self.search_backend == "auto" and len(self) >= FAISS_MIN_BRANDS
        )
        if not use_faiss:
            return torch.topk(queries @ self._prototype_matrix.T, k, dim=1)
        import faiss  # imported here: only large galleries need it

        if self._faiss_index is None:
            prototypes, dim = self._prototype_matrix.numpy(), self._prototype_matrix.shape[1]
            if self.search_backend == "faiss-ivf":
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
        threshold: float | None = None,
        *,
        box_threshold: float | None = None,
        method: Literal["auto", "localizer", "windows"] = "auto",
    ) -> list[LogoDetection]:
        """Every logo found in a whole photo, with its brand (`None`: a logo of no registered brand), best first.

        Args:
            photo: a PIL image, array, path or bytes.
            threshold (`float`, *optional*): cosine similarity needed to name a brand (as in [`~LogoGallery.predict`]).
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
        threshold: float | None = None,
    ) -> list[LogoDetection]:
        """Name the brand of each given box of a photo (cropped with the embedder's margin), best first."""
        if not len(boxes):
            return []
        photo = as_photo(photo)
        box_scores = [1.0] * len(boxes) if box_scores is None else list(box_scores)
        if not self._shots:
            matches = [None] * len(boxes)
        else:
            threshold = self._resolve_threshold(threshold)
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
        """Write the gallery to `directory`: `gallery.safetensors` (the shots) and `gallery.json` (brands, threshold)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shots = torch.cat(list(self._shots.values())) if self._shots else torch.empty(0, self.embedding_size or 0)
        save_file({"shots": shots.contiguous()}, str(directory / GALLERY_WEIGHTS_NAME))
        manifest = {
            "format": GALLERY_FORMAT,
            "version": GALLERY_FORMAT_VERSION,
            "embedding_size": self.embedding_size,
            "threshold": self.threshold,
            "model": self.model.config.name_or_path if self.model is not None else None,
            "model_fingerprint": model_fingerprint(self.model) if self.model is not None else None,
            "localizer": self.localizer.config.name_or_path if self.localizer is not None else None,
            "brands": [
                {"name": brand, "num_shots": len(shots), "metadata": self._metadata[brand]}
                for brand, shots in self._shots.items()
            ],
        }
        (directory / GALLERY_CONFIG_NAME).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        model: LogoEmbeddingModel | None = None,
        image_processor: LogoImageProcessor | None = None,
        *,
        check_model: bool = True,
        **kwargs,
    ) -> LogoGallery:
        """Load a gallery written by [`~LogoGallery.save`].

        Args:
            model ([`LogoEmbeddingModel`], *optional*): the model to embed new images and queries with.
            check_model (`bool`, *optional*, defaults to `True`): refuse a model other than the one that embedded the
                shots (embeddings of different models are not comparable).

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
        if manifest.get("version", 0) > GALLERY_FORMAT_VERSION:
            raise ValueError(f"{directory} uses gallery format version {manifest['version']}; upgrade modeling_logo.")
        try:
            shots = load_file(str(weights_path))["shots"]
        except (SafetensorError, KeyError, OSError) as error:
            raise ValueError(f"{weights_path} is corrupt or holds no 'shots' tensor: {error}") from error
        counts = [count for _, count, _ in brands]
        if sum(counts) != len(shots) or any(count < 1 for count in counts):
            raise ValueError(
                f"{directory} is inconsistent: the manifest lists {sum(counts)} shots, the file holds {len(shots)}."
            )
        if model is not None:
            if manifest.get("embedding_size") not in (None, model.config.embedding_size):
                raise ValueError(
                    f"The gallery holds {manifest['embedding_size']}-d embeddings, the model makes "
                    f"{model.config.embedding_size}-d ones."
                )
            if check_model and manifest.get("model_fingerprint") not in (None, model_fingerprint(model)):
                raise ValueError(
                    f"The gallery in {directory} was embedded by another model ({manifest.get('model')!r}); its "
                    "embeddings are not comparable with this model's. Rebuild it from the images, or pass "
                    "check_model=False if you know better."
                )
        kwargs.setdefault("threshold", manifest.get("threshold"))
        gallery = cls(model, image_processor, **kwargs)
        gallery.embedding_size = manifest.get("embedding_size") or (shots.shape[1] if len(shots) else None)
        names = [brand for brand, _, _ in brands]
        gallery.add_brands(dict(zip(names, torch.split(shots, counts))), metadata={b: m for b, _, m in brands})
        return gallery


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


def _is_single_image(items: Any) -> bool:
    if isinstance(items, (Image.Image, str, os.PathLike, bytes, bytearray)):
        return True
    if isinstance(items, (np.ndarray, torch.Tensor)):
        # One image is HWC/CHW (3-D) or grayscale (2-D); a batch is 4-D.
        return items.ndim in (2, 3)
    if not isinstance(items, Iterable):
        raise TypeError(f"Expected an image, an embedding or a list of them, got {type(items).__name__}.")
    return False


__all__ = [
    "LogoGallery",
    "BrandMatch",
    "SkippedFile",
    "IGNORED_FILES",
    "embed_images",
    "embedding_function",
    "load_model_and_processor",
    "model_fingerprint",
    "FAISS_MIN_BRANDS",
    "window_boxes",
]
