"""ONNX export of a [`LogoEmbeddingModel`], its int8 quantization, and an ONNX Runtime embedder with the same output.

Needs the `onnx` extra (`pip install "modeling-logo[onnx]"`: onnx, onnxscript for torch's exporter, onnxruntime).

    python -m modeling_logo.onnx checkpoints/logo-embedding-resnet-small logo-embedding.onnx

```python
>>> from modeling_logo.onnx import OnnxLogoEmbedder, export_onnx, export_int8_onnx
>>> export_onnx(model, "logo-embedding.onnx")          # dynamic batch axis, checked against PyTorch within 1e-4
>>> embedder = OnnxLogoEmbedder("logo-embedding.onnx")
>>> embedder(pixel_values).shape                        # L2-normalised float32 embeddings, like model(...).embeddings
>>> export_int8_onnx(model, "logo-int8.onnx", calibration_pixels)  # static int8, ranges from training-brand pixels
```
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import cache_root
from .fingerprint import model_fingerprint
from .modeling_logo import LogoEmbeddingModel


INPUT_NAME, OUTPUT_NAME = "pixel_values", "embeddings"
NORMALIZED_KEY, QUANTIZATION_KEY = "normalize_embeddings", "quantization"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            'ONNX support needs onnxruntime: pip install "modeling-logo[onnx]" (onnx, onnxscript, onnxruntime).'
        ) from error
    return onnxruntime


class _EmbeddingsOnly(nn.Module):
    # The graph's one output: the embeddings (the pooled features and feature map stay out of the exported graph).
    def __init__(self, model: LogoEmbeddingModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values, return_dict=True).embeddings


def export_onnx(
    model: LogoEmbeddingModel,
    path: str | os.PathLike,
    *,
    opset_version: int = 18,
    verify: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export `model` to one self-contained ONNX file with a dynamic batch axis.

    Args:
        model ([`LogoEmbeddingModel`]): The model; it is exported in eval mode (dropout off, BatchNorm statistics).
        path (`str` or `os.PathLike`): The `.onnx` file to write.
        opset_version (`int`, *optional*, defaults to 18): The ONNX opset.
        verify (`bool`, *optional*, defaults to `True`): Run the file with ONNX Runtime on batches of 1 and 3 and
            raise if its embeddings differ from PyTorch's by more than `atol`.

    Returns:
        `Path`: the written file. Input `pixel_values` `(batch, 3, image_size, image_size)` float32, normalised by
        [`LogoImageProcessor`]; output `embeddings` `(batch, embedding_size)` float32.
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    size = model.config.image_size
    metadata = {
        "model_type": model.config.model_type,
        "backbone": model.config.backbone,
        NORMALIZED_KEY: str(bool(model.config.normalize_embeddings)),
    }
    try:
        _export_program(_EmbeddingsOnly(model), size, [OUTPUT_NAME], path, metadata, opset_version)
        if verify:
            embedder = OnnxLogoEmbedder(path)
            for batch_size in (1, 3):
                pixels = torch.randn(batch_size, 3, size, size)
                with torch.no_grad():
                    expected = model(pixels).embeddings
                error = float((embedder(pixels) - expected).abs().max())
                if error > atol:
                    raise RuntimeError(
                        f"The ONNX export of {model.config.backbone} differs from PyTorch by {error:.2e} "
                        f"(> {atol:g}) at batch size {batch_size}; do not use {path}."
                    )
    finally:
        model.train(was_training)
    return path


def _export_program(
    module: nn.Module,
    image_size: int,
    output_names: list[str],
    path: Path,
    metadata: dict,
    opset_version: int,
    dynamic_size: bool = False,
) -> None:
    """torch.export `module` (pixels -> outputs, dynamic batch axis, and with `dynamic_size` dynamic height and
    width) into one self-contained ONNX file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: torch.export.Dim("batch")}
    if dynamic_size:
        # Traced at a non-square size, so that the export cannot tie height to width.
        example = torch.randn(2, 3, image_size, image_size - 32)
        dynamic.update({2: torch.export.Dim("height", min=32), 3: torch.export.Dim("width", min=32)})
    else:
        example = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        program = torch.onnx.export(
            module.eval(),
            (example,),
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_shapes={INPUT_NAME: dynamic},
            opset_version=opset_version,
            dynamo=True,
            verbose=False,
        )
    # One file (a few MB for resnet-small, ~100 MB for ResNet-50; under protobuf's 2 GB limit).
    program.model.metadata_props.update(metadata)
    program.save(path, external_data=False)


def _session(path: str | os.PathLike, num_threads: int | None):
    ort = _onnxruntime()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No ONNX model at {os.fspath(path)!r}; write one with export_onnx(model, path) "
            "(export_localizer_onnx for a localiser)."
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own InvalidProtobuf/Fail types
        raise ValueError(f"{os.fspath(path)!r} is not a loadable ONNX model: {error}") from error
    (model_input,) = session.get_inputs()
    if model_input.name != INPUT_NAME:
        raise ValueError(f"{os.fspath(path)!r} takes {model_input.name!r}, not {INPUT_NAME!r}: not a logo model.")
    return session


class OnnxLogoEmbedder:
    """Embeds normalised pixels with an exported model in ONNX Runtime; a drop-in for `model(pixels).embeddings`.

    The input size is fixed by the export: `pixel_values` of shape `(batch, 3, image_size, image_size)` float32 with
    `image_size = model.config.image_size` (96 for the shipped `logo-embedding-resnet-small`; read it from
    `.image_size`), as [`LogoImageProcessor`] makes them; only the batch axis is dynamic. Another size is a
    `ValueError`.

    Args:
        path (`str` or `os.PathLike`): A file written by [`export_onnx`] (fp32) or [`export_int8_onnx`] (int8).
        num_threads (`int`, *optional*): ONNX Runtime's intra-op threads (default: torch's thread count, so that both
            runtimes use the same cores).

    Attributes:
        image_size (`int`): The height and width the file takes.
        quantization (`str` or `None`): How the file was quantized (`None` for an fp32 export).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.session = _session(path, num_threads)
        (model_input,) = self.session.get_inputs()
        self.image_size = model_input.shape[-1]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.normalized = metadata.get(NORMALIZED_KEY, "True") == "True"
        self.quantization = metadata.get(QUANTIZATION_KEY)

    def __call__(self, pixel_values: torch.Tensor | np.ndarray) -> torch.Tensor:
        pixels = pixel_values.numpy(force=True) if isinstance(pixel_values, torch.Tensor) else pixel_values
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(
                f"This ONNX model takes pixel_values of shape (batch, 3, {self.image_size}, {self.image_size}), got "
                f"{tuple(pixels.shape)}: resize with the model's LogoImageProcessor."
            )
        (embeddings,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.float32)})
        embeddings = torch.from_numpy(embeddings)
        # Normalised again by torch, bit for bit as the PyTorch model does it (ONNX's division rounds differently),
        # so that galleries built with either runtime store the same unit vectors.
        return F.normalize(embeddings, dim=-1) if self.normalized else embeddings


def is_available() -> bool:
    """Whether the `onnx` extra (onnx, onnxscript, onnxruntime) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "onnxscript"))


# ---------------------------------------------------------------------------------------------------------------------
# int8: static quantization (QDQ) with activation ranges measured on calibration pixels. Dynamic quantization was
# measured too and rejected: its ConvInteger kernels are slower than fp32 here (benchmarks/onnx_quantization.py).

#: How [`quantize_onnx`] quantizes, recorded in the file and part of its cache key: weights int8 per output channel,
#: activations uint8, MinMax ranges; `reduce_range` keeps weights to 7 bits, so that AVX2's u8 x s8 multiply-add
#: (no VNNI) cannot saturate.
INT8_SETTINGS = {
    "quant_format": "QDQ",
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": True,
    "calibrate_method": "MinMax",
}
#: The least cosine similarity between the int8 and the PyTorch embedding of a calibration image that
#: [`export_int8_onnx`] accepts. The shipped checkpoint measures min 0.978, mean 0.999 on the 342 test crops of the
#: generated benchmark, calibrated on 256 training crops (benchmarks/onnx_quantization.py).
INT8_MIN_COSINE = 0.97


class _CalibrationReader:
    # onnxruntime's CalibrationDataReader protocol: one input dict per call, None at the end.
    def __init__(self, pixels: np.ndarray, batch_size: int):
        self._batches = iter([{INPUT_NAME: pixels[i : i + batch_size]} for i in range(0, len(pixels), batch_size)])

    def get_next(self):
        return next(self._batches, None)


def _as_pixels(pixel_values: torch.Tensor | np.ndarray) -> np.ndarray:
    pixels = pixel_values.numpy(force=True) if isinstance(pixel_values, torch.Tensor) else pixel_values
    return np.ascontiguousarray(pixels, dtype=np.float32)


def quantize_onnx(
    onnx_path: str | os.PathLike,
    path: str | os.PathLike,
    calibration_pixels: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 32,
) -> Path:
    """Quantize an fp32 file written by [`export_onnx`] to int8 with ONNX Runtime's static quantization
    ([`INT8_SETTINGS`]), the activation ranges measured on `calibration_pixels`.

    Args:
        onnx_path (`str` or `os.PathLike`): The fp32 export.
        path (`str` or `os.PathLike`): The int8 `.onnx` file to write (same input and output as the fp32 one).
        calibration_pixels (`torch.Tensor` or `np.ndarray`): `(N, 3, S, S)` pixels made by the model's
            [`LogoImageProcessor`] from images of *training* brands (a few hundred), never of the brands evaluated on.
        batch_size (`int`, *optional*, defaults to 32): Calibration images per ONNX Runtime call.

    Returns:
        `Path`: the written file.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pixels = _as_pixels(calibration_pixels)
    if pixels.ndim != 4 or len(pixels) == 0:
        raise ValueError(f"calibration_pixels must be a non-empty (N, 3, S, S) batch, got shape {pixels.shape}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX Runtime's recommended pre-processing (shape inference, graph fusions). Its symbolic shape inference
        # cannot follow the exported L2 norm's Expand; ONNX's own shape inference, which it also runs, suffices.
        quant_pre_process(onnx_path, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            path,
            _CalibrationReader(pixels, batch_size),
            quant_format=getattr(QuantFormat, INT8_SETTINGS["quant_format"]),
            activation_type=getattr(QuantType, INT8_SETTINGS["activation_type"]),
            weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
            per_channel=INT8_SETTINGS["per_channel"],
            reduce_range=INT8_SETTINGS["reduce_range"],
            calibrate_method=getattr(CalibrationMethod, INT8_SETTINGS["calibrate_method"]),
        )
    quantized = onnx.load(path)
    metadata = {entry.key: entry.value for entry in quantized.metadata_props}
    metadata[QUANTIZATION_KEY] = f"int8 static {json.dumps(INT8_SETTINGS, sort_keys=True)}, {len(pixels)} images"
    onnx.helper.set_model_props(quantized, metadata)
    onnx.save(quantized, path)
    return path


def export_int8_onnx(
    model: LogoEmbeddingModel,
    path: str | os.PathLike,
    calibration_pixels: torch.Tensor | np.ndarray,
    *,
    onnx_path: str | os.PathLike | None = None,
    verify: bool = True,
    min_cosine: float = INT8_MIN_COSINE,
) -> Path:
    """Export `model` to ONNX and quantize it to int8 ([`quantize_onnx`]): one self-contained file with the input and
    output of [`export_onnx`]'s (dynamic batch axis, fixed image size).

    Args:
        model ([`LogoEmbeddingModel`]): The model (exported in eval mode).
        path (`str` or `os.PathLike`): The int8 `.onnx` file to write.
        calibration_pixels (`torch.Tensor` or `np.ndarray`): Pixels of training-brand images (see [`quantize_onnx`]).
        onnx_path (`str` or `os.PathLike`, *optional*): An fp32 export of `model` ([`export_onnx`]) to quantize;
            by default `model` is exported here first.
        verify (`bool`, *optional*, defaults to `True`): Check a new fp32 export against PyTorch as [`export_onnx`]
            does, then embed up to 64 calibration images with the int8 file and PyTorch and raise if the cosine
            similarity of any pair is below `min_cosine`.
        min_cosine (`float`, *optional*, defaults to [`INT8_MIN_COSINE`]): The least accepted cosine similarity.

    Returns:
        `Path`: the written file.
    """
    pixels = _as_pixels(calibration_pixels)
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch:
        if onnx_path is None:
            onnx_path = export_onnx(model, Path(scratch) / "fp32.onnx", verify=verify)
        quantize_onnx(onnx_path, path, pixels)
    if verify:
        checked = torch.from_numpy(pixels[:64])
        was_training = model.training
        try:
            with torch.no_grad():
                expected = F.normalize(model.eval()(checked).embeddings, dim=-1)
        finally:
            model.train(was_training)
        cosine = float((F.normalize(OnnxLogoEmbedder(path)(checked), dim=-1) * expected).sum(-1).min())
        if cosine < min_cosine:
            raise RuntimeError(
                f"The int8 export of {model.config.backbone} has cosine similarity {cosine:.3f} (< {min_cosine:g}) to "
                f"PyTorch on a calibration image; do not use {path}."
            )
    return path


def calibration_digest(calibration_pixels: torch.Tensor | np.ndarray) -> str:
    """16 hex characters naming a calibration set and [`INT8_SETTINGS`]: what, besides the model's fingerprint,
    distinguishes one int8 file from another (the cache key of [`cached_int8_embedder`])."""
    pixels = _as_pixels(calibration_pixels)
    digest = hashlib.sha256(json.dumps(INT8_SETTINGS, sort_keys=True).encode())
    digest.update(repr(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------------
# The caches

# One runner per model object and kind of file (fp32, int8, localiser), re-made when its file name (named by the
# model's fingerprint) changes.
_EMBEDDERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EXPORT_LOCK = threading.Lock()


def cached_embedder(
    model: LogoEmbeddingModel, cache_dir: str | os.PathLike | None = None, *, fingerprint: str | None = None
) -> OnnxLogoEmbedder:
    """The ONNX Runtime embedder of `model`, exported (and checked) once per set of weights and cached on disk.

    The export lives in `cache_dir` (default `onnx/` in [`~modeling_logo.cache.cache_root`]) under the model's
    [`~modeling_logo.fingerprint.model_fingerprint`] (pass it as `fingerprint` when known), so another process with
    the same model loads it in well under a second instead of exporting again (about 8 s for resnet-small).
    Thread-safe: concurrent callers share one export.
    """
    fingerprint = fingerprint or model_fingerprint(model)
    return _cached_runner(
        model, "fp32", f"{model.config.backbone}-{fingerprint}.onnx", export_onnx, OnnxLogoEmbedder, cache_dir
    )


def cached_int8_embedder(
    model: LogoEmbeddingModel,
    calibration_pixels: torch.Tensor | np.ndarray,
    cache_dir: str | os.PathLike | None = None,
    *,
    fingerprint: str | None = None,
) -> OnnxLogoEmbedder:
    """The int8 ONNX Runtime embedder of `model` ([`export_int8_onnx`]), cached like [`cached_embedder`]'s exports,
    under the model's fingerprint and the [`calibration_digest`] of `calibration_pixels`: one file per set of weights
    and calibration set, quantized from the cached fp32 export (exported first when missing)."""
    pixels = _as_pixels(calibration_pixels)
    fingerprint = fingerprint or model_fingerprint(model)
    fp32_name = f"{model.config.backbone}-{fingerprint}.onnx"
    file_name = f"{model.config.backbone}-{fingerprint}-int8-{calibration_digest(pixels)}.onnx"

    def export(model, path):
        fp32 = _cached_file(model, fp32_name, export_onnx, cache_dir)  # _cached_runner holds the lock
        return export_int8_onnx(model, path, pixels, onnx_path=fp32)

    return _cached_runner(model, "int8", file_name, export, OnnxLogoEmbedder, cache_dir)


def _cached_runner(model, kind: str, file_name: str, export, runner_class, cache_dir):
    """The runner of `model`'s `kind` of export, kept per model object while its `file_name` (named by the model's
    fingerprint) is unchanged, and on disk under it; exported (and checked) by `export(model, path)` when missing."""
    with _EXPORT_LOCK:
        runners = _EMBEDDERS.setdefault(model, {})
        cached = runners.get(kind)
        if cached is not None and cached[0] == file_name:
            return cached[1]
        runner = runner_class(_cached_file(model, file_name, export, cache_dir))
        runners[kind] = (file_name, runner)
        return runner


def _cached_file(model, file_name: str, export, cache_dir) -> Path:
    """`file_name` in the cache, written by `export(model, path)` when missing; the caller holds `_EXPORT_LOCK`."""
    path = Path(cache_dir or cache_root() / "onnx") / file_name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Export beside the target, then rename: a reader never sees a half-written file.
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            os.replace(export(model, Path(scratch) / path.name), path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# The logo localiser: the network (backbone, pyramid, head, box decoding) in ONNX; threshold and NMS stay in
# torchvision, in `LogoLocalizerImageProcessor.post_process_object_detection`, for both runtimes.

LOCALIZER_OUTPUTS = ("scores", "pred_boxes")


class _LocalizerOutputs(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(pixel_values, return_dict=True)
        return output.scores, output.pred_boxes


def export_localizer_onnx(
    model, path: str | os.PathLike, *, opset_version: int = 18, verify: bool = True, atol: float = 1e-3
) -> Path:
    """Export a [`~modeling_logo.LogoLocalizerModel`] to one ONNX file (input `pixel_values` `(batch, 3, H, W)` of
    any height and width that are multiples of 32, as [`~modeling_logo.LogoLocalizerImageProcessor`] pads them;
    outputs `scores` `(batch, N)` and `pred_boxes` `(batch, N, 4)`, N the locations of that size), checked against
    PyTorch within `atol` pixels on the square and on a 4:3 canvas."""
    path = Path(path)
    was_training = model.training
    model.eval()
    size = model.config.image_size
    try:
        _export_program(
            _LocalizerOutputs(model),
            size,
            list(LOCALIZER_OUTPUTS),
            path,
            {"model_type": model.config.model_type, "backbone": model.config.backbone},
            opset_version,
            dynamic_size=True,
        )
        if verify:
            runner = OnnxLogoLocalizer(path)
            for batch_size, height in ((1, size), (3, 32 * math.ceil(size * 3 / 4 / 32))):  # square, 4:3
                pixels = torch.randn(batch_size, 3, height, size)
                with torch.no_grad():
                    expected = model(pixels)
                got = runner(pixels)
                error = max(float((got[key] - expected[key]).abs().max()) for key in LOCALIZER_OUTPUTS)
                if error > atol:
                    raise RuntimeError(
                        f"The ONNX export of the localiser differs from PyTorch by {error:.2e} (> {atol:g}) at "
                        f"{batch_size} x {height} x {size} pixels; do not use {path}."
                    )
    finally:
        model.train(was_training)
    return path


class OnnxLogoLocalizer:
    """Runs an exported localiser in ONNX Runtime; a drop-in for `model(pixel_values)` in
    `post_process_object_detection` (a dict with `scores` and `pred_boxes` tensors)."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.session = _session(path, num_threads)

    def __call__(self, pixel_values: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        pixels = pixel_values.numpy(force=True) if isinstance(pixel_values, torch.Tensor) else pixel_values
        outputs = self.session.run(list(LOCALIZER_OUTPUTS), {INPUT_NAME: np.ascontiguousarray(pixels, np.float32)})
        return {name: torch.from_numpy(value) for name, value in zip(LOCALIZER_OUTPUTS, outputs)}


def cached_localizer(model, cache_dir: str | os.PathLike | None = None) -> OnnxLogoLocalizer:
    """The ONNX Runtime runner of a localiser, exported (and checked) once per set of weights, cached on disk like
    [`cached_embedder`]'s exports."""
    # "-hw": height and width are dynamic (an older export of the same weights took the square only).
    file_name = f"localizer-{model.config.backbone}-{model_fingerprint(model)}-hw.onnx"
    return _cached_runner(model, "localizer", file_name, export_localizer_onnx, OnnxLogoLocalizer, cache_dir)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description="Export a saved logo embedder or logo localiser to ONNX (checked against PyTorch)."
    )
    parser.add_argument("model", help="a directory written by save_pretrained, or a Hub id")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--opset_version", type=int, default=18)
    args = parser.parse_args(argv)
    from transformers import AutoConfig

    if AutoConfig.from_pretrained(args.model).model_type == "logo-localizer":
        from .modeling_localizer import LogoLocalizerModel

        path = export_localizer_onnx(
            LogoLocalizerModel.from_pretrained(args.model), args.output, opset_version=args.opset_version
        )
    else:
        path = export_onnx(
            LogoEmbeddingModel.from_pretrained(args.model), args.output, opset_version=args.opset_version
        )
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB); ONNX Runtime matches PyTorch.")
    return path


if __name__ == "__main__":
    main()
