"""A toy classification task for trainer and trick tests: 2-D points, label = sign of x0 + x1."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ulmfit.schedules import constant
from ulmfit.training import Callback, Trainer, make_optimizer


class ToyBatch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor

    @property
    def inputs(self):
        return (self.x,)

    @property
    def target(self):
        return self.y

    @property
    def n_tokens(self):
        return self.x.numel()

    def to(self, device):
        return ToyBatch(self.x.to(device), self.y.to(device))


class Blobs:
    """``n_batches`` fixed batches of ``bs`` points (the same every epoch)."""

    def __init__(self, seed: int, n_batches: int = 8, bs: int = 32):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n_batches * bs, 2, generator=g)
        self.y = (self.x.sum(1) > 0).long()
        self.count, self.bs = n_batches, bs

    def n_batches(self, epoch):
        return self.count

    def batches(self, epoch, start=0):
        for i in range(start, self.count):
            yield ToyBatch(self.x[i * self.bs:(i + 1) * self.bs], self.y[i * self.bs:(i + 1) * self.bs])


def toy_trainer(callbacks=(), epochs=3, lr=0.1, kind="adamw", out_dir=None, model=None, **trainer_args) -> Trainer:
    """A trainer of ``model`` (default: a linear layer) on the blobs, seeded."""
    torch.manual_seed(0)
    model = model if model is not None else nn.Linear(2, 2)
    opt = make_optimizer([list(model.parameters())], [lr], kind=kind)
    return Trainer(model, nn.functional.cross_entropy, opt, constant, callbacks, train_data=Blobs(0),
                   valid_data=Blobs(1), epochs=epochs, out_dir=out_dir, progress=False, **trainer_args)


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Simulates a crash for resume tests: raises once the run reaches ``step`` (before that batch)."""

    order = 1000  # last, so the other callbacks keep their checkpoint keys in a resumed run without it

    def __init__(self, step: int):
        self.step = step

    def before_batch(self, trainer: Trainer) -> None:
        if trainer.training and trainer.step == self.step:
            raise Crash


def resume_matches(straight: Trainer, resumed: Trainer) -> None:
    """Resumes ``resumed`` from its checkpoint and checks that it ends exactly as ``straight``
    did: the same weights and log, timings aside."""
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG
    resumed.fit(resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop_timing = lambda h: [{k: v for k, v in m.items() if not k.endswith("_s")} for m in h]
    assert drop_timing(straight.history) == drop_timing(resumed.history)


# -- for the weight-averaging tricks' tests ------------------------------------------------------

def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class WeightLog(Callback):
    """The model's weights at the start and after every real step, during evaluation, and after it."""

    def __init__(self):
        self.steps, self.evaluated, self.at_epoch_end = [], [], []

    def before_fit(self, trainer):
        self.steps.append(snapshot(trainer.model))

    def after_step(self, trainer):
        if not trainer.skip_step:
            self.steps.append(snapshot(trainer.model))

    def after_forward(self, trainer):
        if not trainer.training:
            self.evaluated.append(snapshot(trainer.model))

    def after_epoch(self, trainer):
        self.at_epoch_end.append(snapshot(trainer.model))


def assert_weights(actual: dict, expected: dict, atol: float = 1e-6) -> None:
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=atol)


def differ(a: dict, b: dict) -> bool:
    return any((a[name] - b[name]).abs().max() > 1e-3 for name in b)
