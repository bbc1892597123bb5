"""Loading a saved model the two Hugging Face ways, each in a fresh Python process."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from modeling_logo import LogoEmbeddingModel, LogoGallery, LogoImageProcessor

from .conftest import make_logo_images


# Makes `import modeling_logo` (and the data package) fail, to prove a process runs on the copied remote code alone.
BLOCK_PACKAGE = """
import sys
class _BlockPackage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_logo", "dataset_scripts"):
            raise ImportError(f"{name} is blocked in this test process")
sys.meta_path.insert(0, _BlockPackage())
"""


def run_python(code: str, cwd, block_package: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    code = (BLOCK_PACKAGE if block_package else "") + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def query_images(tmp_path_factory):
    directory = tmp_path_factory.mktemp("queries")
    paths = []
    for index, image in enumerate(make_logo_images(3, seed=5)):
        paths.append(directory / f"query_{index}.png")
        image.save(paths[-1])
    return paths


def reference_embeddings(model_dir, paths) -> np.ndarray:
    model = LogoEmbeddingModel.from_pretrained(model_dir).eval()
    processor = LogoImageProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        return model(processor([Image.open(p) for p in paths], return_tensors="pt").pixel_values).embeddings.numpy()


def test_saved_directory_holds_safetensors_code_and_auto_map(saved_model_dir):
    files = set(os.listdir(saved_model_dir))
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
    assert {"configuration_logo.py", "modeling_logo.py", "image_processing_logo.py"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((saved_model_dir / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_logo.LogoEmbeddingConfig",
        "AutoModel": "modeling_logo.LogoEmbeddingModel",
    }
    processor_config = json.loads((saved_model_dir / "preprocessor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoImageProcessor": "image_processing_logo.LogoImageProcessor"}


def test_installed_package_loads_with_auto_classes_in_a_fresh_process(saved_model_dir, query_images, tmp_path):
    expected = reference_embeddings(saved_model_dir, query_images)
    run_python(
        f"""
        import numpy as np, torch
        from PIL import Image
        import modeling_logo
        from transformers import AutoModel, AutoImageProcessor
        model = AutoModel.from_pretrained({str(saved_model_dir)!r}).eval()  # no trust_remote_code: the package is here
        processor = AutoImageProcessor.from_pretrained({str(saved_model_dir)!r})
        assert type(model) is modeling_logo.LogoEmbeddingModel, type(model)
        assert type(processor) is modeling_logo.LogoImageProcessor, type(processor)
        images = [Image.open(p) for p in {[str(p) for p in query_images]!r}]
        with torch.no_grad():
            np.save("embeddings.npy", model(processor(images, return_tensors="pt").pixel_values).embeddings.numpy())
        """,
        cwd=tmp_path,
    )
    np.testing.assert_allclose(np.load(tmp_path / "embeddings.npy"), expected, atol=1e-5, rtol=0)


def test_remote_code_loads_without_the_package_in_a_fresh_process(saved_model_dir, query_images, tmp_path):
    expected = reference_embeddings(saved_model_dir, query_images)
    result = run_python(
        f"""
        import numpy as np, torch
        from PIL import Image
        from transformers import AutoModel, AutoImageProcessor, pipeline
        try:
            AutoModel.from_pretrained({str(saved_model_dir)!r})  # not opted in: must refuse, not prompt or hang
            raise SystemExit("loaded custom code without trust_remote_code")
        except ValueError as error:
            assert "trust_remote_code=True" in str(error)
        model = AutoModel.from_pretrained({str(saved_model_dir)!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({str(saved_model_dir)!r}, trust_remote_code=True)
        print("model module:", type(model).__module__)
        print("processor module:", type(processor).__module__)
        images = [Image.open(p) for p in {[str(p) for p in query_images]!r}]
        with torch.no_grad():
            np.save("embeddings.npy", model(processor(images, return_tensors="pt").pixel_values).embeddings.numpy())
        extractor = pipeline("image-feature-extraction", model={str(saved_model_dir)!r}, trust_remote_code=True)
        np.save("pipeline.npy", np.array([extractor(image, return_tensors=True)[0].numpy() for image in images]))
        assert not [name for name in sys.modules if name.startswith("modeling_logo")]
        """,
        cwd=tmp_path,
        block_package=True,
    )
    assert "model module: transformers_modules." in result.stdout
    assert "processor module: transformers_modules." in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "embeddings.npy"), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.load(tmp_path / "pipeline.npy"), expected, atol=1e-5, rtol=0)


def test_auto_classes_in_process_return_the_package_classes(saved_model_dir):
    assert type(AutoModel.from_pretrained(saved_model_dir)) is LogoEmbeddingModel
    assert type(AutoImageProcessor.from_pretrained(saved_model_dir)) is LogoImageProcessor


@pytest.mark.parametrize("name", ["some-user/logo-embedding-resnet50", "logo-model"])
def test_hub_id_offline_says_how_to_use_a_local_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match=r"not a local directory.*HF_HUB_OFFLINE.*save_pretrained.*hf download"):
        LogoEmbeddingModel.from_pretrained(name)


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(OSError, match="There is no directory"):
        LogoEmbeddingModel.from_pretrained(str(tmp_path / "runs" / "missing-model"))
    with pytest.raises(OSError, match="There is no directory"):
        LogoGallery.from_pretrained("./runs/missing-model")


def test_corrupt_weights_file_is_an_error_not_a_random_model(saved_model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(saved_model_dir):
        (broken / name).write_bytes((saved_model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ"):
        LogoEmbeddingModel.from_pretrained(broken)


def test_the_package_loads_its_own_models_without_a_progress_bar_and_keeps_the_users_setting(capsys):
    from transformers.utils import logging as transformers_logging

    from modeling_logo import LogoEmbedder
    from modeling_logo.detection import LogoLocalizer

    checkpoints = os.path.join(os.path.dirname(__file__), os.pardir, "checkpoints")
    transformers_logging.enable_progress_bar()
    capsys.readouterr()
    LogoEmbedder.from_pretrained(os.path.join(checkpoints, "logo-embedding-resnet-small"), runtime="torch")
    LogoLocalizer.from_pretrained(os.path.join(checkpoints, "logo-localizer-resnet-small"))
    assert "Loading weights" not in capsys.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # restored: the user's own loads still show it
    AutoModel.from_pretrained(os.path.join(checkpoints, "logo-embedding-resnet-small"))
    assert "Loading weights" in capsys.readouterr().err  # the bar this test hides exists, so the test can fail
