"""Evaluation of logo embedding models on brands never seen in training: the `logo-eval` command (`cli`), the typed
function it calls, [`evaluate_model`] with its [`EvaluationSettings`] (also what `train.py` and `benchmarks/` call),
and the report (`report`: Markdown tables and figures).

It sits beside the hub package on purpose: it loads data with `dataset_scripts` and draws figures with matplotlib,
which a model loaded from the Hub needs neither of. `logo_evaluation` imports `modeling_logo` and `dataset_scripts`;
neither imports it. The protocols and metrics themselves stay in `modeling_logo.evaluation` and
`modeling_logo.metrics`.

    from logo_evaluation import EvaluationSettings, evaluate_model

    results = evaluate_model(EvaluationSettings(data_dir="data/synthetic-logos", models=("runs/logo-model",)))

Names are imported lazily: `EvaluationSettings` (and `logo-eval`'s checks) come without torch, transformers or
`datasets`; `evaluate_model` and the rest of `runner` bring them.
"""

import importlib


_EXPORTS = {
    "EvaluationSettings": "settings",
    "check_inputs": "settings",
    "build_embedders": "runner",
    "evaluate_across_worlds": "runner",
    "evaluate_embedder": "runner",
    "evaluate_model": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'logo_evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value
