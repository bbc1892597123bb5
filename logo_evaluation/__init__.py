"""Evaluation of logo embedding models on brands never seen in training: the `logo-eval` command (`cli`), the typed
function it calls, [`evaluate_model`] with its [`EvaluationSettings`] (also what `train.py` and `benchmarks/` call),
and the report (`report`: Markdown tables and figures).

It sits beside the hub package on purpose: it loads data with `dataset_scripts` and draws figures with matplotlib,
which a model loaded from the Hub needs neither of. `logo_evaluation` imports `modeling_logo` and `dataset_scripts`;
neither imports it. The protocols and metrics themselves stay in `modeling_logo.evaluation` and
`modeling_logo.metrics`.

    from logo_evaluation import EvaluationSettings, evaluate_model

    results = evaluate_model(EvaluationSettings(data_dir="data/synthetic-logos", models=("runs/logo-model",)))
"""

from .runner import EvaluationSettings, build_embedders, evaluate_embedder, evaluate_model


__all__ = ["EvaluationSettings", "build_embedders", "evaluate_embedder", "evaluate_model"]
