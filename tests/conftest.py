"""Shared fixtures: tiny random-init models and synthetic logo images, so the suite runs in seconds on a CPU."""

import os
import tempfile


# Before any Hugging Face import: no network, and custom code copied to a throw-away module cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="hf-modules-"))


def _throwaway_project_cache() -> str:
    """A fresh project cache (the ONNX exports of the suite's random models go there), sharing the real cache's
    brand marks and Space examples, which are slow to fetch and render."""
    from modeling_logo.cache import cache_root

    real, fresh = cache_root(), tempfile.mkdtemp(prefix="modeling-logo-cache-")
    real.mkdir(parents=True, exist_ok=True)
    (real / "marks").mkdir(exist_ok=True)
    for entry in [real / "marks", *real.glob("space-examples-*")]:
        os.symlink(entry, os.path.join(fresh, entry.name))
    return fresh


os.environ["MODELING_LOGO_CACHE"] = _throwaway_project_cache()
# The imports below come after the variable (E402): the package reads its cache location when imported.

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel, LogoImageProcessor  # noqa: E402


TINY_IMAGE_SIZE = 64


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Restore torch's thread count after each test: the Space's `build_demo` sets it for the whole process, and a
    count left behind changes later tests' floating-point sums (exact-resume tests compare to the bit)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_logo_images(count: int, seed: int = 0, size: tuple[int, int] = (96, 72)) -> list[Image.Image]:
    """Distinct synthetic "logos": a coloured background with a few random shapes each."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
            x1, y1 = x0 + rng.integers(10, size[0] // 2), y0 + rng.integers(10, size[1] // 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
        images.append(image)
    return images


@pytest.fixture
def tiny_config() -> LogoEmbeddingConfig:
    return LogoEmbeddingConfig(backbone="resnet-tiny", image_size=TINY_IMAGE_SIZE)


@pytest.fixture
def tiny_model(tiny_config) -> LogoEmbeddingModel:
    torch.manual_seed(0)
    return LogoEmbeddingModel(tiny_config).eval()


@pytest.fixture
def processor(tiny_config) -> LogoImageProcessor:
    return LogoImageProcessor.from_model_config(tiny_config)


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory):
    """A tiny model and its processor saved with `save_pretrained`, as a user would publish them."""
    torch.manual_seed(1)
    config = LogoEmbeddingConfig(backbone="resnet-tiny", image_size=TINY_IMAGE_SIZE)
    model = LogoEmbeddingModel(config).eval()
    directory = tmp_path_factory.mktemp("saved-model")
    model.save_pretrained(directory)
    LogoImageProcessor.from_model_config(config).save_pretrained(directory)
    return directory
