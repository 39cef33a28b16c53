import math

import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.focal import FocalLoss, focal_loss

from toy import toy_trainer


def test_at_gamma_0_without_alpha_it_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(7, 5, dtype=torch.float64), torch.tensor([0, 4, 1, 1, 2, 3, 0])
    loss = focal_loss(logits, target, 0.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-6)


def test_gamma_2_with_alpha_matches_the_hand_computation():
    logits, target, alpha = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]), torch.tensor([0, 1]), [0.25, 2.0, 1.0]
    expected = 0.0
    for row, label in zip(logits.tolist(), target.tolist()):
        p = math.exp(row[label]) / sum(math.exp(z) for z in row)
        expected += -alpha[label] * (1 - p) ** 2 * math.log(p) / 2
    assert focal_loss(logits, target, 2.0, torch.tensor(alpha)).item() == pytest.approx(expected, rel=1e-6)


def test_easy_examples_are_down_weighted_more_than_hard_ones():
    target = torch.tensor([0])
    ratios = []
    for margin in (-2.0, 0.0, 2.0, 4.0):  # from a hard example to an easy one
        logits = torch.tensor([[margin, 0.0]])
        plain = torch.nn.functional.cross_entropy(logits, target).item()
        ratios.append(focal_loss(logits, target, 2.0).item() / plain)
    assert all(0 < r < 1 for r in ratios) and ratios == sorted(ratios, reverse=True)
    assert ratios[-1] < 1e-3 < 0.5 < ratios[0]


def test_only_the_training_loss_is_focal():
    seen = {True: [], False: []}

    class Probe(FocalLoss):
        def after_loss(self, trainer):
            plain = torch.nn.functional.cross_entropy(trainer.output, trainer.target)
            super().after_loss(trainer)
            expected = focal_loss(trainer.output, trainer.target, 2.0, torch.tensor([1.0, 3.0]))
            seen[trainer.training].append((trainer.loss.item(), plain.item(), expected.item()))

    trainer = toy_trainer([Probe(2.0, [1.0, 3.0])], epochs=1)
    trainer.fit()
    assert all(loss == focal != plain for loss, plain, focal in seen[True])
    assert all(loss == plain != focal for loss, plain, focal in seen[False])
    assert trainer.history[0]["valid_loss"] < 0.6  # and it still learns


def test_alpha_of_the_wrong_length_is_a_clear_error_at_the_first_batch():
    with pytest.raises(UlmfitError, match=r"focal\(alpha=...\): 3 class weights given but the classifier has 2"):
        toy_trainer([FocalLoss(2.0, [1.0, 1.0, 1.0])]).fit()


@pytest.mark.parametrize("spec, message", [
    ("focal(gamma=-1)", "gamma must be >= 0"),
    ("focal(alpha=0.5)", "alpha must be None or a list"),
    ("focal(alpha=[])", "alpha must be None or a list"),
    ("focal(alpha=[1, -1])", "alpha must be None or a list"),
])
def test_bad_parameters_are_refused(spec, message):
    with pytest.raises(UlmfitError, match=message):
        parse_tricks(spec, "classifier")


def test_the_resolved_spec_stores_float_weights():
    assert parse_tricks("focal(alpha=[1, 2])", "classifier") == {"focal": {"gamma": 2.0, "alpha": [1.0, 2.0]}}
