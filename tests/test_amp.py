import json
import math

import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.training import LAST_CHECKPOINT, Callback
from ulmfit.tricks import parse_tricks
from ulmfit.tricks.accumulate import GradientAccumulation
from ulmfit.tricks.amp import MixedPrecision

from tiny_classifier import FixedBatches, classifier_trainer
from toy import toy_trainer


class Precision(Callback):
    """Records, per batch, the loss dtype and whether autocast is on in after_loss and after_backward."""

    order = 50  # between the forward callbacks and amp's exit

    def __init__(self):
        self.seen = []

    def after_loss(self, trainer):
        self.seen.append((trainer.training, trainer.loss.dtype, torch.is_autocast_enabled("cpu")))

    def after_backward(self, trainer):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_forwards_run_in_bf16_and_losses_stay_float32():
    probe = Precision()
    trainer = classifier_trainer([MixedPrecision(torch.bfloat16), probe], valid_data=FixedBatches(seed=1),
                                 epochs=1)
    activations = []
    trainer.model.encoder.lstms[0].register_forward_hook(
        lambda module, args, out: activations.append((module.training, out[0].dtype)))
    trainer.fit()
    assert {dtype for _, dtype in activations} == {torch.bfloat16}
    assert {training for training, _ in activations} == {True, False}          # evaluation too
    assert {(loss, on) for _, loss, on in probe.seen} == {(torch.float32, True)}
    assert {training for training, _, _ in probe.seen} == {True, False}
    assert not torch.is_autocast_enabled("cpu")                                  # always exited
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_bf16_learns_the_real_trec_language_model_and_classifier(trec_tok, tmp_path):
    from ulmfit.stages.classify import train
    from ulmfit.stages.lm import pretrain
    n_vocab = len(json.loads((trec_tok / "vocab.json").read_text()))
    lm = pretrain(str(trec_tok), str(tmp_path / "lm"), preset="tiny", max_steps=40, device="cpu", tricks="amp")
    assert lm["final_valid_loss"] < math.log(n_vocab) - 2     # 5.03 vs 8.17 for uniform, as in float32
    clf = train(data=str(trec_tok), out=str(tmp_path / "clf"), from_scratch=True, preset="tiny", epochs=1,
                max_steps=60, device="cpu", tricks="amp(dtype='bf16')")
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
    amp = MixedPrecision(torch.float16)
    trainer = toy_trainer([amp, inject], epochs=1)
    trainer.fit()
    assert inject.changed == [True, True, False, True, True, True, True, True]
    state = amp.scaler.state_dict()
    assert state["scale"] == 2.0 ** 15 and state["_growth_tracker"] == 5   # halved, then 5 good steps
    assert trainer.history[0]["valid_loss"] < 0.6


def test_fp16_gradients_are_unscaled_before_clipping_and_only_at_taken_steps():
    grads = {}

    class Grads(Callback):
        order = 200  # after amp's unscale_

        def before_step(self, trainer):
            grads.setdefault(trainer.loss_scale is not None, trainer.model.weight.grad.clone())
            trainer.stop_training = True

    toy_trainer([Grads()], epochs=1).fit()
    toy_trainer([MixedPrecision(torch.float16), Grads()], epochs=1).fit()
    assert torch.allclose(grads[True], grads[False], rtol=1e-2, atol=1e-4)   # not 65536 times larger

    amp = MixedPrecision(torch.float16)
    toy_trainer([amp, GradientAccumulation(2)], epochs=1).fit()   # amp given first: order still puts it last
    assert amp.scaler.state_dict()["_growth_tracker"] == 4               # 8 batches, 4 steps


def test_fp16_scaler_state_resumes_exactly(tmp_path):
    straight = toy_trainer([MixedPrecision(torch.float16), InjectInf(3)], epochs=2)
    straight.fit()
    toy_trainer([MixedPrecision(torch.float16), InjectInf(3)], epochs=1, out_dir=tmp_path).fit()
    saved = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["callbacks"]["1:MixedPrecision"]
    assert saved["scale"] == 2.0 ** 15
    resumed = toy_trainer([MixedPrecision(torch.float16), InjectInf(3)], epochs=2, out_dir=tmp_path)
    resumed.fit(resume=True)
    assert resumed.callbacks[1].scaler.state_dict() == straight.callbacks[1].scaler.state_dict()
    assert torch.equal(resumed.model.weight, straight.model.weight)


def test_dtype_is_checked():
    assert parse_tricks("amp", "lm") == {"amp": {"dtype": "bf16"}}
    assert parse_tricks("amp(dtype='fp16')", "classifier") == {"amp": {"dtype": "fp16"}}
    with pytest.raises(UlmfitError, match="dtype must be one of bf16, fp16"):
        parse_tricks("amp(dtype='fp8')", "lm")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 LSTMs need a GPU")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_amp_trains_the_real_trec_classifier_on_the_gpu(trec_tok, tmp_path, dtype):
    from ulmfit.stages.classify import train
    metrics = train(data=str(trec_tok), out=str(tmp_path / "clf"), from_scratch=True, preset="tiny", epochs=1,
                    max_steps=60, device="cuda", tricks=f"amp(dtype='{dtype}')")
    assert metrics["best_valid_error"] < 0.5 and math.isfinite(metrics["final_valid_loss"])
