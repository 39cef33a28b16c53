"""Lookahead (Zhang et al. 2019): the optimizer explores with fast weights; every ``k`` steps slow
weights move ``alpha`` of the way to them and the fast weights restart from there."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..training import Callback, Trainer
from . import trick


class LookaheadWeights(Callback):
    """Wraps whatever optimizer the run uses: slow weights start as a copy of its parameters, and
    after every ``k`` steps actually taken (not skipped by accumulation; a float16 step skipped
    for overflow still counts) ``slow += alpha * (fast - slow)``, then ``fast = slow``. The
    optimizer's own state (Adam's moments) carries on untouched. Slow weights and the step count
    go into checkpoints.
    """

    def __init__(self, k: int, alpha: float):
        self.k, self.alpha = k, alpha
        self.params: list[Tensor] = []
        self.slow: list[Tensor] = []
        self.steps = 0

    def before_fit(self, trainer: Trainer) -> None:
        self.params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
        if not self.slow:  # not resumed
            self.slow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def after_step(self, trainer: Trainer) -> None:
        if trainer.skip_step:
            return
        self.steps += 1
        if self.steps % self.k == 0:
            for fast, slow in zip(self.params, self.slow):
                slow.lerp_(fast, self.alpha)
                fast.copy_(slow)

    def state_dict(self) -> dict:
        return {"slow": self.slow, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.slow, self.steps = list(state["slow"]), state["steps"]


@trick("lookahead")
@dataclass
class Lookahead:
    """Lookahead optimizer: every k steps, pull slow weights alpha of the way to the fast ones and restart there."""

    k: int = 6
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")

    def callbacks(self) -> list[Callback]:
        return [LookaheadWeights(self.k, self.alpha)]
