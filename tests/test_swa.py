import pytest
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.stages.classify import train
from ulmfit.artefacts import BEST_WEIGHTS, LAST_CHECKPOINT
from ulmfit.tricks.ema import EMAWeights
from ulmfit.tricks.swa import SWAWeights, recompute_batchnorm

from toy import Blobs, Crash, CrashAt, WeightLog, assert_weights, differ, toy_trainer

STEPS_PER_EPOCH = Blobs(0).n_batches(0)
BN_BUFFERS = ("1.running_mean", "1.running_var", "1.num_batches_tracked")


def bn_model() -> nn.Module:
    """The toy task's model with a BatchNorm1d (and dropout, which draws random numbers)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))


def valid_loss(model: nn.Module, weights: dict) -> float:
    model.load_state_dict(weights)
    model.eval()
    with torch.no_grad():
        return torch.stack([nn.functional.cross_entropy(model(b.x), b.y) for b in Blobs(1).batches(0)]).mean().item()


@pytest.mark.parametrize("epochs, max_steps, start, sampled", [
    (4, None, 0.5, [2, 3, 4]),
    (4, None, 0.0, [1, 2, 3, 4]),
    (4, None, 1.0, [4]),
    (10, STEPS_PER_EPOCH + 3, 0.5, [1, 2]),  # max_steps ends the run in its second epoch
])
def test_the_average_is_the_mean_of_the_weights_at_the_sampled_epochs_ends(epochs, max_steps, start, sampled):
    swa, log = SWAWeights(start), WeightLog()
    trainer = toy_trainer([log, swa], epochs=epochs, max_steps=max_steps, model=bn_model())
    trainer.fit()
    names = [name for name, _ in trainer.model.named_parameters()]
    assert swa.count == len(sampled) and sorted(swa.average) == sorted(names)
    assert_weights(swa.average, {name: torch.stack([log.at_epoch_end[k - 1][name] for k in sampled]).mean(0)
                                 for name in names})


def test_batchnorm_statistics_are_recomputed_on_the_training_features_of_the_average():
    swa = SWAWeights(0.5)
    trainer = toy_trainer([swa], epochs=4, model=bn_model())
    trainer.fit()
    first = nn.Linear(2, 8)
    first.load_state_dict({"weight": swa.average["0.weight"], "bias": swa.average["0.bias"]})
    with torch.no_grad():
        features = [first(batch.x) for batch in Blobs(0).batches(3)]
    expected = {"1.running_mean": torch.stack([f.mean(0) for f in features]).mean(0),
                "1.running_var": torch.stack([f.var(0) for f in features]).mean(0)}  # each batch's, unbiased
    assert_weights(swa.buffers, expected, atol=1e-5)
    assert sorted(swa.buffers) == sorted(BN_BUFFERS) and swa.buffers["1.num_batches_tracked"] == STEPS_PER_EPOCH
    assert differ(swa.buffers, {name: trainer.model.state_dict()[name] for name in expected})  # the model keeps its own


def test_recompute_batchnorm_puts_the_model_back_as_it_was():
    model = bn_model().eval()
    model[1].momentum = 0.3
    batches = [(torch.randn(16, 2),)]
    before, rng = {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()
    stats = recompute_batchnorm(model, batches)
    assert sorted(stats) == sorted(BN_BUFFERS) and stats["1.num_batches_tracked"] == 1
    assert_weights(model.state_dict(), before, atol=0)
    assert not any(m.training for m in model.modules()) and model[1].momentum == 0.3
    assert torch.equal(torch.get_rng_state(), rng)

    def never():
        raise AssertionError("no pass without BatchNorm")
        yield
    assert recompute_batchnorm(nn.Linear(2, 2), never()) == {}


def test_evaluation_uses_the_average_and_training_is_untouched():
    swa, log = SWAWeights(0.5), WeightLog()
    trainer = toy_trainer([log, swa], epochs=4, model=bn_model())
    trainer.fit()
    plain = toy_trainer([], epochs=4, model=bn_model())
    plain.fit()
    assert_weights(trainer.model.state_dict(), plain.model.state_dict(), atol=0)  # parameters and BN statistics
    assert [m["train_loss"] for m in trainer.history] == [m["train_loss"] for m in plain.history]
    assert trainer.history[0]["valid_loss"] == plain.history[0]["valid_loss"]  # no average yet
    averaged = {**swa.average, **swa.buffers}
    assert_weights(log.evaluated[-1], averaged, atol=0)
    assert trainer.history[-1]["valid_loss"] == pytest.approx(valid_loss(bn_model(), averaged), rel=1e-5)
    assert trainer.history[-1]["valid_loss"] != plain.history[-1]["valid_loss"]


@pytest.mark.parametrize("crash_step", [2 * STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH + 3])
def test_best_weights_are_the_average_and_resume_is_exact(tmp_path, crash_step):
    straight_swa, log = SWAWeights(0.5), WeightLog()
    straight = toy_trainer([log, straight_swa], epochs=4, model=bn_model(), out_dir=tmp_path / "a")
    straight.fit()
    best = torch.load(tmp_path / "a" / BEST_WEIGHTS, weights_only=True)
    best_epoch = min(range(4), key=lambda e: straight.history[e]["valid_loss"])
    assert best_epoch >= 1 and differ(best, log.at_epoch_end[best_epoch])
    assert best["1.num_batches_tracked"] == STEPS_PER_EPOCH  # recomputed statistics
    assert straight.history[best_epoch]["valid_loss"] == pytest.approx(valid_loss(bn_model(), best), rel=1e-5)

    with pytest.raises(Crash):
        toy_trainer([SWAWeights(0.5), CrashAt(crash_step)], epochs=4, model=bn_model(), out_dir=tmp_path / "b",
                    checkpoint_interval_s=0).fit()
    swa = SWAWeights(0.5)
    resumed = toy_trainer([swa], epochs=4, model=bn_model(), out_dir=tmp_path / "b")
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG
    resumed.fit(resume=True)
    assert swa.count == straight_swa.count == 3
    assert_weights({**swa.average, **swa.buffers}, {**straight_swa.average, **straight_swa.buffers}, atol=0)
    assert_weights(resumed.model.state_dict(), straight.model.state_dict(), atol=0)
    assert_weights(torch.load(tmp_path / "b" / BEST_WEIGHTS, weights_only=True), best, atol=0)
    untimed = lambda history: [{k: v for k, v in m.items() if not k.endswith("_s")} for m in history]
    assert untimed(resumed.history) == untimed(straight.history)


def test_the_classifier_saves_the_average_with_recomputed_statistics(trec_tok, tmp_path):
    train(data=str(trec_tok), out=str(tmp_path), from_scratch=True, preset="tiny", max_steps=5,
          tricks="swa", device="cpu")
    last = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    (state,) = [s for key, s in last["callbacks"].items() if key.endswith(":SWAWeights")]
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["count"] == 1 and state["buffers"] and set(model) == set(last["model"])
    for name, tensor in model.items():
        expected = state["average"].get(name, state["buffers"].get(name, last["model"][name]))
        assert torch.equal(tensor, expected)
    assert differ(model, last["model"])  # the statistics; the average of one epoch is its weights


def test_ema_and_swa_together_are_refused():
    with pytest.raises(UlmfitError, match="EMAWeights and SWAWeights both replace the evaluated"):
        toy_trainer([EMAWeights(0.9), SWAWeights(0.5)]).fit()
