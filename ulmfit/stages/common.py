"""What the training stages share: the config fields every run has, options from presets, and
the device and memory a run reports. (A model folder's files, loaders and checks are
:mod:`ulmfit.artefacts` and :mod:`ulmfit.model_folder`.)"""
from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import config_from_dict
from ..errors import UlmfitError
from ..model.awd_lstm import AWDLSTMConfig
from ..presets import preset_values
from ..schedules import Schedule, default_arg, discriminative_lrs, make_schedule, stlr
from ..tricks import RETIRED_TRICKS
from ..training import BatchSource, Callback, RepeatedPasses, make_optimizer, optimizer_class, passes_for


@dataclass
class TrainConfig:
    """The fields every training stage shares (the stages' configs extend it and may change the
    defaults): data, model, length, batch, optimizer, schedule, tricks, seed."""

    preset: str = "cpu"                 # names the model preset too
    model: AWDLSTMConfig = field(default_factory=AWDLSTMConfig)
    data: str = ""                      # the tokenized folder trained on
    epochs: int = 1
    max_steps: int | None = None        # bound the run (the schedule is compressed to fit)
    min_steps: int = 0                  # tiny data: epochs make several passes to train this many steps
    bs: int = 64
    bptt: int = 70
    backwards: bool = False             # read every document reversed
    optimizer: str = "adamw"
    lr: float = 1e-2                    # peak rate of the top layer group
    betas: tuple[float, float] = (0.8, 0.99)
    wd: float = 0.01
    clip: float | None = 0.4            # gradient-norm clipping
    schedule: str = "one_cycle"
    cut_frac: float = default_arg(stlr, "cut_frac")
    ratio: float = default_arg(stlr, "ratio")
    disc_factor: float = 1.0            # each lower layer group's rate is divided by this
    max_train: int | None = None        # low-shot: only this many labelled training documents
    tricks: dict = field(default_factory=dict)  # {name: {parameter: value}}, see ulmfit.tricks
    seed: int = 0
    precision: str = "fp32"             # as resolved for the run (see ulmfit.precision)
    accumulate: int = 1                 # batches per optimizer step (gradient accumulation)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):  # loaded from JSON
            self.model = config_from_dict(AWDLSTMConfig, self.model, source="config model")
        self._options_from_retired_tricks()
        self.betas = tuple(self.betas)
        if self.min_steps < 0:
            raise UlmfitError(f"min_steps must be at least 0, got {self.min_steps}")
        if not isinstance(self.accumulate, int) or self.accumulate < 1:
            raise UlmfitError(f"accumulate must be a positive integer, got {self.accumulate!r}")
        optimizer_class(self.optimizer)
        self.make_schedule()  # an unknown name fails before any work

    def _options_from_retired_tricks(self) -> None:
        """A run from before ``--precision``/``--accumulate`` named them as tricks: its config loads
        with the trick's parameter as the option's value."""
        for name, (option, parameter, default) in RETIRED_TRICKS.items():
            if name in self.tricks:
                self.tricks = dict(self.tricks)
                setattr(self, option, self.tricks.pop(name).get(parameter, default))

    def trainer_options(self) -> dict[str, Any]:
        """The Trainer's arguments that the config decides, besides the length of the run."""
        return {"clip": self.clip, "precision": self.precision, "accumulate": self.accumulate}

    def make_optimizer(self, groups: Sequence[Sequence[nn.Parameter]],
                       disc_factor: float | None = None) -> torch.optim.Optimizer:
        """The run's optimizer over layer groups (bottom to top), rates divided by the
        discriminative factor going down (``disc_factor`` overrides the config's)."""
        factor = self.disc_factor if disc_factor is None else disc_factor
        return make_optimizer(groups, discriminative_lrs(self.lr, len(groups), factor), self.optimizer,
                              self.betas, self.wd)

    def training_source(self, source: BatchSource) -> BatchSource:
        """``source`` with as many passes per epoch as ``min_steps`` needs (see ``RepeatedPasses``)."""
        passes = passes_for(self.min_steps, self.epochs, source.n_batches(0))
        return source if passes == 1 else RepeatedPasses(source, passes)

    def make_schedule(self) -> Schedule:
        return make_schedule(self.schedule, cut_frac=self.cut_frac, ratio=self.ratio)


@dataclass
class TrainingParts:
    """What a stage hands the Trainer to train: built once, so that ``lr_find`` sweeps rates on
    exactly the model, optimizer groups, callbacks and batches the stage would train."""

    model: nn.Module
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    callbacks: list[Callback]
    train_data: BatchSource


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is cuda when available, else cpu; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def preset_options(preset: str, stage: str, **given) -> dict:
    """A stage's training fields: the preset's for it (``ulmfit.presets``), then the arguments given."""
    return {**preset_values(preset, stage), **given_options(**given)}


def given_options(**kwargs) -> dict:
    """The keyword arguments that were actually passed (not None); False flags count as given."""
    return {k: v for k, v in kwargs.items() if v is not None}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (children excluded): what a run needed."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
