"""Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)^gamma, so examples the model
already gets right with confidence weigh little and training concentrates on the hard ones."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..errors import UlmfitError
from ..training import Callback, Trainer
from . import trick


def focal_loss(logits: Tensor, target: Tensor, gamma: float, alpha: Tensor | None = None) -> Tensor:
    """-alpha_t (1 - p_t)^gamma log p_t averaged over the batch (p_t: the probability of the
    label; alpha: per-class weights, None for 1), in float32 whatever precision the logits are in.
    At gamma 0 without alpha it is the cross-entropy."""
    log_pt = logits.float().log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = -(1.0 - log_pt.exp()).pow(gamma) * log_pt
    if alpha is not None:
        loss = loss * alpha.to(loss.device)[target]
    return loss.mean()


class FocalLoss(Callback):
    """Replaces the training loss; validation losses stay plain cross-entropy, comparable across runs."""

    def __init__(self, gamma: float, alpha: Sequence[float] | None):
        self.gamma = gamma
        self.alpha = torch.tensor(alpha, dtype=torch.float32) if alpha is not None else None

    def after_loss(self, trainer: Trainer) -> None:
        if not trainer.training:
            return
        n_classes = trainer.output.size(-1)
        if self.alpha is not None and len(self.alpha) != n_classes:
            raise UlmfitError(f"--tricks focal(alpha=...): {len(self.alpha)} class weights given but the "
                              f"classifier has {n_classes} classes")
        trainer.loss = focal_loss(trainer.output, trainer.target, self.gamma, self.alpha)


@trick("focal", stages=("classifier",))
@dataclass
class Focal:
    """Focal loss: cross-entropy x (1 - p_t)^gamma (x a per-class alpha), down-weighting easy examples."""

    gamma: float = 2.0
    alpha: list[float] | None = None  # one weight per class, in the order of classes.json

    def __post_init__(self) -> None:
        if not self.gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.alpha is not None:
            if not (isinstance(self.alpha, (list, tuple)) and self.alpha and all(
                    isinstance(a, (int, float)) and not isinstance(a, bool) and a >= 0 for a in self.alpha)):
                raise ValueError(f"alpha must be None or a list of per-class weights >= 0, got {self.alpha!r}")
            self.alpha = [float(a) for a in self.alpha]

    def callbacks(self) -> list[Callback]:
        return [FocalLoss(self.gamma, self.alpha)]
