"""Run precision (ulmfit/precision.py and the Trainer's autocast and fp16 loss scaling)."""
import json
import math

import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.precision import cpu_has_native_bf16, resolve_precision
from ulmfit.stages.common import TrainConfig
from ulmfit.artefacts import LAST_CHECKPOINT
from ulmfit.training import Callback

from tiny_classifier import FixedBatches, classifier_trainer
from toy import toy_trainer

CPU = torch.device("cpu")


class Precision(Callback):
    """Records, per batch, the loss dtype and whether autocast is on in after_loss and after_backward."""

    def __init__(self):
        self.seen = []

    def after_loss(self, trainer):
        self.seen.append((trainer.training, trainer.loss.dtype, torch.is_autocast_enabled("cpu")))

    def after_backward(self, trainer):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_training_forwards_run_in_bf16_evaluation_and_losses_in_float32():
    probe = Precision()
    trainer = classifier_trainer([probe], valid_data=FixedBatches(seed=1), epochs=1, precision="bf16")
    activations = []
    trainer.model.encoder.lstms[0].register_forward_hook(
        lambda module, args, out: activations.append((module.training, out[0].dtype)))
    trainer.fit()
    assert set(activations) == {(True, torch.bfloat16), (False, torch.float32)}
    assert set(probe.seen) == {(True, torch.float32, True), (False, torch.float32, False)}
    assert not torch.is_autocast_enabled("cpu")                                  # always exited
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_fp32_runs_without_autocast():
    probe = Precision()
    classifier_trainer([probe], epochs=1).fit()
    assert {(loss, on) for _, loss, on in probe.seen} == {(torch.float32, False)}


def test_auto_is_bf16_only_where_the_cpu_has_bf16_instructions(tmp_path, monkeypatch):
    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    without.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_native_bf16(str(with_bf16)) and not cpu_has_native_bf16(str(without))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))
    monkeypatch.setattr("ulmfit.precision.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr("ulmfit.precision.cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp32", CPU) == "fp32"


@pytest.mark.parametrize("bad, message", [("fp8", "choose auto, fp32, bf16, fp16"), ("fp16", "needs a CUDA device")])
def test_bad_precisions_are_user_errors(bad, message):
    with pytest.raises(UlmfitError, match=message):
        resolve_precision(bad, CPU)


def test_a_config_of_the_amp_trick_loads_as_its_precision():
    cfg = TrainConfig(tricks={"amp": {"dtype": "bf16"}, "ema": {"decay": 0.99}})
    assert cfg.precision == "bf16" and cfg.tricks == {"ema": {"decay": 0.99}}
    assert TrainConfig().precision == "fp32"  # configs written before --precision ran in float32


def test_bf16_learns_the_real_trec_language_model_and_classifier(trec_tok, tmp_path):
    from ulmfit.stages.classify import train
    from ulmfit.stages.lm import pretrain
    n_vocab = len(json.loads((trec_tok / "vocab.json").read_text()))
    lm = pretrain(str(trec_tok), str(tmp_path / "lm"), preset="tiny", max_steps=40, device="cpu", precision="bf16")
    assert lm["final_valid_loss"] < math.log(n_vocab) - 2     # 5.03 vs 8.17 for uniform, as in float32
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["precision"] == "bf16"
    clf = train(data=str(trec_tok), out=str(tmp_path / "clf"), from_scratch=True, preset="tiny", epochs=1,
                max_steps=60, device="cpu", precision="bf16")
    assert clf["final_valid_loss"] < math.log(6) - 0.5 and clf["best_valid_error"] < 0.5
    assert not torch.is_autocast_enabled("cpu")


class InjectInf(Callback):
    """Makes one gradient infinite at batch ``step`` and records the weights around every step."""

    def __init__(self, step):
        self.step, self.changed = step, []

    def after_backward(self, trainer):
        if trainer.step == self.step:
            trainer.model.weight.grad[0, 0] = math.inf

    def before_step(self, trainer):
        self.before = trainer.model.weight.detach().clone()

    def after_step(self, trainer):
        self.changed.append(not torch.equal(self.before, trainer.model.weight))


def test_fp16_loss_scaling_skips_a_step_with_inf_gradients_and_backs_off():
    inject = InjectInf(step=2)
    trainer = toy_trainer([inject], epochs=1, precision="fp16")
    trainer.fit()
    assert inject.changed == [True, True, False, True, True, True, True, True]
    state = trainer.scaler.state_dict()
    assert state["scale"] == 2.0 ** 15 and state["_growth_tracker"] == 5   # halved, then 5 good steps
    assert trainer.history[0]["valid_loss"] < 0.6


def test_fp16_gradients_are_scaled_in_backward_and_unscaled_before_the_step():
    grads, scale = {}, 2.0 ** 16

    class Grads(Callback):
        def before_step(self, trainer):  # before the trainer unscales
            grads[trainer.precision] = trainer.model.weight.grad.clone()
            trainer.stop_training = True

    toy_trainer([Grads()], epochs=1).fit()
    toy_trainer([Grads()], epochs=1, precision="fp16").fit()
    assert torch.allclose(grads["fp16"] / scale, grads["fp32"], rtol=1e-2, atol=1e-4)

    clipped = {}

    class Clipped(Callback):
        def after_step(self, trainer):
            clipped[trainer.precision] = trainer.model.weight.detach().clone()
            trainer.stop_training = True

    toy_trainer([Clipped()], epochs=1, clip=0.1).fit()
    toy_trainer([Clipped()], epochs=1, clip=0.1, precision="fp16").fit()
    assert torch.allclose(clipped["fp16"], clipped["fp32"], atol=1e-3)      # clipped after unscaling

    trainer = toy_trainer(epochs=1, precision="fp16", accumulate=2)
    trainer.fit()
    assert trainer.scaler.state_dict()["_growth_tracker"] == 4               # 8 batches, 4 steps


def test_fp16_scaler_state_resumes_exactly(tmp_path):
    straight = toy_trainer([InjectInf(3)], epochs=2, precision="fp16")
    straight.fit()
    toy_trainer([InjectInf(3)], epochs=1, out_dir=tmp_path, precision="fp16").fit()
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["scaler"]["scale"] == 2.0 ** 15
    resumed = toy_trainer([InjectInf(3)], epochs=2, out_dir=tmp_path, precision="fp16")
    resumed.fit(resume=True)
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    assert torch.equal(resumed.model.weight, straight.model.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 LSTMs need a GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_trains_the_real_trec_classifier_on_the_gpu(trec_tok, tmp_path, precision):
    from ulmfit.stages.classify import train
    metrics = train(data=str(trec_tok), out=str(tmp_path / "clf"), from_scratch=True, preset="tiny", epochs=1,
                    max_steps=60, device="cuda", precision=precision)
    assert metrics["best_valid_error"] < 0.5 and math.isfinite(metrics["final_valid_loss"])
