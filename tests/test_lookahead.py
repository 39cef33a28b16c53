import pytest
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.schedules import constant
from ulmfit.training import Callback, Trainer
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.lookahead import LookaheadWeights

from toy import ToyBatch, toy_trainer


class OnesData:
    """Batches of ones: with loss = sum of outputs the gradient is always 4."""

    def __init__(self, n):
        self.n = n

    def n_batches(self, epoch):
        return self.n

    def batches(self, epoch, start=0):
        return (ToyBatch(torch.ones(4, 1), torch.zeros(4)) for _ in range(start, self.n))


class Weight(Callback):
    """The model's single weight after every batch (after lookahead's after_step)."""

    order = 10

    def __init__(self):
        self.after = []

    def after_step(self, trainer):
        self.after.append(round(trainer.model.weight.item(), 6))


def sgd_run(n_batches, callbacks, accumulate=1):
    """SGD (lr 0.1) from w = 1 with a constant gradient: every real step moves the weight by -0.4."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    weight = Weight()
    Trainer(model, lambda out, target: out.sum(), torch.optim.SGD(model.parameters(), lr=0.1), constant,
            [*callbacks, weight], train_data=OnesData(n_batches), progress=False, accumulate=accumulate).fit()
    return weight.after


def test_slow_weights_follow_the_closed_form_after_k_and_2k_steps():
    # after m syncs: slow = 1 - m * alpha * k * 0.4 = 1 - 0.6 m; fast restarts there
    lookahead = LookaheadWeights(k=3, alpha=0.5)
    assert sgd_run(7, [lookahead]) == pytest.approx([0.6, 0.2, 0.4, 0.0, -0.4, -0.2, -0.6])
    assert lookahead.steps == 7 and lookahead.slow[0].item() == pytest.approx(-0.2)
    # only the steps taken count: with accumulation over 2 batches, a sync every 6 batches
    assert sgd_run(12, [LookaheadWeights(k=3, alpha=0.5)], accumulate=2) == pytest.approx(
        [1.0, 0.6, 0.6, 0.2, 0.2, 0.4, 0.4, 0.0, 0.0, -0.4, -0.4, -0.2])
    assert sgd_run(3, [LookaheadWeights(k=1, alpha=1.0)]) == pytest.approx([0.6, 0.2, -0.2])  # plain SGD


def test_resume_restores_slow_weights_and_the_step_count(tmp_path):
    straight = toy_trainer([LookaheadWeights(k=3, alpha=0.5)], epochs=2)      # 8 batches an epoch
    straight.fit()
    toy_trainer([LookaheadWeights(k=3, alpha=0.5)], epochs=1, out_dir=tmp_path).fit()   # stops 2 steps past a sync
    resumed = toy_trainer([LookaheadWeights(k=3, alpha=0.5)], epochs=2, out_dir=tmp_path)
    resumed.fit(resume=True)
    assert resumed.callbacks[0].steps == 16
    assert all(torch.equal(a, b) for a, b in zip(resumed.callbacks[0].slow, straight.callbacks[0].slow))
    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert straight.history[-1]["valid_loss"] < straight.history[0]["valid_loss"] < 0.6   # and it learns


def test_parameters_are_checked():
    assert parse_tricks("lookahead", "lm") == {"lookahead": {"k": 6, "alpha": 0.5}}
    with pytest.raises(UlmfitError, match="k must be a positive integer"):
        parse_tricks("lookahead(k=0)", "classifier")
    with pytest.raises(UlmfitError, match=r"alpha must be in \(0, 1\]"):
        parse_tricks("lookahead(alpha=0)", "classifier")
