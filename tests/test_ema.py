import pytest
import torch
from torch import nn

from ulmfit.stages.classify import train
from ulmfit.stages.lm import pretrain
from ulmfit.artefacts import BEST_WEIGHTS, LAST_CHECKPOINT
from ulmfit.training import Callback
from ulmfit.tricks.ema import EMAWeights

from toy import Blobs, Crash, CrashAt, WeightLog, assert_weights, differ, toy_trainer

STEPS_PER_EPOCH = Blobs(0).n_batches(0)


class SkipOddSteps(Callback):
    def before_step(self, trainer):
        trainer.skip_step = trainer.step % 2 == 1


def closed_form(weights: list[dict], decay: float) -> dict:
    """s_n = d^n w_0 + (1 - d) sum_k d^(n-k) w_k over the weights after the n real steps."""
    n = len(weights) - 1
    return {name: decay ** n * weights[0][name]
            + (1 - decay) * sum(decay ** (n - k) * weights[k][name] for k in range(1, n + 1))
            for name in weights[0]}


def test_the_shadow_is_the_closed_form_average_over_real_steps_only():
    ema, log = EMAWeights(0.9), WeightLog()
    toy_trainer([SkipOddSteps(), log, ema], epochs=2).fit()
    assert len(log.steps) == 1 + STEPS_PER_EPOCH  # 2 epochs of batches, every other step skipped
    assert_weights(ema.average, closed_form(log.steps, 0.9))
    assert differ(ema.average, log.steps[-1])


def test_evaluation_uses_the_shadow_and_training_goes_on_from_the_trained_weights():
    ema, log = EMAWeights(0.5), WeightLog()
    trainer = toy_trainer([log, ema], epochs=3)
    trainer.fit()
    eval_batches = Blobs(1).n_batches(0)
    for epoch in range(3):
        trained = log.steps[(epoch + 1) * STEPS_PER_EPOCH]
        shadow = closed_form(log.steps[:(epoch + 1) * STEPS_PER_EPOCH + 1], 0.5)
        for evaluated in log.evaluated[epoch * eval_batches:(epoch + 1) * eval_batches]:
            assert_weights(evaluated, shadow)
        assert differ(shadow, trained)
        assert_weights(log.at_epoch_end[epoch], trained, atol=0)
    model = nn.Linear(2, 2)
    model.load_state_dict(ema.average)
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(model(b.x), b.y) for b in Blobs(1).batches(0)]
    assert trainer.history[-1]["valid_loss"] == pytest.approx(torch.stack(losses).mean().item(), rel=1e-5)


def test_best_weights_are_the_shadow(tmp_path):
    log = WeightLog()
    trainer = toy_trainer([log, EMAWeights(0.9)], epochs=3, out_dir=tmp_path)
    trainer.fit()
    best_epoch = min(range(3), key=lambda e: trainer.history[e]["valid_loss"])
    best = torch.load(tmp_path / BEST_WEIGHTS, weights_only=True)
    assert_weights(best, closed_form(log.steps[:(best_epoch + 1) * STEPS_PER_EPOCH + 1], 0.9))
    assert differ(best, log.steps[(best_epoch + 1) * STEPS_PER_EPOCH])


@pytest.mark.parametrize("crash_step", [STEPS_PER_EPOCH, STEPS_PER_EPOCH + 3])
def test_resume_is_exact(tmp_path, crash_step):
    straight_ema = EMAWeights(0.9)
    straight = toy_trainer([straight_ema], out_dir=tmp_path / "a")
    straight.fit()
    with pytest.raises(Crash):
        toy_trainer([EMAWeights(0.9), CrashAt(crash_step)], out_dir=tmp_path / "b", checkpoint_interval_s=0).fit()
    ema = EMAWeights(0.9)
    resumed = toy_trainer([ema], out_dir=tmp_path / "b")
    resumed.fit(resume=True)
    assert_weights(ema.average, straight_ema.average, atol=0)
    assert_weights(resumed.model.state_dict(), straight.model.state_dict(), atol=0)
    assert_weights(torch.load(tmp_path / "b" / BEST_WEIGHTS, weights_only=True),
                   torch.load(tmp_path / "a" / BEST_WEIGHTS, weights_only=True), atol=0)
    untimed = lambda history: [{k: v for k, v in m.items() if not k.endswith("_s")} for m in history]
    assert untimed(resumed.history) == untimed(straight.history)


def saved_shadow(out) -> tuple[dict, dict]:
    """The shadow and the trained weights in a stage's last.pt."""
    last = torch.load(out / LAST_CHECKPOINT, weights_only=True)
    (shadow,) = [s["shadow"] for key, s in last["callbacks"].items() if key.endswith(":EMAWeights")]
    return shadow, last["model"]


def test_the_classifier_saves_the_shadow_as_model_pt(trec_tok, tmp_path):
    train(data=str(trec_tok), out=str(tmp_path), from_scratch=True, preset="tiny", max_steps=5,
          tricks="ema(decay=0.9)", device="cpu")
    shadow, trained = saved_shadow(tmp_path)
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(model) == set(trained)
    for name, tensor in model.items():  # averaged parameters, the model's own BatchNorm statistics
        assert torch.equal(tensor, shadow[name] if name in shadow else trained[name])
    assert differ(model, trained)


def test_the_language_model_saves_the_shadow_as_model_and_encoder(ptb_tok, tmp_path):
    pretrain(str(ptb_tok), str(tmp_path), preset="tiny", max_steps=5, tricks="ema(decay=0.9)", device="cpu")
    shadow, trained = saved_shadow(tmp_path)
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    encoder = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert set(model) == set(trained) and "decoder.weight" not in shadow
    assert torch.equal(model["decoder.weight"], shadow["encoder.embedding.weight"])  # tied
    for name, tensor in shadow.items():
        assert torch.equal(model[name], tensor)
    for name, tensor in encoder.items():
        assert torch.equal(tensor, shadow[f"encoder.{name}"])
    assert differ(model, trained)
