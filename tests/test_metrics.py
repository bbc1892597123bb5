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
    ood_thresholds,
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


def forb_example(seed: int):
    """Six gallery brands of four images, 13 queries (the last of a brand with no image in the database) and 15
    out-of-distribution images of three other brands: unit vectors, continuous scores (no ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 16))

    def draw(brands):
        vectors = centres[brands] + 0.9 * rng.normal(size=(len(brands), 16))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    gallery_brands = np.repeat(np.arange(6), 4)
    gallery = draw(gallery_brands)
    query_brands = np.r_[rng.integers(0, 6, 12), 9]
    queries = draw(query_brands)
    ood = draw(rng.integers(6, 9, 15))
    return gallery, gallery_brands, queries, query_brands, ood


# FORB's published code (github.com/pxiangwu/FORB at 9d25ff2, MIT licence), run unchanged on `forb_example(seed)`:
# `baselines/run_query_for_top_only_methods.py` searched the queries against `database_all` (the gallery, then the
# OOD images) and `database_oods` (the OOD images), with every other object type's results empty;
# `baselines/eval_tmap.py --object_type logos` (ID_OFFSET["logos"] = 1, as its README says to adapt the ids to
# another database; `get_mean_map` read at full precision instead of printed) gave t-mAP@1 and t-mAP@5, and
# `metric_helper.metrics.get_map_at_k` on the `database_all` results of the 12 queries with ground truth gave mAP@k.
FORB_REFERENCE = {
    0: {
        "t-mAP@1": 0.2674825174825175,
        "t-mAP@5": 0.6967948717948717,
        "mAP@1": 0.22916666666666666,
        "mAP@5": 0.7715277777777777,
    },
    1: {"t-mAP@1": 0.18706293706293706, "t-mAP@5": 0.5937062937062936, "mAP@1": 0.1875, "mAP@5": 0.6458333333333334},
    2: {"t-mAP@1": 0.20804195804195802, "t-mAP@5": 0.524184149184149, "mAP@1": 0.1875, "mAP@5": 0.5767361111111111},
}
FORB_THRESHOLDS_SEED_0 = [
    0.54119147410905,
    0.5003494960195147,
    0.4858573590519101,
    0.47508540793435067,
    0.3319476773863673,
    0.3210492147117681,
    0.2894009254888349,
    0.24947394345834603,
    0.21030093981665374,
    0.16018684452982426,
    -1,
]


@pytest.mark.parametrize("seed", sorted(FORB_REFERENCE))
def test_thresholded_map_and_map_at_k_equal_forbs_published_code(seed):
    gallery, gallery_brands, queries, query_brands, ood = forb_example(seed)
    expected = FORB_REFERENCE[seed]
    thresholded = thresholded_map_at_k(queries @ gallery.T, query_brands, gallery_brands, queries @ ood.T, ks=(1, 5))
    assert thresholded == pytest.approx({k: v for k, v in expected.items() if k.startswith("t-")}, abs=1e-12)
    # FORB's plain mAP@k: the same database (OOD images as never-relevant distractors), queries with ground truth
    database = np.c_[queries @ gallery.T, queries @ ood.T][:-1]
    plain = retrieval_metrics(database, query_brands[:-1], np.r_[gallery_brands, np.full(len(ood), -1)], ks=(1, 5))
    assert {k: plain[k] for k in ("mAP@1", "mAP@5")} == pytest.approx(
        {k: v for k, v in expected.items() if not k.startswith("t-")}, abs=1e-12
    )
    if seed == 0:
        assert ood_thresholds((queries @ ood.T).max(axis=1)) == pytest.approx(FORB_THRESHOLDS_SEED_0, abs=1e-12)


def test_ood_thresholds_are_forbs_order_statistics_not_quantiles():
    best_scores = [0.8, 0.2, 0.6, 0.4]  # sorted: 0.2 0.4 0.6 0.8
    rates = [0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0]
    # rate f: the ceil((1 - f) * 4)-th smallest; -1 (everything returned) at f = 1
    assert ood_thresholds(best_scores, rates).tolist() == [0.8, 0.8, 0.6, 0.4, 0.4, 0.2, 0.2, -1.0]
    assert ood_thresholds(best_scores, [0.5])[0] != np.quantile(best_scores, 0.5)  # 0.4, not an interpolated 0.5
    assert len(ood_thresholds(best_scores)) == 11  # FORB's rates: 0, 0.1, ..., 1
    with pytest.raises(ValueError, match="at least one search"):
        ood_thresholds([])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ood_thresholds(best_scores, [1.5])


def test_thresholded_map_by_hand():
    # one query of brand 0; gallery: brand 0 at 0.9, brand 1 at 0.8, brand 0 at 0.3; one OOD image at 0.5
    similarity, ood_similarity = np.array([[0.9, 0.8, 0.3]]), np.array([[0.5]])
    rates = [0.0, 1.0]  # thresholds 0.5 (the OOD best score) and -1
    # at 0.5: returned 0.9 (hit), 0.8, 0.5 (OOD): mAP@5 = 1 / 2 relevant. At -1: hits at ranks 1 and 4 (0.3 comes
    # after the OOD image): (1 + 2/4) / 2
    result = thresholded_map_at_k(similarity, [0], [0, 1, 0], ood_similarity, ks=(1, 5), false_positive_rates=rates)
    assert result == pytest.approx({"t-mAP@1": (1 / 2 + 1 / 2) / 2, "t-mAP@5": (1 / 2 + 1.5 / 2) / 2})
    # a query with no relevant item (brand 7) scores 1 where nothing is returned, else 0. Thresholds: 0.95 (the other
    # query's OOD score) and -1. At 0.95 the brand-7 query returns nothing (1) and the brand-0 one only its OOD
    # image (0); at -1 both return something first that is not relevant (0, 0).
    lonely = thresholded_map_at_k(
        [[0.4, 0.3, 0.2], [0.9, 0.8, 0.3]], [7, 0], [0, 1, 0], [[0.1], [0.95]], ks=(1,), false_positive_rates=rates
    )
    assert lonely == {"t-mAP@1": ((1 + 0) / 2 + (0 + 0) / 2) / 2}
    with pytest.raises(ValueError, match="at least one out-of-distribution image"):
        thresholded_map_at_k(similarity, [0], [0, 1, 0], np.empty((1, 0)))


def map_at_k_of_returned(returned_relevance: list[bool], num_relevant: int, k: int) -> float:
    """FORB's mAP@k of one query, by its definition: precision at each relevant rank of the returned list within
    the top k, summed, over the number of relevant items; a query with none scores 1 if nothing is returned."""
    if num_relevant == 0:
        return float(not returned_relevance)
    hits, total = 0, 0.0
    for rank, is_relevant in enumerate(returned_relevance[:k], start=1):
        hits += is_relevant
        total += hits / rank if is_relevant else 0.0
    return total / num_relevant


def test_thresholded_map_excluding_self_matches_a_database_without_the_query():
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(25, 8))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.r_[rng.integers(0, 5, 24), 9]  # the last image is its brand's only one: no relevant item
    ood = rng.normal(size=(7, 8))
    ood /= np.linalg.norm(ood, axis=1, keepdims=True)
    together = thresholded_map_at_k(embeddings @ embeddings.T, labels, labels, embeddings @ ood.T, exclude_self=True)

    thresholds = ood_thresholds((embeddings @ ood.T).max(axis=1))
    expected = {"t-mAP@1": [], "t-mAP@5": []}
    for threshold in thresholds:
        per_query = {name: [] for name in expected}
        for i in range(25):
            others = np.delete(np.arange(25), i)
            scores = np.r_[embeddings[others] @ embeddings[i], ood @ embeddings[i]]
            relevant = np.r_[labels[others] == labels[i], np.zeros(len(ood), bool)]
            ranking = sorted(range(len(scores)), key=lambda j: -scores[j])
            returned = [bool(relevant[j]) for j in ranking if scores[j] >= threshold]
            for name, k in (("t-mAP@1", 1), ("t-mAP@5", 5)):
                per_query[name].append(map_at_k_of_returned(returned, int(relevant.sum()), k))
        for name in expected:
            expected[name].append(np.mean(per_query[name]))
    assert together == pytest.approx({name: np.mean(values) for name, values in expected.items()}, abs=1e-12)


def test_ranking_ties_keep_the_gallery_order():
    # one query of brand 0; a relevant and an irrelevant item tie at 0.5
    relevant_first = retrieval_metrics([[0.5, 0.5]], [0], [0, 1], ks=(1,))
    irrelevant_first = retrieval_metrics([[0.5, 0.5]], [0], [1, 0], ks=(1,))
    assert relevant_first["mAP"] == 1.0 and relevant_first["recall@1"] == 1.0
    assert irrelevant_first["mAP"] == 0.5 and irrelevant_first["recall@1"] == 0.0
    # t-mAP: gallery items tied with each other keep their order, and come before tied OOD images
    at = {"ks": (1,), "false_positive_rates": [1.0]}  # the threshold -1: everything returned
    assert thresholded_map_at_k([[0.5, 0.5]], [0], [0, 1], [[0.1]], **at) == {"t-mAP@1": 1.0}
    assert thresholded_map_at_k([[0.5, 0.5]], [0], [1, 0], [[0.1]], **at) == {"t-mAP@1": 0.0}
    assert thresholded_map_at_k([[0.5]], [0], [0], [[0.5]], **at) == {"t-mAP@1": 1.0}  # gallery before OOD
    # the operating-curve metrics group ties into one operating point: order does not matter (scikit-learn's rule)
    assert average_precision([0.5, 0.5], [1, 0]) == average_precision([0.5, 0.5], [0, 1]) == 0.5


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
