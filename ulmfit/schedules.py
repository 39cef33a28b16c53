"""Learning-rate schedules and discriminative rates, as small pure functions.

A schedule maps ``(step, total_steps)`` to a multiplier of the base learning rate; ``step`` is the
0-based index of the optimizer step about to be taken. The trainer multiplies every parameter
group's base rate by it, so discriminative rates and schedules compose by multiplication.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Callable

from .errors import UlmfitError

Schedule = Callable[[int, int], float]


def constant(step: int, total_steps: int) -> float:
    """The base rate throughout."""
    return 1.0


def stlr(step: int, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """Slanted triangular rate (Howard & Ruder 2018, eq. 3): a short linear rise, a long linear decay.

    The rise over the first ``cut = floor(total_steps * cut_frac)`` steps lets the model find a
    good region quickly; the long decay refines it. The rate goes from ``1/ratio`` of the maximum
    up to the maximum at ``step == cut`` and back down to ``1/ratio`` at ``step == total_steps``.
    """
    cut = _warmup_steps(total_steps, cut_frac, "stlr")
    if step < cut:
        p = step / cut
    else:
        p = 1.0 - (step - cut) / (cut * (1.0 / cut_frac - 1.0))
    return (1.0 + max(p, 0.0) * (ratio - 1.0)) / ratio


def _warmup_steps(total_steps: int, cut_frac: float, name: str) -> int:
    """``floor(total_steps * cut_frac)`` rising steps, at least one so that tiny runs warm up too."""
    if not 0.0 < cut_frac < 1.0:
        raise UlmfitError(f"{name}: cut_frac must be in (0, 1), got {cut_frac}")
    return max(1, math.floor(total_steps * cut_frac))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    """Half a cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


def cosine(step: int, total_steps: int, final: float = 0.0) -> float:
    """Cosine annealing from the base rate down to ``final`` times it, without warm-up."""
    return _cosine_between(1.0, final, step / max(total_steps, 1))


def one_cycle(step: int, total_steps: int, pct_start: float = 0.25, div: float = 25.0,
              div_final: float = 1e5) -> float:
    """1cycle (Smith 2018): cosine warm-up from ``1/div`` to 1, then cosine decay to ``1/div_final``."""
    warm = pct_start * total_steps
    if step < warm:
        return _cosine_between(1.0 / div, 1.0, step / warm)
    return _cosine_between(1.0, 1.0 / div_final, (step - warm) / max(total_steps - warm, 1))


def _warmup_then(decay: Callable[[float], float], step: int, total_steps: int, cut_frac: float,
                 name: str) -> float:
    """A linear rise from 0 to 1 over the first ``cut_frac`` of the steps, then ``decay(p)`` for
    the fraction ``p`` (0 to 1) of the remaining steps done."""
    cut = _warmup_steps(total_steps, cut_frac, name)
    if step < cut:
        return step / cut
    return decay(min((step - cut) / max(total_steps - cut, 1), 1.0))


def warmup_constant(step: int, total_steps: int, cut_frac: float = 0.1) -> float:
    """Linear warm-up over the first ``cut_frac`` of the steps, then the base rate: large-batch or
    adaptive optimizers (LAMB) are unstable with their full rate on untrained statistics."""
    return _warmup_then(lambda p: 1.0, step, total_steps, cut_frac, "warmup_constant")


def warmup_linear(step: int, total_steps: int, cut_frac: float = 0.1) -> float:
    """Linear warm-up over the first ``cut_frac`` of the steps, then linear decay to 0 at the end
    (BERT's schedule)."""
    return _warmup_then(lambda p: 1.0 - p, step, total_steps, cut_frac, "warmup_linear")


def warmup_cosine(step: int, total_steps: int, cut_frac: float = 0.1) -> float:
    """Linear warm-up over the first ``cut_frac`` of the steps, then half a cosine down to 0."""
    return _warmup_then(lambda p: _cosine_between(1.0, 0.0, p), step, total_steps, cut_frac, "warmup_cosine")


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "stlr": stlr,
    "cosine": cosine,
    "one_cycle": one_cycle,
    "warmup_constant": warmup_constant,
    "warmup_linear": warmup_linear,
    "warmup_cosine": warmup_cosine,
}


def restarted(schedule: Schedule, cycle_steps: int) -> Schedule:
    """``schedule`` run again every ``cycle_steps`` steps (a run bounded below one cycle gets one
    cycle of its length). With a cycle per epoch, every stage of gradual unfreezing starts from the
    peak rate again, as the original ULMFiT scripts trained each stage; one cycle over the whole run
    leaves the layers unfrozen last only the decayed tail of it."""
    if cycle_steps < 1:
        raise ValueError(f"cycle_steps must be at least 1, got {cycle_steps}")

    def cycled(step: int, total_steps: int) -> float:
        return schedule(step % cycle_steps, min(cycle_steps, total_steps))
    return cycled


def default_arg(fn: Callable, name: str):
    """The default value of ``fn``'s argument ``name``; lets configs reuse it instead of restating it."""
    return inspect.signature(fn).parameters[name].default


def make_schedule(name: str, **options: float) -> Schedule:
    """The schedule called ``name`` with those ``options`` it accepts (others are ignored).

    Passing every schedule option of a config and letting each schedule pick its own keeps the
    config flat (``cut_frac`` only matters for ``stlr`` and the ``warmup_*`` schedules, ``ratio``
    only for ``stlr``).
    """
    try:
        fn = SCHEDULES[name]
    except KeyError:
        raise UlmfitError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
    accepted = inspect.signature(fn).parameters
    return functools.partial(fn, **{k: v for k, v in options.items() if k in accepted})


def discriminative_lrs(base_lr: float, n_groups: int, factor: float = 2.6) -> list[float]:
    """Per-group rates, bottom group first: the top group gets ``base_lr``, each lower one ``/factor``.

    Lower layers hold more general features and should change less when fine-tuning (ULMFiT 3.2).
    """
    return [base_lr / factor ** (n_groups - 1 - i) for i in range(n_groups)]
