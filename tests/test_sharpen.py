import pytest
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.sharpen import SharpenedSelfTargets, self_sharpened_cross_entropy, sharpen

from toy import toy_trainer


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.log()).sum(-1)


@pytest.fixture
def probs() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(8, 5).mul(2).softmax(-1)


def test_sharpen_keeps_a_distribution_and_t1_is_the_identity(probs):
    for t in (1.0, 0.5, 0.1):
        sharpened = sharpen(probs, t)
        assert (sharpened >= 0).all()
        torch.testing.assert_close(sharpened.sum(-1), torch.ones(8))
    torch.testing.assert_close(sharpen(probs, 1.0), probs)
    expected = probs ** 2 / (probs ** 2).sum(-1, keepdim=True)  # the definition, at T = 0.5
    torch.testing.assert_close(sharpen(probs, 0.5), expected)


def test_sharpen_lowers_entropy_and_goes_to_the_argmax_one_hot(probs):
    entropies = [entropy(sharpen(probs, t)) for t in (1.0, 0.7, 0.4)]
    assert (entropies[1] < entropies[0]).all() and (entropies[2] < entropies[1]).all()
    one_hot = nn.functional.one_hot(probs.argmax(-1), 5).float()
    torch.testing.assert_close(sharpen(probs, 1e-4), one_hot)


def test_the_added_term_has_no_gradient_through_its_targets(probs):
    logits = probs.log().clone().requires_grad_()
    self_sharpened_cross_entropy(logits, 0.5).backward()
    # d/dz of -sum q log softmax(z) with q held fixed is softmax(z) - q
    torch.testing.assert_close(logits.grad, (probs - sharpen(probs, 0.5)) / len(probs))

    through = logits.detach().clone().requires_grad_()  # what the gradient would be with attached targets
    log_p = through.log_softmax(-1)
    (-(sharpen(log_p.exp(), 0.5) * log_p).sum(-1).mean()).backward()
    assert not torch.allclose(through.grad, logits.grad, atol=1e-4)


def test_the_training_loss_gets_the_weighted_term_and_evaluation_stays_plain():
    seen = {True: [], False: []}

    class Probe(SharpenedSelfTargets):
        def after_loss(self, trainer):
            plain = nn.functional.cross_entropy(trainer.output, trainer.target)
            super().after_loss(trainer)
            added = 0.3 * self_sharpened_cross_entropy(trainer.output, 0.5) if trainer.training else 0.0
            seen[trainer.training].append((trainer.loss.item(), (plain + added).item()))

    trainer = toy_trainer([Probe(0.5, 0.3)], epochs=1)
    trainer.fit()
    assert seen[True] and seen[False]
    assert all(loss == pytest.approx(expected, rel=1e-6) for k in seen for loss, expected in seen[k])
    assert trainer.history[0]["valid_loss"] < 0.6  # and it still learns


@pytest.mark.parametrize("spec, message", [
    ("sharpen(temperature=0)", r"temperature must be in \(0, 1\]"),
    ("sharpen(temperature=2)", r"temperature must be in \(0, 1\]"),
    ("sharpen(weight=-1)", "weight must be >= 0"),
])
def test_bad_parameters_are_refused(spec, message):
    with pytest.raises(UlmfitError, match=message):
        parse_tricks(spec, "classifier")
