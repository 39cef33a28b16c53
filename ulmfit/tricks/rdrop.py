"""R-Drop (Liang et al. 2021): each training batch goes through the model twice, under different
dropout masks, and the two predictions are trained to agree besides fitting the labels, which
regularizes the sub-models dropout samples towards one another."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..training import Callback, Trainer
from . import trick


def symmetric_kl(logits1: Tensor, logits2: Tensor) -> Tensor:
    """0.5 (KL(p1||p2) + KL(p2||p1)) of the two softmax distributions, averaged over the batch,
    in float32. The two KLs sum to sum (p1 - p2)(log p1 - log p2), one pass over the classes."""
    log_p1, log_p2 = logits1.float().log_softmax(-1), logits2.float().log_softmax(-1)
    return 0.5 * ((log_p1.exp() - log_p2.exp()) * (log_p1 - log_p2)).sum(-1).mean()


def rdrop_loss(logits1: Tensor, logits2: Tensor, target: Tensor, alpha: float) -> Tensor:
    """The mean of the two passes' cross-entropies plus ``alpha`` x their symmetric KL."""
    ce = 0.5 * (nn.functional.cross_entropy(logits1.float(), target)
                + nn.functional.cross_entropy(logits2.float(), target))
    return ce + alpha * symmetric_kl(logits1, logits2)


class RDropLoss(Callback):
    """Replaces the training loss, running the second pass; evaluation stays one pass with plain
    cross-entropy, and the reported training loss is the first pass's cross-entropy."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def after_loss(self, trainer: Trainer) -> None:
        if trainer.training:
            second = trainer.model(*trainer.inputs)
            trainer.loss = rdrop_loss(trainer.output, second, trainer.target, self.alpha)


@trick("rdrop", stages=("classifier",))
@dataclass
class RDrop:
    """R-Drop: two dropout passes per batch, cross-entropy of both + alpha x their symmetric KL."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    def callbacks(self) -> list[Callback]:
        return [RDropLoss(self.alpha)]
