import json
import math

import pytest
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.stages.classify import train
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.rdrop import RDropLoss, rdrop_loss, symmetric_kl

from toy import toy_trainer


def dropout_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))


def test_symmetric_kl_is_symmetric_zero_for_identical_logits_and_positive_otherwise():
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    kl = lambda p_logits, q_logits: nn.functional.kl_div(q_logits.log_softmax(-1), p_logits.log_softmax(-1),
                                                         reduction="batchmean", log_target=True)
    assert symmetric_kl(a, b).item() == pytest.approx(0.5 * (kl(a, b) + kl(b, a)).item(), rel=1e-5)
    assert symmetric_kl(a, b).item() == pytest.approx(symmetric_kl(b, a).item(), rel=1e-6)
    assert symmetric_kl(a, b) > 0
    assert symmetric_kl(a, a) == 0
    assert symmetric_kl(a, a + 3.0).item() == pytest.approx(0, abs=1e-6)  # shifted logits: the same distributions


def test_without_dropout_the_two_passes_agree_and_the_loss_is_cross_entropy():
    model, x, y = dropout_model().eval(), torch.randn(8, 2), torch.randint(0, 2, (8,))
    first, second = model(x), model(x)
    assert torch.equal(first, second)
    plain = nn.functional.cross_entropy(first, y)
    assert rdrop_loss(first, second, y, 1.0).item() == pytest.approx(plain.item(), rel=1e-6)
    model.train()
    first, second = model(x), model(x)
    assert symmetric_kl(first, second) > 0
    assert rdrop_loss(first, second, y, 1.0) > 0.5 * (nn.functional.cross_entropy(first, y)
                                                       + nn.functional.cross_entropy(second, y))


def test_training_loss_is_rdrop_of_a_second_pass_and_evaluation_is_plain():
    seen = {True: [], False: []}

    class Probe(RDropLoss):
        def after_loss(self, trainer):
            rng = torch.get_rng_state()
            super().after_loss(trainer)
            if trainer.training:  # replay the second pass's dropout masks
                after = torch.get_rng_state()
                torch.set_rng_state(rng)
                second = trainer.model(*trainer.inputs)
                assert torch.equal(torch.get_rng_state(), after)
                expected = rdrop_loss(trainer.output, second, trainer.target, 0.7)
                assert symmetric_kl(trainer.output, second) > 0
            else:
                expected = nn.functional.cross_entropy(trainer.output, trainer.target)
            seen[trainer.training].append((trainer.loss.item(), expected.item()))

    trainer = toy_trainer([Probe(0.7)], epochs=2, model=dropout_model())
    trainer.fit()
    assert seen[True] and seen[False]
    assert all(loss == pytest.approx(expected, rel=1e-6) for k in seen for loss, expected in seen[k])
    assert trainer.history[-1]["valid_loss"] < 0.6  # and it still learns


def test_a_negative_alpha_is_refused():
    with pytest.raises(UlmfitError, match="alpha must be >= 0"):
        parse_tricks("rdrop(alpha=-0.1)", "classifier")


def test_a_tiny_real_classifier_run_with_rdrop(trec_tok, tmp_path):
    metrics = train(data=str(trec_tok), out=str(tmp_path), from_scratch=True, preset="tiny", max_steps=4,
                    tricks="rdrop(alpha=0.5)", device="cpu")
    assert metrics["steps"] == 4 and math.isfinite(metrics["final_valid_loss"])
    assert json.loads((tmp_path / "config.json").read_text())["tricks"] == {"rdrop": {"alpha": 0.5}}
