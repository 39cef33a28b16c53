"""What the adversarial-training tricks (fgm, pgd) share: the embedding matrix they perturb, the
direction of its gradient, and a second forward and backward of the batch with perturbed weights.

The perturbation goes on the classifier's embedding matrix (its rows used by the batch are the
ones with a gradient) rather than on the language model's, whose embedding is tied to the decoder:
perturbing it there would change the output layer too, not only the input.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..training import Callback, Trainer


def embedding_weight(model: nn.Module) -> nn.Parameter:
    """The word-embedding matrix of a ``TextClassifier`` (or any model with ``encoder.embedding``)."""
    return model.encoder.embedding.weight


def unit_direction(grad: Tensor) -> Tensor | None:
    """``grad / ||grad||`` (Frobenius norm over the whole matrix), or None when the norm is 0
    (nothing to follow) or not finite (an overflowed fp16 step, which the scaler will skip)."""
    norm = grad.norm()
    if not torch.isfinite(norm) or norm == 0:
        return None
    return grad / norm


class EmbeddingAttack(Callback):
    """Base of the attacks: run the batch again with a perturbed embedding, adding its gradients.

    After the clean backward, :meth:`attack` gets the direction of this batch's embedding gradient
    (nothing happens while the embedding is frozen, or when that gradient is 0 or not finite);
    whatever it does to the weights, the original matrix is copied back exactly afterwards.
    It remembers two things the attack needs after the clean backward: the embedding gradient
    already accumulated before it (steps skipped by gradient accumulation), so that the attack
    follows this batch's gradient alone, and the autocast state of the clean forward, so that
    the adversarial forwards run in the same precision.
    """

    def __init__(self) -> None:
        self.prior_grad: Tensor | None = None
        self.autocast: tuple[bool, torch.dtype] = (False, torch.bfloat16)  # (enabled, dtype)

    def after_loss(self, trainer: Trainer) -> None:
        if trainer.training:
            device = trainer.device.type
            self.autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))

    def before_backward(self, trainer: Trainer) -> None:
        grad = embedding_weight(trainer.model).grad
        self.prior_grad = None if grad is None else grad.clone()

    def after_backward(self, trainer: Trainer) -> None:
        weight = embedding_weight(trainer.model)
        grad = self.batch_grad(weight)
        direction = None if grad is None else unit_direction(grad)
        if direction is None:
            return
        original = weight.detach().clone()
        try:
            self.attack(trainer, weight, original, direction)
        finally:
            with torch.no_grad():
                weight.copy_(original)

    def attack(self, trainer: Trainer, weight: nn.Parameter, original: Tensor, direction: Tensor) -> None:
        """Perturb ``weight`` (equal to ``original``) and call :meth:`adversarial_backward`."""
        raise NotImplementedError

    def batch_grad(self, weight: nn.Parameter) -> Tensor | None:
        """This batch's gradient of ``weight`` (None if it has none: a frozen embedding)."""
        if weight.grad is None or self.prior_grad is None:
            return weight.grad
        return weight.grad - self.prior_grad

    def adversarial_backward(self, trainer: Trainer) -> Tensor:
        """Forward the batch with the weights as they are now and backpropagate its loss through
        ``trainer.backward`` (the gradients add to those already there); returns the loss."""
        enabled, dtype = self.autocast
        with torch.autocast(trainer.device.type, dtype=dtype, enabled=enabled):
            loss = trainer.loss_fn(trainer.model(*trainer.inputs), trainer.target)
        trainer.backward(loss)
        return loss.detach()
