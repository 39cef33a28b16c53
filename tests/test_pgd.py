import copy

import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.adversarial import embedding_weight
from ulmfit.tricks.pgd import PGDAttack, project

from tiny_classifier import FirstStepGrads, FixedBatches, classifier_trainer, loss_and_grads, tiny_classifier

EMB = "encoder.embedding.weight"


class RecordingPGD(PGDAttack):
    """Keeps the perturbation (weights minus the original) of every adversarial pass."""

    def attack(self, trainer, weight, original, direction):
        self.original, self.deltas = original, []
        super().attack(trainer, weight, original, direction)

    def adversarial_backward(self, trainer):
        self.deltas.append(embedding_weight(trainer.model).detach() - self.original)
        return super().adversarial_backward(trainer)


def test_pgd_gradient_is_clean_plus_last_adversarial_within_the_ball():
    model, batch = tiny_classifier(), FixedBatches().items[0]
    epsilon, alpha, steps = 0.5, 0.3, 3
    start = copy.deepcopy(model)
    pgd, probe = RecordingPGD(epsilon, alpha, steps), FirstStepGrads()
    classifier_trainer([pgd, probe], model=model).fit()

    _, clean = loss_and_grads(start, batch)      # by hand: the same walk up the loss
    delta, grad, norms = torch.zeros_like(clean[EMB]), clean[EMB], []
    for _ in range(steps):
        delta = delta + alpha * grad / grad.norm()
        norms.append(delta.norm().item())
        delta = delta * min(1.0, epsilon / delta.norm().item())
        perturbed = copy.deepcopy(start)
        with torch.no_grad():
            embedding_weight(perturbed).add_(delta)
        _, adversarial = loss_and_grads(perturbed, batch)
        grad = adversarial[EMB]

    assert len(pgd.deltas) == steps
    assert all(d.norm() <= epsilon * (1 + 1e-6) for d in pgd.deltas)
    assert norms[0] == pytest.approx(alpha, rel=1e-5) and max(norms) > epsilon   # the projection did act
    assert pgd.deltas[-1].norm() == pytest.approx(epsilon, rel=1e-5)
    assert torch.allclose(pgd.deltas[-1], delta, atol=1e-6)
    for name, g in probe.grads.items():
        assert torch.allclose(g, clean[name] + adversarial[name], rtol=1e-4, atol=2e-5), name
    for name, value in probe.weights.items():
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(probe.weights_after[name], value), name


def test_project_only_shrinks_what_is_outside_the_ball():
    inside = torch.tensor([[0.3, 0.4]])
    assert torch.equal(project(inside, 1.0), inside)
    assert project(torch.tensor([[3.0, 4.0]]), 1.0)[0].tolist() == pytest.approx([0.6, 0.8])


def test_parameters_are_checked():
    assert parse_tricks("pgd", "classifier") == {"pgd": {"epsilon": 1.0, "alpha": 0.3, "steps": 3}}
    for spec, message in [("pgd(steps=0)", "steps must be a positive integer"), ("pgd(steps=1.5)", "integer"),
                          ("pgd(alpha=-1)", "must be positive"), ("pgd(epsilon=0)", "must be positive")]:
        with pytest.raises(UlmfitError, match=message):
            parse_tricks(spec, "classifier")
    with pytest.raises(UlmfitError, match="classifier stage"):
        parse_tricks("pgd", "lm")
