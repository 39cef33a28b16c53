"""Label smoothing (Szegedy et al. 2016): train against (1 - alpha) one-hot + alpha uniform."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..training import Callback, Trainer
from . import trick


def smoothed_cross_entropy(logits: Tensor, target: Tensor, alpha: float) -> Tensor:
    """Cross-entropy against targets that put ``1 - alpha`` on the label and spread ``alpha``
    uniformly over all classes (computed in float32)."""
    return nn.functional.cross_entropy(logits.float(), target, label_smoothing=alpha)


class SmoothedLoss(Callback):
    """Replaces the training loss; validation losses stay plain cross-entropy, comparable across runs."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def after_loss(self, trainer: Trainer) -> None:
        if trainer.training:
            trainer.loss = smoothed_cross_entropy(trainer.output, trainer.target, self.alpha)


@trick("label_smoothing", stages=("classifier",))
@dataclass
class LabelSmoothing:
    """Cross-entropy against (1 - alpha) x one-hot + alpha x uniform targets."""

    alpha: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")

    def callbacks(self) -> list[Callback]:
        return [SmoothedLoss(self.alpha)]
