from collections import Counter

import datasets
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from pytorch_metric_learning.losses import ContrastiveLoss, TripletMarginLoss
from torch.utils.data import DataLoader

from dataset_scripts import (
    PairCollator,
    PKBatchSampler,
    TripletCollator,
    build_eval_transform,
    build_train_transform,
    collate_pk_batch,
    with_image_transform,
)

from .conftest import make_logo_images


# brand -> number of examples; brand 9 has a single example (no positive possible), brand 8 fewer than K.
SIZES = {0: 6, 1: 5, 2: 8, 3: 4, 4: 4, 5: 7, 6: 4, 7: 5, 8: 3, 9: 1}


def labels_and_designs():
    labels = [brand for brand, size in SIZES.items() for _ in range(size)]
    designs = [index % 2 if brand == 2 else 0 for index, brand in enumerate(labels)]  # brand 2 has two designs
    return labels, designs


def test_pk_batches_hold_p_brands_with_k_examples_each():
    labels, designs = labels_and_designs()
    sampler = PKBatchSampler(labels, p=3, k=4, designs=designs, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 47 // 12 == 9 // 3  # an epoch ≈ the data set; brand 9 cannot be used
    seen = set()
    for batch in batches:
        counts = Counter(labels[index] for index in batch)
        assert len(counts) == 3 and set(counts.values()) == {4}
        seen |= set(counts)
        for brand in counts:
            own = [index for index in batch if labels[index] == brand]
            # distinct examples unless the brand has fewer than K
            assert len(set(own)) == min(4, SIZES[brand])
    assert seen == set(range(9))  # every usable brand once per epoch


def test_a_brands_designs_are_mixed():
    labels, designs = labels_and_designs()
    sampler = PKBatchSampler(labels, p=3, k=4, designs=designs, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            picked = [designs[index] for index in batch if labels[index] == 2]
            if picked:
                assert Counter(picked) == {0: 2, 1: 2}


def test_order_is_seeded_per_epoch():
    labels, _ = labels_and_designs()
    sampler = PKBatchSampler(labels, p=3, k=2, seed=1)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(PKBatchSampler(labels, p=3, k=2, seed=1)) == first


def test_sharding_gives_each_process_its_own_batches():
    labels, _ = labels_and_designs()
    whole = list(PKBatchSampler(labels, p=2, k=2, seed=0))
    manual = [list(PKBatchSampler(labels, p=2, k=2, seed=0, num_replicas=2, rank=rank)) for rank in range(2)]
    assert len(manual[0]) == len(manual[1]) == 47 // 4 // 2
    assert [batch for pair in zip(*manual) for batch in pair] == whole[: 2 * len(manual[0])]  # alternate batches
    # accelerate's own sharding of a batch sampler, as accelerator.prepare(dataloader) does
    sampler = PKBatchSampler(labels, p=2, k=2, seed=0)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=rank)) for rank in range(2)]
    interleaved = [batch for pair in zip(*shards) for batch in pair]
    assert interleaved[: len(whole)] == whole  # accelerate pads the last round by wrapping around


def test_longer_epochs_make_several_passes_without_repeating_a_brand_in_a_batch():
    labels, _ = labels_and_designs()
    sampler = PKBatchSampler(labels, p=4, k=2, seed=3, batches_per_epoch=10)
    batches = list(sampler)
    assert len(batches) == 10
    visits = Counter()
    for batch in batches:
        brands = [labels[index] for index in batch]
        assert len(set(brands)) == 4 and Counter(brands).most_common(1)[0][1] == 2
        visits.update(set(brands))
    assert set(visits) == set(range(9)) and max(visits.values()) - min(visits.values()) <= 2


def test_sampler_rejects_impossible_batches():
    with pytest.raises(ValueError, match="p >= 2"):
        PKBatchSampler([0, 0, 1, 1], p=1, k=2)
    with pytest.raises(ValueError, match="Only 2 brands"):
        PKBatchSampler([0, 0, 1, 1, 2], p=3, k=2)


def fake_examples(labels):
    return [{"pixel_values": torch.full((3, 8, 8), float(i)), "labels": label} for i, label in enumerate(labels)]


def test_pair_collator_draws_valid_pairs_at_the_requested_ratio():
    torch.manual_seed(0)
    labels = [0, 0, 0, 1, 1, 1, 2, 2]
    batch = PairCollator(positive_fraction=0.25, pairs_per_batch=8)(fake_examples(labels))
    assert batch["pixel_values"].shape == (8, 3, 8, 8) and batch["labels"].tolist() == labels
    anchors_pos, positives, anchors_neg, negatives = batch["indices_tuple"]
    assert len(positives) == 2 and len(negatives) == 6
    assert all(labels[a] == labels[p] and a != p for a, p in zip(anchors_pos.tolist(), positives.tolist()))
    assert all(labels[a] != labels[n] for a, n in zip(anchors_neg.tolist(), negatives.tolist()))
    embeddings = torch.nn.functional.normalize(torch.randn(8, 16, requires_grad=True), dim=1)
    loss = ContrastiveLoss()(embeddings, batch["labels"], indices_tuple=batch["indices_tuple"])
    assert torch.isfinite(loss)


def test_pair_collator_takes_what_a_batch_has():
    batch = PairCollator(positive_fraction=0.9, pairs_per_batch=10)(fake_examples([0, 0, 1, 1]))
    anchors_pos, _, anchors_neg, _ = batch["indices_tuple"]
    assert len(anchors_pos) == 2 and len(anchors_neg) == 4  # only 2 positive pairs exist; negatives fill up


def test_triplet_collator_draws_valid_triplets():
    torch.manual_seed(0)
    labels = [0, 0, 1, 1, 1, 2]  # brand 2 has no positive: it can only be a negative
    batch = TripletCollator(triplets_per_anchor=2)(fake_examples(labels))
    anchors, positives, negatives = batch["indices_tuple"]
    assert sorted(set(anchors.tolist())) == [0, 1, 2, 3, 4] and len(anchors) == 10
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        assert labels[a] == labels[p] and a != p and labels[a] != labels[n]
    embeddings = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    assert torch.isfinite(TripletMarginLoss(margin=1.0)(embeddings, batch["labels"], batch["indices_tuple"]))


def test_train_transform_augments_at_the_processor_size_and_eval_is_the_processor(processor):
    image = make_logo_images(1, seed=2)[0].convert("RGBA")
    train = build_train_transform(processor)
    first, second = train(image), train(image)
    assert first.shape == second.shape == (3, 64, 64) and first.dtype == torch.float32
    assert not torch.equal(first, second)
    evaluate = build_eval_transform(processor)
    torch.testing.assert_close(evaluate(image), processor(image, return_tensors="pt").pixel_values[0])


def test_a_dataset_with_transforms_feeds_a_multi_worker_pk_loader(processor):
    images = make_logo_images(12, seed=4)
    dataset = datasets.Dataset.from_dict(
        {"image": images, "brand": [i // 3 for i in range(12)]},
        features=datasets.Features(
            {"image": datasets.Image(), "brand": datasets.ClassLabel(names=["a", "b", "c", "d"])}
        ),
    )
    train = with_image_transform(dataset, build_train_transform(processor))
    row = train[0]
    assert set(row) == {"pixel_values", "labels"} and row["pixel_values"].shape == (3, 64, 64)
    sampler = PKBatchSampler(dataset["brand"], p=2, k=3, seed=0)
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=collate_pk_batch, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        assert batch["pixel_values"].shape == (6, 3, 64, 64)
        assert sorted(Counter(batch["labels"].tolist()).values()) == [3, 3]


def test_collating_the_rows_of_one_tensor_in_order_returns_it_and_anything_else_is_stacked():
    batch = torch.randn(4, 3, 2, 2)
    examples = [{"pixel_values": row, "labels": label} for label, row in enumerate(batch)]
    collated = collate_pk_batch(examples)
    assert collated["pixel_values"] is batch and collated["labels"].tolist() == [0, 1, 2, 3]
    for others in (examples[::-1], examples[:3], examples[:2] + examples[1:3]):  # reordered, a subset, a repeat
        stacked = collate_pk_batch(others)["pixel_values"]
        assert stacked.data_ptr() != batch.data_ptr()
        assert torch.equal(stacked, torch.stack([example["pixel_values"] for example in others]))
    apart = [{"pixel_values": row.clone(), "labels": 0} for row in batch]
    assert torch.equal(collate_pk_batch(apart)["pixel_values"], batch)
