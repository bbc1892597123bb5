"""Training callbacks: a small interface, the paper's progressive unfreezing, and early stopping.

`train.py` calls each hook on every callback in order; a callback changes the run through the model it is given or
through the [`TrainingState`] (e.g. `should_stop`). Every hook is idempotent for a given state, so a resumed run
replays them to the same result.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from .configuration_logo import BACKBONE_STAGES


logger = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """Where a run is: saved with each checkpoint so that a resumed run continues exactly."""

    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    should_stop: bool = False
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def record(self, value: float, greater_is_better: bool = True, min_delta: float = 0.0) -> bool:
        """Record a validation value of the metric that picks the best model; whether it is a new best."""
        sign = 1 if greater_is_better else -1
        if self.best_metric is None or sign * (value - self.best_metric) > min_delta:
            self.best_metric, self.best_epoch, self.epochs_without_improvement = value, self.epoch, 0
            return True
        self.epochs_without_improvement += 1
        return False


class TrainingCallback:
    """Hooks of the training loop; override the ones you need. `model` is the unwrapped `LogoEmbeddingModel`."""

    def on_train_begin(self, state: TrainingState, model) -> None: ...

    def on_epoch_begin(self, state: TrainingState, model) -> None: ...

    def on_step_end(self, state: TrainingState, model, logs: dict) -> None: ...

    def on_evaluate(self, state: TrainingState, model, metrics: dict) -> None: ...

    def on_epoch_end(self, state: TrainingState, model) -> None: ...


class ProgressiveUnfreezing(TrainingCallback):
    """The paper's schedule: the backbone starts frozen (BatchNorm statistics too) and stages are unfrozen at given
    epochs; each unfreezing multiplies the learning rate by `lr_decay` (0.2 in the paper).

    The optimizer holds every parameter from the start, in groups at `backbone_lr_factor × head LR` for the backbone,
    so unfreezing only turns gradients on; the LR scheduler multiplies by [`lr_factor`] of the step's epoch.

    Args:
        schedule: `{epoch: [stages]}`, e.g. `{15: ["layer4"]}`; stages not named stay trainable from the start unless
            `freeze_others` (the paper freezes the whole backbone and unfreezes only layer4).
        lr_decay: factor applied to the learning rate at each unfreezing epoch.
        freeze_others: freeze the backbone stages that the schedule never unfreezes.
    """

    def __init__(self, schedule: dict[int, list[str]], lr_decay: float = 0.2, freeze_others: bool = True):
        unknown = [stage for stages in schedule.values() for stage in stages if stage not in BACKBONE_STAGES]
        if unknown:
            raise ValueError(
                f"Unknown backbone stage(s) {unknown} in the unfreeze schedule; valid: {BACKBONE_STAGES}."
            )
        if any(epoch < 0 for epoch in schedule):
            raise ValueError(f"Unfreeze epochs must be >= 0, got {sorted(schedule)}.")
        self.schedule = {int(epoch): list(stages) for epoch, stages in sorted(schedule.items())}
        self.lr_decay = lr_decay
        self.freeze_others = freeze_others

    @classmethod
    def from_string(cls, text: str, **kwargs) -> ProgressiveUnfreezing:
        """Parse `"layer4:15,layer3:25"` (stage:epoch pairs); an empty string means nothing is ever unfrozen."""
        schedule: dict[int, list[str]] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            stage, _, epoch = item.partition(":")
            if not epoch.strip().isdigit():
                raise ValueError(f"Unfreeze schedule entries look like 'layer4:15', got {item!r}.")
            schedule.setdefault(int(epoch), []).append(stage.strip())
        return cls(schedule, **kwargs)

    def lr_factor(self, epoch: int) -> float:
        """The learning-rate multiplier in `epoch`: `lr_decay` to the number of unfreezings so far."""
        return self.lr_decay ** sum(1 for start in self.schedule if 0 < start <= epoch)

    def frozen_stages(self, epoch: int) -> list[str]:
        """The backbone stages frozen during `epoch`."""
        unfrozen = {stage for start, stages in self.schedule.items() if start <= epoch for stage in stages}
        scheduled = {stage for stages in self.schedule.values() for stage in stages}
        candidates = BACKBONE_STAGES if self.freeze_others else scheduled
        return [stage for stage in BACKBONE_STAGES if stage in candidates and stage not in unfrozen]

    def on_train_begin(self, state: TrainingState, model) -> None:
        self._apply(state.epoch, model)

    def on_epoch_begin(self, state: TrainingState, model) -> None:
        self._apply(state.epoch, model)

    def _apply(self, epoch: int, model) -> None:
        frozen = self.frozen_stages(epoch)
        model.unfreeze_backbone_stages([stage for stage in BACKBONE_STAGES if stage not in frozen])
        model.freeze_backbone_stages(frozen)


class EarlyStopping(TrainingCallback):
    """Stop when the metric that picks the best model has not improved for `patience` evaluations."""

    def __init__(self, patience: int = 3):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}.")
        self.patience = patience

    def on_evaluate(self, state: TrainingState, model, metrics: dict) -> None:
        if state.epochs_without_improvement >= self.patience:
            state.should_stop = True


class CollapseDetector(TrainingCallback):
    """Warn (once per kind) when training collapses, reading the batch statistics that `train.py` logs
    ([`~modeling_logo.losses.batch_statistics`]):

    - `collapse`: the embeddings of a batch fall together (mean pairwise distance under `min_distance` for
      `patience` consecutive steps); every pair then looks alike and the loss sits at its margin.
    - `no_separation`: after `warmup_steps`, positives are not closer than negatives (distance ratio under
      `min_ratio` for `patience` steps): the loss is stuck and nothing is learnt.

    `warnings` lists what was detected, for the caller (and tests) to read.
    """

    ADVICE = (
        "Lower the learning rate or lengthen the warm-up; check that batches hold K >= 2 images of each brand "
        "(PKBatchSampler); prefer a loss with a miner or proxies (multi-similarity, proxy-anchor) to an unmined "
        "triplet loss; with a frozen pretrained backbone, unfreeze later."
    )

    def __init__(
        self, min_distance: float = 0.05, min_ratio: float = 1.02, patience: int = 50, warmup_steps: int = 200
    ):
        self.min_distance, self.min_ratio = min_distance, min_ratio
        self.patience, self.warmup_steps = patience, warmup_steps
        self.counts = {"collapse": 0, "no_separation": 0}
        self.warnings: list[str] = []

    def on_step_end(self, state: TrainingState, model, logs: dict) -> None:
        distance, ratio = logs.get("train/mean_distance"), logs.get("train/distance_ratio")
        checks = {
            "collapse": distance is not None and distance < self.min_distance,
            "no_separation": ratio is not None and state.global_step > self.warmup_steps and ratio < self.min_ratio,
        }
        for kind, failing in checks.items():
            self.counts[kind] = self.counts[kind] + 1 if failing else 0
            if self.counts[kind] == self.patience and kind not in self.warnings:
                self.warnings.append(kind)
                what = (
                    f"embeddings collapsed: mean pairwise distance {distance:.3f} (random unit vectors: 1.41)"
                    if kind == "collapse"
                    else f"brands do not separate: negative/positive distance ratio {ratio:.3f}"
                )
                logger.warning("Step %d: %s for %d steps. %s", state.global_step, what, self.patience, self.ADVICE)


__all__ = ["CollapseDetector", "EarlyStopping", "ProgressiveUnfreezing", "TrainingCallback", "TrainingState"]
