"""`evaluate` metric for logo verification scores and embedding separation, backed by `modeling_logo.metrics`."""

import datasets
import evaluate
import numpy as np

from modeling_logo.metrics import (
    average_precision,
    best_f1_threshold,
    distance_ratio,
    equal_error_rate,
    fisher_separation,
    recall_at_precision,
    roc_auc,
    threshold_metrics,
)


_DESCRIPTION = """
Logo verification metrics of "Few-Shot Logo Recognition": accuracy, precision, recall and F1 at a threshold, recall at
95% precision, average precision, ROC-AUC and the equal error rate. With the `separation` config, the separation J of
embeddings in its two forms: Fisher's ratio tr(S_B)/tr(S_W) and mean negative / mean positive distance.
"""

_KWARGS_DESCRIPTION = """
Args (default config):
    predictions (`list[float]`): scores, higher = more likely the same brand (cosine similarity, or -distance).
    references (`list[int]`): 1 for the same brand, 0 otherwise.
    threshold (`float`, *optional*): accept `score >= threshold`. Default: the best-F1 threshold on these scores
        (optimistic: choose it on validation data and pass it here for an honest number).
    min_precision (`float`, defaults to 0.95): the precision of `recall_at_precision`.
Args (`separation` config):
    predictions (`list[list[float]]`): embeddings. references (`list[int]`): brand labels.
Returns: a dict of floats.
Example:
    >>> metric = evaluate.load(modeling_logo.EVALUATE_METRIC_PATH)
    >>> metric.compute(predictions=[0.9, 0.2, 0.7], references=[1, 0, 1])["average_precision"]
    1.0
"""

_CITATION = """
@article{logodet3k,
  title={LogoDet-3K: A Large-Scale Image Dataset for Logo Detection},
  author={Wang, Jing and Min, Weiqing and Hou, Sujuan and Ma, Shengnan and Zheng, Yuanjie and Jiang, Shuqiang},
  journal={ACM Transactions on Multimedia Computing, Communications, and Applications},
  year={2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LogoVerification(evaluate.Metric):
    def _info(self):
        if self.config_name == "separation":
            features = datasets.Features(
                {"predictions": datasets.List(datasets.Value("float32")), "references": datasets.Value("int64")}
            )
        else:
            features = datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
        )

    def _compute(self, predictions, references, threshold=None, min_precision=0.95):
        if self.config_name == "separation":
            return {
                "separation_fisher": fisher_separation(np.asarray(predictions), references),
                "separation_distance_ratio": distance_ratio(np.asarray(predictions), references),
            }
        if threshold is None:
            threshold, _ = best_f1_threshold(predictions, references)
        eer, _ = equal_error_rate(predictions, references)
        return {
            **threshold_metrics(predictions, references, threshold),
            "threshold": float(threshold),
            "recall_at_precision": recall_at_precision(predictions, references, min_precision),
            "average_precision": average_precision(predictions, references),
            "roc_auc": roc_auc(predictions, references),
            "equal_error_rate": eer,
        }
