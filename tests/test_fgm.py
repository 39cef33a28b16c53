import copy

import numpy as np
import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.training import Callback
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.adversarial import embedding_weight, unit_direction
from ulmfit.tricks.fgm import FGMAttack

from tiny_classifier import FirstStepGrads, FixedBatches, classifier_trainer, loss_and_grads, tiny_classifier

EMB = "encoder.embedding.weight"


class RecordingFGM(FGMAttack):
    """Keeps what the attack saw: the clean loss and its adversarial loss."""

    def adversarial_backward(self, trainer):
        self.clean_loss = trainer.loss.detach()
        self.adversarial_loss = super().adversarial_backward(trainer)
        return self.adversarial_loss


def test_fgm_gradient_is_clean_plus_adversarial_and_the_embedding_is_restored_exactly():
    model, batch, epsilon = tiny_classifier(), FixedBatches().items[0], 0.5
    start = copy.deepcopy(model)
    fgm, probe = RecordingFGM(epsilon), FirstStepGrads()
    classifier_trainer([fgm, probe], model=model).fit()

    clean_loss, clean = loss_and_grads(start, batch)
    perturbed = copy.deepcopy(start)
    r = epsilon * clean[EMB] / clean[EMB].norm()
    with torch.no_grad():
        embedding_weight(perturbed).add_(r)
    adversarial_loss, adversarial = loss_and_grads(perturbed, batch)

    assert fgm.clean_loss == pytest.approx(clean_loss.item(), rel=1e-6)
    assert fgm.adversarial_loss == pytest.approx(adversarial_loss.item(), rel=1e-5)
    assert fgm.adversarial_loss > fgm.clean_loss + 1e-3          # a step uphill
    for name, grad in probe.grads.items():
        assert torch.allclose(grad, clean[name] + adversarial[name], rtol=1e-4, atol=1e-6), name
    for name, value in probe.weights.items():                 # bit for bit, BatchNorm buffers aside
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(probe.weights_after[name], value), name


def test_unit_direction_refuses_zero_and_non_finite_gradients():
    assert unit_direction(torch.zeros(3, 2)) is None
    assert unit_direction(torch.tensor([[1.0, float("inf")]])) is None
    assert unit_direction(torch.tensor([[float("nan"), 0.0]])) is None
    assert unit_direction(torch.tensor([[3.0, 4.0]]))[0].tolist() == pytest.approx([0.6, 0.8])


def test_nothing_happens_while_the_embedding_is_frozen():
    model = tiny_classifier()
    model.encoder.embedding.weight.requires_grad_(False)
    fgm, probe = RecordingFGM(1.0), FirstStepGrads()
    classifier_trainer([fgm, probe], model=model).fit()
    assert not hasattr(fgm, "adversarial_loss")
    _, clean = loss_and_grads(model, FixedBatches().items[0])
    assert probe.grads.keys() == clean.keys() and EMB not in clean
    assert all(torch.allclose(g, clean[n], atol=1e-7) for n, g in probe.grads.items())


def test_the_attack_follows_this_batchs_gradient_not_the_accumulated_one():
    """With a skipped step before it, the attack of batch 2 must use batch 2's gradient only."""
    class SkipFirst(Callback):
        def before_step(self, trainer):
            trainer.skip_step = trainer.step == 0

    class Directions(RecordingFGM):
        def after_backward(self, trainer):
            self.directions = getattr(self, "directions", []) + [self.batch_grad(embedding_weight(trainer.model))]
            super().after_backward(trainer)

    model, data = tiny_classifier(), FixedBatches(n=2)
    fgm = Directions(0.5)
    classifier_trainer([SkipFirst(), fgm], model=model, data=data, max_steps=2).fit()
    _, second = loss_and_grads(tiny_classifier(), data.items[1])
    assert torch.allclose(fgm.directions[1], second[EMB], rtol=1e-4, atol=1e-7)


def test_fgm_is_a_classifier_trick_with_a_positive_epsilon():
    assert parse_tricks("fgm", "classifier") == {"fgm": {"epsilon": 1.0}}
    with pytest.raises(UlmfitError, match="epsilon must be positive"):
        parse_tricks("fgm(epsilon=0)", "classifier")
    with pytest.raises(UlmfitError, match="classifier stage"):
        parse_tricks("fgm", "lm")


def test_fgm_still_learns_real_trec(trec_tok, tmp_path):
    from ulmfit.stages.classify import train
    metrics = train(data=str(trec_tok), out=str(tmp_path / "fgm"), from_scratch=True, preset="tiny", epochs=1,
                    max_steps=60, device="cpu", tricks="fgm(epsilon=0.1)")
    labels = np.load(trec_tok / "train_labels.npy")
    majority_error = 1 - np.bincount(labels).max() / len(labels)
    assert metrics["best_valid_error"] < majority_error - 0.25, metrics   # 0.31 vs 0.77 (0.35 without fgm)
