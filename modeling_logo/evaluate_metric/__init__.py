"""The `logo_verification` metric as an `evaluate` module: `evaluate.load(modeling_logo.EVALUATE_METRIC_PATH)`."""
