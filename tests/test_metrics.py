import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from modeling_logo.metrics import (
    average_precision,
    best_f1_threshold,
    distance_ratio,
    equal_error_rate,
    f1_score,
    fisher_separation,
    mean_confidence_interval,
    recall_at_precision,
    retrieval_metrics,
    roc_auc,
    threshold_metrics,
    thresholded_map_at_k,
)


# A hand-checked example: sorted by score, the labels read + + - + - -.
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
LABELS = [1, 1, 0, 1, 0, 0]


def test_threshold_metrics_by_hand():
    assert threshold_metrics(SCORES, LABELS, 0.65) == pytest.approx(
        {"accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    )
    assert threshold_metrics(SCORES, LABELS, 0.95) == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_ranking_metrics_by_hand():
    assert average_precision(SCORES, LABELS) == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert roc_auc(SCORES, LABELS) == pytest.approx(8 / 9)  # 8 of the 9 positive-negative pairs are ordered right
    assert best_f1_threshold(SCORES, LABELS) == pytest.approx((0.6, 6 / 7))  # P = 3/4, R = 1
    assert recall_at_precision(SCORES, LABELS, 0.95) == pytest.approx(2 / 3)
    assert recall_at_precision(SCORES, LABELS, 0.7) == pytest.approx(1.0)
    eer, threshold = equal_error_rate(SCORES, LABELS)
    assert eer == pytest.approx(1 / 3) and threshold == pytest.approx(0.7)


def test_f1_score_of_scalars_and_arrays_is_zero_where_precision_and_recall_are():
    assert f1_score(2 / 3, 2 / 3) == pytest.approx(2 / 3) and isinstance(f1_score(0.75, 1.0), float)
    assert f1_score(0.75, 1) == pytest.approx(6 / 7)
    assert f1_score(0.0, 0.0) == 0.0 and f1_score(np.float64(0), 0) == 0.0
    precision, recall = np.array([0.5, 0.0, 1.0, 0.2]), np.array([1.0, 0.0, 1.0, 0.0])
    f1 = f1_score(precision, recall)
    assert f1.dtype == np.float64 and f1.shape == (4,)
    assert f1 == pytest.approx([2 / 3, 0.0, 1.0, 0.0])
    assert f1_score(np.array([0.5, 0.25]), 0.5) == pytest.approx([0.5, 1 / 3])  # broadcast


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert best_f1_threshold(scores, labels)[1] == pytest.approx(f1.max())
    assert recall_at_precision(scores, labels, 0.8) == pytest.approx(recall[precision >= 0.8].max())
    fpr, tpr, _ = roc_curve(labels, scores)
    eer, _ = equal_error_rate(scores, labels)
    crossing = np.argmax(1 - tpr <= fpr)
    assert min(fpr[crossing - 1], fpr[crossing]) <= eer <= max(fpr[crossing - 1], 1 - tpr[crossing - 1])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        average_precision([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([np.nan, 0.2], [1, 0])
    with pytest.raises(ValueError, match="both positives and negatives"):
        roc_auc([0.1, 0.2], [1, 1])


def test_separation_ratios_by_hand():
    embeddings = np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
    labels = np.array([0, 0, 1, 1])
    # class means (0,1) and (4,1), overall (2,1): between = 2*4 + 2*4 = 16; within = 4 * 1 = 4
    assert fisher_separation(embeddings, labels) == pytest.approx(4.0)
    # same-brand distances are 2; different-brand distances are 4, 4, sqrt(20), sqrt(20)
    assert distance_ratio(embeddings, labels) == pytest.approx((4 + np.sqrt(20)) / 2 / 2)


def test_retrieval_metrics_by_hand():
    similarity = np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7]])
    metrics = retrieval_metrics(similarity, [0, 1], [0, 1, 1], ks=(1, 2))
    # query 0: relevant ranked 1st -> AP 1. query 1: relevant at ranks 1 and 3 -> AP (1 + 2/3) / 2
    assert metrics["mAP"] == pytest.approx((1 + 5 / 6) / 2)
    assert metrics["recall@1"] == 1.0
    # FORB mAP@2 divides by all relevant items: query 1 finds one of its two within the top 2
    assert metrics["mAP@2"] == pytest.approx((1 + 1 / 2) / 2)


def test_retrieval_excluding_self_matches_a_gallery_without_the_query():
    rng = np.random.default_rng(0)
    embeddings, labels = rng.normal(size=(30, 8)), rng.integers(0, 4, 30)
    similarity = embeddings @ embeddings.T
    together = retrieval_metrics(similarity, labels, labels, exclude_self=True)
    one_by_one = [
        retrieval_metrics(np.delete(similarity[i : i + 1], i, axis=1), labels[i : i + 1], np.delete(labels, i))["mAP"]
        for i in range(30)
    ]
    assert together["mAP"] == pytest.approx(np.mean(one_by_one))


def test_thresholded_map_ignores_items_under_the_threshold():
    similarity = np.array([[0.9, 0.8], [0.3, 0.95]])
    labels, gallery = [0, 1], [0, 1]
    # OOD best scores all 0.5: every threshold is 0.5, so query 0 keeps its hit and query 1 keeps its hit at rank 1
    assert thresholded_map_at_k(similarity, labels, gallery, np.full((3, 2), 0.5), k=2) == pytest.approx(1.0)
    # OOD best score 0.92: query 0's hit (0.9) is no longer retrieved
    assert thresholded_map_at_k(similarity, labels, gallery, np.full((3, 2), 0.92), k=2) == pytest.approx(0.5)


def test_confidence_interval():
    mean, half_width = mean_confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half_width == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-3)


def test_the_evaluate_module_reports_the_same_numbers():
    import evaluate

    import modeling_logo

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(labels, 1.0)
    results = evaluate.load(modeling_logo.EVALUATE_METRIC_PATH).compute(
        predictions=scores, references=labels, threshold=0.5
    )
    assert results["f1"] == pytest.approx(threshold_metrics(scores, labels, 0.5)["f1"])
    assert results["average_precision"] == pytest.approx(average_precision(scores, labels))
    assert results["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    separation = evaluate.load(modeling_logo.EVALUATE_METRIC_PATH, "separation")
    embeddings = rng.normal(size=(20, 4))
    brands = np.repeat(np.arange(4), 5)
    assert separation.compute(predictions=embeddings, references=brands)["separation_fisher"] == pytest.approx(
        fisher_separation(embeddings, brands), rel=1e-5
    )


def test_chunked_pairwise_metrics_equal_the_whole_matrix(monkeypatch):
    from modeling_logo import metrics

    rng = np.random.default_rng(1)
    embeddings, labels = rng.normal(size=(50, 8)), rng.integers(0, 6, 50)
    similarity = embeddings @ embeddings.T
    whole = metrics.retrieval_metrics(similarity, labels, labels, exclude_self=True)
    whole_ratio = metrics.distance_ratio(embeddings, labels)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 7 * 50)  # 7 rows at a time, the last chunk shorter
    assert metrics.retrieval_metrics(similarity, labels, labels, exclude_self=True) == pytest.approx(whole)
    assert metrics.distance_ratio(embeddings, labels) == pytest.approx(whole_ratio)


def test_f1_at_thresholds_is_threshold_metrics_f1_vectorised():
    from modeling_logo.metrics import f1_at_thresholds

    rng = np.random.default_rng(2)
    scores, labels = rng.normal(size=40), rng.random(40) < 0.3
    thresholds = np.concatenate([np.linspace(-3, 3, 25), scores[:5], [10.0]])  # exact ties and nothing accepted
    expected = [threshold_metrics(scores, labels, t)["f1"] for t in thresholds]
    assert f1_at_thresholds(scores, labels, thresholds) == pytest.approx(expected)
    assert f1_at_thresholds(scores, np.zeros(40, bool), thresholds) == pytest.approx(np.zeros(len(thresholds)))
