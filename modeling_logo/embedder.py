"""`LogoEmbedder`: a logo-embedding model, its image processor and the runtime that runs it, behind one
`encode(images)` (in the spirit of sentence-transformers' `SentenceTransformer.encode`).

```python
>>> from modeling_logo import LogoEmbedder
>>> embedder = LogoEmbedder.from_pretrained("checkpoints/logo-embedding-resnet-small")
>>> embedder.encode(["acme_1.jpg", "acme_2.jpg"]).shape        # unit float32 embeddings, on the CPU
torch.Size([2, 128])
>>> embedder.encode("acme_1.jpg", convert_to_numpy=True).shape  # one image: one vector
(128,)
```

[`~modeling_logo.LogoGallery`], `logo-gallery`, `logo-detect` and the Space embed through it. The functions at the
end (`load_model_and_processor`, `embedding_function`, `embed_images`) are thin wrappers over the same code for
callers that still pass a model and a processor as a pair (the evaluation code, `logo-eval`, the benchmarks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from itertools import islice
from typing import Literal

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .fingerprint import model_fingerprint
from .image_processing_logo import LogoImageProcessor
from .modeling_logo import LogoEmbeddingModel
from .names import INT8_RUNTIME, RUNTIMES


ImageLike = Image.Image | str | os.PathLike | bytes | np.ndarray | torch.Tensor

#: What runs the network when embedding images: `"onnxruntime"` (an ONNX export of the model, cached), `"torch"`,
#: `"auto"`: ONNX Runtime when the `onnx` extra is installed and the model is on the CPU in eval mode, else torch; or
#: `"onnxruntime-int8"`: an int8 quantization of the export, calibrated on images you give (never chosen by "auto").
Runtime = Literal["auto", "torch", "onnxruntime", "onnxruntime-int8"]  # names.RUNTIMES, for type checkers

logger = logging.getLogger(__name__)


@contextmanager
def quiet_weight_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar while the package loads a model of its own (a bar per
    load of a 90-tensor model says nothing); the user's setting is restored afterwards, and `AutoModel` calls made
    by the user keep it."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


class LogoEmbedder:
    r"""
    Embeds logo images: a [`LogoEmbeddingModel`] (put in eval mode), its [`LogoImageProcessor`] and the runtime that
    runs the network, ONNX Runtime or torch.

    The embedder takes the model as it is when it first embeds: with ONNX Runtime it embeds with an export of the
    weights the model had then, and its [`~LogoEmbedder.fingerprint`] is computed once. After changing the weights
    (training on), make a new `LogoEmbedder`.

    Args:
        model ([`LogoEmbeddingModel`]):
            The network. It is put in eval mode (dropout off, BatchNorm running statistics).
        image_processor ([`LogoImageProcessor`], *optional*):
            Defaults to the processor matching `model.config`.
        runtime (`"auto"`, `"onnxruntime"`, `"onnxruntime-int8"` or `"torch"`, *optional*, defaults to `"auto"`):
            `"auto"` uses ONNX Runtime, the fastest correct CPU path measured (1.4× channels-last torch at batch 64,
            2.9× at batch 1; `benchmarks/embedding_throughput.py`), when the `onnx` extra is installed and the model
            is on the CPU; the export is checked against torch within 1e-4 and cached on disk per
            [`~LogoEmbedder.fingerprint`]. A model that cannot be exported falls back to torch, with a warning.
            `"onnxruntime-int8"` (opt-in) runs an int8 static quantization of the export
            ([`~modeling_logo.onnx.export_int8_onnx`]), calibrated on `calibration_images` and cached on disk per
            fingerprint and calibration set: 1.2-2.2× fp32 ONNX Runtime on an AVX2 CPU, retrieval mAP 0.001 lower,
            embeddings at cosine 0.978 or more to fp32's (`benchmarks/onnx_quantization.py`). Build a gallery and
            query it with the same runtime.
        batch_size (`int`, *optional*, defaults to 32):
            Images per forward pass of [`~LogoEmbedder.encode`].
        calibration_images (iterable of images, *optional*):
            Only for `runtime="onnxruntime-int8"`, which requires them: images whose activation ranges the
            quantization is fitted to, a few hundred crops of *training* brands (never of the brands you evaluate
            on), e.g. `load_logodet3k(root, "crops")["train"]`.

    Example:

    ```python
    >>> embedder = LogoEmbedder.from_pretrained("./logo-model", runtime="torch")
    >>> embedder.encode(["acme_1.jpg", "acme_2.jpg"], batch_size=64, show_progress_bar=False).shape
    torch.Size([2, 128])
    ```
    """

    def __init__(
        self,
        model: LogoEmbeddingModel,
        image_processor: LogoImageProcessor | None = None,
        *,
        runtime: Runtime = "auto",
        batch_size: int = 32,
        calibration_images: Iterable[ImageLike] | None = None,
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if runtime == INT8_RUNTIME and calibration_images is None:
            raise ValueError(
                f'runtime="{INT8_RUNTIME}" needs calibration_images: a few hundred images of training brands (never of '
                "the brands you evaluate on)."
            )
        if runtime != INT8_RUNTIME and calibration_images is not None:
            raise ValueError(f'calibration_images are only used by runtime="{INT8_RUNTIME}", not by {runtime!r}.')
        self.calibration_images = None if calibration_images is None else list(calibration_images)
        if self.calibration_images == []:
            raise ValueError("calibration_images is empty: give a few hundred training-brand images.")
        self.model = model.eval()
        self.image_processor = image_processor or LogoImageProcessor.from_model_config(model.config)
        self.runtime = runtime
        self.batch_size = int(batch_size)
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._backend: str | None = None
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        *,
        runtime: Runtime = "auto",
        batch_size: int = 32,
        calibration_images: Iterable[ImageLike] | None = None,
        **kwargs,
    ) -> LogoEmbedder:
        """The model saved at `model_name_or_path` (a directory or Hub id), in eval mode, with the image processor
        saved beside it (`preprocessor_config.json`); only a model saved without one gets the processor derived from
        its config. `runtime`, `batch_size` and `calibration_images` are [`LogoEmbedder`]'s. Further `kwargs`
        (`revision`, `cache_dir`, ...) go to `LogoEmbeddingModel.from_pretrained`.

        The weights are put in channels-last layout, torch's fastest correct path on CPU (1.3-1.4× eager here, equal
        within 1e-7; `benchmarks/embedding_throughput.py`), which the torch runtime feeds channels-last pixels.
        """
        from transformers.utils import IMAGE_PROCESSOR_NAME, cached_file

        with quiet_weight_loading():
            model = LogoEmbeddingModel.from_pretrained(model_name_or_path, **kwargs)
        model = model.eval().to(memory_format=torch.channels_last)
        hub_kwargs = {
            key: kwargs[key] for key in ("revision", "cache_dir", "token", "local_files_only") if key in kwargs
        }
        saved = cached_file(
            model_name_or_path, IMAGE_PROCESSOR_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs
        )
        if saved is not None:
            image_processor = LogoImageProcessor.from_pretrained(model_name_or_path, **hub_kwargs)
        else:
            image_processor = LogoImageProcessor.from_model_config(model.config)
        return cls(
            model, image_processor, runtime=runtime, batch_size=batch_size, calibration_images=calibration_images
        )

    # ----------------------------------------------------------------------------------------------------------------

    @property
    def config(self):
        """The model's config (`embedding_size`, `similarity_threshold`, ...)."""
        return self.model.config

    @property
    def embedding_size(self) -> int:
        return self.model.config.embedding_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def fingerprint(self) -> str:
        """The model's [`~modeling_logo.fingerprint.model_fingerprint`]: a digest of every weight and of the config
        fields that change the embeddings. A saved gallery records it and refuses an embedder of another one; the
        ONNX export is cached under it. Computed once per embedder."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    def prepare(self) -> str:
        """Make the runner now (the ONNX export or int8 quantization, when it is not cached yet) rather than on the
        first image; returns the runtime that embeds: `"onnxruntime"`, `"onnxruntime-int8"` or `"torch"`."""
        self._runner()
        return self._backend

    def _runner(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self._forward is None:
            calibration_pixels = None
            if self.calibration_images is not None:
                calibration_pixels = torch.cat(
                    [
                        self.image_processor(
                            self.calibration_images[start : start + 64], return_tensors="pt"
                        ).pixel_values
                        for start in range(0, len(self.calibration_images), 64)
                    ]
                )
            self._forward, self._backend = _make_forward(
                self.model, self.runtime, lambda: self.fingerprint, calibration_pixels=calibration_pixels
            )
        return self._forward

    def __repr__(self) -> str:
        config = self.config
        return (
            f"{type(self).__name__}(model={config.name_or_path or config.backbone!r}, embedding_size="
            f"{config.embedding_size}, image_size={config.image_size}, runtime={self.runtime!r})"
        )

    # ----------------------------------------------------------------------------------------------------------------

    def encode(
        self,
        images: ImageLike | Iterable[ImageLike],
        *,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = False,
    ) -> torch.Tensor | np.ndarray:
        """Embed images (PIL images, paths, bytes, arrays; SVG too) in batches.

        Args:
            images: one image, or any iterable of them (a list, a generator over a `datasets.Dataset`, ...), consumed
                batch by batch.
            batch_size (`int`, *optional*): images per forward pass (default: the embedder's `batch_size`).
            show_progress_bar (`bool`, *optional*): by default shown when there is more than one batch (or the number
                of images is unknown).
            convert_to_numpy (`bool`, *optional*, defaults to `False`): return a NumPy array instead of a tensor
                (unlike sentence-transformers, a tensor is the default: the gallery works on tensors).

        Returns:
            float32 embeddings on the CPU (unit length when `config.normalize_embeddings`): `(num_images, D)`, or
            `(D,)` for one image.
        """
        single = _is_single_image(images)
        embeddings = _encode_batches(
            self._runner(),
            self.image_processor,
            [images] if single else images,
            batch_size=batch_size or self.batch_size,
            progress=show_progress_bar,
            embedding_size=self.embedding_size,
        )
        if single:
            embeddings = embeddings[0]
        return embeddings.numpy() if convert_to_numpy else embeddings


# ---------------------------------------------------------------------------------------------------------------------
# The runtimes


def _make_forward(
    model: LogoEmbeddingModel,
    runtime: Runtime,
    fingerprint: Callable[[], str] | None = None,
    *,
    calibration_pixels: torch.Tensor | None = None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """`(pixel_values -> embeddings (float32, on the CPU), runtime that runs)` running `model` on `runtime`;
    `"onnxruntime-int8"` quantizes with ranges measured on `calibration_pixels`."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}.")
    if runtime == INT8_RUNTIME and calibration_pixels is None:
        raise ValueError(
            f'runtime="{INT8_RUNTIME}" needs calibration images: use LogoEmbedder(..., calibration_images=).'
        )
    if runtime != "torch":
        from . import onnx

        usable = onnx.is_available() and model.device.type == "cpu" and not model.training
        if runtime in ("onnxruntime", INT8_RUNTIME) and not usable:
            raise ValueError(
                f'runtime="{runtime}" needs the onnx extra (pip install "modeling-logo[onnx]") and a model on the CPU '
                "in eval mode."
            )
        if runtime == INT8_RUNTIME:
            key = fingerprint() if fingerprint is not None else None
            return onnx.cached_int8_embedder(model, calibration_pixels, fingerprint=key), INT8_RUNTIME
        if usable:
            try:
                key = fingerprint() if fingerprint is not None else None
                return onnx.cached_embedder(model, fingerprint=key), "onnxruntime"
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

    return run_torch, "torch"


def _encode_batches(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image_processor: LogoImageProcessor,
    images: Iterable[ImageLike],
    *,
    batch_size: int,
    progress: bool | None,
    embedding_size: int,
) -> torch.Tensor:
    total = len(images) if isinstance(images, Sized) else None
    if progress is None:
        progress = total is None or total > batch_size
    iterator, outputs = iter(images), []
    with tqdm(total=total, desc="Embedding images", unit="image", disable=not progress) as bar:
        while chunk := list(islice(iterator, batch_size)):
            outputs.append(forward(image_processor(chunk, return_tensors="pt").pixel_values))
            bar.update(len(chunk))
    return torch.cat(outputs) if outputs else torch.empty(0, embedding_size)


def _is_single_image(items) -> bool:
    """Whether `items` is one image rather than a collection of them."""
    if isinstance(items, (Image.Image, str, os.PathLike, bytes, bytearray)):
        return True
    if isinstance(items, (np.ndarray, torch.Tensor)):
        # One image is HWC/CHW (3-D) or grayscale (2-D); a batch is 4-D.
        return items.ndim in (2, 3)
    if not isinstance(items, Iterable):
        raise TypeError(f"Expected an image, an embedding or a list of them, got {type(items).__name__}.")
    return False


# ---------------------------------------------------------------------------------------------------------------------
# Thin wrappers for callers that pass a model and a processor as a pair (evaluation, logo-eval, benchmarks)


def load_model_and_processor(model_name_or_path: str | os.PathLike) -> tuple[LogoEmbeddingModel, LogoImageProcessor]:
    """A saved model (in eval mode, channels-last) and its image processor: the two halves of
    [`LogoEmbedder.from_pretrained`], for callers that pass them as a pair."""
    embedder = LogoEmbedder.from_pretrained(model_name_or_path)
    return embedder.model, embedder.image_processor


def embedding_function(model: LogoEmbeddingModel, runtime: Runtime = "auto") -> Callable[[torch.Tensor], torch.Tensor]:
    """The function `pixel_values -> embeddings` (float32, on the CPU) that runs `model` on `runtime`, as
    [`LogoEmbedder`] runs it (the ONNX export is shared with every embedder of the same weights). It embeds what the
    model computed when it was made: make a new one after changing the weights."""
    return _make_forward(model, runtime)[0]


def embed_images(
    model: LogoEmbeddingModel,
    image_processor: LogoImageProcessor,
    images: Iterable[ImageLike],
    *,
    batch_size: int = 32,
    progress: bool | None = None,
    runtime: Runtime | Callable[[torch.Tensor], torch.Tensor] = "torch",
) -> torch.Tensor:
    """Embed images in batches with `model` as [`LogoEmbedder.encode`] does: a float32 `(num_images, D)` tensor.

    Unlike a `LogoEmbedder`, it runs the model in the mode it is in (use eval mode) and defaults to torch; `runtime`
    may also be a function made by [`embedding_function`].
    """
    forward = runtime if callable(runtime) else embedding_function(model, runtime)
    return _encode_batches(
        forward,
        image_processor,
        images,
        batch_size=batch_size,
        progress=progress,
        embedding_size=model.config.embedding_size,
    )


__all__ = [
    "LogoEmbedder",
    "RUNTIMES",
    "Runtime",
    "ImageLike",
    "embed_images",
    "embedding_function",
    "load_model_and_processor",
]
