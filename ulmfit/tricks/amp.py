"""Mixed precision: forwards in bfloat16 or float16 under autocast, losses and weights in float32;
float16 with dynamic loss scaling so that small gradients do not underflow."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..training import Callback, Trainer
from . import trick

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision(Callback):
    """Autocast on the trainer's device from ``on_batch_start`` to the end of ``after_loss``, for
    training and evaluation batches alike, so callbacks that add to the loss run under it too.

    With float16 a ``GradScaler`` multiplies the loss before backward (``trainer.loss_scale``),
    divides the gradients back before clipping (``before_step``, only when the step is taken, so
    accumulated gradients stay scaled until then), skips steps whose gradients overflowed and
    adapts the scale (``trainer.optimizer_step``). Its state goes into checkpoints.
    """

    order = 100  # exits after the other after_loss callbacks; unscales once accumulate set skip_step

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.autocast: torch.autocast | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.restored: dict = {}  # the scaler's state from a checkpoint, loaded on fit start

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.dtype != torch.float16:
            return
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(trainer.device.type)
        if self.restored:
            self.scaler.load_state_dict(self.restored)
            self.restored = {}
        self.optimizer = trainer.optimizer
        trainer.loss_scale = self.scaler.scale
        trainer.optimizer_step = self.scaled_step

    def on_batch_start(self, trainer: Trainer) -> None:
        self.autocast = torch.autocast(trainer.device.type, dtype=self.dtype)
        self.autocast.__enter__()

    def after_loss(self, trainer: Trainer) -> None:
        self.autocast.__exit__(None, None, None)
        self.autocast = None

    def before_step(self, trainer: Trainer) -> None:
        if self.scaler is not None and not trainer.skip_step:
            self.scaler.unscale_(trainer.optimizer)

    def scaled_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.restored = state


@trick("amp")
@dataclass
class AMP:
    """Mixed precision: bf16 or fp16 (with loss scaling; for GPUs) forwards, float32 losses and weights."""

    dtype: str = "bf16"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def callbacks(self) -> list[Callback]:
        return [MixedPrecision(DTYPES[self.dtype])]
