"""Stochastic weight averaging (Izmailov et al. 2018): the equal average of the weights at the
ends of the later epochs lands in a flatter region than any single one of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from ..training import Callback, Trainer
from . import trick
from .weight_average import WeightAverage, float_parameters, kept, load_tensors


def epochs_to_train(trainer: Trainer) -> int:
    """How many epochs the run trains: all of them, or fewer when ``max_steps`` ends it early."""
    steps = 0
    for epoch in range(trainer.epochs):
        steps += trainer.train_data.n_batches(epoch)
        if steps >= trainer.total_steps:
            return epoch + 1
    return trainer.epochs


def recompute_batchnorm(model: nn.Module, batches: Iterable[tuple]) -> dict[str, Tensor]:
    """BatchNorm statistics that fit the model's current weights (the running statistics of the
    trained weights do not fit an average of them): one no-grad pass over ``batches`` (the model's
    inputs) in train mode, averaging every batch equally (momentum None).

    Returns the statistics by buffer name; the model's own statistics, momenta and train flags
    are put back, and the random state too (dropout in the pass does not shift training's).
    A model without BatchNorm gets no pass.
    """
    named_norms = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    names = [name for prefix, m in named_norms.items() for name, _ in m.named_buffers(prefix, recurse=False)]
    norms = list(named_norms.values())
    if not names:
        return {}
    flags = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    try:
        with kept(model, names), torch.no_grad(), torch.random.fork_rng():
            for m in norms:
                m.reset_running_stats()
                m.momentum = None
            model.train()
            for inputs in batches:
                model(*inputs)
            buffers = dict(model.named_buffers())
            return {name: buffers[name].clone() for name in names}
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, training in flags:
            m.training = training


class SWAWeights(WeightAverage):
    """Adds the weights to an equal running average at the end of every epoch k (counting from 1)
    with k >= ``start`` x the epochs the run trains (so the last epoch always counts), and
    recomputes BatchNorm statistics for the average on that epoch's training batches."""

    def __init__(self, start: float):
        super().__init__()
        self.start = start
        self.count = 0
        self.epochs = 1

    def before_fit(self, trainer: Trainer) -> None:
        super().before_fit(trainer)
        self.epochs = epochs_to_train(trainer)

    def after_step(self, trainer: Trainer) -> None:
        epoch_ends = (trainer.batch_index == trainer.n_batches or trainer.step >= trainer.total_steps
                      or trainer.stop_training)
        if epoch_ends and (trainer.epoch + 1) / self.epochs >= self.start:
            self.add_sample(trainer)

    def add_sample(self, trainer: Trainer) -> None:
        params = float_parameters(trainer.model)
        self.count += 1
        if self.average is None:
            self.average = {name: p.detach().clone() for name, p in params.items()}
        else:
            with torch.no_grad():
                for name, mean in self.average.items():
                    mean.lerp_(params[name], 1.0 / self.count)
        with kept(trainer.model, self.average):
            load_tensors(trainer.model, self.average)
            batches = (batch.to(trainer.device).inputs for batch in trainer.train_data.batches(trainer.epoch))
            self.buffers = recompute_batchnorm(trainer.model, batches)

    def state_dict(self) -> dict:
        if self.average is None:
            return {}
        return {"average": self.average, "count": self.count, "buffers": self.buffers}

    def load_state_dict(self, state: dict) -> None:
        self.average = dict(state["average"]) if state else None
        self.count = state.get("count", 0)
        self.buffers = dict(state.get("buffers", {}))


@trick("swa", stages=("lm", "classifier"))
@dataclass
class SWA:
    """Evaluate and save the average of the weights at the ends of the epochs from start x epochs on."""

    start: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start must be in [0, 1] (a fraction of the epochs), got {self.start}")

    def callbacks(self) -> list[Callback]:
        return [SWAWeights(self.start)]
