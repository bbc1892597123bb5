"""The checkpoint shipped in checkpoints/: valid, loadable both ways, and better than an untrained network on brands
it never saw (test brands of the hash split, freshly generated here)."""

from pathlib import Path

import datasets
import pytest
import torch

from dataset_scripts import load_logodet3k
from dataset_scripts.logodet3k import hash_split_of
from dataset_scripts.synthesize import synthesize
from modeling_logo import LogoEmbeddingModel, LogoImageProcessor
from modeling_logo.evaluation import embed_split, retrieval_protocol
from modeling_logo.few_shot import load_model_and_processor


CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "logo-embedding-resnet-small"


@pytest.fixture(scope="module")
def unseen_crops(tmp_path_factory):
    """Box crops of 12 test brands (never in any training split of this project), 6 scenes each."""
    root = tmp_path_factory.mktemp("unseen")

    synthesize(root / "data", 12, 6, seed=123, workers=1, progress=False,
               brand_filter=lambda brand: hash_split_of(brand.folder) == "test")  # fmt: skip
    splits = load_logodet3k(root / "data", "crops", cache_dir=str(root / "cache"), split_scheme="brands",
                            train_fraction=0.5, validation_fraction=0.25)  # fmt: skip
    return datasets.concatenate_datasets(list(splits.values()))


def test_checkpoint_is_complete_and_small():
    names = {path.name for path in CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= names
    assert (CHECKPOINT / "model.safetensors").stat().st_size < 50 * 1024 * 1024
    card = (CHECKPOINT / "README.md").read_text(encoding="utf-8")
    assert "python train.py" in card and "unseen" in card


def test_checkpoint_beats_an_untrained_network_on_unseen_brands(unseen_crops):
    model, processor = load_model_and_processor(CHECKPOINT)
    assert model.config.similarity_threshold is not None  # calibrated on validation brands
    torch.manual_seed(0)
    untrained = LogoEmbeddingModel(model.config).eval()
    trained_map = retrieval_protocol(embed_split(model, processor, unseen_crops))["images/mAP"]
    untrained_map = retrieval_protocol(embed_split(untrained, processor, unseen_crops))["images/mAP"]
    print(f"unseen-brand retrieval mAP: checkpoint {trained_map:.3f}, untrained {untrained_map:.3f}")
    assert trained_map > untrained_map + 0.3  # measured: 0.762 vs 0.185 (stage 2: 0.666, stage 1: 0.377)


def test_checkpoint_loads_the_same_with_remote_code(tmp_path):
    from transformers import AutoModel

    model, processor = load_model_and_processor(CHECKPOINT)
    remote = AutoModel.from_pretrained(CHECKPOINT, trust_remote_code=True).eval()
    pixels = LogoImageProcessor.from_pretrained(CHECKPOINT)(
        [torch.rand(3, 120, 90) for _ in range(2)], return_tensors="pt"
    ).pixel_values
    with torch.no_grad():
        torch.testing.assert_close(remote(pixels).embeddings, model(pixels).embeddings, atol=1e-5, rtol=0)
