"""ONNX export: one file with a dynamic batch axis whose ONNX Runtime embeddings match PyTorch's."""

import subprocess
import sys

import pytest
import torch

from modeling_logo import LogoEmbeddingConfig, LogoEmbeddingModel


pytest.importorskip("onnxruntime", reason='needs the onnx extra: pip install -e ".[onnx]"')
from modeling_logo.onnx import OnnxLogoEmbedder, export_onnx  # noqa: E402 (only once the extra is known to be there)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64))
    # Non-trivial BatchNorm statistics, so that a graph exported in training mode would not match.
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64) * 3 + 1)
    return model.eval()


def test_export_matches_pytorch_at_every_batch_size(model, tmp_path):
    path = export_onnx(model, tmp_path / "logo.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logo.onnx"]  # self-contained, no external data
    embedder = OnnxLogoEmbedder(path)
    assert embedder.image_size == 64
    for batch_size in (1, 7, 32):
        pixels = torch.randn(batch_size, 3, 64, 64)
        with torch.no_grad():
            expected = model(pixels).embeddings
        got = embedder(pixels)
        assert got.shape == expected.shape and got.dtype == torch.float32
        assert torch.allclose(got, expected, atol=1e-4)
        assert torch.allclose(embedder(pixels.numpy()), got)


def test_export_leaves_a_training_model_in_training_mode(tmp_path):
    model = LogoEmbeddingModel(LogoEmbeddingConfig(backbone="resnet-tiny", image_size=64)).train()
    export_onnx(model, tmp_path / "logo.onnx")
    assert model.training


def test_a_missing_or_corrupt_file_gets_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxLogoEmbedder(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        OnnxLogoEmbedder(corrupt)


def test_command_line_export_of_a_saved_model(model, tmp_path):
    model.save_pretrained(tmp_path / "model")
    result = subprocess.run(
        [sys.executable, "-m", "modeling_logo.onnx", str(tmp_path / "model"), str(tmp_path / "out" / "logo.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "matches PyTorch" in result.stdout
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            OnnxLogoEmbedder(tmp_path / "out" / "logo.onnx")(pixels), model(pixels).embeddings, atol=1e-4
        )
