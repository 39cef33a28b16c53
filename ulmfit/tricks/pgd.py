"""Projected Gradient Descent adversarial training (Madry et al. 2018, as used on text embeddings):
several small steps up the loss, each projected back into an ``epsilon`` ball."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..training import Callback, Trainer
from . import trick
from .adversarial import EmbeddingAttack, unit_direction


def project(delta: Tensor, epsilon: float) -> Tensor:
    """``delta`` scaled down onto the Frobenius ball of radius ``epsilon`` if it lies outside it."""
    norm = delta.norm()
    return delta * (epsilon / norm) if norm > epsilon else delta


class PGDAttack(EmbeddingAttack):
    """After the clean backward (all gradients backed up): ``steps`` times, move the embedding
    perturbation by ``alpha * g / ||g||`` and project it onto the ``epsilon`` ball around the
    original matrix, then backpropagate the batch through the perturbed embedding. Intermediate
    passes start from zero gradients, only to find the next ``g``; the last one starts from the
    backed-up gradients, so the step follows clean + last adversarial. The original weights are
    copied back exactly.

    Nothing happens while the embedding is frozen or its clean gradient is 0 or not finite (see
    :class:`EmbeddingAttack`); a later gradient that is leaves the perturbation where it is.
    """

    def __init__(self, epsilon: float, alpha: float, steps: int):
        super().__init__()
        self.epsilon, self.alpha, self.steps = epsilon, alpha, steps

    def attack(self, trainer: Trainer, weight: nn.Parameter, original: Tensor, direction: Tensor) -> None:
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        backup = [None if p.grad is None else p.grad.clone() for p in params]
        delta = torch.zeros_like(original)
        for step in range(self.steps):
            if step > 0:
                direction = unit_direction(weight.grad)
            if direction is not None:
                delta = project(delta + self.alpha * direction, self.epsilon)
            with torch.no_grad():
                weight.copy_(original + delta)
            last = step == self.steps - 1
            for p, saved in zip(params, backup):
                p.grad = saved if last else None
            self.adversarial_backward(trainer)


@trick("pgd", stages=("classifier",))
@dataclass
class PGD:
    """PGD adversarial training: also learn from the embedding after `steps` ascent steps kept in an epsilon ball."""

    epsilon: float = 1.0
    alpha: float = 0.3
    steps: int = 3

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and self.alpha > 0):
            raise ValueError(f"epsilon and alpha must be positive, got {self.epsilon} and {self.alpha}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")

    def callbacks(self) -> list[Callback]:
        return [PGDAttack(self.epsilon, self.alpha, self.steps)]
