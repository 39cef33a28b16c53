"""What the classifier's training adds to the generic trainer: its loss, the accuracy metric the
best epoch is chosen by, and gradual unfreezing."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .. import distributed
from ..training import Callback, Trainer
from .head import gradual_unfreezing_schedule, set_trainable_groups


def classification_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy in float32, whatever precision the logits were computed in."""
    return nn.functional.cross_entropy(logits.float(), target)


class Accuracy(Callback):
    """Adds ``accuracy`` and ``error`` (1 - accuracy) to every evaluation's metrics."""

    def __init__(self) -> None:
        self.correct = self.total = 0

    def before_eval(self, trainer: Trainer) -> None:
        self.correct = self.total = 0

    def after_loss(self, trainer: Trainer) -> None:
        if not trainer.training:
            self.correct += int((trainer.output.argmax(-1) == trainer.target).sum())
            self.total += trainer.target.numel()

    def after_eval(self, trainer: Trainer) -> None:
        self.correct, self.total = distributed.sum_across(self.correct, self.total)  # over all ranks
        accuracy = self.correct / max(self.total, 1)
        trainer.eval_metrics.update(accuracy=accuracy, error=1.0 - accuracy)


class GradualUnfreezing(Callback):
    """Before each epoch, lets only the top ``gradual_unfreezing_schedule`` layer groups train.

    Frozen parameters get no gradient, so the optimizer leaves them (and their state) alone.
    Depends only on the epoch, so a resumed run freezes the same groups.
    """

    def __init__(self, groups: Sequence[Sequence[nn.Parameter]]):
        self.groups = groups
        self.trainable = len(groups)

    def before_epoch(self, trainer: Trainer) -> None:
        self.trainable = gradual_unfreezing_schedule(len(self.groups), trainer.epoch)
        set_trainable_groups(self.groups, self.trainable)

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.metrics["trainable_groups"] = self.trainable
