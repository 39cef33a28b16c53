import pytest
import torch

from ulmfit.tricks.label_smoothing import SmoothedLoss, smoothed_cross_entropy

from toy import toy_trainer


def test_smoothed_targets_match_the_hand_computation():
    torch.manual_seed(0)
    logits, target, alpha = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2]), 0.2
    q = torch.full((5, 4), alpha / 4)
    q[torch.arange(5), target] += 1 - alpha
    expected = -(q * logits.log_softmax(-1)).sum(-1).mean()
    assert smoothed_cross_entropy(logits, target, alpha) == pytest.approx(expected.item(), rel=1e-6)
    plain = torch.nn.functional.cross_entropy(logits, target)
    assert smoothed_cross_entropy(logits, target, 0.0) == pytest.approx(plain.item(), rel=1e-6)


def test_only_the_training_loss_is_smoothed():
    seen = {True: [], False: []}

    class Probe(SmoothedLoss):
        def after_loss(self, trainer):
            plain = torch.nn.functional.cross_entropy(trainer.output, trainer.target)
            smoothed = smoothed_cross_entropy(trainer.output, trainer.target, 0.3)
            super().after_loss(trainer)
            seen[trainer.training].append((trainer.loss.item(), plain.item(), smoothed.item()))

    trainer = toy_trainer([Probe(0.3)], epochs=1)
    trainer.fit()
    assert all(loss == smoothed != plain for loss, plain, smoothed in seen[True])
    assert all(loss == plain != smoothed for loss, plain, smoothed in seen[False])
    assert trainer.history[0]["valid_loss"] < 0.6                # and it still learns
