"""Exponential moving average of the weights (Polyak averaging): evaluate and keep a smoothed copy
of the parameters, which is usually better than the last noisy iterate."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..training import Callback, Trainer
from . import trick
from .weight_average import WeightAverage, float_parameters


class EMAWeights(WeightAverage):
    """Keeps ``shadow = decay * shadow + (1 - decay) * param`` after every real optimizer step
    (not after a step a callback skipped), starting from the weights at the start of training.

    Buffers (BatchNorm statistics) are not averaged: evaluation and export use the model's own.
    """

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay

    def before_fit(self, trainer: Trainer) -> None:
        super().before_fit(trainer)
        if self.average is None:  # else restored from a checkpoint
            self.average = {name: p.detach().clone() for name, p in float_parameters(trainer.model).items()}

    def after_step(self, trainer: Trainer) -> None:
        if trainer.skip_step:
            return
        params = float_parameters(trainer.model)
        with torch.no_grad():
            for name, shadow in self.average.items():
                shadow.lerp_(params[name], 1.0 - self.decay)

    def state_dict(self) -> dict:
        return {"shadow": self.average} if self.average is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.average = dict(state["shadow"]) if state else None


@trick("ema", stages=("lm", "classifier"))
@dataclass
class EMA:
    """Evaluate and save an exponential moving average of the weights (decay per optimizer step)."""

    decay: float = 0.999

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")

    def callbacks(self) -> list[Callback]:
        return [EMAWeights(self.decay)]
