import copy

import pytest
import torch
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.schedules import constant
from ulmfit.artefacts import LAST_CHECKPOINT
from ulmfit.stages.common import TrainConfig
from ulmfit.training import Callback, Trainer, accumulation_group, make_optimizer
from ulmfit.tricks import parse_tricks

from test_training import Interrupt, InterruptAt
from toy import Blobs


class Steps(Callback):
    """Records, per batch, whether the optimizer stepped, and the train loss reported."""

    def __init__(self):
        self.stepped = []

    def after_step(self, trainer):
        self.stepped.append(not trainer.skip_step)


def blob_trainer(callbacks, n_batches, bs, epochs=1, **trainer_args):
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    opt = make_optimizer([list(model.parameters())], [0.1], kind="adamw", wd=0.01)
    return Trainer(model, nn.functional.cross_entropy, opt, constant, callbacks,
                   train_data=Blobs(0, n_batches=n_batches, bs=bs), epochs=epochs, progress=False, **trainer_args)


def test_four_micro_batches_step_like_one_batch_four_times_larger():
    big = blob_trainer([], n_batches=1, bs=32)
    big.fit()
    steps = Steps()
    small = blob_trainer([steps], n_batches=4, bs=8, accumulate=4)
    small.fit()
    assert steps.stepped == [False, False, False, True]
    assert torch.allclose(small.model.weight, big.model.weight, atol=1e-6)
    assert torch.allclose(small.model.bias, big.model.bias, atol=1e-6)
    assert not torch.allclose(small.model.weight, blob_trainer([], n_batches=1, bs=32).model.weight)
    # the reported loss is the plain mean per example, not divided by 4
    assert small.history[0]["train_loss"] == pytest.approx(big.history[0]["train_loss"], rel=1e-6)


def test_a_partial_group_at_the_end_of_an_epoch_steps_on_its_own_mean():
    steps = Steps()
    trainer = blob_trainer([steps], n_batches=5, bs=8, epochs=2, accumulate=2)
    trainer.fit()
    assert steps.stepped == [False, True, False, True, True] * 2
    # the lone fifth batch steps on its own gradient, not on half of it
    seen = []

    class LastGrad(Callback):
        order = 100

        def before_step(self, trainer):
            if trainer.batch_index == 4:
                plain = copy.deepcopy(trainer.model)
                plain.zero_grad()
                nn.functional.cross_entropy(plain(trainer.batch.x), trainer.target).backward()
                seen.append(torch.allclose(trainer.model.weight.grad, plain.weight.grad, atol=1e-7))

    blob_trainer([LastGrad()], n_batches=5, bs=8, accumulate=2).fit()
    assert seen == [True]


@pytest.mark.parametrize("index, n_batches, left, group", [
    (0, 10, 10, (0, 3)), (2, 10, 8, (0, 3)), (4, 10, 6, (3, 6)), (9, 10, 1, (9, 10)),
    (7, 8, 1, (6, 8)), (3, 10, 2, (3, 5)),   # the run ends after batch 4
])
def test_groups_start_with_the_epoch_and_end_with_the_epoch_or_the_run(index, n_batches, left, group):
    assert accumulation_group(index, n_batches, 3, left) == group


def test_the_run_ends_with_a_step_when_max_steps_falls_inside_a_group():
    steps = Steps()
    blob_trainer([steps], n_batches=8, bs=4, max_steps=6, accumulate=4).fit()
    assert steps.stepped == [False, False, False, True, False, True]


def test_resuming_inside_a_group_keeps_its_gradients(tmp_path):
    straight = blob_trainer([], n_batches=8, bs=4, epochs=2, accumulate=3)
    straight.fit()
    with pytest.raises(Interrupt):   # checkpoint after every batch: the last one is after batch 4, mid-group
        blob_trainer([InterruptAt(5)], n_batches=8, bs=4, epochs=2, out_dir=tmp_path,
                     checkpoint_interval_s=0.0, accumulate=3).fit()
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["accumulated"]["grads"]
    resumed = blob_trainer([], n_batches=8, bs=4, epochs=2, out_dir=tmp_path, accumulate=3)
    resumed.fit(resume=True)
    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert torch.equal(resumed.model.bias, straight.model.bias)


def test_accumulate_must_be_a_positive_integer():
    with pytest.raises(UlmfitError, match="positive integer"):
        TrainConfig(accumulate=0)
    with pytest.raises(ValueError, match="positive integer"):
        blob_trainer([], n_batches=2, bs=4, accumulate=0)


def test_the_accumulate_trick_of_earlier_versions_is_now_the_option():
    cfg = TrainConfig(tricks={"accumulate": {"steps": 4}, "ema": {"decay": 0.99}})
    assert cfg.accumulate == 4 and cfg.tricks == {"ema": {"decay": 0.99}}
    assert TrainConfig().accumulate == 1
    with pytest.raises(UlmfitError, match="use the option --accumulate"):
        parse_tricks("accumulate(steps=4)", "lm")
