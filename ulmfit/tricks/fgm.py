"""Fast Gradient Method (Miyato et al. 2017): train on the batch and on its worst case within an
``epsilon`` step of the embedding matrix along its gradient."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..training import Callback, Trainer
from . import trick
from .adversarial import EmbeddingAttack


class FGMAttack(EmbeddingAttack):
    """After the clean backward: add ``r = epsilon * g / ||g||`` to the embedding matrix (``g`` its
    gradient from this batch), backpropagate the loss of the same batch again, and put the exact
    original weights back. The step then follows clean + adversarial gradients.

    Nothing happens while the embedding is frozen (gradual unfreezing) or its gradient is 0 or not
    finite (see :class:`EmbeddingAttack`). The second forward draws new dropout masks and updates
    BatchNorm statistics again.
    """

    def __init__(self, epsilon: float):
        super().__init__()
        self.epsilon = epsilon

    def attack(self, trainer: Trainer, weight: nn.Parameter, original: Tensor, direction: Tensor) -> None:
        with torch.no_grad():
            weight.add_(direction, alpha=self.epsilon)
        self.adversarial_backward(trainer)


@trick("fgm", stages=("classifier",))
@dataclass
class FGM:
    """FGM adversarial training: also learn from the embedding matrix pushed epsilon along its gradient."""

    epsilon: float = 1.0

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {self.epsilon}")

    def callbacks(self) -> list[Callback]:
        return [FGMAttack(self.epsilon)]
