"""Losses by name and the batch statistics that catch a collapsing run."""

import logging

import pytest
import torch
from pytorch_metric_learning import miners

from modeling_logo.callbacks import CollapseDetector, TrainingState
from modeling_logo.losses import LOSSES, batch_statistics, build_loss


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_gives_a_finite_gradient(name):
    embeddings = unit(torch.randn(16, 8)).requires_grad_()
    labels = torch.arange(4).repeat_interleave(4)
    loss = build_loss(name, num_classes=4, embedding_size=8)(embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_proxy_losses_need_the_number_of_brands():
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("normalized-softmax")


def test_batch_statistics_of_collapsed_random_and_separated_batches():
    labels = torch.arange(8).repeat_interleave(4)
    collapsed = batch_statistics(unit(torch.ones(32, 128)), labels)
    assert collapsed["mean_distance"] == pytest.approx(0.0, abs=1e-3)
    random = batch_statistics(unit(torch.randn(32, 512, generator=torch.Generator().manual_seed(0))), labels)
    assert random["mean_distance"] == pytest.approx(2**0.5, abs=0.05)
    assert random["distance_ratio"] == pytest.approx(1.0, abs=0.05)
    centres = unit(torch.randn(8, 64, generator=torch.Generator().manual_seed(1)))
    separated = unit(centres[labels] + 0.05 * torch.randn(32, 64, generator=torch.Generator().manual_seed(2)))
    assert batch_statistics(separated, labels)["distance_ratio"] > 2


def test_active_fraction_counts_mined_triplets_over_all_triplets():
    labels = torch.arange(4).repeat_interleave(3)
    embeddings = unit(torch.randn(12, 16, generator=torch.Generator().manual_seed(0)))
    triplets = miners.TripletMarginMiner(margin=10.0, type_of_triplets="all")(embeddings, labels)
    # 12 anchors × 2 positives × 9 negatives, and a margin of 10 keeps them all
    assert len(triplets[0]) == 12 * 2 * 9
    assert batch_statistics(embeddings, labels, triplets)["active_fraction"] == pytest.approx(1.0)
    pairs = miners.MultiSimilarityMiner(epsilon=0.0)(embeddings, labels)
    expected = (len(pairs[0]) + len(pairs[2])) / (12 * 2 + 12 * 9)
    assert batch_statistics(embeddings, labels, pairs)["active_fraction"] == pytest.approx(expected)


def test_collapse_detector_warns_once_after_patience(caplog):
    detector, state = CollapseDetector(patience=5, warmup_steps=0), TrainingState()
    with caplog.at_level(logging.WARNING, logger="modeling_logo.callbacks"):
        for step in range(4):
            state.global_step = step
            detector.on_step_end(state, None, {"train/mean_distance": 0.01, "train/distance_ratio": 1.5})
        assert detector.warnings == []
        detector.on_step_end(state, None, {"train/mean_distance": 0.5, "train/distance_ratio": 1.5})  # recovers
        for _ in range(10):
            detector.on_step_end(state, None, {"train/mean_distance": 0.01, "train/distance_ratio": 1.0})
    assert detector.warnings == ["collapse", "no_separation"]
    assert sum("collapsed" in record.message for record in caplog.records) == 1
    assert "PKBatchSampler" in caplog.text
