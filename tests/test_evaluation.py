import subprocess
import sys

import numpy as np
import pytest

from modeling_logo import evaluation
from modeling_logo.evaluation import (
    EmbeddedSplit,
    by_design,
    honest_protocol,
    open_set_episodes,
    open_set_metrics,
    paper_protocol,
    retrieval_protocol,
    verification_episodes,
)


def clustered(num_brands: int, per_brand: int, spread: float, seed: int, first_label: int = 0) -> EmbeddedSplit:
    """Unit embeddings around one random centre per brand: `spread` 0.1 separates brands, 10 mixes them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_brands, 32))
    embeddings = np.repeat(centres, per_brand, axis=0) + spread * rng.normal(size=(num_brands * per_brand, 32))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return EmbeddedSplit(embeddings, np.repeat(np.arange(first_label, first_label + num_brands), per_brand))


def test_verification_episodes_follow_the_paper_and_never_leak_support():
    split = clustered(30, 8, 0.5, seed=0)
    episodes = verification_episodes(split, shots=5, seed=0)
    assert len(episodes) == 30
    for episode in episodes:
        assert len(episode.support) == 5 and len(episode.queries) == 50
        assert 1 <= episode.is_positive.sum() <= 3  # 1..5 positives, but only 3 images remain after 5 shots
        assert not set(episode.support) & set(episode.queries)
        assert (split.labels[episode.support] == episode.brand).all()
        assert (split.labels[episode.queries] == episode.brand).tolist() == episode.is_positive.tolist()


def test_brands_without_enough_images_are_not_episodes():
    split = EmbeddedSplit(np.eye(4, 8), [0, 0, 1, 2])
    assert [e.brand for e in verification_episodes(split, shots=1)] == [0]
    with pytest.raises(ValueError, match="No brand has the 3 images"):
        verification_episodes(split, shots=2)


def test_paper_protocol_separates_clusters_and_not_noise():
    separated = paper_protocol(clustered(30, 8, 0.1, seed=1), shots=1)
    mixed = paper_protocol(clustered(30, 8, 10.0, seed=1), shots=1)
    assert separated["mAP"] > 0.95 and separated["f1"] > 0.9
    assert mixed["mAP"] < 0.4
    assert separated["separation_fisher"] > 10 * mixed["separation_fisher"]
    assert separated["separation_distance_ratio"] > mixed["separation_distance_ratio"] > 0.9
    assert separated["threshold_tuned_on"].startswith("test brands")
    assert 0.02 < separated["positive_fraction"] < 0.12  # 1-5 positives among 50 queries


def test_open_set_episodes_hold_unknown_brands_outside_the_support():
    split = clustered(12, 6, 0.5, seed=2)
    for episode in open_set_episodes(split, ways=5, shots=2, episodes=20, seed=0):
        support_brands = set(split.labels[episode.support])
        assert len(support_brands) == 5 and not set(episode.support) & set(episode.queries)
        query_brands = split.labels[episode.queries]
        assert all(brand not in support_brands for brand in query_brands[episode.target < 0])
        assert all(brand in support_brands for brand in query_brands[episode.target >= 0])
        assert (episode.target < 0).sum() == (episode.target >= 0).sum()


def test_open_set_decisions():
    episode = evaluation.OpenSetEpisode(
        support=np.arange(2),
        queries=np.arange(4),
        best=np.array([0, 1, 0, 1]),
        best_score=np.array([0.9, 0.4, 0.8, 0.3]),
        target=np.array([0, 0, -1, -1]),
    )
    metrics = open_set_metrics(episode, threshold=0.5)
    # accepted: query 0 (right), query 2 (an unknown, wrongly accepted); rejected: 1 (known: a miss), 3 (right)
    assert metrics["accuracy"] == 0.5 and metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["closed_set_accuracy"] == 0.5


def test_honest_threshold_never_sees_test_brands(monkeypatch):
    validation = clustered(15, 6, 0.6, seed=3, first_label=1000)
    test = clustered(15, 6, 0.6, seed=4)
    make_episodes, choose_threshold = evaluation.open_set_episodes, evaluation.open_set_threshold
    tuned_on = []

    def tagged_episodes(split, *args, **kwargs):
        for episode in make_episodes(split, *args, **kwargs):
            episode.brands = set(split.labels[episode.queries].tolist())  # where the episode's queries come from
            yield episode

    def spy(episodes):
        tuned_on.extend(brand for episode in episodes for brand in episode.brands)
        return choose_threshold(episodes)

    monkeypatch.setattr(evaluation, "open_set_episodes", tagged_episodes)
    monkeypatch.setattr(evaluation, "open_set_threshold", spy)
    rows = honest_protocol(validation, test, ways=(5,), shots=(1,), episodes=50)
    assert tuned_on and min(tuned_on) >= 1000  # only validation brands (labels 1000+) tuned the threshold
    row = rows[0]
    assert row["threshold_tuned_on"] == "validation brands" and row["episodes"] == 50
    mean, half_width = row["f1"]
    assert 0 <= mean <= 1 and 0 < half_width < 0.2

    # the same validation split gives the same threshold whatever the test split is
    monkeypatch.undo()
    other_test = clustered(15, 6, 5.0, seed=5)
    assert (
        honest_protocol(validation, other_test, ways=(5,), shots=(1,), episodes=50)[0]["threshold"] == row["threshold"]
    )


def test_honest_protocol_skips_impossible_settings():
    rows = honest_protocol(
        clustered(8, 6, 0.5, 0), clustered(8, 6, 0.5, 1), ways=(5, 20, "all"), shots=(1,), episodes=10
    )
    assert [row.get("skipped") is None for row in rows] == [True, False, True]
    assert rows[1]["skipped"].startswith("validation brands: a 20-way 1-shot episode needs 20 brands")
    assert "the split has 8 such brands of 8" in rows[1]["skipped"]
    # "all" registers every usable brand but a held-out fifth (8 - 2 here): the row says how many that was
    assert rows[2]["ways"] == "all" and rows[2]["episodes"] == 10 and rows[2]["brands_registered"] == 6
    assert rows[0]["brands_registered"] == 5
    # the split that cannot support a setting is the one named
    (row,) = honest_protocol(clustered(30, 6, 0.5, 0), clustered(8, 6, 0.5, 1), ways=(20,), shots=(1,), episodes=5)
    assert row["skipped"].startswith("test brands: a 20-way")


def test_honest_protocol_at_a_given_threshold_needs_no_validation_brands():
    test = clustered(15, 6, 0.5, seed=4)
    rows = honest_protocol(None, test, ways=(5,), shots=(1, 5), episodes=20, threshold=0.25)
    assert [(row["threshold"], row["validation_f1"]) for row in rows] == [(0.25, None), (0.25, None)]
    assert all(row["threshold_tuned_on"] == "none: given beforehand" for row in rows)
    strict = honest_protocol(None, test, ways=(5,), shots=(1,), episodes=20, threshold=1.01)[0]
    assert strict["recall"][0] == 0.0 and strict["accuracy"][0] == 0.5  # nothing accepted: every unknown is right
    with pytest.raises(ValueError, match="validation brands .* or a threshold"):
        honest_protocol(None, test)


def test_retrieval_protocol_on_separated_and_mixed_brands():
    separated = retrieval_protocol(clustered(20, 5, 0.1, seed=6), ood=clustered(5, 5, 0.1, seed=7))
    mixed = retrieval_protocol(clustered(20, 5, 10.0, seed=6))
    assert separated["images/mAP"] > 0.95 and separated["prototypes/recall@1"] > 0.95
    assert mixed["images/mAP"] < 0.3 and not any("t-mAP" in name for name in mixed)
    assert 0 <= separated["images/t-mAP@1"] <= separated["images/mAP@1"] + 1e-9
    assert 0 <= separated["images/t-mAP@5"] <= separated["images/mAP@5"] + 1e-9


def test_retrieval_protocol_t_map_is_forbs_with_the_ood_images_in_the_database():
    from modeling_logo.metrics import thresholded_map_at_k

    split, ood = clustered(12, 4, 0.7, seed=8), clustered(4, 5, 0.7, seed=9, first_label=100)
    results = retrieval_protocol(split, ood=ood)
    expected = thresholded_map_at_k(
        split.embeddings @ split.embeddings.T,
        split.labels,
        split.labels,
        split.embeddings @ ood.embeddings.T,
        ks=(1, 5),
        exclude_self=True,
    )
    assert {"images/t-mAP@1": expected["t-mAP@1"], "images/t-mAP@5": expected["t-mAP@5"]} == {
        name: results[name] for name in ("images/t-mAP@1", "images/t-mAP@5")
    }


def test_calibrated_thresholds_meet_their_targets():
    from modeling_logo.evaluation import calibrate_threshold

    split = clustered(30, 8, 0.8, seed=8)
    best_f1 = calibrate_threshold(split, "f1")
    precise = calibrate_threshold(split, "precision@0.95")
    strict = calibrate_threshold(split, "far@0.01")
    assert precise.precision >= 0.95 and strict.false_accept_rate <= 0.01
    assert -1 <= best_f1.threshold <= 1 and best_f1.recall > 0

    def f1(point):
        return 2 * point.precision * point.recall / (point.precision + point.recall)

    assert f1(best_f1) >= max(f1(precise), f1(strict))
    with pytest.raises(ValueError, match="precision@0.95"):
        calibrate_threshold(split, "accuracy")


def test_the_tsne_plot_of_a_collapsed_model_is_a_note_not_a_crash(tmp_path):
    """Identical embeddings made sklearn's Barnes-Hut t-SNE segfault, killing the run that writes the report: run the
    plot in a child process so that a regression fails this test instead of the whole suite."""
    script = (
        "import numpy as np\n"
        "from modeling_logo.evaluation import EmbeddedSplit\n"
        "from logo_evaluation.report import plot_tsne\n"
        "split = EmbeddedSplit(np.tile(np.eye(1, 8, dtype=np.float32), (6, 1)), np.repeat(np.arange(3), 2))\n"
        f"plot_tsne(split, ['a', 'b', 'c'], {str(tmp_path / 'tsne.png')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "tsne.png").stat().st_size > 0


def test_by_design_counts_only_the_queries_own_design_as_a_match():
    # Brand 0 has two designs that look nothing alike (orthogonal), brand 1 one design nearer to brand 0's first.
    embeddings = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0.6, 0, 0.8], [0.6, 0, 0.8]], np.float32)
    split = EmbeddedSplit(embeddings, np.array([0, 0, 0, 0, 1, 1]))
    designs = np.array([0, 0, 1, 1, 0, 0])
    assert retrieval_protocol(by_design(split, designs))["images/mAP"] == pytest.approx(1.0)
    # By brand, design 0's queries must also find design 1, ranked behind brand 1: AP (1 + 2/4 + 3/5) / 3 = 0.7;
    # design 1's queries tie brand 0's first design with brand 1 and keep the gallery order (AP 1): mean 0.9.
    assert retrieval_protocol(split)["images/mAP"] == pytest.approx(0.9)
    assert len(np.unique(by_design(split, designs).labels)) == 3
    with pytest.raises(ValueError, match="5 designs for 6 images"):
        by_design(split, designs[:5])
