"""Sharpening (as for the guessed labels of MixMatch and UDA): the model's own predictions,
sharpened by a temperature and detached, become soft targets for it; the added cross-entropy
pushes each prediction towards its own argmax (entropy minimisation, a self-training regularizer)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..training import Callback, Trainer
from . import trick


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """``probs^(1/T)`` renormalised over the last dimension: T = 1 changes nothing, smaller T moves
    mass to the likelier classes, T -> 0 gives the one-hot of the argmax. Computed as a softmax of
    ``log(probs) / T``, which does not underflow for small T."""
    return (probs.log() / temperature).softmax(-1)


def self_sharpened_cross_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Cross-entropy between the model's own sharpened predictions, detached so that no gradient
    flows into the targets, and its predictions; batch mean, in float32."""
    log_probs = logits.float().log_softmax(-1)
    targets = sharpen(log_probs.detach().exp(), temperature)
    return -(targets * log_probs).sum(-1).mean()


class SharpenedSelfTargets(Callback):
    """Adds ``weight`` x :func:`self_sharpened_cross_entropy` to training losses; validation
    losses and the reported training loss stay plain."""

    order = 10  # adds to the training loss after the tricks that replace it (order 0)

    def __init__(self, temperature: float, weight: float):
        self.temperature, self.weight = temperature, weight

    def after_loss(self, trainer: Trainer) -> None:
        if trainer.training:
            trainer.loss = trainer.loss + self.weight * self_sharpened_cross_entropy(trainer.output, self.temperature)


@trick("sharpen", stages=("classifier",))
@dataclass
class Sharpen:
    """Adds weight x cross-entropy to the model's own temperature-sharpened, detached predictions."""

    temperature: float = 0.5
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.temperature <= 1.0:
            raise ValueError(f"temperature must be in (0, 1], got {self.temperature}")
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    def callbacks(self) -> list[Callback]:
        return [SharpenedSelfTargets(self.temperature, self.weight)]
