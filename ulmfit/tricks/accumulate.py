"""Gradient accumulation: the step of a batch ``steps`` times larger, from ``steps`` smaller ones."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..training import Callback, Trainer
from . import trick


def accumulation_group(batch_index: int, n_batches: int, steps: int, batches_left: int) -> tuple[int, int]:
    """``[start, end)``: the batches of the epoch whose gradients are summed into one step with
    batch ``batch_index``'s. Groups of ``steps`` batches from the start of the epoch; the last one
    ends with the epoch, or with the run (``batches_left`` counts this batch too), so that no
    gradient is left behind."""
    start = batch_index - batch_index % steps
    return start, min(start + steps, n_batches, batch_index + batches_left)


class GradientAccumulation(Callback):
    """Steps the optimizer only at the last batch of each group (``skip_step`` otherwise) and
    divides every loss backpropagated (through ``trainer.backward``, so an adversarial trick's
    loss too) by the size of the group: the step follows the mean gradient over the group's
    batches, as one large batch would. The reported losses stay per batch, unscaled.

    ``max_steps`` and the learning-rate schedule still count batches. Gradients summed so far go
    into checkpoints, so a run resumed in the middle of a group ends exactly as an uninterrupted one.
    """

    order = -50  # decides skip_step before the other before_step hooks, which may read it

    def __init__(self, steps: int):
        self.steps = steps
        self.group = (0, 1)
        self.params: list = []
        self.restored: list[Tensor | None] = []  # gradients from a checkpoint, given back on fit start
        self.inner_backward = None

    def before_fit(self, trainer: Trainer) -> None:
        self.params = list(trainer.model.parameters())
        for p, grad in zip(self.params, self.restored):
            p.grad = grad
        self.restored = []
        if trainer.backward != self.scaled_backward:  # wrap once, also if fit runs again
            self.inner_backward, trainer.backward = trainer.backward, self.scaled_backward

    def before_batch(self, trainer: Trainer) -> None:
        if trainer.training:
            self.group = accumulation_group(trainer.batch_index, trainer.n_batches, self.steps,
                                            trainer.total_steps - trainer.step)

    def scaled_backward(self, loss: Tensor) -> None:
        start, end = self.group
        self.inner_backward(loss / (end - start))

    def before_step(self, trainer: Trainer) -> None:
        trainer.skip_step = trainer.skip_step or trainer.batch_index + 1 < self.group[1]

    def state_dict(self) -> dict:
        grads = [p.grad for p in self.params]
        return {"grads": grads} if any(g is not None for g in grads) else {}

    def load_state_dict(self, state: dict) -> None:
        self.restored = state.get("grads", [])


@trick("accumulate")
@dataclass
class Accumulate:
    """Gradient accumulation: one optimizer step per `steps` batches, on their mean gradient."""

    steps: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")

    def callbacks(self) -> list[Callback]:
        return [GradientAccumulation(self.steps)]
