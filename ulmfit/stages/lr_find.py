"""``ulmfit lr_find pretrain|finetune|train``: a learning-rate range test before a run.

The rate of the stage's top layer group rises exponentially from ``start_lr`` to ``end_lr`` over
``steps`` training batches (the lower groups keep their discriminative ratios), on the very model,
optimizer, callbacks and batches the stage would train: each command takes the stage's own options
and builds its run with the stage's own planner, so presets and defaults resolve once. The sweep
stops early once the smoothed loss exceeds ``diverge_factor`` times its best. The trained weights
are thrown away; only ``--out`` (its own folder: config.json, lr_find.json, lr_find.png) is written.

The suggestion is the rate at the smoothed loss's minimum divided by 10: a rate one decade before
the loss stops falling (the first batches left out: their average rests on a few losses). On
TREC-6 it came within 1.5x of the best rate of a full-length sweep on each of 3 seeds, where the
steepest descent of the same noisy curves (fastai v1's suggestion) went as low as 1e-6 on other sets
(README, "Finding the learning rate"). A curve with no clear fall has no meaningful minimum.
"""
from __future__ import annotations

import inspect
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..artefacts import CONFIG, LR_FIND_PLOT, LR_FIND_REPORT
from ..classifier.data import training_data
from ..config import config_to_dict, save_config
from ..errors import UlmfitError
from ..files import atomic_path, write_json
from ..training import Callback, RepeatedPasses, Trainer
from .classify import classifier_parts, plan_train, train
from .common import TrainingParts
from .lm import finetune, lm_parts, plan_finetune, plan_pretrain, pretrain

SMOOTHING = 0.98  # weight of the past in the loss's moving average
SKIP_START = 10   # the first averages rest on few batches: not looked at for the minimum
DECADE_BELOW = 10  # the suggestion is the minimum's rate divided by this


@dataclass
class LRFindConfig:
    """One sweep (saved as ``config.json`` in lr_find's --out): the stage, its run's config, the range."""

    stage: str
    stage_config: dict = field(default_factory=dict)
    start_lr: float = 1e-7
    end_lr: float = 10.0
    steps: int = 100
    diverge_factor: float = 4.0


# -- the pure parts ----------------------------------------------------------------------------

def sweep_rates(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """``steps`` rates from ``start_lr`` to ``end_lr``, evenly spaced on a log scale."""
    if not 0 < start_lr < end_lr:
        raise UlmfitError(f"lr_find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if steps < 2:
        raise UlmfitError(f"lr_find: steps must be at least 2, got {steps}")
    return np.geomspace(start_lr, end_lr, steps)


def smoothed(losses: Sequence[float], beta: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average of ``losses``, debiased so the first values are not pulled to 0."""
    out, average = [], 0.0
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** i))
    return np.array(out)


def diverged(smoothed_losses: Sequence[float], factor: float) -> bool:
    """The last smoothed loss is not finite or above ``factor`` times the best one so far."""
    last = smoothed_losses[-1]
    return not math.isfinite(last) or last > factor * min(smoothed_losses)


def loss_minimum(smoothed_losses: Sequence[float], skip_start: int = SKIP_START) -> int:
    """Index of the smoothed loss's minimum, the first ``skip_start`` batches left out (fewer when
    the sweep is short); an error when the loss never fell below where that search starts."""
    losses = np.asarray(smoothed_losses, dtype=float)
    start = min(skip_start, max(len(losses) - 2, 0))
    best = start + int(np.argmin(losses[start:]))
    if best == start:
        raise UlmfitError("lr_find: the smoothed loss never fell; lower --start_lr, raise --steps or check the data")
    return best


# -- the sweep ---------------------------------------------------------------------------------

class LossRecorder(Callback):
    """Keeps each batch's loss (as the stage reports it: before penalties and tricks) and stops the
    run once the smoothed loss diverges."""

    order = -1000  # records the loss in after_loss before any trick adds a penalty to it

    def __init__(self, diverge_factor: float):
        self.diverge_factor = diverge_factor
        self.losses: list[float] = []

    def after_loss(self, trainer: Trainer) -> None:
        if trainer.training:
            self.losses.append(trainer.loss.item())

    def after_step(self, trainer: Trainer) -> None:
        if diverged(smoothed(self.losses), self.diverge_factor):
            trainer.stop_training = True


def sweep(parts: TrainingParts, top_lr: float, rates: np.ndarray, cfg, device, diverge_factor: float) -> list[float]:
    """Train ``parts`` for ``len(rates)`` batches at these top-group rates; the losses seen."""
    recorder = LossRecorder(diverge_factor)
    passes = math.ceil(len(rates) / parts.train_data.n_batches(0))
    trainer = Trainer(parts.model, parts.loss_fn, parts.optimizer, lambda step, _: rates[step] / top_lr,
                      [*parts.callbacks, recorder], train_data=RepeatedPasses(parts.train_data, passes),
                      epochs=1, max_steps=len(rates), device=device, **cfg.trainer_options())
    trainer.fit()
    return recorder.losses


def plot_sweep(report: dict, path: Path) -> None:
    """The report's loss (raw and smoothed) against the rate on a log axis, the minimum and
    suggestion (if any) marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rates, losses, smooth = report["rates"], report["losses"], report["smoothed_losses"]
    ax.plot(rates, losses, color="0.75", linewidth=0.8, label="loss per batch")
    ax.plot(rates, smooth, color="C0", label="smoothed")
    ax.set_ylim(0.9 * min(losses), 1.2 * max(smooth[0], 1.5 * min(smooth)))  # the diverged end would flatten it
    if report["suggested_lr"] is not None:
        ax.axvline(report["min_loss_lr"], color="0.4", linestyle=":", label=f"minimum: {report['min_loss_lr']:.2g}")
        ax.axvline(report["suggested_lr"], color="C3", linestyle="--", label=f"suggestion: {report['suggested_lr']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (top layer group)")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def _report(cfg: LRFindConfig, rates: np.ndarray, losses: list[float]) -> dict:
    finite = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), len(losses))
    if finite < 2:
        raise UlmfitError(f"lr_find: the loss was not finite from batch {finite + 1} on, at rate "
                          f"{rates[finite]:.3g}; lower --start_lr or check the data")
    losses = losses[:finite]  # a loss that overflowed ends the curve
    smooth = smoothed(losses)
    seen = rates[:len(losses)]
    try:
        min_loss_lr, failure = float(seen[loss_minimum(smooth)]), None
    except UlmfitError as error:  # the sweep is still worth a look: report and plot it, then fail
        min_loss_lr, failure = None, str(error)
    return {"suggested_lr": None if min_loss_lr is None else min_loss_lr / DECADE_BELOW, "failure": failure,
            "rule": f"the smoothed loss's minimum (after batch {SKIP_START}) / {DECADE_BELOW}",
            "min_loss_lr": min_loss_lr, "steps": len(losses),
            "stopped_early": len(losses) < cfg.steps, "rates": seen.tolist(), "losses": losses,
            "smoothed_losses": smooth.tolist()}


def _run(cfg: LRFindConfig, parts: TrainingParts, stage_cfg, device, out: Path) -> dict:
    rates = sweep_rates(cfg.start_lr, cfg.end_lr, cfg.steps)
    losses = sweep(parts, stage_cfg.lr, rates, stage_cfg, device, cfg.diverge_factor)
    report = _report(cfg, rates, losses)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / CONFIG)
    write_json(out / LR_FIND_REPORT, report)
    plot_sweep(report, out / LR_FIND_PLOT)
    if report["failure"]:
        raise UlmfitError(f"{report['failure']} (the sweep is plotted in {out / LR_FIND_PLOT})")
    print(f"lr_find: suggested --lr {report['suggested_lr']:.3g} ({report['rule']}); "
          f"plot {out / LR_FIND_PLOT}", file=sys.stderr)
    return {k: report[k] for k in ("suggested_lr", "rule", "min_loss_lr", "steps", "stopped_early")}


def _lm_sweep(planner: Callable) -> Callable:
    def run(options: dict, cfg: LRFindConfig, out: Path) -> dict:
        plan = planner(options)
        cfg.stage_config = config_to_dict(plan.cfg)
        return _run(cfg, lm_parts(plan), plan.cfg, plan.device, out)
    return run


def _classifier_sweep(options: dict, cfg: LRFindConfig, out: Path) -> dict:
    plan = plan_train(options)
    cfg.stage_config = config_to_dict(plan.cfg)
    train_data, _ = training_data(plan.cfg, Path(plan.cfg.data), len(plan.classes))
    return _run(cfg, classifier_parts(plan, train_data), plan.cfg, plan.device, out)


# stage name -> (the stage, its sweep)
STAGES: dict[str, tuple[Callable, Callable]] = {
    "pretrain": (pretrain, _lm_sweep(plan_pretrain)),
    "finetune": (finetune, _lm_sweep(plan_finetune)),
    "train": (train, _classifier_sweep),
}
NOT_SWEPT = ("out", "resume", "lr")  # lr_find's own --out; nothing to resume; the rate is swept


def lr_find_command(stage_name: str) -> Callable:
    """``lr_find <stage>``: the stage's options (without --out, --resume, --lr) plus the sweep's."""
    stage, run_sweep = STAGES[stage_name]
    stage_params = [p for p in inspect.signature(stage).parameters.values() if p.name not in NOT_SWEPT]
    defaults = LRFindConfig(stage=stage_name)

    def command(out: str, start_lr: float = defaults.start_lr, end_lr: float = defaults.end_lr,
                steps: int = defaults.steps, diverge_factor: float = defaults.diverge_factor, **options) -> dict:
        cfg = LRFindConfig(stage_name, {}, start_lr, end_lr, steps, diverge_factor)
        bound = inspect.Signature(stage_params).bind(**options)
        bound.apply_defaults()
        return run_sweep({**bound.arguments, "lr": None, "out": None, "resume": False}, cfg, Path(out))

    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(
        [own[0], *[p for p in stage_params if p.default is p.empty],
         *[p for p in stage_params if p.default is not p.empty], *own[1:]])
    command.__annotations__ = {**typing.get_type_hints(stage), **typing.get_type_hints(command)}
    command.__name__ = f"lr_find_{stage_name}"
    command.__doc__ = _sweep_doc(stage_name, stage.__doc__ or "")
    return command


SWEEP_ARGS_DOC = f"""        out: lr_find's own folder for config.json, {LR_FIND_REPORT} and {LR_FIND_PLOT}; the stage's is not written.
        start_lr: the top layer group's rate at the first batch.
        end_lr: its rate at the last batch.
        steps: batches of the sweep (the training data repeats if it holds fewer).
        diverge_factor: stop once the smoothed loss exceeds this many times its best.
"""


def _sweep_doc(stage_name: str, stage_doc: str) -> str:
    """The help of ``lr_find <stage>``: what it does, its own arguments, then the stage's (less
    those it does not take), whose Args entries are 8-space lines continued at 12."""
    head, _, rest = stage_doc.partition("    Args:\n")
    args, _, _ = rest.partition("\n\n    Returns:")
    entries = [m.group(0) for m in re.finditer(r"^        (\w+):.*(?:\n {12}.*)*", args, flags=re.M)
               if m.group(1) not in NOT_SWEPT]
    return (f"Learning-rate range test of ``ulmfit {stage_name}``: the top layer group's rate rises exponentially\n"
            f"    from --start_lr to --end_lr over --steps batches of the run the stage would make, and\n"
            f"    {LR_FIND_REPORT} gets the smoothed loss's minimum / {DECADE_BELOW} (suggested_lr, for --lr).\n\n"
            f"    Args:\n{SWEEP_ARGS_DOC}" + "\n".join(entries) + "\n\n    Returns:\n        The suggestion and the rule.\n")


def lr_find_commands() -> dict[str, Callable]:
    return {name: lr_find_command(name) for name in STAGES}
