"""What the weight-averaging tricks (EMA, SWA) share: a callback that keeps an average of the
model's parameters, evaluates and exports it in place of the trained weights, and leaves the
trained weights to go on training. Not a trick itself (nothing here registers)."""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import UlmfitError
from ..training import Callback, Trainer


def float_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The floating-point parameters by name, a tied weight once (under its first name)."""
    return {name: p for name, p in model.named_parameters() if p.is_floating_point()}


def parameter_aliases(model: nn.Module) -> dict[str, str]:
    """Every state_dict name of a parameter -> its name in :func:`float_parameters`: a tied weight
    (the LM's decoder shares the embedding) is saved under each of its names."""
    first: dict[int, str] = {}
    return {name: first.setdefault(id(p), name) for name, p in model.named_parameters(remove_duplicate=False)}


def load_tensors(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copy ``tensors`` into the model's parameters and buffers of the same names, in place."""
    targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        for name, tensor in tensors.items():
            targets[name].copy_(tensor)


@contextmanager
def kept(model: nn.Module, names: Iterable[str]) -> Iterator[None]:
    """Put the named parameters and buffers back as they were on leaving the block."""
    current = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    saved = {name: current[name].detach().clone() for name in names}
    try:
        yield
    finally:
        load_tensors(model, saved)


class WeightAverage(Callback):
    """Evaluates and exports ``average`` (parameter name -> tensor) with ``buffers`` (buffer name
    -> tensor, e.g. BatchNorm statistics recomputed for the average; the model's own buffers are
    used for the others) once ``average`` exists; before that, the trained weights.

    The average is swapped in at ``before_eval`` and the trained weights back at
    ``after_eval``, so training never sees it. Subclasses fill ``average`` and ``buffers``.
    """

    order = 100  # after tricks that change the weights in after_step, so the average sees the final ones

    def __init__(self) -> None:
        self.average: dict[str, Tensor] | None = None
        self.buffers: dict[str, Tensor] = {}
        self._swapped = ExitStack()

    def before_fit(self, trainer: Trainer) -> None:
        averaging = [type(cb).__name__ for cb in trainer.callbacks if isinstance(cb, WeightAverage)]
        if len(averaging) > 1:  # each would swap its own weights in over the other's
            raise UlmfitError(f"--tricks: {' and '.join(averaging)} both replace the evaluated and saved "
                              f"weights; use one weight-averaging trick (ema or swa)")

    def averaged_weights(self) -> dict[str, Tensor]:
        return {**self.average, **self.buffers} if self.average is not None else {}

    def before_eval(self, trainer: Trainer) -> None:
        weights = self.averaged_weights()
        self._swapped.enter_context(kept(trainer.model, weights))
        load_tensors(trainer.model, weights)

    def after_eval(self, trainer: Trainer) -> None:
        self._swapped.close()

    def export_weights(self, trainer: Trainer, state: dict) -> dict:
        weights = self.averaged_weights()
        aliases = parameter_aliases(trainer.model)
        return {name: weights.get(aliases.get(name, name), tensor) for name, tensor in state.items()}
